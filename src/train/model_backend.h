// The model a Trainer drives, on the CPU (the reference Gpt<float>) or on the
// GPU (GptCuda). The optimizer, the gradient all-reduce and the checkpoints
// work on host copies of the parameters and gradients:
//   forward/backward per micro-batch -> grads_to_host() -> all-reduce, clip,
//   optimizer step on params() -> params_to_device()
// On the CPU the host copies are the model's own buffers and both transfers
// do nothing. On the GPU this is the first, correct path: the gradients come
// to the host once per step and the updated parameters go back (the fast path
// keeps the optimizer on the GPU: DeviceStep below).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "dist/comm.h"
#include "model/params.h"

namespace muongpt {

// The optimizer step kept on the model's device (the GPU's DeviceOptimizer,
// src/backend/cuda/device_optimizer.h), for one rank: the gradients, the
// optimizer state and the master weights never leave the device during
// training. Checkpoints read and write the state through host copies with the
// host optimizer's names, so checkpoints move between the two paths.
class DeviceStep {
 public:
  virtual ~DeviceStep() = default;
  // Called before the backward of a step's last micro-batch: with several
  // ranks, that backward starts reducing each block's gradients as soon as
  // they are final (overlap), and allreduce_grads() reduces the rest.
  virtual void begin_last_backward() {}
  // Reduces the device gradients over ranks (NCCL) and waits: an all-reduce
  // of replicated ranges, a reduce into the owning rank of sharded ones
  // (dist.zero_stage = 1, dist.muon = owner); nothing with one rank.
  virtual void allreduce_grads() = 0;
  // The max attention logits of the model's last forward (QK-clip); call
  // after every micro-batch.
  virtual void observe_attention_logits() = 0;
  // Gradient norm (computed on the device, the one value read back per step),
  // clipping to max_norm when max_norm > 0 and the norm exceeds it, then the
  // optimizer step `step` (0-based) on the device parameters.
  virtual double clip_and_step(double max_norm, int step) = 0;
  virtual std::vector<std::string> state_names() const = 0;
  virtual std::vector<float> get_state(const std::string& name) const = 0;
  virtual void set_state(const std::string& name, const std::vector<float>& values) = 0;
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  virtual std::string device() const = 0;  // "cpu" or "cuda:<i> (<name>)"
  virtual const ParamTable& table() const = 0;
  // Host copies (see above). params() is authoritative between steps;
  // grads() holds the gradients after grads_to_host() (a GPU backend keeps
  // no host gradient buffer before its first call, so the device-step path
  // never holds one).
  virtual std::vector<float>& params() = 0;
  virtual std::vector<float>& grads() = 0;
  virtual void zero_grad() = 0;
  virtual double forward(const int32_t* tokens, const int32_t* targets, int B, int Tn, const int32_t* doc_ids) = 0;
  // Per-token losses (B x Tn) of the last forward with targets; forward returns their mean.
  virtual std::vector<float> token_losses() const = 0;
  virtual void backward(float loss_scale) = 0;
  virtual std::vector<float> max_attention_logits() const = 0;
  // backward() calls hook(l) as soon as block l's parameter gradients are final
  // (CPU) or their kernels are enqueued on the model's stream (GPU), for
  // l = n_layer-1 down to 0; see train/grad_buckets.h. Empty = none.
  virtual void set_layer_grads_hook(std::function<void(int)> hook) = 0;
  // Windows (as model.attn_window), softmax scale and RoPE frequencies for
  // the following forwards; the trainer sets them each step from the schedule
  // (window_warmup, window_stages).
  virtual void set_attention(const AttentionSettings& settings) = 0;
  virtual void grads_to_host() {}
  virtual void params_to_device() {}
  // Refreshes params() from the device (after device steps, before a checkpoint).
  virtual void params_to_host() {}
  // The device optimizer step for these groups, or null where the optimizer
  // runs on the host copies (the CPU; several ranks in a build without NCCL).
  // Collective over `comm` (it bootstraps NCCL with several ranks); dist
  // gives the timeout and whether gradient reduction overlaps the backward.
  virtual std::unique_ptr<DeviceStep> make_device_step(const OptimConfig& optim, const ScheduleConfig& schedule,
                                                       int total_steps, const std::string& source, Comm& comm,
                                                       const DistConfig& dist) {
    return nullptr;
  }
};

// device: "cpu" or "cuda" (see select_device). Parameters start at zero:
// fill params() (init_params or a checkpoint), then call params_to_device().
std::unique_ptr<ModelBackend> make_model_backend(const std::string& device, const ModelConfig& cfg, int max_batch,
                                                 int max_seq_len);

#if MUONGPT_HAVE_CUDA
std::unique_ptr<ModelBackend> make_cuda_model_backend(const ModelConfig& cfg, int max_batch, int max_seq_len);
#endif

}  // namespace muongpt
