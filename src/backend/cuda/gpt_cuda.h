// The GPT model on the GPU: the same network as the CPU reference
// (src/model/gpt.cpp), forward and backward, built from the kernels in
// kernels/cuda/ and cuBLASLt matmuls.
//
// Numerics: fp32 master parameters, a bf16 working copy used by every
// kernel, fp32 gradients (accumulated over micro-batches like the CPU),
// bf16 activations, fp32 statistics (norm rstd/mean, attention and
// cross-entropy log-sum-exp, per-token losses).
//
// Memory: the parameters (fp32 + bf16), the gradients and every activation
// and scratch buffer are carved out of device allocations made once in the
// constructor, sized for max_batch x max_seq; forward and backward allocate
// nothing on the device.
//
// Differences from the CPU model that matter to users: attention keeps only
// the per-row log-sum-exp (never the T x T probabilities), and the logits
// buffer is reused for their gradient in the backward.
//
// Value embeddings: each forward gathers every table's rows for the batch's
// tokens (one (N, C) bf16 buffer per table); the backward scatters each
// layer's share (c * dv) into its table's fp32 gradient as soon as the layer
// is done, with the deterministic embedding backward, so tables shared by
// several layers need no extra buffer. Attention-free blocks hold no
// attention activations, MLP-free blocks no MLP activations (their attention
// residual is written straight into the next block's input). Block windows
// (model.window_block) are a mask rule of the attention kernels. The
// attention gate (model.attn_gate_dims) reads its fp32 master weights, like
// the learned scalars of the residual mixes, and keeps the ungated attention
// output and the fp32 gates for the backward. So does the smear
// (model.smear_gate_dims; its gate weight and lambda, its output and gates),
// between the token embedding and the embedding norm. Sigmoid-gated U-net
// skips (model.unet_skip_gate) compute sigmoid(w) on the device as well.
#pragma once

#include <cuda_runtime_api.h>
#include <functional>

#include <cstdint>
#include <memory>
#include <vector>

#include "config/config.h"
#include "model/params.h"

namespace muongpt {

namespace gpu {
class Matmul;
}

class GptCuda {
 public:
  GptCuda(const ModelConfig& cfg, int max_batch, int max_seq_len);
  // Bytes of the one device allocation the constructor makes for this model
  // and batch (parameters fp32 + bf16, gradients, activations, scratch);
  // computed on the host, no GPU needed. Not counted: the optimizer's state
  // and workspace, cuBLASLt's workspace, the CUDA context.
  static size_t device_bytes(const ModelConfig& cfg, int max_batch, int max_seq_len);
  ~GptCuda();
  GptCuda(const GptCuda&) = delete;
  GptCuda& operator=(const GptCuda&) = delete;

  const ModelConfig& config() const;
  const ParamTable& table() const;
  cudaStream_t stream() const;

  // Host <-> device copies of the fp32 master parameters (the bf16 working
  // copy is refreshed from the master on upload) and of the gradients.
  void set_params(const std::vector<float>& host);
  std::vector<float> params() const;
  std::vector<float> grads() const;
  void zero_grad();

  // Same contract as Gpt<T>::forward / backward (host token arrays).
  double forward(const int32_t* tokens, const int32_t* targets, int B, int Tn, const int32_t* doc_ids = nullptr);
  void backward(float loss_scale);

  // Called by backward() once the kernels that finish the gradients of block
  // l's parameters (blocks.l.*) are enqueued on stream(), for l = n_layer-1
  // down to 0 (record an event there to wait for them). Empty = none.
  void set_layer_grads_hook(std::function<void(int)> hook);

  // Sliding-window sizes of the following forwards (as model.attn_window:
  // one entry or one per layer, 0 = full causal); throws Error otherwise.
  void set_attention_windows(const std::vector<int>& windows);
  // Windows, softmax scale and RoPE frequencies (as Gpt<T>::set_attention);
  // the RoPE tables are recomputed and uploaded only when the frequencies change.
  void set_attention(const AttentionSettings& settings);

  // Logits (B*Tn, padded vocab) of the last forward, as floats; before backward.
  std::vector<float> logits() const;
  // Per-token losses (B*Tn) of the last forward with targets.
  const std::vector<float>& token_losses() const { return token_losses_; }
  // Largest pre-softmax attention logit per layer and head (n_layer x n_head).
  std::vector<float> max_attention_logits() const;

  // Device buffers for the optimizer: fp32 master, bf16 copy, fp32 grads,
  // and the max attention logits of the last forward (n_layer x n_head).
  float* device_params();
  void* device_params_bf16();
  float* device_grads();
  const float* device_max_logits() const;
  // The cuBLASLt wrapper the model uses (shared with the optimizer).
  gpu::Matmul& matmul();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<float> token_losses_;  // host copy, filled by forward
};

}  // namespace muongpt
