// Smear (speedrun record #34): each token's embedding takes in a gated share
// of the previous token's, before the embedding norm:
//   z_t = sum_{i<K} e[t,i] * w[i]     g_t = sigmoid(z_t)
//   y[t] = e[t] + lambda * g_t * e[t-1]        (t >= 1 within a sequence)
//   y[0] = e[0]
// The record runs one packed sequence per GPU, so the smear crosses document
// boundaries; so does this (it only stops at the start of each sequence).
// Backward, with s_t = lambda * g_t and r_t = dy[t] . e[t-1]:
//   de[t] += dy[t];  de[t-1] += s_t * dy[t]
//   dlambda += sum_t g_t * r_t
//   dz_t = lambda * r_t * g_t * (1 - g_t);  dw[i] += sum_t dz_t * e[t,i];  de[t,i] += dz_t * w[i] (i < K)
// Layout: e, y, dy, de (B, T, C) row-major; w (K); g (B*T) saved from the
// forward (g of each sequence's first token unused). Sums over tokens are deterministic.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/cpu/reduce.h"

namespace muongpt::cpu {

template <class T>
void smear_forward(T* y, T* g, const T* e, const T* w, T lambda, int B, int Tn, int C, int K) {
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * Tn; ++bt) {
    const size_t row = static_cast<size_t>(bt) * C;
    if (bt % Tn == 0) {  // a sequence's first token has no predecessor
      g[bt] = T(0);
      for (int c = 0; c < C; ++c) y[row + c] = e[row + c];
      continue;
    }
    T z = T(0);
    for (int i = 0; i < K; ++i) z += e[row + i] * w[i];
    const T gate = T(1) / (T(1) + std::exp(-z));
    g[bt] = gate;
    const T s = lambda * gate;
    for (int c = 0; c < C; ++c) y[row + c] = e[row + c] + s * e[row - C + c];
  }
}

// Writes de (the gradient of e), adds into dw (K) and dlambda (1).
template <class T>
void smear_backward(T* de, T* dw, T* dlambda, const T* dy, const T* e, const T* g, const T* w, T lambda, int B, int Tn,
                    int C, int K) {
  const size_t N = static_cast<size_t>(B) * Tn;
  std::vector<T> r(N, T(0)), dz(N, T(0));  // r_t = dy[t] . e[t-1], dz_t (0 at sequence starts)
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * Tn; ++bt) {
    if (bt % Tn == 0) continue;
    const size_t row = static_cast<size_t>(bt) * C;
    T dot = T(0);
    for (int c = 0; c < C; ++c) dot += dy[row + c] * e[row - C + c];
    r[bt] = dot;
    dz[bt] = lambda * dot * g[bt] * (T(1) - g[bt]);
  }
  *dlambda += deterministic_sum<T>(N, [&](size_t t) { return g[t] * r[t]; });
  for (int i = 0; i < K; ++i)
    dw[i] += deterministic_sum<T>(N, [&](size_t t) { return dz[t] * e[t * C + i]; });
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * Tn; ++bt) {
    const size_t row = static_cast<size_t>(bt) * C;
    const bool has_next = (bt + 1) % Tn != 0;  // the next token of the same sequence takes from this one
    const T s_next = has_next ? lambda * g[bt + 1] : T(0);
    for (int c = 0; c < C; ++c) de[row + c] = dy[row + c] + (has_next ? s_next * dy[row + C + c] : T(0));
    for (int i = 0; i < K; ++i) de[row + i] += dz[bt] * w[i];
  }
}

}  // namespace muongpt::cpu
