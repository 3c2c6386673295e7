// Small model and optimizer configurations shared by the model and optimizer
// tests (CPU and GPU).
#pragma once

#include "config/config.h"

namespace muongpt::test {

// A plain model whose matrices are large enough for Newton-Schulz to matter
// (the GPU optimizer tests).
inline ModelConfig optimizer_test_model() {
  ModelConfig m;
  m.vocab_size = 40;
  m.padded_vocab_size = 48;
  m.n_layer = 2;
  m.n_head = 4;
  m.d_model = 32;
  m.mlp_hidden = 80;
  m.max_seq_len = 16;
  return m;
}

// Every feature of the dense-attention era switched on.
inline ModelConfig all_features_model() {
  ModelConfig m;
  m.vocab_size = 29;
  m.padded_vocab_size = 32;
  m.n_layer = 4;
  m.n_head = 2;
  m.d_model = 8;
  m.mlp_hidden = 12;
  m.max_seq_len = 16;
  m.pos_embedding = "rope";
  m.norm = "rmsnorm";
  m.norm_weight = true;
  m.embed_norm = true;
  m.qkv = "fused";
  m.bias = true;
  m.qk_norm = true;
  m.attn_scale = 0.4;
  m.activation = "relu2";
  m.tie_embeddings = false;
  m.logit_softcap = 3.0;
  m.attn_residual_scale = 0.8;
  m.value_residual = true;
  m.x0_shortcut = true;
  m.unet_skips = true;
  return m;
}

// The FlexAttention-era block (records #15-#18): value embeddings (two
// tables, one shared by two layers, layers without one) mixed with two
// lambdas, an attention-free block, half-truncated RoPE (head dim 8), whole-
// block windows of 2-token blocks and document masks, on the all-features base
// without the value residual.
inline ModelConfig value_embed_model() {
  ModelConfig m = all_features_model();
  m.n_layer = 5;
  m.d_model = 16;
  m.value_residual = false;
  m.value_embeds = 2;
  m.value_embed_layers = {0, 1, -1, 1, 0};
  m.value_mix = "weighted";
  m.attention_free_layers = {2};
  m.rope_frequencies = "half_truncated";
  m.rope_base = 1024;
  m.window_block = 2;
  m.attn_window = {0, 4, 2, 2, 4};
  m.document_mask = true;
  return m;
}

// The other side of the switches that change the block's structure:
// LayerNorm, GELU, learned positions, separate q/k/v, tied head, padded logits
// masked, no softcap.
inline ModelConfig other_switches(ModelConfig m) {
  m.norm = "layernorm";
  m.activation = "gelu";
  m.pos_embedding = "learned";
  m.qkv = "separate";
  m.tie_embeddings = true;
  m.mask_padded_logits = true;
  m.logit_softcap = 0;
  return m;
}
constexpr const char* kOtherSwitches = "layernorm, gelu, learned positions, separate qkv, tied, masked padding";

// A Muon group "hidden" over every attention and MLP weight matrix.
inline OptimGroupConfig muon_group(double lr = 0.05) {
  OptimGroupConfig g;
  g.name = "hidden";
  g.type = "muon";
  g.params = {"blocks.*.attn.*.weight", "blocks.*.mlp.*.weight"};
  g.lr = lr;
  g.momentum = 0.9;
  return g;
}

// `muon`, then an AdamW group "rest" taking every other parameter (rest_lr 0
// leaves them unchanged).
inline OptimConfig muon_and_rest(const OptimGroupConfig& muon, double rest_lr = 0.01, double rest_weight_decay = 0.1) {
  OptimGroupConfig rest;
  rest.name = "rest";
  rest.params = {"*"};
  rest.lr = rest_lr;
  rest.weight_decay = rest_weight_decay;
  OptimConfig oc;
  oc.groups = {muon, rest};
  return oc;
}

// One AdamW group "all" over every parameter (other fields at their defaults).
inline OptimConfig adamw_only(double lr) {
  OptimGroupConfig all;
  all.name = "all";
  all.params = {"*"};
  all.lr = lr;
  OptimConfig oc;
  oc.groups = {all};
  return oc;
}

}  // namespace muongpt::test
