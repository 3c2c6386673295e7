// The flat parameter (and gradient) buffer cut into ranges by who updates
// them under the optimizer's ShardPlan (optim/optimizer.h): one rank (an
// owner's Muon matrix, a rank's slice of the ZeRO-1 AdamW elements) or every
// rank (replicated parameters). The GPU's sharded step
// (src/backend/cuda/model_backend_cuda.cu, CudaDeviceStep) reduces each
// range's gradient into its owner, sums the squared gradient norm over each
// rank's ranges and broadcasts each owner's updated ranges from these lists,
// so that the device path shards exactly as the host optimizer does.
//
// Every rank computes the same lists from the same plan, so every rank
// issues the same collectives in the same order.
#pragma once

#include <cstddef>
#include <vector>

#include "model/params.h"
#include "optim/optimizer.h"

namespace muongpt {

struct OwnedRange {
  size_t begin = 0, end = 0;  // [begin, end) of the flat buffer
  int owner = -1;             // the rank that updates it; -1 = every rank (replicated)
  size_t size() const { return end - begin; }
  bool operator==(const OwnedRange&) const = default;
};

// [0, table.total()) in order, cut where the owner changes (adjacent ranges
// of one owner are merged, also across parameters). Throws an Error naming
// the parameter when the plan's ranges of a parameter do not cover it exactly
// once, or the table is not one contiguous buffer.
std::vector<OwnedRange> plan_owned_ranges(const ParamTable& table, const ShardPlan& plan);

// The parts of `ranges` inside [begin, end), in order (a gradient bucket's
// pieces).
std::vector<OwnedRange> owned_ranges_within(const std::vector<OwnedRange>& ranges, size_t begin, size_t end);

// The ranges whose summed gradients `rank` needs: its own and the replicated
// ones (what it clips and updates).
std::vector<OwnedRange> ranges_used_by(const std::vector<OwnedRange>& ranges, int rank);

// The ranges `rank` adds to the squared gradient norm, so that over all ranks
// every element counts exactly once: its own, and the replicated ones on
// rank 0 only.
std::vector<OwnedRange> norm_ranges_of(const std::vector<OwnedRange>& ranges, int rank);

// Elements `rank` updates (its own ranges and the replicated ones).
size_t elements_updated_by(const std::vector<OwnedRange>& ranges, int rank);

}  // namespace muongpt
