// Deterministic two-pass sums: see reduce.cuh.
#include "kernels/cuda/reduce.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kThreads = 256;

__global__ void reduce_partial_kernel(double* partial, const float* x, size_t n, bool squares) {
  double acc = 0.0;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const double v = x[i];
    acc += squares ? v * v : v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void reduce_finish_kernel(double* out, const double* partial, int blocks) {
  double acc = 0.0;
  for (int k = threadIdx.x; k < blocks; k += blockDim.x) acc += partial[k];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

void launch(const char* op, double* out, const float* x, size_t n, double* scratch, bool squares,
            cudaStream_t stream) {
  require_arg(out != nullptr, op, "out is required");
  if (n == 0) {
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream));
    return;
  }
  require_arg(x && scratch, op, "x and scratch are required");
  const size_t needed = ceil_div(n, static_cast<size_t>(kThreads) * 4);  // >= 4 elements per thread
  const int blocks = static_cast<int>(needed < kReduceBlocks ? needed : kReduceBlocks);
  reduce_partial_kernel<<<blocks, kThreads, 0, stream>>>(scratch, x, n, squares);
  CUDA_CHECK_LAUNCH("reduce_partial_kernel");
  reduce_finish_kernel<<<1, kThreads, 0, stream>>>(out, scratch, blocks);
  CUDA_CHECK_LAUNCH("reduce_finish_kernel");
}

}  // namespace

void sum_f32(double* out, const float* x, size_t n, double* scratch, cudaStream_t stream) {
  launch("sum_f32", out, x, n, scratch, false, stream);
}

void sum_squares_f32(double* out, const float* x, size_t n, double* scratch, cudaStream_t stream) {
  launch("sum_squares_f32", out, x, n, scratch, true, stream);
}

}  // namespace muongpt::gpu
