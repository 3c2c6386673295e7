#include "dist/comm_bench.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "model/params.h"
#include "util/error.h"
#include "util/format.h"

namespace muongpt {

std::vector<CommBucket> model_buckets(const ModelConfig& model) {
  const ParamTable table(model);
  size_t block = 0, embed = 0, head = 0;
  for (const ParamSpec& p : table.params()) {
    if (p.name.rfind("blocks.0.", 0) == 0) block += p.numel;
    if (p.name == "tok_embed") embed = p.numel;
    if (p.name == "lm_head") head = p.numel;
  }
  std::vector<CommBucket> buckets = {{"one block's gradients", block}, {"token embedding", embed}};
  if (head > 0) buckets.push_back({"lm_head", head});
  buckets.push_back({"all gradients", table.total()});
  return buckets;
}

std::vector<CommBucket> sweep_buckets(size_t max_bytes) {
  std::vector<CommBucket> buckets;
  for (size_t bytes = 4096; bytes <= max_bytes; bytes *= 4)
    buckets.push_back({str("sweep ", format_bytes(static_cast<double>(bytes))), bytes / sizeof(float)});
  return buckets;
}

namespace {

// Splits n elements into world parts (the first n % world parts one longer).
void split(size_t n, int world, std::vector<int>& counts, std::vector<int>& displs) {
  counts.assign(world, 0);
  displs.assign(world, 0);
  for (int r = 0; r < world; ++r) {
    counts[r] = static_cast<int>(n / world + (static_cast<size_t>(r) < n % world ? 1 : 0));
    if (r > 0) displs[r] = displs[r - 1] + counts[r - 1];
  }
}

}  // namespace

std::vector<CommResult> bench_collectives(Comm& comm, const std::vector<CommBucket>& buckets, int iters, int warmup) {
  const int n = comm.world();
  std::vector<CommResult> results;
  for (const CommBucket& bucket : buckets) {
    if (bucket.elements == 0) continue;
    if (bucket.elements > static_cast<size_t>(std::numeric_limits<int>::max()))
      fail("bench --comm: bucket \"", bucket.label, "\" has ", bucket.elements, " elements, more than one call moves");
    std::vector<float> buffer(bucket.elements, 1.0f);
    std::vector<int> counts, displs;
    split(bucket.elements, n, counts, displs);
    const int rank = comm.rank();
    for (const std::string op : {"allreduce", "reduce_scatter", "allgather"}) {
      auto call = [&] {
        if (op == "allreduce") comm.allreduce_sum(buffer.data(), buffer.size(), "bench allreduce");
        else if (op == "reduce_scatter") comm.reduce_scatter_sum(buffer.data(), counts, displs, "bench reduce_scatter");
        else comm.allgatherv(buffer.data(), counts, displs, "bench allgather");
      };
      // Check the result once: element i of rank r's input is (r+1)*(i%7+1).
      auto pattern = [](size_t i) { return static_cast<float>(i % 7 + 1); };
      for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<float>(rank + 1) * pattern(i);
      call();
      const float rank_sum = static_cast<float>(n) * (n + 1) / 2;
      for (int part = 0; part < n; ++part) {
        if (op == "reduce_scatter" && part != rank) continue;  // only the own part is defined
        const float factor = op == "allgather" ? static_cast<float>(part + 1) : rank_sum;
        for (size_t i = displs[part]; i < static_cast<size_t>(displs[part]) + counts[part]; ++i)
          if (buffer[i] != factor * pattern(i))
            fail("bench --comm: ", op, " of \"", bucket.label, "\" gave ", buffer[i], " at element ", i, " on rank ",
                 rank, ", expected ", factor * pattern(i), " (", comm.name(), ")");
      }
      for (int i = 0; i < warmup; ++i) call();
      comm.barrier("bench start");
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) call();
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
      comm.allreduce_max(&ms, 1, "bench time");  // the slowest rank's time
      std::fill(buffer.begin(), buffer.end(), 1.0f);  // keep values bounded
      CommResult r;
      r.op = op;
      r.verified = true;
      r.label = bucket.label;
      r.bytes = bucket.elements * sizeof(float);
      r.ms = ms;
      r.algbw_gbs = static_cast<double>(r.bytes) / (ms * 1e-3) / 1e9;
      const double factor = r.op == "allreduce" ? 2.0 * (n - 1) / n : static_cast<double>(n - 1) / n;
      r.busbw_gbs = r.algbw_gbs * factor;
      results.push_back(r);
    }
  }
  return results;
}

}  // namespace muongpt
