#include "util/host_buffer.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if MUONGPT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace muongpt::host_memory {

namespace {

constexpr size_t kTagBytes = 64;  // keeps the data 64-byte aligned
constexpr uint32_t kHeap = 0x48454150;    // "HEAP"
constexpr uint32_t kPinned = 0x50494e4e;  // "PINN"

uint32_t tag_of(const void* data) {
  uint32_t tag = 0;
  std::memcpy(&tag, static_cast<const char*>(data) - kTagBytes, sizeof(tag));
  return tag;
}

}  // namespace

bool pinning_available() noexcept {
#if MUONGPT_HAVE_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error of a machine without a driver or GPU
    return false;
  }
  return count > 0;
#else
  return false;
#endif
}

void* allocate(size_t bytes, bool pin) {
  void* block = nullptr;
  uint32_t tag = kHeap;
#if MUONGPT_HAVE_CUDA
  if (pin) {
    if (cudaHostAlloc(&block, bytes + kTagBytes, cudaHostAllocDefault) == cudaSuccess) {
      tag = kPinned;
    } else {
      cudaGetLastError();
      block = nullptr;
    }
  }
#else
  (void)pin;
#endif
  if (!block) {
    block = std::aligned_alloc(kTagBytes, (bytes + 2 * kTagBytes - 1) / kTagBytes * kTagBytes);
    if (!block) throw std::bad_alloc();
  }
  std::memcpy(block, &tag, sizeof(tag));
  return static_cast<char*>(block) + kTagBytes;
}

void release(void* data) noexcept {
  if (!data) return;
  void* block = static_cast<char*>(data) - kTagBytes;
#if MUONGPT_HAVE_CUDA
  if (tag_of(data) == kPinned) {
    cudaFreeHost(block);
    return;
  }
#endif
  std::free(block);
}

bool is_pinned(const void* data) noexcept { return data && tag_of(data) == kPinned; }

}  // namespace muongpt::host_memory
