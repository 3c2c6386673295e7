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
#pragma once

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

void adamw_update(float* w, bf16* w_bf16, float* m, float* v, const float* g, size_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, long step, cudaStream_t stream);

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

}  // namespace muongpt::gpu
