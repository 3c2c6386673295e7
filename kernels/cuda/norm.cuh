// RMSNorm and LayerNorm over the last dimension of a (rows, C) tensor,
// forward and backward, plus a fused residual-add + norm forward.
//
// RMSNorm:   r = 1/sqrt(mean(x^2) + eps)      y = x * r (* w)
// LayerNorm: m = mean(x), r = 1/sqrt(mean((x-m)^2) + eps)
//            y = (x - m) * r (* w) (+ b)
// The forward saves r (and m) per row, fp32. With xh = (x-m)*r, dxh = dy (* w):
//   dx  = r * (dxh - mean(dxh) - xh * mean(dxh * xh))   (RMSNorm: m = 0, no mean(dxh) term)
//   dw += sum_rows dy * xh ;  db += sum_rows dy
// Fused residual variant: residual_out = bf16(a + b), y = norm(residual_out);
// the norm sees the rounded sum, so the backward takes residual_out as x.
//
// Layout: x, y, dy, dx (rows, C) bf16 row-major; weight/bias (C) bf16 (may be
// null = 1 / 0); mean/rstd (rows) fp32; dweight/dbias (C) fp32, accumulated.
// Forward and dx: one warp per row (16-byte loads when C % 8 == 0 and
// C >= 256). dweight/dbias: two stages, no atomics: per chunk of
// kNormRowsPerChunk rows a partial sum per column into `scratch`, then each
// column sums its partials in chunk order. dx is overwritten, or accumulated
// into (dx = bf16(dx + v)) when `accumulate` (residual streams).
#pragma once

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

constexpr int kNormRowsPerChunk = 64;

// floats of scratch that the backward needs for dweight (and dbias).
size_t norm_backward_scratch_floats(int rows, int C);

void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const bf16* weight, int rows, int C, float eps,
                     cudaStream_t stream);
void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* x, const bf16* weight, const bf16* bias,
                       int rows, int C, float eps, cudaStream_t stream);

// residual_out = a + b (may alias a or b), out = norm(residual_out).
void residual_rmsnorm_forward(bf16* residual_out, bf16* out, float* rstd, const bf16* a, const bf16* b,
                              const bf16* weight, int rows, int C, float eps, cudaStream_t stream);
void residual_layernorm_forward(bf16* residual_out, bf16* out, float* mean, float* rstd, const bf16* a,
                                const bf16* b, const bf16* weight, const bf16* bias, int rows, int C, float eps,
                                cudaStream_t stream);

// dweight may be null (then scratch may be null). dx must not alias dout or x.
void rmsnorm_backward(bf16* dx, float* dweight, const bf16* dout, const bf16* x, const bf16* weight,
                      const float* rstd, int rows, int C, bool accumulate, float* scratch, cudaStream_t stream);
// dweight and dbias may each be null (scratch null when both are).
void layernorm_backward(bf16* dx, float* dweight, float* dbias, const bf16* dout, const bf16* x, const bf16* weight,
                        const float* mean, const float* rstd, int rows, int C, bool accumulate, float* scratch,
                        cudaStream_t stream);

}  // namespace muongpt::gpu
