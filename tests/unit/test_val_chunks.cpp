// Validation sequences longer than the model's buffers (data.val_seq_len >
// batch.seq_len): ValSet evaluates them in chunks that re-read the earlier
// tokens a position's logits depend on, so each token's loss is the one the
// whole sequence gives. Checked on the chunk plan, on a stand-in model whose
// token loss depends on exactly K earlier tokens of its document, and on the
// CPU model through the trainer.
#include <cmath>
#include <random>

#include "config/config_io.h"
#include "data/loader.h"
#include "data/shard.h"
#include "dist/comm.h"
#include "optim/schedule.h"
#include "test_support.h"
#include "train/trainer.h"

using namespace muongpt;
using namespace muongpt::test;

namespace {

constexpr int kBos = 50256;

// A val shard of `n` tokens with documents of random lengths 1..40.
std::string make_val_shard(const std::string& name, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint16_t> tokens(n);
  int left = 0;
  for (auto& t : tokens) {
    if (left-- <= 0) {
      t = kBos;
      left = 1 + static_cast<int>(rng() % 40);
    } else {
      t = static_cast<uint16_t>(rng() % 1000);
    }
  }
  const auto dir = scratch_dir(name);
  write_shard((dir / "val_000000.bin").string(), tokens);
  return (dir / "val_*.bin").string();
}

// The stand-in model's loss at position t of one row: the tokens of t's
// document among positions t-K .. t, each weighted by its distance to t, so
// the loss depends on exactly K earlier tokens and on nothing absolute.
float lookback_loss(const int32_t* inputs, const int32_t* doc_ids, int t, int K) {
  float sum = 0;
  for (int j = std::max(0, t - K); j <= t; ++j)
    if (doc_ids[j] == doc_ids[t]) sum += static_cast<float>(inputs[j] % 97) * static_cast<float>(t - j + 1);
  return sum;
}

Config tiny(const std::vector<std::string>& extra) {
  // larger weights than the tiny config's, so a token's loss depends clearly on its context
  std::vector<std::string> overrides = {"model.init.zero_head=false", "model.init.zero_proj=false",
                                        "model.max_seq_len=512", "train.steps=2",
                                        "model.init.std=0.2", "model.init.embed_std=1.0"};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  Config cfg = load_config(source_path("configs/tiny.json"), overrides);
  validate_config(cfg, "tiny", 1);
  return cfg;
}

}  // namespace

TEST_CASE("the chunk plan scores every position once, each after its full context", "[data][val]") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    ValSet::Chunking c;
    c.max_len = 1 + static_cast<int>(rng() % 64);
    c.align = 1 + static_cast<int>(rng() % 8);
    if (c.align > c.max_len) c.align = 1;
    c.context = static_cast<int>(rng() % static_cast<unsigned>(c.max_len - c.align + 1));  // context + align - 1 < max_len
    const int len = 1 + static_cast<int>(rng() % 300);
    INFO("len " << len << " max_len " << c.max_len << " context " << c.context << " align " << c.align);
    const auto pieces = ValSet::pieces(len, c);
    int next = 0;
    for (const auto& p : pieces) {
      REQUIRE(p.scored_from == next);  // in order, no gap, no position twice
      REQUIRE(p.end > p.scored_from);
      REQUIRE(p.end - p.begin <= std::max(c.max_len, len <= c.max_len ? len : 0));
      REQUIRE(p.begin <= std::max(0, p.scored_from - c.context));  // the whole context is in the chunk
      if (len > c.max_len) REQUIRE(p.begin % c.align == 0);
      next = p.end;
    }
    REQUIRE(next == len);
    if (len <= c.max_len) REQUIRE(pieces.size() == 1);
  }
}

TEST_CASE("chunked evaluation gives each token the loss of the whole sequence", "[data][val]") {
  const std::string pattern = make_val_shard("val_chunks", 3001, 11);
  const int K = 13;  // the stand-in model's lookback
  // 3000 tokens in sequences of 700 (the last one 200), evaluated in chunks of at most 64 tokens
  ValSet val(pattern, "data.val_pattern", 3000, 700, 50257);
  REQUIRE(val.num_sequences() == 5);

  // Reference: each whole sequence at once.
  double whole = 0;
  for (int i = 0; i < val.num_sequences(); ++i) {
    std::vector<int32_t> in, tg;
    val.sequences(i, 1, in, tg);
    std::vector<int32_t> doc(in.size());
    document_ids(in.data(), 1, static_cast<int>(in.size()), doc.data());
    for (int t = 0; t < static_cast<int>(in.size()); ++t) whole += lookback_loss(in.data(), doc.data(), t, K);
  }

  auto chunked = [&](int context, int align, int max_batch, int* max_len_seen) {
    ValSet::Chunking c{64, context, align};
    *max_len_seen = 0;
    return val.loss_sum(0, val.num_sequences(), max_batch, c,
                        [&](const int32_t* inputs, const int32_t*, const int32_t* doc_ids, int n, int len,
                            std::vector<float>& losses) {
                          REQUIRE(n <= max_batch);
                          *max_len_seen = std::max(*max_len_seen, len);
                          for (int r = 0; r < n; ++r)
                            for (int t = 0; t < len; ++t)
                              losses[r * len + t] = lookback_loss(inputs + r * len, doc_ids + r * len, t, K);
                        });
  };
  int max_len_seen = 0;
  for (int align : {1, 8}) {
    for (int max_batch : {1, 3}) {
      INFO("align " << align << " max_batch " << max_batch);
      REQUIRE(chunked(K, align, max_batch, &max_len_seen) == Approx(whole).epsilon(1e-12));
      REQUIRE(max_len_seen == 64);
    }
  }
  // One token of context too few changes the sum: the check above can fail.
  REQUIRE(chunked(K - 1, 1, 1, &max_len_seen) != Approx(whole).epsilon(1e-9));
}

TEST_CASE("the CPU model evaluates long validation sequences in chunks as it would whole", "[data][val][trainer]") {
  auto comm = make_single_comm();
  // Windows on every layer (lookback 15 + 7 + 23 + 7 = 52 tokens, one more with the smear),
  // documents masked; 4 validation sequences of 512 tokens.
  const std::vector<std::string> model = {"model.attn_window=[16,8,24,8]", "model.document_mask=true",
                                          "model.smear_gate_dims=4", "data.val_tokens=2048"};
  for (const bool blocks : {false, true}) {
    std::vector<std::string> m = model;
    if (blocks) m = {"model.attn_window=[16,8,24,8]", "model.window_block=8", "model.document_mask=true",
                     "data.val_tokens=2048"};
    INFO((blocks ? "8-token block windows" : "token windows with a smear"));
    auto with = [&](std::vector<std::string> extra) {
      extra.insert(extra.begin(), m.begin(), m.end());
      return tiny(extra);
    };
    // whole: buffers of 512 tokens; chunked: of 128, the same 512-token sequences
    const Config whole = with({"batch.seq_len=512", "batch.global_tokens=4096"});
    const Config chunked = with({"data.val_seq_len=512"});
    const Config cut = with({});  // 128-token sequences: less context at each cut
    REQUIRE(chunked.val_seq_len() == 512);
    const auto windows = attention_settings_at(chunked.model, chunked.schedule, 0, 2).windows;
    const ValSet::Chunking plan = val_chunking(chunked, windows);
    REQUIRE(plan.max_len == 128);
    REQUIRE(plan.context == (blocks ? 52 : 53));
    REQUIRE(plan.align == (blocks ? 8 : 1));

    Trainer a(whole, "whole", *comm, "cpu");
    Trainer b(chunked, "chunked", *comm, "cpu");
    Trainer c(cut, "cut", *comm, "cpu");
    REQUIRE(a.model().params() == b.model().params());
    const double la = a.evaluate(), lb = b.evaluate(), lc = c.evaluate();
    INFO("whole " << la << " chunked " << lb << " cut " << lc);
    REQUIRE(std::isfinite(la));
    // float forward; the rotary angles of a token differ with its position in the chunk
    REQUIRE(std::abs(la - lb) < 1e-6 * la);
    REQUIRE(std::abs(la - lc) > 1e-4 * la);  // context matters on this model, so the check above can fail
  }
}

TEST_CASE("longer validation sequences need windows on every attention layer and room in a chunk",
          "[data][val][config]") {
  // a full-causal layer: unbounded lookback
  const Config full = tiny({"model.attn_window=[16,0,16,16]", "data.val_seq_len=512"});
  require_error([&] { val_chunking(full, full.model.attn_window); },
                {"data.val_seq_len = 512", "batch.seq_len = 128", "[16, 0, 16, 16]", "full causal"});
  auto comm = make_single_comm();
  require_error([&] { Trainer t(full, "full", *comm, "cpu"); }, {"data.val_seq_len", "full causal"});
  // windows whose lookback fills the chunk
  const Config wide = tiny({"model.attn_window=[64,64,64,64]", "data.val_seq_len=512"});
  require_error([&] { val_chunking(wide, wide.model.attn_window); },
                {"data.val_seq_len = 512", "252 earlier tokens", "no room"});
  // an attention-free layer needs no window; a learned position table is refused by the config check
  const Config free = tiny({"model.attn_window=[16,0,16,16]", "model.attention_free_layers=[1]",
                            "data.val_seq_len=512"});
  REQUIRE(val_chunking(free, free.model.attn_window).context == 45);
  Config learned = tiny({"model.attn_window=[16]"});
  learned.model.pos_embedding = "learned";
  learned.data.val_seq_len = 512;
  require_error([&] { validate_config(learned, "learned.json", 1); },
                {"learned.json", "data.val_seq_len", "relative positions", "learned"});
  // not longer than batch.seq_len: whole sequences, any windows
  const Config shorter = tiny({"data.val_seq_len=64"});
  REQUIRE(val_chunking(shorter, {}).max_len == 128);
}
