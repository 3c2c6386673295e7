// GELU / ReLU^2 forward and backward: see activation.cuh.
#include "kernels/cuda/activation.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kThreads = 256;
constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

enum class Act { gelu, relu2 };

// One thread per pack of 8 elements (grid-stride); the last pack may be partial.
template <Act kAct>
__global__ void act_forward_kernel(bf16* out, const bf16* x, size_t n, bool vec) {
  const size_t packs = ceil_div(n, size_t(8));
  for (size_t p = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs;
       p += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t i = p * 8;
    const int count = static_cast<int>(min(size_t(8), n - i));
    float v[8];
    load_upto8(x + i, count, vec, v);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      if constexpr (kAct == Act::gelu) {
        const float u = kGeluK * (v[k] + kGeluA * v[k] * v[k] * v[k]);
        v[k] = 0.5f * v[k] * (1.0f + tanhf(u));
      } else {
        const float r = fmaxf(v[k], 0.0f);
        v[k] = r * r;
      }
    }
    store_upto8(out + i, count, vec, v);
  }
}

template <Act kAct>
__global__ void act_backward_kernel(bf16* dx, const bf16* dout, const bf16* x, size_t n, bool vec) {
  const size_t packs = ceil_div(n, size_t(8));
  for (size_t p = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs;
       p += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t i = p * 8;
    const int count = static_cast<int>(min(size_t(8), n - i));
    float v[8], g[8];
    load_upto8(x + i, count, vec, v);
    load_upto8(dout + i, count, vec, g);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      if constexpr (kAct == Act::gelu) {
        const float th = tanhf(kGeluK * (v[k] + kGeluA * v[k] * v[k] * v[k]));
        const float d = 0.5f * (1.0f + th) +
                        0.5f * v[k] * (1.0f - th * th) * kGeluK * (1.0f + 3.0f * kGeluA * v[k] * v[k]);
        g[k] *= d;
      } else {
        g[k] = v[k] > 0.0f ? 2.0f * v[k] * g[k] : 0.0f;
      }
    }
    store_upto8(dx + i, count, vec, g);
  }
}

unsigned grid_for(size_t n) {
  const size_t blocks = ceil_div(ceil_div(n, size_t(8)), static_cast<size_t>(kThreads));
  return static_cast<unsigned>(blocks < 65536 * 16 ? blocks : 65536 * 16);  // grid-stride beyond
}

}  // namespace

void gelu_forward(bf16* out, const bf16* x, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  act_forward_kernel<Act::gelu><<<grid_for(n), kThreads, 0, stream>>>(out, x, n, aligned16(out) && aligned16(x));
  CUDA_CHECK_LAUNCH("gelu_forward");
}

void gelu_backward(bf16* dx, const bf16* dout, const bf16* x, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  act_backward_kernel<Act::gelu><<<grid_for(n), kThreads, 0, stream>>>(
      dx, dout, x, n, aligned16(dx) && aligned16(dout) && aligned16(x));
  CUDA_CHECK_LAUNCH("gelu_backward");
}

void relu2_forward(bf16* out, const bf16* x, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  act_forward_kernel<Act::relu2><<<grid_for(n), kThreads, 0, stream>>>(out, x, n, aligned16(out) && aligned16(x));
  CUDA_CHECK_LAUNCH("relu2_forward");
}

void relu2_backward(bf16* dx, const bf16* dout, const bf16* x, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  act_backward_kernel<Act::relu2><<<grid_for(n), kThreads, 0, stream>>>(
      dx, dout, x, n, aligned16(dx) && aligned16(dout) && aligned16(x));
  CUDA_CHECK_LAUNCH("relu2_backward");
}

}  // namespace muongpt::gpu
