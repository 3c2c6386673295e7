// Device helpers shared by the two attention implementations (attention.cu,
// CUDA cores; attention_mma.cu, tensor cores): the mask rule, the tile ranges
// it allows, and the order-preserving float keys of the per-head max logit.
// Internal to kernels/cuda; the public API is attention.cuh.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu::attention_detail {

// allowed(t, j) = j <= t and window_allows(t, j)
//                 and (doc == null or doc[t] == doc[j])
// window_allows(t, j) = window == 0                                (full causal)
//                       or t - j < window                          (block == 0: token windows)
//                       or floor(t/block) - floor(j/block) < window/block
//                                                                  (block > 0: whole blocks of keys;
//                                                                   window a multiple of block)
// For t, j >= 0, window_allows(t, j) only gets harder as t grows or j falls:
// over a rectangle of queries [t_min, t_max] x keys [j_min, j_max] every pair
// passes the window iff (t_max, j_min) does, and none does iff (t_min, j_max)
// does not. The tile kernels rely on this to skip or take whole tiles.
__device__ __forceinline__ bool window_allows(int t, int j, int window, int block) {
  if (window == 0) return true;
  return block > 0 ? t / block - j / block < window / block : t - j < window;
}

struct Mask {
  int window;          // 0 = full causal
  const int32_t* doc;  // doc ids of this batch row (T of them, global or shared memory), or null
  int block;           // 0 = token windows, else windows of whole blocks of this many positions

  // t, j: positions in [0, T). Reads doc[j] only when j <= t.
  __device__ bool allowed(int t, int j) const {
    return j <= t && window_allows(t, j, window, block) && (doc == nullptr || doc[t] == doc[j]);
  }
};

// First key any of the queries [t0, ...] may see, and last query that may see
// any of the keys [..., j1] (T - 1 without a window). With blocks (nb =
// window / block whole blocks): query t sees keys from block floor(t/b) - nb + 1
// on, so the first key is max(0, (floor(t0/b) - nb + 1) b); key j is seen up to
// block floor(j/b) + nb - 1, so the last query is min(T - 1, (floor(j1/b) + nb) b - 1).
// Both are monotone in t0 and j1, so they bound whole tiles of queries or keys.
__device__ inline int first_visible_key(int t0, int window, int block) {
  if (window == 0) return 0;
  if (block > 0) return max(0, (t0 / block - window / block + 1) * block);
  return max(0, t0 - (window - 1));
}
__device__ inline int last_query_seeing(int j1, int T, int window, int block) {
  if (window == 0) return T - 1;
  const long long last = block > 0 ? (static_cast<long long>(j1 / block) + window / block) * block - 1
                                   : static_cast<long long>(j1) + window - 1;
  return static_cast<int>(min(static_cast<long long>(T) - 1, last));
}

// Where a block of the tile kernels works: blockIdx.x = slot * (B * H) + bh.
// Slots run from the tile with the most work: the last tile first when tiles
// are queries (the last query tile sees the most keys), the first when they are
// keys (the first key tile is seen by the most queries).
struct HeadTile {
  int tile, bh, b, h;
  size_t pos_stride;   // elements between consecutive positions (H * D)
  size_t head;         // offset of element (b, 0, h, 0) in a (B, T, H, D) tensor
  const int32_t* doc;  // document ids of batch row b, or null
};

__device__ inline HeadTile head_tile(int B, int T, int H, int D, const int32_t* doc_ids, int tiles,
                                     bool last_tile_first) {
  const int bh_count = B * H;
  const int slot = static_cast<int>(blockIdx.x / bh_count);
  const int bh = static_cast<int>(blockIdx.x % bh_count);
  const int b = bh / H, h = bh % H;
  const size_t pos_stride = static_cast<size_t>(H) * D;
  return {last_tile_first ? tiles - 1 - slot : slot, bh, b, h, pos_stride,
          static_cast<size_t>(b) * T * pos_stride + static_cast<size_t>(h) * D,
          doc_ids ? doc_ids + static_cast<size_t>(b) * T : nullptr};
}

// max_logit is reduced with atomicMax on an order-preserving integer image
// of the float (max is exact and order-free, so the result is deterministic).
// Key 0 (below every float's key) stands for "no logit" = -inf.
__device__ inline unsigned ordered_key(float f) {
  const unsigned u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ inline float from_ordered_key(unsigned key) {
  if (key == 0) return -INFINITY;
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

}  // namespace muongpt::gpu::attention_detail
