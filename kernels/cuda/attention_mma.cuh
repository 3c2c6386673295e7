// Tensor-core attention (mma.sync m16n8k16, bf16 in, fp32 accumulate): the
// launchers behind attention_forward/attention_backward (attention.cuh) when
// the tensor-core kernel is chosen. Same math, masks, layouts and outputs as
// the CUDA-core kernels; the algorithm is in attention_mma.cu.
// Internal to kernels/cuda: the caller has checked the sizes and pointers.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu::attention_detail {

// Head dims with a tensor-core kernel.
inline bool mma_head_dim_supported(int D) { return D == 64 || D == 128; }

// Rows start 16-byte aligned: every pointer aligned and D a multiple of 8
// (true for the supported head dims).
inline bool mma_pointers_aligned(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (!aligned16(p)) return false;
  return true;
}

// out, lse written; max_key (H): atomicMax of ordered_key(max logit) when not
// null (zeroed by the caller). B, T, H >= 1.
void attention_forward_mma(bf16* out, float* lse, unsigned* max_key, const bf16* q, const bf16* k, const bf16* v,
                           int B, int T, int H, int D, float scale, int window, int window_block,
                           const int32_t* doc_ids, cudaStream_t stream);

// dq, dk, dv written; delta (B, H, T) = dout . out, computed by the caller.
void attention_backward_mma(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* delta,
                            const bf16* q, const bf16* k, const bf16* v, int B, int T, int H, int D, float scale,
                            int window, int window_block, const int32_t* doc_ids, cudaStream_t stream);

}  // namespace muongpt::gpu::attention_detail
