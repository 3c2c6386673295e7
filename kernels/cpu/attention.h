// Multi-head causal self-attention, the naive O(T^2) reference.
//
// For each batch b and head h, query position t attends to key positions j
// allowed by the mask:
//   allowed(t, j) = j <= t
//                   and (window == 0 or t - j < window)          sliding window
//                       (with block b > 0: floor(t/b) - floor(j/b) < window/b,
//                        whole b-token blocks; window a multiple of b)
//                   and (doc == null or doc[t] == doc[j])         document mask
//   s_tj = scale * q_t . k_j            P_t = softmax_j(s_tj)     y_t = sum_j P_tj v_j
// Backward (P saved by the forward):
//   dv_j += P_tj dy_t        dP_tj = dy_t . v_j
//   dS_tj = P_tj (dP_tj - sum_i P_ti dP_ti)
//   dq_t = scale sum_j dS_tj k_j      dk_j += scale dS_tj q_t
// Layout: q, k, v, y: (B, T, H, D) contiguous; P: (B, H, T, T), row t holds
// zeros where masked. Optional output: max_logit[h] = max over b, t and
// allowed j of s_tj (for QK-clip). Parallel over (b, h): every gradient
// element is summed in a fixed order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace muongpt::cpu {

struct AttentionMask {
  int window = 0;                    // 0 = full causal
  const int32_t* doc_ids = nullptr;  // (B, T) document id per token, or null
  int block = 0;                     // 0 = token window; else whole blocks of this many tokens

  bool allowed(int b, int Tn, int t, int j) const {
    if (j > t) return false;
    if (window > 0 && (block > 0 ? t / block - j / block >= window / block : t - j >= window)) return false;
    if (doc_ids && doc_ids[b * Tn + t] != doc_ids[b * Tn + j]) return false;
    return true;
  }
};

template <class T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v, int B, int Tn, int H, int D, T scale,
                       const AttentionMask& mask = {}, T* max_logit = nullptr) {
  const size_t row = static_cast<size_t>(H) * D;  // stride between positions
  std::vector<T> head_max(static_cast<size_t>(B) * H, -std::numeric_limits<T>::infinity());
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * H; ++bh) {
    const int b = bh / H, h = bh % H;
    const T* qb = q + static_cast<size_t>(b) * Tn * row + static_cast<size_t>(h) * D;
    const T* kb = k + static_cast<size_t>(b) * Tn * row + static_cast<size_t>(h) * D;
    const T* vb = v + static_cast<size_t>(b) * Tn * row + static_cast<size_t>(h) * D;
    T* ob = out + static_cast<size_t>(b) * Tn * row + static_cast<size_t>(h) * D;
    T* P = probs + static_cast<size_t>(bh) * Tn * Tn;
    T hmax = -std::numeric_limits<T>::infinity();
    for (int t = 0; t < Tn; ++t) {
      T* p = P + static_cast<size_t>(t) * Tn;
      const T* qt = qb + static_cast<size_t>(t) * row;
      T m = -std::numeric_limits<T>::infinity();
      for (int j = 0; j < Tn; ++j) {
        if (!mask.allowed(b, Tn, t, j)) {
          p[j] = 0;
          continue;
        }
        const T* kj = kb + static_cast<size_t>(j) * row;
        T s = 0;
        for (int d = 0; d < D; ++d) s += qt[d] * kj[d];
        s *= scale;
        p[j] = s;
        m = std::max(m, s);
      }
      hmax = std::max(hmax, m);
      T sum = 0;
      for (int j = 0; j < Tn; ++j) {
        if (!mask.allowed(b, Tn, t, j)) continue;
        p[j] = std::exp(p[j] - m);
        sum += p[j];
      }
      T* ot = ob + static_cast<size_t>(t) * row;
      for (int d = 0; d < D; ++d) ot[d] = 0;
      for (int j = 0; j < Tn; ++j) {
        if (!mask.allowed(b, Tn, t, j)) continue;
        p[j] /= sum;
        const T* vj = vb + static_cast<size_t>(j) * row;
        for (int d = 0; d < D; ++d) ot[d] += p[j] * vj[d];
      }
    }
    head_max[bh] = hmax;
  }
  if (max_logit) {
    for (int h = 0; h < H; ++h) {
      T m = -std::numeric_limits<T>::infinity();
      for (int b = 0; b < B; ++b) m = std::max(m, head_max[static_cast<size_t>(b) * H + h]);
      max_logit[h] = m;
    }
  }
}

template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* probs, const T* q, const T* k, const T* v,
                        int B, int Tn, int H, int D, T scale, const AttentionMask& mask = {}) {
  const size_t row = static_cast<size_t>(H) * D;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * H; ++bh) {
    const int b = bh / H, h = bh % H;
    const size_t off = static_cast<size_t>(b) * Tn * row + static_cast<size_t>(h) * D;
    const T* P = probs + static_cast<size_t>(bh) * Tn * Tn;
    for (int t = 0; t < Tn; ++t) {
      T* dqt = dq + off + static_cast<size_t>(t) * row;
      T* dkt = dk + off + static_cast<size_t>(t) * row;
      T* dvt = dv + off + static_cast<size_t>(t) * row;
      for (int d = 0; d < D; ++d) dqt[d] = dkt[d] = dvt[d] = 0;
    }
    std::vector<T> dp(Tn);
    for (int t = 0; t < Tn; ++t) {
      const T* p = P + static_cast<size_t>(t) * Tn;
      const T* dyt = dout + off + static_cast<size_t>(t) * row;
      const T* qt = q + off + static_cast<size_t>(t) * row;
      T* dqt = dq + off + static_cast<size_t>(t) * row;
      T dot = 0;  // sum_j P_tj dP_tj
      for (int j = 0; j < Tn; ++j) {
        if (!mask.allowed(b, Tn, t, j)) {
          dp[j] = 0;
          continue;
        }
        const T* vj = v + off + static_cast<size_t>(j) * row;
        T* dvj = dv + off + static_cast<size_t>(j) * row;
        T s = 0;
        for (int d = 0; d < D; ++d) {
          s += dyt[d] * vj[d];
          dvj[d] += p[j] * dyt[d];
        }
        dp[j] = s;
        dot += p[j] * s;
      }
      for (int j = 0; j < Tn; ++j) {
        if (!mask.allowed(b, Tn, t, j)) continue;
        const T ds = p[j] * (dp[j] - dot) * scale;
        const T* kj = k + off + static_cast<size_t>(j) * row;
        T* dkj = dk + off + static_cast<size_t>(j) * row;
        for (int d = 0; d < D; ++d) {
          dqt[d] += ds * kj[d];
          dkj[d] += ds * qt[d];
        }
      }
    }
  }
}

}  // namespace muongpt::cpu
