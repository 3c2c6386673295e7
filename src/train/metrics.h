// metrics.jsonl: one JSON object per line, appended and flushed as the run
// goes, so a crash loses at most the line being written.
//
//   {"step": 10, "train_loss": 6.12, "lr_factor": 1.0, "tokens": 81920, ...}
//   {"step": 10, "val_loss": 6.05, "elapsed_s": 12.3}
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace muongpt {

class MetricsLog {
 public:
  MetricsLog() = default;  // disabled (non-root ranks)
  // Opens `path` for appending. With `keep_until_step` >= 0, lines of an
  // earlier run whose step is beyond it (written after the checkpoint we
  // resume from) are dropped first.
  MetricsLog(const std::string& path, int keep_until_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void write(const nlohmann::json& record);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace muongpt
