// Causal attention forward/backward: see attention.cuh for math, layout and algorithm.
#include "kernels/cuda/attention.cuh"

#include "kernels/cuda/attention_mask.cuh"
#include "kernels/cuda/attention_mma.cuh"

#include <string>

namespace muongpt::gpu {

namespace {

using namespace attention_detail;

// The three tile kernels share one thread layout. A block has 4 warps and
// works on one tile of kTile positions of one (b, h) (queries in the forward
// and dq kernels, keys in the dk/dv kernel): warp w owns rows
// [w * kRowsPerWarp, (w + 1) * kRowsPerWarp) of it. The block walks tiles of
// kTile positions of the other kind, and lane i stands for row i of that tile.
// Each lane also owns head-dim columns lane, lane + 32, ... of the outputs.
// Scores of (own row r, other row lane) live in registers; a row of scores is
// reduced across the warp with shuffles (fixed butterfly order), and a
// probability row is broadcast lane by lane (__shfl_sync) to accumulate P V.
constexpr int kTile = 32;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = kTile / kWarps;            // 8
constexpr int kColsPerLane = kAttentionMaxHeadDim / 32;  // 4
constexpr int kDeltaThreads = 128;
constexpr int kFinishThreads = 128;
static_assert(kRowsPerWarp * kWarps == kTile && kTile == 32, "one lane per row of the other tile");
static_assert(kRowsPerWarp <= 32, "visibility is a 32-bit mask per lane");

// Copies positions [pos0, pos0 + kTile) of one head into shared memory as
// fp32, row r at dst + r * stride; positions past T become zeros (so stale or
// uninitialised values never meet a zero probability: 0 * NaN = NaN). src
// points at element (b, 0, h, 0); consecutive positions are pos_stride apart.
__device__ void load_tile(float* dst, int stride, const bf16* src, size_t pos_stride, int pos0, int T, int D) {
  for (int i = threadIdx.x; i < kTile * D; i += blockDim.x) {
    const int r = i / D, d = i - r * D;
    const int t = pos0 + r;
    dst[r * stride + d] = t < T ? bf2f(src[static_cast<size_t>(t) * pos_stride + d]) : 0.0f;
  }
}

// Row stride of a tile that lane i reads along row i: odd, so the 32 lanes
// reading column d of rows 0..31 hit 32 different banks.
__host__ __device__ int lane_row_stride(int D) { return D | 1; }

// The barrier before a block loads its next tile (it also keeps the previous
// tile alive until every warp is done with it). With a document mask it
// returns whether any thread's rows see the tile (block-uniform), so that a
// tile no one sees is skipped; without one every tile in range is needed (the
// keys that queries [t0, t1] see under a token or block window form one run,
// [first_visible_key(t0), t1], and likewise the queries that see keys
// [j0, j1] form [j0, last_query_seeing(j1)]; the walks cover exactly those).
__device__ __forceinline__ bool sync_tile_needed(unsigned visible, bool doc_mask) {
  if (doc_mask) return __syncthreads_or(visible != 0) != 0;
  __syncthreads();
  return true;
}

// The two scores of the backward for this warp's rows r against the lane's
// row of the other tile: s[r] = own_a[row0 + r] . lane_a and
// dp[r] = own_b[row0 + r] . lane_b (own rows D apart).
__device__ __forceinline__ void backward_row_dots(float (&s)[kRowsPerWarp], float (&dp)[kRowsPerWarp],
                                                  const float* own_a, const float* own_b, const float* lane_a,
                                                  const float* lane_b, int row0, int D) {
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) s[r] = dp[r] = 0.0f;
  for (int d = 0; d < D; ++d) {
    const float ad = lane_a[d], bd = lane_b[d];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      s[r] += own_a[(row0 + r) * D + d] * ad;
      dp[r] += own_b[(row0 + r) * D + d] * bd;
    }
  }
}

// Forward. Grid: one block per (query tile, b*h), tiles with the most keys
// first. Shared: Q tile [kTile][D], K tile [kTile][D|1], V tile [kTile][D].
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(bf16* out, float* lse, unsigned* max_key, const bf16* q, const bf16* k, const bf16* v,
                             int B, int T, int H, int D, float scale, int window, int window_block,
                             const int32_t* doc_ids, int tiles) {
  extern __shared__ float smem[];
  const auto [tile, bh, b, h, pos_stride, head, doc] =
      head_tile(B, T, H, D, doc_ids, tiles, /*last_tile_first=*/true);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kstride = lane_row_stride(D);
  float* sQ = smem;                  // [kTile][D], read as broadcasts
  float* sK = sQ + kTile * D;        // [kTile][D|1], lane j reads row j
  float* sV = sK + kTile * kstride;  // [kTile][D], lane reads its columns
  const Mask mask{window, doc, window_block};

  const int q0 = tile * kTile;
  const int q_last = min(T, q0 + kTile) - 1;
  const int row0 = warp * kRowsPerWarp;  // this warp's rows are queries q0 + row0 + r
  load_tile(sQ, D, q + head, pos_stride, q0, T, D);

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kColsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;  // running max of the row's allowed logits
    l[r] = 0.0f;       // running sum of exp(s - m)
#pragma unroll
    for (int c = 0; c < kColsPerLane; ++c) acc[r][c] = 0.0f;  // running sum of exp(s - m) v
  }

  for (int k0 = first_visible_key(q0, window, window_block) / kTile * kTile; k0 <= q_last; k0 += kTile) {
    const int j = k0 + lane;
    unsigned visible = 0;  // bit r: query q0 + row0 + r may see key j
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int t = q0 + row0 + r;
      if (t < T && mask.allowed(t, j)) visible |= 1u << r;
    }
    if (!sync_tile_needed(visible, doc_ids != nullptr)) continue;  // no query of the block sees this tile
    load_tile(sK, kstride, k + head, pos_stride, k0, T, D);
    load_tile(sV, D, v + head, pos_stride, k0, T, D);
    __syncthreads();

    float s[kRowsPerWarp];  // q_{row0+r} . k_j
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = 0.0f;
    const float* kj = sK + lane * kstride;
    for (int d = 0; d < D; ++d) {
      const float kd = kj[d];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) s[r] += sQ[(row0 + r) * D + d] * kd;
    }

    const int keys = min(kTile, T - k0);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const bool ok = (visible >> r) & 1u;
      if (!__any_sync(kFullMask, ok)) continue;  // the row sees no key of this tile (warp-uniform)
      const float sr = ok ? s[r] * scale : -INFINITY;
      const float m_new = fmaxf(m[r], warp_max(sr));
      if (m_new == -INFINITY) continue;  // only -inf logits so far (warp-uniform): nothing to add
      const float p = ok ? expf(sr - m_new) : 0.0f;
      const float alpha = expf(m[r] - m_new);  // 0 while m[r] == -inf
      l[r] = l[r] * alpha + warp_sum(p);
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < kColsPerLane; ++c) acc[r][c] *= alpha;
      for (int jj = 0; jj < keys; ++jj) {
        const float pj = __shfl_sync(kFullMask, p, jj);
        const float* vrow = sV + jj * D;
#pragma unroll
        for (int c = 0; c < kColsPerLane; ++c) {
          const int d = lane + 32 * c;
          if (d < D) acc[r][c] += pj * vrow[d];
        }
      }
    }
  }

  float warp_max_logit = -INFINITY;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = q0 + row0 + r;
    if (t >= T) continue;
    warp_max_logit = fmaxf(warp_max_logit, m[r]);
    const bool any = l[r] > 0.0f;  // false only for a query that sees no key
    const float inv = any ? 1.0f / l[r] : 0.0f;
    bf16* o = out + head + static_cast<size_t>(t) * pos_stride;
#pragma unroll
    for (int c = 0; c < kColsPerLane; ++c) {
      const int d = lane + 32 * c;
      if (d < D) o[d] = f2bf(acc[r][c] * inv);
    }
    if (lane == 0) lse[static_cast<size_t>(bh) * T + t] = any ? m[r] + logf(l[r]) : -INFINITY;
  }
  if (max_key && lane == 0 && warp_max_logit > -INFINITY) atomicMax(max_key + h, ordered_key(warp_max_logit));
}

// Decodes the ordered keys of max_logit in place (key 0: no logit, -inf).
__global__ void max_logit_finish_kernel(float* max_logit, int H) {
  const int h = blockIdx.x * blockDim.x + threadIdx.x;
  if (h >= H) return;
  const unsigned key = reinterpret_cast<const unsigned*>(max_logit)[h];
  max_logit[h] = from_ordered_key(key);
}

// delta[b, h, t] = dout . out over the head dim (the forward's bf16 out, as in
// FlashAttention). One warp per (b, t, h) row.
__global__ void attention_delta_kernel(float* delta, const bf16* dout, const bf16* out, int B, int T, int H, int D) {
  const size_t row = static_cast<size_t>(blockIdx.x) * (kDeltaThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= static_cast<size_t>(B) * T * H) return;  // the whole warp leaves together
  const bf16* g = dout + row * D;
  const bf16* o = out + row * D;
  float sum = 0.0f;
  for (int d = lane; d < D; d += 32) sum += bf2f(g[d]) * bf2f(o[d]);
  sum = warp_sum(sum);
  if (lane == 0) {
    const int h = static_cast<int>(row % H);
    const size_t bt = row / H;
    const int t = static_cast<int>(bt % T);
    const size_t b = bt / T;
    delta[(b * H + h) * T + t] = sum;
  }
}

// dk, dv. Grid: one block per (key tile, b*h), tiles with the most queries
// first. The warps own key rows; lane i stands for query q0 + i. Shared: K and
// V tiles [kTile][D] (broadcasts), Q and dout tiles [kTile][D|1], lse and
// delta of the query tile.
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkdv_kernel(bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* delta,
                                   const bf16* q, const bf16* k, const bf16* v, int B, int T, int H, int D,
                                   float scale, int window, int window_block, const int32_t* doc_ids) {
  extern __shared__ float smem[];
  const auto [tile, bh, b, h, pos_stride, head, doc] =
      head_tile(B, T, H, D, doc_ids, 0, /*last_tile_first=*/false);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int qstride = lane_row_stride(D);
  float* sK = smem;                      // [kTile][D]
  float* sV = sK + kTile * D;            // [kTile][D]
  float* sQ = sV + kTile * D;            // [kTile][D|1]
  float* sdO = sQ + kTile * qstride;     // [kTile][D|1]
  float* sLse = sdO + kTile * qstride;   // [kTile]
  float* sDelta = sLse + kTile;          // [kTile]
  const float* lse_bh = lse + static_cast<size_t>(bh) * T;
  const float* delta_bh = delta + static_cast<size_t>(bh) * T;
  const Mask mask{window, doc, window_block};

  const int k0 = tile * kTile;
  const int k_last = min(T, k0 + kTile) - 1;
  const int row0 = warp * kRowsPerWarp;  // this warp's rows are keys k0 + row0 + r
  load_tile(sK, D, k + head, pos_stride, k0, T, D);
  load_tile(sV, D, v + head, pos_stride, k0, T, D);

  float dk_acc[kRowsPerWarp][kColsPerLane], dv_acc[kRowsPerWarp][kColsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int c = 0; c < kColsPerLane; ++c) dk_acc[r][c] = dv_acc[r][c] = 0.0f;

  // Causal: queries before k0 see none of these keys. k0 is a multiple of kTile.
  const int q_last = last_query_seeing(k_last, T, window, window_block);
  for (int q0 = k0; q0 <= q_last; q0 += kTile) {
    const int t = q0 + lane;
    unsigned visible = 0;  // bit r: query t may see key k0 + row0 + r
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
      if (t < T && mask.allowed(t, k0 + row0 + r)) visible |= 1u << r;
    if (!sync_tile_needed(visible, doc_ids != nullptr)) continue;
    load_tile(sQ, qstride, q + head, pos_stride, q0, T, D);
    load_tile(sdO, qstride, dout + head, pos_stride, q0, T, D);
    for (int i = threadIdx.x; i < kTile; i += blockDim.x) {
      const int ti = q0 + i;
      sLse[i] = ti < T ? lse_bh[ti] : -INFINITY;
      sDelta[i] = ti < T ? delta_bh[ti] : 0.0f;
    }
    __syncthreads();

    float s[kRowsPerWarp], dp[kRowsPerWarp];  // k_{row0+r} . q_t and v_{row0+r} . dout_t
    backward_row_dots(s, dp, sK, sV, sQ + lane * qstride, sdO + lane * qstride, row0, D);

    const float lse_t = sLse[lane], delta_t = sDelta[lane];
    const int queries = min(kTile, T - q0);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const bool ok = ((visible >> r) & 1u) && lse_t > -INFINITY;
      if (!__any_sync(kFullMask, ok)) continue;  // warp-uniform
      const float p = ok ? expf(s[r] * scale - lse_t) : 0.0f;
      const float ds = p * (dp[r] - delta_t);
      for (int ii = 0; ii < queries; ++ii) {
        const float pi = __shfl_sync(kFullMask, p, ii);
        const float dsi = __shfl_sync(kFullMask, ds, ii);
        const float* qrow = sQ + ii * qstride;
        const float* grow = sdO + ii * qstride;
#pragma unroll
        for (int c = 0; c < kColsPerLane; ++c) {
          const int d = lane + 32 * c;
          if (d < D) {
            dv_acc[r][c] += pi * grow[d];
            dk_acc[r][c] += dsi * qrow[d];
          }
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int j = k0 + row0 + r;
    if (j >= T) continue;
    const size_t o = head + static_cast<size_t>(j) * pos_stride;
#pragma unroll
    for (int c = 0; c < kColsPerLane; ++c) {
      const int d = lane + 32 * c;
      if (d < D) {
        dk[o + d] = f2bf(scale * dk_acc[r][c]);
        dv[o + d] = f2bf(dv_acc[r][c]);
      }
    }
  }
}

// dq. Grid: one block per (query tile, b*h), tiles with the most keys first.
// The warps own query rows; lane j stands for key k0 + j. Shared: Q and dout
// tiles [kTile][D] (broadcasts), K and V tiles [kTile][D|1].
__global__ void __launch_bounds__(kThreads)
    attention_backward_dq_kernel(bf16* dq, const bf16* dout, const float* lse, const float* delta, const bf16* q,
                                 const bf16* k, const bf16* v, int B, int T, int H, int D, float scale, int window,
                                 int window_block, const int32_t* doc_ids, int tiles) {
  extern __shared__ float smem[];
  const auto [tile, bh, b, h, pos_stride, head, doc] =
      head_tile(B, T, H, D, doc_ids, tiles, /*last_tile_first=*/true);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kstride = lane_row_stride(D);
  float* sQ = smem;                  // [kTile][D]
  float* sdO = sQ + kTile * D;       // [kTile][D]
  float* sK = sdO + kTile * D;       // [kTile][D|1]
  float* sV = sK + kTile * kstride;  // [kTile][D|1]
  const Mask mask{window, doc, window_block};

  const int q0 = tile * kTile;
  const int q_last = min(T, q0 + kTile) - 1;
  const int row0 = warp * kRowsPerWarp;  // this warp's rows are queries q0 + row0 + r
  load_tile(sQ, D, q + head, pos_stride, q0, T, D);
  load_tile(sdO, D, dout + head, pos_stride, q0, T, D);

  float lse_r[kRowsPerWarp], delta_r[kRowsPerWarp], acc[kRowsPerWarp][kColsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = q0 + row0 + r;
    lse_r[r] = t < T ? lse[static_cast<size_t>(bh) * T + t] : -INFINITY;
    delta_r[r] = t < T ? delta[static_cast<size_t>(bh) * T + t] : 0.0f;
#pragma unroll
    for (int c = 0; c < kColsPerLane; ++c) acc[r][c] = 0.0f;
  }

  for (int k0 = first_visible_key(q0, window, window_block) / kTile * kTile; k0 <= q_last; k0 += kTile) {
    const int j = k0 + lane;
    unsigned visible = 0;  // bit r: query q0 + row0 + r may see key j
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int t = q0 + row0 + r;
      if (t < T && mask.allowed(t, j)) visible |= 1u << r;
    }
    if (!sync_tile_needed(visible, doc_ids != nullptr)) continue;
    load_tile(sK, kstride, k + head, pos_stride, k0, T, D);
    load_tile(sV, kstride, v + head, pos_stride, k0, T, D);
    __syncthreads();

    float s[kRowsPerWarp], dp[kRowsPerWarp];  // q_{row0+r} . k_j and dout_{row0+r} . v_j
    backward_row_dots(s, dp, sQ, sdO, sK + lane * kstride, sV + lane * kstride, row0, D);

    const int keys = min(kTile, T - k0);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const bool ok = ((visible >> r) & 1u) && lse_r[r] > -INFINITY;
      if (!__any_sync(kFullMask, ok)) continue;  // warp-uniform
      const float p = ok ? expf(s[r] * scale - lse_r[r]) : 0.0f;
      const float ds = p * (dp[r] - delta_r[r]);
      for (int jj = 0; jj < keys; ++jj) {
        const float dsj = __shfl_sync(kFullMask, ds, jj);
        const float* krow = sK + jj * kstride;
#pragma unroll
        for (int c = 0; c < kColsPerLane; ++c) {
          const int d = lane + 32 * c;
          if (d < D) acc[r][c] += dsj * krow[d];
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = q0 + row0 + r;
    if (t >= T) continue;
    bf16* o = dq + head + static_cast<size_t>(t) * pos_stride;
#pragma unroll
    for (int c = 0; c < kColsPerLane; ++c) {
      const int d = lane + 32 * c;
      if (d < D) o[d] = f2bf(scale * acc[r][c]);
    }
  }
}

size_t forward_smem_bytes(int D) { return sizeof(float) * kTile * (2 * D + lane_row_stride(D)); }
size_t dq_smem_bytes(int D) { return sizeof(float) * kTile * (2 * D + 2 * lane_row_stride(D)); }
size_t dkdv_smem_bytes(int D) { return sizeof(float) * kTile * (2 * D + 2 * lane_row_stride(D) + 2); }

// Checks the sizes; returns the number of blocks of the tile kernels (0 when
// there is nothing to compute).
unsigned check_and_count_blocks(const char* op, int B, int T, int H, int D, int window, int window_block) {
  require_arg(B >= 0 && T >= 0 && H >= 0, op, "negative size");
  require_arg(D >= 2 && D <= kAttentionMaxHeadDim && D % 2 == 0, op,
              "head dim D must be even and in [2, " + std::to_string(kAttentionMaxHeadDim) + "], got " +
                  std::to_string(D));
  require_arg(window >= 0, op, "window must be >= 0 (0 = full causal), got " + std::to_string(window));
  require_arg(window_block >= 0, op,
              "window_block must be >= 0 (0 = token windows), got " + std::to_string(window_block));
  require_arg(window_block == 0 || window % window_block == 0, op,
              "window " + std::to_string(window) + " is not a multiple of window_block " +
                  std::to_string(window_block));
  const size_t rows = static_cast<size_t>(B) * T * H;
  require_arg(rows * D < (size_t(1) << 40), op, "tensor too large");
  const size_t blocks = static_cast<size_t>(ceil_div(T, kTile)) * B * H;
  require_arg(blocks < (size_t(1) << 31), op, "too many (b, h, tile) blocks");
  return static_cast<unsigned>(blocks);
}

template <class Kernel>
void allow_smem(Kernel* kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// Whether the tensor-core kernels run for this call (see AttentionKernel).
bool use_tensor_cores(AttentionKernel kernel, const char* op, int D, std::initializer_list<const void*> tensors) {
  if (kernel == AttentionKernel::kCudaCores) return false;
  const bool head_dim_ok = mma_head_dim_supported(D);
  const bool aligned = mma_pointers_aligned(tensors);
  if (kernel == AttentionKernel::kTensorCores) {
    require_arg(head_dim_ok, op, "the tensor-core kernel needs head dim 64 or 128, got " + std::to_string(D));
    require_arg(aligned, op, "the tensor-core kernel needs 16-byte aligned q, k, v and outputs");
    return true;
  }
  return kTensorCoreAttentionVerified && head_dim_ok && aligned;
}

}  // namespace

const char* attention_kernel_name(AttentionKernel kernel) {
  switch (kernel) {
    case AttentionKernel::kAuto: return "auto";
    case AttentionKernel::kCudaCores: return "cuda_cores";
    case AttentionKernel::kTensorCores: return "tensor_cores";
  }
  return "?";
}

AttentionKernel parse_attention_kernel(const std::string& name) {
  for (AttentionKernel k : {AttentionKernel::kAuto, AttentionKernel::kCudaCores, AttentionKernel::kTensorCores})
    if (name == attention_kernel_name(k)) return k;
  throw std::invalid_argument("attention kernel '" + name + "': expected auto, cuda_cores or tensor_cores");
}

void attention_forward(bf16* out, float* lse, float* max_logit, const bf16* q, const bf16* k, const bf16* v,
                       int B, int T, int H, int D, float scale, int window, int window_block,
                       const int32_t* doc_ids, cudaStream_t stream, AttentionKernel kernel) {
  const char* op = "attention_forward";
  const unsigned blocks = check_and_count_blocks(op, B, T, H, D, window, window_block);
  if (H == 0) return;
  if (max_logit) CUDA_CHECK(cudaMemsetAsync(max_logit, 0, sizeof(float) * H, stream));  // all keys 0: -inf
  if (blocks > 0) {
    require_arg(out && lse && q && k && v, op, "out, lse, q, k and v are required");
    unsigned* max_key = reinterpret_cast<unsigned*>(max_logit);
    if (use_tensor_cores(kernel, op, D, {out, q, k, v})) {
      attention_forward_mma(out, lse, max_key, q, k, v, B, T, H, D, scale, window, window_block, doc_ids, stream);
    } else {
      const size_t smem = forward_smem_bytes(D);
      allow_smem(attention_forward_kernel, smem);
      attention_forward_kernel<<<blocks, kThreads, smem, stream>>>(out, lse, max_key, q, k, v, B, T, H, D, scale,
                                                                   window, window_block, doc_ids, ceil_div(T, kTile));
      CUDA_CHECK_LAUNCH("attention_forward_kernel");
    }
  }
  if (max_logit) {
    max_logit_finish_kernel<<<ceil_div(H, kFinishThreads), kFinishThreads, 0, stream>>>(max_logit, H);
    CUDA_CHECK_LAUNCH("max_logit_finish_kernel");
  }
}

size_t attention_backward_scratch_floats(int B, int T, int H) {
  if (B <= 0 || T <= 0 || H <= 0) return 0;
  return static_cast<size_t>(B) * H * T;
}

void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const float* lse,
                        const bf16* q, const bf16* k, const bf16* v, int B, int T, int H, int D, float scale,
                        int window, int window_block, const int32_t* doc_ids, float* scratch, cudaStream_t stream,
                        AttentionKernel kernel) {
  const char* op = "attention_backward";
  const unsigned blocks = check_and_count_blocks(op, B, T, H, D, window, window_block);
  if (blocks == 0) return;
  require_arg(dq && dk && dv && dout && out && lse && q && k && v, op,
              "dq, dk, dv, dout, out, lse, q, k and v are required");
  require_arg(scratch != nullptr, op, "scratch is required (attention_backward_scratch_floats)");
  float* delta = scratch;  // (B, H, T)
  const bool tensor_cores = use_tensor_cores(kernel, op, D, {dq, dk, dv, dout, q, k, v});

  const size_t rows = static_cast<size_t>(B) * T * H;
  const size_t delta_blocks = ceil_div(rows, static_cast<size_t>(kDeltaThreads / 32));
  require_arg(delta_blocks < (size_t(1) << 31), op, "too many rows");
  attention_delta_kernel<<<static_cast<unsigned>(delta_blocks), kDeltaThreads, 0, stream>>>(delta, dout, out, B, T,
                                                                                            H, D);
  CUDA_CHECK_LAUNCH("attention_delta_kernel");

  if (tensor_cores) {
    attention_backward_mma(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, D, scale, window, window_block, doc_ids,
                           stream);
    return;
  }
  const size_t dkdv_smem = dkdv_smem_bytes(D);
  allow_smem(attention_backward_dkdv_kernel, dkdv_smem);
  attention_backward_dkdv_kernel<<<blocks, kThreads, dkdv_smem, stream>>>(dk, dv, dout, lse, delta, q, k, v, B, T, H,
                                                                          D, scale, window, window_block, doc_ids);
  CUDA_CHECK_LAUNCH("attention_backward_dkdv_kernel");

  const size_t dq_smem = dq_smem_bytes(D);
  allow_smem(attention_backward_dq_kernel, dq_smem);
  attention_backward_dq_kernel<<<blocks, kThreads, dq_smem, stream>>>(dq, dout, lse, delta, q, k, v, B, T, H, D,
                                                                      scale, window, window_block, doc_ids,
                                                                      ceil_div(T, kTile));
  CUDA_CHECK_LAUNCH("attention_backward_dq_kernel");
}

}  // namespace muongpt::gpu
