// Logit softcap + softmax cross-entropy, fused, per token (row).
//
//   z     raw logits (N, Vp) bf16, row-major (Vp = padded vocabulary)
//   c_j   = cap * tanh(z_j / cap)          (cap <= 0: c_j = z_j)
//   lse   = logsumexp_{j<V} c_j            (only the first V columns take part)
//   loss  = lse - c_target
// Backward with upstream gradient g = dloss (same for every row, e.g. 1/(N*accum)):
//   dz_j = g (softmax_j - [j == target]) (1 - tanh(z_j/cap)^2)   for j < V
//   dz_j = 0                                                     for V <= j < Vp
// The forward writes losses (N) and lse (N), fp32. The backward writes dlogits
// in place of the logits when dlogits == logits (each element is read before
// the same thread writes it): the logits are never stored twice.
// Targets: int32 (N), valid in [0, V). The CPU reference has no ignore index;
// an invalid target gives loss = NaN (visible) and no target term in the
// backward (never an out-of-bounds read).
// One block per row; per thread an online (max, sum) pair, combined over the
// block in a fixed tree: deterministic.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

void softcap_ce_forward(float* losses, float* lse, const bf16* logits, const int32_t* targets, int N, int Vp, int V,
                        float cap, cudaStream_t stream);

void softcap_ce_backward(bf16* dlogits, const bf16* logits, const float* lse, const int32_t* targets, float dloss,
                         int N, int Vp, int V, float cap, cudaStream_t stream);

}  // namespace muongpt::gpu
