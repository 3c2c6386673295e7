// bench --attention on the GPU: times gpu::attention_forward and
// gpu::attention_backward (kernels/cuda/attention.cuh) on random bf16 inputs.
// Inputs are generated on the device (a counter-based hash, so a 64K x 16-head
// case does not wait seconds for host random numbers), and the results are
// checked for NaN/inf on the device after timing.
#include "backend/cuda/attention_bench.h"

#include <cuda_runtime_api.h>

#include <cmath>

#include "backend/cuda/device_array.h"
#include "backend/cuda/local_gpu.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/common.cuh"
#include "util/error.h"
#include "util/format.h"

namespace muongpt {

namespace {

__device__ __forceinline__ uint64_t hash64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// x[i] = a standard normal draw (Box-Muller on two hashed uniforms).
__global__ void fill_normal_kernel(gpu::bf16* x, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint64_t h = hash64(seed * 0x632be59bd9b4e019ULL ^ i);
    const float u1 = (static_cast<float>(h >> 40) + 1.0f) * 0x1.0p-24f;  // (0, 1]
    const float u2 = static_cast<float>((h >> 16) & 0xffffffu) * 0x1.0p-24f;
    x[i] = gpu::f2bf(sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
  }
}

__global__ void count_nonfinite_kernel(const gpu::bf16* x, size_t n, unsigned long long* count) {
  unsigned long long local = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    local += isfinite(gpu::bf2f(x[i])) ? 0 : 1;
  if (local) atomicAdd(count, local);
}

constexpr int kThreads = 256, kMaxBlocks = 4096;

int blocks_for(size_t n) { return static_cast<int>(std::min<size_t>(kMaxBlocks, (n + kThreads - 1) / kThreads)); }

void fill_normal(const DeviceArray<gpu::bf16>& a, uint64_t seed, cudaStream_t s) {
  fill_normal_kernel<<<blocks_for(a.size()), kThreads, 0, s>>>(a.get(), a.size(), seed);
  CUDA_CHECK_LAUNCH("fill_normal_kernel");
}

// Owns the stream and events of one timing.
struct StreamAndEvents {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, mid = nullptr, stop = nullptr;
  StreamAndEvents() {
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&mid));
    CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~StreamAndEvents() {
    cudaEventDestroy(start);
    cudaEventDestroy(mid);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
  }
  StreamAndEvents(const StreamAndEvents&) = delete;
  StreamAndEvents& operator=(const StreamAndEvents&) = delete;
};

}  // namespace

std::string attention_bench_gpu_name() {
  const int index = local_gpu_index();
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return str("cuda:", index, " (", prop.name, ")");
}

GpuAttentionTiming time_attention_gpu(int B, int T, int H, int D, int window, int window_block,
                                      const std::vector<int32_t>& doc_ids, const std::string& kernel_name, int steps,
                                      int warmup) {
  const gpu::AttentionKernel kernel = gpu::parse_attention_kernel(kernel_name);
  CUDA_CHECK(cudaSetDevice(local_gpu_index()));
  const size_t n = static_cast<size_t>(B) * T * H * D;
  const size_t rows = static_cast<size_t>(B) * H * T;
  const size_t scratch_floats = gpu::attention_backward_scratch_floats(B, T, H);
  const double need = 8.0 * n * sizeof(gpu::bf16) + (rows + scratch_floats) * sizeof(float) +
                      doc_ids.size() * sizeof(int32_t);
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (need > 0.95 * static_cast<double>(free_bytes))
    fail("bench --attention: B=", B, " T=", T, " H=", H, " D=", D, " needs ", format_bytes(need), " of GPU memory, ",
         format_bytes(static_cast<double>(free_bytes)), " is free; lower --tokens or --heads");

  DeviceArray<gpu::bf16> q(n), k(n), v(n), out(n), dout(n), dq(n), dk(n), dv(n);
  DeviceArray<float> lse(rows), scratch(scratch_floats);
  DeviceArray<int32_t> docs(doc_ids.size());
  DeviceArray<unsigned long long> bad(1);
  StreamAndEvents se;
  const cudaStream_t s = se.stream;
  fill_normal(q, 1, s);
  fill_normal(k, 2, s);
  fill_normal(v, 3, s);
  fill_normal(dout, 4, s);
  const int32_t* doc_ptr = nullptr;
  if (!doc_ids.empty()) {
    CUDA_CHECK(cudaMemcpyAsync(docs.get(), doc_ids.data(), doc_ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                               s));
    doc_ptr = docs.get();
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  auto forward = [&] {
    gpu::attention_forward(out.get(), lse.get(), /*max_logit=*/nullptr, q.get(), k.get(), v.get(), B, T, H, D, scale,
                           window, window_block, doc_ptr, s, kernel);
  };
  auto backward = [&] {
    gpu::attention_backward(dq.get(), dk.get(), dv.get(), dout.get(), out.get(), lse.get(), q.get(), k.get(), v.get(),
                            B, T, H, D, scale, window, window_block, doc_ptr, scratch.get(), s, kernel);
  };
  for (int i = 0; i < warmup; ++i) {
    forward();
    backward();
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
  CUDA_CHECK(cudaEventRecord(se.start, s));
  for (int i = 0; i < steps; ++i) forward();
  CUDA_CHECK(cudaEventRecord(se.mid, s));
  for (int i = 0; i < steps; ++i) {
    forward();
    backward();
  }
  CUDA_CHECK(cudaEventRecord(se.stop, s));
  CUDA_CHECK(cudaEventSynchronize(se.stop));
  float ms_fwd = 0, ms_fwd_bwd = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms_fwd, se.start, se.mid));
  CUDA_CHECK(cudaEventElapsedTime(&ms_fwd_bwd, se.mid, se.stop));

  CUDA_CHECK(cudaMemsetAsync(bad.get(), 0, sizeof(unsigned long long), s));
  for (const DeviceArray<gpu::bf16>* a : {&out, &dq, &dk, &dv}) {
    count_nonfinite_kernel<<<blocks_for(n), kThreads, 0, s>>>(a->get(), n, bad.get());
    CUDA_CHECK_LAUNCH("count_nonfinite_kernel");
  }
  unsigned long long nonfinite = 0;
  CUDA_CHECK(cudaMemcpyAsync(&nonfinite, bad.get(), sizeof(nonfinite), cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));

  GpuAttentionTiming t;
  t.ms_fwd = ms_fwd / steps;
  t.ms_fwd_bwd = ms_fwd_bwd / steps;
  t.nonfinite = static_cast<int64_t>(nonfinite);
  return t;
}

}  // namespace muongpt
