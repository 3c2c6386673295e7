// muongpt bench: time training steps of a config (no evaluation, nothing
// written). Prints the time split and, as its last line, one JSON object.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>

#include "cli/commands/commands.h"
#include "cli/commands/run_options.h"
#include "config/config_io.h"
#include "model/estimate.h"
#include "util/error.h"
#include "util/format.h"

namespace muongpt {

void register_bench(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto steps = std::make_shared<int>(10);
  auto warmup = std::make_shared<int>(2);
  auto* cmd = app.add_subcommand("bench", "time training steps of a config (last line: a JSON object)");
  add_config_options(cmd, *o, /*with_run_dir=*/false);
  cmd->add_option("--steps", *steps, "timed steps")->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", *warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  cmd->callback([o, steps, warmup] {
    std::unique_ptr<Comm> comm = make_comm();
    std::string source;
    Config cfg = resolve_run_config(*o, source);
    cfg.data.val_tokens = 0;  // no evaluation set needed
    cfg.train.steps = std::max(cfg.train.steps, *steps + *warmup);
    validate_config(cfg, source, comm->world());
    check_data_files(cfg, source);
    const std::string device = select_device(o->device, comm->is_root());
    Trainer trainer(cfg, source, *comm);
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
    std::printf("bench %s on %s (%s), %d timed steps after %d warmup\n", source.c_str(), device.c_str(),
                comm->name().c_str(), *steps, *warmup);
    std::printf("step %.1f ms | %s tok/s | %.2f GFLOP/s achieved | peak host memory %.2f GB\n", step_ms,
                format_count(tok_s).c_str(), e.flops_per_token * tok_s / 1e9, peak_gb);
    std::printf("split: data %.1f ms | forward %.1f ms | backward %.1f ms | comm %.1f ms | optimizer %.1f ms\n",
                sum.data_ms / n, sum.forward_ms / n, sum.backward_ms / n, sum.comm_ms / n, sum.optim_ms / n);
    std::printf("mfu: not reported on the CPU (no reference peak)\n");
    const nlohmann::json result = {{"device", device},
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
