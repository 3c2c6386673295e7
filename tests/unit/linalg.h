// Small dense linear algebra for tests: eigenvalues of a symmetric matrix by
// Householder tridiagonalisation followed by Sturm-sequence bisection. Used
// to get singular values (sqrt of the eigenvalues of X X^T) without LAPACK.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace muongpt::test {

// Eigenvalues (ascending) of the symmetric n x n matrix A (row-major, copied).
inline std::vector<double> symmetric_eigenvalues(std::vector<double> A, int n) {
  auto at = [&](int i, int j) -> double& { return A[static_cast<size_t>(i) * n + j]; };
  std::vector<double> v(n), p(n), w(n);
  // Householder: reduce to tridiagonal form, column by column.
  for (int k = 0; k < n - 2; ++k) {
    double alpha = 0;
    for (int i = k + 1; i < n; ++i) alpha += at(i, k) * at(i, k);
    alpha = std::sqrt(alpha);
    if (alpha == 0) continue;
    if (at(k + 1, k) > 0) alpha = -alpha;
    double vnorm2 = 0;
    for (int i = 0; i < n; ++i) v[i] = 0;
    v[k + 1] = at(k + 1, k) - alpha;
    for (int i = k + 2; i < n; ++i) v[i] = at(i, k);
    for (int i = k + 1; i < n; ++i) vnorm2 += v[i] * v[i];
    if (vnorm2 == 0) continue;
    // A <- H A H with H = I - 2 v v^T / (v^T v)
    for (int i = k; i < n; ++i) {
      double s = 0;
      for (int j = k + 1; j < n; ++j) s += at(i, j) * v[j];
      p[i] = 2 * s / vnorm2;
    }
    double K = 0;
    for (int i = k + 1; i < n; ++i) K += v[i] * p[i];
    K /= vnorm2;
    for (int i = k; i < n; ++i) w[i] = p[i] - K * v[i];
    for (int i = k; i < n; ++i)
      for (int j = k; j < n; ++j) at(i, j) -= v[i] * w[j] + w[i] * v[j];
  }
  std::vector<double> d(n), e(n, 0.0);
  for (int i = 0; i < n; ++i) d[i] = at(i, i);
  for (int i = 1; i < n; ++i) e[i] = at(i, i - 1);
  // Gershgorin bounds, then bisection for each eigenvalue by Sturm counts.
  double lo = d[0], hi = d[0];
  for (int i = 0; i < n; ++i) {
    const double r = std::abs(e[i]) + (i + 1 < n ? std::abs(e[i + 1]) : 0.0);
    lo = std::min(lo, d[i] - r);
    hi = std::max(hi, d[i] + r);
  }
  auto count_below = [&](double x) {  // number of eigenvalues < x
    int count = 0;
    double q = 1;
    for (int i = 0; i < n; ++i) {
      q = d[i] - x - (i ? e[i] * e[i] / q : 0.0);
      if (q == 0) q = -1e-300;
      if (q < 0) ++count;
    }
    return count;
  };
  std::vector<double> eig(n);
  for (int k = 0; k < n; ++k) {
    double a = lo, b = hi;
    for (int it = 0; it < 200 && b - a > 1e-14 * std::max(1.0, std::abs(b)); ++it) {
      const double mid = 0.5 * (a + b);
      if (count_below(mid) > k) b = mid;
      else a = mid;
    }
    eig[k] = 0.5 * (a + b);
  }
  return eig;
}

// Singular values (ascending) of the rows x cols matrix X.
template <class T>
std::vector<double> singular_values(const std::vector<T>& X, int rows, int cols) {
  const int n = std::min(rows, cols);
  std::vector<double> G(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j <= i; ++j) {
      double s = 0;
      if (rows <= cols)
        for (int k = 0; k < cols; ++k) s += double(X[size_t(i) * cols + k]) * X[size_t(j) * cols + k];
      else
        for (int k = 0; k < rows; ++k) s += double(X[size_t(k) * cols + i]) * X[size_t(k) * cols + j];
      G[size_t(i) * n + j] = G[size_t(j) * n + i] = s;
    }
  auto ev = symmetric_eigenvalues(G, n);
  for (auto& x : ev) x = std::sqrt(std::max(0.0, x));
  return ev;
}

}  // namespace muongpt::test
