// Normalisation layers over the last dimension of a (rows, C) tensor.
//
// RMSNorm:   r = 1/sqrt(mean(x^2) + eps)      y = x * r (* w)
// LayerNorm: m = mean(x), r = 1/sqrt(mean((x-m)^2) + eps)
//            y = (x - m) * r * w + b
// The forward saves r (and m) per row for the backward. With xh = (x-m)*r:
//   dxh = dy (* w)
//   dx  = r * (dxh - mean(dxh) - xh * mean(dxh * xh))      (RMSNorm: no mean(dxh) term, m = 0)
//   dw += sum_rows dy * xh ;  db += sum_rows dy
// Weight gradients are summed over rows in order, parallel over columns.
// The backward accumulates into dx when `accumulate` (residual streams).
#pragma once

#include <cmath>
#include <cstddef>

namespace muongpt::cpu {

template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* weight, int rows, int C, T eps) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const T* xr = x + static_cast<size_t>(r) * C;
    T ss = 0;
    for (int c = 0; c < C; ++c) ss += xr[c] * xr[c];
    const T s = T(1) / std::sqrt(ss / C + eps);
    rstd[r] = s;
    T* o = out + static_cast<size_t>(r) * C;
    for (int c = 0; c < C; ++c) o[c] = xr[c] * s * (weight ? weight[c] : T(1));
  }
}

template <class T>
void rmsnorm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight, const T* rstd, int rows,
                      int C, bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const T* xr = x + static_cast<size_t>(r) * C;
    const T* g = dout + static_cast<size_t>(r) * C;
    const T s = rstd[r];
    T dot = 0;  // sum(dxh * xh)
    for (int c = 0; c < C; ++c) dot += g[c] * (weight ? weight[c] : T(1)) * xr[c] * s;
    dot /= C;
    T* d = dx + static_cast<size_t>(r) * C;
    for (int c = 0; c < C; ++c) {
      const T dxh = g[c] * (weight ? weight[c] : T(1));
      const T v = s * (dxh - xr[c] * s * dot);
      d[c] = accumulate ? d[c] + v : v;
    }
  }
  if (dweight) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; ++c) {
      T sum = dweight[c];
      for (int r = 0; r < rows; ++r) sum += dout[static_cast<size_t>(r) * C + c] * x[static_cast<size_t>(r) * C + c] * rstd[r];
      dweight[c] = sum;
    }
  }
}

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int rows, int C,
                       T eps) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const T* xr = x + static_cast<size_t>(r) * C;
    T m = 0;
    for (int c = 0; c < C; ++c) m += xr[c];
    m /= C;
    T var = 0;
    for (int c = 0; c < C; ++c) var += (xr[c] - m) * (xr[c] - m);
    const T s = T(1) / std::sqrt(var / C + eps);
    mean[r] = m;
    rstd[r] = s;
    T* o = out + static_cast<size_t>(r) * C;
    for (int c = 0; c < C; ++c) o[c] = (xr[c] - m) * s * weight[c] + bias[c];
  }
}

template <class T>
void layernorm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const T* mean,
                        const T* rstd, int rows, int C, bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const T* xr = x + static_cast<size_t>(r) * C;
    const T* g = dout + static_cast<size_t>(r) * C;
    const T m = mean[r], s = rstd[r];
    T mean_dxh = 0, mean_dxh_xh = 0;
    for (int c = 0; c < C; ++c) {
      const T dxh = g[c] * weight[c];
      mean_dxh += dxh;
      mean_dxh_xh += dxh * (xr[c] - m) * s;
    }
    mean_dxh /= C;
    mean_dxh_xh /= C;
    T* d = dx + static_cast<size_t>(r) * C;
    for (int c = 0; c < C; ++c) {
      const T xh = (xr[c] - m) * s;
      const T v = s * (g[c] * weight[c] - mean_dxh - xh * mean_dxh_xh);
      d[c] = accumulate ? d[c] + v : v;
    }
  }
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; ++c) {
    T sw = dweight[c], sb = dbias[c];
    for (int r = 0; r < rows; ++r) {
      const size_t i = static_cast<size_t>(r) * C + c;
      sw += dout[i] * (x[i] - mean[r]) * rstd[r];
      sb += dout[i];
    }
    dweight[c] = sw;
    dbias[c] = sb;
  }
}

}  // namespace muongpt::cpu
