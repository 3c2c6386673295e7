// Weighted sums with learnable scalar weights: the residual adds, x0
// shortcut, value residual and U-net skips of the speedrun are all
//   out = a * x + b * y
// with a, b scalars (learned or fixed). Backward:
//   dx (=|+=) a * dout     dy (=|+=) b * dout
//   da += sum(dout * x)    db += sum(dout * y)     (deterministic sums)
// Pass null for gradients that are not needed.
#pragma once

#include <cstddef>

#include "kernels/cpu/reduce.h"

namespace muongpt::cpu {

template <class T>
void mix_forward(T* out, const T* x, const T* y, T a, T b, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) out[i] = a * x[i] + b * y[i];
}

template <class T>
void mix_backward(T* dx, T* dy, T* da, T* db, const T* dout, const T* x, const T* y, T a, T b, size_t n,
                  bool accumulate_dx, bool accumulate_dy) {
  if (da) *da += deterministic_sum<T>(n, [&](size_t i) { return dout[i] * x[i]; });
  if (db) *db += deterministic_sum<T>(n, [&](size_t i) { return dout[i] * y[i]; });
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    if (dx) dx[i] = (accumulate_dx ? dx[i] : T(0)) + a * dout[i];
    if (dy) dy[i] = (accumulate_dy ? dy[i] : T(0)) + b * dout[i];
  }
}

}  // namespace muongpt::cpu
