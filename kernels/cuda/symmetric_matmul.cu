// Symmetric product C = alpha X X^T + beta D on tensor cores: math, layouts,
// tiling and numerics in symmetric_matmul.cuh; this file is the algorithm.
//
// Register fragments (PTX ISA, mma.m16n8k16 with .bf16): lane = 4 g + t,
//   A (16x16, m x k)  a0: row g, k 2t, 2t+1 | a1: row g+8 | a2: row g, k 2t+8, 2t+9 | a3: row g+8, k 2t+8, 2t+9
//   B (16x8,  k x n)  b0: k 2t, 2t+1, col g | b1: k 2t+8, 2t+9, col g
//   C (16x8)          c0, c1: row g, cols 2t, 2t+1 | c2, c3: row g+8
// Both operands are rows of X: A's rows are the rows of tile ti, and B[kk][n]
// = X[j0 + n][kk], so B's columns are the rows of tile tj. Each comes from
// one ldmatrix.x4 (four 8x8 matrices; lanes 8q..8q+7 address the rows of
// matrix q; thread lane receives row g, columns 2t, 2t+1 of each, or with
// .trans rows 2t, 2t+1 of column g):
//   A, matrices q = 0..3: (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15, k 8-15) -> a0..a3
//   B, matrices q = 0..3: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
//                         -> b0, b1 of n8 tile 0, b0, b1 of n8 tile 1
// Shared panels, one per operand and stage (k-slab of kBk = 32):
//   kRowMajor: [T rows][32 + 8], k contiguous: ldmatrix reads (row, k) 8x8 blocks;
//   kColMajor: [32 k][T + 8], rows contiguous: ldmatrix.trans reads (k, row)
//              blocks and hands out the same fragments.
// Row strides of 80 or 272/144 bytes put the 8 rows of an ldmatrix matrix in
// 8 distinct groups of 4 banks (no conflicts).
#include "kernels/cuda/symmetric_matmul.cuh"

#include <string>

#include "kernels/cuda/mma.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kBk = 32;                   // k per pipeline stage (two k16 steps)
constexpr int kStages = 3;                // cp.async pipeline depth
constexpr int kPad = 8;                   // elements of padding per shared row
constexpr int kAutoWideTileBlocks = 256;  // tile 0 uses T = 128 from this many blocks on

template <int T>
struct TileShape {
  static_assert(T == 64 || T == 128, "tile 64 or 128");
  static constexpr int kWarpsM = 2;
  static constexpr int kWarpsN = T == 128 ? 4 : 2;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;  // 256 or 128
  static constexpr int kWarpM = T / kWarpsM;               // rows per warp: 64 or 32
  static constexpr int kWarpN = T / kWarpsN;               // columns per warp: 32
  static constexpr int kMt = kWarpM / 16;                  // m16 tiles per warp
  static constexpr int kNt = kWarpN / 8;                   // n8 tiles per warp
  static constexpr int kMinBlocks = T == 128 ? 2 : 4;      // per SM: at most 128 registers a thread
  static_assert(kNt % 2 == 0, "B fragments come in pairs of n8 tiles");
};

template <int T, bool kCol>
struct Smem {
  static constexpr int kLd = kCol ? T + kPad : kBk + kPad;  // panel row stride, elements
  static constexpr int kPanel = (kCol ? kBk : T) * kLd;     // elements of one panel
  static constexpr int kStage = 2 * kPanel;                 // panel of tile ti, panel of tile tj
  static constexpr int kOutLd = T + kPad;                   // epilogue tile row stride
  static constexpr size_t kPipelineBytes = size_t(kStages) * kStage * sizeof(bf16);
  static constexpr size_t kEpilogueBytes = size_t(2) * T * kOutLd * sizeof(bf16);
  static constexpr size_t kBytes = kPipelineBytes > kEpilogueBytes ? kPipelineBytes : kEpilogueBytes;
  static_assert(kLd % 8 == 0 && kPanel % 8 == 0 && (T * kOutLd) % 8 == 0, "16-byte aligned shared rows");
};

struct SymArgs {
  bf16* C;
  size_t c_stride;
  const bf16* X;
  size_t x_stride;
  int ld;
  const bf16* D;  // null when beta == 0
  size_t d_stride;
  int r, k;
  float alpha, beta;
  bool vec_store;  // C rows 16-byte aligned: 16-byte stores
};

// --- PTX wrappers ------------------------------------------------------------

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously: the first `bytes` (0..16) from
// src, zeros for the rest (nothing is read when bytes == 0).
__device__ __forceinline__ void cp_async16(bf16* dst, const bf16* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)),
               "l"(__cvta_generic_to_global(src)), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <bool kTrans>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&f)[4], const bf16* p) {
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(f[0]), "=r"(f[1]), "=r"(f[2]), "=r"(f[3])
                 : "r"(smem_u32(p)));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(f[0]), "=r"(f[1]), "=r"(f[2]), "=r"(f[3])
                 : "r"(smem_u32(p)));
}


// --- loads ----------------------------------------------------------------------

// Elements [0, valid) of X + offset (valid in 0..8) into the 8 shared elements
// at dst, zeros after. kVec: one cp.async (X + offset 16-byte aligned when
// valid > 0; X, the matrix's base, stands in as the address when valid == 0).
template <bool kVec>
__device__ __forceinline__ void load8_zero_fill(bf16* dst, const bf16* X, size_t offset, int valid) {
  if constexpr (kVec) {
    cp_async16(dst, valid > 0 ? X + offset : X, 2 * valid);
  } else {
    Bf16x8 pack;
#pragma unroll
    for (int e = 0; e < 8; ++e) pack.v[e] = e < valid ? X[offset + e] : f2bf(0.0f);
    *reinterpret_cast<Bf16x8*>(dst) = pack;
  }
}

// Rows [row0, row0 + T) of X, k columns [k0, k0 + kBk), into one panel
// (layouts in the file comment); rows >= r and columns >= k become zeros.
template <int T, bool kCol, bool kVec>
__device__ __forceinline__ void load_panel(bf16* panel, const bf16* X, int ld, int row0, int k0, int r, int k) {
  constexpr int kThreads = TileShape<T>::kThreads;
  constexpr int kLd = Smem<T, kCol>::kLd;
  constexpr int kChunksPerRow = kCol ? T / 8 : kBk / 8;  // 8-element chunks per shared row
  constexpr int kChunks = (kCol ? kBk : T) * kChunksPerRow;
  static_assert(kChunks % kThreads == 0, "whole chunks per thread");
#pragma unroll
  for (int it = 0; it < kChunks / kThreads; ++it) {
    const int c = threadIdx.x + it * kThreads;
    const int srow = c / kChunksPerRow, scol = (c % kChunksPerRow) * 8;  // shared row and column
    int valid;
    size_t offset;
    if constexpr (kCol) {  // shared row = k, columns = rows of X
      const int gk = k0 + srow, gi = row0 + scol;
      valid = gk < k ? min(max(r - gi, 0), 8) : 0;
      offset = static_cast<size_t>(gk) * ld + gi;
    } else {  // shared row = row of X, columns = k
      const int gi = row0 + srow, gk = k0 + scol;
      valid = gi < r ? min(max(k - gk, 0), 8) : 0;
      offset = static_cast<size_t>(gi) * ld + gk;
    }
    load8_zero_fill<kVec>(panel + srow * kLd + scol, X, offset, valid);
  }
}

// Lane's ldmatrix address (elements into a panel) for the A fragment of rows
// m0..m0+15, k k0..k0+15 (matrix order of the file comment).
template <int T, bool kCol>
MUONGPT_HOST_DEVICE inline int a_frag_offset(int lane, int m0, int k0) {
  constexpr int kLd = Smem<T, kCol>::kLd;
  if constexpr (kCol)
    return (k0 + (lane >> 4) * 8 + (lane & 7)) * kLd + m0 + ((lane >> 3) & 1) * 8;
  else
    return (m0 + (lane & 15)) * kLd + k0 + (lane >> 4) * 8;
}

// The same for the B fragments of n8 tiles n0..n0+7 and n0+8..n0+15.
template <int T, bool kCol>
MUONGPT_HOST_DEVICE inline int b_frag_offset(int lane, int n0, int k0) {
  constexpr int kLd = Smem<T, kCol>::kLd;
  if constexpr (kCol)
    return (k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * kLd + n0 + (lane >> 4) * 8;
  else
    return (n0 + (lane >> 4) * 8 + (lane & 7)) * kLd + k0 + ((lane >> 3) & 1) * 8;
}

// Elements [0, count) of v to dst (count in 1..8); one 16-byte store when
// `vec` and count == 8 (dst then 16-byte aligned).
__device__ __forceinline__ void store_row8(bf16* dst, const Bf16x8& v, int count, bool vec) {
  if (vec && count == 8) {
    *reinterpret_cast<Bf16x8*>(dst) = v;
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e)
      if (e < count) dst[e] = v.v[e];
  }
}

// --- the kernel -------------------------------------------------------------------

template <int T, bool kCol, bool kVec>
__global__ void __launch_bounds__(TileShape<T>::kThreads, TileShape<T>::kMinBlocks) symmetric_matmul_kernel(SymArgs p) {
  using W = TileShape<T>;
  using S = Smem<T, kCol>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* const smem = reinterpret_cast<bf16*>(smem_raw);

  // Lower tile (ti, tj), ti >= tj, from blockIdx.x = ti (ti + 1) / 2 + tj.
  const long long lin = blockIdx.x;
  long long ti = static_cast<long long>((sqrtf(8.0f * static_cast<float>(lin) + 1.0f) - 1.0f) * 0.5f);
  while (ti > 0 && ti * (ti + 1) / 2 > lin) --ti;
  while ((ti + 1) * (ti + 2) / 2 <= lin) ++ti;
  const int tj = static_cast<int>(lin - ti * (ti + 1) / 2);
  const int i0 = static_cast<int>(ti) * T, j0 = tj * T;
  const bool diag = i0 == j0;

  const size_t z = blockIdx.y;
  const bf16* const X = p.X + z * p.x_stride;
  const int r = p.r, k = p.k, ld = p.ld;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm0 = (warp / W::kWarpsN) * W::kWarpM;  // the warp's rows and columns within the tile
  const int wn0 = (warp % W::kWarpsN) * W::kWarpN;
  // A warp whose sub-tile lies wholly above the diagonal of a diagonal tile
  // computes nothing: the epilogue reads only the tile's lower half there.
  const bool idle = diag && wm0 + W::kWarpM <= wn0;

  float acc[W::kMt][W::kNt][4];
#pragma unroll
  for (int mt = 0; mt < W::kMt; ++mt)
#pragma unroll
    for (int nt = 0; nt < W::kNt; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;

  // Stage s holds the k-slab kt in slot kt % kStages: the panel of tile ti,
  // then the panel of tile tj (not loaded for a diagonal tile: the same rows).
  const int nk = (k + kBk - 1) / kBk;
  auto load_stage = [&](int kt) {
    bf16* const stage = smem + (kt % kStages) * S::kStage;
    load_panel<T, kCol, kVec>(stage, X, ld, i0, kt * kBk, r, k);
    if (!diag) load_panel<T, kCol, kVec>(stage + S::kPanel, X, ld, j0, kt * kBk, r, k);
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nk) load_stage(s);
    cp_async_commit();  // one group per slab, empty past the end, so the counting below holds
  }

  for (int kt = 0; kt < nk; ++kt) {
    // Groups committed: kt + kStages - 1; at most kStages - 2 pending means slab kt has landed.
    cp_async_wait<kStages - 2>();
    __syncthreads();  // slab kt visible to all; every warp is done with slab kt - 1's slot
    if (kt + kStages - 1 < nk) load_stage(kt + kStages - 1);  // into slab kt - 1's slot
    cp_async_commit();
    if (idle) continue;
    const bf16* const pa = smem + (kt % kStages) * S::kStage;
    const bf16* const pb = diag ? pa : pa + S::kPanel;
#pragma unroll
    for (int kk = 0; kk < kBk; kk += 16) {
      uint32_t a[W::kMt][4], b[W::kNt / 2][4];
#pragma unroll
      for (int mt = 0; mt < W::kMt; ++mt)
        ldmatrix_x4<kCol>(a[mt], pa + a_frag_offset<T, kCol>(lane, wm0 + mt * 16, kk));
#pragma unroll
      for (int np = 0; np < W::kNt / 2; ++np)
        ldmatrix_x4<kCol>(b[np], pb + b_frag_offset<T, kCol>(lane, wn0 + np * 16, kk));
#pragma unroll
      for (int mt = 0; mt < W::kMt; ++mt)
#pragma unroll
        for (int nt = 0; nt < W::kNt; ++nt)
          mma_m16n8k16(acc[mt][nt], a[mt], b[nt / 2][(nt & 1) * 2], b[nt / 2][(nt & 1) * 2 + 1]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the pipeline's shared memory becomes the epilogue's

  // Epilogue 1: v = bf16(alpha acc + beta D[i][j]) into `tile` at (a, b) and
  // into `tile_t` at (b, a). D is read only at i >= j (upper values of a
  // diagonal tile are computed without it and never written out).
  bf16* const tile = smem;
  bf16* const tile_t = smem + T * S::kOutLd;
  const bf16* const D = p.beta != 0.0f ? p.D + z * p.d_stride : nullptr;
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < W::kMt; ++mt)
#pragma unroll
    for (int nt = 0; nt < W::kNt; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int a = wm0 + mt * 16 + g + 8 * h, b = wn0 + nt * 8 + 2 * t;
        float v[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          v[e] = __fmul_rn(p.alpha, acc[mt][nt][2 * h + e]);
          const int i = i0 + a, j = j0 + b + e;
          if (D != nullptr && i < r && j < r && i >= j)
            v[e] = __fmaf_rn(p.beta, bf2f(D[static_cast<size_t>(i) * r + j]), v[e]);
        }
        const bf16 v0 = f2bf(v[0]), v1 = f2bf(v[1]);
        tile[a * S::kOutLd + b] = v0;
        tile[a * S::kOutLd + b + 1] = v1;
        tile_t[b * S::kOutLd + a] = v0;
        tile_t[(b + 1) * S::kOutLd + a] = v1;
      }
  __syncthreads();

  // Epilogue 2: rows of 8 elements. Row a of the tile goes to C[i0 + a][j0 ..]
  // (a diagonal tile takes (a, b) with b > a from tile_t, i.e. the value of
  // (b, a)); row a of tile_t, for ti > tj, to the mirror C[j0 + a][i0 ..].
  bf16* const C = p.C + z * p.c_stride;
  constexpr int kRowChunks = T / 8;
  for (int c = threadIdx.x; c < T * kRowChunks; c += W::kThreads) {
    const int a = c / kRowChunks, b = (c % kRowChunks) * 8;
    if (i0 + a < r && j0 + b < r) {
      Bf16x8 v = *reinterpret_cast<const Bf16x8*>(tile + a * S::kOutLd + b);
      if (diag) {
        const Bf16x8 vt = *reinterpret_cast<const Bf16x8*>(tile_t + a * S::kOutLd + b);
#pragma unroll
        for (int e = 0; e < 8; ++e)
          if (b + e > a) v.v[e] = vt.v[e];
      }
      store_row8(C + static_cast<size_t>(i0 + a) * r + j0 + b, v, min(8, r - j0 - b), p.vec_store);
    }
    if (!diag && j0 + a < r && i0 + b < r) {
      const Bf16x8 v = *reinterpret_cast<const Bf16x8*>(tile_t + a * S::kOutLd + b);
      store_row8(C + static_cast<size_t>(j0 + a) * r + i0 + b, v, min(8, r - i0 - b), p.vec_store);
    }
  }
}

template <int T, bool kCol, bool kVec>
void launch(const SymArgs& args, int count, cudaStream_t stream) {
  const long long nt = ceil_div(static_cast<long long>(args.r), T);
  const unsigned tiles = static_cast<unsigned>(nt * (nt + 1) / 2);
  constexpr size_t smem = Smem<T, kCol>::kBytes;
  auto* const kernel = symmetric_matmul_kernel<T, kCol, kVec>;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<dim3(tiles, static_cast<unsigned>(count)), TileShape<T>::kThreads, smem, stream>>>(args);
  CUDA_CHECK_LAUNCH("symmetric_matmul_kernel");
}

template <int T>
void launch_tile(const SymArgs& args, int count, GramLayout layout, bool vec_load, cudaStream_t stream) {
  if (layout == GramLayout::kColMajor)
    vec_load ? launch<T, true, true>(args, count, stream) : launch<T, true, false>(args, count, stream);
  else
    vec_load ? launch<T, false, true>(args, count, stream) : launch<T, false, false>(args, count, stream);
}

}  // namespace

void symmetric_matmul(bf16* C, const bf16* X, int ld, GramLayout layout, const bf16* D, int r, int k, float alpha,
                      float beta, cudaStream_t stream, int tile) {
  const size_t rr = static_cast<size_t>(r > 0 ? r : 0) * static_cast<size_t>(r > 0 ? r : 0);
  symmetric_matmul_batched(C, rr, X, ld, 0, layout, D, rr, 1, r, k, alpha, beta, stream, tile);
}

void symmetric_matmul_batched(bf16* C, size_t c_stride, const bf16* X, int ld, size_t x_stride, GramLayout layout,
                              const bf16* D, size_t d_stride, int count, int r, int k, float alpha, float beta,
                              cudaStream_t stream, int tile) {
  const char* op = "symmetric_matmul";
  require_arg(r >= 0 && k >= 0, op, "negative size r = " + std::to_string(r) + ", k = " + std::to_string(k));
  require_arg(r <= (1 << 22), op, "r = " + std::to_string(r) + " exceeds 4194304 (grid size)");
  require_arg(count >= 0 && count <= 65535, op, "batch count " + std::to_string(count) + " outside [0, 65535]");
  require_arg(tile == 0 || tile == 64 || tile == 128, op,
              "tile must be 0 (auto), 64 or 128, got " + std::to_string(tile));
  if (r == 0 || count == 0) return;
  require_arg(C != nullptr, op, "C is required");
  require_arg(k == 0 || X != nullptr, op, "X is required for k = " + std::to_string(k));
  require_arg(beta == 0.0f || D != nullptr, op, "D is required when beta != 0 (beta = " + std::to_string(beta) + ")");
  const bool col = layout == GramLayout::kColMajor;
  const int min_ld = col ? r : k;
  require_arg(k == 0 || ld >= min_ld, op,
              std::string("ld = ") + std::to_string(ld) + " < " + (col ? "r" : "k") + " = " + std::to_string(min_ld) +
                  (col ? " (column-major X)" : " (row-major X)"));
  const size_t rr = static_cast<size_t>(r) * r;
  require_arg(count == 1 || c_stride >= rr, op,
              "c_stride " + std::to_string(c_stride) + " < r*r = " + std::to_string(rr) + ": outputs would overlap");

  const bool vec_load = aligned16(X) && ld % 8 == 0 && (count == 1 || x_stride % 8 == 0);
  const bool vec_store = aligned16(C) && r % 8 == 0 && (count == 1 || c_stride % 8 == 0);
  SymArgs args{C,
               count == 1 ? 0 : c_stride,
               X,
               count == 1 ? 0 : x_stride,
               ld,
               D,
               count == 1 ? 0 : d_stride,
               r,
               k,
               alpha,
               beta,
               vec_store};
  if (tile == 0) {
    const long long nt = ceil_div(static_cast<long long>(r), 128);
    tile = static_cast<long long>(count) * (nt * (nt + 1) / 2) >= kAutoWideTileBlocks ? 128 : 64;
  }
  if (tile == 128)
    launch_tile<128>(args, count, layout, vec_load, stream);
  else
    launch_tile<64>(args, count, layout, vec_load, stream);
}

}  // namespace muongpt::gpu
