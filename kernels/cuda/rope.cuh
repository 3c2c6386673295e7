// Rotary position embedding (RoPE), half-split form as in the speedrun.
//
// For a head vector x of size D at position t, x1 = x[:D/2], x2 = x[D/2:],
// with cos/sin of angle_i = t * base^(-2i/D) from precomputed tables:
//   forward   y1 =  x1*cos + x2*sin        y2 = -x1*sin + x2*cos
//   backward  dx1 = dy1*cos - dy2*sin      dx2 =  dy1*sin + dy2*cos   (the transpose)
// Layout: (B, T, H, D) bf16 contiguous, position t = (flat row / H) % T; tables
// (T_max >= T, D/2) fp32 row-major, e.g. cpu::rope_tables<float> uploaded once.
// D must be even. In place is allowed (out == in, din == dout).
#pragma once

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

void rope_forward(bf16* out, const bf16* in, const float* cos_table, const float* sin_table, int B, int T, int H, int D,
                  cudaStream_t stream);
void rope_backward(bf16* din, const bf16* dout, const float* cos_table, const float* sin_table, int B, int T, int H,
                   int D, cudaStream_t stream);

}  // namespace muongpt::gpu
