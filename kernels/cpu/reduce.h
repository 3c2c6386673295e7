// Deterministic reductions.
//
// Sums over many elements are split into fixed-size chunks (independent of
// the number of threads), each chunk summed in order, and the chunk sums then
// added in order. The result is the same bits for any thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace muongpt::cpu {

constexpr size_t kReduceChunk = 4096;

// sum_i f(i) for i in [0, n), accumulated in type Acc.
template <class Acc, class F>
Acc deterministic_sum(size_t n, F&& f) {
  const size_t chunks = (n + kReduceChunk - 1) / kReduceChunk;
  std::vector<Acc> partial(chunks, Acc(0));
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < chunks; ++c) {
    Acc s = 0;
    const size_t end = std::min(n, (c + 1) * kReduceChunk);
    for (size_t i = c * kReduceChunk; i < end; ++i) s += f(i);
    partial[c] = s;
  }
  Acc total = 0;
  for (Acc p : partial) total += p;
  return total;
}

}  // namespace muongpt::cpu
