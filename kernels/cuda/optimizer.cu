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

__global__ void add_into_kernel(float* sum, const float* g, size_t n) {
  GRID_STRIDE_LOOP(i, n) sum[i] += g[i];
}

// Muon momentum (both forms, see optimizer.cuh): updates the buffer value b
// in place and returns the vector to orthogonalise.
__device__ __forceinline__ float momentum_step(float& b, float g, float mu, bool nesterov, bool ema_form) {
  if (ema_form) {
    b += (1.0f - mu) * (g - b);
    return nesterov ? g + mu * (b - g) : b;
  }
  b = mu * b + g;
  return nesterov ? g + mu * b : b;
}

// Muon update of one weight: decay (only where u and w agree in sign when
// cautious), then the step.
__device__ __forceinline__ float muon_update(float w0, float u, float decay, float step, bool cautious) {
  return (!cautious || u * w0 >= 0.0f ? w0 * decay : w0) - step * u;
}

__global__ void muon_momentum_kernel(float* u_f32, bf16* u_bf16, float* buf, const float* g, size_t n, float mu,
                                     bool nesterov, bool ema_form) {
  GRID_STRIDE_LOOP(i, n) {
    float b = buf[i];
    const float u = momentum_step(b, g[i], mu, nesterov, ema_form);
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
    const float wi = muon_update(w[i], u, decay, step, cautious);
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

// Batched Muon: blockIdx.y is the block of the batch, the x grid strides
// through its n elements.
#define BLOCK_STRIDE_LOOP(i, n)                                                         \
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<size_t>(gridDim.x) * blockDim.x)

__global__ void muon_momentum_batched_kernel(float* u, size_t u_stride, float* buf, const float* g,
                                             const MuonBlockRef* refs, size_t n, float mu, bool nesterov,
                                             bool ema_form) {
  const MuonBlockRef ref = refs[blockIdx.y];
  float* uj = u + static_cast<size_t>(blockIdx.y) * u_stride;
  float* bj = buf + ref.m_off;
  const float* gj = g + ref.w_off;
  BLOCK_STRIDE_LOOP(i, n) {
    float b = bj[i];
    uj[i] = momentum_step(b, gj[i], mu, nesterov, ema_form);
    bj[i] = b;
  }
}

__global__ void muon_apply_batched_kernel(float* w, bf16* w_bf16, const bf16* O, size_t o_stride,
                                          const MuonBlockRef* refs, size_t n, int cols, const float* factors,
                                          int stats, bool per_row, float decay, float step, bool cautious) {
  const MuonBlockRef ref = refs[blockIdx.y];
  const bf16* oj = O + static_cast<size_t>(blockIdx.y) * o_stride;
  const float* fj = factors ? factors + static_cast<size_t>(blockIdx.y) * stats : nullptr;
  float* wj = w + ref.w_off;
  bf16* wbj = w_bf16 ? w_bf16 + ref.w_off : nullptr;
  BLOCK_STRIDE_LOOP(i, n) {
    float u = bf2f(oj[i]);
    if (fj) u *= fj[per_row ? i / static_cast<size_t>(cols) : i % static_cast<size_t>(cols)];
    const float wi = muon_update(wj[i], u, decay, step, cautious);
    wj[i] = wi;
    if (wbj) wbj[i] = f2bf(wi);
  }
}

#undef BLOCK_STRIDE_LOOP

// One thread block per matrix block (blockIdx.x); see optimizer.cuh.
__global__ void normuon_factors_kernel(float* factors, const bf16* O, size_t o_stride, float* nv,
                                       const MuonBlockRef* refs, int rows, int cols, bool per_row,
                                       float one_minus_beta2, double* scratch) {
  const int j = blockIdx.x;
  const int stats = per_row ? rows : cols, red = per_row ? cols : rows;
  const bf16* o = O + static_cast<size_t>(j) * o_stride;
  double* mean = scratch + static_cast<size_t>(j) * stats;  // mean, then step
  float* v = nv + refs[j].nv_off;
  float* f = factors + static_cast<size_t>(j) * stats;
  if (per_row) {  // a warp per row
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int i = warp; i < rows; i += warps) {
      double sq = 0;
      for (int c = lane; c < cols; c += 32) {
        const double x = bf2f(o[static_cast<size_t>(i) * cols + c]);
        sq += x * x;
      }
      sq = warp_sum(sq);
      if (lane == 0) mean[i] = sq / red;
    }
  } else {  // a thread per column, rows in order
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      double sq = 0;
      for (int i = 0; i < rows; ++i) {
        const double x = bf2f(o[static_cast<size_t>(i) * cols + c]);
        sq += x * x;
      }
      mean[c] = sq / red;
    }
  }
  __syncthreads();
  double sum_mean = 0, sum_scaled = 0;
  for (int i = threadIdx.x; i < stats; i += blockDim.x) {
    const double m = mean[i];
    float vi = v[i];
    vi += one_minus_beta2 * (static_cast<float>(m) - vi);
    v[i] = vi;
    const double st = 1.0 / sqrt(fmax(static_cast<double>(vi), 1e-10));
    sum_mean += m;
    sum_scaled += m * st * st;
    mean[i] = st;  // only this thread touches element i
  }
  sum_mean = block_sum(sum_mean);
  sum_scaled = block_sum(sum_scaled);
  const double norm = sqrt(sum_mean * red), norm_new = sqrt(sum_scaled * red);
  const double rescale = norm / fmax(norm_new, 1e-10);
  for (int i = threadIdx.x; i < stats; i += blockDim.x) f[i] = static_cast<float>(mean[i] * rescale);
}

__global__ void logits_max_kernel(float* running, const float* observed, size_t n) {
  GRID_STRIDE_LOOP(i, n) {
    const float r = running[i], o = observed[i];
    running[i] = r < o ? o : r;  // std::max(r, o), as the CPU
  }
}

__global__ void fill_neg_inf_kernel(float* x, size_t n) {
  GRID_STRIDE_LOOP(i, n) x[i] = -INFINITY;
}

__device__ void scale_range(float* w, bf16* w_bf16, long long off, size_t count, float f) {
  if (off < 0) return;
  for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
    const size_t at = static_cast<size_t>(off) + i;
    const float x = w[at] * f;
    w[at] = x;
    if (w_bf16) w_bf16[at] = f2bf(x);
  }
}

// One thread block per (layer, head) = blockIdx.x.
__global__ void qk_clip_kernel(float* w, bf16* w_bf16, float* running, const QkClipLayer* layers, int n_head,
                               int head_dim, int cols, double tau, double alpha) {
  const int idx = blockIdx.x;
  const double m = static_cast<double>(running[idx]);
  __syncthreads();  // everyone has read the max before it is reset
  if (threadIdx.x == 0) running[idx] = -INFINITY;
  if (!(m > tau)) return;  // also skips NaN and -inf (nothing observed)
  const QkClipLayer L = layers[idx / n_head];
  if (L.wq < 0) return;  // an attention-free block
  const int h = idx % n_head;
  const double g = tau / m;
  const float fq = static_cast<float>(pow(g, alpha)), fk = static_cast<float>(pow(g, 1.0 - alpha));
  const size_t rows = static_cast<size_t>(head_dim) * cols, head_rows = static_cast<size_t>(h) * rows;
  scale_range(w, w_bf16, L.wq + static_cast<long long>(head_rows), rows, fq);
  scale_range(w, w_bf16, L.wk + static_cast<long long>(head_rows), rows, fk);
  scale_range(w, w_bf16, L.bq < 0 ? -1 : L.bq + static_cast<long long>(h) * head_dim, head_dim, fq);
  scale_range(w, w_bf16, L.bk < 0 ? -1 : L.bk + static_cast<long long>(h) * head_dim, head_dim, fk);
}

#undef GRID_STRIDE_LOOP

// x blocks of a batched launch over n elements per matrix block.
unsigned batch_grid_x(size_t n) {
  const size_t blocks = ceil_div(n, static_cast<size_t>(kThreads));
  return static_cast<unsigned>(blocks < 1024 ? blocks : 1024);
}

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

void add_into(float* sum, const float* g, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  require_arg(sum && g, "add_into", "sum and g are required");
  add_into_kernel<<<grid_for(n), kThreads, 0, stream>>>(sum, g, n);
  CUDA_CHECK_LAUNCH("add_into_kernel");
}

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

void muon_momentum_batched(float* u, size_t u_stride, float* buf, const float* g, const MuonBlockRef* refs,
                           int count, size_t n, double momentum, bool nesterov, bool ema_form, cudaStream_t stream) {
  require_arg(count >= 0 && count <= 65535, "muon_momentum_batched", "batch count outside [0, 65535]");
  if (n == 0 || count == 0) return;
  require_arg(u && buf && g && refs, "muon_momentum_batched", "u, buf, g and refs are required");
  muon_momentum_batched_kernel<<<dim3(batch_grid_x(n), count), kThreads, 0, stream>>>(
      u, u_stride, buf, g, refs, n, static_cast<float>(momentum), nesterov, ema_form);
  CUDA_CHECK_LAUNCH("muon_momentum_batched_kernel");
}

void normuon_factors_batched(float* factors, const bf16* O, size_t o_stride, float* nv, const MuonBlockRef* refs,
                             int count, int rows, int cols, bool per_row, double beta2, double* scratch,
                             cudaStream_t stream) {
  if (count == 0 || rows == 0 || cols == 0) return;
  require_arg(factors && O && nv && refs && scratch, "normuon_factors_batched", "all pointers are required");
  normuon_factors_kernel<<<count, kThreads, 0, stream>>>(factors, O, o_stride, nv, refs, rows, cols, per_row,
                                                         static_cast<float>(1.0 - beta2), scratch);
  CUDA_CHECK_LAUNCH("normuon_factors_kernel");
}

void muon_apply_batched(float* w, bf16* w_bf16, const bf16* O, size_t o_stride, const MuonBlockRef* refs, int count,
                        int rows, int cols, const float* factors, bool per_row, double lr, double scale,
                        double weight_decay, bool cautious, cudaStream_t stream) {
  require_arg(count >= 0 && count <= 65535, "muon_apply_batched", "batch count outside [0, 65535]");
  const size_t n = static_cast<size_t>(rows) * cols;
  if (n == 0 || count == 0) return;
  require_arg(w && O && refs, "muon_apply_batched", "w, O and refs are required");
  const float decay = static_cast<float>(1.0 - lr * weight_decay);
  const float step = static_cast<float>(lr * scale);
  muon_apply_batched_kernel<<<dim3(batch_grid_x(n), count), kThreads, 0, stream>>>(
      w, w_bf16, O, o_stride, refs, n, cols, factors, per_row ? rows : cols, per_row, decay, step, cautious);
  CUDA_CHECK_LAUNCH("muon_apply_batched_kernel");
}

void attention_logits_max(float* running, const float* observed, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  require_arg(running && observed, "attention_logits_max", "running and observed are required");
  logits_max_kernel<<<grid_for(n), kThreads, 0, stream>>>(running, observed, n);
  CUDA_CHECK_LAUNCH("logits_max_kernel");
}

void fill_neg_inf(float* x, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  fill_neg_inf_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, n);
  CUDA_CHECK_LAUNCH("fill_neg_inf_kernel");
}

void qk_clip_apply(float* w, bf16* w_bf16, float* running, const QkClipLayer* layers, int n_layer, int n_head,
                   int head_dim, int cols, double tau, double alpha, cudaStream_t stream) {
  if (n_layer <= 0 || n_head <= 0) return;
  require_arg(w && running && layers, "qk_clip_apply", "w, running and layers are required");
  qk_clip_kernel<<<n_layer * n_head, kThreads, 0, stream>>>(w, w_bf16, running, layers, n_head, head_dim, cols, tau,
                                                            alpha);
  CUDA_CHECK_LAUNCH("qk_clip_kernel");
}

}  // namespace muongpt::gpu
