// A 64-bit content checksum for checkpoints (FNV-1a over 8-byte words, the
// last partial word mixed byte by byte). Not cryptographic: it detects
// truncation and corruption, which is all a checkpoint needs. The digest does
// not depend on how the byte stream is split into update() calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace muongpt {

class Checksum {
 public:
  void update(const void* data, size_t bytes) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (bytes > 0 && pending_ > 0) {  // complete a word left from last call
      take_byte(*p++);
      --bytes;
    }
    for (; bytes >= 8; p += 8, bytes -= 8) {
      uint64_t word;
      std::memcpy(&word, p, 8);
      mix(word);
    }
    while (bytes > 0) {
      take_byte(*p++);
      --bytes;
    }
  }

  uint64_t digest() const {
    uint64_t h = hash_;
    for (size_t i = 0; i < pending_; ++i) h = (h ^ partial_[i]) * kPrime;
    return h;
  }

 private:
  static constexpr uint64_t kPrime = 0x100000001b3ULL;

  void mix(uint64_t word) { hash_ = (hash_ ^ word) * kPrime; }
  void take_byte(uint8_t b) {
    partial_[pending_++] = b;
    if (pending_ == 8) {
      uint64_t word;
      std::memcpy(&word, partial_, 8);
      mix(word);
      pending_ = 0;
    }
  }

  uint64_t hash_ = 0xcbf29ce484222325ULL;
  uint8_t partial_[8] = {};
  size_t pending_ = 0;
};

}  // namespace muongpt
