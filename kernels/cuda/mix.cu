// Scalar-weighted mixes, forward and backward: see mix.cuh.
#include "kernels/cuda/mix.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxPartialBlocks = 512;  // fixed cap: the grid depends on n only

__device__ __forceinline__ float logistic(float v) { return 1.0f / (1.0f + expf(-v)); }

__device__ __forceinline__ float coef_value(const MixCoef& c) {
  if (!c.param) return c.offset;
  return c.sigmoid ? logistic(*c.param) : c.offset + c.scale * *c.param;
}

// d(value)/d(param).
__device__ __forceinline__ float coef_derivative(const MixCoef& c) {
  if (!c.sigmoid) return c.scale;
  const float s = logistic(*c.param);
  return s * (1.0f - s);
}

__global__ void mix_forward_kernel(bf16* out, const bf16* x, const bf16* y, MixCoef ca, MixCoef cb, size_t n,
                                   bool vec) {
  const float a = coef_value(ca), b = coef_value(cb);
  const size_t packs = ceil_div(n, size_t(8));
  for (size_t p = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs;
       p += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t i = p * 8;
    const int count = static_cast<int>(min(size_t(8), n - i));
    float vx[8], vy[8];
    load_upto8(x + i, count, vec, vx);
    load_upto8(y + i, count, vec, vy);
#pragma unroll
    for (int k = 0; k < 8; ++k) vx[k] = a * vx[k] + b * vy[k];
    store_upto8(out + i, count, vec, vx);
  }
}

// Elementwise dx/dy, and (when partial != null) per-block partial sums of
// dout*x and dout*y into partial[2*block], partial[2*block+1].
// dst[0, count) = c * g, or += with accumulate.
__device__ __forceinline__ void write_scaled(bf16* dst, float c, const float (&g)[8], bool accumulate, int count,
                                             bool vec) {
  float d[8];
  if (accumulate) load_upto8(dst, count, vec, d);
#pragma unroll
  for (int k = 0; k < 8; ++k) d[k] = accumulate ? d[k] + c * g[k] : c * g[k];
  store_upto8(dst, count, vec, d);
}

__global__ void mix_backward_kernel(bf16* dx, bf16* dy, float* partial, const bf16* dout, const bf16* x,
                                    const bf16* y, MixCoef ca, MixCoef cb, size_t n, bool accumulate_dx,
                                    bool accumulate_dy, bool want_a, bool want_b, bool vec) {
  const float a = coef_value(ca), b = coef_value(cb);
  const size_t packs = ceil_div(n, size_t(8));
  float sum_a = 0.0f, sum_b = 0.0f;
  for (size_t p = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs;
       p += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t i = p * 8;
    const int count = static_cast<int>(min(size_t(8), n - i));
    float g[8];
    load_upto8(dout + i, count, vec, g);  // read before dx/dy (which may alias dout) are written
    if (want_a) {
      float v[8];
      load_upto8(x + i, count, vec, v);
#pragma unroll
      for (int k = 0; k < 8; ++k) sum_a += g[k] * v[k];  // zero-filled beyond count
    }
    if (want_b) {
      float v[8];
      load_upto8(y + i, count, vec, v);
#pragma unroll
      for (int k = 0; k < 8; ++k) sum_b += g[k] * v[k];
    }
    if (dx) write_scaled(dx + i, a, g, accumulate_dx, count, vec);
    if (dy) write_scaled(dy + i, b, g, accumulate_dy, count, vec);
  }
  if (partial) {
    sum_a = block_sum(sum_a);
    sum_b = block_sum(sum_b);
    if (threadIdx.x == 0) {
      partial[2 * blockIdx.x] = sum_a;
      partial[2 * blockIdx.x + 1] = sum_b;
    }
  }
}

// One block: adds the partials in a fixed order, then the scalar gradients.
__global__ void mix_finish_kernel(float* dparam_a, float* dparam_b, const float* partial, int blocks, MixCoef ca,
                                  MixCoef cb) {
  float sa = 0.0f, sb = 0.0f;
  for (int k = threadIdx.x; k < blocks; k += blockDim.x) {
    sa += partial[2 * k];
    sb += partial[2 * k + 1];
  }
  sa = block_sum(sa);
  sb = block_sum(sb);
  if (threadIdx.x == 0) {
    if (dparam_a) *dparam_a += coef_derivative(ca) * sa;
    if (dparam_b) *dparam_b += coef_derivative(cb) * sb;
  }
}

unsigned elementwise_grid(size_t n) {
  const size_t blocks = ceil_div(ceil_div(n, size_t(8)), static_cast<size_t>(kThreads));
  return static_cast<unsigned>(blocks < 65536 * 16 ? blocks : 65536 * 16);
}

bool ok16(const void* p) { return p == nullptr || aligned16(p); }

void check_coefs(const char* op, const MixCoef& a, const MixCoef& b) {
  require_arg(!(a.sigmoid && !a.param) && !(b.sigmoid && !b.param), op, "a sigmoid coefficient needs its parameter");
}

}  // namespace

size_t mix_backward_scratch_floats() { return 2 * static_cast<size_t>(kMaxPartialBlocks); }

void mix_forward(bf16* out, const bf16* x, const bf16* y, MixCoef a, MixCoef b, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  require_arg(out && x && y, "mix_forward", "out, x and y are required");
  check_coefs("mix_forward", a, b);
  const bool vec = aligned16(out) && aligned16(x) && aligned16(y);
  mix_forward_kernel<<<elementwise_grid(n), kThreads, 0, stream>>>(out, x, y, a, b, n, vec);
  CUDA_CHECK_LAUNCH("mix_forward_kernel");
}

void mix_backward(bf16* dx, bf16* dy, float* dparam_a, float* dparam_b, const bf16* dout, const bf16* x,
                  const bf16* y, MixCoef a, MixCoef b, size_t n, bool accumulate_dx, bool accumulate_dy,
                  float* scratch, cudaStream_t stream) {
  if (n == 0) return;
  const bool want_a = dparam_a != nullptr, want_b = dparam_b != nullptr;
  require_arg(dout != nullptr, "mix_backward", "dout is required");
  require_arg(!want_a || x, "mix_backward", "dparam_a needs x");
  require_arg(!want_b || y, "mix_backward", "dparam_b needs y");
  require_arg(!(want_a || want_b) || scratch, "mix_backward", "scalar gradients need scratch");
  require_arg(!(dx && dy && dx == dy), "mix_backward", "dx and dy must differ");
  check_coefs("mix_backward", a, b);
  if (!dx && !dy && !want_a && !want_b) return;
  const bool vec = ok16(dx) && ok16(dy) && ok16(dout) && (!want_a || ok16(x)) && (!want_b || ok16(y));
  if (!want_a && !want_b) {
    mix_backward_kernel<<<elementwise_grid(n), kThreads, 0, stream>>>(dx, dy, nullptr, dout, x, y, a, b, n,
                                                                      accumulate_dx, accumulate_dy, false, false, vec);
    CUDA_CHECK_LAUNCH("mix_backward_kernel");
    return;
  }
  const size_t needed = ceil_div(ceil_div(n, size_t(8)), static_cast<size_t>(kThreads));
  const int blocks = static_cast<int>(needed < kMaxPartialBlocks ? needed : kMaxPartialBlocks);
  mix_backward_kernel<<<blocks, kThreads, 0, stream>>>(dx, dy, scratch, dout, x, y, a, b, n, accumulate_dx,
                                                       accumulate_dy, want_a, want_b, vec);
  CUDA_CHECK_LAUNCH("mix_backward_kernel");
  mix_finish_kernel<<<1, kThreads, 0, stream>>>(dparam_a, dparam_b, scratch, blocks, a, b);
  CUDA_CHECK_LAUNCH("mix_finish_kernel");
}

}  // namespace muongpt::gpu
