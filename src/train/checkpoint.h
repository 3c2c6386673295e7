// Checkpoints: parameters, optimizer state, step, data position and RNG
// state in one file, written atomically (temporary file + fsync + rename).
//
// File layout:
//   "MUONGPT\0" | u32 version | u64 header bytes | header (JSON)
//   | tensors (float32, in header order) | u64 checksum of all previous bytes | "MGPTEND\0"
// The header holds the step, the resolved config, the loader position, the
// RNG state and the tensor list [{name, numel}]. Tensors are named: parameter
// names, and optimizer state as "<param>.momentum", ".adam_m", ".adam_v".
// A truncated, corrupted or foreign file is rejected with a message saying
// which check failed.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace muongpt {

struct CheckpointTensor {
  std::string name;
  const float* data = nullptr;
  size_t numel = 0;
};

// Writes `path` atomically.
void save_checkpoint(const std::string& path, const nlohmann::json& header, const std::vector<CheckpointTensor>& tensors);

class Checkpoint {
 public:
  // Reads and verifies the whole file (magic, version, sizes, checksum).
  explicit Checkpoint(const std::string& path);

  const std::string& path() const { return path_; }
  const nlohmann::json& header() const { return header_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // Copies a tensor into `out`, which must have exactly its size.
  void read(const std::string& name, float* out, size_t numel) const;
  // Copies elements [first, first + count) of a tensor of `numel` elements.
  void read_range(const std::string& name, size_t numel, size_t first, size_t count, float* out) const;
  std::vector<std::string> tensor_names() const;

 private:
  std::string path_;
  nlohmann::json header_;
  std::vector<uint8_t> bytes_;
  std::map<std::string, std::pair<size_t, size_t>> index_;  // name -> (byte offset, numel)
};

// Checkpoint files in `dir` named ckpt_NNNNNNNN.bin, newest step first.
std::vector<std::string> list_checkpoints(const std::string& dir);
std::string checkpoint_name(int step);

}  // namespace muongpt
