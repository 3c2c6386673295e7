// muongpt bench: time training steps of a config (no evaluation, nothing
// written). Prints the time split and, as its last line, one JSON object.
// bench --comm: bandwidth of the collectives at the config's bucket sizes and
// a sweep of sizes (start it under mpirun; see src/dist/comm_bench.h).
// bench --attention, bench --optimizer: see bench_modes.h.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>

#include "cli/commands/bench_modes.h"
#include "cli/commands/commands.h"
#include "cli/commands/run_options.h"
#include "config/config_io.h"
#include "dist/comm_bench.h"
#include "model/estimate.h"
#include "util/error.h"
#include "util/format.h"

namespace muongpt {

namespace {

void run_comm_bench(Comm& comm, const RunOptions& o, int iters, int warmup, double max_mb) {
  std::vector<CommBucket> buckets;
  std::string source = "no config";
  if (!o.config_path.empty()) {
    const Config cfg = resolve_run_config(o, source);
    buckets = model_buckets(cfg.model);
  }
  for (const CommBucket& b : sweep_buckets(static_cast<size_t>(max_mb * 1024 * 1024))) buckets.push_back(b);
  comm.set_timeout(600);
  const std::vector<CommResult> results = bench_collectives(comm, buckets, iters, warmup);
  if (!comm.is_root()) return;
  std::printf("bench --comm: %s, buckets from %s, %d timed calls per size after %d warmup\n", comm.name().c_str(),
              source.c_str(), iters, warmup);
  if (comm.world() == 1) std::printf("note: one rank, so the collectives move nothing; start with mpirun -np N\n");
  std::printf("every result checked element by element before timing\n");
  std::printf("%-16s %-24s %12s %10s %12s %12s\n", "op", "bucket", "size", "time ms", "algbw GB/s", "busbw GB/s");
  nlohmann::json rows = nlohmann::json::array();
  for (const CommResult& r : results) {
    std::printf("%-16s %-24s %12s %10.3f %12.2f %12.2f\n", r.op.c_str(), r.label.c_str(),
                format_bytes(static_cast<double>(r.bytes)).c_str(), r.ms, r.algbw_gbs, r.busbw_gbs);
    rows.push_back({{"op", r.op}, {"bucket", r.label}, {"bytes", r.bytes}, {"ms", r.ms},
                    {"algbw_gbs", r.algbw_gbs}, {"busbw_gbs", r.busbw_gbs}, {"verified", r.verified}});
  }
  const nlohmann::json result = {{"comm", comm.name()}, {"world_size", comm.world()}, {"config", source},
                                 {"results", rows}};
  std::printf("%s\n", result.dump().c_str());
}

}  // namespace

void register_bench(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto steps = std::make_shared<int>(10);
  auto warmup = std::make_shared<int>(2);
  auto comm_mode = std::make_shared<bool>(false);
  auto max_mb = std::make_shared<double>(64);
  auto* cmd = app.add_subcommand("bench", "time training steps of a config (last line: a JSON object)");
  add_config_options(cmd, *o, /*with_run_dir=*/false);
  cmd->add_option("--steps", *steps, "timed steps (with --comm: timed calls per size)")->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", *warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--comm", *comm_mode,
                "measure all-reduce / reduce-scatter / all-gather bandwidth at the config's bucket sizes "
                "(one block, embedding, head, all gradients) and a size sweep; run under mpirun");
  cmd->add_option("--max-mb", *max_mb, "with --comm: largest size of the sweep in MiB")->check(CLI::PositiveNumber);
  const BenchMode attention_mode = add_attention_bench(cmd);
  const BenchMode optimizer_mode = add_optimizer_bench(cmd);
  cmd->callback([o, steps, warmup, comm_mode, max_mb, attention_mode, optimizer_mode] {
    if (attention_mode(*o, *steps, *warmup)) return;
    if (optimizer_mode(*o, *steps, *warmup)) return;
    std::unique_ptr<Comm> comm = make_comm();
    if (*comm_mode) {
      run_comm_bench(*comm, *o, *steps, *warmup, *max_mb);
      return;
    }
    std::string source;
    Config cfg = resolve_run_config(*o, source);
    cfg.data.val_tokens = 0;  // no evaluation set needed
    cfg.train.steps = std::max(cfg.train.steps, *steps + *warmup);
    validate_config(cfg, source, comm->world());
    check_data_files(cfg, source);
    const std::string device = select_device(o->device, comm->is_root());
    Trainer trainer(cfg, source, *comm, device);
    for (int i = 0; i < *warmup; ++i) trainer.train_step();
    StepStats sum;
    for (int i = 0; i < *steps; ++i) {
      const StepStats s = trainer.train_step();
      sum.step_ms += s.step_ms;
      sum.data_ms += s.data_ms;
      sum.forward_ms += s.forward_ms;
      sum.backward_ms += s.backward_ms;
      sum.comm_ms += s.comm_ms;
      sum.optim_ms += s.optim_ms;
    }
    if (!comm->is_root()) return;
    const double n = *steps;
    const double step_ms = sum.step_ms / n;
    const double tok_s = cfg.batch.global_tokens / (step_ms / 1000.0);
    const ModelEstimate e = estimate_model(cfg);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const double peak_gb = usage.ru_maxrss * 1024.0 / 1e9;
    std::printf("bench %s on %s (%s), %d timed steps after %d warmup\n", source.c_str(), trainer.model().device().c_str(),
                comm->name().c_str(), *steps, *warmup);
    std::printf("step %.1f ms | %s tok/s | %.2f GFLOP/s achieved | peak host memory %.2f GB\n", step_ms,
                format_count(tok_s).c_str(), e.flops_per_token * tok_s / 1e9, peak_gb);
    std::printf("split: data %.1f ms | forward %.1f ms | backward %.1f ms | comm %.1f ms | optimizer %.1f ms\n",
                sum.data_ms / n, sum.forward_ms / n, sum.backward_ms / n, sum.comm_ms / n, sum.optim_ms / n);
    std::printf("mfu: not reported on the CPU (no reference peak)\n");
    const nlohmann::json result = {{"device", trainer.model().device()},
                                   {"config", source},
                                   {"world_size", comm->world()},
                                   {"tokens_per_s", tok_s},
                                   {"step_ms", step_ms},
                                   {"mfu", nullptr},
                                   {"achieved_tflops", e.flops_per_token * tok_s / 1e12},
                                   {"peak_mem_gb", peak_gb},
                                   {"data_ms", sum.data_ms / n},
                                   {"forward_ms", sum.forward_ms / n},
                                   {"backward_ms", sum.backward_ms / n},
                                   {"comm_ms", sum.comm_ms / n},
                                   {"optimizer_ms", sum.optim_ms / n}};
    std::printf("%s\n", result.dump().c_str());
  });
}

}  // namespace muongpt
