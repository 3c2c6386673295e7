// GPU side of `muongpt bench --attention` (src/cli/commands/bench_attention.cpp
// builds the cases, counts FLOPs and prints). Only in CUDA builds.
#pragma once

#if MUONGPT_HAVE_CUDA

#include <cstdint>
#include <string>
#include <vector>

namespace muongpt {

struct GpuAttentionTiming {
  double ms_fwd = 0;          // one attention_forward, mean over the timed runs
  double ms_fwd_bwd = 0;      // one attention_forward + attention_backward
  int64_t nonfinite = 0;      // NaN/inf elements in out, dq, dk, dv after the last run
};

// The name of the GPU this process uses, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)".
std::string attention_bench_gpu_name();

// Times kernels/cuda's attention on random bf16 q, k, v, dout in the model's
// (B, T, H, D) layout with CUDA events: `warmup` untimed forward+backward
// passes, then `steps` forwards back to back, then `steps` forward+backward
// passes back to back. window: 0 = causal; window_block: 0 = token window, else
// whole blocks (model.window_block). doc_ids: (B * T) document ids, or empty for none.
// kernel: auto | cuda_cores | tensor_cores (gpu::AttentionKernel).
// Fails with a clear message when the tensors do not fit in GPU memory.
GpuAttentionTiming time_attention_gpu(int B, int T, int H, int D, int window, int window_block,
                                      const std::vector<int32_t>& doc_ids, const std::string& kernel, int steps,
                                      int warmup);

}  // namespace muongpt

#endif  // MUONGPT_HAVE_CUDA
