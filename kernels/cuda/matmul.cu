#include "kernels/cuda/matmul.cuh"

#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <tuple>

namespace muongpt::gpu {

namespace {

void cublas_check(cublasStatus_t status, const char* expr, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt error: ") + expr + " failed at " + file + ":" +
                             std::to_string(line) + ": " + cublasLtGetStatusString(status));
}
#define CUBLAS_CHECK(expr) cublas_check((expr), #expr, __FILE__, __LINE__)

// Largest power of two (up to 256) dividing the address: cuBLASLt's kernels
// have alignment requirements, and the heuristic must know what it gets.
unsigned alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  unsigned align = 256;
  while (align > 1 && (a % align) != 0) align /= 2;
  return align;
}

// Alignment of every product's operand in a strided batch: the base's, capped
// by the stride's (in bytes).
unsigned batch_alignment(const void* p, long long stride_bytes, int batch) {
  unsigned align = alignment_of(p);
  if (batch > 1 && stride_bytes != 0) {
    const unsigned s = alignment_of(reinterpret_cast<const void*>(static_cast<uintptr_t>(stride_bytes)));
    align = std::min(align, s);
  }
  return align;
}

using ProblemKey = std::tuple<bool, bool, int, int, int, int, int, int, bool, bool, unsigned, unsigned, unsigned, int,
                              long long, long long, long long>;

void set_batch(cublasLtMatrixLayout_t layout, int batch, long long stride);

// Column sums of dout over rows: one thread per column, rows in order.
__global__ void bias_backward_kernel(float* dbias, const bf16* dout, int N, int OC) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= OC) return;
  float sum = 0.0f;
  for (int n = 0; n < N; ++n) sum += bf2f(dout[static_cast<size_t>(n) * OC + o]);
  dbias[o] += sum;
}

}  // namespace

struct Matmul::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<ProblemKey, cublasLtMatmulAlgo_t> algos;
};

Matmul::Matmul(size_t workspace_bytes) : impl_(std::make_unique<Impl>()) {
  CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
  impl_->workspace_bytes = workspace_bytes;
  if (workspace_bytes) CUDA_CHECK(cudaMalloc(&impl_->workspace, workspace_bytes));
}

Matmul::~Matmul() {
  if (impl_->workspace) cudaFree(impl_->workspace);
  if (impl_->handle) cublasLtDestroy(impl_->handle);
}

size_t Matmul::cached_algorithms() const { return impl_->algos.size(); }

void Matmul::gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* A, int lda,
                  const bf16* B, int ldb, float beta, void* D, int ldd, bool d_is_fp32, const bf16* bias,
                  cudaStream_t stream) {
  run(trans_a, trans_b, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, D, ldd, 0, d_is_fp32, bias, 1, stream);
}

void Matmul::gemm_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* A, int lda,
                          long long stride_a, const bf16* B, int ldb, long long stride_b, float beta, void* D, int ldd,
                          long long stride_d, bool d_is_fp32, int batch, cudaStream_t stream) {
  require_arg(batch >= 0, "gemm_batched", "negative batch " + std::to_string(batch));
  require_arg(stride_a >= 0 && stride_b >= 0 && stride_d >= 0, "gemm_batched", "negative stride");
  if (batch == 0) return;
  require_arg(batch == 1 || stride_d > 0, "gemm_batched", "a batch needs a positive output stride");
  run(trans_a, trans_b, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, D, ldd, stride_d, d_is_fp32,
      nullptr, batch, stream);
}

void Matmul::run(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* A, int lda,
                 long long stride_a, const bf16* B, int ldb, long long stride_b, float beta, void* D, int ldd,
                 long long stride_d, bool d_is_fp32, const bf16* bias, int batch, cudaStream_t stream) {
  require_arg(m >= 0 && n >= 0 && k >= 0, "gemm", "negative size");
  if (m == 0 || n == 0 || batch == 0) return;
  require_arg(!(bias && d_is_fp32), "gemm", "a bias epilogue needs a bf16 output");
  const cudaDataType_t d_type = d_is_fp32 ? CUDA_R_32F : CUDA_R_16BF;

  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a_layout = nullptr, b_layout = nullptr, d_layout = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  try {
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (bias) {
      const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
      const cudaDataType_t bias_type = CUDA_R_16BF;
      CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    }
    // Stored shapes: op(A) is m x k, so A is (k x m) when transposed.
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_layout, CUDA_R_16BF, trans_a ? k : m, trans_a ? m : k, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_layout, CUDA_R_16BF, trans_b ? n : k, trans_b ? k : n, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d_layout, d_type, m, n, ldd));
    if (batch > 1) {
      set_batch(a_layout, batch, stride_a);
      set_batch(b_layout, batch, stride_b);
      set_batch(d_layout, batch, stride_d);
    }

    const long long d_elem = d_is_fp32 ? 4 : 2;
    const unsigned align_a = batch_alignment(A, 2 * stride_a, batch), align_b = batch_alignment(B, 2 * stride_b, batch),
                   align_d = batch_alignment(D, d_elem * stride_d, batch);
    const ProblemKey key{trans_a, trans_b, m, n, k, lda, ldb, ldd, d_is_fp32, bias != nullptr,
                         align_a, align_b, std::min(align_d, bias ? alignment_of(bias) : 256u),
                         batch, batch > 1 ? stride_a : 0, batch > 1 ? stride_b : 0, batch > 1 ? stride_d : 0};
    auto it = impl_->algos.find(key);
    if (it == impl_->algos.end()) {
      CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                        &impl_->workspace_bytes, sizeof(impl_->workspace_bytes)));
      const uint32_t aa = align_a, ab = align_b, ad = align_d;
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa,
                                                        sizeof(aa)));
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab,
                                                        sizeof(ab)));
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad,
                                                        sizeof(ad)));
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad,
                                                        sizeof(ad)));
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(impl_->handle, op, a_layout, b_layout, d_layout, d_layout, pref, 1,
                                                  &result, &found));
      if (found == 0)
        throw std::runtime_error("cuBLASLt: no algorithm for the product m=" + std::to_string(m) +
                                 " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                                 (d_is_fp32 ? " (fp32 output)" : " (bf16 output)"));
      it = impl_->algos.emplace(key, result.algo).first;
    }
    CUBLAS_CHECK(cublasLtMatmul(impl_->handle, op, &alpha, A, a_layout, B, b_layout, &beta, D, d_layout, D, d_layout,
                                &it->second, impl_->workspace, impl_->workspace_bytes, stream));
  } catch (...) {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (d_layout) cublasLtMatrixLayoutDestroy(d_layout);
    if (b_layout) cublasLtMatrixLayoutDestroy(b_layout);
    if (a_layout) cublasLtMatrixLayoutDestroy(a_layout);
    if (op) cublasLtMatmulDescDestroy(op);
    throw;
  }
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(d_layout);
  cublasLtMatrixLayoutDestroy(b_layout);
  cublasLtMatrixLayoutDestroy(a_layout);
  cublasLtMatmulDescDestroy(op);
}

namespace {
void set_batch(cublasLtMatrixLayout_t layout, int batch, long long stride) {
  const int32_t count = batch;
  const int64_t offset = stride;
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
  CUBLAS_CHECK(
      cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &offset, sizeof(offset)));
}
}  // namespace

void Matmul::forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC,
                     cudaStream_t stream) {
  require_arg(N >= 0 && C > 0 && OC > 0, "matmul_forward", "sizes must be positive");
  gemm(/*trans_a=*/true, /*trans_b=*/false, OC, N, C, 1.0f, weight, C, inp, C, 0.0f, out, OC, false, bias, stream);
}

void Matmul::backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp, const bf16* weight,
                      int N, int C, int OC, bool accumulate_dinp, cudaStream_t stream) {
  require_arg(N >= 0 && C > 0 && OC > 0, "matmul_backward", "sizes must be positive");
  if (N == 0) return;
  if (dinp)
    gemm(false, false, C, N, OC, 1.0f, weight, C, dout, OC, accumulate_dinp ? 1.0f : 0.0f, dinp, C, false, nullptr,
         stream);
  gemm(false, true, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dweight, C, true, nullptr, stream);
  if (dbias) bias_backward(dbias, dout, N, OC, stream);
}

void bias_backward(float* dbias, const bf16* dout, int N, int OC, cudaStream_t stream) {
  if (N <= 0 || OC <= 0) return;
  const int threads = 256;
  bias_backward_kernel<<<ceil_div(OC, threads), threads, 0, stream>>>(dbias, dout, N, OC);
  CUDA_CHECK_LAUNCH("bias_backward_kernel");
}

}  // namespace muongpt::gpu
