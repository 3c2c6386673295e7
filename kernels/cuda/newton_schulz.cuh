// Newton-Schulz orthogonalisation (Muon) on the GPU, the bf16 version of
// kernels/cpu/newton_schulz.h (same formula, same normalisation, same eps):
//
//   X0 = G / (norm_scale * ||G||_F + eps)          (fp32 division, then bf16)
//   work on the wide orientation, r = min(rows, cols) <= c = max(rows, cols):
//   for each (a, b, c) in the table:
//     A = X X^T                    (r x r)
//     B = b A + c A A              one gemm: alpha = c, beta = b onto a copy of A
//     X = a X + B X                one gemm: alpha = 1, beta = a onto a copy of X
//   out = X, in G's layout (transposed back when rows > cols)
//
// Numerics: X, A and B are stored in bf16, every product accumulates in fp32
// (cuBLASLt, CUBLAS_COMPUTE_32F) and alpha*acc + beta*C is formed in fp32
// before the bf16 rounding. ||G||_F^2 is the deterministic two-pass double sum
// of reduce.cuh (no atomics); the normalisation reads it on the device, so
// nothing synchronises with the host. One difference from the CPU: when the
// denominator is exactly 0 (G == 0 and eps == 0) the output is 0, not NaN.
//
// Layout, and why no transposition kernel is needed. cuBLASLt is
// column-major: a buffer holding a row-major (p x q) matrix M holds the
// column-major (q x p) matrix M^T. Below, [X], [A], [B] and [X'] are the
// buffers, read column-major, with their leading dimension (ld).
//   wide, rows <= cols (r = rows, c = cols): [X] holds X row-major, i.e. the
//   column-major c x r matrix Y = X^T (ld c). [A] and [B] then hold A^T and
//   B^T (so their row-major contents are A and B):
//     [A]  = A^T = (X X^T)^T = Y^T Y         gemm(T, N, m=r, n=r, k=c, [X] ld c, [X] ld c)        -> [A] ld r
//     [B]  = B^T = b A^T + c A^T A^T         [B] <- [A]; gemm(N, N, r, r, r, alpha=c, [A], [A], beta=b) -> [B] ld r
//     [X'] = X'^T = a X^T + X^T B^T          [X'] <- [X]; gemm(N, N, m=c, n=r, k=r, alpha=1,
//                 = a Y + Y [B]                   [X] ld c, [B] ld r, beta=a)                   -> [X'] ld c
//   tall, rows > cols (r = cols, c = rows): G's row-major (rows x cols)
//   buffer, read column-major, is the (cols x rows) = (r x c) matrix G^T,
//   which is exactly the CPU's transposed working matrix. So the iteration
//   runs on X stored column-major (ld r), and the result, column-major r x c,
//   is row-major rows x cols: out's layout. No transpose in or out:
//     [A]  = A = X X^T                       gemm(N, T, m=r, n=r, k=c, [X] ld r, [X] ld r)        -> [A] ld r
//     [B]  = B = b A + c A A                 [B] <- [A]; gemm(N, N, r, r, r, alpha=c, [A], [A], beta=b) -> [B] ld r
//     [X'] = X' = a X + B X                  [X'] <- [X]; gemm(N, N, m=r, n=c, k=r, alpha=1,
//                                                 [B] ld r, [X] ld r, beta=a)                   -> [X'] ld r
// Neither case relies on A being symmetric (A^T A^T = (A A)^T exactly). The
// copies ([B] <- [A], [X'] <- [X]) are there because cuBLASLt's inputs may not alias
// its output; they are cudaMemcpyAsync on the stream.
//
// The symmetric Gram kernel (NsGramKernel::kSymmetric, symmetric_matmul.cuh)
// replaces the first two GEMMs: it computes only the lower-triangle tiles and
// mirrors them, so [A] and [B] come out exactly symmetric (bit for bit, so a
// buffer read as the matrix or as its transpose is the same):
//     [A]  = X X^T        symmetric_matmul(alpha = 1, beta = 0): wide, X row-major
//                         r x c in [X] (kRowMajor, ld c); tall, X column-major (kColMajor, ld r)
//     [B]  = c A A^T + b A = b A + c A A     symmetric_matmul(X := [A], k = r, alpha = c,
//                         D := [A], beta = b): D is read in place, no [B] <- [A] copy
//     [X'] = a X + B X    the cuBLASLt GEMM above (unchanged; B = B^T)
// About half the FLOPs of the two full products. FLOP counts (bench --optimizer,
// DeviceOptimizer's ns_flops) stay the mathematical ones, 2 r^2 c + 2 r^3 for
// these two products, so that TFLOP/s compares across the two kernels.
//
// Buffers: X ping-pongs between `out` and the workspace's X area, starting
// where `steps` iterations end in `out` (no final copy). The workspace holds
// X (rows*cols), A and B (r*r each), each area padded to 256 bytes so the
// cuBLASLt operands stay 256-byte aligned when `workspace` is.
// newton_schulz_workspace(rows, cols) is its size in bf16 elements; scratch
// holds newton_schulz_scratch_doubles() doubles (the sum of squares). out,
// workspace and scratch must not overlap each other or G.
//
// Batched form (newton_schulz_batched): `count` same-shape matrices, G_i at
// G + i*g_stride and out_i at out + i*out_stride, each orthogonalised exactly as
// newton_schulz would do it alone (its own ||G_i||_F), with every product a
// strided-batched cuBLASLt GEMM (Matmul::gemm_batched) over the batch: 3 GEMMs
// per iteration whatever the count. The workspace holds the X areas of all
// matrices, then all A areas, then all B areas (each padded as above);
// newton_schulz_batched_workspace(count, rows, cols) == count *
// newton_schulz_workspace(rows, cols). The per-matrix sums of squares are the
// same two-pass deterministic sums as reduce.cuh (the same block count, the
// same order), so ||G_i|| has the same bits as in a single call, and
// newton_schulz(...) is newton_schulz_batched(count = 1). Whether cuBLASLt picks
// the same kernel for a batch as for one matrix is its choice: a batch agrees
// with separate calls to fp32 accumulation-order level, not necessarily in bits.
// With kSymmetric the two Gram products are one symmetric_matmul launch each
// over the batch, with the same bits as for one matrix (its tile choice does
// not change any element's summation order); the X update is still cuBLASLt's.
//
// Fused q/k/v (optimizer.cpp, MuonBlock): each row block is orthogonalised on
// its own; call newton_schulz once per block with G + row0*cols,
// out + row0*cols and rows = the block's rows (a row block of a row-major
// matrix is contiguous), reusing one workspace sized for the largest block.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/matmul.cuh"

namespace muongpt::gpu {

// Which kernel forms A = X X^T and B = b A + c A A (the X update is cuBLASLt in both):
//   kCublasLt   two cuBLASLt GEMMs over the full r x r products, and the [B] <- [A] copy;
//   kSymmetric  symmetric_matmul (lower-triangle tiles, mirrored), D read in place;
//   kAuto       kSymmetric when kSymmetricGramVerified, else kCublasLt.
enum class NsGramKernel { kAuto, kCublasLt, kSymmetric };
// Set to true once the symmetric tests of tests/gpu (test_symmetric_matmul.cpp and
// the kSymmetric cases of test_newton_schulz.cpp) pass on a GPU; then the symmetric
// kernel becomes the default (kAuto), for the DeviceOptimizer too.
inline constexpr bool kSymmetricGramVerified = false;

// One iteration's X <- a X + b (X X^T) X + c (X X^T)^2 X.
struct NsCoefficients {
  float a, b, c;
};

// The config's table (NewtonSchulzConfig::table(), doubles) as the kernel's
// float triples: the same float values the CPU reference uses.
inline std::vector<NsCoefficients> ns_coefficients(const std::vector<std::array<double, 3>>& table) {
  std::vector<NsCoefficients> out;
  out.reserve(table.size());
  for (const auto& t : table) out.push_back({static_cast<float>(t[0]), static_cast<float>(t[1]), static_cast<float>(t[2])});
  return out;
}

// Workspace in bf16 elements for a rows x cols matrix: X (rows*cols) and the
// Gram matrices A and B (min(rows, cols)^2 each), each padded to 128 elements.
size_t newton_schulz_workspace(int rows, int cols);

// Doubles of `scratch`: the deterministic sum's partials and its result.
size_t newton_schulz_scratch_doubles();

// Orthogonalises G (rows x cols, row-major, fp32: e.g. Muon's momentum-blended
// gradient) into out (rows x cols, row-major, bf16).
//   coeffs:      host array of `steps` triples, read while enqueuing (steps >= 0;
//                steps == 0 writes the normalised G)
//   norm_scale, eps: X0 = G / (norm_scale * ||G||_F + eps) (config ns.norm_scale,
//                ns.norm_eps: 1 and 1e-7 for the quintic, 1.02 and 1e-6 for Polar Express)
//   workspace:   newton_schulz_workspace(rows, cols) bf16 elements
//   scratch:     newton_schulz_scratch_doubles() doubles
//   gram:        the kernel of the two Gram products (see NsGramKernel)
// Enqueues on `stream` only; no host synchronisation. Throws
// std::invalid_argument for negative sizes or steps, or missing pointers.
void newton_schulz(bf16* out, const float* G, int rows, int cols, const NsCoefficients* coeffs, int steps,
                   float norm_scale, float eps, bf16* workspace, double* scratch, Matmul& mm, cudaStream_t stream,
                   NsGramKernel gram = NsGramKernel::kAuto);

// Workspace (bf16 elements) and scratch (doubles) of a batch of `count` matrices.
size_t newton_schulz_batched_workspace(int count, int rows, int cols);
size_t newton_schulz_batched_scratch_doubles(int count);

// Orthogonalises count matrices G_i = G + i*g_stride (fp32, rows x cols,
// row-major) into out + i*out_stride (bf16), each on its own (see above).
// Strides are in elements, at least rows*cols; the out matrices must not
// overlap each other, G, the workspace or the scratch.
void newton_schulz_batched(bf16* out, size_t out_stride, const float* G, size_t g_stride, int count, int rows,
                           int cols, const NsCoefficients* coeffs, int steps, float norm_scale, float eps,
                           bf16* workspace, double* scratch, Matmul& mm, cudaStream_t stream,
                           NsGramKernel gram = NsGramKernel::kAuto);

}  // namespace muongpt::gpu
