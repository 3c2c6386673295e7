// RMSNorm / LayerNorm forward and backward: see norm.cuh for math and layout.
#include "kernels/cuda/norm.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kRowThreads = 128;  // 4 warps = 4 rows per block
constexpr int kRowsPerBlock = kRowThreads / 32;
constexpr int kColThreads = 128;

// Visits a row's elements owned by `lane`: in packs of 8 when vec, else one by one.
// f(c, count) handles elements [c, c + count).
template <class F>
__device__ __forceinline__ void for_lane_elements(int C, int lane, bool vec, F&& f) {
  if (vec) {
    for (int c = lane * 8; c < C; c += 32 * 8) f(c, 8);
  } else {
    for (int c = lane; c < C; c += 32) f(c, 1);
  }
}

// One warp per row. residual_out/x2 non-null: the row is bf16(x + x2), written
// to residual_out and re-read from there (each lane re-reads only what it wrote).
__global__ void norm_forward_kernel(bf16* out, float* mean_out, float* rstd_out, bf16* residual_out, const bf16* x,
                                    const bf16* x2, const bf16* weight, const bf16* bias, int rows, int C, float eps,
                                    bool layernorm, bool vec) {
  const int lane = threadIdx.x & 31;
  const size_t row = static_cast<size_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= static_cast<size_t>(rows)) return;  // the whole warp leaves together
  const size_t base = row * C;
  const bf16* src = x + base;
  if (x2) {
    const bf16* a = x + base;
    const bf16* b = x2 + base;
    bf16* r = residual_out + base;
    for_lane_elements(C, lane, vec, [&](int c, int n) {
      float va[8], vb[8];
      load_upto8(a + c, n, vec, va);
      load_upto8(b + c, n, vec, vb);
#pragma unroll
      for (int k = 0; k < 8; ++k) va[k] += vb[k];
      store_upto8(r + c, n, vec, va);
    });
    src = r;
  }
  float m = 0.0f;
  if (layernorm) {
    float sum = 0.0f;
    for_lane_elements(C, lane, vec, [&](int c, int n) {
      float v[8];
      load_upto8(src + c, n, vec, v);
#pragma unroll
      for (int k = 0; k < 8; ++k) sum += v[k];  // zero-filled beyond n
    });
    m = warp_sum(sum) / C;
  }
  float ss = 0.0f;
  for_lane_elements(C, lane, vec, [&](int c, int n) {
    float v[8];
    load_upto8(src + c, n, vec, v);
#pragma unroll
    for (int k = 0; k < n; ++k) ss += (v[k] - m) * (v[k] - m);
  });
  const float s = rsqrtf(warp_sum(ss) / C + eps);
  bf16* o = out + base;
  for_lane_elements(C, lane, vec, [&](int c, int n) {
    float v[8], w[8], b[8];
    load_upto8(src + c, n, vec, v);
    if (weight) load_upto8(weight + c, n, vec, w);
    if (bias) load_upto8(bias + c, n, vec, b);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float y = (v[k] - m) * s;
      if (weight) y *= w[k];
      if (bias) y += b[k];
      v[k] = y;
    }
    store_upto8(o + c, n, vec, v);
  });
  if (lane == 0) {
    rstd_out[row] = s;
    if (layernorm && mean_out) mean_out[row] = m;
  }
}

// dx, one warp per row.
__global__ void norm_backward_dx_kernel(bf16* dx, const bf16* dout, const bf16* x, const bf16* weight,
                                        const float* mean, const float* rstd, int rows, int C, bool layernorm,
                                        bool accumulate, bool vec) {
  const int lane = threadIdx.x & 31;
  const size_t row = static_cast<size_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= static_cast<size_t>(rows)) return;
  const size_t base = row * C;
  const bf16* xr = x + base;
  const bf16* g = dout + base;
  const float m = layernorm ? mean[row] : 0.0f;
  const float s = rstd[row];
  float sum_dxh = 0.0f, sum_dxh_xh = 0.0f;
  for_lane_elements(C, lane, vec, [&](int c, int n) {
    float v[8], gv[8], w[8];
    load_upto8(xr + c, n, vec, v);
    load_upto8(g + c, n, vec, gv);
    if (weight) load_upto8(weight + c, n, vec, w);
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const float dxh = weight ? gv[k] * w[k] : gv[k];
      sum_dxh += dxh;
      sum_dxh_xh += dxh * ((v[k] - m) * s);
    }
  });
  const float mean_dxh = layernorm ? warp_sum(sum_dxh) / C : 0.0f;
  const float mean_dxh_xh = warp_sum(sum_dxh_xh) / C;
  bf16* d = dx + base;
  for_lane_elements(C, lane, vec, [&](int c, int n) {
    float v[8], gv[8], w[8], prev[8];
    load_upto8(xr + c, n, vec, v);
    load_upto8(g + c, n, vec, gv);
    if (weight) load_upto8(weight + c, n, vec, w);
    if (accumulate) load_upto8(d + c, n, vec, prev);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float dxh = weight ? gv[k] * w[k] : gv[k];
      const float xh = (v[k] - m) * s;
      const float val = s * (dxh - mean_dxh - xh * mean_dxh_xh);
      v[k] = accumulate ? prev[k] + val : val;
    }
    store_upto8(d + c, n, vec, v);
  });
}

// Stage 1 of dweight/dbias: grid (ceil(C / kColThreads), chunks). Thread = column,
// summing the rows of its chunk in order into partial[chunk][c].
__global__ void norm_backward_partial_kernel(float* partial_w, float* partial_b, const bf16* dout, const bf16* x,
                                             const float* mean, const float* rstd, int rows, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int chunk = blockIdx.y;
  const int r0 = chunk * kNormRowsPerChunk;
  const int r1 = min(rows, r0 + kNormRowsPerChunk);
  float sw = 0.0f, sb = 0.0f;
  for (int r = r0; r < r1; ++r) {
    const size_t i = static_cast<size_t>(r) * C + c;
    const float g = bf2f(dout[i]);
    const float xh = (bf2f(x[i]) - (mean ? mean[r] : 0.0f)) * rstd[r];
    sw += g * xh;
    sb += g;
  }
  const size_t o = static_cast<size_t>(chunk) * C + c;
  if (partial_w) partial_w[o] = sw;
  if (partial_b) partial_b[o] = sb;
}

// Stage 2: each column adds its chunk partials in chunk order to the gradient.
__global__ void norm_backward_finish_kernel(float* dweight, float* dbias, const float* partial_w,
                                            const float* partial_b, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  if (dweight) {
    float sum = 0.0f;
    for (int k = 0; k < chunks; ++k) sum += partial_w[static_cast<size_t>(k) * C + c];
    dweight[c] += sum;
  }
  if (dbias) {
    float sum = 0.0f;
    for (int k = 0; k < chunks; ++k) sum += partial_b[static_cast<size_t>(k) * C + c];
    dbias[c] += sum;
  }
}

bool use_vec(int C) { return C % 8 == 0 && C >= 256; }

void check_sizes(const char* op, int rows, int C) {
  require_arg(rows >= 0 && C >= 0, op, "negative size");
  require_arg(static_cast<size_t>(rows) * C < (size_t(1) << 40), op, "tensor too large");
}

void launch_forward(const char* op, bf16* out, float* mean, float* rstd, bf16* residual_out, const bf16* x,
                    const bf16* x2, const bf16* weight, const bf16* bias, int rows, int C, float eps, bool layernorm,
                    cudaStream_t stream) {
  check_sizes(op, rows, C);
  require_arg(C > 0 || rows == 0, op, "C must be positive");
  if (rows == 0) return;
  require_arg(out && x && rstd, op, "out, x and rstd are required");
  require_arg(!layernorm || mean, op, "layernorm needs mean");
  const bool vec = use_vec(C) && aligned16(out) && aligned16(x) && (!x2 || (aligned16(x2) && aligned16(residual_out))) &&
                   (!weight || aligned16(weight)) && (!bias || aligned16(bias));
  const unsigned blocks = ceil_div(static_cast<unsigned>(rows), static_cast<unsigned>(kRowsPerBlock));
  norm_forward_kernel<<<blocks, kRowThreads, 0, stream>>>(out, mean, rstd, residual_out, x, x2, weight, bias, rows, C,
                                                          eps, layernorm, vec);
  CUDA_CHECK_LAUNCH("norm_forward_kernel");
}

void launch_backward(const char* op, bf16* dx, float* dweight, float* dbias, const bf16* dout, const bf16* x,
                     const bf16* weight, const float* mean, const float* rstd, int rows, int C, bool layernorm,
                     bool accumulate, float* scratch, cudaStream_t stream) {
  check_sizes(op, rows, C);
  require_arg(C > 0 || rows == 0, op, "C must be positive");
  if (rows == 0) return;
  require_arg(dout && x && rstd && (!layernorm || mean), op, "dout, x, rstd (and mean) are required");
  if (dx) {
    const bool vec = use_vec(C) && aligned16(dx) && aligned16(dout) && aligned16(x) && (!weight || aligned16(weight));
    const unsigned blocks = ceil_div(static_cast<unsigned>(rows), static_cast<unsigned>(kRowsPerBlock));
    norm_backward_dx_kernel<<<blocks, kRowThreads, 0, stream>>>(dx, dout, x, weight, mean, rstd, rows, C, layernorm,
                                                                accumulate, vec);
    CUDA_CHECK_LAUNCH("norm_backward_dx_kernel");
  }
  if (dweight || dbias) {
    require_arg(scratch != nullptr, op, "dweight/dbias need scratch (norm_backward_scratch_floats)");
    const int chunks = ceil_div(rows, kNormRowsPerChunk);
    require_arg(chunks <= 65535, op, "too many rows for the dweight reduction");
    float* partial_w = dweight ? scratch : nullptr;
    float* partial_b = dbias ? scratch + static_cast<size_t>(chunks) * C : nullptr;
    const unsigned cblocks = ceil_div(static_cast<unsigned>(C), static_cast<unsigned>(kColThreads));
    norm_backward_partial_kernel<<<dim3(cblocks, static_cast<unsigned>(chunks)), kColThreads, 0, stream>>>(
        partial_w, partial_b, dout, x, layernorm ? mean : nullptr, rstd, rows, C);
    CUDA_CHECK_LAUNCH("norm_backward_partial_kernel");
    norm_backward_finish_kernel<<<cblocks, kColThreads, 0, stream>>>(dweight, dbias, partial_w, partial_b, chunks, C);
    CUDA_CHECK_LAUNCH("norm_backward_finish_kernel");
  }
}

}  // namespace

size_t norm_backward_scratch_floats(int rows, int C) {
  if (rows <= 0 || C <= 0) return 0;
  return 2 * static_cast<size_t>(ceil_div(rows, kNormRowsPerChunk)) * static_cast<size_t>(C);
}

void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const bf16* weight, int rows, int C, float eps,
                     cudaStream_t stream) {
  launch_forward("rmsnorm_forward", out, nullptr, rstd, nullptr, x, nullptr, weight, nullptr, rows, C, eps, false,
                 stream);
}

void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* x, const bf16* weight, const bf16* bias,
                       int rows, int C, float eps, cudaStream_t stream) {
  launch_forward("layernorm_forward", out, mean, rstd, nullptr, x, nullptr, weight, bias, rows, C, eps, true, stream);
}

void residual_rmsnorm_forward(bf16* residual_out, bf16* out, float* rstd, const bf16* a, const bf16* b,
                              const bf16* weight, int rows, int C, float eps, cudaStream_t stream) {
  require_arg(residual_out && b, "residual_rmsnorm_forward", "residual_out and b are required");
  launch_forward("residual_rmsnorm_forward", out, nullptr, rstd, residual_out, a, b, weight, nullptr, rows, C, eps,
                 false, stream);
}

void residual_layernorm_forward(bf16* residual_out, bf16* out, float* mean, float* rstd, const bf16* a,
                                const bf16* b, const bf16* weight, const bf16* bias, int rows, int C, float eps,
                                cudaStream_t stream) {
  require_arg(residual_out && b, "residual_layernorm_forward", "residual_out and b are required");
  launch_forward("residual_layernorm_forward", out, mean, rstd, residual_out, a, b, weight, bias, rows, C, eps, true,
                 stream);
}

void rmsnorm_backward(bf16* dx, float* dweight, const bf16* dout, const bf16* x, const bf16* weight,
                      const float* rstd, int rows, int C, bool accumulate, float* scratch, cudaStream_t stream) {
  launch_backward("rmsnorm_backward", dx, dweight, nullptr, dout, x, weight, nullptr, rstd, rows, C, false,
                  accumulate, scratch, stream);
}

void layernorm_backward(bf16* dx, float* dweight, float* dbias, const bf16* dout, const bf16* x, const bf16* weight,
                        const float* mean, const float* rstd, int rows, int C, bool accumulate, float* scratch,
                        cudaStream_t stream) {
  launch_backward("layernorm_backward", dx, dweight, dbias, dout, x, weight, mean, rstd, rows, C, true, accumulate,
                  scratch, stream);
}

}  // namespace muongpt::gpu
