// MLP nonlinearities, elementwise on bf16 tensors of n elements.
//
// GELU (tanh approximation, GPT-2):
//   y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   dy/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3*0.044715 x^2)
// ReLU^2 (speedrun):
//   y = max(x, 0)^2,  dy/dx = 2 max(x, 0)
// Backward: dx = dout * dy/dx (overwritten). In place is allowed (out == x,
// dx == dout). 16-byte loads when all pointers are 16-byte aligned.
#pragma once

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

void gelu_forward(bf16* out, const bf16* x, size_t n, cudaStream_t stream);
void gelu_backward(bf16* dx, const bf16* dout, const bf16* x, size_t n, cudaStream_t stream);
void relu2_forward(bf16* out, const bf16* x, size_t n, cudaStream_t stream);
void relu2_backward(bf16* dx, const bf16* dout, const bf16* x, size_t n, cudaStream_t stream);

}  // namespace muongpt::gpu
