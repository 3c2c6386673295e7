// Fused softcap + cross-entropy forward/backward: see softcap_ce.cuh.
#include "kernels/cuda/softcap_ce.cuh"

#include <cmath>

namespace muongpt::gpu {

namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ float softcap(float z, float cap) { return cap > 0.0f ? cap * tanhf(z / cap) : z; }

// Running (max, sum of exp(x - max)) of a set of values.
struct MaxSum {
  float m;
  float s;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.0f};  // both empty
  const float sa = a.m == -INFINITY ? 0.0f : a.s * expf(a.m - m);
  const float sb = b.m == -INFINITY ? 0.0f : b.s * expf(b.m - m);
  return {m, sa + sb};
}

__device__ __forceinline__ void add_value(MaxSum& acc, float x) {
  if (x > acc.m) {
    acc.s = (acc.m == -INFINITY ? 0.0f : acc.s * expf(acc.m - x)) + 1.0f;
    acc.m = x;
  } else {
    acc.s += expf(x - acc.m);
  }
}

// Block-wide combine in a fixed tree; the result is returned to thread 0.
__device__ MaxSum block_combine(MaxSum v) {
  __shared__ MaxSum warp_results[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    MaxSum other{__shfl_down_sync(kFullMask, v.m, offset), __shfl_down_sync(kFullMask, v.s, offset)};
    v = combine(v, other);
  }
  if (lane == 0) warp_results[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? warp_results[lane] : MaxSum{-INFINITY, 0.0f};
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      MaxSum other{__shfl_down_sync(kFullMask, v.m, offset), __shfl_down_sync(kFullMask, v.s, offset)};
      v = combine(v, other);
    }
  }
  return v;
}

__global__ void softcap_ce_forward_kernel(float* losses, float* lse_out, const bf16* logits, const int32_t* targets,
                                          int Vp, int V, float cap, bool vec) {
  const size_t row = blockIdx.x;
  const bf16* z = logits + row * Vp;
  MaxSum acc{-INFINITY, 0.0f};
  for (int j = threadIdx.x * 8; j < V; j += blockDim.x * 8) {
    const int count = min(8, V - j);
    float v[8];
    load_upto8(z + j, count, vec, v);
#pragma unroll
    for (int k = 0; k < 8; ++k)
      if (k < count) add_value(acc, softcap(v[k], cap));
  }
  const MaxSum total = block_combine(acc);
  if (threadIdx.x == 0) {
    const float lse = total.m + logf(total.s);
    const int target = targets[row];
    const bool valid = target >= 0 && target < V;
    lse_out[row] = lse;
    losses[row] = valid ? lse - softcap(bf2f(z[target]), cap) : NAN;
  }
}

__global__ void softcap_ce_backward_kernel(bf16* dlogits, const bf16* logits, const float* lse_saved,
                                           const int32_t* targets, float dloss, int Vp, int V, float cap, bool vec) {
  const size_t row = blockIdx.x;
  const bf16* z = logits + row * Vp;
  bf16* dz = dlogits + row * Vp;
  const float lse = lse_saved[row];
  const int target = targets[row];  // an invalid target matches no column
  for (int j = threadIdx.x * 8; j < Vp; j += blockDim.x * 8) {
    const int count = min(8, Vp - j);
    float v[8];
    load_upto8(z + j, count, vec, v);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const int col = j + k;
      float grad = 0.0f;
      if (col < V) {
        const float indicator = col == target ? 1.0f : 0.0f;
        if (cap > 0.0f) {
          const float th = tanhf(v[k] / cap);
          grad = (expf(cap * th - lse) - indicator) * (1.0f - th * th) * dloss;
        } else {
          grad = (expf(v[k] - lse) - indicator) * dloss;
        }
      }
      v[k] = grad;
    }
    store_upto8(dz + j, count, vec, v);
  }
}

void check(const char* op, int N, int Vp, int V) {
  require_arg(N >= 0, op, "negative number of rows");
  require_arg(V >= 1 && V <= Vp, op, "need 1 <= V <= Vp");
}

}  // namespace

void softcap_ce_forward(float* losses, float* lse, const bf16* logits, const int32_t* targets, int N, int Vp, int V,
                        float cap, cudaStream_t stream) {
  check("softcap_ce_forward", N, Vp, V);
  if (N == 0) return;
  const bool vec = Vp % 8 == 0 && aligned16(logits);
  softcap_ce_forward_kernel<<<static_cast<unsigned>(N), kThreads, 0, stream>>>(losses, lse, logits, targets, Vp, V,
                                                                               cap, vec);
  CUDA_CHECK_LAUNCH("softcap_ce_forward_kernel");
}

void softcap_ce_backward(bf16* dlogits, const bf16* logits, const float* lse, const int32_t* targets, float dloss,
                         int N, int Vp, int V, float cap, cudaStream_t stream) {
  check("softcap_ce_backward", N, Vp, V);
  if (N == 0) return;
  const bool vec = Vp % 8 == 0 && aligned16(logits) && aligned16(dlogits);
  softcap_ce_backward_kernel<<<static_cast<unsigned>(N), kThreads, 0, stream>>>(dlogits, logits, lse, targets, dloss,
                                                                                Vp, V, cap, vec);
  CUDA_CHECK_LAUNCH("softcap_ce_backward_kernel");
}

}  // namespace muongpt::gpu
