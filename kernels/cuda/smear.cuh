// Smear (speedrun record #34): each token's embedding takes in a gated share
// of the previous token's, before the embedding norm (kernels/cpu/smear.h is
// the reference):
//   z_t = sum_{i<K} e[t,i] * w[i]     g_t = sigmoid(z_t)
//   y[t] = e[t] + lambda * g_t * e[t-1]        (t >= 1 within each sequence)
//   y[0] = e[0]                                (g_0 is written as 0)
// Backward, with s_t = lambda * g_t and r_t = dy[t] . e[t-1]:
//   de[t] = dy[t] + s_{t+1} * dy[t+1]  (the second term only if t+1 is in the same sequence)
//   dz_t = lambda * r_t * g_t * (1 - g_t);  de[t,i] += dz_t * w[i] (i < K)
//   dw[i] += sum_t dz_t * e[t,i]            dlambda += sum_t g_t * r_t
// Layout: e, y, dy, de (B, T, C) bf16 row-major, K <= C; w (K) and lambda (1)
// fp32 device pointers (the master parameters: no host round trip); dw (K)
// and dlambda (1) fp32, accumulated; g (B*T) fp32, saved by the forward for
// the backward (with e).
// Aliasing: none. y must not overlap e (token t+1 reads e[t] while y[t] is
// written), de must not overlap dy (de[t] reads dy[t+1]); the launchers
// reject y == e and de == dy.
// One warp per token for the forward and for de. dw and dlambda are
// deterministic and atomic-free: per chunk of kSmearRowsPerChunk tokens one
// partial sum per weight (and one for lambda) into `scratch`, then each adds
// its partials in chunk order.
#pragma once

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

constexpr int kSmearRowsPerChunk = 128;

// floats of scratch that smear_backward needs for B*T = N tokens: dz and g*r
// per token, and the chunks' partial sums of dw and dlambda.
size_t smear_backward_scratch_floats(int N, int K);

void smear_forward(bf16* y, float* g, const bf16* e, const float* w, const float* lambda, int B, int T, int C, int K,
                   cudaStream_t stream);

// e and g: the forward's input and gates. Writes de, adds into dw and dlambda.
void smear_backward(bf16* de, float* dw, float* dlambda, const bf16* dy, const bf16* e, const float* g,
                    const float* w, const float* lambda, int B, int T, int C, int K, float* scratch,
                    cudaStream_t stream);

}  // namespace muongpt::gpu
