// bench --optimizer: the time of one optimizer step on a config's parameters
// (random parameters and gradients from fixed seeds; the step's cost does not
// depend on their values), split into the Muon and the AdamW groups, with the
// Newton-Schulz GEMM FLOPs and their rate. Prints a table, then one JSON
// object as the last line.
//
// How the CPU split is measured. The Optimizer runs every group in one
// step() and has no per-group clock, and a restricted optimizer cannot be
// built (every parameter must belong to a group and AdamW parameters such as
// norms cannot join a Muon group). So:
//   optimizer_ms  Optimizer<float>::step, timed whole;
//   adamw_ms      the work step() does for the AdamW groups, replayed alone
//                 with persistent state: cpu::adamw_update and the update-RMS
//                 statistic, per AdamW parameter;
//   muon_ms       optimizer_ms - adamw_ms (momentum, Newton-Schulz, NorMuon
//                 if on, update and statistics of the Muon groups);
//   ns_ms         cpu::newton_schulz alone on every Muon block (the blocks
//                 step() orthogonalises: fused q/k/v in parts, head blocks),
//                 a check on muon_ms, which contains it.
// The three are timed in turn within each iteration (load from other
// processes hits them alike) and reported as medians over the timed steps.
// On the GPU (optimizer_bench.cu) CUDA events time each phase directly, and
// Newton-Schulz alone is also timed with each kernel of its Gram products
// (cuBLASLt, symmetric), printed as one line before the table.
//
// FLOPs of Newton-Schulz on an r x c block (r <= c after the transpose of a
// tall block), per coefficient triple: X X^T 2r*r*c, A A 2r*r*r, B X 2r*c*r.
#include "cli/commands/bench_optimizer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>

#include "backend/device.h"
#include "cli/commands/bench_modes.h"
#include "config/config_io.h"
#include "kernels/cpu/newton_schulz.h"
#include "kernels/cpu/optimizer_updates.h"
#include "kernels/cpu/reduce.h"
#include "optim/optimizer.h"
#include "util/error.h"
#include "util/format.h"
#include "util/rng.h"

namespace muongpt {

namespace {

using Clock = std::chrono::steady_clock;

std::string percent(double x, int decimals) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f%%", decimals, 100 * x);
  return buf;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

std::vector<float> uniform_values(size_t n, uint64_t seed, double bound) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(bound * (2.0 * rng.uniform() - 1.0));
  return v;
}

// Newton-Schulz FLOPs of one rows x cols block with `iters` coefficient triples.
double ns_block_flops(int rows, int cols, size_t iters) {
  const double r = std::min(rows, cols), c = std::max(rows, cols);
  return static_cast<double>(iters) * (4.0 * r * r * c + 2.0 * r * r * r);
}

// The Muon blocks of every Muon parameter, in table order.
struct BlockShape {
  int param = 0;  // table index
  int row0 = 0, rows = 0, cols = 0;
  size_t iters = 0;  // coefficient triples
  int group = 0;
};

std::vector<BlockShape> muon_block_shapes(const ParamTable& table, const OptimConfig& optim,
                                          const ParamGroupAssignment& assign, int n_head) {
  std::vector<BlockShape> out;
  for (size_t gi = 0; gi < optim.groups.size(); ++gi) {
    const OptimGroupConfig& g = optim.groups[gi];
    if (g.type != "muon") continue;
    for (int pi : assign.params_of_group[gi]) {
      const ParamSpec& spec = table.params()[pi];
      for (const MuonBlock& b : muon_blocks(spec, g, n_head))
        out.push_back({pi, b.row0, b.rows, spec.cols(), g.ns.table().size(), static_cast<int>(gi)});
    }
  }
  return out;
}

OptimizerBenchResult bench_cpu(const Config& cfg, const std::string& source, int steps, int warmup) {
  const ParamTable table(cfg.model);
  Optimizer<float> opt(table, cfg.optim, cfg.schedule, steps + warmup, source, {}, nullptr, cfg.model.n_head);
  std::vector<float> params = uniform_values(table.total(), 1, 0.02);
  const std::vector<float> grads = uniform_values(table.total(), 2, 1e-3);
  OptimizerBenchResult r;
  r.device = "cpu";
  r.method =
      "cpu: whole Optimizer<float>::step timed; AdamW groups' work (update + statistic) replayed alone; "
      "Muon = step - AdamW; Newton-Schulz timed alone on every Muon block; interleaved, medians";

  // The AdamW groups' work as step() runs it (one rank: every element),
  // with its own persistent state.
  const ParamGroupAssignment& assign = opt.groups();
  struct AdamParam {
    int param, group;
    std::vector<float> m, v;
  };
  std::vector<AdamParam> adam;
  for (size_t gi = 0; gi < cfg.optim.groups.size(); ++gi)
    if (cfg.optim.groups[gi].type != "muon")
      for (int pi : assign.params_of_group[gi]) {
        const size_t n = table.params()[pi].numel;
        adam.push_back({pi, static_cast<int>(gi), std::vector<float>(n, 0.0f), std::vector<float>(n, 0.0f)});
      }
  double sink = 0;
  auto adamw_replay = [&](long t) {
    for (AdamParam& a : adam) {
      const OptimGroupConfig& g = cfg.optim.groups[a.group];
      const ParamSpec& spec = table.params()[a.param];
      cpu::adamw_update(params.data() + spec.offset, a.m.data(), a.v.data(), grads.data() + spec.offset, spec.numel,
                        g.lr, g.betas[0], g.betas[1], g.eps, g.weight_decay, t);
      const double bc1 = 1.0 - std::pow(g.betas[0], t), bc2 = 1.0 - std::pow(g.betas[1], t);
      const float* m = a.m.data();
      const float* v = a.v.data();
      sink += cpu::deterministic_sum<double>(spec.numel, [&](size_t k) {
        const double d = (m[k] / bc1) / (std::sqrt(v[k] / bc2) + g.eps);
        return d * d;
      });
    }
  };
  // Newton-Schulz alone on every Muon block (input: the gradient rows, copied
  // outside the clock).
  const std::vector<BlockShape> blocks = muon_block_shapes(table, cfg.optim, assign, cfg.model.n_head);
  for (const BlockShape& b : blocks) r.ns_flops += ns_block_flops(b.rows, b.cols, b.iters);
  std::vector<float> u;
  auto ns_alone = [&] {
    double ms = 0;
    for (const BlockShape& b : blocks) {
      const OptimGroupConfig& g = cfg.optim.groups[b.group];
      const float* src = grads.data() + table.params()[b.param].offset + static_cast<size_t>(b.row0) * b.cols;
      u.assign(src, src + static_cast<size_t>(b.rows) * b.cols);
      const auto t0 = Clock::now();
      cpu::newton_schulz(u.data(), b.rows, b.cols, g.ns.table(), g.ns.norm_scale, g.ns.norm_eps);
      ms += ms_since(t0);
      sink += u[0];
    }
    return ms;
  };

  // Interleaved per iteration (whole step, AdamW replay, Newton-Schulz), so
  // that load from other processes hits all three alike; medians over the
  // timed iterations.
  std::vector<double> step_ms, adamw_ms, ns_ms;
  for (int i = 0; i < warmup + steps; ++i) {
    auto t0 = Clock::now();
    opt.step(params.data(), grads.data(), i);
    const double s = ms_since(t0);
    t0 = Clock::now();
    adamw_replay(i + 1);
    const double a = ms_since(t0);
    const double n = ns_alone();
    if (i < warmup) continue;
    step_ms.push_back(s);
    adamw_ms.push_back(a);
    ns_ms.push_back(n);
  }
  r.optimizer_ms = median(step_ms);
  r.adamw_ms = median(adamw_ms);
  r.muon_ms = std::max(0.0, r.optimizer_ms - r.adamw_ms);
  r.ns_ms = median(ns_ms);
  if (!std::isfinite(sink)) std::printf("note: non-finite values in the replayed updates\n");
  return r;
}

nlohmann::json shapes_json(const Config& cfg, const std::string& source) {
  const ParamTable table(cfg.model);
  const ParamGroupAssignment assign = assign_groups(table, cfg.optim, source);
  nlohmann::json params = nlohmann::json::array();
  for (size_t pi = 0; pi < table.params().size(); ++pi) {
    const ParamSpec& spec = table.params()[pi];
    const OptimGroupConfig& g = cfg.optim.groups[assign.group_of_param[pi]];
    nlohmann::json p = {{"name", spec.name}, {"shape", spec.shape}, {"group", g.name}, {"type", g.type}};
    if (g.type == "muon") {
      nlohmann::json blocks = nlohmann::json::array();
      for (const MuonBlock& b : muon_blocks(spec, g, cfg.model.n_head)) blocks.push_back({b.rows, spec.cols()});
      p["blocks"] = blocks;
      p["ns_steps"] = g.ns.table().size();
    }
    params.push_back(p);
  }
  return {{"config", source}, {"params", params}};
}

}  // namespace

BenchMode add_optimizer_bench(CLI::App* bench) {
  auto flag = std::make_shared<bool>(false);
  auto step_ms = std::make_shared<double>(0);
  auto dump_shapes = std::make_shared<std::string>();
  CLI::Option* opt_flag = bench->add_flag(
      "--optimizer", *flag,
      "time one optimizer step on the config's parameters: Muon and AdamW groups, Newton-Schulz TFLOP/s "
      "(with --config; --device, --steps, --warmup apply)");
  bench
      ->add_option("--step-ms", *step_ms,
                   "with --optimizer: the full training step time in ms (e.g. bench's step_ms) to report the "
                   "optimizer's fraction of it")
      ->check(CLI::PositiveNumber)
      ->needs(opt_flag);
  bench
      ->add_option("--dump-shapes", *dump_shapes,
                   "with --optimizer: write the parameter shapes, groups and Muon blocks as JSON to this file "
                   "('-' = stdout) and stop (input of scripts/bench/optimizer_torch.py)")
      ->needs(opt_flag);
  return [flag, step_ms, dump_shapes](const RunOptions& o, int steps, int warmup) {
    if (!*flag) return false;
    std::string source;
    const Config cfg = resolve_run_config(o, source);
    validate_config(cfg, source, 1);
    if (!dump_shapes->empty()) {
      const std::string text = shapes_json(cfg, source).dump();
      if (*dump_shapes == "-") {
        std::printf("%s\n", text.c_str());
      } else {
        std::ofstream f(*dump_shapes);
        if (!(f << text << "\n")) fail("--dump-shapes ", *dump_shapes, ": cannot write the file");
        std::printf("wrote the parameter shapes of %s to %s\n", source.c_str(), dump_shapes->c_str());
      }
      return true;
    }
    const std::string device = select_device(o.device, /*verbose=*/false);
    OptimizerBenchResult r;
#if MUONGPT_HAVE_CUDA
    r = device == "cuda" ? bench_optimizer_gpu(cfg, source, steps, warmup) : bench_cpu(cfg, source, steps, warmup);
#else
    r = bench_cpu(cfg, source, steps, warmup);
#endif

    // parameter counts per group and the Muon block shapes
    const ParamTable table(cfg.model);
    const ParamGroupAssignment assign = assign_groups(table, cfg.optim, source);
    int64_t muon_params = 0, adamw_params = 0;
    nlohmann::json groups = nlohmann::json::array();
    std::printf("bench --optimizer: %s on %s, %d timed steps after %d warmup\n\n", source.c_str(), r.device.c_str(),
                steps, warmup);
    std::printf("%-16s %-6s %8s %14s\n", "group", "type", "tensors", "parameters");
    for (size_t gi = 0; gi < cfg.optim.groups.size(); ++gi) {
      const OptimGroupConfig& g = cfg.optim.groups[gi];
      int64_t n = 0;
      for (int pi : assign.params_of_group[gi]) n += static_cast<int64_t>(table.params()[pi].numel);
      (g.type == "muon" ? muon_params : adamw_params) += n;
      groups.push_back({{"name", g.name}, {"type", g.type}, {"tensors", assign.params_of_group[gi].size()},
                        {"params", n}});
      std::printf("%-16s %-6s %8zu %14s\n", g.name.c_str(), g.type.c_str(), assign.params_of_group[gi].size(),
                  format_count(static_cast<double>(n)).c_str());
    }
    std::map<std::pair<int, int>, std::pair<int, double>> by_shape;  // (rows, cols) -> (count, FLOPs)
    int n_blocks = 0;
    for (const BlockShape& b : muon_block_shapes(table, cfg.optim, assign, cfg.model.n_head)) {
      auto& e = by_shape[{b.rows, b.cols}];
      e.first += 1;
      e.second += ns_block_flops(b.rows, b.cols, b.iters);
      ++n_blocks;
    }
    if (!by_shape.empty()) {
      std::printf("\n%-16s %6s %14s\n", "Muon block", "count", "NS GFLOP/step");
      for (const auto& [shape, e] : by_shape)
        std::printf("%-16s %6d %14.3f\n", str(shape.first, "x", shape.second).c_str(), e.first, e.second / 1e9);
    }

    const double ns_tflops = r.ns_ms > 0 ? r.ns_flops / (r.ns_ms * 1e-3) / 1e12 : 0.0;
    const bool have_step = *step_ms > 0;
    auto share = [&](double ms) { return r.optimizer_ms > 0 ? percent(ms / r.optimizer_ms, 1) : std::string("-"); };
    std::printf("\n%-26s %10s %10s %12s\n", "phase", "ms/step", "of step", "of train");
    auto row = [&](const char* name, double ms) {
      std::printf("%-26s %10.3f %10s %12s\n", name, ms, share(ms).c_str(),
                  have_step ? percent(ms / *step_ms, 2).c_str() : "-");
    };
    row("optimizer step", r.optimizer_ms);
    row("  Muon groups", r.muon_ms);
    row("  AdamW groups", r.adamw_ms);
    row("  (Newton-Schulz alone)", r.ns_ms);
    std::printf("\nNewton-Schulz: %.3f GFLOP per step, %.4f TFLOP/s", r.ns_flops / 1e9, ns_tflops);
    if (r.peak_tflops > 0)
      std::printf(" = %.1f%% of the bf16 GEMM peak measured in this run (%.1f TFLOP/s)",
                  100 * ns_tflops / r.peak_tflops, r.peak_tflops);
    else
      std::printf(" (no bf16 peak on the CPU)");
    std::printf("\n%s\n", have_step ? str("training step: ", *step_ms, " ms (--step-ms)").c_str()
                                     : "training step: unknown (pass --step-ms for the optimizer's fraction)");
    std::printf("method: %s\n", r.method.c_str());
    if (r.ns_ms > r.muon_ms * 1.1 + 0.01)
      std::printf("note: Newton-Schulz alone took longer than the Muon groups' share; the timings are noisy\n");

    const nlohmann::json null;
    const nlohmann::json j = {
        {"device", r.device},
        {"config", source},
        {"steps", steps},
        {"warmup", warmup},
        {"optimizer_ms", r.optimizer_ms},
        {"muon_ms", r.muon_ms},
        {"adamw_ms", r.adamw_ms},
        {"ns_ms", r.ns_ms},
        {"ns_flops", r.ns_flops},
        {"ns_tflops", ns_tflops},
        {"peak_tflops", r.peak_tflops > 0 ? nlohmann::json(r.peak_tflops) : null},
        {"ns_fraction_of_peak", r.peak_tflops > 0 ? nlohmann::json(ns_tflops / r.peak_tflops) : null},
        {"step_ms", have_step ? nlohmann::json(*step_ms) : null},
        {"fraction_of_step", have_step ? nlohmann::json(r.optimizer_ms / *step_ms) : null},
        {"muon_fraction_of_step", have_step ? nlohmann::json(r.muon_ms / *step_ms) : null},
        {"muon_params", muon_params},
        {"adamw_params", adamw_params},
        {"muon_blocks", n_blocks},
        {"groups", groups},
        {"method", r.method}};
    std::printf("%s\n", j.dump().c_str());
    return true;
  };
}

}  // namespace muongpt
