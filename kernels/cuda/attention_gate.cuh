// Attention output gate (speedrun record #28): each head's attention output
// at each token is scaled by a sigmoid of a linear function of the first K
// channels of the attention input (kernels/cpu/attention_gate.h is the reference):
//   z[n,h] = sum_{i<K} x[n,i] * W[h,i]        g[n,h] = sigmoid(z[n,h])
//   y[n,h,d] = g[n,h] * a[n,h,d]
// Backward, with dz[n,h] = (sum_d dy[n,h,d] * a[n,h,d]) * g * (1 - g):
//   da[n,h,d] = g[n,h] * dy[n,h,d]
//   dW[h,i] += sum_n dz[n,h] * x[n,i]
//   dx[n,i] += sum_h dz[n,h] * W[h,i]         (i < K; the other channels are not touched)
// Layout: x, dx (N, C) bf16 row-major, K <= C; a, y, dy, da (N, H*D) bf16 (the
// attention output, heads one after another in a row); W (H, K) fp32 (the
// master weights); dW (H, K) fp32, accumulated; g (N, H) fp32, saved by the
// forward for the backward (with the ungated a). dx is accumulated in bf16:
// dx = bf16(dx + sum). y may alias a, da may alias dy.
// One warp per token for the forward, da and dx. dW is deterministic and
// atomic-free: per chunk of kGateRowsPerChunk tokens one partial sum per
// weight into `scratch`, then each weight adds its partials in chunk order.
#pragma once

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

constexpr int kGateRowsPerChunk = 128;

// floats of scratch that attention_gate_backward needs: dz (N, H) and the partial sums of dW.
size_t attention_gate_backward_scratch_floats(int N, int H, int K);

void attention_gate_forward(bf16* y, float* g, const bf16* a, const bf16* x, const float* W, int N, int C, int H,
                            int D, int K, cudaStream_t stream);

// a and g: the forward's ungated input and gates. Writes da, adds into dW and dx[:, :K].
void attention_gate_backward(bf16* da, float* dW, bf16* dx, const bf16* dy, const bf16* a, const float* g,
                             const bf16* x, const float* W, int N, int C, int H, int D, int K, float* scratch,
                             cudaStream_t stream);

}  // namespace muongpt::gpu
