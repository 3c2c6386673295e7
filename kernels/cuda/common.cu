// Host helpers shared by the kernel families.
#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

namespace {
__global__ void probe_kernel(int* flag) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *flag = 1;
}
}  // namespace

std::string device_probe() {
  int count = 0;
  cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) return cudaGetErrorString(rc);
  if (count == 0) return "cudaGetDeviceCount found no device";
  int* flag = nullptr;
  rc = cudaMalloc(&flag, sizeof(int));
  if (rc != cudaSuccess) return std::string("cudaMalloc: ") + cudaGetErrorString(rc);
  probe_kernel<<<1, 32>>>(flag);
  rc = cudaGetLastError();
  if (rc == cudaSuccess) rc = cudaDeviceSynchronize();
  int host = 0;
  if (rc == cudaSuccess) rc = cudaMemcpy(&host, flag, sizeof(int), cudaMemcpyDeviceToHost);
  cudaFree(flag);
  if (rc != cudaSuccess) return std::string("test kernel launch: ") + cudaGetErrorString(rc);
  if (host != 1) return "test kernel did not run";
  return "";
}

}  // namespace muongpt::gpu
