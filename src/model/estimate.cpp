#include "model/estimate.h"

#include "model/params.h"
#include "optim/optimizer.h"

namespace muongpt {

ModelEstimate estimate_model(const Config& cfg) {
  const ModelConfig& m = cfg.model;
  ModelEstimate e;
  ParamTable table(m);
  e.params = static_cast<int64_t>(table.total());
  for (const auto& p : table.params()) {
    if (p.role == ParamRole::TokenEmbedding || p.role == ParamRole::PositionEmbedding ||
        p.role == ParamRole::ValueEmbedding)
      e.embedding_params += static_cast<int64_t>(p.numel);
    if (p.role == ParamRole::Matrix || p.role == ParamRole::Head) e.matmul_params += static_cast<int64_t>(p.numel);
  }
  const int64_t C = m.d_model, Vp = m.padded_vocab_size, L = m.n_layer, F = m.hidden(), H = m.n_head;
  if (m.tie_embeddings) e.matmul_params += Vp * C;
  const int64_t T = cfg.batch.seq_len, B = cfg.batch.micro_batch, N = B * T;
  double keys = 0;  // summed over layers
  for (int l = 0; l < L; ++l) {
    if (!m.has_attention(l)) continue;
    double w = m.window(l);
    if (w > 0 && m.window_block > 0) w -= m.window_block / 2.0;  // whole blocks: a query sees w - b/2 keys on average
    keys += (w <= 0 || w >= T) ? T / 2.0 : w - w * w / (2.0 * T);
  }
  e.attention_flops_per_token = 12.0 * C * keys;
  e.flops_per_token = 6.0 * e.matmul_params + e.attention_flops_per_token;

  e.param_bytes = 4.0 * e.params;
  e.grad_bytes = 4.0 * e.params;
  if (!cfg.optim.groups.empty()) {
    try {
      const auto groups = assign_groups(table, cfg.optim, "");
      for (size_t pi = 0; pi < table.params().size(); ++pi) {
        const OptimGroupConfig& g = cfg.optim.groups[groups.group_of_param[pi]];
        // Muon: momentum; AdamW: m and v, and the summed gradients with update_every > 1
        const double floats = g.type == "adamw" ? (g.update_every > 1 ? 3.0 : 2.0) : 1.0;
        e.optimizer_bytes += 4.0 * floats * table.params()[pi].numel;
      }
    } catch (...) {  // an invalid grouping is reported elsewhere
    }
  }
  // Activations kept for the backward by the CPU reference (see model/gpt.cpp).
  const double per_layer = 14.0 * N * C + 2.0 * N * F + static_cast<double>(B) * H * T * T + 6.0 * N;
  e.activation_bytes = 4.0 * (L * per_layer + 4.0 * N * C + static_cast<double>(N) * Vp + 4.0 * N);
  return e;
}

}  // namespace muongpt
