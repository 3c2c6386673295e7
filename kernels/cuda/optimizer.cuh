// Elementwise optimizer updates on the fp32 master weights, mirroring
// kernels/cpu/optimizer_updates.h (PyTorch semantics), each refreshing the bf16
// working copy of the weights in the same pass (w_bf16 may be null).
//
// AdamW (torch.optim.AdamW), step t >= 1, host-computed bias corrections:
//   w  *= 1 - lr*wd                               (decoupled weight decay)
//   m   = lerp(m, g, 1-b1)        v = b2 v + (1-b2) g^2
//   w  -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// Muon momentum, two forms the speedrun used (writes the vector u to
// orthogonalise, fp32 and/or bf16):
//   sum (2024):  buf = mu buf + g          nesterov: u = g + mu buf        else u = buf
//   ema (2025):  buf = lerp(buf, g, 1-mu)  nesterov: u = lerp(g, buf, mu)  else u = buf
// Muon apply, orthogonalised O (bf16 or fp32), scale s:
//   w *= 1 - lr*wd ;  w -= lr * s * O
// cautious weight decay (speedrun record 43): decay only where O*w >= 0,
//   w = (O*w >= 0 ? w*(1 - lr*wd) : w) - lr*s*O
// Gradient clipping: grad_sum_squares (deterministic, reduce.cuh) then
// clip_grad_scale, which reads the sum on the device (no host sync) and, when
// max_norm > 0 and norm = sqrt(sum) > max_norm, scales g by float(max_norm / norm).
// Layout: flat arrays of n elements; w, m, v, buf, g fp32.
//
// Batched Muon (the DeviceOptimizer's path): a batch is `count` same-shape
// blocks (rows x cols, n = rows*cols elements, possibly of different
// parameters), described by a device table of MuonBlockRef. Block j's
// parameter elements are w + ref.w_off (its gradient at the same offset), its
// momentum buf + ref.m_off, its NorMuon state nv + ref.nv_off; its slot in the
// contiguous batch buffers is j*stride. The arithmetic per element is that of
// the unbatched kernels above (same float operations, same order).
//   muon_momentum_batched: momentum as muon_momentum, u (fp32) into the batch
//   normuon_factors_batched: NorMuon on the orthogonalised batch O (bf16), as
//     cpu::normuon_normalize, but instead of scaling O it writes the per-row
//     (or per-column) factor step_i * rescale (fp32, `stats` per block) and
//     updates the state v; one thread block per matrix block, sums in double
//   muon_apply_batched: muon_apply with O (bf16) from the batch, times the
//     block's NorMuon factor when `factors` is given (per_row: factor of the
//     element's row, else of its column); refreshes the bf16 weights
// QK-clip (optim/qk_clip.h): attention_logits_max keeps a running max of the
// observed per-head logits on the device; qk_clip_apply rescales the q/k rows
// (and biases) of every head above tau, refreshes their bf16 copy and resets
// the running max to -inf, all without the host seeing the logits.
#pragma once

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

void adamw_update(float* w, bf16* w_bf16, float* m, float* v, const float* g, size_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, long step, cudaStream_t stream);

// sum += g (an AdamW group's gradients summed over update_every steps).
void add_into(float* sum, const float* g, size_t n, cudaStream_t stream);

// u_f32 and u_bf16 may each be null (not both).
void muon_momentum(float* u_f32, bf16* u_bf16, float* buf, const float* g, size_t n, double momentum, bool nesterov,
                   bool ema_form, cudaStream_t stream);

void muon_apply(float* w, bf16* w_bf16, const bf16* update, size_t n, double lr, double scale, double weight_decay,
                bool cautious, cudaStream_t stream);
void muon_apply(float* w, bf16* w_bf16, const float* update, size_t n, double lr, double scale, double weight_decay,
                bool cautious, cudaStream_t stream);

// *sum_sq = sum g^2 (double, device); scratch: reduce_scratch_doubles().
void grad_sum_squares(double* sum_sq, const float* g, size_t n, double* scratch, cudaStream_t stream);

// g *= float(max_norm / sqrt(*sum_sq)) when max_norm > 0 and sqrt(*sum_sq) > max_norm.
void clip_grad_scale(float* g, size_t n, const double* sum_sq, double max_norm, cudaStream_t stream);

struct MuonBlockRef {
  unsigned long long w_off;   // first element of the block in the parameter (and gradient) buffer
  unsigned long long m_off;   // first element of the block's momentum
  unsigned long long nv_off;  // first element of the block's NorMuon state (unused without NorMuon)
};

void muon_momentum_batched(float* u, size_t u_stride, float* buf, const float* g, const MuonBlockRef* refs,
                           int count, size_t n, double momentum, bool nesterov, bool ema_form, cudaStream_t stream);

// factors: count * stats floats (stats = per_row ? rows : cols); scratch:
// count * stats doubles.
void normuon_factors_batched(float* factors, const bf16* O, size_t o_stride, float* nv, const MuonBlockRef* refs,
                             int count, int rows, int cols, bool per_row, double beta2, double* scratch,
                             cudaStream_t stream);

// factors may be null (no NorMuon).
void muon_apply_batched(float* w, bf16* w_bf16, const bf16* O, size_t o_stride, const MuonBlockRef* refs, int count,
                        int rows, int cols, const float* factors, bool per_row, double lr, double scale,
                        double weight_decay, bool cautious, cudaStream_t stream);

// running[i] = max(running[i], observed[i]) for i < n.
void attention_logits_max(float* running, const float* observed, size_t n, cudaStream_t stream);

// Offsets (elements into the parameter buffer) of one layer's head-0 rows of
// W_q and W_k (and their biases; -1 where there is none); every head's rows
// are head_dim x cols.
struct QkClipLayer {
  long long wq, wk, bq, bk;  // offsets in w; wq < 0: the layer has no attention (skipped)
};

// For every (layer l, head h) with running[l*n_head + h] > tau: g = tau / max,
// W_q rows *= float(g^alpha), W_k rows *= float(g^(1-alpha)) (as
// optim/qk_clip.cpp), the bf16 copy of those rows refreshed (w_bf16 may be
// null); then running is reset to -inf. layers: device table of n_layer.
void qk_clip_apply(float* w, bf16* w_bf16, float* running, const QkClipLayer* layers, int n_layer, int n_head,
                   int head_dim, int cols, double tau, double alpha, cudaStream_t stream);

// Sets n floats to -inf.
void fill_neg_inf(float* x, size_t n, cudaStream_t stream);

}  // namespace muongpt::gpu
