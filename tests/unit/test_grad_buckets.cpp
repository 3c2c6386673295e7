// Gradient buckets (train/grad_buckets.h) and the model's per-block
// "gradients final" hook that the overlapped all-reduce relies on.
#include <algorithm>
#include <vector>

#include "model/gpt.h"
#include "model_fixtures.h"
#include "test_support.h"
#include "train/grad_buckets.h"

using namespace muongpt;

TEST_CASE("block_of reads the block index of a parameter name", "[buckets]") {
  REQUIRE(block_of("blocks.0.attn.qkv.weight") == 0);
  REQUIRE(block_of("blocks.11.mlp.fc.weight") == 11);
  REQUIRE(block_of("blocks.3.x0_lambdas") == 3);
  REQUIRE(block_of("tok_embed") == -1);
  REQUIRE(block_of("skip_weights") == -1);
  REQUIRE(block_of("blocks.x.attn") == -1);
  REQUIRE(block_of("blocks.7") == -1);
}

TEST_CASE("gradient buckets: one range per block, the rest covers everything else once", "[buckets]") {
  for (bool tied : {true, false}) {
    ModelConfig cfg = test::all_features_model();
    cfg.tie_embeddings = tied;
    INFO("tie_embeddings=" << tied);
    const ParamTable table(cfg);
    const GradBuckets plan = plan_grad_buckets(table, cfg.n_layer);
    REQUIRE(plan.layers.size() == static_cast<size_t>(cfg.n_layer));

    std::vector<int> owner(table.total(), -2);  // -1: rest, l: block l
    for (size_t l = 0; l < plan.layers.size(); ++l)
      for (size_t i = plan.layers[l].begin; i < plan.layers[l].end; ++i) {
        REQUIRE(owner[i] == -2);
        owner[i] = static_cast<int>(l);
      }
    for (const GradRange& r : plan.rest) {
      REQUIRE(r.size() > 0);
      for (size_t i = r.begin; i < r.end; ++i) {
        REQUIRE(owner[i] == -2);
        owner[i] = -1;
      }
    }
    REQUIRE(std::count(owner.begin(), owner.end(), -2) == 0);
    for (const ParamSpec& p : table.params())  // every element of a parameter sits in its block's bucket
      for (size_t i = p.offset; i < p.offset + p.numel; ++i) REQUIRE(owner[i] == block_of(p.name));
    for (size_t i = 1; i < plan.rest.size(); ++i) REQUIRE(plan.rest[i - 1].end < plan.rest[i].begin);  // merged
  }
}

TEST_CASE("gradient buckets fall back to one range when the blocks do not match the layer count", "[buckets]") {
  const ModelConfig cfg = test::all_features_model();
  const ParamTable table(cfg);
  const GradBuckets plan = plan_grad_buckets(table, cfg.n_layer - 1);  // blocks.(L-1) has no bucket
  REQUIRE(plan.layers.empty());
  REQUIRE(plan.rest.size() == 1);
  REQUIRE(plan.rest[0].begin == 0);
  REQUIRE(plan.rest[0].end == table.total());
}

TEST_CASE("the CPU model reports each block's gradients final, last block first", "[buckets]") {
  const ModelConfig cfg = test::all_features_model();
  const int B = 2, T = 6;
  Gpt<float> model(cfg, B, T);
  model.init(5);
  const GradBuckets plan = plan_grad_buckets(model.table(), cfg.n_layer);
  REQUIRE(plan.layers.size() == static_cast<size_t>(cfg.n_layer));
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (7 * i + 3) % cfg.vocab_size;
    targets[i] = (5 * i + 1) % cfg.vocab_size;
  }

  for (int pass = 0; pass < 2; ++pass) {  // the second backward accumulates onto the first
    std::vector<int> order;
    std::vector<std::vector<float>> snapshot(cfg.n_layer);
    model.set_layer_grads_hook([&](int l) {
      order.push_back(l);
      const GradRange r = plan.layers[l];
      snapshot[l].assign(model.grads().begin() + r.begin, model.grads().begin() + r.end);
    });
    model.forward(tokens.data(), targets.data(), B, T);
    model.backward(1.0f / (B * T));
    std::vector<int> expected(cfg.n_layer);
    for (int l = 0; l < cfg.n_layer; ++l) expected[l] = cfg.n_layer - 1 - l;
    REQUIRE(order == expected);
    for (int l = 0; l < cfg.n_layer; ++l) {
      INFO("pass " << pass << " block " << l);
      const GradRange r = plan.layers[l];
      const std::vector<float> final_grads(model.grads().begin() + r.begin, model.grads().begin() + r.end);
      REQUIRE(snapshot[l] == final_grads);
      REQUIRE(std::any_of(final_grads.begin(), final_grads.end(), [](float g) { return g != 0.0f; }));
    }
  }
  model.set_layer_grads_hook(nullptr);
  model.forward(tokens.data(), targets.data(), B, T);
  model.backward(1.0f / (B * T));  // no hook: nothing is called
}
