// Token (and optional learned position) embedding, forward and backward.
//
//   forward   out[b,t,:] = wte[tok[b,t],:] (+ wpe[t,:])
//   backward  dwte[v,:] += sum_{(b,t): tok[b,t]==v} dout[b,t,:]
//             dwpe[t,:] += sum_b dout[b,t,:]
// Layout: tokens (B,T) int32 row-major (flat position p = b*T + t); tables
// (rows, C) bf16 working copies; out/dout (B,T,C) bf16; dwte (V,C) and dwpe
// (T_max,C) fp32, accumulated.
//
// The backward is deterministic without atomics: the host builds, from the
// batch's tokens (they are on the host anyway, from the loader), a CSR list of
// the positions of each distinct token (EmbeddingBackwardPlan). One thread per
// (distinct token, channel) sums that token's positions in ascending order and
// adds the sum to dwte once.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

struct EmbeddingBackwardPlan {
  std::vector<int32_t> ids;        // the distinct token ids of the batch, ascending
  std::vector<int32_t> offsets;    // ids.size() + 1 entries
  std::vector<int32_t> positions;  // n entries; positions[offsets[u] .. offsets[u+1]) hold
                                   // the flat positions of ids[u], ascending
};

// Counting sort of `n` host tokens; throws std::invalid_argument naming the
// position of a token outside [0, vocab).
EmbeddingBackwardPlan plan_embedding_backward(const int32_t* tokens, int n, int vocab);

// out (B*T, C). wpe may be null. A token outside [0, vocab) gives a NaN row
// (visible downstream, never an out-of-bounds read).
void embedding_forward(bf16* out, const int32_t* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C,
                       int vocab, cudaStream_t stream);

// dwte += token gradients, using the plan's arrays uploaded to the device
// (ids: num_unique, offsets: num_unique + 1, positions: B*T).
// dwpe (may be null) += the sum over the batch of dout at each position t < T.
void embedding_backward(float* dwte, float* dwpe, const bf16* dout, const int32_t* ids, const int32_t* offsets,
                        const int32_t* positions, int num_unique, int B, int T, int C, cudaStream_t stream);

}  // namespace muongpt::gpu
