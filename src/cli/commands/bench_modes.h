// The benchmark modes of `muongpt bench` beyond timing training steps
// (--comm lives in cmd_bench.cpp). Each add_*_bench registers its flag and
// options on the bench command and returns a BenchMode: called from the
// command's callback, it runs the benchmark and returns true when its flag was
// given, and returns false (doing nothing) otherwise.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "train/trainer.h"

namespace muongpt {

using BenchMode = std::function<bool(const RunOptions& options, int steps, int warmup)>;

// --attention: attention forward and forward+backward TFLOP/s over sequence
// lengths, windows and document masks (src/cli/commands/bench_attention.cpp).
BenchMode add_attention_bench(CLI::App* bench);

// --optimizer: Muon and AdamW step time of a config's parameters
// (src/cli/commands/bench_optimizer.cpp).
BenchMode add_optimizer_bench(CLI::App* bench);

}  // namespace muongpt
