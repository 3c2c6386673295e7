// Subcommands of the `muongpt` binary. Each register_* adds one subcommand to
// the CLI11 app with its options and a callback that runs it.
#pragma once

#include <CLI/CLI.hpp>

namespace muongpt {

void register_train(CLI::App& app);
void register_eval(CLI::App& app);
void register_sample(CLI::App& app);
void register_info(CLI::App& app);
void register_prepare(CLI::App& app);
void register_bench(CLI::App& app);

}  // namespace muongpt
