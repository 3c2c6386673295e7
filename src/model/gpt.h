// The GPT model on the CPU: forward and backward of the whole network,
// written as a sequence of reference-kernel calls (kernels/cpu). This is the
// readable specification that every other backend is tested against.
//
// One block (pre-norm; optional features in brackets):
//   [x = x + w_i * skip_i]                       U-net decoder blocks
//   [x = l0 * x + l1 * x0]                       x0 shortcut
//   h = norm1(x);  q,k,v = split(h Wqkv^T [+ b])
//   [v = a v + c s]                               value mix: s = v_first (value residual)
//                                                or a value-embedding row; lerp a = 1-l,
//                                                c = l; weighted a = l0, c = l1
// (attention-free blocks skip from norm1 to the attention residual add)
//   q,k = rope/qk-norm(q,k);  y = causal_attention(q, k, v)
//   [y_h = sigmoid(h[:K] . Wgate_h) * y_h]        attention output gate (record #28)
//   x = x + s * (y Wproj^T [+ b])
//   x = x + act(norm2(x) Wfc^T [+ b]) Wmlp^T [+ b]  (not in MLP-free blocks)
// Model: x0 = [norm](smear(tok_embed[tokens] [+ pos_embed])); blocks; logits =
// norm(x [- lambda * x_b]) Whead^T (backout: x_b = the state after block
// model.backout_layer); loss = mean cross-entropy of softcap(logits).
//
// Memory: one flat parameter buffer and one gradient buffer (ParamTable
// offsets), activations allocated once for (micro_batch, seq_len) and reused.
// T is float for training and double for gradient checks.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "config/config.h"
#include "kernels/cpu/attention.h"
#include "model/params.h"

namespace muongpt {

template <class T>
class Gpt {
 public:
  Gpt(const ModelConfig& cfg, int max_batch, int max_seq_len);

  const ModelConfig& config() const { return cfg_; }
  const ParamTable& table() const { return table_; }
  std::vector<T>& params() { return params_; }
  const std::vector<T>& params() const { return params_; }
  std::vector<T>& grads() { return grads_; }
  const std::vector<T>& grads() const { return grads_; }
  int max_batch() const { return max_batch_; }
  int max_seq_len() const { return max_seq_; }

  void init(uint64_t seed);
  void zero_grad();

  // Runs B sequences of Tn tokens (B <= max_batch, Tn <= max_seq_len).
  // With targets, returns the mean loss over the B*Tn tokens; without, 0.
  // doc_ids (B x Tn, see data/loader.h document_ids) are required when the
  // config has document_mask and ignored otherwise.
  double forward(const int32_t* tokens, const int32_t* targets, int B, int Tn, const int32_t* doc_ids = nullptr);

  // Backward of the last forward (which must have had targets). Adds
  // loss_scale * d(sum of per-token losses)/d(params) into grads(): pass
  // 1/(tokens in the whole batch) to get the gradient of the mean loss.
  void backward(T loss_scale);

  // Called by backward() as soon as the gradients of block l's parameters
  // (blocks.l.*) are final for this backward, for l = n_layer-1 down to 0:
  // the moment their reduction across ranks may start. Empty = none.
  void set_layer_grads_hook(std::function<void(int)> hook) { layer_grads_hook_ = std::move(hook); }

  // Sliding-window sizes of the following forwards (as model.attn_window:
  // one entry or one per layer, 0 = full causal); throws Error otherwise.
  void set_attention_windows(const std::vector<int>& windows) {
    check_attention_windows(cfg_, windows);
    cfg_.attn_window = windows;
  }

  // Windows, softmax scale and RoPE frequencies of the following forwards
  // (the schedule's attention_settings_at); the RoPE tables are recomputed
  // only when the frequencies change. Throws Error on windows that do not fit.
  void set_attention(const AttentionSettings& settings);

  // Logits (B, Tn, Vp) and per-token losses of the last forward. backward()
  // overwrites the logits with their gradient.
  const T* logits() const { return act_.logits.data(); }
  const T* losses() const { return act_.losses.data(); }
  int tokens_in_batch() const { return B_ * T_; }  // B x Tn of the last forward

  // Largest pre-softmax attention logit per layer and head of the last
  // forward (n_layer x n_head), for QK-clip and diagnostics.
  const std::vector<T>& max_attention_logits() const { return act_.max_logits; }

 private:
  struct LayerActs {
    std::vector<T> x_in, x_skip, x_mix;  // block input, after U-net skip, after x0 shortcut
    std::vector<T> h1, n1_mean, n1_rstd;
    std::vector<T> qkv;                  // (N, 3C)
    std::vector<T> q_raw, k_raw, v_raw;  // (N, C) split from qkv
    std::vector<T> q_mid, k_mid;         // rope output before qk-norm (qk_norm_position = after_rope)
    std::vector<T> q_rstd, k_rstd;       // qk-norm (N*H)
    std::vector<T> q, k, v;              // attention inputs
    std::vector<T> probs;                // (B, H, T, T)
    std::vector<T> att;                  // attention output before projection
    std::vector<T> att_gated, gates;     // model.attn_gate_dims: gated output (N, C), gates (N, H)
    std::vector<T> attn_out;             // after projection
    std::vector<T> x_attn;               // residual after attention
    std::vector<T> h2, n2_mean, n2_rstd;
    std::vector<T> fc, act;              // (N, F)
  };
  struct Acts {
    std::vector<T> emb, x0, embn_mean, embn_rstd;
    std::vector<T> smeared, smear_gates;  // model.smear_gate_dims: smeared embeddings (N, C), gates (N)
    std::vector<std::vector<T>> value_embeds;  // (N, C) rows of each value-embedding table
    std::vector<LayerActs> layers;
    std::vector<T> x_final, hf, nf_mean, nf_rstd;
    std::vector<T> x_backout;  // model.backout_layer: x_final - lambda * (state after the backout block)
    std::vector<T> logits, losses, lse;
    std::vector<T> max_logits;
    std::vector<int32_t> tokens, targets, doc_ids;
  };

  T* p(size_t off) { return off == npos ? nullptr : params_.data() + off; }
  const T* p(size_t off) const { return off == npos ? nullptr : params_.data() + off; }
  T* g(size_t off) { return off == npos ? nullptr : grads_.data() + off; }

  void norm_forward(T* out, T* mean, T* rstd, const T* x, size_t w, size_t b, int rows);
  void norm_backward(T* dx, const T* dout, const T* x, size_t w, size_t b, const T* mean, const T* rstd, int rows,
                     bool accumulate);
  // q or k: raw (N,C) -> attention input, and back.
  // Layer l's attention mask for the last forward: its window, and the
  // document ids when document masking is on.
  cpu::AttentionMask attention_mask(int l) const {
    return cpu::AttentionMask{cfg_.window(l), cfg_.document_mask ? act_.doc_ids.data() : nullptr, cfg_.window_block};
  }
  void qk_forward(std::vector<T>& out, std::vector<T>& mid, std::vector<T>& rstd, const std::vector<T>& raw,
                  int B, int Tn);
  void qk_backward(T* draw, const T* dout, const std::vector<T>& mid, const std::vector<T>& rstd,
                   const std::vector<T>& raw, int B, int Tn);
  // ModelConfig::value_mix_plan(layer) on the last forward's tensors and the
  // current lambdas: v = a * v_raw + c * source.
  struct ValueMix {
    ModelConfig::ValueMixPlan plan;
    const T* source = nullptr;  // layer 0's v_raw, a value embedding (N, C), or null
    T a = T(1), c = T(0);
  };
  ValueMix value_mix(int layer) const;
  // U-net decoder block l's skip coefficient: its weight w, or sigmoid(w)
  // under model.unet_skip_gate sigmoid.
  T skip_gate(int l) const {
    const T w = p(offsets_.skip_w)[l - L_ / 2];
    return cfg_.unet_skip_gate == "sigmoid" ? T(1) / (T(1) + std::exp(-w)) : w;
  }

  static constexpr size_t npos = kAbsentParam;

  ModelConfig cfg_;
  ParamTable table_;
  int max_batch_, max_seq_;
  int C_, H_, D_, F_, L_, Vp_, V_softmax_;
  std::vector<T> params_, grads_;
  std::function<void(int)> layer_grads_hook_;
  ParamOffsets offsets_;  // where each parameter sits in params_ (kAbsentParam = absent)
  std::vector<T> rope_cos_, rope_sin_;
  std::vector<double> rope_freqs_;  // the frequencies of rope_cos_/rope_sin_
  Acts act_;
  int B_ = 0, T_ = 0;  // shape of the last forward
  bool have_targets_ = false;
};

extern template class Gpt<float>;
extern template class Gpt<double>;

}  // namespace muongpt
