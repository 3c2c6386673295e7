// The flat buffer cut by a ShardPlan into ranges of one owner
// (train/shard_ranges.h), which the GPU's sharded step uses to reduce
// gradients into their owners, to sum the gradient norm and to broadcast the
// updated parameters: every element has exactly the plan's owner, the norm
// counts every element once over all ranks, and the gradient buckets' pieces
// are the same ranges again.
#include <algorithm>

#include "model_fixtures.h"
#include "optim/optimizer.h"
#include "test_support.h"
#include "train/grad_buckets.h"
#include "train/shard_ranges.h"
#include "util/error.h"

using namespace muongpt;
using namespace muongpt::test;

namespace {

// The plan's owner of every element of the flat buffer (-1: replicated).
std::vector<int> owner_of_each_element(const ParamTable& table, const ShardPlan& plan) {
  std::vector<int> owner(table.total(), -2);
  for (size_t pi = 0; pi < table.params().size(); ++pi) {
    const ParamSpec& spec = table.params()[pi];
    for (size_t i = 0; i < spec.numel; ++i) {
      if (plan.replicated[pi]) {
        owner[spec.offset + i] = -1;
        continue;
      }
      for (int r = 0; r < plan.world; ++r)
        if (plan.ranges[pi][r].first <= i && i < plan.ranges[pi][r].second) owner[spec.offset + i] = r;
    }
  }
  return owner;
}

ShardPlan make_plan(const ParamTable& table, const OptimConfig& oc, int zero, const std::string& muon, int world) {
  DistConfig dist;
  dist.zero_stage = zero;
  dist.muon = muon;
  return ShardPlan::make(table, oc, assign_groups(table, oc, "test"), dist, world);
}

}  // namespace

TEST_CASE("shard ranges: every element has the plan's owner, in order and merged", "[dist][shard_ranges]") {
  const ParamTable table(all_features_model());
  const OptimConfig oc = muon_and_rest(muon_group());
  for (int zero : {0, 1})
    for (const char* muon : {"replicated", "owner", "zero1"})
      for (int world : {1, 2, 3, 4, 7}) {
        INFO("zero " << zero << ", muon " << muon << ", world " << world);
        const ShardPlan plan = make_plan(table, oc, zero, muon, world);
        const std::vector<OwnedRange> ranges = plan_owned_ranges(table, plan);
        const std::vector<int> expected = owner_of_each_element(table, plan);
        REQUIRE(!ranges.empty());
        REQUIRE(ranges.front().begin == 0);
        REQUIRE(ranges.back().end == table.total());
        for (size_t k = 0; k < ranges.size(); ++k) {
          REQUIRE(ranges[k].begin < ranges[k].end);
          if (k > 0) {
            REQUIRE(ranges[k].begin == ranges[k - 1].end);        // contiguous
            REQUIRE(ranges[k].owner != ranges[k - 1].owner);      // merged
          }
          REQUIRE(ranges[k].owner >= -1);
          REQUIRE(ranges[k].owner < world);
          for (size_t i = ranges[k].begin; i < ranges[k].end; ++i) REQUIRE(expected[i] == ranges[k].owner);
        }
        if (!plan.any_sharded()) {
          REQUIRE(ranges.size() == 1);
          REQUIRE(ranges[0].owner == -1);
        }
      }
}

TEST_CASE("shard ranges: norm ranges count every element once over all ranks; used ranges", "[dist][shard_ranges]") {
  const ParamTable table(all_features_model());
  const OptimConfig oc = muon_and_rest(muon_group());
  for (int zero : {0, 1})
    for (const char* muon : {"replicated", "owner"})
      for (int world : {1, 2, 3, 5}) {
        INFO("zero " << zero << ", muon " << muon << ", world " << world);
        const ShardPlan plan = make_plan(table, oc, zero, muon, world);
        const std::vector<OwnedRange> ranges = plan_owned_ranges(table, plan);
        std::vector<int> counted(table.total(), 0);
        size_t updated_total = 0;
        for (int r = 0; r < world; ++r) {
          for (const OwnedRange& x : norm_ranges_of(ranges, r))
            for (size_t i = x.begin; i < x.end; ++i) counted[i]++;
          size_t used = 0;
          for (const OwnedRange& x : ranges_used_by(ranges, r)) {
            REQUIRE((x.owner == r || x.owner == -1));
            used += x.size();
          }
          REQUIRE(used == elements_updated_by(ranges, r));
          // what a rank updates: everything replicated plus its own ranges
          size_t expect = 0;
          for (const OwnedRange& x : ranges)
            if (x.owner == r || x.owner == -1) expect += x.size();
          REQUIRE(used == expect);
          updated_total += used;
        }
        for (int c : counted) REQUIRE(c == 1);
        if (zero == 1 && std::string(muon) == "owner") REQUIRE(updated_total == table.total());  // nothing replicated
      }
}

TEST_CASE("shard ranges: the pieces of the gradient buckets are the ranges again", "[dist][shard_ranges]") {
  const ModelConfig m = all_features_model();
  const ParamTable table(m);
  const OptimConfig oc = muon_and_rest(muon_group());
  const GradBuckets buckets = plan_grad_buckets(table, m.n_layer);
  REQUIRE(!buckets.layers.empty());
  for (int world : {2, 3}) {
    INFO("world " << world);
    const ShardPlan plan = make_plan(table, oc, 1, "owner", world);
    const std::vector<OwnedRange> ranges = plan_owned_ranges(table, plan);
    std::vector<OwnedRange> pieces;
    auto add = [&](const GradRange& b) {
      for (const OwnedRange& p : owned_ranges_within(ranges, b.begin, b.end)) {
        REQUIRE(p.begin >= b.begin);
        REQUIRE(p.end <= b.end);
        pieces.push_back(p);
      }
    };
    for (const GradRange& b : buckets.layers) add(b);
    for (const GradRange& b : buckets.rest) add(b);
    std::sort(pieces.begin(), pieces.end(), [](const OwnedRange& a, const OwnedRange& b) { return a.begin < b.begin; });
    // merged again, the pieces are exactly the ranges: every element reduced once, to its owner
    std::vector<OwnedRange> merged;
    for (const OwnedRange& p : pieces) {
      if (!merged.empty()) REQUIRE(merged.back().end == p.begin);
      if (!merged.empty() && merged.back().owner == p.owner)
        merged.back().end = p.end;
      else
        merged.push_back(p);
    }
    REQUIRE(merged == ranges);
  }
  // a bucket inside one range is one piece
  const std::vector<OwnedRange> one = {{0, 100, -1}};
  REQUIRE(owned_ranges_within(one, 10, 20) == std::vector<OwnedRange>{{10, 20, -1}});
  REQUIRE(owned_ranges_within(one, 100, 120).empty());
}

TEST_CASE("shard ranges: a plan that leaves elements without an owner is an error naming the parameter",
          "[dist][shard_ranges]") {
  const ParamTable table(all_features_model());
  const OptimConfig oc = muon_and_rest(muon_group());
  ShardPlan plan = make_plan(table, oc, 1, "owner", 2);
  size_t pi = 0;
  while (plan.replicated[pi] || plan.ranges[pi][0].second == plan.ranges[pi][0].first) ++pi;
  const std::string name = table.params()[pi].name;
  ShardPlan gap = plan;
  gap.ranges[pi][0].second -= 1;  // the last element of rank 0's part
  require_error([&] { (void)plan_owned_ranges(table, gap); }, {name});
  ShardPlan overlap = plan;
  overlap.ranges[pi][1] = overlap.ranges[pi][0];  // rank 1 claims rank 0's part as well
  require_error([&] { (void)plan_owned_ranges(table, overlap); }, {name});
}
