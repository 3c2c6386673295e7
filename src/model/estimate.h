// Size, FLOPs and memory of a model configuration, without building it.
//
// FLOPs per trained token (forward + backward):
//   6 * N_matmul + 6 * n_layer * d_model * seq_len
// where N_matmul counts the weights used in matrix multiplies (attention,
// MLP and the lm_head, which is the embedding when tied), and the second
// term is causal attention (QK^T and PV: 12 L C T for full attention,
// halved by the causal mask). This is the convention MFU figures use.
#pragma once

#include <cstdint>

#include "config/config.h"

namespace muongpt {

struct ModelEstimate {
  int64_t params = 0;             // all trainable parameters
  int64_t embedding_params = 0;   // token + position embedding tables
  int64_t matmul_params = 0;      // weights used in matmuls per token
  double flops_per_token = 0;     // forward + backward
  // CPU reference memory (fp32), bytes
  double param_bytes = 0, grad_bytes = 0, optimizer_bytes = 0, activation_bytes = 0;
  double total_bytes() const { return param_bytes + grad_bytes + optimizer_bytes + activation_bytes; }
};

ModelEstimate estimate_model(const Config& cfg);

}  // namespace muongpt
