// AdamW, Muon momentum/apply, gradient norm and clipping: see optimizer.cuh.
#include "kernels/cuda/optimizer.cuh"

#include <cmath>

#include "kernels/cuda/reduce.cuh"

namespace muongpt::gpu {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(size_t n) {
  const size_t blocks = ceil_div(n, static_cast<size_t>(kThreads));
  return static_cast<unsigned>(blocks < 65536 * 16 ? blocks : 65536 * 16);  // grid-stride beyond
}

#define GRID_STRIDE_LOOP(i, n)                                                          \
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<size_t>(gridDim.x) * blockDim.x)

// The same float operations in the same order as cpu::adamw_update.
__global__ void adamw_kernel(float* w, bf16* w_bf16, float* m, float* v, const float* g, size_t n, float step_size,
                             float bc2_sqrt, float decay, float b1, float b2, float eps) {
  GRID_STRIDE_LOOP(i, n) {
    const float gi = g[i];
    float wi = w[i] * decay;
    float mi = m[i];
    mi += (1.0f - b1) * (gi - mi);
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    wi -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    w[i] = wi;
    m[i] = mi;
    v[i] = vi;
    if (w_bf16) w_bf16[i] = f2bf(wi);
  }
}

__global__ void muon_momentum_kernel(float* u_f32, bf16* u_bf16, float* buf, const float* g, size_t n, float mu,
                                     bool nesterov, bool ema_form) {
  GRID_STRIDE_LOOP(i, n) {
    const float gi = g[i];
    float b = buf[i];
    float u;
    if (ema_form) {
      b += (1.0f - mu) * (gi - b);
      u = nesterov ? gi + mu * (b - gi) : b;
    } else {
      b = mu * b + gi;
      u = nesterov ? gi + mu * b : b;
    }
    buf[i] = b;
    if (u_f32) u_f32[i] = u;
    if (u_bf16) u_bf16[i] = f2bf(u);
  }
}

__device__ __forceinline__ float as_float(float x) { return x; }
__device__ __forceinline__ float as_float(bf16 x) { return bf2f(x); }

template <class U>
__global__ void muon_apply_kernel(float* w, bf16* w_bf16, const U* update, size_t n, float decay, float step,
                                  bool cautious) {
  GRID_STRIDE_LOOP(i, n) {
    const float u = as_float(update[i]);
    const float w0 = w[i];
    const float wi = (!cautious || u * w0 >= 0.0f ? w0 * decay : w0) - step * u;
    w[i] = wi;
    if (w_bf16) w_bf16[i] = f2bf(wi);
  }
}

__global__ void clip_kernel(float* g, size_t n, const double* sum_sq, double max_norm) {
  const double norm = sqrt(*sum_sq);
  if (!(max_norm > 0.0 && norm > max_norm)) return;  // NaN norm: no scaling, like the CPU
  const float c = static_cast<float>(max_norm / norm);
  GRID_STRIDE_LOOP(i, n) g[i] *= c;
}

#undef GRID_STRIDE_LOOP

template <class U>
void launch_muon_apply(float* w, bf16* w_bf16, const U* update, size_t n, double lr, double scale,
                       double weight_decay, bool cautious, cudaStream_t stream) {
  if (n == 0) return;
  require_arg(w && update, "muon_apply", "w and update are required");
  const float decay = static_cast<float>(1.0 - lr * weight_decay);
  const float step = static_cast<float>(lr * scale);
  muon_apply_kernel<U><<<grid_for(n), kThreads, 0, stream>>>(w, w_bf16, update, n, decay, step, cautious);
  CUDA_CHECK_LAUNCH("muon_apply_kernel");
}

}  // namespace

void adamw_update(float* w, bf16* w_bf16, float* m, float* v, const float* g, size_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, long step, cudaStream_t stream) {
  require_arg(step >= 1, "adamw_update", "step must be >= 1, got " + std::to_string(step));
  if (n == 0) return;
  require_arg(w && m && v && g, "adamw_update", "w, m, v and g are required");
  // As in cpu::adamw_update: corrections in double, then rounded to float.
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float decay = static_cast<float>(1.0 - lr * weight_decay);
  adamw_kernel<<<grid_for(n), kThreads, 0, stream>>>(w, w_bf16, m, v, g, n, step_size, bc2_sqrt, decay,
                                                     static_cast<float>(beta1), static_cast<float>(beta2),
                                                     static_cast<float>(eps));
  CUDA_CHECK_LAUNCH("adamw_kernel");
}

void muon_momentum(float* u_f32, bf16* u_bf16, float* buf, const float* g, size_t n, double momentum, bool nesterov,
                   bool ema_form, cudaStream_t stream) {
  if (n == 0) return;
  require_arg(buf && g && (u_f32 || u_bf16), "muon_momentum", "buf, g and an output u are required");
  muon_momentum_kernel<<<grid_for(n), kThreads, 0, stream>>>(u_f32, u_bf16, buf, g, n, static_cast<float>(momentum),
                                                             nesterov, ema_form);
  CUDA_CHECK_LAUNCH("muon_momentum_kernel");
}

void muon_apply(float* w, bf16* w_bf16, const bf16* update, size_t n, double lr, double scale, double weight_decay,
                bool cautious, cudaStream_t stream) {
  launch_muon_apply(w, w_bf16, update, n, lr, scale, weight_decay, cautious, stream);
}

void muon_apply(float* w, bf16* w_bf16, const float* update, size_t n, double lr, double scale, double weight_decay,
                bool cautious, cudaStream_t stream) {
  launch_muon_apply(w, w_bf16, update, n, lr, scale, weight_decay, cautious, stream);
}

void grad_sum_squares(double* sum_sq, const float* g, size_t n, double* scratch, cudaStream_t stream) {
  sum_squares_f32(sum_sq, g, n, scratch, stream);
}

void clip_grad_scale(float* g, size_t n, const double* sum_sq, double max_norm, cudaStream_t stream) {
  if (n == 0 || !(max_norm > 0.0)) return;
  require_arg(g && sum_sq, "clip_grad_scale", "g and sum_sq are required");
  clip_kernel<<<grid_for(n), kThreads, 0, stream>>>(g, n, sum_sq, max_norm);
  CUDA_CHECK_LAUNCH("clip_kernel");
}

}  // namespace muongpt::gpu
