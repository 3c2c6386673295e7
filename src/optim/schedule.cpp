#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace muongpt {

double lr_factor(const ScheduleConfig& s, int step, int total_steps) {
  if (step < s.warmup_steps) return static_cast<double>(step + 1) / s.warmup_steps;
  const double final_frac = s.final_lr_frac;
  if (s.kind == "constant") return 1.0;
  if (s.kind == "wsd") {
    const double x = static_cast<double>(step) / total_steps;
    if (s.cooldown_frac <= 0.0 || x < 1.0 - s.cooldown_frac) return 1.0;
    const double w = (1.0 - x) / s.cooldown_frac;
    return w + (1.0 - w) * final_frac;
  }
  const int span = std::max(1, total_steps - s.warmup_steps);
  const double p = std::clamp(static_cast<double>(step - s.warmup_steps) / span, 0.0, 1.0);
  if (s.kind == "cosine") return final_frac + (1.0 - final_frac) * 0.5 * (1.0 + std::cos(M_PI * p));
  return 1.0 + (final_frac - 1.0) * p;  // linear
}

double muon_momentum_at(const OptimGroupConfig& g, int step) {
  if (g.momentum_warmup_steps <= 0 || g.momentum_warmup_start <= 0.0) return g.momentum;
  const double frac = std::min(1.0, static_cast<double>(step) / g.momentum_warmup_steps);
  return (1.0 - frac) * g.momentum_warmup_start + frac * g.momentum;
}

std::vector<int> attention_windows_at(const ModelConfig& model, const ScheduleConfig& schedule, int step,
                                      int total_steps) {
  const WindowWarmupConfig& ww = schedule.window_warmup;
  std::vector<int> windows = model.attn_window;
  if (ww.start <= 0) return windows;
  const int span = std::max(1, ww.steps > 0 ? ww.steps : total_steps);
  const double frac = std::min(1.0, static_cast<double>(step) / span);
  const auto multiples_at = [&](int final_window) {
    const double grown = frac * (final_window - ww.start) + ww.start;  // the record's order of operations
    return static_cast<int>(std::floor(grown / ww.multiple + (ww.rounding == "nearest" ? 0.5 : 0.0)));
  };
  if (ww.layers == "proportional") {
    const int longest = *std::max_element(windows.begin(), windows.end());
    const int64_t n = multiples_at(longest);
    for (int& w : windows)
      if (w != 0) w = ww.multiple * static_cast<int>(std::max<int64_t>(1, n * w / longest));
    return windows;
  }
  for (int& w : windows)
    if (w != 0) w = ww.multiple * multiples_at(w);  // full causal (0) stays full causal
  return windows;
}

}  // namespace muongpt
