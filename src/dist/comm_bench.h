// Bandwidth of the collectives the trainer uses, at the sizes it uses them.
//
// For each collective and buffer size: the time of one call (the slowest
// rank's, averaged over `iters` calls after `warmup`; before timing, one
// call's result is checked element by element and a wrong value is an error), the algorithm
// bandwidth algbw = bytes / time (bytes = the full float32 buffer), and the
// bus bandwidth busbw, which normalises for the number of ranks the way
// nccl-tests does, so that it can be compared with the link's speed:
//   all-reduce       busbw = algbw * 2 (n - 1) / n
//   reduce-scatter   busbw = algbw * (n - 1) / n
//   all-gather       busbw = algbw * (n - 1) / n
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "config/config.h"
#include "dist/comm.h"

namespace muongpt {

struct CommBucket {
  std::string label;  // e.g. "block (one layer's gradients)"
  size_t elements = 0;
};

struct CommResult {
  std::string op;  // allreduce | reduce_scatter | allgather
  std::string label;
  size_t bytes = 0;
  double ms = 0;
  double algbw_gbs = 0;
  double busbw_gbs = 0;
  bool verified = false;  // the collective's result was checked once before timing
};

// The buckets of a model: one transformer block's gradients (the unit the
// backward overlaps communication with), the embedding, the head when
// untied, and all gradients at once.
std::vector<CommBucket> model_buckets(const ModelConfig& model);

// Power-of-4 sizes from 4 KiB up to max_bytes.
std::vector<CommBucket> sweep_buckets(size_t max_bytes);

std::vector<CommResult> bench_collectives(Comm& comm, const std::vector<CommBucket>& buckets, int iters, int warmup);

}  // namespace muongpt
