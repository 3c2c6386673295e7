// Host memory that the GPU reads from: page-locked ("pinned") when asked for
// and the CUDA runtime can give it, so host-to-device copies run at full DMA
// speed and cudaMemcpyAsync really is asynchronous; ordinary heap memory
// otherwise (CPU runs, CPU-only builds, machines without a GPU).
//
// HostAllocator<T>(pin) is a std::allocator replacement. Each block carries a
// 64-byte tag in front of the data that records how it was allocated, so any
// allocator instance can free any block (the allocators compare equal) and a
// failed pinned allocation silently falls back to the heap.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <vector>

namespace muongpt {

namespace host_memory {
// bytes of the data area; `pin`: try page-locked memory first.
void* allocate(size_t bytes, bool pin);
void release(void* data) noexcept;
// Whether `data` (from allocate) is page-locked.
bool is_pinned(const void* data) noexcept;
// Whether this process can get page-locked memory (CUDA build and a visible GPU).
bool pinning_available() noexcept;
}  // namespace host_memory

template <class T>
class HostAllocator {
 public:
  using value_type = T;
  using is_always_equal = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;

  explicit HostAllocator(bool pin = false) noexcept : pin_(pin) {}
  template <class U>
  HostAllocator(const HostAllocator<U>& other) noexcept : pin_(other.pin()) {}

  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T) - 64) throw std::bad_array_new_length();
    return static_cast<T*>(host_memory::allocate(n * sizeof(T), pin_));
  }
  void deallocate(T* p, size_t) noexcept { host_memory::release(p); }
  bool pin() const noexcept { return pin_; }

  template <class U>
  bool operator==(const HostAllocator<U>&) const noexcept {
    return true;
  }

 private:
  bool pin_;
};

template <class T>
using HostVector = std::vector<T, HostAllocator<T>>;

}  // namespace muongpt
