// The optimizer's shard plan: every element is updated by exactly one rank
// (or by all, when replicated), and work is balanced.
#include "optim/optimizer.h"
#include "test_support.h"
#include "model_fixtures.h"

using namespace muongpt;
using namespace muongpt::test;

namespace {
// Group assignment is all that matters here (learning rates are not used).
OptimConfig groups() { return muon_and_rest(muon_group()); }
}  // namespace

TEST_CASE("shard plans cover every element exactly once", "[optim][dist]") {
  const ParamTable table(all_features_model());
  const OptimConfig oc = groups();
  const auto assignment = assign_groups(table, oc, "test");
  for (int zero : {0, 1})
    for (const char* muon : {"replicated", "owner", "zero1"})
      for (int world : {1, 2, 3, 4, 7}) {
        INFO("zero " << zero << ", muon " << muon << ", world " << world);
        DistConfig dist;
        dist.zero_stage = zero;
        dist.muon = muon;
        const ShardPlan plan = ShardPlan::make(table, oc, assignment, dist, world);
        for (size_t pi = 0; pi < table.params().size(); ++pi) {
          const size_t numel = table.params()[pi].numel;
          const bool is_muon = oc.groups[assignment.group_of_param[pi]].type == "muon";
          const bool expect_replicated = world == 1 || (is_muon ? std::string(muon) == "replicated" : zero == 0);
          REQUIRE(plan.replicated[pi] == expect_replicated);
          if (plan.replicated[pi]) {
            for (const auto& r : plan.ranges[pi]) REQUIRE((r.first == 0 && r.second == numel));
            continue;
          }
          std::vector<int> covered(numel, 0);
          for (const auto& [lo, hi] : plan.ranges[pi])
            for (size_t i = lo; i < hi; ++i) covered[i]++;
          for (int c : covered) REQUIRE(c == 1);
          if (plan.zero1_muon[pi])  // whole rows
            for (const auto& [lo, hi] : plan.ranges[pi]) REQUIRE(lo % table.params()[pi].cols() == 0);
        }
      }
}

TEST_CASE("owner Muon balances matrices over ranks", "[optim][dist]") {
  ModelConfig m = all_features_model();
  m.n_layer = 6;
  const ParamTable table(m);
  const OptimConfig oc = groups();
  DistConfig dist;
  dist.muon = "owner";
  const ShardPlan plan = ShardPlan::make(table, oc, assign_groups(table, oc, "test"), dist, 4);
  std::vector<size_t> load(4, 0);
  size_t largest = 0;
  for (size_t pi = 0; pi < table.params().size(); ++pi) {
    if (plan.replicated[pi]) continue;
    for (int r = 0; r < 4; ++r) load[r] += plan.ranges[pi][r].second - plan.ranges[pi][r].first;
    largest = std::max(largest, table.params()[pi].numel);
  }
  const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
  REQUIRE(*hi - *lo <= largest);  // greedy largest-first keeps ranks within one matrix of each other
}
