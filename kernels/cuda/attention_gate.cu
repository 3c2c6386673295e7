// Attention output gate, forward and backward: see attention_gate.cuh.
#include "kernels/cuda/attention_gate.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kRowThreads = 256;  // 8 warps = 8 tokens per block
constexpr int kRowsPerBlock = kRowThreads / 32;
constexpr int kColThreads = 128;

// z[n,h] . W[h,:] over the first K channels of row xr, summed over the warp
// (every lane gets the same bits).
__device__ __forceinline__ float gate_logit(const bf16* xr, const float* w, int K, int lane) {
  float z = 0.0f;
  for (int i = lane; i < K; i += 32) z += bf2f(xr[i]) * w[i];
  return warp_sum(z);
}

// One warp per token n: for each head the gate, then y = g * a over the head's D elements.
__global__ void gate_forward_kernel(bf16* y, float* g, const bf16* a, const bf16* x, const float* W, int N, int C,
                                    int H, int D, int K, bool vec) {
  const int lane = threadIdx.x & 31;
  const size_t n = static_cast<size_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (n >= static_cast<size_t>(N)) return;  // the whole warp leaves together
  const bf16* xr = x + n * C;
  for (int h = 0; h < H; ++h) {
    const float gate = 1.0f / (1.0f + expf(-gate_logit(xr, W + static_cast<size_t>(h) * K, K, lane)));
    if (lane == 0) g[n * H + h] = gate;
    const size_t row = (n * H + h) * D;
    for (int d = lane * 8; d < D; d += 32 * 8) {
      const int count = min(8, D - d);
      float v[8];
      load_upto8(a + row + d, count, vec, v);
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] *= gate;
      store_upto8(y + row + d, count, vec, v);
    }
  }
}

// One warp per token n: da = g * dy and dz for each head, then dx[n, :K] += dz[n,:] . W[:, i].
__global__ void gate_backward_rows_kernel(bf16* da, bf16* dx, float* dz, const bf16* dy, const bf16* a,
                                          const float* g, const float* W, int N, int C, int H, int D, int K,
                                          bool vec) {
  const int lane = threadIdx.x & 31;
  const size_t n = static_cast<size_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (n >= static_cast<size_t>(N)) return;  // the whole warp leaves together
  for (int h = 0; h < H; ++h) {
    const float gate = g[n * H + h];
    const size_t row = (n * H + h) * D;
    float dg = 0.0f;
    for (int d = lane * 8; d < D; d += 32 * 8) {
      const int count = min(8, D - d);
      float vdy[8], va[8];
      load_upto8(dy + row + d, count, vec, vdy);  // read before da (which may alias dy) is written
      load_upto8(a + row + d, count, vec, va);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        dg += vdy[k] * va[k];  // zero-filled beyond count
        vdy[k] *= gate;
      }
      store_upto8(da + row + d, count, vec, vdy);
    }
    dg = warp_sum(dg);
    if (lane == 0) dz[n * H + h] = dg * gate * (1.0f - gate);
  }
  __syncwarp();  // lane 0's dz writes are visible to the whole warp
  bf16* dxr = dx + n * C;
  for (int i = lane; i < K; i += 32) {
    float s = 0.0f;
    for (int h = 0; h < H; ++h) s += dz[n * H + h] * W[static_cast<size_t>(h) * K + i];
    dxr[i] = f2bf(bf2f(dxr[i]) + s);
  }
}

// partial[chunk][j] = sum of dz[n,h] * x[n,i] over the chunk's tokens, j = h*K + i.
__global__ void gate_dw_partial_kernel(float* partial, const float* dz, const bf16* x, int N, int C, int H, int K) {
  const int HK = H * K;
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= HK) return;
  const int h = j / K, i = j % K;
  const size_t chunk = blockIdx.x;
  const size_t begin = chunk * kGateRowsPerChunk, end = min(begin + kGateRowsPerChunk, static_cast<size_t>(N));
  float s = 0.0f;
  for (size_t n = begin; n < end; ++n) s += dz[n * H + h] * bf2f(x[n * C + i]);
  partial[chunk * HK + j] = s;
}

// dW[j] += the chunks' partial sums, in chunk order.
__global__ void gate_dw_finish_kernel(float* dW, const float* partial, int chunks, int HK) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= HK) return;
  float s = 0.0f;
  for (int c = 0; c < chunks; ++c) s += partial[static_cast<size_t>(c) * HK + j];
  dW[j] += s;
}

void check_shapes(const char* op, int N, int C, int H, int D, int K) {
  require_arg(N >= 0 && C > 0 && H > 0 && D > 0, op, "bad sizes");
  require_arg(K > 0 && K <= C, op, "K must be in [1, C]");
}

unsigned row_blocks(int N) { return ceil_div(static_cast<unsigned>(N), static_cast<unsigned>(kRowsPerBlock)); }

}  // namespace

size_t attention_gate_backward_scratch_floats(int N, int H, int K) {
  if (N <= 0 || H <= 0 || K <= 0) return 0;
  const size_t chunks = ceil_div(static_cast<size_t>(N), static_cast<size_t>(kGateRowsPerChunk));
  return static_cast<size_t>(N) * H + chunks * H * K;
}

void attention_gate_forward(bf16* y, float* g, const bf16* a, const bf16* x, const float* W, int N, int C, int H,
                            int D, int K, cudaStream_t stream) {
  check_shapes("attention_gate_forward", N, C, H, D, K);
  if (N == 0) return;
  require_arg(y && g && a && x && W, "attention_gate_forward", "y, g, a, x and W are required");
  const bool vec = D % 8 == 0 && aligned16(y) && aligned16(a);
  gate_forward_kernel<<<row_blocks(N), kRowThreads, 0, stream>>>(y, g, a, x, W, N, C, H, D, K, vec);
  CUDA_CHECK_LAUNCH("gate_forward_kernel");
}

void attention_gate_backward(bf16* da, float* dW, bf16* dx, const bf16* dy, const bf16* a, const float* g,
                             const bf16* x, const float* W, int N, int C, int H, int D, int K, float* scratch,
                             cudaStream_t stream) {
  const char* op = "attention_gate_backward";
  check_shapes(op, N, C, H, D, K);
  if (N == 0) return;
  require_arg(da && dW && dx && dy && a && g && x && W, op, "da, dW, dx, dy, a, g, x and W are required");
  require_arg(scratch != nullptr, op, "scratch is required (attention_gate_backward_scratch_floats)");
  const bool vec = D % 8 == 0 && aligned16(da) && aligned16(dy) && aligned16(a);
  float* dz = scratch;
  float* partial = scratch + static_cast<size_t>(N) * H;
  gate_backward_rows_kernel<<<row_blocks(N), kRowThreads, 0, stream>>>(da, dx, dz, dy, a, g, W, N, C, H, D, K, vec);
  CUDA_CHECK_LAUNCH("gate_backward_rows_kernel");
  const int HK = H * K;
  const unsigned chunks = ceil_div(static_cast<unsigned>(N), static_cast<unsigned>(kGateRowsPerChunk));
  const dim3 grid(chunks, ceil_div(static_cast<unsigned>(HK), static_cast<unsigned>(kColThreads)));
  gate_dw_partial_kernel<<<grid, kColThreads, 0, stream>>>(partial, dz, x, N, C, H, K);
  CUDA_CHECK_LAUNCH("gate_dw_partial_kernel");
  gate_dw_finish_kernel<<<ceil_div(static_cast<unsigned>(HK), static_cast<unsigned>(kColThreads)), kColThreads, 0,
                          stream>>>(dW, partial, static_cast<int>(chunks), HK);
  CUDA_CHECK_LAUNCH("gate_dw_finish_kernel");
}

}  // namespace muongpt::gpu
