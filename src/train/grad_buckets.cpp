#include "train/grad_buckets.h"

#include <algorithm>
#include <limits>

namespace muongpt {

int block_of(const std::string& name) {
  const std::string prefix = "blocks.";
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  size_t i = prefix.size();
  int layer = 0;
  bool digits = false;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') {
    layer = layer * 10 + (name[i] - '0');
    digits = true;
    ++i;
  }
  return digits && i < name.size() && name[i] == '.' ? layer : -1;
}

GradBuckets plan_grad_buckets(const ParamTable& table, int n_layer) {
  GradBuckets plan;
  const size_t none = std::numeric_limits<size_t>::max();
  std::vector<GradRange> layers(static_cast<size_t>(std::max(n_layer, 0)), GradRange{none, 0});
  std::vector<size_t> numel(layers.size(), 0);
  bool usable = n_layer > 0;
  for (const ParamSpec& p : table.params()) {
    const int l = block_of(p.name);
    if (l < 0) continue;
    if (l >= n_layer) {
      usable = false;
      break;
    }
    GradRange& r = layers[static_cast<size_t>(l)];
    r.begin = std::min(r.begin, p.offset);
    r.end = std::max(r.end, p.offset + p.numel);
    numel[static_cast<size_t>(l)] += p.numel;
  }
  for (size_t l = 0; usable && l < layers.size(); ++l)
    usable = layers[l].begin != none && layers[l].size() == numel[l];  // nothing else inside the range
  if (!usable) {
    plan.rest.push_back({0, table.total()});
    return plan;
  }
  plan.layers = layers;

  std::vector<GradRange> sorted = layers;
  std::sort(sorted.begin(), sorted.end(), [](const GradRange& a, const GradRange& b) { return a.begin < b.begin; });
  size_t at = 0;
  for (const GradRange& r : sorted) {
    if (r.begin > at) plan.rest.push_back({at, r.begin});
    at = r.end;
  }
  if (at < table.total()) plan.rest.push_back({at, table.total()});
  return plan;
}

}  // namespace muongpt
