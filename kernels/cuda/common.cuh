// Shared pieces of the CUDA kernels: error checking, bf16 <-> float, 16-byte
// packed loads, and deterministic warp/block reductions.
//
// Conventions of every kernel family in this folder:
//   - activations and their gradients are bf16 (__nv_bfloat16), all math and
//     accumulation is fp32 (double where a global sum needs it);
//   - saved statistics (rstd, mean, lse, losses) are fp32;
//   - parameter gradients are fp32 and accumulated (+=), like the CPU reference;
//   - no atomics in sums: every reduction runs in an order fixed by the sizes
//     alone (never by timing or the number of SMs), so reruns give the same bits;
//   - launchers return at once for empty inputs, throw std::invalid_argument for
//     impossible sizes and std::runtime_error (via CUDA_CHECK) for CUDA errors.
//
// The host half of this header (CUDA_CHECK, ceil_div, aligned16) also compiles
// with a plain C++ compiler, so tests and host code may include it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define MUONGPT_HOST_DEVICE __host__ __device__
#else
#define MUONGPT_HOST_DEVICE
#endif

namespace muongpt::gpu {

using bf16 = __nv_bfloat16;

[[noreturn]] inline void cuda_fail(cudaError_t err, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error: ") + expr + " failed at " + file + ":" + std::to_string(line) +
                           ": " + cudaGetErrorString(err));
}

inline void cuda_check(cudaError_t err, const char* expr, const char* file, int line) {
  if (err != cudaSuccess) cuda_fail(err, expr, file, line);
}

// Throws std::runtime_error naming the expression, file:line and the CUDA error.
#define CUDA_CHECK(expr) ::muongpt::gpu::cuda_check((expr), #expr, __FILE__, __LINE__)

// Call right after a kernel launch: reports a bad launch configuration (or an
// earlier asynchronous error) with the kernel's name. Does not synchronise.
#define CUDA_CHECK_LAUNCH(kernel_name) \
  ::muongpt::gpu::cuda_check(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__)

template <class A, class B>
MUONGPT_HOST_DEVICE constexpr A ceil_div(A a, B b) {
  return static_cast<A>((a + static_cast<A>(b) - 1) / static_cast<A>(b));
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

inline void require_arg(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": " + what);
}

// Launches a no-op kernel on the current device and waits for it. Returns ""
// when kernels of this build run here, else the reason (no device, a device
// this build has no code for, ...).
std::string device_probe();

}  // namespace muongpt::gpu

#if defined(__CUDACC__)

namespace muongpt::gpu {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float bf2f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ bf16 f2bf(float x) { return __float2bfloat16_rn(x); }

// 8 bf16 = 16 bytes: one vectorised load or store.
struct alignas(16) Bf16x8 {
  bf16 v[8];
};

__device__ __forceinline__ void load8(const bf16* p, float (&out)[8]) {
  const int4 raw = *reinterpret_cast<const int4*>(p);
  Bf16x8 pack;
  static_assert(sizeof(pack) == sizeof(raw));
  memcpy(&pack, &raw, sizeof(raw));
#pragma unroll
  for (int k = 0; k < 8; ++k) out[k] = bf2f(pack.v[k]);
}

__device__ __forceinline__ void store8(bf16* p, const float (&in)[8]) {
  Bf16x8 pack;
#pragma unroll
  for (int k = 0; k < 8; ++k) pack.v[k] = f2bf(in[k]);
  int4 raw;
  memcpy(&raw, &pack, sizeof(raw));
  *reinterpret_cast<int4*>(p) = raw;
}

// Loads elements [0, count) of p into out (count <= 8), zero-filling the rest;
// one 16-byte load when `vec` (p 16-byte aligned) and count == 8.
__device__ __forceinline__ void load_upto8(const bf16* p, int count, bool vec, float (&out)[8]) {
  if (vec && count == 8) {
    load8(p, out);
  } else {
#pragma unroll
    for (int k = 0; k < 8; ++k) out[k] = k < count ? bf2f(p[k]) : 0.0f;
  }
}

__device__ __forceinline__ void store_upto8(bf16* p, int count, bool vec, const float (&in)[8]) {
  if (vec && count == 8) {
    store8(p, in);
  } else {
#pragma unroll
    for (int k = 0; k < 8; ++k)
      if (k < count) p[k] = f2bf(in[k]);
  }
}

// Butterfly sum: every lane ends with the same bits (a+b == b+a exactly), in
// an order fixed by the lane numbering.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum over the block, returned to every thread. Every thread of the block must
// call it (it synchronises); blockDim.x must be a multiple of 32, <= 1024.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T warp_totals[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // a previous call may still be reading warp_totals
  if (lane == 0) warp_totals[warp] = v;
  __syncthreads();
  T total = lane < warps ? warp_totals[lane] : T(0);
  return warp_sum(total);
}

}  // namespace muongpt::gpu

#endif  // __CUDACC__
