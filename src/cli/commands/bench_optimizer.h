// bench --optimizer: one optimizer step alone, on a config's parameter shapes
// with random parameters and gradients (bench_optimizer.cpp). The GPU half is
// src/backend/cuda/optimizer_bench.cu (CUDA builds only).
#pragma once

#include <string>

#include "config/config.h"

namespace muongpt {

// Mean times of one step, in milliseconds, and the Newton-Schulz work.
struct OptimizerBenchResult {
  std::string device;       // "cpu", or "cuda:0 (NVIDIA H100 ...)"
  double optimizer_ms = 0;  // the whole step: every group
  double muon_ms = 0;       // the Muon groups: momentum, Newton-Schulz, update
  double adamw_ms = 0;      // the AdamW groups
  double ns_ms = 0;         // Newton-Schulz alone (part of muon_ms)
  double ns_flops = 0;      // Newton-Schulz GEMM FLOPs of one step (2*m*n*k per product)
  double peak_tflops = 0;   // bf16 GEMM rate measured in the same run; 0 = not measured (CPU)
  std::string method;       // how the split was measured, in words
};

#if MUONGPT_HAVE_CUDA
// Steps the DeviceOptimizer (src/backend/cuda/device_optimizer.h) on device
// buffers: `warmup` untimed steps, then `steps` steps timed with CUDA events
// (whole step outside, Muon / AdamW / Newton-Schulz phases by the optimizer's
// own timing); then the bf16 peak from one 8192^3 gpu::Matmul GEMM.
OptimizerBenchResult bench_optimizer_gpu(const Config& cfg, const std::string& source, int steps, int warmup);
#endif

}  // namespace muongpt
