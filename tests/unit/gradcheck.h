// Finite-difference gradient checking in double precision.
//
// For a function f: R^n -> R^m and a random weight vector w, the scalar
// L(x) = sum_i w_i f(x)_i has gradient J^T w, which is what a backward pass
// given dout = w computes. We compare it with central differences
//   (L(x + h e_j) - L(x - h e_j)) / 2h.
#pragma once

#include <functional>
#include <vector>

#include "test_support.h"

namespace muongpt::test {

inline double weighted_sum(const std::vector<double>& out, const std::vector<double>& w) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += out[i] * w[i];
  return s;
}

// Numerical gradient of loss() with respect to x (x is perturbed in place and restored).
inline std::vector<double> numeric_gradient(std::vector<double>& x, const std::function<double()>& loss,
                                            double h = 1e-6) {
  std::vector<double> grad(x.size());
  for (size_t j = 0; j < x.size(); ++j) {
    const double saved = x[j];
    x[j] = saved + h;
    const double up = loss();
    x[j] = saved - h;
    const double down = loss();
    x[j] = saved;
    grad[j] = (up - down) / (2 * h);
  }
  return grad;
}

inline void require_gradient(const std::vector<double>& analytic, const std::vector<double>& numeric,
                             const std::string& what, double rtol = 1e-5, double atol = 1e-7) {
  require_close(analytic, numeric, rtol, atol, what);
}

}  // namespace muongpt::test
