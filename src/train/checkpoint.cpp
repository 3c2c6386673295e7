#include "train/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "util/checksum.h"
#include "util/error.h"
#include "util/fs.h"

namespace muongpt {

namespace {
constexpr char kMagic[8] = {'M', 'U', 'O', 'N', 'G', 'P', 'T', '\0'};
constexpr char kEndMagic[8] = {'M', 'G', 'P', 'T', 'E', 'N', 'D', '\0'};
constexpr uint32_t kVersion = 1;
}  // namespace

std::string checkpoint_name(int step) {
  char name[32];
  std::snprintf(name, sizeof(name), "ckpt_%08d.bin", step);
  return name;
}

void save_checkpoint(const std::string& path, const nlohmann::json& header_in,
                     const std::vector<CheckpointTensor>& tensors) {
  nlohmann::json header = header_in;
  header["dtype"] = "float32";
  header["tensors"] = nlohmann::json::array();
  for (const auto& t : tensors) header["tensors"].push_back({{"name", t.name}, {"numel", t.numel}});
  const std::string header_text = header.dump();
  write_file_atomic(path, [&](int fd) {
    Checksum sum;
    auto put = [&](const void* data, size_t bytes) {
      sum.update(data, bytes);
      write_all(fd, data, bytes, path);
    };
    const uint64_t header_bytes = header_text.size();
    put(kMagic, sizeof(kMagic));
    put(&kVersion, sizeof(kVersion));
    put(&header_bytes, sizeof(header_bytes));
    put(header_text.data(), header_text.size());
    for (const auto& t : tensors) put(t.data, t.numel * sizeof(float));
    const uint64_t digest = sum.digest();
    write_all(fd, &digest, sizeof(digest), path);
    write_all(fd, kEndMagic, sizeof(kEndMagic), path);
  });
}

Checkpoint::Checkpoint(const std::string& path) : path_(path) {
  bytes_ = read_binary_file(path);
  const size_t fixed = sizeof(kMagic) + sizeof(uint32_t) + sizeof(uint64_t);
  const size_t trailer = sizeof(uint64_t) + sizeof(kEndMagic);
  if (bytes_.size() < fixed + trailer || std::memcmp(bytes_.data(), kMagic, sizeof(kMagic)) != 0)
    fail("checkpoint ", path, ": not a muongpt checkpoint (bad magic or too short: ", bytes_.size(), " bytes)");
  uint32_t version;
  uint64_t header_bytes;
  std::memcpy(&version, bytes_.data() + sizeof(kMagic), sizeof(version));
  std::memcpy(&header_bytes, bytes_.data() + sizeof(kMagic) + sizeof(version), sizeof(header_bytes));
  if (version != kVersion) fail("checkpoint ", path, ": unsupported version ", version, ", expected ", kVersion);
  if (std::memcmp(bytes_.data() + bytes_.size() - sizeof(kEndMagic), kEndMagic, sizeof(kEndMagic)) != 0)
    fail("checkpoint ", path, ": truncated or incomplete (end marker missing; ", bytes_.size(), " bytes)");
  if (fixed + header_bytes + trailer > bytes_.size())
    fail("checkpoint ", path, ": truncated (header of ", header_bytes, " bytes does not fit)");
  try {
    header_ = nlohmann::json::parse(bytes_.begin() + fixed, bytes_.begin() + fixed + header_bytes);
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint ", path, ": corrupt header: ", e.what());
  }
  size_t offset = fixed + header_bytes;
  try {
    for (const auto& t : header_.at("tensors")) {
      const std::string name = t.at("name").get<std::string>();
      const size_t numel = t.at("numel").get<size_t>();
      index_[name] = {offset, numel};
      offset += numel * sizeof(float);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint ", path, ": corrupt tensor list: ", e.what());
  }
  if (offset + trailer != bytes_.size())
    fail("checkpoint ", path, ": size mismatch: tensors end at byte ", offset, " but the file has ",
         bytes_.size() - trailer, " bytes before its trailer (truncated or corrupted)");
  Checksum sum;
  sum.update(bytes_.data(), offset);
  uint64_t stored;
  std::memcpy(&stored, bytes_.data() + offset, sizeof(stored));
  if (sum.digest() != stored) fail("checkpoint ", path, ": checksum mismatch (the file is corrupted)");
}

void Checkpoint::read(const std::string& name, float* out, size_t numel) const {
  read_range(name, numel, 0, numel, out);
}

void Checkpoint::read_range(const std::string& name, size_t numel, size_t first, size_t count, float* out) const {
  auto it = index_.find(name);
  if (it == index_.end())
    fail("checkpoint ", path_, ": has no tensor ", name, " (was it written with a different model config?)");
  if (it->second.second != numel)
    fail("checkpoint ", path_, ": tensor ", name, " has ", it->second.second, " elements, the model expects ", numel,
         " (was it written with a different model config?)");
  MUONGPT_CHECK(first + count <= numel, name);
  std::memcpy(out, bytes_.data() + it->second.first + first * sizeof(float), count * sizeof(float));
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : index_) names.push_back(name);
  return names;
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::string> files;
  if (!std::filesystem::is_directory(dir)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() == 17 && name.rfind("ckpt_", 0) == 0 && name.substr(13) == ".bin") files.push_back(entry.path().string());
  }
  std::sort(files.rbegin(), files.rend());
  return files;
}

}  // namespace muongpt
