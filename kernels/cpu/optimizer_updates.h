// Elementwise optimizer updates, the reference (PyTorch semantics).
//
// AdamW (torch.optim.AdamW), step t >= 1:
//   w  *= 1 - lr*wd
//   m   = lerp(m, g, 1-b1)          v = b2 v + (1-b2) g^2
//   w  -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// Muon momentum, two forms the speedrun used:
//   sum (2024):  buf = mu buf + g        nesterov: u = g + mu buf        else u = buf
//   ema (2025):  buf = lerp(buf, g, 1-mu) nesterov: u = lerp(g, buf, mu)  else u = buf
// Muon parameter update with orthogonalised O and scale s:
//   w *= 1 - lr*wd ;  w -= lr * s * O
#pragma once

#include <cmath>
#include <cstddef>

namespace muongpt::cpu {

template <class T>
void adamw_update(T* w, T* m, T* v, const T* g, size_t n, double lr, double beta1, double beta2, double eps,
                  double weight_decay, long step) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const T step_size = static_cast<T>(lr / bc1);
  const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
  const T decay = static_cast<T>(1.0 - lr * weight_decay);
  const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2), e = static_cast<T>(eps);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    w[i] *= decay;
    m[i] += (T(1) - b1) * (g[i] - m[i]);
    v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
    w[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + e);
  }
}

// Updates the momentum buffer and writes the vector to orthogonalise into u.
template <class T>
void muon_momentum(T* u, T* buf, const T* g, size_t n, double momentum, bool nesterov, bool ema_form) {
  const T mu = static_cast<T>(momentum);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    if (ema_form) {
      buf[i] += (T(1) - mu) * (g[i] - buf[i]);
      u[i] = nesterov ? g[i] + mu * (buf[i] - g[i]) : buf[i];
    } else {
      buf[i] = mu * buf[i] + g[i];
      u[i] = nesterov ? g[i] + mu * buf[i] : buf[i];
    }
  }
}

template <class T>
void muon_apply(T* w, const T* update, size_t n, double lr, double scale, double weight_decay) {
  const T decay = static_cast<T>(1.0 - lr * weight_decay);
  const T step = static_cast<T>(lr * scale);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) w[i] = w[i] * decay - step * update[i];
}

}  // namespace muongpt::cpu
