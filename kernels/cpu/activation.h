// MLP nonlinearities, elementwise.
//
// GELU (tanh approximation, GPT-2):
//   y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   dy/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3*0.044715 x^2)
// ReLU^2 (speedrun):
//   y = max(x, 0)^2,  dy/dx = 2 max(x, 0)
#pragma once

#include <cmath>
#include <cstddef>

namespace muongpt::cpu {

template <class T>
void gelu_forward(T* out, const T* x, size_t n) {
  const T k = std::sqrt(T(2) / T(M_PI));
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    const T v = x[i];
    out[i] = T(0.5) * v * (T(1) + std::tanh(k * (v + T(0.044715) * v * v * v)));
  }
}

template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, size_t n) {
  const T k = std::sqrt(T(2) / T(M_PI));
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T th = std::tanh(k * (v + T(0.044715) * v * v * v));
    const T d = T(0.5) * (T(1) + th) + T(0.5) * v * (T(1) - th * th) * k * (T(1) + T(3 * 0.044715) * v * v);
    dx[i] = dout[i] * d;
  }
}

template <class T>
void relu2_forward(T* out, const T* x, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    const T r = x[i] > T(0) ? x[i] : T(0);
    out[i] = r * r;
  }
}

template <class T>
void relu2_backward(T* dx, const T* dout, const T* x, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) dx[i] = x[i] > T(0) ? T(2) * x[i] * dout[i] : T(0);
}

}  // namespace muongpt::cpu
