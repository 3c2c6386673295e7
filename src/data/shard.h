// Token shards in the speedrun's .bin format.
//
// Layout (little-endian):
//   header: 256 x int32   [0] = 20240520 (magic), [1] = 1 (version),
//                         [2] = number of tokens, the rest zero
//   body:   num_tokens x uint16 token ids
// The file size must be exactly 1024 + 2 * num_tokens bytes. Documents are
// separated by <|endoftext|> (50256) placed before each document.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace muongpt {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr size_t kShardHeaderInts = 256;
constexpr size_t kShardHeaderBytes = kShardHeaderInts * sizeof(int32_t);
constexpr uint16_t kEndOfText = 50256;

// Reads and validates the header and the file size; throws Error naming the
// file and what is wrong (bad magic, version, truncated or oversized body).
uint64_t read_shard_token_count(const std::string& path);

// A read-only memory mapping of one validated shard.
class Shard {
 public:
  explicit Shard(const std::string& path);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  Shard(Shard&& other) noexcept;
  Shard& operator=(Shard&& other) noexcept;

  const std::string& path() const { return path_; }
  const uint16_t* tokens() const { return tokens_; }
  size_t size() const { return num_tokens_; }

 private:
  void release();
  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  size_t num_tokens_ = 0;
};

// Writes a shard atomically (temporary file + fsync + rename).
void write_shard(const std::string& path, const uint16_t* tokens, size_t num_tokens);
inline void write_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
  write_shard(path, tokens.data(), tokens.size());
}

struct ShardStats {
  uint64_t tokens = 0;
  uint64_t end_of_text = 0;  // number of <|endoftext|> tokens = documents
  uint16_t min_id = 0;
  uint16_t max_id = 0;
};
ShardStats scan_tokens(const uint16_t* tokens, size_t n);

// Throws Error naming the shard and the first offending position if any token
// id is >= vocab_size.
void check_token_ids(const Shard& shard, int vocab_size);

}  // namespace muongpt
