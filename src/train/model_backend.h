// The model a Trainer drives, on the CPU (the reference Gpt<float>) or on the
// GPU (GptCuda). The optimizer, the gradient all-reduce and the checkpoints
// work on host copies of the parameters and gradients:
//   forward/backward per micro-batch -> grads_to_host() -> all-reduce, clip,
//   optimizer step on params() -> params_to_device()
// On the CPU the host copies are the model's own buffers and both transfers
// do nothing. On the GPU this is the first, correct path: the gradients come
// to the host once per step and the updated parameters go back (the fast path
// keeps the optimizer on the GPU).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "model/params.h"

namespace muongpt {

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  virtual std::string device() const = 0;  // "cpu" or "cuda:<i> (<name>)"
  virtual const ParamTable& table() const = 0;
  // Host copies (see above). params() is authoritative between steps.
  virtual std::vector<float>& params() = 0;
  virtual std::vector<float>& grads() = 0;
  virtual void zero_grad() = 0;
  virtual double forward(const int32_t* tokens, const int32_t* targets, int B, int Tn, const int32_t* doc_ids) = 0;
  virtual void backward(float loss_scale) = 0;
  virtual std::vector<float> max_attention_logits() const = 0;
  virtual void grads_to_host() {}
  virtual void params_to_device() {}
};

// device: "cpu" or "cuda" (see select_device). Parameters start at zero:
// fill params() (init_params or a checkpoint), then call params_to_device().
std::unique_ptr<ModelBackend> make_model_backend(const std::string& device, const ModelConfig& cfg, int max_batch,
                                                 int max_seq_len);

#if MUONGPT_HAVE_CUDA
std::unique_ptr<ModelBackend> make_cuda_model_backend(const ModelConfig& cfg, int max_batch, int max_seq_len);
#endif

}  // namespace muongpt
