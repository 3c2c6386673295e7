// What compute devices this build and machine offer.
#pragma once

#include <string>
#include <vector>

namespace muongpt {

struct GpuInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  double memory_gb = 0;
};

struct DeviceReport {
  bool cuda_built = false;        // compiled with the CUDA toolkit
  bool cuda_backend = false;      // the CUDA training backend is available
  std::string cuda_status;        // why no GPU is usable, when none is
  std::vector<GpuInfo> gpus;
};

DeviceReport detect_devices();

}  // namespace muongpt
