// Newton-Schulz orthogonalisation on the GPU: see newton_schulz.cuh for the
// math and the derivation of the column-major gemm calls.
#include "kernels/cuda/newton_schulz.cuh"

#include <string>
#include <utility>

#include "kernels/cuda/reduce.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kThreads = 256;
constexpr size_t kPad = 128;  // bf16 elements = 256 bytes

size_t padded(size_t n) { return ceil_div(n, kPad) * kPad; }

// X[i] = bf16(G[i] / (norm_scale * sqrt(*sum_sq) + eps)), 8 elements per
// thread, element order unchanged (the layout needs no transpose, see the
// header). The division is the CPU's (v /= denom), rounded once to bf16; the
// denominator avoids FMA contraction to stay the CPU's float expression.
__global__ void ns_normalise_kernel(bf16* __restrict__ X, const float* __restrict__ G, size_t n,
                                    const double* __restrict__ sum_sq, float norm_scale, float eps, bool vec) {
  const size_t i0 = (static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i0 >= n) return;
  const float norm = static_cast<float>(sqrt(*sum_sq));
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

}  // namespace

size_t newton_schulz_workspace(int rows, int cols) {
  require_arg(rows >= 0 && cols >= 0, "newton_schulz_workspace",
              "negative size " + std::to_string(rows) + "x" + std::to_string(cols));
  const size_t r = static_cast<size_t>(rows < cols ? rows : cols);
  return padded(static_cast<size_t>(rows) * cols) + 2 * padded(r * r);
}

size_t newton_schulz_scratch_doubles() { return reduce_scratch_doubles() + 1; }

void newton_schulz(bf16* out, const float* G, int rows, int cols, const NsCoefficients* coeffs, int steps,
                   float norm_scale, float eps, bf16* workspace, double* scratch, Matmul& mm, cudaStream_t stream) {
  const char* op = "newton_schulz";
  require_arg(rows >= 0 && cols >= 0, op, "negative size " + std::to_string(rows) + "x" + std::to_string(cols));
  require_arg(steps >= 0, op, "negative steps " + std::to_string(steps));
  if (rows == 0 || cols == 0) return;
  require_arg(out && G && workspace && scratch, op, "out, G, workspace and scratch are required");
  require_arg(steps == 0 || coeffs, op, "coefficients are required for " + std::to_string(steps) + " steps");

  const bool tall = rows > cols;
  const int r = tall ? cols : rows;  // the wide working matrix is r x c, r <= c
  const int c = tall ? rows : cols;
  const size_t n = static_cast<size_t>(rows) * cols;
  const size_t rr = static_cast<size_t>(r) * r;
  bf16* const x_ws = workspace;
  bf16* const A = workspace + padded(n);
  bf16* const B = A + padded(rr);

  // ||G||_F^2, deterministic, left on the device.
  double* const sum_sq = scratch + reduce_scratch_doubles();
  sum_squares_f32(sum_sq, G, n, scratch, stream);

  // X ping-pongs between out and x_ws; start where the last step lands in out.
  bf16* cur = steps % 2 == 0 ? out : x_ws;
  bf16* next = cur == out ? x_ws : out;
  const bool vec = aligned16(G) && aligned16(cur);
  const unsigned blocks = static_cast<unsigned>(ceil_div(n, static_cast<size_t>(kThreads) * 8));
  ns_normalise_kernel<<<blocks, kThreads, 0, stream>>>(cur, G, n, sum_sq, norm_scale, eps, vec);
  CUDA_CHECK_LAUNCH("ns_normalise_kernel");

  for (int it = 0; it < steps; ++it) {
    const NsCoefficients k = coeffs[it];
    // [A] = X X^T (tall: X column-major, ld r) or Y^T Y = A^T (wide: Y = X^T column-major, ld c)
    if (tall)
      mm.gemm(false, true, r, r, c, 1.0f, cur, r, cur, r, 0.0f, A, r, false, nullptr, stream);
    else
      mm.gemm(true, false, r, r, c, 1.0f, cur, c, cur, c, 0.0f, A, r, false, nullptr, stream);
    // [B] = b [A] + c [A][A]   (B, or B^T = b A^T + c A^T A^T when wide)
    CUDA_CHECK(cudaMemcpyAsync(B, A, rr * sizeof(bf16), cudaMemcpyDeviceToDevice, stream));
    mm.gemm(false, false, r, r, r, k.c, A, r, A, r, k.b, B, r, false, nullptr, stream);
    // [X'] = a [X] + (tall: [B][X], the r x c product B X; wide: [X][B], the c x r product X^T B^T)
    CUDA_CHECK(cudaMemcpyAsync(next, cur, n * sizeof(bf16), cudaMemcpyDeviceToDevice, stream));
    if (tall)
      mm.gemm(false, false, r, c, r, 1.0f, B, r, cur, r, k.a, next, r, false, nullptr, stream);
    else
      mm.gemm(false, false, c, r, r, 1.0f, cur, c, B, r, k.a, next, c, false, nullptr, stream);
    std::swap(cur, next);
  }
}

}  // namespace muongpt::gpu
