// Logit softcap + softmax cross-entropy over a vocabulary, per token.
//
//   z     raw logits (N, Vp)
//   c_j   = cap * tanh(z_j / cap)          (cap = 0: c_j = z_j)
//   loss  = logsumexp_{j<V} c_j - c_target
// Only the first V columns take part in the softmax (V = Vp unless padded
// columns are masked); masked columns get zero gradient. Backward with an
// upstream gradient g per token:
//   dc_j = g (softmax_j - [j == target]),  dz_j = dc_j (1 - tanh(z_j/cap)^2)
// The forward saves lse = logsumexp_{j<V} c_j per token for the backward.
// dlogits may alias logits (each element is read before it is written).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/fast_exp.h"

namespace muongpt::cpu {

namespace detail {
template <class T>
inline T softcap(T z, T cap) {
  return cap > T(0) ? cap * std::tanh(z / cap) : z;
}
// log-sum-exp of the capped logits of one row. The sum runs in kLanes
// interleaved partial sums (fixed order, so still deterministic) so that it
// vectorises without -ffast-math.
template <class T>
inline T row_logsumexp(const T* z, int V, T cap) {
  constexpr int kLanes = 16;
  T m = -std::numeric_limits<T>::infinity();
  if (cap > T(0)) {
    for (int j = 0; j < V; ++j) m = std::max(m, softcap(z[j], cap));
  } else {
    T lane_max[kLanes];
    for (int l = 0; l < kLanes; ++l) lane_max[l] = -std::numeric_limits<T>::infinity();
    int j = 0;
    for (; j + kLanes <= V; j += kLanes)
      for (int l = 0; l < kLanes; ++l) lane_max[l] = z[j + l] > lane_max[l] ? z[j + l] : lane_max[l];
    for (; j < V; ++j) m = std::max(m, z[j]);
    for (int l = 0; l < kLanes; ++l) m = std::max(m, lane_max[l]);
  }
  T lane_sum[kLanes] = {};
  int j = 0;
  if (cap > T(0)) {
    for (; j + kLanes <= V; j += kLanes)
      for (int l = 0; l < kLanes; ++l) lane_sum[l] += exp_fast(softcap(z[j + l], cap) - m);
    for (; j < V; ++j) lane_sum[0] += exp_fast(softcap(z[j], cap) - m);
  } else {
    for (; j + kLanes <= V; j += kLanes)
      for (int l = 0; l < kLanes; ++l) lane_sum[l] += exp_fast(z[j + l] - m);
    for (; j < V; ++j) lane_sum[0] += exp_fast(z[j] - m);
  }
  T sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += lane_sum[l];
  return m + std::log(sum);
}
}  // namespace detail

template <class T>
void softcap_ce_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int N, int Vp, int V, T cap) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* z = logits + static_cast<size_t>(n) * Vp;
    lse[n] = detail::row_logsumexp(z, V, cap);
    losses[n] = lse[n] - detail::softcap(z[targets[n]], cap);
  }
}

template <class T>
void softcap_ce_backward(T* dlogits, const T* logits, const T* lse_saved, const int32_t* targets, T dloss, int N,
                         int Vp, int V, T cap) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* z = logits + static_cast<size_t>(n) * Vp;
    T* dz = dlogits + static_cast<size_t>(n) * Vp;
    const T lse = lse_saved[n];
    const int target = targets[n];
    const T target_grad = -dloss * (cap > T(0) ? T(1) - std::pow(std::tanh(z[target] / cap), 2) : T(1));
    if (cap > T(0)) {
      for (int j = 0; j < V; ++j) {
        const T th = std::tanh(z[j] / cap);
        dz[j] = exp_fast(cap * th - lse) * (T(1) - th * th) * dloss;
      }
    } else {
      for (int j = 0; j < V; ++j) dz[j] = exp_fast(z[j] - lse) * dloss;
    }
    dz[target] += target_grad;
    for (int j = V; j < Vp; ++j) dz[j] = 0;
  }
}

}  // namespace muongpt::cpu
