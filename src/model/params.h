// The parameter table: every trainable tensor of the model with its name,
// shape, offset in the one flat parameter buffer, role and initialisation.
// It drives initialisation, optimizer grouping, checkpoints and (later)
// sharding. `muongpt info` prints it.
//
// Names (L = layer index):
//   tok_embed (Vp, C)            pos_embed (max_seq_len, C)      lm_head (Vp, C)
//   value_embeds.K (Vp, C)
//   embed_norm.{weight,bias}     final_norm.{weight,bias}        skip_weights (L/2)
//   smear.gate.weight (1, K)     smear.lambda (1)                backout.lambda (1)
//   blocks.L.norm1.{weight,bias}  blocks.L.norm2.{weight,bias}
//   blocks.L.attn.qkv.{weight,bias} (3C, C) fused, or attn.{q,k,v}.{weight,bias}
//   blocks.L.attn.proj.{weight,bias} (C, C)     blocks.L.attn.value_lambda (1 lerp, 2 weighted)
//   blocks.L.mlp.fc.{weight,bias} (F, C)        blocks.L.mlp.proj.{weight,bias} (C, F)
//   blocks.L.x0_lambdas (2)
// Blocks in model.attention_free_layers have no norm1.* and no attn.*.
// Separate q/k/v matrices are stored one after another, so the three always
// form one contiguous (3C, C) block that a single matmul reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace muongpt {

enum class ParamRole {
  TokenEmbedding,
  PositionEmbedding,
  ValueEmbedding,
  Head,
  Matrix,
  Bias,
  NormWeight,
  NormBias,
  Scalar
};
const char* role_name(ParamRole role);

struct ParamInit {
  enum class Kind { Normal, Uniform, Constant } kind = Kind::Constant;
  double scale = 0.0;           // std (normal) or bound (uniform)
  std::vector<double> values;   // constant: one value per element, or one for all
};

struct ParamSpec {
  std::string name;
  std::vector<int> shape;  // {rows, cols} or {n}
  size_t offset = 0;
  size_t numel = 0;
  ParamRole role = ParamRole::Scalar;
  int row_blocks = 1;  // Muon orthogonalises this many row blocks separately (fused qkv: 3)
  ParamInit init;

  bool is_matrix() const { return shape.size() == 2; }
  int rows() const { return shape[0]; }
  int cols() const { return shape.size() == 2 ? shape[1] : 1; }
  std::string shape_string() const;
};

class ParamTable {
 public:
  explicit ParamTable(const ModelConfig& cfg);

  const std::vector<ParamSpec>& params() const { return params_; }
  size_t total() const { return total_; }
  // Null when absent.
  const ParamSpec* find(const std::string& name) const;
  // Offset of a parameter that must exist.
  size_t offset(const std::string& name) const;
  bool has(const std::string& name) const { return find(name) != nullptr; }

 private:
  void add(const std::string& name, std::vector<int> shape, ParamRole role, ParamInit init, int row_blocks = 1);
  std::vector<ParamSpec> params_;
  size_t total_ = 0;
};

// Where the model's parameters sit in the flat buffer, for the models' forward
// and backward (CPU and GPU); kAbsentParam where the config has no such
// parameter (the attention fields of attention-free blocks too). `head` is
// the token embedding when the head is tied.
inline constexpr size_t kAbsentParam = static_cast<size_t>(-1);
struct BlockParamOffsets {
  size_t norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, value_lambda, x0_lambdas;  // qkv_*: q's with separate q/k/v
  size_t gate_w;  // attn.gate.weight (model.attn_gate_dims)
  size_t norm2_w, norm2_b, fc_w, fc_b, mlp_w, mlp_b;
};
struct ParamOffsets {
  size_t tok_embed, pos_embed, embn_w, embn_b, skip_w, normf_w, normf_b, head;
  size_t smear_w, smear_lambda;  // model.smear_gate_dims
  size_t backout_lambda;         // model.backout_layer
  std::vector<size_t> value_embeds;  // one per table
  std::vector<BlockParamOffsets> blocks;
};
ParamOffsets param_offsets(const ParamTable& table, const ModelConfig& cfg);

// Fills `data` (table.total() elements) with the initial values, drawing each
// parameter from its own random stream Rng(seed, hash(name)).
template <class T>
void init_params(const ParamTable& table, T* data, uint64_t seed);

}  // namespace muongpt
