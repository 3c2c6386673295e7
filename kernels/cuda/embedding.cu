// Token (+ position) embedding: see embedding.cuh for the math and layout.
#include "kernels/cuda/embedding.cuh"

#include <cmath>
#include <string>

namespace muongpt::gpu {

namespace {

constexpr int kForwardThreads = 128;
constexpr int kBackwardThreads = 128;

// One block per flat position; threads stride over the channels.
__global__ void embedding_forward_kernel(bf16* out, const int32_t* tokens, const bf16* wte, const bf16* wpe, int T,
                                         int C, int vocab, bool vec) {
  const size_t p = blockIdx.x;
  const int t = static_cast<int>(p % T);
  const int tok = tokens[p];
  const bool valid = tok >= 0 && tok < vocab;
  const bf16* e = wte + static_cast<size_t>(valid ? tok : 0) * C;
  const bf16* q = wpe ? wpe + static_cast<size_t>(t) * C : nullptr;
  bf16* o = out + p * C;
  if (vec) {
    for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
      float a[8], b[8];
      load8(e + c, a);
      if (q) {
        load8(q + c, b);
#pragma unroll
        for (int k = 0; k < 8; ++k) a[k] += b[k];
      }
      if (!valid)
#pragma unroll
        for (int k = 0; k < 8; ++k) a[k] = NAN;
      store8(o + c, a);
    }
  } else {
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
      float a = bf2f(e[c]);
      if (q) a += bf2f(q[c]);
      o[c] = f2bf(valid ? a : NAN);
    }
  }
}

// grid (num_unique, ceil(C / threads)): one thread per (distinct token, channel).
__global__ void embedding_backward_wte_kernel(float* dwte, const bf16* dout, const int32_t* ids,
                                              const int32_t* offsets, const int32_t* positions, int C) {
  const int u = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int begin = offsets[u], end = offsets[u + 1];
  float sum = 0.0f;
  for (int k = begin; k < end; ++k) sum += bf2f(dout[static_cast<size_t>(positions[k]) * C + c]);
  dwte[static_cast<size_t>(ids[u]) * C + c] += sum;
}

// grid (T, ceil(C / threads)): one thread per (position, channel), batch rows in order.
__global__ void embedding_backward_wpe_kernel(float* dwpe, const bf16* dout, int B, int T, int C) {
  const int t = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sum = 0.0f;
  for (int b = 0; b < B; ++b) sum += bf2f(dout[(static_cast<size_t>(b) * T + t) * C + c]);
  dwpe[static_cast<size_t>(t) * C + c] += sum;
}

}  // namespace

EmbeddingBackwardPlan plan_embedding_backward(const int32_t* tokens, int n, int vocab) {
  require_arg(n >= 0 && vocab > 0, "plan_embedding_backward", "need n >= 0 and vocab > 0");
  std::vector<int32_t> count(static_cast<size_t>(vocab) + 1, 0);
  for (int i = 0; i < n; ++i) {
    const int32_t tok = tokens[i];
    if (tok < 0 || tok >= vocab)
      throw std::invalid_argument("plan_embedding_backward: token id " + std::to_string(tok) + " at position " +
                                  std::to_string(i) + " is outside the vocabulary (" + std::to_string(vocab) + ")");
    ++count[static_cast<size_t>(tok) + 1];
  }
  EmbeddingBackwardPlan plan;
  for (int v = 0; v < vocab; ++v) {
    if (count[static_cast<size_t>(v) + 1] > 0) plan.ids.push_back(v);
    count[static_cast<size_t>(v) + 1] += count[v];  // prefix sum: count[v] = first slot of token v
  }
  plan.offsets.reserve(plan.ids.size() + 1);
  for (int32_t id : plan.ids) plan.offsets.push_back(count[id]);
  plan.offsets.push_back(n);
  plan.positions.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) plan.positions[count[tokens[i]]++] = i;  // stable: ascending positions
  return plan;
}

void embedding_forward(bf16* out, const int32_t* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C,
                       int vocab, cudaStream_t stream) {
  require_arg(B >= 0 && T >= 0 && C >= 0 && vocab > 0, "embedding_forward", "negative size or empty vocabulary");
  if (B == 0 || T == 0 || C == 0) return;
  const bool vec = C % 8 == 0 && aligned16(out) && aligned16(wte) && (!wpe || aligned16(wpe));
  const unsigned blocks = static_cast<unsigned>(static_cast<size_t>(B) * T);
  embedding_forward_kernel<<<blocks, kForwardThreads, 0, stream>>>(out, tokens, wte, wpe, T, C, vocab, vec);
  CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

void embedding_backward(float* dwte, float* dwpe, const bf16* dout, const int32_t* ids, const int32_t* offsets,
                        const int32_t* positions, int num_unique, int B, int T, int C, cudaStream_t stream) {
  require_arg(B >= 0 && T >= 0 && C >= 0 && num_unique >= 0, "embedding_backward", "negative size");
  require_arg(num_unique <= B * T, "embedding_backward", "more distinct tokens than positions");
  if (B == 0 || T == 0 || C == 0) return;
  const unsigned cblocks = ceil_div(static_cast<unsigned>(C), static_cast<unsigned>(kBackwardThreads));
  require_arg(cblocks <= 65535u, "embedding_backward", "C too large");
  if (dwte && num_unique > 0) {
    embedding_backward_wte_kernel<<<dim3(static_cast<unsigned>(num_unique), cblocks), kBackwardThreads, 0, stream>>>(
        dwte, dout, ids, offsets, positions, C);
    CUDA_CHECK_LAUNCH("embedding_backward_wte_kernel");
  }
  if (dwpe) {
    embedding_backward_wpe_kernel<<<dim3(static_cast<unsigned>(T), cblocks), kBackwardThreads, 0, stream>>>(
        dwpe, dout, B, T, C);
    CUDA_CHECK_LAUNCH("embedding_backward_wpe_kernel");
  }
}

}  // namespace muongpt::gpu
