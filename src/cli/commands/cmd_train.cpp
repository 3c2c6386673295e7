// muongpt train: train a model from a config; see train/trainer.h.
#include "cli/commands/commands.h"
#include "cli/commands/run_options.h"

namespace muongpt {

void register_train(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("train", "train a model (writes config.json, metrics.jsonl, checkpoints, summary.json)");
  add_config_options(cmd, *options, /*with_run_dir=*/true);
  cmd->footer(
      "examples:\n"
      "  muongpt train --config configs/tiny.json\n"
      "  muongpt train --config configs/tiny.json --set train.steps=50 --set optim.groups.0.lr=0.03 --out runs/try\n"
      "  muongpt train --out runs/try --resume          # continue a run from its newest checkpoint");
  cmd->callback([options] { run_training(*options); });
}

}  // namespace muongpt
