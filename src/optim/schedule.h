// Learning-rate and momentum schedules, as functions of the step index
// (0-based index of the optimizer step being taken). With
// schedule.extension_steps E, the lr, window-warmup and window-stage
// schedules are laid over steps - E and hold their final values after it.
//
//   warmup:   step < warmup_steps: (step + 1) / warmup_steps
//   constant: 1
//   wsd:      x = step/steps; peak while x < 1 - cooldown_frac, then
//             w = (1 - x)/cooldown_frac, factor = peak * w + (1 - w) * final_lr_frac
//             (the speedrun's trapezoid; reaches final_lr_frac at step = steps);
//             peak = 1, or that of the last peak_changes entry with x > after
//             (record #46)
//   cosine:   final + (1 - final) * 0.5 (1 + cos(pi p)), p = (step - warmup)/(steps - warmup)
//   linear:   1 + (final - 1) * p
// Muon momentum warmup: linear from momentum_warmup_start to momentum over
// momentum_warmup_steps steps (the speedrun: 0.85 -> 0.95 over 300-500 steps).
// Attention-window warmup (schedule.window_warmup, record #13): each layer's
// window W > 0 grows from `start`, rounded to a multiple of `multiple`:
//   g = start + min(step/steps, 1) * (W - start)
//   w = multiple * floor(g / multiple)          rounding "down" (record #13:
//                                               64 * ((step/1750 * (1792 - 64) + 64) // 64))
//   w = multiple * floor(g / multiple + 1/2)    rounding "nearest" (#16 on: 128 blocks of
//                                               ((1 - x) * 64 + x * 1792 + 64) // 128)
// layers "proportional" (#20 on): only the largest window W_max follows g; with
// n = its multiples, a layer with final window W gets multiple * max(1, floor(n W / W_max))
// (#20's short windows: sliding_window_num_blocks // 2, at least the query's own block).
// Batch stages (batch.stages, record #46): step s < N runs stage
// floor(K * (s / N)), the extension steps batch.global_tokens / batch.seq_len.
// Window stages (schedule.window_stages, records #29 on): step s < N (the
// scheduled steps) runs stage k = floor(K * (s / (N + 1))), or with
// stage_divisor "steps" floor(K * (s / N)) (the records' get_ws, in doubles as
// their Python), the extension steps extension_window (when set), the
// evaluation after the last step final_eval; the largest
// layer sees the stage's window, the others their proportional share. The
// attention scale and the YaRN-rescaled RoPE frequencies follow the window
// history (see WindowStagesConfig in config/config.h).
#pragma once

#include <vector>

#include "config/config.h"

namespace muongpt {

// The steps the schedules are laid over: total_steps less
// schedule.extension_steps, which run at the schedules' final values.
int scheduled_steps(const ScheduleConfig& schedule, int total_steps);
double lr_factor(const ScheduleConfig& schedule, int step, int total_steps);
// The batch of step `step` (batch.stages; the batch itself without stages).
struct BatchShape {
  long long global_tokens = 0;
  int seq_len = 0;
};
BatchShape batch_at(const BatchConfig& batch, const ScheduleConfig& schedule, int step, int total_steps);
// Tokens trained on in steps 0 .. step - 1.
long long tokens_before(const BatchConfig& batch, const ScheduleConfig& schedule, int step, int total_steps);
// AdamW update_every k: the group updates at steps k-1, 2k-1, ... with the
// gradients summed since its last update. Adam's step count t at `step`, or 0
// when the group only sums its gradient at that step.
long adamw_step_count(const OptimGroupConfig& group, int step);
// Muon momentum at `step` of total_steps: the warmup from momentum_warmup_start,
// then `momentum`, then the cooldown over the last momentum_cooldown_steps.
double muon_momentum_at(const OptimGroupConfig& group, int step, int total_steps);
// The attention windows for `step` (steps completed; training step `step`
// and the evaluation after `step` steps use the same windows): model.attn_window
// itself when the warmup is off.
std::vector<int> attention_windows_at(const ModelConfig& model, const ScheduleConfig& schedule, int step,
                                      int total_steps);
// The largest layer's window at `step` under schedule.window_stages (the
// stage's, the extension window, or final_eval at step >= total_steps); 0
// when the stages are off.
int stage_window_at(const ScheduleConfig& schedule, int step, int total_steps);
// Windows, softmax scale and RoPE frequencies at `step`: without window
// stages the scale is model.softmax_scale() and the frequencies those of
// model.rope_base / rope_frequencies.
AttentionSettings attention_settings_at(const ModelConfig& model, const ScheduleConfig& schedule, int step,
                                        int total_steps);
// One YaRN rescaling of RoPE angular frequencies for a window change from
// old_window to new_window tokens (see WindowStagesConfig).
void apply_yarn(std::vector<double>& freqs, int old_window, int new_window, double alpha, double beta);

}  // namespace muongpt
