// The FlexAttention-era model features (speedrun records #14-#18): value
// embeddings and the two value-mix forms, attention-free blocks, whole-block
// sliding windows, half-truncated RoPE and the "nearest" window warmup. The
// model's gradients are checked in test_model_gradcheck.cpp and against
// PyTorch in test_reference.cpp (fixture value_embeds); this file checks the
// parameter table, the masks' reach, the schedules and the config errors.
#include <algorithm>
#include <cmath>

#include "config/config_io.h"
#include "kernels/cpu/rope.h"
#include "model/estimate.h"
#include "model/gpt.h"
#include "model_fixtures.h"
#include "optim/qk_clip.h"
#include "optim/schedule.h"
#include "test_support.h"
#include "util/error.h"

using namespace muongpt;
using namespace muongpt::test;

namespace {

// Which positions' logits change when the token at `changed_pos` changes.
std::vector<bool> reach(const ModelConfig& cfg, int T, const std::vector<int32_t>& doc_ids, int changed_pos) {
  Gpt<double> model(cfg, 1, T);
  model.params() = random_vector<double>(model.params().size(), 5, -0.6, 0.6);
  std::vector<int32_t> tokens(T);
  for (int i = 0; i < T; ++i) tokens[i] = (i * 5 + 1) % cfg.vocab_size;
  model.forward(tokens.data(), nullptr, 1, T, doc_ids.data());
  const size_t V = cfg.padded_vocab_size;
  const std::vector<double> before(model.logits(), model.logits() + T * V);
  tokens[changed_pos] = (tokens[changed_pos] + 1) % cfg.vocab_size;
  model.forward(tokens.data(), nullptr, 1, T, doc_ids.data());
  std::vector<bool> changed(T, false);
  for (int t = 0; t < T; ++t)
    for (size_t v = 0; v < V; ++v)
      if (model.logits()[t * V + v] != before[t * V + v]) changed[t] = true;
  return changed;
}

Config valid_config() {
  Config cfg = load_config(source_path("configs/tiny.json"));
  cfg.model.n_layer = 4;
  return cfg;
}

}  // namespace

TEST_CASE("parameter table: value embeddings, value lambdas, attention-free blocks", "[model][value_embeds]") {
  ModelConfig m = value_embed_model();  // 5 layers, tables {0, 1, -1, 1, 0}, layer 2 attention-free, weighted
  const ParamTable table(m);
  const int C = m.d_model, Vp = m.padded_vocab_size;
  for (const char* name : {"value_embeds.0", "value_embeds.1"}) {
    const ParamSpec* s = table.find(name);
    REQUIRE(s != nullptr);
    REQUIRE(s->shape == std::vector<int>{Vp, C});
    REQUIRE(s->role == ParamRole::ValueEmbedding);
  }
  REQUIRE_FALSE(table.has("value_embeds.2"));
  // weighted: every attention block owns (l0, l1) = (0.5, 0.5), a block without a table too
  for (int l : {0, 1, 3, 4}) {
    const ParamSpec* s = table.find(str("blocks.", l, ".attn.value_lambda"));
    REQUIRE(s != nullptr);
    REQUIRE(s->numel == 2);
    REQUIRE(s->init.values == std::vector<double>{0.5, 0.5});
    REQUIRE(table.has(str("blocks.", l, ".attn.qkv.weight")));
  }
  // the attention-free block keeps only its MLP (and the block's scalars)
  for (const char* part : {"norm1.weight", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.value_lambda"})
    REQUIRE_FALSE(table.has(str("blocks.2.", part)));
  REQUIRE(table.has("blocks.2.mlp.fc.weight"));
  REQUIRE(table.has("blocks.2.x0_lambdas"));
  const ParamOffsets offsets = param_offsets(table, m);
  REQUIRE(offsets.value_embeds.size() == 2);
  REQUIRE(offsets.value_embeds[1] == table.offset("value_embeds.1"));
  REQUIRE(offsets.blocks[2].qkv_w == kAbsentParam);

  // lerp: one lambda (0.5), only in blocks whose V has a source
  m.value_mix = "lerp";
  const ParamTable lerp(m);
  REQUIRE(lerp.find("blocks.0.attn.value_lambda")->numel == 1);
  REQUIRE(lerp.find("blocks.0.attn.value_lambda")->init.values == std::vector<double>{0.5});
  m.value_embed_layers = {0, -1, -1, 1, 0};
  REQUIRE_FALSE(ParamTable(m).has("blocks.1.attn.value_lambda"));

  // the estimate counts value tables as embeddings, not as matmul weights
  Config cfg = valid_config();
  const ModelEstimate plain = estimate_model(cfg);
  cfg.model.value_embeds = cfg.model.n_layer;
  const ModelEstimate with_tables = estimate_model(cfg);
  const int64_t tables = int64_t(cfg.model.n_layer) * cfg.model.padded_vocab_size * cfg.model.d_model;
  REQUIRE(with_tables.embedding_params == plain.embedding_params + tables);
  REQUIRE(with_tables.matmul_params == plain.matmul_params);
}

TEST_CASE("value_mix_plan: the source and coefficients of every layer's value mix", "[model][value_embeds]") {
  using Coef = ModelConfig::ValueMixPlan::Coef;
  ModelConfig m;
  m.n_layer = 4;
  m.value_embeds = 2;
  m.value_embed_layers = {1, -1, 0, 1};
  m.attention_free_layers = {3};
  m.value_mix = "weighted";
  const auto plan = [&](int l) { return m.value_mix_plan(l); };
  REQUIRE((plan(0).learned && plan(0).table == 1 && plan(0).a == Coef::lambda0 && plan(0).c == Coef::lambda1));
  REQUIRE((plan(1).learned && !plan(1).has_source() && plan(1).a == Coef::lambda0 && plan(1).c == Coef::zero));
  REQUIRE((plan(2).table == 0 && !plan(2).first_layer_v));
  REQUIRE(!plan(3).learned);  // attention-free: no mix at all
  REQUIRE((plan(3).a == Coef::one && plan(3).c == Coef::zero));
  m.value_mix = "lerp";  // only layers with a source learn a mix
  REQUIRE((plan(0).a == Coef::one_minus_lambda0 && plan(0).c == Coef::lambda0 && plan(0).table == 1));
  REQUIRE(!plan(1).learned);
  m.value_embeds = 0;
  m.value_embed_layers.clear();
  m.attention_free_layers.clear();
  m.value_residual = true;  // records #9-#13: every layer mixes in layer 0's V
  for (int l = 0; l < 4; ++l)
    REQUIRE((plan(l).learned && plan(l).first_layer_v && plan(l).table < 0 && plan(l).c == Coef::lambda0));
}

TEST_CASE("value embeddings feed V: a token reaches later positions only through attention", "[model][value_embeds]") {
  ModelConfig m = value_embed_model();
  m.document_mask = false;
  m.attn_window = {};
  const int T = 6;
  const std::vector<int32_t> docs(T, 0);
  // changing token 2 changes its own logits and (through attention) every later one
  auto changed = reach(m, T, docs, 2);
  for (int t = 0; t < 2; ++t) REQUIRE_FALSE(changed[t]);
  for (int t = 2; t < T; ++t) REQUIRE(changed[t]);
  // the tables are used: zeroing their lambdas (l1) changes the logits
  Gpt<double> model(m, 1, T);
  model.params() = random_vector<double>(model.params().size(), 9, -0.6, 0.6);
  std::vector<int32_t> tokens = {1, 4, 7, 2, 9, 3};
  model.forward(tokens.data(), nullptr, 1, T);
  const std::vector<double> with(model.logits(), model.logits() + T * m.padded_vocab_size);
  for (int l : {0, 1, 3, 4}) model.params()[model.table().offset(str("blocks.", l, ".attn.value_lambda")) + 1] = 0;
  model.forward(tokens.data(), nullptr, 1, T);
  REQUIRE_FALSE(std::equal(with.begin(), with.end(), model.logits()));
  // ... and a table's rows only matter for the tokens present
  const size_t unused_row = model.table().offset("value_embeds.0") + size_t(20) * m.d_model;
  const std::vector<double> before(model.logits(), model.logits() + T * m.padded_vocab_size);
  model.params()[unused_row] += 1.0;
  model.forward(tokens.data(), nullptr, 1, T);
  REQUIRE(std::equal(before.begin(), before.end(), model.logits()));
}

TEST_CASE("whole-block windows: a query sees whole key blocks", "[model][window]") {
  // one block: position 1 (block 0 of 2-token blocks) with window 4 = 2 blocks
  ModelConfig m = all_features_model();
  m.n_layer = 1;
  m.unet_skips = false;
  m.value_residual = false;
  m.attn_window = {4};
  const int T = 10;
  const std::vector<int32_t> docs(T, 0);
  // token window: query t sees keys t-3..t, so position 1 reaches 1..4
  auto changed = reach(m, T, docs, 1);
  for (int t = 1; t <= 4; ++t) REQUIRE(changed[t]);
  for (int t = 5; t < T; ++t) REQUIRE_FALSE(changed[t]);
  // blocks of 2: queries in blocks 0 and 1 (positions 0..3) see block 0; block 2 (4, 5) does not
  m.window_block = 2;
  changed = reach(m, T, docs, 1);
  for (int t = 1; t <= 3; ++t) REQUIRE(changed[t]);
  for (int t = 4; t < T; ++t) REQUIRE_FALSE(changed[t]);
  // position 2 (block 1) reaches blocks 1 and 2: positions 2..5
  changed = reach(m, T, docs, 2);
  for (int t = 2; t <= 5; ++t) REQUIRE(changed[t]);
  for (int t = 6; t < T; ++t) REQUIRE_FALSE(changed[t]);
  // the mask rule against the record's block mask (q_block - kv_block < blocks) & causal
  cpu::AttentionMask mask{8, nullptr, 4};
  for (int t = 0; t < 24; ++t)
    for (int j = 0; j < 24; ++j) REQUIRE(mask.allowed(0, 24, t, j) == (j <= t && t / 4 - j / 4 < 2));
}

TEST_CASE("an attention-free block passes its input to the MLP", "[model][value_embeds]") {
  ModelConfig m = all_features_model();
  m.value_residual = false;
  m.unet_skips = false;
  m.x0_shortcut = false;
  m.attention_free_layers = {0, 1, 2, 3};  // no attention anywhere (validation refuses this; the model does not care)
  const int T = 5;
  auto changed = reach(m, T, std::vector<int32_t>(T, 0), 2);
  for (int t = 0; t < T; ++t) REQUIRE(changed[t] == (t == 2));  // no mixing across positions at all
  Gpt<double> model(m, 1, T);
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  model.init(1);
  model.forward(tokens.data(), nullptr, 1, T);
  for (double v : model.max_attention_logits()) REQUIRE(v == 0.0);
}

TEST_CASE("half-truncated RoPE: D/4 frequencies from 1 down to 1/base, the rest unrotated", "[rope]") {
  const int Tn = 7, D = 16;
  std::vector<double> cos_t, sin_t;
  cpu::rope_tables(cos_t, sin_t, Tn, D, 1024.0, /*half_truncated=*/true);
  const int half = D / 2;
  for (int t = 0; t < Tn; ++t) {
    REQUIRE(cos_t[t * half + 0] == Approx(std::cos(t)));                 // frequency 1
    REQUIRE(sin_t[t * half + 3] == Approx(std::sin(t / 1024.0)));        // frequency 1/base (i = D/4 - 1)
    REQUIRE(sin_t[t * half + 1] == Approx(std::sin(t * std::pow(1024.0, -1.0 / 3))));
    for (int i = D / 4; i < half; ++i) {
      REQUIRE(cos_t[t * half + i] == 1.0);
      REQUIRE(sin_t[t * half + i] == 0.0);
    }
  }
  // standard frequencies are unchanged by the new argument's default
  std::vector<double> c1, s1, c2, s2;
  cpu::rope_tables(c1, s1, Tn, D, 10000.0);
  cpu::rope_tables(c2, s2, Tn, D, 10000.0, false);
  REQUIRE(c1 == c2);
  REQUIRE(sin_t != s1);
}

TEST_CASE("window warmup 'nearest' reproduces records #16-#18's block counts for every step", "[schedule][window]") {
  ModelConfig m;
  m.n_layer = 12;
  m.attn_window = {1792};
  m.window_block = 128;
  ScheduleConfig s;
  s.window_warmup.start = 64;
  s.window_warmup.multiple = 128;
  s.window_warmup.rounding = "nearest";
  for (int steps : {1480, 1490, 1390}) {
    for (int step = 0; step <= steps; ++step) {
      const double x = static_cast<double>(step) / steps;
      // #16/#17: int(((1 - x) * 64 + x * 1792 + 64) // 128);  #18: int(((1 - x) * 128 + x * 1856) // 128)
      const int blocks_16 = static_cast<int>(std::floor(((1 - x) * 64 + x * 1792 + 64) / 128));
      const int blocks_18 = static_cast<int>(std::floor(((1 - x) * 128 + x * 1856) / 128));
      const int w = attention_windows_at(m, s, step, steps)[0];
      INFO("steps " << steps << ", step " << step);
      REQUIRE(w == 128 * blocks_16);
      REQUIRE(w == 128 * blocks_18);
    }
  }
  REQUIRE(attention_windows_at(m, s, 0, 1490)[0] == 128);
  REQUIRE(attention_windows_at(m, s, 1490, 1490)[0] == 1792);
}

TEST_CASE("the FLOP estimate: whole-block windows and attention-free blocks", "[window][estimate]") {
  Config cfg = valid_config();
  cfg.batch.seq_len = 1024;
  cfg.model.max_seq_len = 1024;
  const double T = 1024, C = cfg.model.d_model;
  cfg.model.attn_window = {256};
  cfg.model.window_block = 64;
  const ModelEstimate blocks = estimate_model(cfg);
  double pairs = 0;  // brute force over (query, key) pairs of the block rule
  cpu::AttentionMask mask{256, nullptr, 64};
  for (int t = 0; t < T; ++t)
    for (int j = 0; j <= t; ++j) pairs += mask.allowed(0, 1024, t, j) ? 1 : 0;
  const double exact = cfg.model.n_layer * 12.0 * C * pairs / T;
  REQUIRE(blocks.attention_flops_per_token == Approx(exact).epsilon(0.01));
  cfg.model.attention_free_layers = {1, 3};
  REQUIRE(estimate_model(cfg).attention_flops_per_token == Approx(blocks.attention_flops_per_token / 2));
}

TEST_CASE("config errors for value embeddings, attention-free blocks and block windows", "[config][value_embeds]") {
  auto expect = [](const std::function<void(Config&)>& edit, std::initializer_list<std::string> needles) {
    Config cfg = valid_config();
    edit(cfg);
    require_error([&] { validate_config(cfg, "t.json", 1); }, needles);
  };
  Config ok = valid_config();
  ok.model.value_embeds = 2;
  ok.model.value_embed_layers = {0, 1, -1, 0};
  ok.model.attention_free_layers = {2};
  ok.model.window_block = 16;
  ok.model.attn_window = {32};
  REQUIRE_NOTHROW(validate_config(ok, "t.json", 1));

  expect([](Config& c) { c.model.value_embeds = 3; }, {"t.json", "model.value_embed_layers", "value_embeds = model.n_layer"});
  expect([](Config& c) { c.model.value_embeds = 2, c.model.value_embed_layers = {0, 1}; }, {"has 2 entries"});
  expect([](Config& c) { c.model.value_embeds = 2, c.model.value_embed_layers = {0, 2, 1, 0}; },
         {"model.value_embed_layers[1]", "2 is not a table index"});
  expect([](Config& c) { c.model.value_embeds = 2, c.model.value_embed_layers = {0, 0, -1, 0}; },
         {"no layer uses value-embedding table 1"});
  expect([](Config& c) { c.model.value_embed_layers = {0, 0, 0, 0}; }, {"model.value_embed_layers", "value_embeds is 0"});
  expect([](Config& c) { c.model.value_embeds = 4, c.model.value_residual = true; }, {"model.value_embeds", "choose one"});
  expect([](Config& c) { c.model.value_embeds = 4, c.model.attention_free_layers = {1}; },
         {"model.value_embed_layers", "layer 1 value-embedding table 1", "attention_free_layers"});
  expect([](Config& c) { c.model.value_embeds = 1, c.model.value_embed_layers = {-1, 0, -1, -1};
                         c.model.attention_free_layers = {1}; },
         {"model.value_embed_layers[1]", "has no V"});
  expect([](Config& c) { c.model.attention_free_layers = {4}; }, {"model.attention_free_layers[0]", "not a layer index"});
  expect([](Config& c) { c.model.attention_free_layers = {0, 1, 2, 3}; }, {"lists every layer"});
  expect([](Config& c) { c.model.value_residual = true, c.model.attention_free_layers = {0}; },
         {"model.value_residual", "layer 0"});
  expect([](Config& c) { c.model.window_block = 16, c.model.attn_window = {24}; },
         {"model.attn_window", "not a multiple of model.window_block = 16"});
  expect([](Config& c) { c.model.window_block = -1; }, {"model.window_block", ">= 0"});
  expect(
      [](Config& c) {
        c.model.window_block = 32, c.model.attn_window = {64};
        c.schedule.window_warmup = {32, 16, 0, "down"};
      },
      {"schedule.window_warmup.multiple", "model.window_block = 32"});
  expect(
      [](Config& c) {
        c.model.attn_window = {64};
        c.schedule.window_warmup = {15, 32, 0, "nearest"};
      },
      {"schedule.window_warmup.start", "half of"});
  expect([](Config& c) { c.model.n_head = 16, c.model.rope_frequencies = "half_truncated"; },  // head dim 4
         {"model.rope_frequencies"});
  // set_attention_windows refuses windows that are not whole blocks
  ModelConfig m = value_embed_model();
  Gpt<float> model(m, 1, 8);
  require_error([&] { model.set_attention_windows({3}); }, {"not a multiple of model.window_block = 2"});
}

TEST_CASE("QK-clip skips attention-free blocks", "[value_embeds][qk_clip]") {
  ModelConfig m = all_features_model();
  m.qk_norm = false;
  m.value_residual = false;
  m.attention_free_layers = {1};
  const ParamTable table(m);
  REQUIRE(qk_params(table, 1).wq == nullptr);
  REQUIRE(qk_params(table, 2).wq != nullptr);
  std::vector<double> params(table.total(), 1.0);
  std::vector<double> max_logits(static_cast<size_t>(m.n_layer) * m.n_head, 0.0);
  max_logits[1 * m.n_head + 0] = 500.0;  // an attention-free block reports no logits; even if it did, nothing to clip
  max_logits[2 * m.n_head + 1] = 200.0;
  REQUIRE(qk_clip(table, params.data(), max_logits.data(), m.n_layer, m.n_head, 100.0, 0.5) == 1);
  const size_t q_head1 = table.offset("blocks.2.attn.qkv.weight") + size_t(m.head_dim()) * m.d_model;
  REQUIRE(params[q_head1] == Approx(std::sqrt(0.5)));
}
