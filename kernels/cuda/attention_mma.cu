// Tensor-core attention, FlashAttention-2 style: math and layouts as in
// attention.cuh; this file is the algorithm.
//
// Every product runs on mma.sync.m16n8k16 (bf16 x bf16 -> fp32). A warp owns
// 16 rows (the m of the instruction); a block of 4 warps owns 64 rows of one
// (b, h) and walks the tiles of the other kind that the mask can reach.
//
//   forward   rows = queries. Per key tile of 64: S = Q K^T (16 x 64 per warp),
//             mask, online softmax (row max/sum over the quad of lanes that
//             share a row), O += P V with P taken straight from the score
//             registers (the C layout of two n8 tiles is the A layout of one
//             k16 step). out = O / l, lse = m + log l.
//   dk, dv    rows = keys. Per query tile: S^T = K Q^T and dP^T = V dO^T,
//             P^T = exp(scale S^T - lse), dS^T = P^T (dP^T - delta),
//             dV += P^T dO, dK += dS^T Q; dk = scale dK at the end.
//   dq        rows = queries. Per key tile: S = Q K^T, dP = dO V^T, dS as
//             above, dQ += dS K; dq = scale dQ.
// No atomics in any sum (dq has its own pass), so reruns give the same bits.
// The per-head max logit uses the order-free atomicMax of attention_mask.cuh.
//
// Register fragments (PTX ISA, mma.m16n8k16 with .bf16): lane = 4 g + i,
//   A (16x16): {a0,a1} row g, cols 2i, 2i+1 | {a2,a3} row g+8 | {a4,a5} row g,
//              cols 2i+8, 2i+9 | {a6,a7} row g+8, cols 2i+8, 2i+9
//   B (16x8):  {b0,b1} rows (k) 2i, 2i+1, col (n) g | {b2,b3} rows 2i+8, 2i+9
//   C (16x8):  {c0,c1} row g, cols 2i, 2i+1 | {c2,c3} row g+8
// Shared tiles are row-major bf16 with a row stride of D + 8 elements (rows
// 16 bytes apart in bank terms), so the 32-bit fragment loads and ldmatrix
// rows of a warp fall in 32 different banks.
#include "kernels/cuda/attention_mma.cuh"

#include "kernels/cuda/attention_mask.cuh"
#include "kernels/cuda/mma.cuh"

namespace muongpt::gpu::attention_detail {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                   // the m of m16n8k16
constexpr int kBlockRows = kWarps * kWarpRows;  // 64 rows per block
constexpr float kLog2e = 1.4426950408889634f;

template <int D>
struct Dims {
  static constexpr int kLd = D + 8;                  // shared row stride, elements
  static constexpr int kOther = D == 128 ? 32 : 64;  // other-kind positions per step of the backward (registers)
  static constexpr int kDt = D / 8;                  // n8 tiles across the head dim
  static constexpr int kDk = D / 16;                 // k16 steps across the head dim
};

// --- fragments -------------------------------------------------------------

__device__ __forceinline__ uint32_t lds32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Two floats as bf16x2, lo in the low half (the lower column of a fragment).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}


// A fragment: rows r0..r0+15, cols k0..k0+15 of a row-major tile.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* tile, int ld, int r0, int k0, int lane) {
  const bf16* p = tile + (r0 + (lane >> 2)) * ld + k0 + (lane & 3) * 2;
  a[0] = lds32(p);
  a[1] = lds32(p + 8 * ld);
  a[2] = lds32(p + 8);
  a[3] = lds32(p + 8 * ld + 8);
}

// B fragment with B[k][n] = tile[n0 + n][k0 + k]: the tile's rows are B's columns.
__device__ __forceinline__ void load_b_from_rows(uint32_t& b0, uint32_t& b1, const bf16* tile, int ld, int n0, int k0,
                                                 int lane) {
  const bf16* p = tile + (n0 + (lane >> 2)) * ld + k0 + (lane & 3) * 2;
  b0 = lds32(p);
  b1 = lds32(p + 8);
}

// Two B fragments, columns n0..n0+7 in b[0..1] and n0+8..n0+15 in b[2..3],
// with B[k][n] = tile[k0 + k][n0 + n] (the tile's rows are B's rows):
// ldmatrix.x4.trans, lanes 8m..8m+7 address the rows of 8x8 matrix m
// (m & 1: k half, m >> 1: n half).
__device__ __forceinline__ void load_b_from_cols_x2(uint32_t (&b)[4], const bf16* tile, int ld, int k0, int n0,
                                                    int lane) {
  const int m = lane >> 3, r = lane & 7;
  const bf16* p = tile + (k0 + (m & 1) * 8 + r) * ld + n0 + (m >> 1) * 8;
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(addr));
}

// Accumulators of n8 tiles 2c and 2c+1 (C layout, rows x 16 columns) as the
// A fragment of one k16 step over those 16 columns, rounded to bf16.
__device__ __forceinline__ void accumulators_to_a(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = pack_bf16x2(lo[0], lo[1]);
  a[1] = pack_bf16x2(lo[2], lo[3]);
  a[2] = pack_bf16x2(hi[0], hi[1]);
  a[3] = pack_bf16x2(hi[2], hi[3]);
}

// c[n][e] of an accumulator array sits at row g + 8 (e >> 1) and column
// 8 n + 2 i + (e & 1) of the warp's 16-row slab.
__device__ __forceinline__ int acc_row(int lane, int e) { return (lane >> 2) + (e >> 1) * 8; }
__device__ __forceinline__ int acc_col(int lane, int n, int e) { return n * 8 + (lane & 3) * 2 + (e & 1); }

// --- tiles -------------------------------------------------------------------

// Positions [pos0, pos0 + rows) of one head into shared memory (row r at
// dst + r * ld), 16 bytes at a time; positions past T become zeros. src
// points at element (b, 0, h, 0); positions are pos_stride apart.
template <int D>
__device__ void load_rows(bf16* dst, const bf16* src, size_t pos_stride, int pos0, int rows, int T) {
  constexpr int kChunks = D / 8;
  for (int i = threadIdx.x; i < rows * kChunks; i += kThreads) {
    const int r = i / kChunks, ch = i - r * kChunks;
    const int t = pos0 + r;
    uint4 val = make_uint4(0u, 0u, 0u, 0u);
    if (t < T) val = *reinterpret_cast<const uint4*>(src + static_cast<size_t>(t) * pos_stride + ch * 8);
    *reinterpret_cast<uint4*>(dst + r * Dims<D>::kLd + ch * 8) = val;
  }
}

// Document ids of positions [pos0, pos0 + n) (-1 past T; never compared there,
// since position checks come first).
__device__ void load_ids(int* dst, const int32_t* doc, int pos0, int n, int T) {
  for (int i = threadIdx.x; i < n; i += kThreads) dst[i] = pos0 + i < T ? doc[pos0 + i] : -1;
}

// The mask between a query tile starting at q0 and a key tile starting at k0,
// in tile-local indices; document ids from shared memory.
struct TileMask {
  int q0, k0, T, window, block;  // block: window_block (0 = token windows)
  const int* q_doc;  // ids of the query tile, or null (no document mask)
  const int* k_doc;  // ids of the key tile

  __device__ bool allowed(int tq, int jk) const {
    const int t = q0 + tq, j = k0 + jk;
    return t < T && j <= t && window_allows(t, j, window, block) && (q_doc == nullptr || q_doc[tq] == k_doc[jk]);
  }
};

// Whether any pair of a q_rows x k_rows tile pair is allowed; block-uniform
// (a barrier). Used only under a document mask: without one every tile in the
// causal/window range has an allowed pair (token or block windows: the keys
// seen by a run of queries, and the queries seeing a run of keys, are runs).
__device__ bool tile_pair_visible(const TileMask& mask, int q_rows, int k_rows) {
  bool any = false;
  for (int i = threadIdx.x; i < q_rows * k_rows && !any; i += kThreads) any = mask.allowed(i / k_rows, i % k_rows);
  return __syncthreads_or(any) != 0;
}

// Writes two adjacent columns of one row as bf16x2.
__device__ __forceinline__ void store2(bf16* p, float x, float y) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(x, y);
}

// --- warp products shared by the three kernels --------------------------------

template <int N>
__device__ __forceinline__ void zero(float (&acc)[N][4]) {
#pragma unroll
  for (int n = 0; n < N; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// The two score tiles of the backward over the head dim, for the warp's 16
// rows (wr0..) against the other tile's N * 8 rows (all tiles [rows][D + 8]):
//   x = own_x[rows] . other_x[rows]^T,   y = own_y[rows] . other_y[rows]^T.
template <int D, int N>
__device__ __forceinline__ void score_pair(float (&x)[N][4], float (&y)[N][4], const bf16* own_x, const bf16* own_y,
                                           const bf16* other_x, const bf16* other_y, int wr0, int lane) {
  constexpr int kLd = Dims<D>::kLd;
  zero(x);
  zero(y);
#pragma unroll
  for (int kk = 0; kk < Dims<D>::kDk; ++kk) {
    uint32_t ax[4], ay[4];
    load_a(ax, own_x, kLd, wr0, kk * 16, lane);
    load_a(ay, own_y, kLd, wr0, kk * 16, lane);
#pragma unroll
    for (int n = 0; n < N; ++n) {
      uint32_t b0, b1;
      load_b_from_rows(b0, b1, other_x, kLd, n * 8, kk * 16, lane);
      mma_m16n8k16(x[n], ax, b0, b1);
      load_b_from_rows(b0, b1, other_y, kLd, n * 8, kk * 16, lane);
      mma_m16n8k16(y[n], ay, b0, b1);
    }
  }
}

// acc (16 x D) += w (16 x N*8, accumulator registers, rounded to bf16) times
// the tile's first N*8 rows ([rows][D + 8]), 16 rows at a time.
template <int D, int N>
__device__ __forceinline__ void accumulate_product(float (&acc)[Dims<D>::kDt][4], const float (&w)[N][4],
                                                   const bf16* tile, int lane) {
#pragma unroll
  for (int kc = 0; kc < N / 2; ++kc) {
    uint32_t a[4];
    accumulators_to_a(a, w[2 * kc], w[2 * kc + 1]);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      load_b_from_cols_x2(b, tile, Dims<D>::kLd, kc * 16, dp * 16, lane);
      mma_m16n8k16(acc[2 * dp], a, b[0], b[1]);
      mma_m16n8k16(acc[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

// Start of one step of a tile walk under a document mask: loads the ids of
// the new tile (n positions from pos0) and says whether any pair of the two
// tiles is allowed (block-uniform, barriers inside). Without a document mask
// every tile in range is needed.
__device__ bool doc_tile_needed(const int32_t* doc, int* ids, int pos0, int n, int T, const TileMask& mask,
                                int q_rows, int k_rows) {
  if (doc == nullptr) return true;
  load_ids(ids, doc, pos0, n, T);
  __syncthreads();
  return tile_pair_visible(mask, q_rows, k_rows);
}

// --- forward -----------------------------------------------------------------

template <int D>
size_t forward_smem_bytes() {
  return sizeof(bf16) * 3 * kBlockRows * Dims<D>::kLd + sizeof(int) * 2 * kBlockRows;
}

// Grid: one block per (query tile, b*h), tiles with the most keys first.
// Shared: Q, K, V tiles [64][D + 8], document ids of the query and key tiles.
template <int D>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(bf16* out, float* lse, unsigned* max_key, const bf16* q, const bf16* k, const bf16* v, int B,
                   int T, int H, float scale, int window, int window_block, const int32_t* doc_ids, int tiles) {
  using Dm = Dims<D>;
  constexpr int kLd = Dm::kLd, kKeys = kBlockRows, kNt = kKeys / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sK = sQ + kBlockRows * kLd;
  bf16* sV = sK + kKeys * kLd;
  int* sDocQ = reinterpret_cast<int*>(sV + kKeys * kLd);
  int* sDocK = sDocQ + kBlockRows;

  const auto [tile, bh, b, h, pos_stride, head, doc] =
      head_tile(B, T, H, D, doc_ids, tiles, /*last_tile_first=*/true);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  const int q0 = tile * kBlockRows;
  const int q_last = min(T, q0 + kBlockRows) - 1;
  const int wr0 = warp * kWarpRows;  // the warp's rows in the tile
  const int wq0 = q0 + wr0;          // ... as positions

  load_rows<D>(sQ, q + head, pos_stride, q0, kBlockRows, T);
  if (doc) load_ids(sDocQ, doc, q0, kBlockRows, T);
  __syncthreads();
  uint32_t qf[Dm::kDk][4];
#pragma unroll
  for (int kk = 0; kk < Dm::kDk; ++kk) load_a(qf[kk], sQ, kLd, wr0, kk * 16, lane);

  float o[Dm::kDt][4];
  zero(o);
  float m[2] = {-INFINITY, -INFINITY};  // running max of rows g, g + 8 (quad-uniform)
  float l[2] = {0.0f, 0.0f};            // this lane's part of the running sum of exp(s - m)

  for (int k0 = first_visible_key(q0, window, window_block) / kKeys * kKeys; k0 <= q_last; k0 += kKeys) {
    __syncthreads();  // every warp is done with the previous K, V and ids
    const TileMask mask{q0, k0, T, window, window_block, doc ? sDocQ : nullptr, sDocK};
    if (!doc_tile_needed(doc, sDocK, k0, kKeys, T, mask, kBlockRows, kKeys)) continue;
    load_rows<D>(sK, k + head, pos_stride, k0, kKeys, T);
    load_rows<D>(sV, v + head, pos_stride, k0, kKeys, T);
    __syncthreads();
    // Warp-uniform: every key of the tile is after, or out of the window of, all of the warp's rows
    // (the window test of the warp's first row against the tile's last key: the closest pair).
    if (wq0 >= T || k0 > wq0 + kWarpRows - 1 || !window_allows(wq0, k0 + kKeys - 1, window, window_block)) continue;

    float s[kNt][4];
    zero(s);
#pragma unroll
    for (int kk = 0; kk < Dm::kDk; ++kk)
#pragma unroll
      for (int n = 0; n < kNt; ++n) {
        uint32_t b0, b1;
        load_b_from_rows(b0, b1, sK, kLd, n * 8, kk * 16, lane);
        mma_m16n8k16(s[n], qf[kk], b0, b1);
      }

    // Scale; mask unless every pair of the warp's rows and the tile is allowed (causal: the tile's
    // last key is at most the warp's first row; window: the farthest pair, last row and first key, is in).
    const bool all_allowed = doc == nullptr && k0 + kKeys - 1 <= wq0 && wq0 + kWarpRows <= T &&
                             window_allows(wq0 + kWarpRows - 1, k0, window, window_block);
#pragma unroll
    for (int n = 0; n < kNt; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float x = s[n][e] * scale;
        s[n][e] = all_allowed || mask.allowed(wr0 + acc_row(lane, e), acc_col(lane, n, e)) ? x : -INFINITY;
      }

    // Online softmax per row (r = 0: row g, 1: row g + 8).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < kNt; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
      const float m_new = fmaxf(m[r], mx);
      const float m_ref = m_new == -INFINITY ? 0.0f : m_new;  // all masked so far: every p is exp(-inf) = 0
      const float alpha = exp2f((m[r] - m_ref) * kLog2e);      // 0 while m[r] = -inf
      m[r] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kNt; ++n)
#pragma unroll
        for (int e = 2 * r; e < 2 * r + 2; ++e) {
          const float p = exp2f((s[n][e] - m_ref) * kLog2e);
          s[n][e] = p;
          sum += p;
        }
      l[r] = l[r] * alpha + sum;
#pragma unroll
      for (int n = 0; n < Dm::kDt; ++n) {
        o[n][2 * r] *= alpha;
        o[n][2 * r + 1] *= alpha;
      }
    }

    accumulate_product<D>(o, s, sV, lane);  // O += P V
  }

  float warp_max_logit = -INFINITY;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = l[r];
    sum += __shfl_xor_sync(kFullMask, sum, 1);
    sum += __shfl_xor_sync(kFullMask, sum, 2);
    const int t = wq0 + (lane >> 2) + 8 * r;
    if (t >= T) continue;
    warp_max_logit = fmaxf(warp_max_logit, m[r]);
    const bool any = sum > 0.0f;  // false only for a query that sees no key
    const float inv = any ? 1.0f / sum : 0.0f;
    bf16* orow = out + head + static_cast<size_t>(t) * pos_stride + (lane & 3) * 2;
#pragma unroll
    for (int n = 0; n < Dm::kDt; ++n) store2(orow + n * 8, o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    if ((lane & 3) == 0) lse[static_cast<size_t>(bh) * T + t] = any ? m[r] + logf(sum) : -INFINITY;
  }
  if (max_key) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      warp_max_logit = fmaxf(warp_max_logit, __shfl_xor_sync(kFullMask, warp_max_logit, offset));
    if (lane == 0 && warp_max_logit > -INFINITY) atomicMax(max_key + h, ordered_key(warp_max_logit));
  }
}

// --- backward: dk, dv --------------------------------------------------------

template <int D>
size_t dkdv_smem_bytes() {
  constexpr int kQ = Dims<D>::kOther;
  return sizeof(bf16) * (2 * kBlockRows + 2 * kQ) * Dims<D>::kLd + sizeof(float) * 2 * kQ +
         sizeof(int) * (kBlockRows + kQ);
}

// Grid: one block per (key tile, b*h), tiles with the most queries first.
// Shared: K, V tiles [64][D + 8]; Q, dO tiles [kOther][D + 8]; lse, delta and
// document ids of the query tile; document ids of the key tile.
template <int D>
__global__ void __launch_bounds__(kThreads)
    dkdv_kernel(bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* delta, const bf16* q,
                const bf16* k, const bf16* v, int B, int T, int H, float scale, int window, int window_block,
                const int32_t* doc_ids) {
  using Dm = Dims<D>;
  constexpr int kLd = Dm::kLd, kQ = Dm::kOther, kNt = kQ / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);
  bf16* sV = sK + kBlockRows * kLd;
  bf16* sQ = sV + kBlockRows * kLd;
  bf16* sdO = sQ + kQ * kLd;
  float* sLse = reinterpret_cast<float*>(sdO + kQ * kLd);
  float* sDelta = sLse + kQ;
  int* sDocK = reinterpret_cast<int*>(sDelta + kQ);
  int* sDocQ = sDocK + kBlockRows;

  const auto [tile, bh, b, h, pos_stride, head, doc] =
      head_tile(B, T, H, D, doc_ids, 0, /*last_tile_first=*/false);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float* lse_bh = lse + static_cast<size_t>(bh) * T;
  const float* delta_bh = delta + static_cast<size_t>(bh) * T;

  const int k0 = tile * kBlockRows;
  const int k_last = min(T, k0 + kBlockRows) - 1;
  const int wr0 = warp * kWarpRows;  // the warp's key rows in the tile
  const int wk0 = k0 + wr0;
  load_rows<D>(sK, k + head, pos_stride, k0, kBlockRows, T);
  load_rows<D>(sV, v + head, pos_stride, k0, kBlockRows, T);
  if (doc) load_ids(sDocK, doc, k0, kBlockRows, T);

  float dk_acc[Dm::kDt][4], dv_acc[Dm::kDt][4];
  zero(dk_acc);
  zero(dv_acc);

  // Causal: queries before k0 see none of these keys (k0 is a multiple of kQ).
  const int q_end = last_query_seeing(k_last, T, window, window_block);
  for (int q0 = k0; q0 <= q_end; q0 += kQ) {
    __syncthreads();  // every warp is done with the previous Q, dO, lse, delta and ids
    const TileMask mask{q0, k0, T, window, window_block, doc ? sDocQ : nullptr, sDocK};
    if (!doc_tile_needed(doc, sDocQ, q0, kQ, T, mask, kQ, kBlockRows)) continue;
    load_rows<D>(sQ, q + head, pos_stride, q0, kQ, T);
    load_rows<D>(sdO, dout + head, pos_stride, q0, kQ, T);
    for (int i = threadIdx.x; i < kQ; i += kThreads) {
      const int t = q0 + i;
      sLse[i] = t < T ? lse_bh[t] : -INFINITY;
      sDelta[i] = t < T ? delta_bh[t] : 0.0f;
    }
    __syncthreads();
    // Warp-uniform: no query of the tile sees any of the warp's keys (causal, or the closest pair, the
    // tile's first query and the warp's last key, is out of the window).
    if (wk0 >= T || wk0 > q0 + kQ - 1 || !window_allows(q0, wk0 + kWarpRows - 1, window, window_block)) continue;

    float st[kNt][4], dpt[kNt][4];  // S^T = K Q^T and dP^T = V dO^T: rows = the warp's keys
    score_pair<D>(st, dpt, sK, sV, sQ, sdO, wr0, lane);

    // P^T and dS^T in place.
#pragma unroll
    for (int n = 0; n < kNt; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = wr0 + acc_row(lane, e), query = acc_col(lane, n, e);
        const float lse_t = sLse[query];
        const bool ok = lse_t > -INFINITY && mask.allowed(query, key);
        const float p = ok ? exp2f((st[n][e] * scale - lse_t) * kLog2e) : 0.0f;
        st[n][e] = p;
        dpt[n][e] = p * (dpt[n][e] - sDelta[query]);
      }

    accumulate_product<D>(dv_acc, st, sdO, lane);   // dV += P^T dO
    accumulate_product<D>(dk_acc, dpt, sQ, lane);   // dK += dS^T Q
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int j = wk0 + (lane >> 2) + 8 * r;
    if (j >= T) continue;
    const size_t row = head + static_cast<size_t>(j) * pos_stride + (lane & 3) * 2;
#pragma unroll
    for (int n = 0; n < Dm::kDt; ++n) {
      store2(dk + row + n * 8, scale * dk_acc[n][2 * r], scale * dk_acc[n][2 * r + 1]);
      store2(dv + row + n * 8, dv_acc[n][2 * r], dv_acc[n][2 * r + 1]);
    }
  }
}

// --- backward: dq ------------------------------------------------------------

template <int D>
size_t dq_smem_bytes() {
  constexpr int kK = Dims<D>::kOther;
  return sizeof(bf16) * (2 * kBlockRows + 2 * kK) * Dims<D>::kLd + sizeof(int) * (kBlockRows + kK);
}

// Grid: one block per (query tile, b*h), tiles with the most keys first.
// Shared: Q, dO tiles [64][D + 8]; K, V tiles [kOther][D + 8]; document ids.
template <int D>
__global__ void __launch_bounds__(kThreads)
    dq_kernel(bf16* dq, const bf16* dout, const float* lse, const float* delta, const bf16* q, const bf16* k,
              const bf16* v, int B, int T, int H, float scale, int window, int window_block, const int32_t* doc_ids,
              int tiles) {
  using Dm = Dims<D>;
  constexpr int kLd = Dm::kLd, kKeys = Dm::kOther, kNt = kKeys / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sdO = sQ + kBlockRows * kLd;
  bf16* sK = sdO + kBlockRows * kLd;
  bf16* sV = sK + kKeys * kLd;
  int* sDocQ = reinterpret_cast<int*>(sV + kKeys * kLd);
  int* sDocK = sDocQ + kBlockRows;

  const auto [tile, bh, b, h, pos_stride, head, doc] =
      head_tile(B, T, H, D, doc_ids, tiles, /*last_tile_first=*/true);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  const int q0 = tile * kBlockRows;
  const int q_last = min(T, q0 + kBlockRows) - 1;
  const int wr0 = warp * kWarpRows;
  const int wq0 = q0 + wr0;
  load_rows<D>(sQ, q + head, pos_stride, q0, kBlockRows, T);
  load_rows<D>(sdO, dout + head, pos_stride, q0, kBlockRows, T);
  if (doc) load_ids(sDocQ, doc, q0, kBlockRows, T);

  float lse_r[2], delta_r[2];  // rows g, g + 8
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = wq0 + (lane >> 2) + 8 * r;
    lse_r[r] = t < T ? lse[static_cast<size_t>(bh) * T + t] : -INFINITY;
    delta_r[r] = t < T ? delta[static_cast<size_t>(bh) * T + t] : 0.0f;
  }
  float dq_acc[Dm::kDt][4];
  zero(dq_acc);

  for (int k0 = first_visible_key(q0, window, window_block) / kKeys * kKeys; k0 <= q_last; k0 += kKeys) {
    __syncthreads();  // every warp is done with the previous K, V and ids (and the first Q, dO are stored)
    const TileMask mask{q0, k0, T, window, window_block, doc ? sDocQ : nullptr, sDocK};
    if (!doc_tile_needed(doc, sDocK, k0, kKeys, T, mask, kBlockRows, kKeys)) continue;
    load_rows<D>(sK, k + head, pos_stride, k0, kKeys, T);
    load_rows<D>(sV, v + head, pos_stride, k0, kKeys, T);
    __syncthreads();
    if (wq0 >= T || k0 > wq0 + kWarpRows - 1 || !window_allows(wq0, k0 + kKeys - 1, window, window_block)) continue;

    float s[kNt][4], dp[kNt][4];  // S = Q K^T and dP = dO V^T: rows = the warp's queries
    score_pair<D>(s, dp, sQ, sdO, sK, sV, wr0, lane);

    // dS in place of S.
#pragma unroll
    for (int n = 0; n < kNt; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        const bool ok = lse_r[r] > -INFINITY && mask.allowed(wr0 + acc_row(lane, e), acc_col(lane, n, e));
        const float p = ok ? exp2f((s[n][e] * scale - lse_r[r]) * kLog2e) : 0.0f;
        s[n][e] = p * (dp[n][e] - delta_r[r]);
      }

    accumulate_product<D>(dq_acc, s, sK, lane);  // dQ += dS K
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = wq0 + (lane >> 2) + 8 * r;
    if (t >= T) continue;
    bf16* row = dq + head + static_cast<size_t>(t) * pos_stride + (lane & 3) * 2;
#pragma unroll
    for (int n = 0; n < Dm::kDt; ++n) store2(row + n * 8, scale * dq_acc[n][2 * r], scale * dq_acc[n][2 * r + 1]);
  }
}

// --- launch ------------------------------------------------------------------

template <class Kernel>
void set_smem(Kernel* kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

unsigned block_count(int B, int T, int H) {
  return static_cast<unsigned>(static_cast<size_t>(ceil_div(T, kBlockRows)) * B * H);
}

template <int D>
void forward_launch(bf16* out, float* lse, unsigned* max_key, const bf16* q, const bf16* k, const bf16* v, int B,
                    int T, int H, float scale, int window, int window_block, const int32_t* doc_ids,
                    cudaStream_t stream) {
  const size_t smem = forward_smem_bytes<D>();
  set_smem(forward_kernel<D>, smem);
  forward_kernel<D><<<block_count(B, T, H), kThreads, smem, stream>>>(out, lse, max_key, q, k, v, B, T, H, scale,
                                                                      window, window_block, doc_ids,
                                                                      ceil_div(T, kBlockRows));
  CUDA_CHECK_LAUNCH("attention forward_kernel (tensor cores)");
}

template <int D>
void backward_launch(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* delta,
                     const bf16* q, const bf16* k, const bf16* v, int B, int T, int H, float scale, int window,
                     int window_block, const int32_t* doc_ids, cudaStream_t stream) {
  const unsigned blocks = block_count(B, T, H);
  const size_t dkdv_smem = dkdv_smem_bytes<D>();
  set_smem(dkdv_kernel<D>, dkdv_smem);
  dkdv_kernel<D><<<blocks, kThreads, dkdv_smem, stream>>>(dk, dv, dout, lse, delta, q, k, v, B, T, H, scale, window,
                                                          window_block, doc_ids);
  CUDA_CHECK_LAUNCH("attention dkdv_kernel (tensor cores)");
  const size_t dq_smem = dq_smem_bytes<D>();
  set_smem(dq_kernel<D>, dq_smem);
  dq_kernel<D><<<blocks, kThreads, dq_smem, stream>>>(dq, dout, lse, delta, q, k, v, B, T, H, scale, window,
                                                      window_block, doc_ids, ceil_div(T, kBlockRows));
  CUDA_CHECK_LAUNCH("attention dq_kernel (tensor cores)");
}

}  // namespace

void attention_forward_mma(bf16* out, float* lse, unsigned* max_key, const bf16* q, const bf16* k, const bf16* v,
                           int B, int T, int H, int D, float scale, int window, int window_block,
                           const int32_t* doc_ids, cudaStream_t stream) {
  if (D == 64)
    return forward_launch<64>(out, lse, max_key, q, k, v, B, T, H, scale, window, window_block, doc_ids, stream);
  if (D == 128)
    return forward_launch<128>(out, lse, max_key, q, k, v, B, T, H, scale, window, window_block, doc_ids, stream);
  require_arg(false, "attention_forward (tensor cores)", "head dim must be 64 or 128, got " + std::to_string(D));
}

void attention_backward_mma(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* delta,
                            const bf16* q, const bf16* k, const bf16* v, int B, int T, int H, int D, float scale,
                            int window, int window_block, const int32_t* doc_ids, cudaStream_t stream) {
  if (D == 64)
    return backward_launch<64>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, scale, window, window_block, doc_ids,
                               stream);
  if (D == 128)
    return backward_launch<128>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, scale, window, window_block, doc_ids,
                                stream);
  require_arg(false, "attention_backward (tensor cores)", "head dim must be 64 or 128, got " + std::to_string(D));
}

}  // namespace muongpt::gpu::attention_detail
