// Hash tables for the BPE tokenizer's hot loop (internal to tokenizer.cpp).
//
// StringTable<V>: byte string -> V, open addressing with linear probing; keys
//   are copied into one arena, each slot keeps the key's 64-bit hash so most
//   probes never touch the key bytes. Used for bytes -> token id and for the
//   per-session cache of encoded pieces.
// PairTable: (left id, right id) -> merged id, open addressing on the packed
//   64-bit key. Built once when the tokenizer loads.
// Both keep the load factor at or below 1/2.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace muongpt::bpe {

inline uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xD6E8FEB86659FD93ull);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 29;
  h *= 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

template <class V>
class StringTable {
 public:
  StringTable() { slots_.resize(16); }

  const V* find(std::string_view key) const {
    const uint64_t h = hash_bytes(key.data(), key.size());
    const size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.length == kEmpty) return nullptr;
      if (s.hash == h && s.length == key.size() && std::memcmp(keys_.data() + s.offset, key.data(), key.size()) == 0)
        return &s.value;
    }
  }

  // `key` must not be present yet.
  void insert(std::string_view key, const V& value) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    const uint64_t h = hash_bytes(key.data(), key.size());
    place(Slot{h, keys_.size(), static_cast<uint32_t>(key.size()), value});
    keys_.append(key);
    ++size_;
  }

  size_t size() const { return size_; }

  void clear() {
    for (auto& s : slots_) s.length = kEmpty;
    keys_.clear();
    size_ = 0;
  }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  struct Slot {
    uint64_t hash = 0;
    size_t offset = 0;
    uint32_t length = kEmpty;
    V value{};
  };

  void place(const Slot& slot) {
    const size_t mask = slots_.size() - 1;
    size_t i = slot.hash & mask;
    while (slots_[i].length != kEmpty) i = (i + 1) & mask;
    slots_[i] = slot;
  }

  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (const Slot& s : old)
      if (s.length != kEmpty) place(s);
  }

  std::vector<Slot> slots_;
  std::string keys_;
  size_t size_ = 0;
};

class PairTable {
 public:
  static constexpr int kNone = INT32_MAX;

  // Returns kNone when the pair does not merge.
  int find(int left, int right) const {
    const uint64_t key = pack(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return values_[i];
      if (keys_[i] == kEmptyKey) return kNone;
    }
  }

  // Sizes the table for `n` entries; call once before the inserts.
  void reserve(size_t n) {
    size_t cap = 16;
    int bits = 4;
    while (cap < 2 * n) cap *= 2, ++bits;
    shift_ = 64 - bits;
    keys_.assign(cap, kEmptyKey);
    values_.assign(cap, kNone);
    mask_ = cap - 1;
  }

  // Keeps the first value given for a pair.
  void insert(int left, int right, int merged) {
    const uint64_t key = pack(left, right);
    size_t i = slot_of(key);
    while (keys_[i] != kEmptyKey && keys_[i] != key) i = (i + 1) & mask_;
    if (keys_[i] == key) return;
    keys_[i] = key;
    values_[i] = merged;
    ++size_;
  }

  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmptyKey = ~0ull;
  static uint64_t pack(int left, int right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  size_t slot_of(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }

  std::vector<uint64_t> keys_;
  std::vector<int> values_;
  size_t mask_ = 0;
  int shift_ = 60;
  size_t size_ = 0;
};

}  // namespace muongpt::bpe
