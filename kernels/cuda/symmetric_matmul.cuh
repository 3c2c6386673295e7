// Symmetric product on tensor cores: the Gram matrices of Newton-Schulz
// (newton_schulz.cuh) computed on their lower triangle only and mirrored.
//
// Math, for each matrix z of a batch (z in [0, count)):
//   C = alpha * X X^T + beta * D                  C, D: r x r;  X: r x k
//   C[i][j] = bf16( alpha * acc_ij + beta * D[max(i,j)][min(i,j)] ),  acc_ij = sum_kk X[i][kk] X[j][kk]
// acc is fp32 (mma.sync m16n8k16, bf16 x bf16 -> fp32, k in increasing
// 16-wide steps); alpha*acc + beta*d is formed in fp32 (one fma after
// alpha*acc) and rounded to bf16 once. With beta == 0, D is not read (it may
// be null). D is only read at i >= j, so the result depends on D's lower
// triangle alone (for a symmetric D that is D itself). The value of (i, j),
// i >= j, is written to C[i][j] and C[j][i], so C is exactly symmetric, bit for
// bit. It serves both products of a Newton-Schulz iteration:
//   A = X X^T            alpha = 1, beta = 0
//   B = b A + c A A      X := A (r x r, k = r), alpha = c, D := A, beta = b:
//                        A is symmetric, so A A = A A^T.
//
// Layouts (bf16, elements):
//   C, D   row-major r x r, row pitch r; matrix z at C + z*c_stride, D + z*d_stride.
//   X      element (i, kk) of matrix z at X + z*x_stride +
//            kRowMajor: i*ld + kk   (ld >= k)   Newton-Schulz's wide case, [X] row-major r x c
//            kColMajor: kk*ld + i   (ld >= r)   its tall case, [X] column-major r x c
//          i.e. kColMajor reads X^T stored row-major (k x r, row pitch ld).
//   C must not overlap X, D or another matrix's C (c_stride >= r*r when count > 1).
//
// Tiling. C is cut into T x T tiles (T = 128 or 64); one block per tile (ti, tj)
// with ti >= tj (the lower triangle, diagonal tiles included): blockIdx.x walks
// the nt(nt+1)/2 lower tiles row by row (nt = ceil(r / T)), blockIdx.y is z.
// The block stages the two row panels of X (rows of tile ti, rows of tile tj;
// one panel for a diagonal tile) in shared memory, 32 columns of k at a time,
// in a 3-stage cp.async pipeline; 8 warps (T = 128: 2 x 4 warps of 64 x 32) or
// 4 warps (T = 64: 2 x 2 warps of 32 x 32) run the mma.sync steps from
// ldmatrix fragments (.trans for kColMajor). Warps of a diagonal tile whose
// sub-tile lies wholly above the diagonal skip the products. The epilogue
// rounds each value once, stores it in shared memory both as the tile and as
// its transpose, then writes C[ti-tile][tj-tile] and, for ti > tj, its mirror
// C[tj-tile][ti-tile] with coalesced rows; a diagonal tile writes once, taking
// every value from the lower half of the tile. Edges (r or k not multiples of
// the tile) load zeros and guard the stores. No atomics: each C element is
// written by one thread, and reruns give the same bits. Each element's sum
// runs over the same 16-wide k steps in the same order whatever T is, so the
// two tile sizes give the same bits too.
// tile = 0 picks T = 128 when that gives at least 256 blocks (count times the
// lower tiles), else T = 64 (more blocks for small batches); a choice fixed by
// the sizes alone.
//
// Alignment. The fast path loads X with 16-byte cp.async: X 16-byte aligned,
// ld a multiple of 8 and (count > 1) x_stride a multiple of 8. Otherwise the
// launcher falls back to scalar loads into the same shared tiles (same
// arithmetic, same bits, slower). Likewise C is written 16 bytes at a time when
// C is 16-byte aligned, r a multiple of 8 and (count > 1) c_stride a multiple
// of 8, else element by element. No configuration is refused for alignment.
//
// Work: a product of r x k by its transpose is 2 r^2 k FLOPs mathematically;
// this kernel computes nt(nt+1)/2 of the nt^2 tiles, about half of it (plus
// the diagonal tiles' upper halves). Callers count the mathematical FLOPs so
// that TFLOP/s stays comparable with the full cuBLASLt product.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

enum class GramLayout { kRowMajor, kColMajor };

// One matrix: C = alpha X X^T + beta D (see above). D may be null when beta == 0.
//   tile: 0 = chosen from the sizes; 64 or 128 forces the tile (tests, benchmarks).
// Enqueues on `stream` only. Throws std::invalid_argument for negative sizes,
// missing pointers, ld too small or another tile; std::runtime_error (CUDA_CHECK)
// for launch errors. r == 0 is a no-op; k == 0 gives C = beta D.
void symmetric_matmul(bf16* C, const bf16* X, int ld, GramLayout layout, const bf16* D, int r, int k, float alpha,
                      float beta, cudaStream_t stream, int tile = 0);

// count matrices of the same shape in one launch (count in [0, 65535]),
// strides in elements (see above).
void symmetric_matmul_batched(bf16* C, size_t c_stride, const bf16* X, int ld, size_t x_stride, GramLayout layout,
                              const bf16* D, size_t d_stride, int count, int r, int k, float alpha, float beta,
                              cudaStream_t stream, int tile = 0);

}  // namespace muongpt::gpu
