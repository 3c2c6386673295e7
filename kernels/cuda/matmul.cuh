// Matrix multiplications of the linear layers, through cuBLASLt.
//
// The layout is the CPU reference's (kernels/cpu/matmul.h), row-major:
//   forward    out[N, OC]    = inp[N, C] . W[OC, C]^T (+ bias[OC])
//   backward   dinp[N, C]   (=|+=) dout[N, OC] . W[OC, C]
//              dW[OC, C]     += dout^T . inp              (fp32, accumulated)
//              dbias[OC]     += column sums of dout       (fp32, accumulated, fixed order)
// Inputs and activations are bf16, accumulation is fp32 (CUBLAS_COMPUTE_32F);
// weight and bias gradients are fp32 like every parameter gradient here.
//
// cuBLASLt is column-major: a row-major [R, K] matrix is a column-major
// [K, R] one. So, with lowercase for the column-major views:
//   out: m = OC, n = N, k = C:   out' = W'^T . inp'   (opA = T on W' [C, OC], opB = N on inp' [C, N])
//   dinp: m = C, n = N, k = OC:  dinp' = W' . dout'   (opA = N on W' [C, OC], opB = N on dout' [OC, N])
//   dW:  m = C, n = OC, k = N:   dW' = inp' . dout'^T (opA = N on inp' [C, N], opB = T on dout' [OC, N])
//
// One Matmul object per device owns the cuBLASLt handle and a workspace
// allocated once, and caches the heuristic's algorithm per problem (shape,
// transposes, types, epilogue and the alignment of the pointers), so the
// search runs once per shape. Same problem, same algorithm: reruns give the
// same bits.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <map>
#include <memory>
#include <string>

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

class Matmul {
 public:
  explicit Matmul(size_t workspace_bytes = size_t(32) << 20);
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // out = inp . W^T (+ bias); bias may be null.
  void forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC,
               cudaStream_t stream);

  // dinp may be null (no input gradient), dbias null when there is no bias.
  // accumulate_dinp: dinp += instead of =.
  void backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp, const bf16* weight,
                int N, int C, int OC, bool accumulate_dinp, cudaStream_t stream);

  // The general column-major product D = alpha op(A) op(B) + beta D, with
  // bf16 A and B and D in bf16 or fp32 (d_is_fp32). Leading dimensions are
  // the column-major ones. Used by the wrappers above and by Newton-Schulz.
  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* A, int lda, const bf16* B,
            int ldb, float beta, void* D, int ldd, bool d_is_fp32, const bf16* bias, cudaStream_t stream);

  // Strided-batched form of gemm (no bias): for i in [0, batch),
  //   D + i*stride_d = alpha op(A + i*stride_a) op(B + i*stride_b) + beta (D + i*stride_d)
  // in one cuBLASLt call (CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT and
  // CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET on each layout). Strides are in
  // elements of the operand's type (bf16; D: fp32 when d_is_fp32); a stride of 0
  // reuses one operand for every product. batch == 1 is exactly gemm() (the same
  // cuBLASLt problem, so the same bits). The alignment the heuristic is told is
  // the smallest over every product's pointers, so any stride is valid.
  void gemm_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* A, int lda,
                    long long stride_a, const bf16* B, int ldb, long long stride_b, float beta, void* D, int ldd,
                    long long stride_d, bool d_is_fp32, int batch, cudaStream_t stream);

  // Number of distinct problems whose algorithm is cached (for tests).
  size_t cached_algorithms() const;

 private:
  void run(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* A, int lda, long long stride_a,
           const bf16* B, int ldb, long long stride_b, float beta, void* D, int ldd, long long stride_d,
           bool d_is_fp32, const bf16* bias, int batch, cudaStream_t stream);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// dbias[o] += sum over rows n of dout[n, o], rows summed in order (deterministic).
void bias_backward(float* dbias, const bf16* dout, int N, int OC, cudaStream_t stream);

}  // namespace muongpt::gpu
