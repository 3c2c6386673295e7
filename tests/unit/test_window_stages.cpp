// Attention windows in stages (schedule.window_stages, speedrun records #29 on)
// with the window-dependent attention scale and YaRN of record #31: the
// schedule against the records' own expressions at every step, YaRN's
// properties, the config checks, and that the trainer trains and evaluates
// with each step's settings. (The exact YaRN frequencies and scales in a
// training run are checked against PyTorch by the late_records reference fixture.)
#include <algorithm>
#include <array>
#include <cmath>

#include "config/config_io.h"
#include "dist/comm.h"
#include "optim/schedule.h"
#include "test_support.h"
#include "train/trainer.h"

using namespace muongpt;
using namespace muongpt::test;

namespace {

// Records #29-#31: 12 layers, long windows on layers 0, 4, 7, 11, the others
// short; windows in 128-token blocks, counted FlashAttention's way.
Config record31_config(int steps, int final_eval) {
  Config cfg;
  ModelConfig& m = cfg.model;
  m.n_layer = 12;
  m.n_head = 6;
  m.d_model = 768;
  m.rope_base = 1024;
  m.rope_frequencies = "half_truncated";
  m.attention_free_layers = {7};
  m.window_counts = "previous";
  m.attn_window = {1408, 704, 704, 704, 1408, 704, 704, 1408, 704, 704, 704, 1408};
  m.attn_scale = 0.1;
  WindowStagesConfig& st = cfg.schedule.window_stages;
  st.windows = {384, 896, 1408};
  st.multiple = 128;
  st.final_eval = final_eval;
  st.scale_log_factor = 0.2;
  st.yarn = true;
  cfg.train.steps = steps;
  return cfg;
}

// The records' get_ws (in blocks), with Python's float arithmetic.
int record_ws(int step, int steps, int ws_validate) {
  const int schedule[3] = {3, 7, 11};
  if (step == steps) return ws_validate;
  const double x = static_cast<double>(step) / (1 + steps);
  return schedule[static_cast<int>(3 * x)];
}

}  // namespace

TEST_CASE("window stages reproduce records #29-#31's windows at every step", "[schedule][window]") {
  const int long_layers[] = {0, 4, 7, 11};
  for (const auto& [steps, ws_validate] : {std::pair{1670, 11}, std::pair{1705, 11}, std::pair{1670, 13}}) {
    const Config cfg = record31_config(steps, ws_validate == 11 ? 0 : ws_validate * 128);
    for (int step = 0; step <= steps; ++step) {
      const int ws = record_ws(step, steps, ws_validate);
      const std::vector<int> w = attention_windows_at(cfg.model, cfg.schedule, step, steps);
      INFO("N " << steps << " step " << step);
      REQUIRE(stage_window_at(cfg.schedule, step, steps) == ws * 128);
      for (int l = 0; l < 12; ++l) {
        const bool is_long = std::find(std::begin(long_layers), std::end(long_layers), l) != std::end(long_layers);
        REQUIRE(w[static_cast<size_t>(l)] == (is_long ? ws * 128 : (ws / 2) * 128));
      }
    }
  }
  // the stage boundaries of record #31 (N = 1670): 557 and 1114
  const Config cfg = record31_config(1670, 13 * 128);
  REQUIRE(stage_window_at(cfg.schedule, 556, 1670) == 384);
  REQUIRE(stage_window_at(cfg.schedule, 557, 1670) == 896);
  REQUIRE(stage_window_at(cfg.schedule, 1113, 1670) == 896);
  REQUIRE(stage_window_at(cfg.schedule, 1114, 1670) == 1408);
  // FlashAttention's window_size = (w, 0) sees w + 1 keys
  ModelConfig m = cfg.model;
  m.attn_window = attention_windows_at(cfg.model, cfg.schedule, 0, 1670);
  REQUIRE(m.window(0) == 385);
  REQUIRE(m.window(1) == 129);
}

TEST_CASE("the attention scale follows record #31's window-dependent rule", "[schedule][window]") {
  const Config cfg = record31_config(1670, 13 * 128);
  // The record: windows [3, 7, 11, 13], factors 0.2 ln(cur/prev) + 1, accumulated from 0.1.
  const double blocks[] = {3, 7, 11, 13};
  double expected = 0.1;
  const int steps_at[] = {0, 557, 1114, 1670};
  for (int i = 0; i < 4; ++i) {
    if (i > 0) expected *= 0.2 * std::log(blocks[i] / blocks[i - 1]) + 1;
    const AttentionSettings a = attention_settings_at(cfg.model, cfg.schedule, steps_at[i], 1670);
    INFO("window " << blocks[i]);
    REQUIRE(std::abs(a.scale - expected) < 1e-15);
  }
  REQUIRE(std::abs(attention_settings_at(cfg.model, cfg.schedule, 1669, 1670).scale - 0.1 * (0.2 * std::log(7.0 / 3) + 1) *
                                                                                        (0.2 * std::log(11.0 / 7) + 1)) <
          1e-15);
  Config constant = cfg;
  constant.schedule.window_stages.scale_log_factor = 0;
  REQUIRE(attention_settings_at(constant.model, constant.schedule, 1670, 1670).scale == 0.1);
}

TEST_CASE("YaRN interpolates slow RoPE pairs and keeps fast ones", "[schedule][window][rope]") {
  const Config cfg = record31_config(1670, 13 * 128);
  const std::vector<double> base = attention_settings_at(cfg.model, cfg.schedule, 0, 1670).rope_freqs;
  const std::vector<double> last = attention_settings_at(cfg.model, cfg.schedule, 1670, 1670).rope_freqs;
  REQUIRE(base.size() == 64);
  REQUIRE(base[0] == 1.0);
  REQUIRE(std::abs(base[31] - 1.0 / 1024) < 1e-18);
  // pair 0 turns 384/(2 pi) = 61 times over the first window (> beta = 32): kept through every change
  REQUIRE(last[0] == base[0]);
  // the slowest pair turns far less than alpha = 1 time: interpolated by 3/7, 7/11 and 11/13, so 3/13 in all
  REQUIRE(std::abs(last[31] / base[31] - 3.0 / 13) < 1e-14);
  // the half-truncated pairs do not rotate, before or after
  for (size_t i = 32; i < 64; ++i) REQUIRE(last[i] == 0.0);
  // every pair in between is scaled by a factor in [3/13, 1], slower pairs more
  for (size_t i = 1; i < 32; ++i) {
    const double f = last[i] / base[i];
    REQUIRE(f >= 3.0 / 13 - 1e-14);
    REQUIRE(f <= 1.0);
    REQUIRE(f <= last[i - 1] / base[i - 1] + 1e-15);
  }
  // within a stage nothing changes; without yarn the frequencies stay the base ones
  REQUIRE(attention_settings_at(cfg.model, cfg.schedule, 556, 1670).rope_freqs == base);
  REQUIRE(attention_settings_at(cfg.model, cfg.schedule, 557, 1670).rope_freqs ==
          attention_settings_at(cfg.model, cfg.schedule, 1113, 1670).rope_freqs);
  Config plain = cfg;
  plain.schedule.window_stages.yarn = false;
  REQUIRE(attention_settings_at(plain.model, plain.schedule, 1670, 1670).rope_freqs == base);
}

TEST_CASE("final_eval_windows replaces layers' windows at the last evaluation only", "[schedule][window]") {
  Config cfg = record31_config(1660, 13 * 128);
  cfg.schedule.window_stages.final_eval_windows = std::vector<int>(12, 0);
  cfg.schedule.window_stages.final_eval_windows[11] = 2560;  // record #33: the final layer at 20 blocks
  const std::vector<int> at_end = attention_windows_at(cfg.model, cfg.schedule, 1660, 1660);
  REQUIRE(at_end == std::vector<int>{1664, 768, 768, 768, 1664, 768, 768, 1664, 768, 768, 768, 2560});
  REQUIRE(attention_windows_at(cfg.model, cfg.schedule, 1659, 1660)[11] == 1408);  // training: the rule's
  // the scale and RoPE follow final_eval (13 blocks), not the longer layer
  Config plain = record31_config(1660, 13 * 128);
  const AttentionSettings a = attention_settings_at(cfg.model, cfg.schedule, 1660, 1660);
  const AttentionSettings b = attention_settings_at(plain.model, plain.schedule, 1660, 1660);
  REQUIRE(a.scale == b.scale);
  REQUIRE(a.rope_freqs == b.rope_freqs);
}

TEST_CASE("extension steps hold the last stage and the final lr (records #35-#39)", "[schedule][window]") {
  // #35-#37: 1,640 scheduled steps and 40 more, stages at 547 and 1,094;
  // #38: 1,630 and 40, stages at 544 and 1,088
  // #39: 2,380 and 40, stages at 794 and 1,588
  for (const auto& [total, stage1, stage2] : {std::array<int, 3>{1680, 547, 1094}, std::array<int, 3>{1670, 544, 1088},
                                              std::array<int, 3>{2420, 794, 1588}}) {
    const int N = total - 40;
    INFO(N << " scheduled steps");
    Config cfg = record31_config(total, 13 * 128);
    cfg.schedule.extension_steps = 40;
    cfg.schedule.kind = "wsd";
    cfg.schedule.cooldown_frac = 0.5;
    cfg.schedule.final_lr_frac = 0.1;
    // the record: x = min(step / (N + 1), 0.9999), ws = (3, 7, 11)[int(3 x)], 13 at the last step
    for (int step = 0; step <= total; ++step) {
      const double x = std::min(static_cast<double>(step) / (N + 1), 0.9999);
      const int ws = step == total ? 13 : std::array<int, 3>{3, 7, 11}[static_cast<size_t>(3 * x)];
      INFO("step " << step);
      REQUIRE(stage_window_at(cfg.schedule, step, total) == ws * 128);
    }
    REQUIRE(stage_window_at(cfg.schedule, stage1 - 1, total) == 384);
    REQUIRE(stage_window_at(cfg.schedule, stage1, total) == 896);
    REQUIRE(stage_window_at(cfg.schedule, stage2 - 1, total) == 896);
    REQUIRE(stage_window_at(cfg.schedule, stage2, total) == 1408);
    // lr: the trapezoid over N steps (cooldown over the last N/2), then its final value
    REQUIRE(lr_factor(cfg.schedule, N / 2 - 1, total) == 1.0);
    const int down = 3 * N / 4;  // in the cooldown: w = (1 - s/N)/0.5, lr w + (1 - w)*0.1
    const double w = (1.0 - static_cast<double>(down) / N) / 0.5;
    REQUIRE(std::abs(lr_factor(cfg.schedule, down, total) - (w + (1 - w) * 0.1)) < 1e-12);
    REQUIRE(lr_factor(cfg.schedule, N - 1, total) > 0.1);
    for (int step = N; step < total; ++step) REQUIRE(std::abs(lr_factor(cfg.schedule, step, total) - 0.1) < 1e-15);
    REQUIRE(scheduled_steps(cfg.schedule, total) == N);
  }
}

TEST_CASE("window stages, gates and MLP-free blocks are checked with clear errors", "[schedule][window][config]") {
  const std::string tiny = source_path("configs/tiny.json");
  const auto check = [&](std::vector<std::string> overrides, std::initializer_list<std::string> needles) {
    require_error([&] { validate_config(load_config(tiny, overrides), "tiny", 1); }, needles);
  };
  const std::string windows = "model.attn_window=[16,8,8,16]";
  check({windows, "schedule.window_stages.windows=[8,12]", "schedule.window_warmup.start=8",
         "schedule.window_warmup.multiple=8"},
        {"schedule.window_stages.windows", "window_warmup"});
  check({windows, "schedule.window_stages.windows=[8,12]", "schedule.window_stages.multiple=8"},
        {"schedule.window_stages.windows[1]", "12 is not a multiple"});
  check({windows, "schedule.window_stages.windows=[8,0]"}, {"windows[1]", "must be positive"});
  check({"schedule.window_stages.windows=[8]"}, {"needs model.attn_window"});
  check({"schedule.window_stages.final_eval=8"}, {"schedule.window_stages.windows", "is empty"});
  check({windows, "schedule.window_stages.windows=[8,64]", "schedule.window_stages.scale_log_factor=-1"},
        {"scale_log_factor", "negative", "8 to 64"});
  check({windows, "schedule.window_stages.windows=[8]", "schedule.window_stages.yarn=true",
         "model.pos_embedding=\"learned\""},
        {"schedule.window_stages.yarn", "rope"});
  check({"model.window_counts=\"previous\"", "model.window_block=4"}, {"model.window_counts", "window_block"});
  check({"model.mlp_free_layers=[9]"}, {"model.mlp_free_layers[0]", "9 is not a layer index"});
  check({"model.attn_gate_dims=1000"}, {"model.attn_gate_dims", "1000"});
  check({"model.smear_gate_dims=-1"}, {"model.smear_gate_dims", "-1"});
  check({"schedule.extension_steps=20", "train.steps=20"}, {"schedule.extension_steps", "20 is outside"});
  check({"model.unet_skips=true", "model.unet_skip_blocks=3"}, {"model.unet_skip_blocks", "3 is outside"});
  check({"model.attention_free_layers=[0,1,2,3]"}, {"model.attention_free_layers", "at least one needs attention"});
  check({"model.unet_skip_gate=\"sigmoid\"", "model.unet_skips=false"}, {"model.unet_skip_gate", "unet_skips"});
  check({windows, "schedule.window_stages.windows=[8]", "schedule.window_stages.final_eval_windows=[0,4]"},
        {"final_eval_windows", "has 2 entries"});
  check({"schedule.window_stages.final_eval_windows=[0,0,0,8]"}, {"schedule.window_stages.windows", "is empty"});
  check({windows, "schedule.window_stages.windows=[8]", "schedule.window_stages.extension_window=16"},
        {"schedule.window_stages.extension_window", "extension_steps is 0"});
  check({windows, "schedule.window_stages.windows=[8]", "schedule.window_stages.extension_window=6",
         "schedule.window_stages.multiple=4", "schedule.extension_steps=2"},
        {"schedule.window_stages.extension_window", "6 is not a multiple"});
  check({"schedule.extension_window=16"}, {"schedule.extension_window"});
  check({"schedule.kind=\"cosine\"", "schedule.extension_lr=\"clamp\""}, {"schedule.extension_lr", "cosine"});
  check({"model.backout_layer=3"}, {"model.backout_layer", "3 is outside [-1, n_layer - 2 = 2]"});
  check({"model.unet_skips=true", "model.unet_skip_layers=[1]"},
        {"model.unet_skip_layers[0]", "1 is not a decoder block in [n_layer/2 = 2, n_layer = 4)"});
  check({"model.unet_skips=true", "model.unet_skip_layers=[3,3]"}, {"model.unet_skip_layers[0]", "listed twice"});
  check({"model.unet_skips=false", "model.unet_skip_layers=[3]"}, {"model.unet_skip_layers", "unet_skips is off"});
  check({"model.unet_skips=true", "model.unet_skip_layers=[3]", "model.unet_skip_blocks=1"},
        {"model.unet_skip_layers", "unet_skip_blocks = 1", "set one"});
  check({"model.unet_skips=true", "model.unet_skip_layers=[3]", "model.attention_free_layers=[3]",
         "model.mlp_free_layers=[3]"},
        {"model.unet_skip_layers[0]", "block 3 is skipped whole"});
  check({"model.init.x0_lambdas=[1.0]"}, {"model.init.x0_lambdas", "has 1 entries"});
  check({"batch.stages=[{\"global_tokens\": 1024, \"seq_len\": 256}]"},
        {"batch.stages[0].seq_len", "256 is outside [1, batch.seq_len = 128]"});
  check({"batch.stages=[{\"global_tokens\": 1024, \"seq_len\": 64}, {\"global_tokens\": 1000, \"seq_len\": 64}]"},
        {"batch.stages[1].global_tokens", "1000 is not a positive multiple of micro_batch*seq_len*world_size = 8*64*1"});
  check({"schedule.peak_changes=[{\"after\": 0.5, \"peak\": 2.0}, {\"after\": 0.4, \"peak\": 3.0}]"},
        {"schedule.peak_changes[1].after", "0.4 is not after the previous change's 0.5"});
  check({"schedule.peak_changes=[{\"after\": 1.0, \"peak\": 2.0}]"}, {"schedule.peak_changes[0].after", "outside [0, 1)"});
  check({"schedule.peak_changes=[{\"after\": 0.5, \"peak\": 0}]"}, {"schedule.peak_changes[0].peak", "positive"});
  check({"schedule.kind=\"cosine\"", "schedule.peak_changes=[{\"after\": 0.5, \"peak\": 2.0}]"},
        {"schedule.peak_changes", "wsd", "cosine"});
  validate_config(load_config(tiny, {windows, "schedule.window_stages.windows=[8,12]",
                                     "schedule.window_stages.final_eval=16", "schedule.window_stages.yarn=true",
                                     "schedule.window_stages.scale_log_factor=0.2"}),
                  "tiny", 1);
}

TEST_CASE("batch stages: step s < N trains stage floor(K s/N), the extension the batch itself", "[schedule][batch]") {
  BatchConfig b;
  b.global_tokens = 393216;
  b.seq_len = 49152;
  b.stages = {{131072, 16384}, {262144, 32768}, {393216, 49152}};
  ScheduleConfig s;
  s.extension_steps = 40;
  const int total = 2160, n = 2120;  // record #46: 2,120 scheduled steps + 40
  long long tokens = 0;
  for (int step = 0; step < total; ++step) {
    INFO("step " << step);
    // the record's get_bs: schedule[int(len(schedule) * step / N)] for step < N, else the extension's
    const long long want = step >= n ? 393216 : std::vector<long long>{131072, 262144, 393216}[static_cast<size_t>(
                                                    3 * (static_cast<double>(step) / n))];
    const BatchShape shape = batch_at(b, s, step, total);
    REQUIRE(shape.global_tokens == want);
    REQUIRE(shape.seq_len == want / 8);
    REQUIRE(tokens_before(b, s, step, total) == tokens);
    tokens += want;
  }
  REQUIRE(batch_at(b, s, 706, total).global_tokens == 131072);  // 3 * 706 / 2120 = 0.9991
  REQUIRE(batch_at(b, s, 707, total).global_tokens == 262144);
  REQUIRE(batch_at(b, s, 1414, total).global_tokens == 393216);
  REQUIRE(tokens_before(b, s, total, total) == tokens);
  b.stages.clear();  // no stages: the one batch, every step
  REQUIRE(batch_at(b, s, 5, total).global_tokens == 393216);
  REQUIRE(tokens_before(b, s, 10, total) == 3932160);
}

TEST_CASE("the wsd peak steps at peak_changes and the cooldown starts from the current peak", "[schedule]") {
  ScheduleConfig s;
  s.kind = "wsd";
  s.cooldown_frac = 0.55;
  s.final_lr_frac = 0.1;
  s.extension_steps = 40;
  s.peak_changes = {{0.33, 1.51}, {0.66, 1.93}};
  const int total = 2160, n = 2120;
  const auto record = [&](int step) {  // record #46's get_lr
    if (step > n) return 0.1;
    double lr_max = 1.0;
    const double x = static_cast<double>(step) / n;
    if (x > 0.33) lr_max = 1.51;
    if (x > 0.66) lr_max = 1.93;
    if (x >= 1 - 0.55) {
      const double w = (1 - x) / 0.55;
      return lr_max * w + (1 - w) * 0.1;
    }
    return lr_max;
  };
  for (int step = 0; step < total; ++step) {
    INFO("step " << step);
    REQUIRE(std::abs(lr_factor(s, step, total) - record(step)) < 1e-15);
  }
  REQUIRE(lr_factor(s, 699, total) == 1.0);  // 699/2120 = 0.3297
  REQUIRE(lr_factor(s, 700, total) == 1.51);
  s.peak_changes.clear();
  REQUIRE(lr_factor(s, 700, total) == 1.0);
}

TEST_CASE("the trainer trains and evaluates each step with the stage's windows, scale and RoPE", "[schedule][window]") {
  const std::vector<std::string> base = {"model.attn_window=[0,16,8,16]", "model.attn_scale=0.3",
                                         "model.window_counts=\"previous\"", "train.steps=4",
                                         "batch.global_tokens=1024", "data.val_tokens=1024"};
  std::vector<std::string> staged = base;
  staged.insert(staged.end(), {"schedule.window_stages.windows=[4,8,16]", "schedule.window_stages.multiple=4",
                               "schedule.window_stages.final_eval=32", "schedule.window_stages.scale_log_factor=0.2",
                               "schedule.window_stages.yarn=true", "schedule.window_stages.yarn_beta=4"});
  const Config scheduled = load_config(source_path("configs/tiny.json"), staged);
  const Config fixed = load_config(source_path("configs/tiny.json"), base);
  validate_config(scheduled, "scheduled", 1);
  validate_config(fixed, "fixed", 1);
  auto comm = make_single_comm();
  Trainer trainer(scheduled, "scheduled", *comm, "cpu");
  Trainer manual(fixed, "fixed", *comm, "cpu");  // settings set by hand
  bool scale_changed = false, rope_changed = false;
  const AttentionSettings first = attention_settings_at(scheduled.model, scheduled.schedule, 0, 4);
  for (int step = 0; step < 4; ++step) {
    const AttentionSettings a = attention_settings_at(scheduled.model, scheduled.schedule, step, 4);
    scale_changed = scale_changed || a.scale != first.scale;
    rope_changed = rope_changed || a.rope_freqs != first.rope_freqs;
    manual.model().set_attention(a);
    const StepStats s = trainer.train_step();
    const StepStats m = manual.train_step();
    INFO("step " << step);
    REQUIRE(s.attn_window == stage_window_at(scheduled.schedule, step, 4));
    REQUIRE(s.train_loss == m.train_loss);
  }
  REQUIRE(scale_changed);
  REQUIRE(rope_changed);
  // the evaluation after the last step uses final_eval (window 32, one more YaRN change)
  const AttentionSettings at_end = attention_settings_at(scheduled.model, scheduled.schedule, 4, 4);
  REQUIRE(at_end.windows == std::vector<int>{0, 32, 16, 32});
  manual.model().set_attention(at_end);
  const double expected = manual.evaluate();
  REQUIRE(trainer.evaluate() == expected);
  manual.model().set_attention(attention_settings_at(scheduled.model, scheduled.schedule, 3, 4));
  REQUIRE(manual.evaluate() != expected);  // the final settings matter, so the comparison above can fail
}

namespace {

// One speedrun record's schedules as its script computes them (records #35 to
// #43: get_lr, get_ws and the Muon momentum), N scheduled steps of `total`.
struct RecordSchedule {
  int N = 0, total = 0;
  double cooldown_frac = 0.5;
  bool lr_over_all_steps = false;  // #41: get_lr divides by num_iterations, extension included
  bool ws_divides_by_n = false;    // #42 on: x = s / N, the extension steps at ws_final
  int momentum = 0;                // 39: kept from step 299 (#39, #40); 41: get_muon_momentum (#41 on); 0: unchecked
  bool batch_peaks = false;        // #46: get_lr's peak 1, 1.51, 1.93 with the batch, 0.1 from step N

  double lr(int s) const {
    if (batch_peaks) {
      if (s > N) return 0.1;
      double lr_max = 1.0;
      const double x = static_cast<double>(s) / N;
      if (x > 0.33) lr_max = 1.51;
      if (x > 0.66) lr_max = 1.93;
      if (x >= 1 - cooldown_frac) {
        const double w = (1 - x) / cooldown_frac;
        return lr_max * w + (1 - w) * 0.1;
      }
      return lr_max;
    }
    const double x = std::min(0.9999, static_cast<double>(s) / (lr_over_all_steps ? total : N));
    if (x < 1 - cooldown_frac) return 1.0;
    const double w = (1 - x) / cooldown_frac;
    return w * 1.0 + (1 - w) * 0.1;
  }
  // (short, long) windows in 128-token blocks; the evaluation after the last step extends the long ones to 20
  std::pair<int, int> ws(int s) const {
    const int schedule[3] = {3, 7, 11};
    if (s == total) return {13 / 2, 20};
    if (ws_divides_by_n && s >= N) return {13 / 2, 13};
    const double x = ws_divides_by_n ? static_cast<double>(s) / N : std::min(static_cast<double>(s) / (1 + N), 0.9999);
    const int w = schedule[static_cast<int>(3 * x)];
    return {w / 2, w};
  }
  double muon_momentum(int s, double previous) const {
    if (momentum == 39) {  // set while s < 300, kept, then the cooldown over the last 50 steps
      double m = previous;
      if (s < 300) m = 0.85 + static_cast<double>(s) / 300 * (0.95 - 0.85);
      if (s > total - 50) m = 0.95 - static_cast<double>(s - (total - 50)) / 50 * (0.95 - 0.85);
      return m;
    }
    if (s < 300) return 0.85 + static_cast<double>(s) / 300 * (0.95 - 0.85);
    if (s > total - 50) return 0.95 - static_cast<double>(s - (total - 50)) / 50 * (0.95 - 0.85);
    return 0.95;
  }
};

}  // namespace

TEST_CASE("configs #35-#46 follow their records' lr, windows and momentum at every step", "[schedule][window]") {
  struct Case {
    const char* config;
    RecordSchedule record;
    long long tokens = 262144;  // per step (8 GPUs x one sequence), from #39 on; #46: its get_bs
  };
  const Case cases[] = {
      {"35_drop_attn", {1640, 1680, 0.5}, 393216},
      {"38_polar_express", {1630, 1670, 0.5}, 393216},
      {"39_custom_batching", {2380, 2420, 0.4, false, false, 39}},
      {"40_backout", {2290, 2330, 0.45, false, false, 39}},
      {"41_normuon", {2275, 2315, 0.45, true, false, 41}},
      {"42_fix_muon_lr", {2245, 2285, 0.5, false, true, 41}},
      {"43_cautious_wd", {2205, 2245, 0.5, false, true, 41}},
      {"45_refine_skip", {2185, 2225, 0.5, false, true, 41}},
      {"46_batch_size_schedule", {2120, 2160, 0.55, false, true, 41, true}},
  };
  const int long_layers[] = {4, 11};
  for (const Case& c : cases) {
    INFO("config " << c.config);
    const Config cfg = load_config(source_path(std::string("configs/speedrun/") + c.config + ".json"), {});
    const RecordSchedule& r = c.record;
    REQUIRE(cfg.train.steps == r.total);
    REQUIRE(scheduled_steps(cfg.schedule, r.total) == r.N);
    double momentum = 0.95;  // the optimizer's constructor value, set at step 0
    for (int s = 0; s <= r.total; ++s) {
      INFO("step " << s);
      if (s < r.total) REQUIRE(std::abs(lr_factor(cfg.schedule, s, r.total) - r.lr(s)) < 1e-15);
      if (s < r.total) {  // get_bs (#46) or the one batch, 8 GPUs x one sequence each
        const long long bs = !r.batch_peaks ? c.tokens
                             : s >= r.N    ? 393216
                                           : std::array<long long, 3>{131072, 262144, 393216}[static_cast<size_t>(
                                                 3 * (static_cast<double>(s) / r.N))];
        const BatchShape b = batch_at(cfg.batch, cfg.schedule, s, r.total);
        REQUIRE(b.global_tokens == bs);
        REQUIRE(b.seq_len == bs / 8);
      }
      const auto [short_ws, long_ws] = r.ws(s);
      const std::vector<int> windows = attention_windows_at(cfg.model, cfg.schedule, s, r.total);
      for (int l = 0; l < 12; ++l) {
        const bool attention = l != 0 && l != 7;
        const bool is_long = std::find(std::begin(long_layers), std::end(long_layers), l) != std::end(long_layers);
        REQUIRE(windows[static_cast<size_t>(l)] == (!attention ? 0 : 128 * (is_long ? long_ws : short_ws)));
      }
      if (r.momentum == 0 || s == r.total) continue;
      momentum = r.muon_momentum(s, momentum);
      for (const OptimGroupConfig& g : cfg.optim.groups)
        if (g.type == "muon") REQUIRE(std::abs(muon_momentum_at(g, s, r.total) - momentum) < 1e-15);
    }
  }
  // #42's extension steps train at 13 blocks: YaRN and the scale change once, from 11 to 13, at step N,
  // and the evaluation after the last step keeps them (as #41's evaluation, which first reaches 13 there)
  const Config c41 = load_config(source_path("configs/speedrun/41_normuon.json"), {});
  const Config c42 = load_config(source_path("configs/speedrun/42_fix_muon_lr.json"), {});
  const AttentionSettings eval41 = attention_settings_at(c41.model, c41.schedule, 2315, 2315);
  const AttentionSettings ext42 = attention_settings_at(c42.model, c42.schedule, 2245, 2285);
  const AttentionSettings last_stage42 = attention_settings_at(c42.model, c42.schedule, 2244, 2285);
  const AttentionSettings eval42 = attention_settings_at(c42.model, c42.schedule, 2285, 2285);
  REQUIRE(ext42.scale == eval41.scale);
  REQUIRE(ext42.rope_freqs == eval41.rope_freqs);
  REQUIRE(eval42.scale == eval41.scale);
  REQUIRE(eval42.rope_freqs == eval41.rope_freqs);
  REQUIRE(eval42.windows == eval41.windows);
  REQUIRE(last_stage42.scale < ext42.scale);
  REQUIRE(last_stage42.rope_freqs != ext42.rope_freqs);
}

TEST_CASE("extension_lr: hold, clamp and continue", "[schedule]") {
  ScheduleConfig s;
  s.kind = "wsd";
  s.cooldown_frac = 0.5;
  s.final_lr_frac = 0.1;
  s.extension_steps = 10;
  REQUIRE(lr_factor(s, 105, 110) == 0.1);  // hold: the final value over the extension steps 100-109
  s.extension_lr = "clamp";                // x = min(0.9999, s/N): w = 0.0002, just above the final value
  REQUIRE(lr_factor(s, 105, 110) == Approx(0.0002 + 0.9998 * 0.1).epsilon(1e-12));
  REQUIRE(lr_factor(s, 100, 110) == lr_factor(s, 109, 110));
  REQUIRE(lr_factor(s, 99, 110) == Approx(0.02 + 0.98 * 0.1));  // the scheduled steps as before
  s.extension_lr = "continue";  // the lr schedule over all 110 steps
  REQUIRE(lr_factor(s, 55, 110) == 1.0);
  const double w = (1 - 99.0 / 110) / 0.5;
  REQUIRE(lr_factor(s, 99, 110) == Approx(w + (1 - w) * 0.1));
  REQUIRE(lr_factor(s, 105, 110) < lr_factor(s, 100, 110));
}
