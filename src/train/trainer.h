// The training loop (model on the CPU reference backend or the GPU, see
// train/model_backend.h; optimizer and all-reduce on host copies).
//
//   for step in [start, steps):
//     [evaluate every eval_every steps, and at step 0]
//     batch = loader.next()                     (prefetched on a thread)
//     for each micro-batch: forward, backward(1 / tokens per global batch)
//     all-reduce gradients (sum over ranks = gradient of the global mean loss)
//     [clip the global gradient norm]
//     optimizer step (Muon + AdamW groups, scheduled lr and momentum)
//     log; [checkpoint every checkpoint_every steps]
//   evaluate, checkpoint, summary.json
//
// Rank 0 alone writes the run directory: config.json (resolved config),
// metrics.jsonl (one JSON object per step and per evaluation), checkpoints
// ckpt_NNNNNNNN.bin and summary.json.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/loader.h"
#include "optim/schedule.h"
#include "dist/comm.h"
#include "optim/optimizer.h"
#include "train/model_backend.h"

namespace muongpt {

struct StepStats {
  int step = 0;  // steps completed after this one
  double train_loss = 0;
  double lr_factor = 0;
  double grad_norm = 0;
  double step_ms = 0, data_ms = 0, forward_ms = 0, backward_ms = 0, comm_ms = 0, optim_ms = 0;
  long long tokens = 0;  // the step's global batch (batch.stages)
  int attn_window = -1;  // largest attention window of the step under a window schedule; -1 = none
  double attn_scale = 0;  // its softmax scale (under a window schedule)
};

// How evaluation runs validation sequences of cfg.val_seq_len() tokens on a
// model whose buffers hold batch.seq_len tokens, under per-layer windows
// `windows` (as model.attn_window): whole when they fit, else in chunks that
// re-read ModelConfig::lookback_tokens earlier tokens (ValSet::Chunking).
// Throws Error naming data.val_seq_len when such chunks cannot be exact: an
// attention block without a window, or windows that need as much context
// as batch.seq_len holds.
ValSet::Chunking val_chunking(const Config& cfg, const std::vector<int>& windows);

class Trainer {
 public:
  // device: "cpu" or "cuda" (from select_device).
  Trainer(const Config& cfg, const std::string& source, Comm& comm, const std::string& device = "cpu");

  // Loads parameters, optimizer state, step and data position.
  void load_checkpoint(const std::string& path);
  // Rank 0 writes `dir/ckpt_<step>.bin` atomically; returns its path.
  std::string save_checkpoint(const std::string& dir);

  StepStats train_step();
  double evaluate();  // mean val loss over data.val_tokens tokens (same on every rank)

  int step() const { return step_; }
  int64_t tokens_seen() const { return tokens_before(cfg_.batch, cfg_.schedule, step_, cfg_.train.steps); }
  const Config& config() const { return cfg_; }
  ModelBackend& model() { return *model_; }
  Optimizer<float>& optimizer() { return optimizer_; }
  // True when the optimizer runs on the device (see DeviceStep).
  bool optimizer_on_device() const { return device_step_ != nullptr; }
  // Micro-steps per step with batch.global_tokens / batch.seq_len (every stage of batch.stages has its own).
  int grad_accum() const { return geometry_.grad_accum; }

 private:
  void check_finite_loss(double loss) const;
  // Sets the step's windows, scale and RoPE frequencies on the model (under
  // a window schedule); returns the largest window, or -1 without one.
  int apply_attention_schedule(double* scale = nullptr);
  Config cfg_;
  std::string source_;
  Comm& comm_;
  BatchGeometry geometry_;
  std::unique_ptr<ModelBackend> model_;
  // Host optimizer. With device_step_ it never steps and so holds no state
  // buffers: it validates the groups and gives the checkpoint state sizes.
  Optimizer<float> optimizer_;
  std::unique_ptr<DeviceStep> device_step_;  // the optimizer on the GPU, when it runs there
  std::unique_ptr<PrefetchingLoader> loader_;
  std::unique_ptr<ValSet> val_;
  int step_ = 0;
};

struct RunOptions {
  std::string config_path;                 // empty with resume: the run directory's config.json
  std::vector<std::string> overrides;      // --set key=value
  std::string out_dir;                     // empty: runs/<name>
  bool resume = false;
  std::string device = "auto";
  std::optional<unsigned long long> seed;  // --seed overrides train.seed
  int stop_at_step = 0;                    // > 0: checkpoint and exit after this step (resume later)
};

// The `train` command: runs a whole training job and writes the run directory.
void run_training(const RunOptions& options);

// Loads the config a command should use: from a file with overrides, or the
// config stored in a checkpoint.
Config resolve_run_config(const RunOptions& options, std::string& source);

// Whether `--device auto` may pick the GPU: false until the CUDA backend has
// passed its GPU test suite on real hardware (README, Status).
inline constexpr bool kCudaBackendVerified = false;

// Picks the backend for `--device` (auto | cpu | cuda), the same policy for
// every command; cuda fails with a clear message when no usable GPU is there.
// verbose: print why auto stays on the CPU when a GPU is present.
std::string select_device(const std::string& requested, bool verbose);

}  // namespace muongpt
