// Weighted sums with scalar weights: the residual adds, x0 shortcut, value
// residual and U-net skips of the speedrun are all
//   out = a * x + b * y
// with a, b scalars, each either a constant, an affine function of one
// learned fp32 scalar on the device (MixCoef: value = offset + scale * *param)
// or its sigmoid (MixCoef::sigmoid_of: value = sigmoid(*param), the gated
// U-net skips of record #32), so the forward needs no host round trip. Backward:
//   dx (=|+=) a * dout        dy (=|+=) b * dout
//   dparam_a += a' * sum(dout * x)      dparam_b += b' * sum(dout * y)
// with a' = d(value)/d(param): scale for the affine forms (with a learned
// coefficient, scale = 1: exactly the CPU's da += sum(dout*x)), and
// sigmoid * (1 - sigmoid) for the sigmoid form.
// The value residual v = (1 - lam) v_raw + lam v_first is a = one_minus(lam),
// b = learned(lam), dparam_a = dparam_b = dlam (then dlam += sum(dv*(v_first - v_raw))).
// Layout: x, y, out, dout, dx, dy: n bf16 elements. dparam_*: fp32 scalars.
// The sums are deterministic and atomic-free: a fixed grid (a function of n
// only) writes per-block partial sums to `scratch`, one block adds them in order.
#pragma once

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

struct MixCoef {
  const float* param = nullptr;  // device pointer to a learned fp32 scalar, or null
  float offset = 0.0f;           // value = offset + scale * (*param)   (param null: offset)
  float scale = 1.0f;
  bool sigmoid = false;          // value = sigmoid(*param) instead (param required; offset, scale unused)

  static MixCoef constant(float v) { return {nullptr, v, 0.0f, false}; }
  static MixCoef learned(const float* p) { return {p, 0.0f, 1.0f, false}; }
  static MixCoef one_minus(const float* p) { return {p, 1.0f, -1.0f, false}; }
  static MixCoef sigmoid_of(const float* p) { return {p, 0.0f, 1.0f, true}; }
};

// floats of scratch that mix_backward needs when it computes scalar gradients.
size_t mix_backward_scratch_floats();

// out may alias x or y.
void mix_forward(bf16* out, const bf16* x, const bf16* y, MixCoef a, MixCoef b, size_t n, cudaStream_t stream);

// Any of dx, dy, dparam_a, dparam_b may be null (x is needed only for dparam_a,
// y only for dparam_b). dx or dy (not both) may alias dout. dparam_a may equal
// dparam_b (both terms are added, a's first). scratch: mix_backward_scratch_floats().
void mix_backward(bf16* dx, bf16* dy, float* dparam_a, float* dparam_b, const bf16* dout, const bf16* x,
                  const bf16* y, MixCoef a, MixCoef b, size_t n, bool accumulate_dx, bool accumulate_dy,
                  float* scratch, cudaStream_t stream);

}  // namespace muongpt::gpu
