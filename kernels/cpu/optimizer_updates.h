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
// Cautious weight decay (Chen et al. 2025, arXiv 2510.12402; speedrun record
// 43, `mask = (v_chunk * param_chunk) >= 0`): the decay only where the update
// direction and the weight agree in sign,
//   w = (O*w >= 0) ? w*(1 - lr*wd) - lr*s*O : w - lr*s*O
// NorMuon normalisation of one orthogonalised block O (rows x cols), as the
// speedrun's `_apply_normuon_variance_reduction` (record 41 / HEAD f411b3d):
//   per row i (or per column j; red = the other dimension's size):
//     mean_i = mean_j O_ij^2
//     v_i    = lerp(v_i, mean_i, 1 - beta2)            (state, starts at 0)
//     step_i = 1 / sqrt(max(v_i, 1e-10))
//   O_ij *= step_i * ||O||_F / max(||step (.) O||_F, 1e-10)
// so the result has O's Frobenius norm, and once the EMA has settled every
// row (column) has the same RMS. The paper's Algorithm 1 divides by
// sqrt(v) + eps and rescales to RMS 0.2 instead; with update_scale
// match_rms_adamw this reference gives the same RMS for an orthogonal O.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

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
void muon_apply(T* w, const T* update, size_t n, double lr, double scale, double weight_decay, bool cautious = false) {
  const T decay = static_cast<T>(1.0 - lr * weight_decay);
  const T step = static_cast<T>(lr * scale);
  if (!cautious) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) w[i] = w[i] * decay - step * update[i];
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) w[i] = (update[i] * w[i] >= T(0) ? w[i] * decay : w[i]) - step * update[i];
}

// Length of the NorMuon state of a rows x cols block.
inline size_t normuon_state_size(int rows, int cols, bool per_row) { return per_row ? rows : cols; }

// NorMuon on one block O (rows x cols, row-major) with its state v; see above.
// Sums run in double in a fixed order.
template <class T>
void normuon_normalize(T* O, int rows, int cols, T* v, bool per_row, double beta2) {
  const int stats = per_row ? rows : cols;
  const int red = per_row ? cols : rows;
  std::vector<double> mean(stats, 0.0), step(stats);
  if (per_row) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; ++i) {
      double sq = 0;
      for (int j = 0; j < cols; ++j) sq += double(O[size_t(i) * cols + j]) * O[size_t(i) * cols + j];
      mean[i] = sq / red;
    }
  } else {
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) mean[j] += double(O[size_t(i) * cols + j]) * O[size_t(i) * cols + j];
    for (double& m : mean) m /= red;
  }
  double sum_mean = 0, sum_scaled = 0;
  for (int i = 0; i < stats; ++i) {
    v[i] += static_cast<T>(1.0 - beta2) * (static_cast<T>(mean[i]) - v[i]);
    step[i] = 1.0 / std::sqrt(std::max(double(v[i]), 1e-10));
    sum_mean += mean[i];
    sum_scaled += mean[i] * step[i] * step[i];
  }
  const double norm = std::sqrt(sum_mean * red), norm_new = std::sqrt(sum_scaled * red);
  const double rescale = norm / std::max(norm_new, 1e-10);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) O[size_t(i) * cols + j] *= static_cast<T>(step[per_row ? i : j] * rescale);
}

// Orthogonality error of a block O (rows x cols): ||G - I||_F / sqrt(n) with
// G the smaller Gram matrix (O O^T when rows <= cols, else O^T O), n its size.
// 0 for an exactly orthogonal O; the quintic's band [0.68, 1.13] gives ~0.3.
template <class T>
double orthogonality_error(const T* O, int rows, int cols) {
  const bool wide = rows <= cols;
  const int n = wide ? rows : cols, k = wide ? cols : rows;
  auto at = [&](int a, int b) { return double(wide ? O[size_t(a) * cols + b] : O[size_t(b) * cols + a]); };
  std::vector<double> row_sums(n, 0.0);  // per row of G, summed in order afterwards
#pragma omp parallel for schedule(static)
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) {
      double g = 0;
      for (int c = 0; c < k; ++c) g += at(a, c) * at(b, c);
      const double d = g - (a == b ? 1.0 : 0.0);
      row_sums[a] += d * d;
    }
  double sum = 0;
  for (double r : row_sums) sum += r;
  return std::sqrt(sum / n);
}

}  // namespace muongpt::cpu
