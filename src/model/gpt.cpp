#include "model/gpt.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_gate.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/mix.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/smear.h"
#include "kernels/cpu/softcap_ce.h"
#include "util/error.h"

namespace muongpt {

using namespace cpu;

template <class T>
Gpt<T>::Gpt(const ModelConfig& cfg, int max_batch, int max_seq_len)
    : cfg_(cfg), table_(cfg), max_batch_(max_batch), max_seq_(max_seq_len) {
  C_ = cfg.d_model;
  H_ = cfg.n_head;
  D_ = cfg.head_dim();
  F_ = cfg.hidden();
  L_ = cfg.n_layer;
  Vp_ = cfg.padded_vocab_size;
  V_softmax_ = cfg.softmax_vocab();
  MUONGPT_CHECK(max_seq_len <= cfg.max_seq_len || cfg.pos_embedding != "learned");
  if (cfg.backout_layer < -1 || cfg.backout_layer > cfg.n_layer - 2)
    fail("Gpt: model.backout_layer = ", cfg.backout_layer, " is outside [-1, n_layer - 2 = ", cfg.n_layer - 2, "]");

  params_.assign(table_.total(), T(0));
  grads_.assign(table_.total(), T(0));
  offsets_ = param_offsets(table_, cfg);
  if (cfg.pos_embedding == "rope") {
    rope_freqs_ = rope_frequencies(D_, cfg.rope_base, cfg.rope_frequencies == "half_truncated");
    rope_tables(rope_cos_, rope_sin_, max_seq_len, rope_freqs_);
  }

  // Activations, sized once for the largest batch.
  const size_t N = static_cast<size_t>(max_batch) * max_seq_len;
  const size_t NC = N * C_;
  const bool ln = cfg.norm == "layernorm";
  act_.emb.resize(NC);
  if (cfg.smear_gate_dims > 0) {
    act_.smeared.resize(NC);
    act_.smear_gates.resize(N);
  }
  if (cfg.embed_norm) {
    act_.x0.resize(NC);
    act_.embn_rstd.resize(N);
    if (ln) act_.embn_mean.resize(N);
  }
  act_.value_embeds.resize(static_cast<size_t>(cfg.value_embeds));
  for (auto& ve : act_.value_embeds) ve.resize(NC);
  act_.layers.resize(L_);
  for (int l = 0; l < L_; ++l) {
    LayerActs& a = act_.layers[l];
    const bool attention = cfg.has_attention(l);
    a.x_in.resize(NC);
    if (cfg_.unet_skip_source(l) >= 0) a.x_skip.resize(NC);
    if (cfg.has_x0_mix(l)) a.x_mix.resize(NC);
    a.h1.resize(NC);
    a.n1_rstd.resize(N);
    if (ln) a.n1_mean.resize(N);
    a.qkv.resize(3 * NC);
    a.q_raw.resize(NC);
    a.k_raw.resize(NC);
    a.v_raw.resize(NC);
    if (cfg.qk_norm) {
      a.q_rstd.resize(N * H_);
      a.k_rstd.resize(N * H_);
      if (cfg.qk_norm_position == "after_rope" && cfg.pos_embedding == "rope") {
        a.q_mid.resize(NC);
        a.k_mid.resize(NC);
      }
    }
    a.q.resize(NC);
    a.k.resize(NC);
    a.v.resize(NC);
    if (attention) a.probs.resize(static_cast<size_t>(max_batch) * H_ * max_seq_len * max_seq_len);
    a.att.resize(NC);
    if (attention && cfg.attn_gate_dims > 0) {
      a.att_gated.resize(NC);
      a.gates.resize(N * H_);
    }
    a.attn_out.resize(NC);
    a.x_attn.resize(NC);
    if (cfg.has_mlp(l)) {  // MLP-free blocks keep no MLP activations
      a.h2.resize(NC);
      a.n2_rstd.resize(N);
      if (ln) a.n2_mean.resize(N);
      a.fc.resize(N * F_);
      a.act.resize(N * F_);
    }
  }
  act_.x_final.resize(NC);
  if (cfg.backout_layer >= 0) act_.x_backout.resize(NC);
  act_.hf.resize(NC);
  act_.nf_rstd.resize(N);
  if (ln) act_.nf_mean.resize(N);
  act_.logits.resize(N * Vp_);
  act_.losses.resize(N);
  act_.lse.resize(N);
  act_.max_logits.resize(static_cast<size_t>(L_) * H_);
  act_.tokens.resize(N);
  act_.targets.resize(N);
}

template <class T>
void Gpt<T>::init(uint64_t seed) {
  init_params<T>(table_, params_.data(), seed);
}

template <class T>
void Gpt<T>::set_attention(const AttentionSettings& settings) {
  set_attention_windows(settings.windows);
  MUONGPT_CHECK(settings.scale > 0);
  cfg_.attn_scale = settings.scale;
  if (cfg_.pos_embedding != "rope" || settings.rope_freqs == rope_freqs_) return;
  MUONGPT_CHECK(settings.rope_freqs.size() == rope_freqs_.size());
  rope_freqs_ = settings.rope_freqs;
  rope_tables(rope_cos_, rope_sin_, max_seq_, rope_freqs_);
}

template <class T>
void Gpt<T>::zero_grad() {
  std::fill(grads_.begin(), grads_.end(), T(0));
}

template <class T>
typename Gpt<T>::ValueMix Gpt<T>::value_mix(int layer) const {
  using Coef = ModelConfig::ValueMixPlan::Coef;
  ValueMix vm;
  vm.plan = cfg_.value_mix_plan(layer);
  if (!vm.plan.learned) return vm;  // v = v_raw
  if (vm.plan.first_layer_v) vm.source = act_.layers[0].v_raw.data();
  if (vm.plan.table >= 0) vm.source = act_.value_embeds[static_cast<size_t>(vm.plan.table)].data();
  const T* lam = p(offsets_.blocks[static_cast<size_t>(layer)].value_lambda);
  const auto value = [lam](Coef k) {
    switch (k) {
      case Coef::one: return T(1);
      case Coef::zero: return T(0);
      case Coef::lambda0: return lam[0];
      case Coef::one_minus_lambda0: return T(1) - lam[0];
      case Coef::lambda1: return lam[1];
    }
    return T(0);
  };
  vm.a = value(vm.plan.a);
  vm.c = value(vm.plan.c);
  return vm;
}

template <class T>
void Gpt<T>::norm_forward(T* out, T* mean, T* rstd, const T* x, size_t w, size_t b, int rows) {
  const T eps = static_cast<T>(cfg_.norm_eps);
  if (cfg_.norm == "layernorm")
    layernorm_forward(out, mean, rstd, x, p(w), p(b), rows, C_, eps);
  else
    rmsnorm_forward(out, rstd, x, p(w), rows, C_, eps);
}

template <class T>
void Gpt<T>::norm_backward(T* dx, const T* dout, const T* x, size_t w, size_t b, const T* mean, const T* rstd,
                           int rows, bool accumulate) {
  if (cfg_.norm == "layernorm")
    layernorm_backward(dx, g(w), g(b), dout, x, p(w), mean, rstd, rows, C_, accumulate);
  else
    rmsnorm_backward(dx, g(w), dout, x, p(w), rstd, rows, C_, accumulate);
}

template <class T>
void Gpt<T>::qk_forward(std::vector<T>& out, std::vector<T>& mid, std::vector<T>& rstd, const std::vector<T>& raw,
                        int B, int Tn) {
  const int N = B * Tn;
  const bool rope = cfg_.pos_embedding == "rope";
  const T eps = static_cast<T>(cfg_.norm_eps);
  if (!cfg_.qk_norm) {
    if (rope)
      rope_forward(out.data(), raw.data(), rope_cos_.data(), rope_sin_.data(), B, Tn, H_, D_);
    else
      std::copy(raw.begin(), raw.begin() + static_cast<size_t>(N) * C_, out.begin());
  } else if (cfg_.qk_norm_position == "before_rope" || !rope) {
    rmsnorm_forward(out.data(), rstd.data(), raw.data(), static_cast<const T*>(nullptr), N * H_, D_, eps);
    if (rope) rope_forward(out.data(), out.data(), rope_cos_.data(), rope_sin_.data(), B, Tn, H_, D_);
  } else {
    rope_forward(mid.data(), raw.data(), rope_cos_.data(), rope_sin_.data(), B, Tn, H_, D_);
    rmsnorm_forward(out.data(), rstd.data(), mid.data(), static_cast<const T*>(nullptr), N * H_, D_, eps);
  }
}

template <class T>
void Gpt<T>::qk_backward(T* draw, const T* dout, const std::vector<T>& mid, const std::vector<T>& rstd,
                         const std::vector<T>& raw, int B, int Tn) {
  const int N = B * Tn;
  const bool rope = cfg_.pos_embedding == "rope";
  const size_t NC = static_cast<size_t>(N) * C_;
  if (!cfg_.qk_norm) {
    if (rope)
      rope_backward(draw, dout, rope_cos_.data(), rope_sin_.data(), B, Tn, H_, D_);
    else
      std::copy(dout, dout + NC, draw);
  } else if (cfg_.qk_norm_position == "before_rope" || !rope) {
    std::vector<T> dnormed(NC);
    if (rope)
      rope_backward(dnormed.data(), dout, rope_cos_.data(), rope_sin_.data(), B, Tn, H_, D_);
    else
      std::copy(dout, dout + NC, dnormed.begin());
    rmsnorm_backward(draw, static_cast<T*>(nullptr), dnormed.data(), raw.data(), static_cast<const T*>(nullptr),
                     rstd.data(), N * H_, D_, false);
  } else {
    std::vector<T> dmid(NC);
    rmsnorm_backward(dmid.data(), static_cast<T*>(nullptr), dout, mid.data(), static_cast<const T*>(nullptr),
                     rstd.data(), N * H_, D_, false);
    rope_backward(draw, dmid.data(), rope_cos_.data(), rope_sin_.data(), B, Tn, H_, D_);
  }
}

template <class T>
double Gpt<T>::forward(const int32_t* tokens, const int32_t* targets, int B, int Tn, const int32_t* doc_ids) {
  if (B < 1 || B > max_batch_ || Tn < 1 || Tn > max_seq_)
    fail("forward: batch ", B, "x", Tn, " exceeds the allocated ", max_batch_, "x", max_seq_);
  B_ = B;
  T_ = Tn;
  have_targets_ = targets != nullptr;
  const int N = B * Tn;
  const size_t NC = static_cast<size_t>(N) * C_;
  for (int i = 0; i < N; ++i) {
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size)
      fail("forward: token id ", tokens[i], " at position ", i, " is outside the vocabulary (", cfg_.vocab_size, ")");
    if (targets && (targets[i] < 0 || targets[i] >= cfg_.vocab_size))
      fail("forward: target id ", targets[i], " at position ", i, " is outside the vocabulary");
  }
  std::copy(tokens, tokens + N, act_.tokens.begin());
  if (targets) std::copy(targets, targets + N, act_.targets.begin());
  if (cfg_.document_mask) {
    if (!doc_ids) fail("forward: model.document_mask is on but no document ids were given");
    act_.doc_ids.assign(doc_ids, doc_ids + N);
  }

  // Embedding (+ norm) -> x0
  embedding_forward(act_.emb.data(), tokens, p(offsets_.tok_embed), p(offsets_.pos_embed), B, Tn, C_);
  const T* x0 = act_.emb.data();
  if (cfg_.smear_gate_dims > 0) {
    smear_forward(act_.smeared.data(), act_.smear_gates.data(), act_.emb.data(), p(offsets_.smear_w),
                  p(offsets_.smear_lambda)[0], B, Tn, C_, cfg_.smear_gate_dims);
    x0 = act_.smeared.data();
  }
  if (cfg_.embed_norm) {
    norm_forward(act_.x0.data(), act_.embn_mean.data(), act_.embn_rstd.data(), x0, offsets_.embn_w, offsets_.embn_b, N);
    x0 = act_.x0.data();
  }

  for (size_t t = 0; t < act_.value_embeds.size(); ++t)
    embedding_forward(act_.value_embeds[t].data(), tokens, p(offsets_.value_embeds[t]), static_cast<const T*>(nullptr),
                      B, Tn, C_);

  const T scale = static_cast<T>(cfg_.softmax_scale());
  const T branch = static_cast<T>(cfg_.attn_residual_scale);
  const T* x = x0;
  for (int l = 0; l < L_; ++l) {
    const BlockParamOffsets& ly = offsets_.blocks[l];
    LayerActs& a = act_.layers[l];
    if (l == 0) std::copy(x0, x0 + NC, a.x_in.begin());  // later blocks' inputs are written by the previous block
    x = a.x_in.data();
    if (int src = cfg_.unet_skip_source(l); src >= 0) {
      const T* skip = act_.layers[src].x_in.data();
      mix_forward(a.x_skip.data(), x, skip, T(1), skip_gate(l), NC);
      x = a.x_skip.data();
    }
    if (cfg_.has_x0_mix(l)) {
      const T* lam = p(ly.x0_lambdas);
      mix_forward(a.x_mix.data(), x, x0, lam[0], lam[1], NC);
      x = a.x_mix.data();
    }
    if (!cfg_.has_attention(l)) {  // attention-free block: the MLP reads the block input
      std::copy(x, x + NC, a.x_attn.begin());
      std::fill_n(act_.max_logits.begin() + static_cast<size_t>(l) * H_, H_, T(0));
    } else {
      // attention
      norm_forward(a.h1.data(), a.n1_mean.data(), a.n1_rstd.data(), x, ly.norm1_w, ly.norm1_b, N);
      matmul_forward(a.qkv.data(), a.h1.data(), p(ly.qkv_w), p(ly.qkv_b), N, C_, 3 * C_);
#pragma omp parallel for schedule(static)
      for (int n = 0; n < N; ++n) {
        const T* row = a.qkv.data() + static_cast<size_t>(n) * 3 * C_;
        std::copy(row, row + C_, a.q_raw.data() + static_cast<size_t>(n) * C_);
        std::copy(row + C_, row + 2 * C_, a.k_raw.data() + static_cast<size_t>(n) * C_);
        std::copy(row + 2 * C_, row + 3 * C_, a.v_raw.data() + static_cast<size_t>(n) * C_);
      }
      const ValueMix vm = value_mix(l);
      if (vm.source)
        mix_forward(a.v.data(), a.v_raw.data(), vm.source, vm.a, vm.c, NC);
      else if (vm.a != T(1))
        mix_forward(a.v.data(), a.v_raw.data(), a.v_raw.data(), vm.a, T(0), NC);
      else
        std::copy(a.v_raw.begin(), a.v_raw.begin() + NC, a.v.begin());
      qk_forward(a.q, a.q_mid, a.q_rstd, a.q_raw, B, Tn);
      qk_forward(a.k, a.k_mid, a.k_rstd, a.k_raw, B, Tn);
      attention_forward(a.att.data(), a.probs.data(), a.q.data(), a.k.data(), a.v.data(), B, Tn, H_, D_, scale,
                        attention_mask(l), act_.max_logits.data() + static_cast<size_t>(l) * H_);
      const T* att = a.att.data();
      if (cfg_.attn_gate_dims > 0) {
        attention_gate_forward(a.att_gated.data(), a.gates.data(), a.att.data(), a.h1.data(), p(ly.gate_w), N, C_, H_,
                               D_, cfg_.attn_gate_dims);
        att = a.att_gated.data();
      }
      matmul_forward(a.attn_out.data(), att, p(ly.proj_w), p(ly.proj_b), N, C_, C_);
      mix_forward(a.x_attn.data(), x, a.attn_out.data(), T(1), branch, NC);
    }
    T* next = l + 1 < L_ ? act_.layers[l + 1].x_in.data() : act_.x_final.data();
    if (!cfg_.has_mlp(l)) {  // MLP-free block: its output is the state after attention
      std::copy(a.x_attn.begin(), a.x_attn.begin() + NC, next);
      x = next;
      continue;
    }
    // MLP
    norm_forward(a.h2.data(), a.n2_mean.data(), a.n2_rstd.data(), a.x_attn.data(), ly.norm2_w, ly.norm2_b, N);
    matmul_forward(a.fc.data(), a.h2.data(), p(ly.fc_w), p(ly.fc_b), N, C_, F_);
    if (cfg_.activation == "gelu")
      gelu_forward(a.act.data(), a.fc.data(), static_cast<size_t>(N) * F_);
    else
      relu2_forward(a.act.data(), a.fc.data(), static_cast<size_t>(N) * F_);
    matmul_forward(next, a.act.data(), p(ly.mlp_w), p(ly.mlp_b), N, F_, C_);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < NC; ++i) next[i] += a.x_attn[i];
    x = next;
  }

  const T* x_last = act_.x_final.data();  // the final norm's input
  if (cfg_.backout_layer >= 0) {           // backout: x_L - lambda * (state after block b)
    mix_forward(act_.x_backout.data(), x_last, act_.layers[cfg_.backout_layer + 1].x_in.data(), T(1),
                -p(offsets_.backout_lambda)[0], NC);
    x_last = act_.x_backout.data();
  }
  norm_forward(act_.hf.data(), act_.nf_mean.data(), act_.nf_rstd.data(), x_last, offsets_.normf_w, offsets_.normf_b, N);
  matmul_forward(act_.logits.data(), act_.hf.data(), p(offsets_.head), static_cast<const T*>(nullptr), N, C_, Vp_);
  if (!targets) return 0.0;
  softcap_ce_forward(act_.losses.data(), act_.lse.data(), act_.logits.data(), targets, N, Vp_, V_softmax_,
                     static_cast<T>(cfg_.logit_softcap));
  double total = 0;
  for (int i = 0; i < N; ++i) total += act_.losses[i];
  return total / N;
}

template <class T>
void Gpt<T>::backward(T loss_scale) {
  MUONGPT_CHECK(have_targets_, "backward needs a forward with targets");
  const int B = B_, Tn = T_, N = B * Tn;
  const size_t NC = static_cast<size_t>(N) * C_;
  const T scale = static_cast<T>(cfg_.softmax_scale());
  const T branch = static_cast<T>(cfg_.attn_residual_scale);

  // Loss -> logits, in place over the logits buffer (they are not needed again).
  T* dlogits = act_.logits.data();
  softcap_ce_backward(dlogits, act_.logits.data(), act_.lse.data(), act_.targets.data(), loss_scale, N, Vp_, V_softmax_,
                      static_cast<T>(cfg_.logit_softcap));
  std::vector<T> dres(NC), dhf(NC);
  matmul_backward(dhf.data(), g(offsets_.head), static_cast<T*>(nullptr), dlogits, act_.hf.data(), p(offsets_.head), N, C_, Vp_,
                  false);
  const bool backout = cfg_.backout_layer >= 0;
  norm_backward(dres.data(), dhf.data(), backout ? act_.x_backout.data() : act_.x_final.data(), offsets_.normf_w,
                offsets_.normf_b, act_.nf_mean.data(), act_.nf_rstd.data(), N, false);

  const T* x_emb = cfg_.smear_gate_dims > 0 ? act_.smeared.data() : act_.emb.data();  // the embedding norm's input
  const T* x0 = cfg_.embed_norm ? act_.x0.data() : x_emb;
  std::vector<T> dx0(NC, T(0));
  std::vector<std::vector<T>> dskip(L_ + 1);  // pending gradient for skip and backout sources, by boundary
  std::vector<T> dv_first(cfg_.value_residual ? NC : 0, T(0));
  std::vector<std::vector<T>> dvalue_embeds(act_.value_embeds.size(), std::vector<T>(NC, T(0)));
  if (backout) {  // x_last = x_L - lambda * x_b: x_L gets dres as it is, boundary b + 1 gets -lambda * dres
    const int boundary = cfg_.backout_layer + 1;
    const T lambda = p(offsets_.backout_lambda)[0];
    dskip[boundary].resize(NC);
    T dcoef = T(0);  // d(loss)/d(-lambda)
    mix_backward(static_cast<T*>(nullptr), dskip[boundary].data(), static_cast<T*>(nullptr), &dcoef, dres.data(),
                 act_.x_final.data(), act_.layers[boundary].x_in.data(), T(1), -lambda, NC, false, false);
    g(offsets_.backout_lambda)[0] -= dcoef;
  }
  std::vector<T> dh(NC), dfc(static_cast<size_t>(N) * F_), dact(static_cast<size_t>(N) * F_);
  std::vector<T> dqkv(3 * NC), dq(NC), dk(NC), dv(NC), datt(NC), dattn_out(NC), dtmp(NC);

  for (int l = L_ - 1; l >= 0; --l) {
    const BlockParamOffsets& ly = offsets_.blocks[l];
    LayerActs& a = act_.layers[l];
    const int src = cfg_.unet_skip_source(l);
    const T* x_block = cfg_.has_x0_mix(l) ? a.x_mix.data() : (src >= 0 ? a.x_skip.data() : a.x_in.data());
    // dres holds dL/d(output of block l) = dL/d(x_attn + mlp_out)
    // MLP (an MLP-free block's output is x_attn itself: dres passes through)
    if (cfg_.has_mlp(l)) {
      matmul_backward(dact.data(), g(ly.mlp_w), g(ly.mlp_b), dres.data(), a.act.data(), p(ly.mlp_w), N, F_, C_, false);
      if (cfg_.activation == "gelu")
        gelu_backward(dfc.data(), dact.data(), a.fc.data(), static_cast<size_t>(N) * F_);
      else
        relu2_backward(dfc.data(), dact.data(), a.fc.data(), static_cast<size_t>(N) * F_);
      matmul_backward(dh.data(), g(ly.fc_w), g(ly.fc_b), dfc.data(), a.h2.data(), p(ly.fc_w), N, C_, F_, false);
      norm_backward(dres.data(), dh.data(), a.x_attn.data(), ly.norm2_w, ly.norm2_b, a.n2_mean.data(),
                    a.n2_rstd.data(), N, /*accumulate=*/true);
    }
    // dres = dL/dx_attn; x_attn = x_block + branch * attn_out (= x_block without attention)
    if (cfg_.has_attention(l)) {
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < NC; ++i) dattn_out[i] = branch * dres[i];
      const bool gated = cfg_.attn_gate_dims > 0;
      matmul_backward(datt.data(), g(ly.proj_w), g(ly.proj_b), dattn_out.data(),
                      gated ? a.att_gated.data() : a.att.data(), p(ly.proj_w), N, C_, C_, false);
      if (gated) {  // datt becomes the gradient of the ungated output; the gate's input gradient goes into dh
        std::fill(dh.begin(), dh.begin() + NC, T(0));
        attention_gate_backward(datt.data(), g(ly.gate_w), dh.data(), datt.data(), a.att.data(), a.gates.data(),
                                a.h1.data(), p(ly.gate_w), N, C_, H_, D_, cfg_.attn_gate_dims);
      }
      attention_backward(dq.data(), dk.data(), dv.data(), datt.data(), a.probs.data(), a.q.data(), a.k.data(),
                         a.v.data(), B, Tn, H_, D_, scale, attention_mask(l));
      // value mix: v = a v_raw + c source   (source: layer 0's v_raw, a value embedding, or none)
      const ValueMix vm = value_mix(l);
      if (vm.plan.learned) {
        using Coef = ModelConfig::ValueMixPlan::Coef;
        T* dlam = g(ly.value_lambda);
        if (vm.plan.a == Coef::one_minus_lambda0) {  // lerp: a = 1 - l0, c = l0
          dlam[0] += deterministic_sum<T>(NC, [&](size_t i) { return dv[i] * (vm.source[i] - a.v_raw[i]); });
        } else {  // weighted: a = l0, c = l1 (or 0 without a source)
          dlam[0] += deterministic_sum<T>(NC, [&](size_t i) { return dv[i] * a.v_raw[i]; });
          if (vm.plan.c == Coef::lambda1)
            dlam[1] += deterministic_sum<T>(NC, [&](size_t i) { return dv[i] * vm.source[i]; });
        }
        if (vm.plan.first_layer_v && l == 0) {  // the source is this layer's own v_raw: both terms + later layers'
#pragma omp parallel for schedule(static)
          for (size_t i = 0; i < NC; ++i) dv[i] = vm.a * dv[i] + vm.c * dv[i] + dv_first[i];
        } else {
          T* dsource = !vm.source             ? nullptr
                       : vm.plan.table >= 0 ? dvalue_embeds[vm.plan.table].data()
                                            : dv_first.data();
#pragma omp parallel for schedule(static)
          for (size_t i = 0; i < NC; ++i) {
            if (dsource) dsource[i] += vm.c * dv[i];
            dv[i] *= vm.a;
          }
        }
      }
      qk_backward(dtmp.data(), dq.data(), a.q_mid, a.q_rstd, a.q_raw, B, Tn);
      std::swap(dtmp, dq);
      qk_backward(dtmp.data(), dk.data(), a.k_mid, a.k_rstd, a.k_raw, B, Tn);
      std::swap(dtmp, dk);
#pragma omp parallel for schedule(static)
      for (int n = 0; n < N; ++n) {
        T* row = dqkv.data() + static_cast<size_t>(n) * 3 * C_;
        const size_t o = static_cast<size_t>(n) * C_;
        std::copy(dq.data() + o, dq.data() + o + C_, row);
        std::copy(dk.data() + o, dk.data() + o + C_, row + C_);
        std::copy(dv.data() + o, dv.data() + o + C_, row + 2 * C_);
      }
      matmul_backward(dh.data(), g(ly.qkv_w), g(ly.qkv_b), dqkv.data(), a.h1.data(), p(ly.qkv_w), N, C_, 3 * C_,
                      /*accumulate=*/gated);
      norm_backward(dres.data(), dh.data(), x_block, ly.norm1_w, ly.norm1_b, a.n1_mean.data(), a.n1_rstd.data(), N,
                    /*accumulate=*/true);
    }
    // dres = dL/d(x_block)
    if (cfg_.has_x0_mix(l)) {
      const T* lam = p(ly.x0_lambdas);
      T* dlam = g(ly.x0_lambdas);
      const T* x_pre = src >= 0 ? a.x_skip.data() : a.x_in.data();
      mix_backward(dtmp.data(), dx0.data(), dlam, dlam + 1, dres.data(), x_pre, x0, lam[0], lam[1], NC, false, true);
      std::swap(dtmp, dres);
    }
    if (src >= 0) {
      const T w = skip_gate(l);
      const T* skip = act_.layers[src].x_in.data();
      if (dskip[src].empty()) dskip[src].assign(NC, T(0));
      T dw = T(0);  // d(loss)/d(the skip's coefficient)
      mix_backward(static_cast<T*>(nullptr), dskip[src].data(), static_cast<T*>(nullptr), &dw, dres.data(),
                   a.x_in.data(), skip, T(1), w, NC, false, true);
      g(offsets_.skip_w)[l - L_ / 2] += cfg_.unet_skip_gate == "sigmoid" ? dw * w * (T(1) - w) : dw;
      // dx_in = dres (unchanged)
    }
    // dres = dL/d(x_in of block l) = dL/d(boundary l); add skip gradients aimed at this boundary
    if (!dskip[l].empty()) {
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < NC; ++i) dres[i] += dskip[l][i];
    }
    if (layer_grads_hook_) layer_grads_hook_(l);  // blocks.l.* gradients are final
  }
  // x0 feeds block 0 directly and every x0 shortcut
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < NC; ++i) dx0[i] += dres[i];
  const T* demb = dx0.data();
  if (cfg_.embed_norm) {
    norm_backward(dh.data(), dx0.data(), x_emb, offsets_.embn_w, offsets_.embn_b, act_.embn_mean.data(),
                  act_.embn_rstd.data(), N, false);
    demb = dh.data();
  }
  if (cfg_.smear_gate_dims > 0) {
    smear_backward(dtmp.data(), g(offsets_.smear_w), g(offsets_.smear_lambda), demb, act_.emb.data(),
                   act_.smear_gates.data(), p(offsets_.smear_w), p(offsets_.smear_lambda)[0], B, Tn, C_,
                   cfg_.smear_gate_dims);
    demb = dtmp.data();
  }
  embedding_backward(g(offsets_.tok_embed), g(offsets_.pos_embed), demb, act_.tokens.data(), B, Tn, C_);
  for (size_t t = 0; t < dvalue_embeds.size(); ++t)
    embedding_backward(g(offsets_.value_embeds[t]), static_cast<T*>(nullptr), dvalue_embeds[t].data(),
                       act_.tokens.data(), B, Tn, C_);
}

template class Gpt<float>;
template class Gpt<double>;

}  // namespace muongpt
