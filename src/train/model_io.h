// Building a model from a checkpoint (for eval and sample).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "model/gpt.h"

namespace muongpt {

struct LoadedModel {
  Config config;
  std::unique_ptr<Gpt<float>> model;
  int step = 0;
};

// The config stored in the checkpoint (with `overrides` applied) and its
// parameters, in a model allocated for (max_batch, max_seq_len), with the
// attention windows of the checkpoint's step (schedule.window_warmup).
LoadedModel load_model(const std::string& checkpoint, const std::vector<std::string>& overrides, int max_batch,
                       int max_seq_len);

}  // namespace muongpt
