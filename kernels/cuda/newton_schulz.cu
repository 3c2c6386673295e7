// Newton-Schulz orthogonalisation on the GPU: see newton_schulz.cuh for the
// math and the derivation of the column-major gemm calls.
#include "kernels/cuda/newton_schulz.cuh"

#include <string>
#include <utility>

#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/symmetric_matmul.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kThreads = 256;
constexpr size_t kPad = 128;  // bf16 elements = 256 bytes

size_t padded(size_t n) { return ceil_div(n, kPad) * kPad; }

// Per-matrix sums of squares of a batch, the two passes of reduce.cu with
// blockIdx.y selecting the matrix: the same grid per matrix and the same
// order, so each sum has the bits sum_squares_f32 gives for that matrix alone.
__global__ void ns_sum_squares_partial_kernel(double* __restrict__ partial, const float* __restrict__ G,
                                              size_t g_stride, size_t n) {
  const float* x = G + static_cast<size_t>(blockIdx.y) * g_stride;
  double acc = 0.0;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const double v = x[i];
    acc += v * v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[static_cast<size_t>(blockIdx.y) * gridDim.x + blockIdx.x] = acc;
}

__global__ void ns_sum_squares_finish_kernel(double* __restrict__ sum_sq, const double* __restrict__ partial,
                                             int blocks) {
  const double* p = partial + static_cast<size_t>(blockIdx.x) * blocks;
  double acc = 0.0;
  for (int k = threadIdx.x; k < blocks; k += blockDim.x) acc += p[k];
  acc = block_sum(acc);
  if (threadIdx.x == 0) sum_sq[blockIdx.x] = acc;
}

// X_j[i] = bf16(G_j[i] / (norm_scale * sqrt(sum_sq[j]) + eps)), matrix j =
// blockIdx.y, 8 elements per thread, element order unchanged (the layout
// needs no transpose, see the header). The division is the CPU's (v /= denom),
// rounded once to bf16; the denominator avoids FMA contraction to stay the
// CPU's float expression.
__global__ void ns_normalise_kernel(bf16* __restrict__ X, size_t x_stride, const float* __restrict__ G,
                                    size_t g_stride, size_t n, const double* __restrict__ sum_sq, float norm_scale,
                                    float eps, bool vec) {
  const size_t i0 = (static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i0 >= n) return;
  const size_t j = blockIdx.y;
  X += j * x_stride;
  G += j * g_stride;
  const float norm = static_cast<float>(sqrt(sum_sq[j]));
  const float denom = __fadd_rn(__fmul_rn(norm_scale, norm), eps);
  const int count = n - i0 < 8 ? static_cast<int>(n - i0) : 8;
  float v[8];
  if (vec && count == 8) {
    const float4 lo = *reinterpret_cast<const float4*>(G + i0);
    const float4 hi = *reinterpret_cast<const float4*>(G + i0 + 4);
    v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w;
    v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
  } else {
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = k < count ? G[i0 + k] : 0.0f;
  }
  // denom == 0 only for G == 0 with eps == 0: give 0 rather than 0/0. A NaN
  // denominator (non-finite G) still propagates.
#pragma unroll
  for (int k = 0; k < 8; ++k) v[k] = denom == 0.0f ? 0.0f : __fdiv_rn(v[k], denom);
  store_upto8(X + i0, count, vec, v);
}

// Blocks of the first reduction pass for n elements (as reduce.cu).
int sum_blocks(size_t n) {
  const size_t needed = ceil_div(n, static_cast<size_t>(kThreads) * 4);  // >= 4 elements per thread
  return static_cast<int>(needed < static_cast<size_t>(kReduceBlocks) ? needed : kReduceBlocks);
}

}  // namespace

size_t newton_schulz_workspace(int rows, int cols) {
  require_arg(rows >= 0 && cols >= 0, "newton_schulz_workspace",
              "negative size " + std::to_string(rows) + "x" + std::to_string(cols));
  const size_t r = static_cast<size_t>(rows < cols ? rows : cols);
  return padded(static_cast<size_t>(rows) * cols) + 2 * padded(r * r);
}

size_t newton_schulz_scratch_doubles() { return newton_schulz_batched_scratch_doubles(1); }

size_t newton_schulz_batched_workspace(int count, int rows, int cols) {
  require_arg(count >= 0, "newton_schulz_batched_workspace", "negative count " + std::to_string(count));
  return static_cast<size_t>(count) * newton_schulz_workspace(rows, cols);
}

size_t newton_schulz_batched_scratch_doubles(int count) {
  require_arg(count >= 0, "newton_schulz_batched_scratch_doubles", "negative count " + std::to_string(count));
  return static_cast<size_t>(count) * (reduce_scratch_doubles() + 1);
}

void newton_schulz(bf16* out, const float* G, int rows, int cols, const NsCoefficients* coeffs, int steps,
                   float norm_scale, float eps, bf16* workspace, double* scratch, Matmul& mm, cudaStream_t stream,
                   NsGramKernel gram) {
  const size_t n = static_cast<size_t>(rows > 0 ? rows : 0) * static_cast<size_t>(cols > 0 ? cols : 0);
  newton_schulz_batched(out, n, G, n, 1, rows, cols, coeffs, steps, norm_scale, eps, workspace, scratch, mm, stream,
                        gram);
}

void newton_schulz_batched(bf16* out, size_t out_stride, const float* G, size_t g_stride, int count, int rows,
                           int cols, const NsCoefficients* coeffs, int steps, float norm_scale, float eps,
                           bf16* workspace, double* scratch, Matmul& mm, cudaStream_t stream, NsGramKernel gram) {
  const char* op = "newton_schulz";
  require_arg(rows >= 0 && cols >= 0, op, "negative size " + std::to_string(rows) + "x" + std::to_string(cols));
  require_arg(steps >= 0, op, "negative steps " + std::to_string(steps));
  require_arg(count >= 0 && count <= 65535, op, "batch count " + std::to_string(count) + " outside [0, 65535]");
  if (rows == 0 || cols == 0 || count == 0) return;
  require_arg(out && G && workspace && scratch, op, "out, G, workspace and scratch are required");
  require_arg(steps == 0 || coeffs, op, "coefficients are required for " + std::to_string(steps) + " steps");

  const bool tall = rows > cols;
  const int r = tall ? cols : rows;  // the wide working matrix is r x c, r <= c
  const int c = tall ? rows : cols;
  const size_t n = static_cast<size_t>(rows) * cols;
  const size_t rr = static_cast<size_t>(r) * r;
  require_arg(count == 1 || (out_stride >= n && g_stride >= n), op, "batch strides must be at least rows*cols");
  const size_t xs = padded(n), as = padded(rr);  // workspace strides
  const size_t batch = static_cast<size_t>(count);
  bf16* const x_ws = workspace;
  bf16* const A = workspace + batch * xs;
  bf16* const B = A + batch * as;

  // ||G_j||_F^2, deterministic, left on the device.
  const int blocks = sum_blocks(n);
  double* const partial = scratch;                                   // count * blocks <= count * kReduceBlocks
  double* const sum_sq = scratch + batch * reduce_scratch_doubles();  // count
  ns_sum_squares_partial_kernel<<<dim3(blocks, count), kThreads, 0, stream>>>(partial, G, g_stride, n);
  CUDA_CHECK_LAUNCH("ns_sum_squares_partial_kernel");
  ns_sum_squares_finish_kernel<<<count, kThreads, 0, stream>>>(sum_sq, partial, blocks);
  CUDA_CHECK_LAUNCH("ns_sum_squares_finish_kernel");

  // X ping-pongs between out and x_ws; start where the last step lands in out.
  struct Buf {
    bf16* p;
    size_t stride;
  };
  Buf cur = steps % 2 == 0 ? Buf{out, count == 1 ? n : out_stride} : Buf{x_ws, xs};
  Buf next = cur.p == out ? Buf{x_ws, xs} : Buf{out, count == 1 ? n : out_stride};
  const size_t gs = count == 1 ? n : g_stride;
  const bool vec = aligned16(G) && aligned16(cur.p) && (count == 1 || (gs % 4 == 0 && cur.stride % 8 == 0));
  const unsigned xblocks = static_cast<unsigned>(ceil_div(n, static_cast<size_t>(kThreads) * 8));
  ns_normalise_kernel<<<dim3(xblocks, count), kThreads, 0, stream>>>(cur.p, cur.stride, G, gs, n, sum_sq,
                                                                      norm_scale, eps, vec);
  CUDA_CHECK_LAUNCH("ns_normalise_kernel");

  const bool symmetric = gram == NsGramKernel::kSymmetric || (gram == NsGramKernel::kAuto && kSymmetricGramVerified);
  const auto ll = [](size_t v) { return static_cast<long long>(v); };
  for (int it = 0; it < steps; ++it) {
    const NsCoefficients k = coeffs[it];
    if (symmetric) {
      // [A] = X X^T, exactly symmetric (wide: X row-major r x c, ld c; tall: column-major, ld r)
      symmetric_matmul_batched(A, as, cur.p, tall ? r : c, cur.stride,
                               tall ? GramLayout::kColMajor : GramLayout::kRowMajor, nullptr, 0, count, r, c, 1.0f,
                               0.0f, stream);
      // [B] = c A A^T + b A = b A + c A A, reading [A] in place (symmetric, so B^T = B)
      symmetric_matmul_batched(B, as, A, r, as, GramLayout::kRowMajor, A, as, count, r, r, k.c, k.b, stream);
    } else {
      // [A] = X X^T (tall: X column-major, ld r) or Y^T Y = A^T (wide: Y = X^T column-major, ld c)
      if (tall)
        mm.gemm_batched(false, true, r, r, c, 1.0f, cur.p, r, ll(cur.stride), cur.p, r, ll(cur.stride), 0.0f, A, r,
                        ll(as), false, count, stream);
      else
        mm.gemm_batched(true, false, r, r, c, 1.0f, cur.p, c, ll(cur.stride), cur.p, c, ll(cur.stride), 0.0f, A, r,
                        ll(as), false, count, stream);
      // [B] = b [A] + c [A][A]   (B, or B^T = b A^T + c A^T A^T when wide)
      CUDA_CHECK(cudaMemcpyAsync(B, A, ((batch - 1) * as + rr) * sizeof(bf16), cudaMemcpyDeviceToDevice, stream));
      mm.gemm_batched(false, false, r, r, r, k.c, A, r, ll(as), A, r, ll(as), k.b, B, r, ll(as), false, count,
                      stream);
    }
    // [X'] = a [X] + (tall: [B][X], the r x c product B X; wide: [X][B], the c x r product X^T B^T)
    CUDA_CHECK(cudaMemcpy2DAsync(next.p, next.stride * sizeof(bf16), cur.p, cur.stride * sizeof(bf16),
                                 n * sizeof(bf16), batch, cudaMemcpyDeviceToDevice, stream));
    if (tall)
      mm.gemm_batched(false, false, r, c, r, 1.0f, B, r, ll(as), cur.p, r, ll(cur.stride), k.a, next.p, r,
                      ll(next.stride), false, count, stream);
    else
      mm.gemm_batched(false, false, c, r, r, 1.0f, cur.p, c, ll(cur.stride), B, r, ll(as), k.a, next.p, c,
                      ll(next.stride), false, count, stream);
    std::swap(cur, next);
  }
}

}  // namespace muongpt::gpu
