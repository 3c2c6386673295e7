// Size, FLOPs and memory of a model configuration, without building it.
//
// FLOPs per trained token (forward + backward):
//   6 * N_matmul + 12 * d_model * sum over layers of keys(layer)
// where N_matmul counts the weights used in matrix multiplies (attention,
// MLP and the lm_head, which is the embedding when tied), and the second
// term is attention (QK^T and PV, forward + backward: 12 C FLOPs per
// query-key pair) with keys(layer) the mean number of keys a query sees:
// T/2 under the causal mask (so the term is the usual 6 L C T), and
// w - w^2/(2T) with a sliding window of w < T tokens (the mean of min(t, w)
// over positions, equal to T/2 at w = T; with model.window_block b the
// whole-block window of w tokens counts as w - b/2, its mean reach; blocks
// in model.attention_free_layers count 0). Windows are the config's
// model.attn_window (the final sizes under schedule.window_warmup); document
// masks depend on the data and are not counted. This is the convention MFU
// figures use.
#pragma once

#include <cstdint>

#include "config/config.h"

namespace muongpt {

struct ModelEstimate {
  int64_t params = 0;             // all trainable parameters
  int64_t embedding_params = 0;   // token, position and value embedding tables
  int64_t matmul_params = 0;      // weights used in matmuls per token
  double flops_per_token = 0;     // forward + backward
  double attention_flops_per_token = 0;  // of flops_per_token: the attention term
  // CPU reference memory (fp32), bytes
  double param_bytes = 0, grad_bytes = 0, optimizer_bytes = 0, activation_bytes = 0;
  double total_bytes() const { return param_bytes + grad_bytes + optimizer_bytes + activation_bytes; }
};

ModelEstimate estimate_model(const Config& cfg);

}  // namespace muongpt
