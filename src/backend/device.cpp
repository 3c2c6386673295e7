#include "backend/device.h"

#if MUONGPT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "util/error.h"

namespace muongpt {

DeviceReport detect_devices() {
  DeviceReport report;
#if MUONGPT_HAVE_CUDA
  report.cuda_built = true;
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    report.cuda_status = str("no usable CUDA device (", cudaGetErrorString(rc), ")");
    return report;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    report.gpus.push_back({i, prop.name, prop.major, prop.minor, prop.totalGlobalMem / 1e9});
  }
  if (report.gpus.empty()) report.cuda_status = "no CUDA device found";
#else
  report.cuda_status = "built without the CUDA toolkit";
#endif
  return report;
}

}  // namespace muongpt
