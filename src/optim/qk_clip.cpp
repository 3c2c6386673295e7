#include "optim/qk_clip.h"

#include <cmath>
#include <string>

#include "util/error.h"

namespace muongpt {

namespace {

// Scales rows [row0, row0 + rows) of a matrix parameter (or the same range
// of a bias vector) by f.
template <class T>
void scale_rows(const ParamSpec& spec, T* params, int row0, int rows, double f) {
  const size_t cols = spec.is_matrix() ? static_cast<size_t>(spec.cols()) : 1;
  T* p = params + spec.offset + static_cast<size_t>(row0) * cols;
  const T factor = static_cast<T>(f);
  for (size_t i = 0; i < static_cast<size_t>(rows) * cols; ++i) p[i] *= factor;
}

}  // namespace

QkParams qk_params(const ParamTable& table, int layer) {
  const std::string b = "blocks." + std::to_string(layer) + ".attn.";
  QkParams p;
  if (const ParamSpec* fused = table.find(b + "qkv.weight")) {
    p.wq = p.wk = fused;
    p.bq = p.bk = table.find(b + "qkv.bias");
    p.k0 = fused->rows() / 3;
  } else if (!table.has(b + "proj.weight")) {
    return p;  // attention-free block
  } else {
    p.wq = table.find(b + "q.weight");
    p.wk = table.find(b + "k.weight");
    p.bq = table.find(b + "q.bias");
    p.bk = table.find(b + "k.bias");
    if (!p.wq || !p.wk) fail("QK-clip: layer ", layer, " has neither ", b, "qkv.weight nor ", b, "q.weight/k.weight");
  }
  return p;
}

template <class T>
int qk_clip(const ParamTable& table, T* params, const T* max_logits, int n_layer, int n_head, double tau,
            double alpha) {
  int clipped = 0;
  for (int l = 0; l < n_layer; ++l) {
    const auto [wq, wk, bq, bk, q0, k0] = qk_params(table, l);
    if (!wq) continue;  // attention-free block
    const int C = wq->cols();
    MUONGPT_CHECK(C % n_head == 0, "QK-clip: d_model ", C, " is not divisible by ", n_head, " heads");
    const int D = C / n_head;
    for (int h = 0; h < n_head; ++h) {
      const double m = static_cast<double>(max_logits[static_cast<size_t>(l) * n_head + h]);
      if (!(m > tau)) continue;  // also skips NaN
      const double g = tau / m;
      const double fq = std::pow(g, alpha), fk = std::pow(g, 1.0 - alpha);
      scale_rows(*wq, params, q0 + h * D, D, fq);
      scale_rows(*wk, params, k0 + h * D, D, fk);
      if (bq) scale_rows(*bq, params, q0 + h * D, D, fq);
      if (bk) scale_rows(*bk, params, k0 + h * D, D, fk);
      ++clipped;
    }
  }
  return clipped;
}

template int qk_clip<float>(const ParamTable&, float*, const float*, int, int, double, double);
template int qk_clip<double>(const ParamTable&, double*, const double*, int, int, double, double);

}  // namespace muongpt
