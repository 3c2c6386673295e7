// Options shared by the commands that run a model (train, eval, sample,
// bench, info): --config, --set, --out, --resume, --device, --seed.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>

#include "train/trainer.h"

namespace muongpt {

inline void add_config_options(CLI::App* cmd, RunOptions& o, bool with_run_dir) {
  cmd->add_option("--config,-c", o.config_path, "JSON config file (see configs/)")->check(CLI::ExistingFile);
  cmd->add_option("--set,-s", o.overrides, "override a config field: --set key.path=value (repeatable)");
  cmd->add_option("--device", o.device, "auto | cpu | cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--seed", o.seed, "seed (overrides train.seed)");
  if (with_run_dir) {
    cmd->add_option("--out,-o", o.out_dir, "run directory (default runs/<name>)");
    cmd->add_flag("--resume", o.resume, "continue from the newest complete checkpoint in the run directory");
    cmd->add_option("--stop-at-step", o.stop_at_step,
                    "checkpoint and exit after this step, e.g. before a job's time limit (continue with --resume)")
        ->check(CLI::PositiveNumber);
  }
}

}  // namespace muongpt
