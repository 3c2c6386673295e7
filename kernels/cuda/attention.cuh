// Causal multi-head attention, forward and backward, FlashAttention-2 style,
// in two implementations behind one API: CUDA cores (fp32 math, any even head
// dim up to 128; this file's algorithm notes) and tensor cores (mma.sync bf16
// with fp32 accumulation, head dims 64 and 128; attention_mma.cu).
//
// Math (kernels/cpu/attention.h is the specification): for batch b, head h,
// query t and key j,
//   allowed(t, j) = j <= t  and (window == 0 or t - j < window)
//                           and (doc_ids == null or doc[b,t] == doc[b,j])
//   (block windows, window_block = b > 0: floor(t/b) - floor(j/b) < window/b
//    in place of t - j < window: whole blocks of b keys)
//   s_tj = scale * q_t . k_j      lse_t = log sum_{allowed j} exp(s_tj)
//   P_tj = exp(s_tj - lse_t)      out_t = sum_j P_tj v_j
// Backward, with delta_t = dout_t . out_t (= sum_j P_tj dP_tj):
//   dP_tj = dout_t . v_j          dS_tj = P_tj (dP_tj - delta_t)
//   dq_t = scale sum_j dS_tj k_j  dk_j = scale sum_t dS_tj q_t   dv_j = sum_t P_tj dout_t
//
// Algorithm on CUDA cores (attention_mma.cu has the tensor-core one, which
// keeps the same structure on 64-row tiles). Forward: one block per (b, h, tile of 32 queries); it walks the
// key tiles of 32 that the mask can reach (causal and window bounds, token or
// block windows, decide the range, a tile no query of the block may see under
// the document mask is skipped), keeping a running max m, sum l and
// unnormalised output per query (online softmax); out = acc / l, lse = m + log l. The T x T matrix is never
// stored. Backward: delta by one warp per row, then dk/dv by one block per
// key tile walking the query tiles that can see it, and dq by one block per
// query tile walking its key tiles (like the forward); both recompute P from
// the saved lse, so no atomics: every sum runs in a fixed order and reruns
// give the same bits.
//
// Layout: q, k, v, out, dout, dq, dk, dv (B, T, H, D) bf16 contiguous;
// lse (B, H, T) fp32; max_logit (H) fp32; doc_ids (B, T) int32.
// A query that may see no key (impossible with causal masks: the diagonal is
// visible) gets out = 0, lse = -inf, and zero gradients.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

constexpr int kAttentionMaxHeadDim = 128;

// Which implementation runs.
//   kCudaCores    fp32 math on CUDA cores, every supported size.
//   kTensorCores  mma.sync; head dim 64 or 128 and 16-byte aligned tensors,
//                 else std::invalid_argument.
//   kAuto         tensor cores where they apply once they have passed the GPU
//                 tests on real hardware (kTensorCoreAttentionVerified), else
//                 CUDA cores.
enum class AttentionKernel { kAuto, kCudaCores, kTensorCores };
inline constexpr bool kTensorCoreAttentionVerified = false;

// "auto", "cuda_cores", "tensor_cores" (the config's model.attention_kernel).
const char* attention_kernel_name(AttentionKernel kernel);
// Throws std::invalid_argument naming the value and the choices.
AttentionKernel parse_attention_kernel(const std::string& name);

// out, lse: written. max_logit: (H) or null; when given it is written (not
// accumulated) with the max over b, t and allowed j of s_tj (-inf if none).
// window: 0 = full causal, else query t sees keys j with t - j < window.
// window_block: 0 = token windows as above; b > 0 = query t sees keys j with
// floor(t/b) - floor(j/b) < window/b (window must then be a multiple of b;
// unused when window is 0). doc_ids: (B, T) or null. D: even, 2..128.
// Throws std::invalid_argument for impossible sizes or missing pointers.
void attention_forward(bf16* out, float* lse, float* max_logit, const bf16* q, const bf16* k, const bf16* v,
                       int B, int T, int H, int D, float scale, int window, int window_block,
                       const int32_t* doc_ids, cudaStream_t stream, AttentionKernel kernel = AttentionKernel::kAuto);

// floats of scratch that attention_backward needs (delta, (B, H, T)).
size_t attention_backward_scratch_floats(int B, int T, int H);

// dq, dk, dv written (not accumulated), (B, T, H, D) bf16; they must not alias
// the inputs. out and lse are the forward's outputs for the same inputs and mask
// (window, window_block, doc_ids).
void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const float* lse,
                        const bf16* q, const bf16* k, const bf16* v, int B, int T, int H, int D, float scale,
                        int window, int window_block, const int32_t* doc_ids, float* scratch, cudaStream_t stream,
                        AttentionKernel kernel = AttentionKernel::kAuto);

}  // namespace muongpt::gpu
