// bench --optimizer on the GPU (declared in src/cli/commands/bench_optimizer.h):
// DeviceOptimizer steps on random device parameters and gradients, and the
// device's bf16 GEMM rate measured in the same process, so that the
// Newton-Schulz TFLOP/s can be read against it.
//
// Timing: one pair of CUDA events around each whole step (optimizer_ms); the
// optimizer's own events (set_timing / last_timing) split it into the Muon
// groups, the AdamW groups and the Newton-Schulz GEMMs with their glue. The
// steps are enqueued back to back; last_timing() synchronises after each
// step, which does not change what the events measure.
//
// Peak: gpu::Matmul::gemm, 8192 x 8192 x 8192, bf16 in and out, fp32
// accumulation, on uniform random operands (all-zero operands draw less power
// and can run faster than real data); the best of 10 calls after 2 untimed.
//
// Gram kernels: Newton-Schulz alone on the config's Muon batches (grouped by
// (group, rows, cols) as DeviceOptimizer batches them), once with cuBLASLt's
// Gram products and once with the symmetric kernel (NsGramKernel), `steps`
// passes each after one untimed pass, printed as one line with the mean ms per
// step and the TFLOP/s of the mathematical FLOPs (the JSON line is unchanged).
// The optimizer itself runs with NsGramKernel::kAuto.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>
#include <vector>

#include "backend/cuda/device_optimizer.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/local_gpu.h"
#include "cli/commands/bench_optimizer.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/newton_schulz.cuh"
#include "model/params.h"
#include "optim/optimizer.h"
#include "util/error.h"
#include "util/rng.h"

namespace muongpt {

namespace {

class Event {
 public:
  Event() { CUDA_CHECK(cudaEventCreate(&e_)); }
  ~Event() { cudaEventDestroy(e_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

float ms_between(const Event& a, const Event& b) {
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, a.get(), b.get()));
  return ms;
}

// Uniform values in [-1, 1) from a hash of the index (no host transfer).
template <class T>
__global__ void fill_uniform(T* x, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9e3779b9u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    x[i] = static_cast<T>(static_cast<float>(h) * (2.0f / 4294967296.0f) - 1.0f);
  }
}

double measure_bf16_peak_tflops(gpu::Matmul& mm, cudaStream_t stream) {
  const int n = 8192;
  const size_t elems = size_t(n) * n;
  DeviceArray<gpu::bf16> a(elems), b(elems), d(elems);
  fill_uniform<<<1024, 256, 0, stream>>>(a.get(), elems, 1u);
  fill_uniform<<<1024, 256, 0, stream>>>(b.get(), elems, 2u);
  CUDA_CHECK(cudaGetLastError());
  Event e0, e1;
  float best = 1e30f;
  for (int i = 0; i < 12; ++i) {
    CUDA_CHECK(cudaEventRecord(e0.get(), stream));
    // column-major D = A B with alpha 1/n keeps the bf16 output in range
    mm.gemm(false, false, n, n, n, 1.0f / n, a.get(), n, b.get(), n, 0.0f, d.get(), n, false, nullptr, stream);
    CUDA_CHECK(cudaEventRecord(e1.get(), stream));
    CUDA_CHECK(cudaEventSynchronize(e1.get()));
    if (i >= 2) best = std::min(best, ms_between(e0, e1));  // the first calls pick the algorithm, warm the clocks
  }
  return 2.0 * n * double(n) * n / (best * 1e-3) / 1e12;
}

// Prints Newton-Schulz alone per Gram kernel (see the file comment).
void compare_gram_kernels(const Config& cfg, const std::string& source, gpu::Matmul& mm, cudaStream_t stream,
                          int steps) {
  const ParamTable table(cfg.model);
  const ParamGroupAssignment assign = assign_groups(table, cfg.optim, source);
  std::map<std::tuple<int, int, int>, int> count_of;  // (group, rows, cols) -> blocks
  for (size_t gi = 0; gi < cfg.optim.groups.size(); ++gi) {
    const OptimGroupConfig& g = cfg.optim.groups[gi];
    if (g.type != "muon") continue;
    for (int pi : assign.params_of_group[gi])
      for (const MuonBlock& b : muon_blocks(table.params()[pi], g, cfg.model.n_head))
        ++count_of[{static_cast<int>(gi), b.rows, table.params()[pi].cols()}];
  }
  if (count_of.empty()) return;
  const auto stride_of = [](int rows, int cols) { return (static_cast<size_t>(rows) * cols + 127) / 128 * 128; };
  size_t max_x = 1, max_ws = 1, max_scratch = 1;
  double flops = 0;
  for (const auto& [key, count] : count_of) {
    const auto [gi, rows, cols] = key;
    max_x = std::max(max_x, stride_of(rows, cols) * count);
    max_ws = std::max(max_ws, gpu::newton_schulz_batched_workspace(count, rows, cols));
    max_scratch = std::max(max_scratch, gpu::newton_schulz_batched_scratch_doubles(count));
    const double r = std::min(rows, cols), c = std::max(rows, cols);
    flops += count * static_cast<double>(cfg.optim.groups[gi].ns.table().size()) * (4.0 * r * r * c + 2.0 * r * r * r);
  }
  DeviceArray<float> g(max_x);
  DeviceArray<gpu::bf16> out(max_x), ws(max_ws);
  DeviceArray<double> scratch(max_scratch);
  fill_uniform<<<1024, 256, 0, stream>>>(g.get(), max_x, 3u);
  CUDA_CHECK(cudaGetLastError());
  const auto pass = [&](gpu::NsGramKernel gram) {
    for (const auto& [key, count] : count_of) {
      const auto [gi, rows, cols] = key;
      const NewtonSchulzConfig& ns = cfg.optim.groups[gi].ns;
      const auto k = gpu::ns_coefficients(ns.table());
      const size_t stride = stride_of(rows, cols);
      gpu::newton_schulz_batched(out.get(), stride, g.get(), stride, count, rows, cols, k.data(),
                                 static_cast<int>(k.size()), static_cast<float>(ns.norm_scale),
                                 static_cast<float>(ns.norm_eps), ws.get(), scratch.get(), mm, stream, gram);
    }
  };
  const auto time_ms = [&](gpu::NsGramKernel gram) {
    pass(gram);  // untimed: cuBLASLt's algorithm search, clocks
    Event e0, e1;
    CUDA_CHECK(cudaEventRecord(e0.get(), stream));
    for (int i = 0; i < steps; ++i) pass(gram);
    CUDA_CHECK(cudaEventRecord(e1.get(), stream));
    CUDA_CHECK(cudaEventSynchronize(e1.get()));
    return ms_between(e0, e1) / std::max(steps, 1);
  };
  const double lt = time_ms(gpu::NsGramKernel::kCublasLt), sym = time_ms(gpu::NsGramKernel::kSymmetric);
  const auto tflops = [&](double ms) { return ms > 0 ? flops / (ms * 1e-3) / 1e12 : 0.0; };
  std::printf(
      "Newton-Schulz alone per Gram kernel (%zu Muon batches, %d passes): cuBLASLt %.3f ms (%.1f TFLOP/s), "
      "symmetric kernel %.3f ms (%.1f TFLOP/s), %.2fx; the optimizer uses %s\n",
      count_of.size(), steps, lt, tflops(lt), sym, tflops(sym), sym > 0 ? lt / sym : 0.0,
      gpu::kSymmetricGramVerified ? "the symmetric kernel" : "cuBLASLt");
  std::fflush(stdout);
}

std::vector<float> uniform_values(size_t n, uint64_t seed, double bound) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(bound * (2.0 * rng.uniform() - 1.0));
  return v;
}

}  // namespace

OptimizerBenchResult bench_optimizer_gpu(const Config& cfg, const std::string& source, int steps, int warmup) {
  std::string why;
  if (!DeviceOptimizer::supports(cfg.optim, why))
    fail("bench --optimizer --device cuda: ", source, ": the GPU optimizer cannot run this config: ", why);
  const int device = local_gpu_index();
  CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  OptimizerBenchResult r;
  r.device = str("cuda:", device, " (", prop.name, ")");
  r.method =
      "cuda: events around each whole step; Muon, AdamW and Newton-Schulz phases from DeviceOptimizer's own events";
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    gpu::Matmul mm;
    const ParamTable table(cfg.model);
    const size_t n = table.total();
    DeviceArray<float> params(n), grads(n);
    DeviceArray<gpu::bf16> params_bf16(n);
    {
      const std::vector<float> p = uniform_values(n, 1, 0.02), g = uniform_values(n, 2, 1e-3);
      CUDA_CHECK(cudaMemcpy(params.get(), p.data(), n * sizeof(float), cudaMemcpyHostToDevice));
      CUDA_CHECK(cudaMemcpy(grads.get(), g.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    }
    DeviceOptimizer opt(table, cfg.optim, cfg.schedule, steps + warmup, source, cfg.model.n_head, mm, stream);
    for (int i = 0; i < warmup; ++i) opt.step(params.get(), params_bf16.get(), grads.get(), i);
    CUDA_CHECK(cudaStreamSynchronize(stream));
    opt.set_timing(true);
    Event e0, e1;
    for (int i = 0; i < steps; ++i) {
      CUDA_CHECK(cudaEventRecord(e0.get(), stream));
      opt.step(params.get(), params_bf16.get(), grads.get(), warmup + i);
      CUDA_CHECK(cudaEventRecord(e1.get(), stream));
      const DeviceOptimizerTiming t = opt.last_timing();  // synchronises with the stream
      CUDA_CHECK(cudaEventSynchronize(e1.get()));
      r.optimizer_ms += ms_between(e0, e1) / steps;
      r.muon_ms += t.muon_ms / steps;
      r.adamw_ms += t.adamw_ms / steps;
      r.ns_ms += t.ns_ms / steps;
      r.ns_flops = t.ns_flops > 0 ? t.ns_flops : opt.ns_flops_per_step();
    }
    opt.set_timing(false);
    compare_gram_kernels(cfg, source, mm, stream, steps);
    r.peak_tflops = measure_bf16_peak_tflops(mm, stream);
    CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  CUDA_CHECK(cudaStreamDestroy(stream));
  return r;
}

}  // namespace muongpt
