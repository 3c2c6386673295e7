// Token (and learned position) embedding.
//
//   forward   out[b,t,:] = wte[tok[b,t],:] (+ wpe[t,:])
//   backward  dwte[tok[b,t],:] += dout[b,t,:] ; dwpe[t,:] += sum_b dout[b,t,:]
// Layout: tokens (B,T) int32, tables (rows, C), out (B,T,C).
// The backward visits tokens in order and is parallel over channels, so each
// gradient element is summed in a fixed order (deterministic, no atomics).
#pragma once

#include <cstdint>

namespace muongpt::cpu {

template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int Tn, int C) {
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * Tn; ++bt) {
    const T* e = wte + static_cast<size_t>(tokens[bt]) * C;
    const T* p = wpe ? wpe + static_cast<size_t>(bt % Tn) * C : nullptr;
    T* o = out + static_cast<size_t>(bt) * C;
    for (int c = 0; c < C; ++c) o[c] = p ? e[c] + p[c] : e[c];
  }
}

template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B, int Tn, int C) {
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; ++c) {
    for (int bt = 0; bt < B * Tn; ++bt) {
      const T g = dout[static_cast<size_t>(bt) * C + c];
      dwte[static_cast<size_t>(tokens[bt]) * C + c] += g;
      if (dwpe) dwpe[static_cast<size_t>(bt % Tn) * C + c] += g;
    }
  }
}

}  // namespace muongpt::cpu
