#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/rope.h"

namespace muongpt {

int scheduled_steps(const ScheduleConfig& schedule, int total_steps) {
  return std::max(1, total_steps - schedule.extension_steps);
}

double lr_factor(const ScheduleConfig& s, int step, int total_steps) {
  if (step < s.warmup_steps) return static_cast<double>(step + 1) / s.warmup_steps;
  if (s.extension_lr != "continue") {
    total_steps = scheduled_steps(s, total_steps);  // extension steps stay at (about) the final value
    step = std::min(step, total_steps);
  }
  const double final_frac = s.final_lr_frac;
  if (s.kind == "constant") return 1.0;
  if (s.kind == "wsd") {
    double x = static_cast<double>(step) / total_steps;
    if (s.extension_lr == "clamp") x = std::min(x, 0.9999);  // the speedrun's get_lr
    double peak = 1.0;
    for (const LrPeakChange& c : s.peak_changes)
      if (x > c.after) peak = c.peak;
    if (s.cooldown_frac <= 0.0 || x < 1.0 - s.cooldown_frac) return peak;
    const double w = (1.0 - x) / s.cooldown_frac;
    return peak * w + (1.0 - w) * final_frac;
  }
  const int span = std::max(1, total_steps - s.warmup_steps);
  const double p = std::clamp(static_cast<double>(step - s.warmup_steps) / span, 0.0, 1.0);
  if (s.kind == "cosine") return final_frac + (1.0 - final_frac) * 0.5 * (1.0 + std::cos(M_PI * p));
  return 1.0 + (final_frac - 1.0) * p;  // linear
}

BatchShape batch_at(const BatchConfig& batch, const ScheduleConfig& schedule, int step, int total_steps) {
  const int n = scheduled_steps(schedule, total_steps);
  if (batch.stages.empty() || step >= n) return {batch.global_tokens, batch.seq_len};
  const size_t k = batch.stages.size();
  const size_t stage = std::min(k - 1, static_cast<size_t>(static_cast<double>(k) * (static_cast<double>(step) / n)));
  return {batch.stages[stage].global_tokens, batch.stages[stage].seq_len};
}

long long tokens_before(const BatchConfig& batch, const ScheduleConfig& schedule, int step, int total_steps) {
  if (batch.stages.empty()) return static_cast<long long>(step) * batch.global_tokens;
  long long sum = 0;
  for (int s = 0; s < step; ++s) sum += batch_at(batch, schedule, s, total_steps).global_tokens;
  return sum;
}

long adamw_step_count(const OptimGroupConfig& g, int step) {
  const long done = static_cast<long>(step) + 1;  // steps completed after this one
  return done % g.update_every == 0 ? done / g.update_every : 0;
}

double muon_momentum_at(const OptimGroupConfig& g, int step, int total_steps) {
  const int cooldown_from = total_steps - g.momentum_cooldown_steps;
  if (g.momentum_cooldown_steps > 0 && step > cooldown_from) {
    const double start = g.momentum_cooldown_start > 0.0 ? g.momentum_cooldown_start : g.momentum;
    const double frac = static_cast<double>(step - cooldown_from) / g.momentum_cooldown_steps;
    return start - frac * (start - g.momentum_cooldown_end);
  }
  if (g.momentum_warmup_steps <= 0 || g.momentum_warmup_start <= 0.0) return g.momentum;
  const double frac = std::min(1.0, static_cast<double>(step) / g.momentum_warmup_steps);
  return (1.0 - frac) * g.momentum_warmup_start + frac * g.momentum;
}

namespace {

// The proportional rule: the largest window gets n multiples, a layer with
// share W gets multiple * max(1, floor(n * W / W_max)); 0 stays 0.
std::vector<int> proportional_windows(std::vector<int> windows, int64_t n, int multiple) {
  const int longest = *std::max_element(windows.begin(), windows.end());
  for (int& w : windows)
    if (w != 0) w = multiple * static_cast<int>(std::max<int64_t>(1, n * w / longest));
  return windows;
}

}  // namespace

std::vector<int> attention_windows_at(const ModelConfig& model, const ScheduleConfig& schedule, int step,
                                      int total_steps) {
  const WindowWarmupConfig& ww = schedule.window_warmup;
  std::vector<int> windows = model.attn_window;
  if (schedule.window_stages.enabled()) {
    const WindowStagesConfig& st = schedule.window_stages;
    const int unit = st.share_unit(model.window_block);
    windows = proportional_windows(windows, stage_window_at(schedule, step, total_steps) / unit, unit);
    if (step >= total_steps)  // per-layer replacements for the evaluation after the last step
      for (size_t l = 0; l < st.final_eval_windows.size(); ++l)
        if (st.final_eval_windows[l] > 0) {
          if (windows.size() == 1) windows.assign(st.final_eval_windows.size(), windows[0]);
          windows[l] = st.final_eval_windows[l];
        }
    return windows;
  }
  if (ww.start <= 0) return windows;
  const int span = std::max(1, ww.steps > 0 ? ww.steps : scheduled_steps(schedule, total_steps));
  const double frac = std::min(1.0, static_cast<double>(step) / span);
  const auto multiples_at = [&](int final_window) {
    const double grown = frac * (final_window - ww.start) + ww.start;  // the record's order of operations
    return static_cast<int>(std::floor(grown / ww.multiple + (ww.rounding == "nearest" ? 0.5 : 0.0)));
  };
  if (ww.layers == "proportional") {
    const int longest = *std::max_element(windows.begin(), windows.end());
    return proportional_windows(windows, multiples_at(longest), ww.multiple);
  }
  for (int& w : windows)
    if (w != 0) w = ww.multiple * multiples_at(w);  // full causal (0) stays full causal
  return windows;
}

namespace {

// Position of `step` in WindowStagesConfig::window_sequence(): stage
// floor(K * step / (N + 1)) (or / N, stage_divisor) for a training step, N
// the scheduled steps; the extension window (or the last stage) for an
// extension step; the final evaluation's at step >= total_steps.
size_t stage_index_at(const ScheduleConfig& schedule, int step, int total_steps) {
  const WindowStagesConfig& st = schedule.window_stages;
  const size_t K = st.windows.size();
  if (step >= total_steps) return st.window_sequence().size() - 1;
  const int scheduled = scheduled_steps(schedule, total_steps);
  if (step >= scheduled) return st.extension_window > 0 ? K : K - 1;
  const int divisor = st.stage_divisor == "steps" ? scheduled : scheduled + 1;
  const double x = static_cast<double>(std::max(step, 0)) / divisor;  // the record's order of operations
  return std::min(static_cast<size_t>(static_cast<double>(K) * x), K - 1);
}

}  // namespace

int stage_window_at(const ScheduleConfig& schedule, int step, int total_steps) {
  const WindowStagesConfig& st = schedule.window_stages;
  return st.enabled() ? st.window_sequence()[stage_index_at(schedule, step, total_steps)] : 0;
}

void apply_yarn(std::vector<double>& freqs, int old_window, int new_window, double alpha, double beta) {
  const double ratio = static_cast<double>(old_window) / new_window;
  for (double& f : freqs) {
    const double turns = old_window * f / (2.0 * M_PI);
    const double keep = std::clamp((turns - alpha) / (beta - alpha), 0.0, 1.0);
    f *= ratio + keep * (1.0 - ratio);
  }
}

AttentionSettings attention_settings_at(const ModelConfig& model, const ScheduleConfig& schedule, int step,
                                        int total_steps) {
  AttentionSettings out;
  out.windows = attention_windows_at(model, schedule, step, total_steps);
  out.scale = model.softmax_scale();
  if (model.pos_embedding == "rope")
    out.rope_freqs = cpu::rope_frequencies(model.head_dim(), model.rope_base, model.rope_frequencies == "half_truncated");
  const WindowStagesConfig& st = schedule.window_stages;
  if (!st.enabled()) return out;
  const std::vector<int> sequence = st.window_sequence();
  const size_t k_now = stage_index_at(schedule, step, total_steps);
  const int current = sequence[k_now];
  // YaRN: replay every window change from the first stage up to this step's.
  if (st.yarn) {
    for (size_t k = 1; k <= k_now; ++k) {
      const int before = sequence[k - 1], after = sequence[k];
      if (after != before) apply_yarn(out.rope_freqs, before, after, st.yarn_alpha, st.yarn_beta);
    }
  }
  // scale(w_j) = scale(w_{j-1}) * (1 + f ln(w_j / w_{j-1})) over the windows in order of first use.
  const std::vector<int> used = st.distinct_windows();
  for (size_t j = 1; j < used.size() && used[j - 1] != current; ++j)
    out.scale *= 1.0 + st.scale_log_factor * std::log(static_cast<double>(used[j]) / used[j - 1]);
  return out;
}

}  // namespace muongpt
