// An owning device allocation of n elements of T (at least one element is
// allocated, so the pointer is never null), freed on destruction. For
// benchmarks and tools; the model and the optimizer carve their buffers out
// of arenas allocated once.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>

#include "kernels/cuda/common.cuh"

namespace muongpt {

template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) { CUDA_CHECK(cudaMalloc(&ptr_, sizeof(T) * std::max<size_t>(n, 1))); }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace muongpt
