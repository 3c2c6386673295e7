#include "model/params.h"

#include <cmath>

#include "util/error.h"
#include "util/rng.h"

namespace muongpt {

const char* role_name(ParamRole role) {
  switch (role) {
    case ParamRole::TokenEmbedding: return "token_embedding";
    case ParamRole::PositionEmbedding: return "position_embedding";
    case ParamRole::ValueEmbedding: return "value_embedding";
    case ParamRole::Head: return "head";
    case ParamRole::Matrix: return "matrix";
    case ParamRole::Bias: return "bias";
    case ParamRole::NormWeight: return "norm_weight";
    case ParamRole::NormBias: return "norm_bias";
    case ParamRole::Scalar: return "scalar";
  }
  return "?";
}

std::string ParamSpec::shape_string() const {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += str(i ? ", " : "", shape[i]);
  return s + ")";
}

namespace {
ParamInit normal(double std) { return {ParamInit::Kind::Normal, std, {}}; }
ParamInit uniform(double bound) { return {ParamInit::Kind::Uniform, bound, {}}; }
ParamInit constant(std::vector<double> values) { return {ParamInit::Kind::Constant, 0.0, std::move(values)}; }
}  // namespace

ParamTable::ParamTable(const ModelConfig& m) {
  const int C = m.d_model, F = m.hidden(), L = m.n_layer, Vp = m.padded_vocab_size;
  const InitConfig& ini = m.init;
  auto linear = [&](int fan_in, bool is_output_proj) {
    if (is_output_proj && ini.zero_proj) return constant({0.0});
    const double depth = is_output_proj && ini.scale_proj_by_depth ? 1.0 / std::sqrt(2.0 * L) : 1.0;
    if (ini.linear == "uniform") return uniform(depth * ini.uniform_gain / std::sqrt(static_cast<double>(fan_in)));
    return normal(depth * ini.std);
  };
  const bool layernorm = m.norm == "layernorm";
  auto add_norm = [&](const std::string& prefix) {
    if (layernorm || m.norm_weight) add(prefix + ".weight", {C}, ParamRole::NormWeight, constant({1.0}));
    if (layernorm) add(prefix + ".bias", {C}, ParamRole::NormBias, constant({0.0}));
  };
  auto add_attention = [&](const std::string& b, int l) {
    add_norm(b + "norm1");
    if (m.qkv == "fused") {
      add(b + "attn.qkv.weight", {3 * C, C}, ParamRole::Matrix, linear(C, false), 3);
    } else {
      for (const char* n : {"q", "k", "v"}) add(b + "attn." + n + ".weight", {C, C}, ParamRole::Matrix, linear(C, false));
    }
    if (m.bias) {
      if (m.qkv == "fused") {
        add(b + "attn.qkv.bias", {3 * C}, ParamRole::Bias, constant({0.0}));
      } else {
        for (const char* n : {"q", "k", "v"}) add(b + "attn." + n + ".bias", {C}, ParamRole::Bias, constant({0.0}));
      }
    }
    add(b + "attn.proj.weight", {C, C}, ParamRole::Matrix, linear(C, true));
    if (m.bias) add(b + "attn.proj.bias", {C}, ParamRole::Bias, constant({0.0}));
    if (m.attn_gate_dims > 0) add(b + "attn.gate.weight", {m.n_head, m.attn_gate_dims}, ParamRole::Matrix, constant({0.0}));
    if (m.has_value_lambda(l)) {
      if (m.value_mix == "weighted")
        add(b + "attn.value_lambda", {2}, ParamRole::Scalar, constant({0.5, 0.5}));
      else
        add(b + "attn.value_lambda", {1}, ParamRole::Scalar, constant({0.5}));
    }
  };

  add("tok_embed", {Vp, C}, ParamRole::TokenEmbedding, normal(ini.embed_std));
  if (m.pos_embedding == "learned")
    add("pos_embed", {m.max_seq_len, C}, ParamRole::PositionEmbedding, normal(ini.embed_std));
  for (int t = 0; t < m.value_embeds; ++t)
    add(str("value_embeds.", t), {Vp, C}, ParamRole::ValueEmbedding, normal(ini.embed_std));
  if (m.smear_gate_dims > 0) {
    add("smear.gate.weight", {1, m.smear_gate_dims}, ParamRole::Matrix, constant({0.0}));
    add("smear.lambda", {1}, ParamRole::Scalar, constant({0.0}));
  }
  if (m.embed_norm) add_norm("embed_norm");
  for (int l = 0; l < L; ++l) {
    const std::string b = str("blocks.", l, ".");
    if (m.has_attention(l)) add_attention(b, l);
    if (m.has_x0_mix(l)) add(b + "x0_lambdas", {2}, ParamRole::Scalar, constant(ini.x0_lambdas));
    if (!m.has_mlp(l)) continue;
    add_norm(b + "norm2");
    add(b + "mlp.fc.weight", {F, C}, ParamRole::Matrix, linear(C, false));
    if (m.bias) add(b + "mlp.fc.bias", {F}, ParamRole::Bias, constant({0.0}));
    add(b + "mlp.proj.weight", {C, F}, ParamRole::Matrix, linear(F, true));
    if (m.bias) add(b + "mlp.proj.bias", {C}, ParamRole::Bias, constant({0.0}));
  }
  if (m.unet_skips) add("skip_weights", {L / 2}, ParamRole::Scalar, constant({ini.skip_weight}));
  if (m.backout_layer >= 0) add("backout.lambda", {1}, ParamRole::Scalar, constant({ini.backout_lambda}));
  add_norm("final_norm");
  if (!m.tie_embeddings) {
    ParamInit head = ini.zero_head ? constant({0.0}) : linear(C, false);
    add("lm_head", {Vp, C}, ParamRole::Head, head);
  }
}

void ParamTable::add(const std::string& name, std::vector<int> shape, ParamRole role, ParamInit init,
                     int row_blocks) {
  ParamSpec spec;
  spec.name = name;
  spec.numel = 1;
  for (int d : shape) spec.numel *= static_cast<size_t>(d);
  spec.shape = std::move(shape);
  spec.offset = total_;
  spec.role = role;
  spec.row_blocks = row_blocks;
  spec.init = std::move(init);
  total_ += spec.numel;
  params_.push_back(std::move(spec));
}

const ParamSpec* ParamTable::find(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

size_t ParamTable::offset(const std::string& name) const {
  const ParamSpec* p = find(name);
  if (!p) fail("model has no parameter named ", name);
  return p->offset;
}

template <class T>
void init_params(const ParamTable& table, T* data, uint64_t seed) {
  for (const auto& p : table.params()) {
    T* out = data + p.offset;
    Rng rng(seed, Rng::hash(p.name));
    switch (p.init.kind) {
      case ParamInit::Kind::Normal:
        for (size_t i = 0; i < p.numel; ++i) out[i] = static_cast<T>(p.init.scale * rng.normal());
        break;
      case ParamInit::Kind::Uniform:
        for (size_t i = 0; i < p.numel; ++i) out[i] = static_cast<T>(p.init.scale * (2.0 * rng.uniform() - 1.0));
        break;
      case ParamInit::Kind::Constant:
        for (size_t i = 0; i < p.numel; ++i)
          out[i] = static_cast<T>(p.init.values.size() == 1 ? p.init.values[0] : p.init.values.at(i));
        break;
    }
  }
}

template void init_params<float>(const ParamTable&, float*, uint64_t);
template void init_params<double>(const ParamTable&, double*, uint64_t);

ParamOffsets param_offsets(const ParamTable& table, const ModelConfig& cfg) {
  const auto off = [&](const std::string& name) {
    const ParamSpec* s = table.find(name);
    return s ? s->offset : kAbsentParam;
  };
  ParamOffsets o;
  o.tok_embed = off("tok_embed");
  o.pos_embed = off("pos_embed");
  o.smear_w = off("smear.gate.weight");
  o.smear_lambda = off("smear.lambda");
  o.embn_w = off("embed_norm.weight");
  o.embn_b = off("embed_norm.bias");
  o.skip_w = off("skip_weights");
  o.backout_lambda = off("backout.lambda");
  o.normf_w = off("final_norm.weight");
  o.normf_b = off("final_norm.bias");
  o.head = cfg.tie_embeddings ? o.tok_embed : off("lm_head");
  for (int t = 0; t < cfg.value_embeds; ++t) o.value_embeds.push_back(off(str("value_embeds.", t)));
  const bool fused = cfg.qkv == "fused";
  for (int l = 0; l < cfg.n_layer; ++l) {
    const std::string b = str("blocks.", l, ".");
    BlockParamOffsets ly;
    ly.norm1_w = off(b + "norm1.weight");
    ly.norm1_b = off(b + "norm1.bias");
    ly.qkv_w = off(b + (fused ? "attn.qkv.weight" : "attn.q.weight"));
    ly.qkv_b = off(b + (fused ? "attn.qkv.bias" : "attn.q.bias"));
    ly.proj_w = off(b + "attn.proj.weight");
    ly.proj_b = off(b + "attn.proj.bias");
    ly.gate_w = off(b + "attn.gate.weight");
    ly.value_lambda = off(b + "attn.value_lambda");
    ly.x0_lambdas = off(b + "x0_lambdas");
    ly.norm2_w = off(b + "norm2.weight");
    ly.norm2_b = off(b + "norm2.bias");
    ly.fc_w = off(b + "mlp.fc.weight");
    ly.fc_b = off(b + "mlp.fc.bias");
    ly.mlp_w = off(b + "mlp.proj.weight");
    ly.mlp_b = off(b + "mlp.proj.bias");
    o.blocks.push_back(ly);
  }
  return o;
}

}  // namespace muongpt
