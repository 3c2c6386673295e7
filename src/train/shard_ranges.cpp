#include "train/shard_ranges.h"

#include <algorithm>
#include <utility>

#include "util/error.h"

namespace muongpt {

std::vector<OwnedRange> plan_owned_ranges(const ParamTable& table, const ShardPlan& plan) {
  const auto& params = table.params();
  if (plan.ranges.size() != params.size() || plan.replicated.size() != params.size())
    fail("shard ranges: the plan has ", plan.ranges.size(), " parameters, the table ", params.size());
  std::vector<OwnedRange> out;
  auto add = [&](size_t begin, size_t end, int owner) {
    if (begin == end) return;
    if (!out.empty() && out.back().end == begin && out.back().owner == owner)
      out.back().end = end;
    else
      out.push_back({begin, end, owner});
  };
  size_t at = 0;  // where the next parameter must start
  for (size_t pi = 0; pi < params.size(); ++pi) {
    const ParamSpec& spec = params[pi];
    if (spec.offset != at)
      fail("shard ranges: parameter ", spec.name, " starts at element ", spec.offset, ", expected ", at,
           " (the parameter buffer must be contiguous)");
    if (plan.replicated[pi]) {
      add(spec.offset, spec.offset + spec.numel, -1);
    } else {
      if (static_cast<int>(plan.ranges[pi].size()) != plan.world)
        fail("shard ranges: parameter ", spec.name, " has ranges for ", plan.ranges[pi].size(), " ranks, the plan ",
             plan.world);
      // (first element, rank) of every rank holding a part, in element order
      std::vector<std::pair<size_t, int>> parts;
      for (int r = 0; r < plan.world; ++r)
        if (plan.ranges[pi][r].second > plan.ranges[pi][r].first) parts.emplace_back(plan.ranges[pi][r].first, r);
      std::sort(parts.begin(), parts.end());
      size_t next = 0;  // first element not yet owned
      for (const auto& [lo, r] : parts) {
        const size_t hi = plan.ranges[pi][r].second;
        if (lo != next || hi > spec.numel)
          fail("shard ranges: parameter ", spec.name, ": rank ", r, " owns elements [", lo, ", ", hi, "), expected ",
               "a part starting at ", next, " within ", spec.numel, " elements");
        add(spec.offset + lo, spec.offset + hi, r);
        next = hi;
      }
      if (next != spec.numel)
        fail("shard ranges: parameter ", spec.name, ": elements [", next, ", ", spec.numel, ") have no owner");
    }
    at += spec.numel;
  }
  if (at != table.total()) fail("shard ranges: the parameters cover ", at, " of ", table.total(), " elements");
  return out;
}

std::vector<OwnedRange> owned_ranges_within(const std::vector<OwnedRange>& ranges, size_t begin, size_t end) {
  std::vector<OwnedRange> out;
  for (const OwnedRange& r : ranges) {
    const size_t b = std::max(r.begin, begin), e = std::min(r.end, end);
    if (b < e) out.push_back({b, e, r.owner});
  }
  return out;
}

std::vector<OwnedRange> ranges_used_by(const std::vector<OwnedRange>& ranges, int rank) {
  std::vector<OwnedRange> out;
  for (const OwnedRange& r : ranges)
    if (r.owner == rank || r.owner < 0) out.push_back(r);
  return out;
}

std::vector<OwnedRange> norm_ranges_of(const std::vector<OwnedRange>& ranges, int rank) {
  std::vector<OwnedRange> out;
  for (const OwnedRange& r : ranges)
    if (r.owner == rank || (r.owner < 0 && rank == 0)) out.push_back(r);
  return out;
}

size_t elements_updated_by(const std::vector<OwnedRange>& ranges, int rank) {
  size_t n = 0;
  for (const OwnedRange& r : ranges_used_by(ranges, rank)) n += r.size();
  return n;
}

}  // namespace muongpt
