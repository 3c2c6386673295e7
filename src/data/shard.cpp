#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "util/error.h"
#include "util/fs.h"

namespace muongpt {

namespace {

struct Header {
  int32_t values[kShardHeaderInts];
};

uint64_t validate_header(const std::string& path, const Header& header, uint64_t file_bytes) {
  if (header.values[0] != kShardMagic)
    fail("shard ", path, ": bad magic ", header.values[0], ", expected ", kShardMagic,
         " (not a muongpt/speedrun .bin token shard)");
  if (header.values[1] != kShardVersion)
    fail("shard ", path, ": unsupported version ", header.values[1], ", expected ", kShardVersion);
  if (header.values[2] < 0) fail("shard ", path, ": negative token count ", header.values[2]);
  const auto num_tokens = static_cast<uint64_t>(static_cast<uint32_t>(header.values[2]));
  const uint64_t expected = kShardHeaderBytes + 2 * num_tokens;
  if (file_bytes != expected) {
    if ((file_bytes - kShardHeaderBytes) % 2 != 0)
      fail("shard ", path, ": odd number of body bytes (", file_bytes - kShardHeaderBytes,
           "), tokens are uint16");
    fail("shard ", path, ": header says ", num_tokens, " tokens (", expected, " bytes) but the file has ",
         file_bytes, " bytes", file_bytes < expected ? " (truncated)" : " (trailing data)");
  }
  return num_tokens;
}

}  // namespace

uint64_t read_shard_token_count(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("shard ", path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail("shard ", path, ": cannot stat: ", std::strerror(errno));
  }
  const auto file_bytes = static_cast<uint64_t>(st.st_size);
  if (file_bytes < kShardHeaderBytes) {
    ::close(fd);
    fail("shard ", path, ": only ", file_bytes, " bytes, shorter than the ", kShardHeaderBytes,
         "-byte header");
  }
  Header header{};
  const ssize_t got = ::pread(fd, &header, sizeof(header), 0);
  ::close(fd);
  if (got != static_cast<ssize_t>(sizeof(header))) fail("shard ", path, ": cannot read header");
  return validate_header(path, header, file_bytes);
}

Shard::Shard(const std::string& path) : path_(path) {
  num_tokens_ = read_shard_token_count(path);
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("shard ", path, ": cannot open: ", std::strerror(errno));
  mapping_bytes_ = kShardHeaderBytes + 2 * num_tokens_;
  mapping_ = ::mmap(nullptr, mapping_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (mapping_ == MAP_FAILED) {
    mapping_ = nullptr;
    fail("shard ", path, ": mmap failed: ", std::strerror(err));
  }
  ::madvise(mapping_, mapping_bytes_, MADV_SEQUENTIAL);
  tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(mapping_) + kShardHeaderBytes);
}

Shard::~Shard() { release(); }

Shard::Shard(Shard&& other) noexcept { *this = std::move(other); }

Shard& Shard::operator=(Shard&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_bytes_ = std::exchange(other.mapping_bytes_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    num_tokens_ = std::exchange(other.num_tokens_, 0);
  }
  return *this;
}

void Shard::release() {
  if (mapping_) ::munmap(mapping_, mapping_bytes_);
  mapping_ = nullptr;
  tokens_ = nullptr;
}

void write_shard(const std::string& path, const uint16_t* tokens, size_t num_tokens) {
  if (num_tokens > static_cast<size_t>(INT32_MAX))
    fail("shard ", path, ": ", num_tokens, " tokens do not fit the int32 header field");
  Header header{};
  header.values[0] = kShardMagic;
  header.values[1] = kShardVersion;
  header.values[2] = static_cast<int32_t>(num_tokens);
  write_file_atomic(path, [&](int fd) {
    write_all(fd, &header, sizeof(header), path);
    write_all(fd, tokens, num_tokens * sizeof(uint16_t), path);
  });
}

ShardStats scan_tokens(const uint16_t* tokens, size_t n) {
  ShardStats stats;
  stats.tokens = n;
  if (n == 0) return stats;
  uint16_t lo = tokens[0], hi = tokens[0];
  uint64_t eot = 0;
  for (size_t i = 0; i < n; ++i) {
    lo = std::min(lo, tokens[i]);
    hi = std::max(hi, tokens[i]);
    eot += tokens[i] == kEndOfText;
  }
  stats.min_id = lo;
  stats.max_id = hi;
  stats.end_of_text = eot;
  return stats;
}

void check_token_ids(const Shard& shard, int vocab_size) {
  const uint16_t* t = shard.tokens();
  for (size_t i = 0; i < shard.size(); ++i) {
    if (t[i] >= vocab_size)
      fail("shard ", shard.path(), ": token id ", t[i], " at position ", i,
           " is outside the model's vocabulary (vocab_size ", vocab_size, ")");
  }
}

}  // namespace muongpt
