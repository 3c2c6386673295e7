// Newton-Schulz orthogonalisation (Muon), the reference.
//
// Approximates the orthogonal polar factor U V^T of G = U S V^T by an odd
// polynomial iteration on the singular values:
//   X0 = G / (norm_scale * ||G||_F + eps)                 (singular values <= 1)
//   if rows > cols: work on X^T (so X X^T is the small Gram matrix)
//   for each (a, b, c) in the coefficient table:
//     A = X X^T
//     B = b A + c A A
//     X = a X + B X              (= a X + b (X X^T) X + c (X X^T)^2 X)
// The classic quintic (3.4445, -4.7750, 2.0315) x5 leaves singular values in
// about [0.68, 1.14]; Polar Express uses a different triple per iteration.
// X is (rows, cols) row-major and is replaced by the result.
#pragma once

#include <array>
#include <cmath>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/reduce.h"

namespace muongpt::cpu {

template <class T>
T frobenius_norm(const T* x, size_t n) {
  return std::sqrt(deterministic_sum<T>(n, [&](size_t i) { return x[i] * x[i]; }));
}

template <class T>
void newton_schulz(T* X, int rows, int cols, const std::vector<std::array<double, 3>>& coefficients,
                   double norm_scale, double eps) {
  const size_t n = static_cast<size_t>(rows) * cols;
  const T denom = static_cast<T>(norm_scale) * frobenius_norm(X, n) + static_cast<T>(eps);
  const bool tall = rows > cols;
  const int r = tall ? cols : rows;  // rows of the wide working matrix
  const int c = tall ? rows : cols;
  std::vector<T> x(n), xt(n), A(static_cast<size_t>(r) * r), AA(static_cast<size_t>(r) * r), BX(n);
  if (tall)
    transpose(rows, cols, X, x.data());
  else
    std::copy(X, X + n, x.begin());
  for (auto& v : x) v /= denom;
  for (const auto& abc : coefficients) {
    const T a = static_cast<T>(abc[0]), b = static_cast<T>(abc[1]), cc = static_cast<T>(abc[2]);
    transpose(r, c, x.data(), xt.data());
    gemm_nn(r, r, c, x.data(), c, xt.data(), r, A.data(), r, false);   // A = X X^T
    gemm_nn(r, r, r, A.data(), r, A.data(), r, AA.data(), r, false);  // A A
    for (size_t i = 0; i < A.size(); ++i) A[i] = b * A[i] + cc * AA[i];  // B
    gemm_nn(r, c, r, A.data(), r, x.data(), c, BX.data(), c, false);  // B X
    for (size_t i = 0; i < n; ++i) x[i] = a * x[i] + BX[i];
  }
  if (tall)
    transpose(r, c, x.data(), X);
  else
    std::copy(x.begin(), x.end(), X);
}

}  // namespace muongpt::cpu
