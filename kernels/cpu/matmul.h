// Matrix multiplication, the CPU reference (also the workhorse of the CPU
// trainer, so it is blocked for cache and registers).
//
// Row-major everywhere. A linear layer stores its weight as (out, in):
//   forward   Y[N,OC]  = X[N,C] . W[OC,C]^T + b[OC]
//   backward  dX[N,C]  = dY[N,OC] . W[OC,C]          (written or accumulated)
//             dW[OC,C] += dY[N,OC]^T . X[N,C]         (always accumulated, gemm_tn)
//             db[OC]   += sum_n dY[n,:]
//
// Determinism: every output element is produced by one thread and summed over
// k in increasing order, so results do not depend on the thread count or the
// blocking. The compiler may fuse a*b+c into one FMA (-ffp-contract=fast).
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

namespace muongpt::cpu {

namespace detail {

// C[MR x NR] += A[MR x kc] . B[kc x NR], accumulators held in registers.
template <class T, int MR, int NR>
inline void gemm_micro(int kc, const T* A, size_t lda, const T* B, size_t ldb, T* C, size_t ldc) {
  T acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = C[i * ldc + j];
  for (int k = 0; k < kc; ++k) {
    const T* b = B + k * ldb;
    for (int i = 0; i < MR; ++i) {
      const T a = A[i * lda + k];
      for (int j = 0; j < NR; ++j) acc[i][j] += a * b[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) C[i * ldc + j] = acc[i][j];
}

// The same arithmetic for edge tiles of any size (same summation order).
template <class T>
inline void gemm_edge(int mr, int nr, int kc, const T* A, size_t lda, const T* B, size_t ldb, T* C,
                      size_t ldc) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      T acc = C[i * ldc + j];
      for (int k = 0; k < kc; ++k) acc += A[i * lda + k] * B[k * ldb + j];
      C[i * ldc + j] = acc;
    }
}

// C[MR x NR] += A^T . B where A is stored (kc x MR) with row stride lda.
template <class T, int MR, int NR>
inline void gemm_tn_micro(int kc, const T* A, size_t lda, const T* B, size_t ldb, T* C, size_t ldc) {
  T acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = C[i * ldc + j];
  for (int k = 0; k < kc; ++k) {
    const T* a = A + k * lda;
    const T* b = B + k * ldb;
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) C[i * ldc + j] = acc[i][j];
}

template <class T>
inline void gemm_tn_edge(int mr, int nr, int kc, const T* A, size_t lda, const T* B, size_t ldb, T* C, size_t ldc) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      T acc = C[i * ldc + j];
      for (int k = 0; k < kc; ++k) acc += A[k * lda + i] * B[k * ldb + j];
      C[i * ldc + j] = acc;
    }
}

}  // namespace detail

// C[M,N] = beta*C + A[M,K] . B[K,N] with beta in {0, 1}.
// B is copied block by block into column panels of width NR (contiguous
// kc x NR slabs) so the inner kernel streams it; A is read in place.
template <class T>
void gemm_nn(int M, int N, int K, const T* A, size_t lda, const T* B, size_t ldb, T* C, size_t ldc,
             bool accumulate) {
  constexpr int MR = 4;
  constexpr int NR = 64 / static_cast<int>(sizeof(T)) * 2;  // 32 floats or 16 doubles
  constexpr int KC = 256;
  constexpr int NC = 2048;
  if (!accumulate) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
  }
  if (K == 0 || M == 0 || N == 0) return;
  const int row_tiles = (M + MR - 1) / MR;
  std::unique_ptr<T[]> packed(new T[static_cast<size_t>(KC) * NC]);  // uninitialised: fully written before use
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc);
    const int panels = (nc + NR - 1) / NR;
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc);
#pragma omp parallel for schedule(static)
      for (int p = 0; p < panels; ++p) {
        const int nr = std::min(NR, nc - p * NR);
        T* dst = packed.get() + static_cast<size_t>(p) * kc * NR;
        for (int k = 0; k < kc; ++k) {
          const T* src = B + (pc + k) * ldb + jc + p * NR;
          for (int j = 0; j < nr; ++j) dst[k * NR + j] = src[j];
        }
      }
#pragma omp parallel for schedule(static)
      for (int tile = 0; tile < row_tiles; ++tile) {
        const int ic = tile * MR;
        const int mr = std::min(MR, M - ic);
        const T* a = A + ic * lda + pc;
        T* c_row = C + ic * ldc + jc;
        for (int p = 0; p < panels; ++p) {
          const int nr = std::min(NR, nc - p * NR);
          const T* b = packed.get() + static_cast<size_t>(p) * kc * NR;
          if (mr == MR && nr == NR)
            detail::gemm_micro<T, MR, NR>(kc, a, lda, b, NR, c_row + p * NR, ldc);
          else
            detail::gemm_edge<T>(mr, nr, kc, a, lda, b, NR, c_row + p * NR, ldc);
        }
      }
    }
  }
}

// C[M,N] += A[K,M]^T . B[K,N]  (weight gradients: no transpose copy needed).
template <class T>
void gemm_tn(int M, int N, int K, const T* A, size_t lda, const T* B, size_t ldb, T* C, size_t ldc) {
  constexpr int MR = 8;
  constexpr int NR = 64 / static_cast<int>(sizeof(T)) * 2;
  constexpr int KC = 256;
  const int row_tiles = (M + MR - 1) / MR;
  for (int pc = 0; pc < K; pc += KC) {
    const int kc = std::min(KC, K - pc);
#pragma omp parallel for schedule(static)
    for (int tile = 0; tile < row_tiles; ++tile) {
      const int ic = tile * MR;
      const int mr = std::min(MR, M - ic);
      const T* a = A + pc * lda + ic;
      for (int jr = 0; jr < N; jr += NR) {
        const int nr = std::min(NR, N - jr);
        const T* b = B + pc * ldb + jr;
        T* c = C + ic * ldc + jr;
        if (mr == MR && nr == NR)
          detail::gemm_tn_micro<T, MR, NR>(kc, a, lda, b, ldb, c, ldc);
        else
          detail::gemm_tn_edge<T>(mr, nr, kc, a, lda, b, ldb, c, ldc);
      }
    }
  }
}

// out[cols, rows] = in[rows, cols]^T
template <class T>
void transpose(int rows, int cols, const T* in, T* out) {
  constexpr int B = 32;
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < cols; c0 += B)
    for (int r0 = 0; r0 < rows; r0 += B)
      for (int c = c0; c < std::min(cols, c0 + B); ++c)
        for (int r = r0; r < std::min(rows, r0 + B); ++r) out[static_cast<size_t>(c) * rows + r] = in[static_cast<size_t>(r) * cols + c];
}

// Y[N,OC] = X[N,C] . W[OC,C]^T (+ bias)
template <class T>
void matmul_forward(T* Y, const T* X, const T* W, const T* bias, int N, int C, int OC) {
  std::unique_ptr<T[]> wt(new T[static_cast<size_t>(C) * OC]);
  transpose(OC, C, W, wt.get());
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) std::copy(bias, bias + OC, Y + static_cast<size_t>(n) * OC);
  }
  gemm_nn(N, OC, C, X, C, wt.get(), OC, Y, OC, /*accumulate=*/bias != nullptr);
}

// dX (=|+=) dY . W ; dW += dY^T . X ; db += column sums of dY.
// dX may be null (no input gradient needed), dbias null when there is no bias.
template <class T>
void matmul_backward(T* dX, T* dW, T* dbias, const T* dY, const T* X, const T* W, int N, int C, int OC,
                     bool accumulate_dx) {
  if (dX) gemm_nn(N, C, OC, dY, OC, W, C, dX, C, accumulate_dx);
  gemm_tn(OC, C, N, dY, OC, X, C, dW, C);
  if (dbias) {
    constexpr int kChunk = 64;
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += kChunk) {
      const int o1 = std::min(OC, o0 + kChunk);
      for (int n = 0; n < N; ++n)
        for (int o = o0; o < o1; ++o) dbias[o] += dY[static_cast<size_t>(n) * OC + o];
    }
  }
}

}  // namespace muongpt::cpu
