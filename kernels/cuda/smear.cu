// Smear, forward and backward: see smear.cuh.
#include "kernels/cuda/smear.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kRowThreads = 256;  // 8 warps = 8 tokens per block
constexpr int kRowsPerBlock = kRowThreads / 32;
constexpr int kColThreads = 128;

// One warp per token n: the gate from e[n, :K] . w, then y[n] = e[n] + lambda * g * e[n-1].
__global__ void smear_forward_kernel(bf16* y, float* g, const bf16* e, const float* w, const float* lambda, int N,
                                     int T, int C, int K, bool vec) {
  const int lane = threadIdx.x & 31;
  const size_t n = static_cast<size_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (n >= static_cast<size_t>(N)) return;  // the whole warp leaves together
  const bool first = n % static_cast<size_t>(T) == 0;  // a sequence's first token has no predecessor
  const bf16* er = e + n * C;
  float s = 0.0f;
  if (!first) {
    float z = 0.0f;
    for (int i = lane; i < K; i += 32) z += bf2f(er[i]) * w[i];
    const float gate = 1.0f / (1.0f + expf(-warp_sum(z)));  // every lane has the same bits
    s = *lambda * gate;
    if (lane == 0) g[n] = gate;
  } else if (lane == 0) {
    g[n] = 0.0f;
  }
  for (int c = lane * 8; c < C; c += 32 * 8) {
    const int count = min(8, C - c);
    float v[8];
    load_upto8(er + c, count, vec, v);
    if (!first) {
      float prev[8];
      load_upto8(er - C + c, count, vec, prev);
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] += s * prev[k];
    }
    store_upto8(y + n * C + c, count, vec, v);
  }
}

// One warp per token n: r = dy[n] . e[n-1], dz[n] and gr[n] = g*r (0 at a
// sequence start), then de[n] = dy[n] + s_{n+1} dy[n+1] + dz[n] * w (first K channels).
__global__ void smear_backward_rows_kernel(bf16* de, float* dz, float* gr, const bf16* dy, const bf16* e,
                                           const float* g, const float* w, const float* lambda, int N, int T, int C,
                                           int K, bool vec) {
  const int lane = threadIdx.x & 31;
  const size_t n = static_cast<size_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (n >= static_cast<size_t>(N)) return;  // the whole warp leaves together
  const float lam = *lambda;
  const bool first = n % static_cast<size_t>(T) == 0;
  // the next token takes from this one when it belongs to the same sequence
  const bool has_next = (n + 1) % static_cast<size_t>(T) != 0;
  const bf16* dyr = dy + n * C;
  float dzn = 0.0f;
  if (!first) {
    float dot = 0.0f;
    for (int c = lane * 8; c < C; c += 32 * 8) {
      const int count = min(8, C - c);
      float vdy[8], vprev[8];
      load_upto8(dyr + c, count, vec, vdy);
      load_upto8(e + (n - 1) * C + c, count, vec, vprev);
#pragma unroll
      for (int k = 0; k < 8; ++k) dot += vdy[k] * vprev[k];  // zero-filled beyond count
    }
    dot = warp_sum(dot);
    const float gate = g[n];
    dzn = lam * dot * gate * (1.0f - gate);
    if (lane == 0) {
      dz[n] = dzn;
      gr[n] = gate * dot;
    }
  } else if (lane == 0) {
    dz[n] = 0.0f;
    gr[n] = 0.0f;
  }
  const float s_next = has_next ? lam * g[n + 1] : 0.0f;
  for (int c = lane * 8; c < C; c += 32 * 8) {
    const int count = min(8, C - c);
    float v[8];
    load_upto8(dyr + c, count, vec, v);
    if (has_next) {
      float vnext[8];
      load_upto8(dyr + C + c, count, vec, vnext);
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] += s_next * vnext[k];
    }
    if (c < K) {
#pragma unroll
      for (int k = 0; k < 8; ++k)
        if (c + k < K) v[k] += dzn * w[c + k];
    }
    store_upto8(de + n * C + c, count, vec, v);
  }
}

// partial[chunk][j] over the chunk's tokens: sum dz[n] * e[n,j] for j < K, sum gr[n] for j = K.
__global__ void smear_partial_kernel(float* partial, const float* dz, const float* gr, const bf16* e, int N, int C,
                                     int K) {
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j > K) return;
  const size_t chunk = blockIdx.x;
  const size_t begin = chunk * kSmearRowsPerChunk, end = min(begin + kSmearRowsPerChunk, static_cast<size_t>(N));
  float s = 0.0f;
  if (j < K) {
    for (size_t n = begin; n < end; ++n) s += dz[n] * bf2f(e[n * C + j]);
  } else {
    for (size_t n = begin; n < end; ++n) s += gr[n];
  }
  partial[chunk * (K + 1) + j] = s;
}

// dw[j] (j < K) and dlambda (j = K) += the chunks' partial sums, in chunk order.
__global__ void smear_finish_kernel(float* dw, float* dlambda, const float* partial, int chunks, int K) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j > K) return;
  float s = 0.0f;
  for (int c = 0; c < chunks; ++c) s += partial[static_cast<size_t>(c) * (K + 1) + j];
  if (j < K)
    dw[j] += s;
  else
    *dlambda += s;
}

void check_shapes(const char* op, int B, int T, int C, int K) {
  require_arg(B >= 0 && T > 0 && C > 0, op, "bad sizes");
  require_arg(K > 0 && K <= C, op, "K must be in [1, C]");
}

unsigned row_blocks(int N) { return ceil_div(static_cast<unsigned>(N), static_cast<unsigned>(kRowsPerBlock)); }

}  // namespace

size_t smear_backward_scratch_floats(int N, int K) {
  if (N <= 0 || K <= 0) return 0;
  const size_t chunks = ceil_div(static_cast<size_t>(N), static_cast<size_t>(kSmearRowsPerChunk));
  return 2 * static_cast<size_t>(N) + chunks * (static_cast<size_t>(K) + 1);
}

void smear_forward(bf16* y, float* g, const bf16* e, const float* w, const float* lambda, int B, int T, int C, int K,
                   cudaStream_t stream) {
  const char* op = "smear_forward";
  check_shapes(op, B, T, C, K);
  const int N = B * T;
  if (N == 0) return;
  require_arg(y && g && e && w && lambda, op, "y, g, e, w and lambda are required");
  require_arg(y != e, op, "y must not alias e");
  const bool vec = C % 8 == 0 && aligned16(y) && aligned16(e);
  smear_forward_kernel<<<row_blocks(N), kRowThreads, 0, stream>>>(y, g, e, w, lambda, N, T, C, K, vec);
  CUDA_CHECK_LAUNCH("smear_forward_kernel");
}

void smear_backward(bf16* de, float* dw, float* dlambda, const bf16* dy, const bf16* e, const float* g,
                    const float* w, const float* lambda, int B, int T, int C, int K, float* scratch,
                    cudaStream_t stream) {
  const char* op = "smear_backward";
  check_shapes(op, B, T, C, K);
  const int N = B * T;
  if (N == 0) return;
  require_arg(de && dw && dlambda && dy && e && g && w && lambda, op,
              "de, dw, dlambda, dy, e, g, w and lambda are required");
  require_arg(de != dy, op, "de must not alias dy");
  require_arg(scratch != nullptr, op, "scratch is required (smear_backward_scratch_floats)");
  const bool vec = C % 8 == 0 && aligned16(de) && aligned16(dy) && aligned16(e);
  float* dz = scratch;
  float* gr = scratch + N;
  float* partial = scratch + 2 * static_cast<size_t>(N);
  smear_backward_rows_kernel<<<row_blocks(N), kRowThreads, 0, stream>>>(de, dz, gr, dy, e, g, w, lambda, N, T, C, K,
                                                                        vec);
  CUDA_CHECK_LAUNCH("smear_backward_rows_kernel");
  const unsigned chunks = ceil_div(static_cast<unsigned>(N), static_cast<unsigned>(kSmearRowsPerChunk));
  const unsigned col_blocks = ceil_div(static_cast<unsigned>(K + 1), static_cast<unsigned>(kColThreads));
  smear_partial_kernel<<<dim3(chunks, col_blocks), kColThreads, 0, stream>>>(partial, dz, gr, e, N, C, K);
  CUDA_CHECK_LAUNCH("smear_partial_kernel");
  smear_finish_kernel<<<col_blocks, kColThreads, 0, stream>>>(dw, dlambda, partial, static_cast<int>(chunks), K);
  CUDA_CHECK_LAUNCH("smear_finish_kernel");
}

}  // namespace muongpt::gpu
