// Helpers for the GPU kernel tests: device buffers, bf16 rounding on the host,
// comparisons with the CPU reference and bit-exact determinism checks.
//
// The pattern of every test: draw random inputs, round them to bf16 on the
// host, run the CPU reference (fp32) on the rounded values and the kernel on
// the same bf16 bits, then compare. Tolerances:
//   bf16 outputs   |gpu - ref| <= 1e-2 |ref| + 1e-4 max|ref|   (bf16 keeps 8 bits: 2^-9 rounding)
//   fp32 outputs   stated per test (1e-5 relative where only the summation order differs)
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "test_support.h"

namespace muongpt::gpu_test {

using gpu::bf16;

// float -> bf16 bits, round to nearest even (as __float2bfloat16_rn).
inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_value(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline float round_bf16(float f) { return bf16_value(bf16_bits(f)); }

inline std::vector<float> round_bf16(std::vector<float> v) {
  for (auto& x : v) x = round_bf16(x);
  return v;
}

// Uniform in [lo, hi), rounded to bf16.
inline std::vector<float> random_bf16(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  return round_bf16(test::random_vector<float>(n, seed, lo, hi));
}

inline std::vector<int32_t> random_ints(size_t n, uint64_t seed, int lo, int hi_exclusive) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> dist(lo, hi_exclusive - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

inline void sync() { CUDA_CHECK(cudaDeviceSynchronize()); }

// Owning device array of n elements of T (at least one element is allocated,
// so pointers are never null and are 256-byte aligned).
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n = 0) : n_(n) {
    CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), std::max<size_t>(n, 1) * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() == n_);
    if (n_) CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    sync();
    std::vector<T> host(n_);
    if (n_) CUDA_CHECK(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// bf16 device array with float host views (values rounded on upload).
class DeviceBf16 {
 public:
  explicit DeviceBf16(size_t n) : bits_(n) {}
  explicit DeviceBf16(const std::vector<float>& host) : bits_(host.size()) { upload(host); }
  bf16* get() const { return reinterpret_cast<bf16*>(bits_.get()); }
  size_t size() const { return bits_.size(); }
  void upload(const std::vector<float>& host) {
    std::vector<uint16_t> b(host.size());
    for (size_t i = 0; i < host.size(); ++i) b[i] = bf16_bits(host[i]);
    bits_.upload(b);
  }
  std::vector<float> download() const {
    const std::vector<uint16_t> b = bits_.download();
    std::vector<float> v(b.size());
    for (size_t i = 0; i < b.size(); ++i) v[i] = bf16_value(b[i]);
    return v;
  }
  std::vector<uint16_t> download_bits() const { return bits_.download(); }

 private:
  DeviceArray<uint16_t> bits_;
};

template <class V>
double max_abs(const V& v) {
  double m = 0;
  for (auto x : v) m = std::max(m, std::abs(static_cast<double>(x)));
  return m;
}

template <class V>
void require_finite(const V& v, const std::string& what) {
  size_t bad = v.size();
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(static_cast<double>(v[i]))) {
      bad = i;
      break;
    }
  INFO(what << ": non-finite value at index " << bad);
  REQUIRE(bad == v.size());
}

// |got - ref| <= rtol |ref| + atol_rel * max|ref| (+1e-30), and no NaN/Inf in got.
template <class A, class B>
void require_close_rel(const A& got, const B& ref, double rtol, double atol_rel, const std::string& what) {
  require_finite(got, what);
  test::require_close(got, ref, rtol, atol_rel * max_abs(ref) + 1e-30, what);
}

// The tolerance for bf16 outputs compared with the fp32 CPU reference.
template <class A, class B>
void require_close_bf16(const A& got, const B& ref, const std::string& what) {
  require_close_rel(got, ref, 1e-2, 1e-4, what);
}

// Per-element tolerance: |got - ref| <= rtol |ref| + atol[i].
inline void require_close_each(const std::vector<float>& got, const std::vector<double>& ref, double rtol,
                               const std::vector<double>& atol, const std::string& what) {
  require_finite(got, what);
  REQUIRE(got.size() == ref.size());
  REQUIRE(atol.size() == ref.size());
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double diff = std::abs(static_cast<double>(got[i]) - ref[i]);
    const double ratio = diff == 0 ? 0.0 : diff / (atol[i] + rtol * std::abs(ref[i]) + 1e-30);
    if (!(ratio <= worst)) {
      worst = std::isnan(ratio) ? INFINITY : ratio;
      worst_i = i;
    }
  }
  INFO(what << ": worst element " << worst_i << " got " << got[worst_i] << " expected " << ref[worst_i]
            << " (ratio " << worst << ")");
  REQUIRE(worst <= 1.0);
}

// Bitwise equality (determinism and exactly-defined outputs).
template <class T>
void require_same_bits(const std::vector<T>& a, const std::vector<T>& b, const std::string& what) {
  REQUIRE(a.size() == b.size());
  size_t first = a.size();
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      first = i;
      break;
    }
  INFO(what << ": first differing element " << first << " of " << a.size());
  REQUIRE(first == a.size());
}

}  // namespace muongpt::gpu_test
