#include "train/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "util/error.h"
#include "util/fs.h"

namespace muongpt {

MetricsLog::MetricsLog(const std::string& path, int keep_until_step) : path_(path) {
  if (keep_until_step >= 0 && std::filesystem::exists(path)) {
    std::istringstream in(read_text_file(path));
    std::string line, kept;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("step")) continue;  // drop a torn last line
      if (j["step"].get<int>() <= keep_until_step) kept += line + "\n";
    }
    write_text_file_atomic(path, kept);
  }
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) fail(path, ": cannot open for appending: ", std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!file_) return;
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    fail(path_, ": write failed: ", std::strerror(errno));
}

}  // namespace muongpt
