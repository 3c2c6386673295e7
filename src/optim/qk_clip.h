// QK-clip, the "Clip" of Kimi K2's MuonClip (Kimi Team 2025, arXiv
// 2507.20534; per-head form as in Megatron-LM's qk_clip.py).
//
// After the optimizer step, for every layer l and head h whose largest
// pre-softmax attention logit S = scale * q.k in the step's forward passes
// (max over micro-batches and ranks) exceeded tau:
//   g = tau / S
//   W_q[head h rows] *= g^alpha         (and b_q[head h], if the model has biases)
//   W_k[head h rows] *= g^(1 - alpha)   (and b_k[head h])
// Head h's rows of W_q/W_k are h*head_dim .. (h+1)*head_dim - 1 (in the fused
// qkv matrix, k starts at row d_model). q and k of that head then scale by
// g^alpha and g^(1-alpha) (RoPE is linear), so every logit of the head by g:
// the same batch's max becomes exactly tau. Other heads, W_v and the
// optimizer state are untouched. Meaningless with QK-norm (it divides the
// scale out again), which the config validation rejects.
#pragma once

#include "model/params.h"

namespace muongpt {

// Where layer l's q and k live: weight and bias (null without biases) and the
// first row of head 0 in each (the fused qkv matrix holds k from row d_model).
// All null for an attention-free block (model.attention_free_layers); throws
// if a block with attention has no q/k weights.
struct QkParams {
  const ParamSpec *wq = nullptr, *wk = nullptr, *bq = nullptr, *bk = nullptr;
  int q0 = 0, k0 = 0;
};
QkParams qk_params(const ParamTable& table, int layer);

// Rescales the q/k rows of every head whose max logit exceeds tau; returns
// how many heads it rescaled. max_logits: n_layer x n_head (n_layer = the
// table's number of blocks; attention-free blocks are skipped).
template <class T>
int qk_clip(const ParamTable& table, T* params, const T* max_logits, int n_layer, int n_head, double tau,
            double alpha);

}  // namespace muongpt
