// RoPE forward/backward: see rope.cuh for math and layout.
#include "kernels/cuda/rope.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kThreads = 256;

// One thread per (head row, group of `per` consecutive pair indices i). The
// backward is the forward with sin negated. Each thread reads its x1/x2
// elements before writing the same elements, so in place is safe.
__global__ void rope_kernel(bf16* out, const bf16* in, const float* cos_table, const float* sin_table, size_t rows,
                            int T, int H, int D, float sin_sign, bool vec) {
  const int half = D / 2;
  const int per = vec ? 8 : 1;
  const int groups = half / per;
  const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * groups) return;
  const size_t row = idx / groups;  // flat (b, t, h)
  const int i0 = static_cast<int>(idx % groups) * per;
  const int t = static_cast<int>((row / H) % T);
  const float* c = cos_table + static_cast<size_t>(t) * half + i0;
  const float* s = sin_table + static_cast<size_t>(t) * half + i0;
  const size_t base = row * D + i0;
  float x1[8], x2[8];
  load_upto8(in + base, per, vec, x1);
  load_upto8(in + base + half, per, vec, x2);
  float y1[8], y2[8];
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float ck = k < per ? c[k] : 0.0f;
    const float sk = k < per ? sin_sign * s[k] : 0.0f;
    y1[k] = x1[k] * ck + x2[k] * sk;
    y2[k] = -x1[k] * sk + x2[k] * ck;
  }
  store_upto8(out + base, per, vec, y1);
  store_upto8(out + base + half, per, vec, y2);
}

void launch(const char* op, bf16* out, const bf16* in, const float* cos_table, const float* sin_table, int B, int T,
            int H, int D, float sin_sign, cudaStream_t stream) {
  require_arg(B >= 0 && T >= 0 && H >= 0 && D >= 0, op, "negative size");
  require_arg(D % 2 == 0, op, "head dim D must be even");
  const size_t rows = static_cast<size_t>(B) * T * H;
  if (rows == 0 || D == 0) return;
  const int half = D / 2;
  const bool vec = half % 8 == 0 && aligned16(out) && aligned16(in);
  const size_t items = rows * static_cast<size_t>(vec ? half / 8 : half);
  const size_t blocks = ceil_div(items, static_cast<size_t>(kThreads));
  require_arg(blocks < (size_t(1) << 31), op, "tensor too large");
  rope_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(out, in, cos_table, sin_table, rows, T, H, D,
                                                                      sin_sign, vec);
  CUDA_CHECK_LAUNCH("rope_kernel");
}

}  // namespace

void rope_forward(bf16* out, const bf16* in, const float* cos_table, const float* sin_table, int B, int T, int H, int D,
                  cudaStream_t stream) {
  launch("rope_forward", out, in, cos_table, sin_table, B, T, H, D, 1.0f, stream);
}

void rope_backward(bf16* din, const bf16* dout, const float* cos_table, const float* sin_table, int B, int T, int H,
                   int D, cudaStream_t stream) {
  launch("rope_backward", din, dout, cos_table, sin_table, B, T, H, D, -1.0f, stream);
}

}  // namespace muongpt::gpu
