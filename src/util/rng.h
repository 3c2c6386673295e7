// A small, portable random number generator (SplitMix64).
//
// std::normal_distribution differs between standard libraries; this one gives
// the same numbers everywhere, and its whole state is one uint64 that a
// checkpoint can store. Streams: Rng(seed, stream) gives independent
// sequences, e.g. one per parameter name, so initialisation does not depend on
// parameter order.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace muongpt {

class Rng {
 public:
  explicit Rng(uint64_t seed, uint64_t stream = 0) : state_(mix(seed ^ mix(stream + 0x9e3779b97f4a7c15ULL))) {}

  uint64_t next_u64() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix(state_);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  // Standard normal (Box-Muller; one draw per call, the pair's second is dropped).
  double normal() {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }

  uint64_t state() const { return state_; }
  void set_state(uint64_t s) { state_ = s; }

  static uint64_t hash(std::string_view text) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : text) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
    return h;
  }

 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

}  // namespace muongpt
