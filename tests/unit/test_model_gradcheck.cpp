// The whole model's backward against finite differences (double precision),
// for every feature switched on and for the other variants of each switch.
#include "gradcheck.h"
#include "model/gpt.h"
#include "model_fixtures.h"
#include "model/params.h"
#include "util/error.h"

using namespace muongpt;
using namespace muongpt::test;

namespace {

// Randomises every parameter (zero-initialised ones too) so that every
// gradient path carries signal.
void randomize(Gpt<double>& model, uint64_t seed) {
  auto v = random_vector<double>(model.params().size(), seed, -0.6, 0.6);
  model.params() = v;
}

void check_model_gradients(const ModelConfig& cfg, const std::string& label) {
  INFO("variant: " << label);
  const int B = 2, T = 5;
  Gpt<double> model(cfg, B, T);
  randomize(model, 7);
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (i * 7 + 3) % cfg.vocab_size;
    targets[i] = (i * 11 + 5) % cfg.vocab_size;
  }
  // documents of lengths 2+3 and 1+2+2 (used when cfg.document_mask is on)
  const std::vector<int32_t> doc_ids = {0, 0, 1, 1, 1, 0, 1, 1, 2, 2};
  model.zero_grad();
  const double loss = model.forward(tokens.data(), targets.data(), B, T, doc_ids.data());
  REQUIRE(std::isfinite(loss));
  model.backward(1.0 / (B * T));
  const std::vector<double> analytic = model.grads();
  auto loss_fn = [&] { return model.forward(tokens.data(), targets.data(), B, T, doc_ids.data()); };
  const std::vector<double> numeric = numeric_gradient(model.params(), loss_fn);
  for (const auto& spec : model.table().params()) {
    std::vector<double> a(analytic.begin() + spec.offset, analytic.begin() + spec.offset + spec.numel);
    std::vector<double> n(numeric.begin() + spec.offset, numeric.begin() + spec.offset + spec.numel);
    require_gradient(a, n, spec.name, 1e-5, 1e-8);
  }
}

}  // namespace

TEST_CASE("model gradients, every feature on", "[model][gradcheck]") {
  check_model_gradients(all_features_model(), "all features");
}

TEST_CASE("model gradients, document mask and per-layer sliding windows", "[model][gradcheck]") {
  ModelConfig m = all_features_model();
  m.document_mask = true;
  m.attn_window = {0, 2, 1, 3};
  check_model_gradients(m, "document mask, windows 0/2/1/3");
}

TEST_CASE("model gradients, value embeddings, attention-free block, block windows", "[model][gradcheck]") {
  check_model_gradients(value_embed_model(), "value embeddings (weighted), attention-free layer 2, block windows");
  {
    ModelConfig m = value_embed_model();
    m.value_mix = "lerp";  // record #14's form: lambdas only where a table feeds V
    m.value_embed_layers = {0, -1, -1, 1, 0};
    m.attention_free_layers = {1, 2};
    m.document_mask = false;
    check_model_gradients(m, "value embeddings (lerp), two attention-free layers");
  }
  {
    ModelConfig m = all_features_model();
    m.value_mix = "weighted";  // the value residual with two lambdas
    m.window_block = 2;
    m.attn_window = {2, 4, 0, 2};
    check_model_gradients(m, "value residual (weighted), block windows");
  }
}

TEST_CASE("model gradients, attention gate, MLP-free blocks, windows counting previous tokens", "[model][gradcheck]") {
  {
    ModelConfig m = value_embed_model();  // records #28-#31: gate from the first K channels, no MLP in block 0
    m.attn_gate_dims = 3;
    m.mlp_free_layers = {0, 4};
    m.window_block = 0;
    m.window_counts = "previous";
    m.attn_window = {1, 2, 0, 3, 1};
    check_model_gradients(m, "gate K=3, MLP-free layers 0 and 4, windows counting previous tokens");
  }
  {
    ModelConfig m = all_features_model();
    m.attn_gate_dims = m.d_model;  // the gate reads every channel
    m.mlp_free_layers = {3};
    check_model_gradients(m, "gate K=C, MLP-free last layer");
  }
}

TEST_CASE("model gradients, smear and sigmoid-gated U-net skips", "[model][gradcheck]") {
  {
    ModelConfig m = all_features_model();  // records #32, #34: smear before the embedding norm
    m.smear_gate_dims = 3;
    m.unet_skip_gate = "sigmoid";
    check_model_gradients(m, "smear K=3 before the embedding norm, sigmoid skips");
  }
  {
    ModelConfig m = value_embed_model();
    m.smear_gate_dims = m.d_model;  // the gate reads every channel
    m.embed_norm = false;           // the smeared embedding is x0 itself
    m.unet_skip_gate = "sigmoid";
    check_model_gradients(m, "smear K=C without an embedding norm, sigmoid skips");
  }
}

TEST_CASE("model gradients, a skipped block and fewer U-net skips", "[model][gradcheck]") {
  ModelConfig m = value_embed_model();  // record #35: block 0 has neither sublayer, the last block no skip
  m.n_layer = 6;
  m.value_embed_layers = {-1, 0, 1, -1, 1, 0};
  m.attention_free_layers = {0, 3};
  m.mlp_free_layers = {0};
  m.attn_window = {0, 4, 2, 0, 4, 2};
  m.unet_skip_blocks = 2;
  m.unet_skip_gate = "sigmoid";
  check_model_gradients(m, "block 0 skipped, skips into blocks 3 and 4 only");
}

TEST_CASE("model gradients, one chosen U-net skip (record #45)", "[model][gradcheck]") {
  ModelConfig m = value_embed_model();  // the state after block 1 into block 4 only; backout after block 2
  m.n_layer = 6;
  m.value_embed_layers = {-1, 0, 1, -1, 1, 0};
  m.attention_free_layers = {0, 3};
  m.mlp_free_layers = {0};
  m.attn_window = {0, 4, 2, 0, 4, 2};
  m.unet_skip_layers = {4};
  m.unet_skip_gate = "sigmoid";
  m.backout_layer = 2;
  m.init.x0_lambdas = {1.1, 0.0};
  check_model_gradients(m, "one skip, into block 4");
}

TEST_CASE("model.unet_skip_layers picks the decoder blocks, init.x0_lambdas starts the x0 shortcut", "[model]") {
  ModelConfig m;
  m.n_layer = 12;
  m.unet_skips = true;
  m.x0_shortcut = true;
  m.attention_free_layers = {0, 7};
  m.mlp_free_layers = {0};
  m.init.x0_lambdas = {1.1, 0.0};
  for (int l = 0; l < 12; ++l) REQUIRE(m.unet_skip_source(l) == (l >= 6 ? 12 - l : -1));  // all six
  m.unet_skip_blocks = 5;  // record #35: the last block none
  REQUIRE(m.unet_skip_source(10) == 2);
  REQUIRE(m.unet_skip_source(11) == -1);
  m.unet_skip_blocks = 0;
  m.unet_skip_layers = {7};  // record #45: block 4's output (boundary 5) into block 7
  for (int l = 0; l < 12; ++l) REQUIRE(m.unet_skip_source(l) == (l == 7 ? 5 : -1));
  m.unet_skip_layers = {11, 6};  // any decoder blocks, in any order
  for (int l = 0; l < 12; ++l) REQUIRE(m.unet_skip_source(l) == (l == 6 ? 6 : l == 11 ? 1 : -1));

  const ParamTable table(m);
  std::vector<float> params(table.total());
  init_params(table, params.data(), 1);
  for (int l = 1; l < 12; ++l) {
    const ParamSpec* lam = table.find(str("blocks.", l, ".x0_lambdas"));
    REQUIRE(lam != nullptr);
    CHECK(params[lam->offset] == Approx(1.1f));
    CHECK(params[lam->offset + 1] == 0.0f);
  }
  REQUIRE(table.find("skip_weights")->numel == 6);  // indexed by decoder position, whichever blocks use them
}

TEST_CASE("model gradients, backout", "[model][gradcheck]") {
  {
    ModelConfig m = all_features_model();  // record #40: x_L - lambda * (state after block b) before the final norm
    m.backout_layer = 0;
    check_model_gradients(m, "backout of block 0's output");
  }
  {
    ModelConfig m = value_embed_model();  // the backed-out state is also the first decoder block's U-net skip
    m.n_layer = 6;
    m.value_embed_layers = {-1, 0, 1, -1, 1, 0};
    m.attention_free_layers = {0, 3};
    m.mlp_free_layers = {0};
    m.attn_window = {0, 4, 2, 0, 4, 2};
    m.unet_skip_gate = "sigmoid";
    m.backout_layer = 2;
    check_model_gradients(m, "backout of the state a U-net skip also reads");
  }
}

TEST_CASE("model gradients, switch variants", "[model][gradcheck]") {
  {
    check_model_gradients(other_switches(all_features_model()), kOtherSwitches);
  }
  {
    ModelConfig m = all_features_model();
    m.qk_norm_position = "after_rope";
    m.norm_weight = false;
    m.embed_norm = false;
    m.bias = false;
    m.n_layer = 5;  // odd: the last decoder block has no skip
    check_model_gradients(m, "qk-norm after rope, no weights, odd U-net");
  }
  {
    ModelConfig m = all_features_model();
    m.qk_norm = false;
    m.value_residual = false;
    m.x0_shortcut = false;
    m.unet_skips = false;
    m.pos_embedding = "none";
    check_model_gradients(m, "plain GPT without positions");
  }
}

TEST_CASE("model loss is the mean per-token cross-entropy of the logits", "[model]") {
  ModelConfig cfg = all_features_model();
  const int B = 2, T = 6;
  Gpt<double> model(cfg, B, T);
  model.init(3);
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) tokens[i] = i % 17, targets[i] = (i + 1) % 17;
  const double loss = model.forward(tokens.data(), targets.data(), B, T);
  double sum = 0;
  for (int i = 0; i < B * T; ++i) sum += model.losses()[i];
  REQUIRE(loss == Approx(sum / (B * T)));
  // a forward without targets computes the same logits
  std::vector<double> logits(model.logits(), model.logits() + size_t(B) * T * cfg.padded_vocab_size);
  model.forward(tokens.data(), nullptr, B, T);
  REQUIRE(std::equal(logits.begin(), logits.end(), model.logits()));
  // causality: changing the last token does not change earlier logits
  tokens[T - 1] = (tokens[T - 1] + 5) % 17;
  model.forward(tokens.data(), nullptr, B, T);
  for (int t = 0; t < T - 1; ++t)
    for (int j = 0; j < cfg.padded_vocab_size; ++j)
      REQUIRE(model.logits()[t * cfg.padded_vocab_size + j] == logits[t * cfg.padded_vocab_size + j]);
}

TEST_CASE("out-of-vocabulary tokens and a backout of the last block are rejected with a clear error", "[model]") {
  ModelConfig cfg = all_features_model();
  Gpt<float> model(cfg, 1, 4);
  std::vector<int32_t> tokens = {1, 2, 29, 3};
  require_error([&] { model.forward(tokens.data(), nullptr, 1, 4); }, {"token id 29", "position 2"});
  cfg.backout_layer = cfg.n_layer - 1;  // a model built without validate_config still refuses it
  require_error([&] { Gpt<float> bad(cfg, 1, 4); }, {"model.backout_layer", "outside"});
}

TEST_CASE("document masks and windows cut the dependence on earlier tokens", "[model]") {
  const int T = 10;
  auto logits_after_change = [&](const ModelConfig& cfg, const std::vector<int32_t>& doc_ids, int changed_pos) {
    Gpt<double> model(cfg, 1, T);
    randomize(model, 3);
    std::vector<int32_t> tokens(T);
    for (int i = 0; i < T; ++i) tokens[i] = (i * 5 + 1) % cfg.vocab_size;
    model.forward(tokens.data(), nullptr, 1, T, doc_ids.data());
    const std::vector<double> before(model.logits(), model.logits() + T * cfg.padded_vocab_size);
    tokens[changed_pos] = (tokens[changed_pos] + 1) % cfg.vocab_size;
    model.forward(tokens.data(), nullptr, 1, T, doc_ids.data());
    std::vector<bool> changed(T);
    for (int t = 0; t < T; ++t)
      for (int v = 0; v < cfg.padded_vocab_size; ++v)
        if (model.logits()[t * cfg.padded_vocab_size + v] != before[t * cfg.padded_vocab_size + v]) changed[t] = true;
    return changed;
  };
  const std::vector<int32_t> docs = {1, 1, 1, 1, 2, 2, 2, 2, 2, 2};
  ModelConfig m = all_features_model();
  m.max_seq_len = T;
  // without masks, a change at position 1 reaches every later position
  auto changed = logits_after_change(m, docs, 1);
  for (int t = 1; t < T; ++t) REQUIRE(changed[t]);
  // with the document mask, the second document never sees the first
  m.document_mask = true;
  changed = logits_after_change(m, docs, 1);
  for (int t = 1; t < 4; ++t) REQUIRE(changed[t]);
  for (int t = 4; t < T; ++t) REQUIRE_FALSE(changed[t]);
  // a window of 2 in all 4 layers: position 1 reaches positions 1..5 only
  m.document_mask = false;
  m.attn_window = {2};
  changed = logits_after_change(m, docs, 1);
  for (int t = 1; t <= 5; ++t) REQUIRE(changed[t]);
  for (int t = 6; t < T; ++t) REQUIRE_FALSE(changed[t]);
}
