// Attention output gate (speedrun record #28, "sparse attention gate"): each
// head's output at each token is scaled by a sigmoid of a linear function of
// the first K channels of the attention input,
//   z[n,h] = sum_{i<K} x[n,i] * W[h,i]        g[n,h] = sigmoid(z[n,h])
//   y[n,h,d] = g[n,h] * a[n,h,d]
// Backward (dz = dg * g * (1 - g), dg[n,h] = sum_d dy[n,h,d] * a[n,h,d]):
//   da[n,h,d] = g[n,h] * dy[n,h,d]
//   dW[h,i] += sum_n dz[n,h] * x[n,i]         (deterministic sum over tokens)
//   dx[n,i] += sum_h dz[n,h] * W[h,i]         (i < K; the other channels get nothing)
// Layout: x (N, C) row-major with K <= C; a, y, dy, da (N, H*D) as the
// attention output (N, C); W (H, K); g (N, H) is saved for the backward.
// In-place is allowed (y == a, da == dy).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/cpu/reduce.h"

namespace muongpt::cpu {

template <class T>
void attention_gate_forward(T* y, T* g, const T* a, const T* x, const T* W, int N, int C, int H, int D, int K) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n)
    for (int h = 0; h < H; ++h) {
      T z = T(0);
      for (int i = 0; i < K; ++i) z += x[static_cast<size_t>(n) * C + i] * W[static_cast<size_t>(h) * K + i];
      const T gate = T(1) / (T(1) + std::exp(-z));
      g[static_cast<size_t>(n) * H + h] = gate;
      const size_t row = (static_cast<size_t>(n) * H + h) * D;
      for (int d = 0; d < D; ++d) y[row + d] = gate * a[row + d];
    }
}

// a is the ungated attention output of the forward, g its gates. Writes da,
// adds into dW and (the first K channels of) dx.
template <class T>
void attention_gate_backward(T* da, T* dW, T* dx, const T* dy, const T* a, const T* g, const T* x, const T* W, int N,
                             int C, int H, int D, int K) {
  std::vector<T> dz(static_cast<size_t>(N) * H);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n)
    for (int h = 0; h < H; ++h) {
      const size_t row = (static_cast<size_t>(n) * H + h) * D;
      const T gate = g[static_cast<size_t>(n) * H + h];
      T dg = T(0);
      for (int d = 0; d < D; ++d) {
        dg += dy[row + d] * a[row + d];
        da[row + d] = gate * dy[row + d];
      }
      dz[static_cast<size_t>(n) * H + h] = dg * gate * (T(1) - gate);
    }
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < K; ++i)
      dW[static_cast<size_t>(h) * K + i] += deterministic_sum<T>(static_cast<size_t>(N), [&](size_t n) {
        return dz[n * H + h] * x[n * C + i];
      });
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n)
    for (int i = 0; i < K; ++i) {
      T s = T(0);
      for (int h = 0; h < H; ++h) s += dz[static_cast<size_t>(n) * H + h] * W[static_cast<size_t>(h) * K + i];
      dx[static_cast<size_t>(n) * C + i] += s;
    }
}

}  // namespace muongpt::cpu
