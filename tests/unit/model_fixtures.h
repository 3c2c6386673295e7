// Small model configurations shared by the model tests.
#pragma once

#include "config/config.h"

namespace muongpt::test {

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

}  // namespace muongpt::test
