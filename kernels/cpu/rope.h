// Rotary position embedding (RoPE), half-split form as in the speedrun.
//
// For a head vector x of size D at position t, with x1 = x[:D/2], x2 = x[D/2:]
// and angle_i = t * base^(-2i/D):
//   y1 = x1*cos + x2*sin
//   y2 = -x1*sin + x2*cos
// This is an orthogonal map, so the backward applies the transpose:
//   dx1 = dy1*cos - dy2*sin
//   dx2 = dy1*sin + dy2*cos
// Layout: (B, T, H, D) contiguous; in-place is allowed (out == in).
#pragma once

#include <cmath>
#include <vector>

namespace muongpt::cpu {

// cos/sin tables of shape (T, D/2), computed in double then rounded to T.
// Frequency of pair i (model.rope_frequencies):
//   standard:        base^(-2i/D)
//   half_truncated:  (1/base)^(i/(D/4 - 1)) for i < D/4, else 0 (no rotation;
//                    the speedrun's record #17 on, base 1024)
inline double rope_inv_freq(int i, int D, double base, bool half_truncated) {
  if (!half_truncated) return 1.0 / std::pow(base, (2.0 * i) / D);
  const int quarter = D / 4;
  if (i >= quarter) return 0.0;
  return std::pow(1.0 / base, static_cast<double>(i) / (quarter - 1));
}

// The angular frequency of each of the D/2 pairs (rope_inv_freq for i = 0 .. D/2 - 1).
inline std::vector<double> rope_frequencies(int D, double base, bool half_truncated) {
  std::vector<double> freqs(static_cast<size_t>(D / 2));
  for (int i = 0; i < D / 2; ++i) freqs[static_cast<size_t>(i)] = rope_inv_freq(i, D, base, half_truncated);
  return freqs;
}

// The same tables from explicit angular frequencies, one per pair (D/2 of
// them): angle = t * freqs[i] (schedule.window_stages.yarn rescales them).
template <class T>
void rope_tables(std::vector<T>& cos_table, std::vector<T>& sin_table, int Tn, const std::vector<double>& freqs) {
  const size_t half = freqs.size();
  cos_table.resize(static_cast<size_t>(Tn) * half);
  sin_table.resize(static_cast<size_t>(Tn) * half);
  for (int t = 0; t < Tn; ++t)
    for (size_t i = 0; i < half; ++i) {
      const double angle = t * freqs[i];
      cos_table[static_cast<size_t>(t) * half + i] = static_cast<T>(std::cos(angle));
      sin_table[static_cast<size_t>(t) * half + i] = static_cast<T>(std::sin(angle));
    }
}

template <class T>
void rope_tables(std::vector<T>& cos_table, std::vector<T>& sin_table, int Tn, int D, double base,
                 bool half_truncated = false) {
  // inv_freq is computed in fp32 by the speedrun; we keep it in double
  rope_tables(cos_table, sin_table, Tn, rope_frequencies(D, base, half_truncated));
}

template <class T>
void rope_forward(T* out, const T* in, const T* cos_table, const T* sin_table, int B, int Tn, int H, int D) {
  const int half = D / 2;
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * Tn; ++bt) {
    const int t = bt % Tn;
    const T* c = cos_table + static_cast<size_t>(t) * half;
    const T* s = sin_table + static_cast<size_t>(t) * half;
    for (int h = 0; h < H; ++h) {
      const size_t base = (static_cast<size_t>(bt) * H + h) * D;
      for (int i = 0; i < half; ++i) {
        const T x1 = in[base + i], x2 = in[base + half + i];
        out[base + i] = x1 * c[i] + x2 * s[i];
        out[base + half + i] = -x1 * s[i] + x2 * c[i];
      }
    }
  }
}

template <class T>
void rope_backward(T* din, const T* dout, const T* cos_table, const T* sin_table, int B, int Tn, int H, int D) {
  const int half = D / 2;
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * Tn; ++bt) {
    const int t = bt % Tn;
    const T* c = cos_table + static_cast<size_t>(t) * half;
    const T* s = sin_table + static_cast<size_t>(t) * half;
    for (int h = 0; h < H; ++h) {
      const size_t base = (static_cast<size_t>(bt) * H + h) * D;
      for (int i = 0; i < half; ++i) {
        const T g1 = dout[base + i], g2 = dout[base + half + i];
        din[base + i] = g1 * c[i] - g2 * s[i];
        din[base + half + i] = g1 * s[i] + g2 * c[i];
      }
    }
  }
}

}  // namespace muongpt::cpu
