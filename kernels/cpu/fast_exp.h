// exp(x) for float that the compiler can vectorise (std::exp cannot be,
// without -ffast-math), used where the CPU reference evaluates exp over the
// whole vocabulary. Double precision uses std::exp.
//
//   exp(x) = 2^n * e^f,  n = round(x * log2(e)),  f = x - n*ln2 in [-ln2/2, ln2/2]
//   (n*ln2 subtracted in two parts, Cody-Waite, so f is exact to float precision)
//   e^f by its Taylor polynomial to degree 7
// Accurate to a few units in the last place (tested against std::exp);
// inputs below -87 give 0 (the softmax only needs exp(x - max) <= 1).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace muongpt::cpu {

inline float exp_vectorizable(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = std::nearbyint(x * 1.44269504088896341f);  // x * log2(e)
  float f = x - n * 0.693145751953125f;                       // ln2, high bits (exact product)
  f = f - n * 1.428606820309417232e-06f;                      // ln2, low bits
  // e^f, Taylor series to f^7/7! (error < 2e-9 on |f| <= 0.347)
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const float r = p * scale;
  return x <= -87.0f ? 0.0f : r;
}

template <class T>
inline T exp_fast(T x) {
  if constexpr (sizeof(T) == sizeof(float)) return exp_vectorizable(x);
  else return std::exp(x);
}

}  // namespace muongpt::cpu
