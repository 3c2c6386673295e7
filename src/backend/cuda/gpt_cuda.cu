#include "backend/cuda/gpt_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "kernels/cpu/rope.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/attention_gate.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/mix.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/smear.cuh"
#include "kernels/cuda/softcap_ce.cuh"
#include "util/error.h"

namespace muongpt {

using gpu::bf16;
using gpu::MixCoef;

namespace {

constexpr size_t npos = kAbsentParam;

// One device allocation carved into buffers. layout() runs twice: first to
// measure (base == null), then to hand out pointers into the allocation.
class Arena {
 public:
  template <class T>
  T* take(size_t n) {
    offset_ = (offset_ + 255) / 256 * 256;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += std::max<size_t>(n, 1) * sizeof(T);
    return p;
  }
  // `what` says what the memory is for, in the out-of-memory error.
  void allocate(const std::string& what) {
    const size_t bytes = measured_bytes();
    const cudaError_t err = cudaMalloc(&base_, bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // clear the error so the caller can go on
      base_ = nullptr;
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      fail(what, " needs ", str_gb(bytes), " of GPU memory; the GPU has ", str_gb(free_bytes), " free of ",
           str_gb(total_bytes), ". Lower batch.micro_batch (gradient accumulation keeps batch.global_tokens "
           "and the math) or batch.seq_len; `muongpt info --config` prints the estimate");
    }
    CUDA_CHECK(err);
    offset_ = 0;
  }
  static std::string str_gb(size_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2f GB", static_cast<double>(bytes) / 1e9);
    return buf;
  }
  size_t measured_bytes() const { return offset_ + 256; }  // what allocate() asks for
  void release() {
    if (base_) cudaFree(base_);
    base_ = nullptr;
  }

 private:
  char* base_ = nullptr;
  size_t offset_ = 0;
};

// (N, 3C) -> three (N, C) buffers, and back.
__global__ void split_qkv_kernel(bf16* q, bf16* k, bf16* v, const bf16* qkv, int N, int C) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<size_t>(N) * C) return;
  const size_t n = i / C, c = i % C;
  const bf16* row = qkv + n * 3 * C;
  q[i] = row[c];
  k[i] = row[C + c];
  v[i] = row[2 * C + c];
}

__global__ void merge_qkv_kernel(bf16* qkv, const bf16* q, const bf16* k, const bf16* v, int N, int C) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<size_t>(N) * C) return;
  const size_t n = i / C, c = i % C;
  bf16* row = qkv + n * 3 * C;
  row[c] = q[i];
  row[C + c] = k[i];
  row[2 * C + c] = v[i];
}

__global__ void f32_to_bf16_kernel(bf16* out, const float* in, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void bf16_to_f32_kernel(float* out, const bf16* in, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __bfloat162float(in[i]);
}

unsigned blocks_for(size_t n, int threads = 256) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

// The model's shapes, parameter offsets and device buffers. layout() carves
// the buffers out of an Arena; with a measuring Arena it needs no GPU, which
// is how GptCuda::device_bytes() sizes a model before anything is allocated.
struct ModelBuffers {
  ModelConfig cfg;
  ParamTable table;
  int max_batch, max_seq;
  int C, H, D, F, L, Vp, V_softmax;
  bool layernorm, rope, fused_qkv;
  float eps;

  ParamOffsets offsets;  // where each parameter sits in params (kAbsentParam = absent)

  // Attention-free blocks (model.attention_free_layers) have no attention
  // buffers: h1 .. x_attn and n1_*, q_rstd, k_rstd, lse, gate are null there,
  // and their MLP reads the block input in place of x_attn. With the attention
  // gate (model.attn_gate_dims), att is the ungated attention output, gate its
  // gates (N, H) and att_gated the projection's input (null without the gate).
  // MLP-free blocks (model.mlp_free_layers) have no h2 .. act, n2_* and no
  // x_attn: their attention residual is written straight into the next
  // block's input (or x_final).
  struct LayerActs {
    bf16 *x_in, *x_skip, *x_mix, *h1, *qkv, *q_raw, *k_raw, *v_raw, *q_mid, *k_mid, *q, *k, *v;
    bf16 *att, *att_gated, *attn_out, *x_attn, *h2, *fc, *act;
    float *n1_mean, *n1_rstd, *n2_mean, *n2_rstd, *q_rstd, *k_rstd, *lse, *gate;
  };
  // device buffers
  float *params = nullptr, *grads = nullptr;
  bf16* params_bf16 = nullptr;
  float *rope_cos = nullptr, *rope_sin = nullptr;
  std::vector<double> rope_freqs;  // the frequencies of rope_cos/rope_sin
  int32_t *tokens = nullptr, *targets = nullptr, *doc_ids = nullptr;
  int32_t *emb_ids = nullptr, *emb_offsets = nullptr, *emb_positions = nullptr;
  bf16 *emb = nullptr, *x0 = nullptr, *x_final = nullptr, *hf = nullptr, *logits = nullptr;
  bf16* x_backout = nullptr;  // model.backout_layer: the final norm's input
  bf16* smeared = nullptr;       // the smear's output (model.smear_gate_dims; null without): the embedding norm's input
  float* smear_gates = nullptr;  // its gates (N)
  float *embn_mean = nullptr, *embn_rstd = nullptr, *nf_mean = nullptr, *nf_rstd = nullptr;
  float *losses = nullptr, *lse = nullptr, *max_logits = nullptr;
  std::vector<bf16*> value_embeds;  // (N, C) per value-embedding table: its rows for the batch's tokens
  std::vector<LayerActs> acts;
  // backward work buffers
  bf16 *dres = nullptr, *dhf = nullptr, *dx0 = nullptr, *dv_first = nullptr, *dh = nullptr, *dfc = nullptr,
       *dact = nullptr, *dqkv = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr, *datt = nullptr,
       *dattn_out = nullptr, *dtmp = nullptr;
  bf16* dve = nullptr;       // c * dv of one layer, scattered into its value-embedding table's gradient
  std::vector<bf16*> dskip;  // per boundary, for U-net skips (null when unused)
  float *norm_scratch = nullptr, *mix_scratch = nullptr, *attn_scratch = nullptr;
  float* gate_scratch = nullptr;   // attention gate backward (null without the gate)
  float* smear_scratch = nullptr;  // smear backward (null without the smear)

  ModelBuffers(const ModelConfig& c, int mb, int ms) : cfg(c), table(c), max_batch(mb), max_seq(ms) {
    C = cfg.d_model;
    H = cfg.n_head;
    D = cfg.head_dim();
    F = cfg.hidden();
    L = cfg.n_layer;
    Vp = cfg.padded_vocab_size;
    V_softmax = cfg.softmax_vocab();
    layernorm = cfg.norm == "layernorm";
    rope = cfg.pos_embedding == "rope";
    fused_qkv = cfg.qkv == "fused";
    eps = static_cast<float>(cfg.norm_eps);
    if (max_batch < 1 || max_seq < 1) fail("GptCuda: batch ", max_batch, "x", max_seq, " is empty");
    if (cfg.pos_embedding == "learned" && max_seq > cfg.max_seq_len)
      fail("GptCuda: sequence length ", max_seq, " exceeds model.max_seq_len = ", cfg.max_seq_len);
    if (cfg.value_residual && L > 0 && !cfg.has_attention(0))
      fail("GptCuda: model.value_residual needs attention in layer 0 (its V is the residual's source)");
    if (cfg.attn_gate_dims < 0 || cfg.attn_gate_dims > C)
      fail("GptCuda: model.attn_gate_dims = ", cfg.attn_gate_dims, " is outside [0, d_model = ", C, "]");
    if (cfg.smear_gate_dims < 0 || cfg.smear_gate_dims > C)
      fail("GptCuda: model.smear_gate_dims = ", cfg.smear_gate_dims, " is outside [0, d_model = ", C, "]");
    if (cfg.backout_layer < -1 || cfg.backout_layer > cfg.n_layer - 2)
      fail("GptCuda: model.backout_layer = ", cfg.backout_layer, " is outside [-1, n_layer - 2 = ", cfg.n_layer - 2, "]");
    offsets = param_offsets(table, cfg);
  }

  const float* p32(size_t o) const { return o == npos ? nullptr : params + o; }
  const bf16* pb(size_t o) const { return o == npos ? nullptr : params_bf16 + o; }
  float* g(size_t o) const { return o == npos ? nullptr : grads + o; }

  bool smear() const { return cfg.smear_gate_dims > 0; }
  // Backout's coefficient on the state after block model.backout_layer: -lambda.
  MixCoef backout_coef() const { return MixCoef{p32(offsets.backout_lambda), 0.0f, -1.0f, false}; }
  // The final norm's input: x_final, or with backout x_final - lambda * x_b (written to x_backout).
  // n = tokens x d_model of the forward.
  const bf16* final_norm_input(size_t n, cudaStream_t s) {
    if (cfg.backout_layer < 0) return x_final;
    gpu::mix_forward(x_backout, x_final, acts[cfg.backout_layer + 1].x_in, MixCoef::constant(1.0f), backout_coef(), n,
                     s);
    return x_backout;
  }
  // The U-net skip's coefficient in block l: w or sigmoid(w) (model.unet_skip_gate), w = skip_weights[l - L/2].
  MixCoef skip_coef(int l) const {
    const float* w = p32(offsets.skip_w) + (l - L / 2);
    return cfg.unet_skip_gate == "sigmoid" ? MixCoef::sigmoid_of(w) : MixCoef::learned(w);
  }

  // ModelConfig::value_mix_plan(layer) on this model's buffers: v = a * v_raw + c * source,
  // the coefficients read from the lambdas on the device (MixCoef).
  struct ValueMix {
    ModelConfig::ValueMixPlan plan;
    const bf16* source = nullptr;  // layer 0's v_raw, a value embedding (N, C), or null
    MixCoef a = MixCoef::constant(1.0f), c = MixCoef::constant(0.0f);
  };
  ValueMix value_mix(int layer) const {
    using Coef = ModelConfig::ValueMixPlan::Coef;
    ValueMix vm;
    vm.plan = cfg.value_mix_plan(layer);
    if (!vm.plan.learned) return vm;  // v = v_raw
    if (vm.plan.first_layer_v) vm.source = acts[0].v_raw;
    if (vm.plan.table >= 0) vm.source = value_embeds[static_cast<size_t>(vm.plan.table)];
    const float* lam = p32(offsets.blocks[static_cast<size_t>(layer)].value_lambda);
    const auto coefficient = [lam](Coef k) {
      switch (k) {
        case Coef::one: return MixCoef::constant(1.0f);
        case Coef::zero: return MixCoef::constant(0.0f);
        case Coef::lambda0: return MixCoef::learned(lam);
        case Coef::one_minus_lambda0: return MixCoef::one_minus(lam);
        case Coef::lambda1: return MixCoef::learned(lam + 1);
      }
      return MixCoef::constant(0.0f);
    };
    vm.a = coefficient(vm.plan.a);
    vm.c = coefficient(vm.plan.c);
    return vm;
  }

  // cos/sin tables of rope_freqs for positions 0..max_seq-1, to the device.
  void upload_rope_tables() {
    std::vector<float> cos_table, sin_table;
    cpu::rope_tables(cos_table, sin_table, max_seq, rope_freqs);
    CUDA_CHECK(cudaMemcpy(rope_cos, cos_table.data(), cos_table.size() * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(rope_sin, sin_table.data(), sin_table.size() * sizeof(float), cudaMemcpyHostToDevice));
  }

  void layout(Arena& a) {
    const size_t N = static_cast<size_t>(max_batch) * max_seq, NC = N * C, P = table.total();
    params = a.take<float>(P);
    grads = a.take<float>(P);
    params_bf16 = a.take<bf16>(P);
    if (rope) {
      rope_cos = a.take<float>(static_cast<size_t>(max_seq) * D / 2);
      rope_sin = a.take<float>(static_cast<size_t>(max_seq) * D / 2);
    }
    tokens = a.take<int32_t>(N);
    targets = a.take<int32_t>(N);
    doc_ids = a.take<int32_t>(N);
    emb_ids = a.take<int32_t>(N);
    emb_offsets = a.take<int32_t>(N + 1);
    emb_positions = a.take<int32_t>(N);
    emb = a.take<bf16>(NC);
    if (smear()) {
      smeared = a.take<bf16>(NC);
      smear_gates = a.take<float>(N);
    }
    if (cfg.embed_norm) {
      x0 = a.take<bf16>(NC);
      embn_rstd = a.take<float>(N);
      if (layernorm) embn_mean = a.take<float>(N);
    }
    value_embeds.assign(static_cast<size_t>(std::max(cfg.value_embeds, 0)), nullptr);
    for (bf16*& ve : value_embeds) ve = a.take<bf16>(NC);
    acts.assign(L, LayerActs{});
    for (int l = 0; l < L; ++l) {
      LayerActs& s = acts[l];
      s.x_in = a.take<bf16>(NC);
      s.x_skip = cfg.unet_skip_source(l) >= 0 ? a.take<bf16>(NC) : nullptr;
      s.x_mix = cfg.has_x0_mix(l) ? a.take<bf16>(NC) : nullptr;
      if (cfg.has_attention(l)) {
        s.h1 = a.take<bf16>(NC);
        s.n1_rstd = a.take<float>(N);
        s.n1_mean = layernorm ? a.take<float>(N) : nullptr;
        s.qkv = a.take<bf16>(3 * NC);
        s.q_raw = a.take<bf16>(NC);
        s.k_raw = a.take<bf16>(NC);
        s.v_raw = a.take<bf16>(NC);
        const bool mid = cfg.qk_norm && cfg.qk_norm_position == "after_rope" && rope;
        s.q_mid = mid ? a.take<bf16>(NC) : nullptr;
        s.k_mid = mid ? a.take<bf16>(NC) : nullptr;
        s.q_rstd = cfg.qk_norm ? a.take<float>(N * H) : nullptr;
        s.k_rstd = cfg.qk_norm ? a.take<float>(N * H) : nullptr;
        s.q = a.take<bf16>(NC);
        s.k = a.take<bf16>(NC);
        s.v = a.take<bf16>(NC);
        s.att = a.take<bf16>(NC);
        s.lse = a.take<float>(N * H);
        if (cfg.attn_gate_dims > 0) {
          s.gate = a.take<float>(N * H);
          s.att_gated = a.take<bf16>(NC);
        }
        s.attn_out = a.take<bf16>(NC);
        s.x_attn = cfg.has_mlp(l) ? a.take<bf16>(NC) : nullptr;
      }
      if (cfg.has_mlp(l)) {
        s.h2 = a.take<bf16>(NC);
        s.n2_rstd = a.take<float>(N);
        s.n2_mean = layernorm ? a.take<float>(N) : nullptr;
        s.fc = a.take<bf16>(N * F);
        s.act = a.take<bf16>(N * F);
      }
    }
    x_final = a.take<bf16>(NC);
    x_backout = cfg.backout_layer >= 0 ? a.take<bf16>(NC) : nullptr;
    hf = a.take<bf16>(NC);
    nf_rstd = a.take<float>(N);
    nf_mean = layernorm ? a.take<float>(N) : nullptr;
    logits = a.take<bf16>(N * Vp);
    losses = a.take<float>(N);
    lse = a.take<float>(N);
    max_logits = a.take<float>(static_cast<size_t>(L) * H);

    dres = a.take<bf16>(NC);
    dhf = a.take<bf16>(NC);
    dx0 = a.take<bf16>(NC);
    dv_first = cfg.value_residual ? a.take<bf16>(NC) : nullptr;
    dve = cfg.value_embeds > 0 ? a.take<bf16>(NC) : nullptr;
    dh = a.take<bf16>(NC);
    dfc = a.take<bf16>(N * F);
    dact = a.take<bf16>(N * F);
    dqkv = a.take<bf16>(3 * NC);
    dq = a.take<bf16>(NC);
    dk = a.take<bf16>(NC);
    dv = a.take<bf16>(NC);
    datt = a.take<bf16>(NC);
    dattn_out = a.take<bf16>(NC);
    dtmp = a.take<bf16>(NC);
    dskip.assign(L + 1, nullptr);
    for (int l = 0; l < L; ++l)
      if (int src = cfg.unet_skip_source(l); src >= 0) dskip[src] = a.take<bf16>(NC);
    if (cfg.backout_layer >= 0 && !dskip[cfg.backout_layer + 1]) dskip[cfg.backout_layer + 1] = a.take<bf16>(NC);
    const size_t rows = std::max<size_t>(N, N * H);
    norm_scratch = a.take<float>(std::max(gpu::norm_backward_scratch_floats(static_cast<int>(rows), std::max(C, D)),
                                          gpu::norm_backward_scratch_floats(static_cast<int>(N), C)));
    mix_scratch = a.take<float>(gpu::mix_backward_scratch_floats());
    attn_scratch = a.take<float>(gpu::attention_backward_scratch_floats(max_batch, max_seq, H));
    if (cfg.attn_gate_dims > 0)
      gate_scratch = a.take<float>(gpu::attention_gate_backward_scratch_floats(static_cast<int>(N), H, cfg.attn_gate_dims));
    if (smear())
      smear_scratch = a.take<float>(gpu::smear_backward_scratch_floats(static_cast<int>(N), cfg.smear_gate_dims));
  }
};

struct GptCuda::Impl : ModelBuffers {
  gpu::AttentionKernel attention_kernel;
  std::function<void(int)> layer_grads_hook;
  cudaStream_t stream = nullptr;
  gpu::Matmul matmul;
  Arena arena;

  // last forward
  int B = 0, Tn = 0, num_unique = 0;
  bool have_targets = false;
  std::vector<int32_t> host_tokens;

  Impl(const ModelConfig& c, int mb, int ms)
      : ModelBuffers(c, mb, ms), attention_kernel(gpu::parse_attention_kernel(c.attention_kernel)) {}

  // ---- helpers mirroring the CPU model ---------------------------------------------------------
  void norm_forward(bf16* out, float* mean, float* rstd, const bf16* x, size_t w, size_t b, int rows) {
    if (layernorm)
      gpu::layernorm_forward(out, mean, rstd, x, pb(w), pb(b), rows, C, eps, stream);
    else
      gpu::rmsnorm_forward(out, rstd, x, pb(w), rows, C, eps, stream);
  }
  void norm_backward(bf16* dx, const bf16* dout, const bf16* x, size_t w, size_t b, const float* mean,
                     const float* rstd, int rows, bool accumulate) {
    if (layernorm)
      gpu::layernorm_backward(dx, g(w), g(b), dout, x, pb(w), mean, rstd, rows, C, accumulate, norm_scratch, stream);
    else
      gpu::rmsnorm_backward(dx, g(w), dout, x, pb(w), rstd, rows, C, accumulate, norm_scratch, stream);
  }
  void copy(bf16* dst, const bf16* src, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(bf16), cudaMemcpyDeviceToDevice, stream));
  }
  // out = x + y  (in place allowed)
  void add(bf16* out, const bf16* x, const bf16* y, size_t n) {
    gpu::mix_forward(out, x, y, MixCoef::constant(1.0f), MixCoef::constant(1.0f), n, stream);
  }

  // q or k: raw (N, C) -> attention input, and back (see Gpt<T>::qk_forward).
  void qk_forward(bf16* out, bf16* mid, float* rstd, const bf16* raw) {
    const int N = B * Tn;
    if (!cfg.qk_norm) {
      if (rope)
        gpu::rope_forward(out, raw, rope_cos, rope_sin, B, Tn, H, D, stream);
      else
        copy(out, raw, static_cast<size_t>(N) * C);
    } else if (cfg.qk_norm_position == "before_rope" || !rope) {
      gpu::rmsnorm_forward(out, rstd, raw, nullptr, N * H, D, eps, stream);
      if (rope) gpu::rope_forward(out, out, rope_cos, rope_sin, B, Tn, H, D, stream);
    } else {
      gpu::rope_forward(mid, raw, rope_cos, rope_sin, B, Tn, H, D, stream);
      gpu::rmsnorm_forward(out, rstd, mid, nullptr, N * H, D, eps, stream);
    }
  }
  // draw = d(raw) from dout = d(attention input); scratch: an (N, C) buffer.
  void qk_backward(bf16* draw, const bf16* dout, bf16* scratch, const bf16* mid, const float* rstd,
                   const bf16* raw) {
    const int N = B * Tn;
    if (!cfg.qk_norm) {
      if (rope)
        gpu::rope_backward(draw, dout, rope_cos, rope_sin, B, Tn, H, D, stream);
      else
        copy(draw, dout, static_cast<size_t>(N) * C);
    } else if (cfg.qk_norm_position == "before_rope" || !rope) {
      const bf16* dnormed = dout;
      if (rope) {
        gpu::rope_backward(scratch, dout, rope_cos, rope_sin, B, Tn, H, D, stream);
        dnormed = scratch;
      }
      gpu::rmsnorm_backward(draw, nullptr, dnormed, raw, nullptr, rstd, N * H, D, false, norm_scratch, stream);
    } else {
      gpu::rmsnorm_backward(scratch, nullptr, dout, mid, nullptr, rstd, N * H, D, false, norm_scratch, stream);
      gpu::rope_backward(draw, scratch, rope_cos, rope_sin, B, Tn, H, D, stream);
    }
  }
  const int32_t* docs() const { return cfg.document_mask ? doc_ids : nullptr; }

  // Backward of block l's value mix v = a v_raw + c source (value_mix(l)), in
  // place on dv (dv = dL/dv in, dL/dv_raw out), as Gpt<T>::backward:
  //   lerp      dl  += sum dv (source - v_raw)
  //   weighted  dl0 += sum dv v_raw,  dl1 += sum dv source  (with a source)
  //   source    layer 0's v_raw: dv_first += c dv (layer 0 itself adds dv_first to its own dv_raw);
  //             a value embedding: dve = c dv, scattered into the table's gradient right away (the
  //             embedding backward adds into the fp32 gradient in a fixed order, so a table that
  //             several layers share gets each layer's rows, deterministically, without a buffer).
  void value_mix_backward(int l) {
    using Coef = ModelConfig::ValueMixPlan::Coef;
    const ValueMix vm = value_mix(l);
    if (!vm.plan.learned) return;  // v = v_raw
    const size_t NC = static_cast<size_t>(B) * Tn * C;
    const bool lerp = vm.plan.a == Coef::one_minus_lambda0;  // else weighted: a = l0, c = l1 or 0
    const bool own_source = vm.plan.first_layer_v && l == 0;  // v_first is this layer's own v_raw
    float* dlam = g(offsets.blocks[static_cast<size_t>(l)].value_lambda);
    if (own_source && lerp) {
      // (1 - l) v_raw + l v_raw = v_raw: dv_raw = dv plus what later layers sent; dl is exactly 0.
      add(dv, dv, dv_first, NC);
      return;
    }
    bf16* dsource = vm.plan.table >= 0 ? dve : (vm.source ? dv_first : nullptr);
    float* dlam_c = lerp ? dlam : (vm.plan.c == Coef::lambda1 ? dlam + 1 : nullptr);  // lerp: both terms into l0
    gpu::mix_backward(dv, dsource, dlam, dlam_c, dv, acts[l].v_raw, vm.source, vm.a, vm.c, NC,
                      /*accumulate_dx=*/false, /*accumulate_dy=*/vm.plan.table < 0, mix_scratch, stream);
    if (own_source) add(dv, dv, dv_first, NC);  // weighted layer 0: l0 dv + (l1 dv + later layers')
    if (vm.plan.table >= 0)
      gpu::embedding_backward(g(offsets.value_embeds[static_cast<size_t>(vm.plan.table)]), nullptr, dve, emb_ids,
                              emb_offsets, emb_positions, num_unique, B, Tn, C, stream);
  }
};

GptCuda::GptCuda(const ModelConfig& cfg, int max_batch, int max_seq_len)
    : impl_(std::make_unique<Impl>(cfg, max_batch, max_seq_len)) {
  Impl& m = *impl_;
  CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  m.layout(m.arena);  // measure
  m.arena.allocate(str("the GPU model (parameters fp32 + bf16, gradients, activations for ", max_batch, " x ",
                        max_seq_len, " tokens)"));
  m.layout(m.arena);  // hand out
  if (m.rope) {
    m.rope_freqs = cpu::rope_frequencies(m.D, cfg.rope_base, cfg.rope_frequencies == "half_truncated");
    m.upload_rope_tables();
  }
  CUDA_CHECK(cudaMemset(m.params, 0, m.table.total() * sizeof(float)));
  CUDA_CHECK(cudaMemset(m.params_bf16, 0, m.table.total() * sizeof(bf16)));
  zero_grad();
}

size_t GptCuda::device_bytes(const ModelConfig& cfg, int max_batch, int max_seq_len) {
  ModelBuffers buffers(cfg, max_batch, max_seq_len);
  Arena measure;
  buffers.layout(measure);
  return measure.measured_bytes();
}

GptCuda::~GptCuda() {
  if (impl_->stream) cudaStreamSynchronize(impl_->stream);
  impl_->arena.release();
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

const ModelConfig& GptCuda::config() const { return impl_->cfg; }
const ParamTable& GptCuda::table() const { return impl_->table; }
cudaStream_t GptCuda::stream() const { return impl_->stream; }
float* GptCuda::device_params() { return impl_->params; }
void* GptCuda::device_params_bf16() { return impl_->params_bf16; }
float* GptCuda::device_grads() { return impl_->grads; }
const float* GptCuda::device_max_logits() const { return impl_->max_logits; }
gpu::Matmul& GptCuda::matmul() { return impl_->matmul; }

void GptCuda::set_params(const std::vector<float>& host) {
  Impl& m = *impl_;
  if (host.size() != m.table.total())
    fail("GptCuda::set_params: ", host.size(), " values for ", m.table.total(), " parameters");
  CUDA_CHECK(cudaMemcpyAsync(m.params, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice, m.stream));
  f32_to_bf16_kernel<<<blocks_for(host.size()), 256, 0, m.stream>>>(m.params_bf16, m.params, host.size());
  CUDA_CHECK_LAUNCH("f32_to_bf16_kernel");
  CUDA_CHECK(cudaStreamSynchronize(m.stream));
}

std::vector<float> GptCuda::params() const {
  std::vector<float> host(impl_->table.total());
  CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  CUDA_CHECK(cudaMemcpy(host.data(), impl_->params, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

std::vector<float> GptCuda::grads() const {
  std::vector<float> host(impl_->table.total());
  CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  CUDA_CHECK(cudaMemcpy(host.data(), impl_->grads, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

void GptCuda::zero_grad() {
  CUDA_CHECK(cudaMemsetAsync(impl_->grads, 0, impl_->table.total() * sizeof(float), impl_->stream));
}

std::vector<float> GptCuda::logits() const {
  const Impl& m = *impl_;
  const size_t n = static_cast<size_t>(m.B) * m.Tn * m.Vp;
  std::vector<float> host(n);
  float* tmp = nullptr;
  CUDA_CHECK(cudaMalloc(&tmp, std::max<size_t>(n, 1) * sizeof(float)));  // diagnostics only, not in the step
  bf16_to_f32_kernel<<<blocks_for(n), 256, 0, m.stream>>>(tmp, m.logits, n);
  CUDA_CHECK_LAUNCH("bf16_to_f32_kernel");
  CUDA_CHECK(cudaStreamSynchronize(m.stream));
  CUDA_CHECK(cudaMemcpy(host.data(), tmp, n * sizeof(float), cudaMemcpyDeviceToHost));
  cudaFree(tmp);
  return host;
}

std::vector<float> GptCuda::max_attention_logits() const {
  const Impl& m = *impl_;
  std::vector<float> host(static_cast<size_t>(m.L) * m.H);
  CUDA_CHECK(cudaStreamSynchronize(m.stream));
  CUDA_CHECK(cudaMemcpy(host.data(), m.max_logits, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

double GptCuda::forward(const int32_t* tokens, const int32_t* targets, int B, int Tn, const int32_t* doc_ids) {
  Impl& m = *impl_;
  if (B < 1 || B > m.max_batch || Tn < 1 || Tn > m.max_seq)
    fail("forward: batch ", B, "x", Tn, " exceeds the allocated ", m.max_batch, "x", m.max_seq);
  const int N = B * Tn;
  for (int i = 0; i < N; ++i) {
    if (tokens[i] < 0 || tokens[i] >= m.cfg.vocab_size)
      fail("forward: token id ", tokens[i], " at position ", i, " is outside the vocabulary (", m.cfg.vocab_size, ")");
    if (targets && (targets[i] < 0 || targets[i] >= m.cfg.vocab_size))
      fail("forward: target id ", targets[i], " at position ", i, " is outside the vocabulary");
  }
  if (m.cfg.document_mask && !doc_ids) fail("forward: model.document_mask is on but no document ids were given");
  m.B = B;
  m.Tn = Tn;
  m.have_targets = targets != nullptr;
  const size_t NC = static_cast<size_t>(N) * m.C;
  cudaStream_t s = m.stream;

  // Inputs, and the embedding backward's plan (positions of each distinct token).
  CUDA_CHECK(cudaMemcpyAsync(m.tokens, tokens, N * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  if (targets) CUDA_CHECK(cudaMemcpyAsync(m.targets, targets, N * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  if (m.cfg.document_mask)
    CUDA_CHECK(cudaMemcpyAsync(m.doc_ids, doc_ids, N * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  if (targets) {
    const gpu::EmbeddingBackwardPlan plan = gpu::plan_embedding_backward(tokens, N, m.cfg.vocab_size);
    m.num_unique = static_cast<int>(plan.ids.size());
    CUDA_CHECK(cudaMemcpyAsync(m.emb_ids, plan.ids.data(), plan.ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(m.emb_offsets, plan.offsets.data(), plan.offsets.size() * sizeof(int32_t),
                               cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(m.emb_positions, plan.positions.data(), plan.positions.size() * sizeof(int32_t),
                               cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));  // the plan lives on the host stack
  }

  gpu::embedding_forward(m.emb, m.tokens, m.pb(m.offsets.tok_embed), m.pb(m.offsets.pos_embed), B, Tn, m.C, m.cfg.vocab_size, s);
  const bf16* x0 = m.emb;
  if (m.smear()) {  // smeared = emb + lambda * sigmoid(emb[:, :K] . w) * (the previous token's emb)
    gpu::smear_forward(m.smeared, m.smear_gates, m.emb, m.p32(m.offsets.smear_w), m.p32(m.offsets.smear_lambda), B,
                       Tn, m.C, m.cfg.smear_gate_dims, s);
    x0 = m.smeared;
  }
  if (m.cfg.embed_norm) {
    m.norm_forward(m.x0, m.embn_mean, m.embn_rstd, x0, m.offsets.embn_w, m.offsets.embn_b, N);
    x0 = m.x0;
  }
  for (size_t t = 0; t < m.value_embeds.size(); ++t)  // each table's rows for the tokens (no positions)
    gpu::embedding_forward(m.value_embeds[t], m.tokens, m.pb(m.offsets.value_embeds[t]), nullptr, B, Tn, m.C,
                           m.cfg.vocab_size, s);

  const float scale = static_cast<float>(m.cfg.softmax_scale());
  const float branch = static_cast<float>(m.cfg.attn_residual_scale);
  for (int l = 0; l < m.L; ++l) {
    const BlockParamOffsets& ly = m.offsets.blocks[l];
    Impl::LayerActs& a = m.acts[l];
    if (l == 0) m.copy(a.x_in, x0, NC);
    const bf16* x = a.x_in;
    if (int src = m.cfg.unet_skip_source(l); src >= 0) {
      gpu::mix_forward(a.x_skip, x, m.acts[src].x_in, MixCoef::constant(1.0f), m.skip_coef(l), NC, s);
      x = a.x_skip;
    }
    if (m.cfg.has_x0_mix(l)) {
      const float* lam = m.p32(ly.x0_lambdas);
      gpu::mix_forward(a.x_mix, x, x0, MixCoef::learned(lam), MixCoef::learned(lam + 1), NC, s);
      x = a.x_mix;
    }
    float* max_logits = m.max_logits + static_cast<size_t>(l) * m.H;
    bf16* next = l + 1 < m.L ? m.acts[l + 1].x_in : m.x_final;
    const bool mlp = m.cfg.has_mlp(l);
    const bf16* x_attn = x;  // attention-free block: the MLP reads the block input
    if (!m.cfg.has_attention(l)) {
      CUDA_CHECK(cudaMemsetAsync(max_logits, 0, m.H * sizeof(float), s));  // no logits: 0, as the CPU model
    } else {
      // attention
      m.norm_forward(a.h1, a.n1_mean, a.n1_rstd, x, ly.norm1_w, ly.norm1_b, N);
      m.matmul.forward(a.qkv, a.h1, m.pb(ly.qkv_w), m.pb(ly.qkv_b), N, m.C, 3 * m.C, s);
      split_qkv_kernel<<<blocks_for(NC), 256, 0, s>>>(a.q_raw, a.k_raw, a.v_raw, a.qkv, N, m.C);
      CUDA_CHECK_LAUNCH("split_qkv_kernel");
      const Impl::ValueMix vm = m.value_mix(l);  // v = a v_raw + c source
      if (vm.source)
        gpu::mix_forward(a.v, a.v_raw, vm.source, vm.a, vm.c, NC, s);
      else if (vm.plan.learned)  // weighted without a source: v = l0 v_raw
        gpu::mix_forward(a.v, a.v_raw, a.v_raw, vm.a, MixCoef::constant(0.0f), NC, s);
      else
        m.copy(a.v, a.v_raw, NC);
      m.qk_forward(a.q, a.q_mid, a.q_rstd, a.q_raw);
      m.qk_forward(a.k, a.k_mid, a.k_rstd, a.k_raw);
      gpu::attention_forward(a.att, a.lse, max_logits, a.q, a.k, a.v, B, Tn, m.H, m.D, scale, m.cfg.window(l),
                             m.cfg.window_block, m.docs(), s, m.attention_kernel);
      const bf16* proj_in = a.att;
      if (a.gate) {  // attention gate: att_gated = sigmoid(h1[:, :K] W^T) * att, per head
        gpu::attention_gate_forward(a.att_gated, a.gate, a.att, a.h1, m.p32(ly.gate_w), N, m.C, m.H, m.D,
                                    m.cfg.attn_gate_dims, s);
        proj_in = a.att_gated;
      }
      m.matmul.forward(a.attn_out, proj_in, m.pb(ly.proj_w), m.pb(ly.proj_b), N, m.C, m.C, s);
      bf16* out = mlp ? a.x_attn : next;  // an MLP-free block's output is the state after the attention residual
      gpu::mix_forward(out, x, a.attn_out, MixCoef::constant(1.0f), MixCoef::constant(branch), NC, s);
      x_attn = out;
    }
    if (mlp) {
      m.norm_forward(a.h2, a.n2_mean, a.n2_rstd, x_attn, ly.norm2_w, ly.norm2_b, N);
      m.matmul.forward(a.fc, a.h2, m.pb(ly.fc_w), m.pb(ly.fc_b), N, m.C, m.F, s);
      const size_t NF = static_cast<size_t>(N) * m.F;
      if (m.cfg.activation == "gelu")
        gpu::gelu_forward(a.act, a.fc, NF, s);
      else
        gpu::relu2_forward(a.act, a.fc, NF, s);
      m.matmul.forward(next, a.act, m.pb(ly.mlp_w), m.pb(ly.mlp_b), N, m.F, m.C, s);
      m.add(next, next, x_attn, NC);
    } else if (x_attn != next) {
      m.copy(next, x_attn, NC);  // a block with neither sublayer passes its input on
    }
  }

  const bf16* x_last = m.final_norm_input(static_cast<size_t>(N) * m.C, s);
  m.norm_forward(m.hf, m.nf_mean, m.nf_rstd, x_last, m.offsets.normf_w, m.offsets.normf_b, N);
  m.matmul.forward(m.logits, m.hf, m.pb(m.offsets.head), nullptr, N, m.C, m.Vp, s);
  if (!targets) {
    CUDA_CHECK(cudaStreamSynchronize(s));
    return 0.0;
  }
  gpu::softcap_ce_forward(m.losses, m.lse, m.logits, m.targets, N, m.Vp, m.V_softmax,
                          static_cast<float>(m.cfg.logit_softcap), s);
  token_losses_.resize(N);
  CUDA_CHECK(cudaMemcpyAsync(token_losses_.data(), m.losses, N * sizeof(float), cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  double total = 0;
  for (float v : token_losses_) total += v;
  return total / N;
}

void GptCuda::backward(float loss_scale) {
  Impl& m = *impl_;
  MUONGPT_CHECK(m.have_targets, "backward needs a forward with targets");
  const int B = m.B, Tn = m.Tn, N = B * Tn;
  const size_t NC = static_cast<size_t>(N) * m.C, NF = static_cast<size_t>(N) * m.F;
  const float scale = static_cast<float>(m.cfg.softmax_scale());
  const float branch = static_cast<float>(m.cfg.attn_residual_scale);
  cudaStream_t s = m.stream;

  bf16* dlogits = m.logits;  // in place
  gpu::softcap_ce_backward(dlogits, m.logits, m.lse, m.targets, loss_scale, N, m.Vp, m.V_softmax,
                           static_cast<float>(m.cfg.logit_softcap), s);
  m.matmul.backward(m.dhf, m.g(m.offsets.head), nullptr, dlogits, m.hf, m.pb(m.offsets.head), N, m.C, m.Vp, false, s);
  const bool backout = m.cfg.backout_layer >= 0;
  m.norm_backward(m.dres, m.dhf, backout ? m.x_backout : m.x_final, m.offsets.normf_w, m.offsets.normf_b, m.nf_mean,
                  m.nf_rstd, N, false);

  const bf16* x_emb = m.smear() ? m.smeared : m.emb;  // the embedding norm's input
  const bf16* x0 = m.cfg.embed_norm ? m.x0 : x_emb;
  CUDA_CHECK(cudaMemsetAsync(m.dx0, 0, NC * sizeof(bf16), s));
  if (m.dv_first) CUDA_CHECK(cudaMemsetAsync(m.dv_first, 0, NC * sizeof(bf16), s));
  for (bf16* d : m.dskip)
    if (d) CUDA_CHECK(cudaMemsetAsync(d, 0, NC * sizeof(bf16), s));
  if (backout) {  // x_backout = x_final - lambda * x_b: boundary b + 1 gets -lambda * dres, x_final dres as it is
    const int boundary = m.cfg.backout_layer + 1;
    gpu::mix_backward(nullptr, m.dskip[boundary], nullptr, m.g(m.offsets.backout_lambda), m.dres, m.x_final,
                      m.acts[boundary].x_in, MixCoef::constant(1.0f), m.backout_coef(), NC, false, false,
                      m.mix_scratch, s);
  }

  for (int l = m.L - 1; l >= 0; --l) {
    const BlockParamOffsets& ly = m.offsets.blocks[l];
    Impl::LayerActs& a = m.acts[l];
    const int src = m.cfg.unet_skip_source(l);
    const bf16* x_block = m.cfg.has_x0_mix(l) ? a.x_mix : (src >= 0 ? a.x_skip : a.x_in);
    const bool attention = m.cfg.has_attention(l);
    // MLP (dres = dL/d(block output)); an MLP-free block's output is x_attn
    if (m.cfg.has_mlp(l)) {
      const bf16* x_attn = attention ? a.x_attn : x_block;
      m.matmul.backward(m.dact, m.g(ly.mlp_w), m.g(ly.mlp_b), m.dres, a.act, m.pb(ly.mlp_w), N, m.F, m.C, false, s);
      if (m.cfg.activation == "gelu")
        gpu::gelu_backward(m.dfc, m.dact, a.fc, NF, s);
      else
        gpu::relu2_backward(m.dfc, m.dact, a.fc, NF, s);
      m.matmul.backward(m.dh, m.g(ly.fc_w), m.g(ly.fc_b), m.dfc, a.h2, m.pb(ly.fc_w), N, m.C, m.F, false, s);
      m.norm_backward(m.dres, m.dh, x_attn, ly.norm2_w, ly.norm2_b, a.n2_mean, a.n2_rstd, N, true);
    }
    // dres = dL/dx_attn; x_attn = x_block + branch * attn_out (= x_block in an attention-free block)
    if (attention) {
      const bool gated = a.gate != nullptr;
      gpu::mix_forward(m.dattn_out, m.dres, m.dres, MixCoef::constant(branch), MixCoef::constant(0.0f), NC, s);
      m.matmul.backward(m.datt, m.g(ly.proj_w), m.g(ly.proj_b), m.dattn_out, gated ? a.att_gated : a.att,
                        m.pb(ly.proj_w), N, m.C, m.C, false, s);
      if (gated) {
        // datt: d(att_gated) -> d(att) in place; the gate's part of d(h1) goes into dh, which the qkv
        // backward below then adds its own part to
        CUDA_CHECK(cudaMemsetAsync(m.dh, 0, NC * sizeof(bf16), s));
        gpu::attention_gate_backward(m.datt, m.g(ly.gate_w), m.dh, m.datt, a.att, a.gate, a.h1, m.p32(ly.gate_w), N,
                                     m.C, m.H, m.D, m.cfg.attn_gate_dims, m.gate_scratch, s);
      }
      gpu::attention_backward(m.dq, m.dk, m.dv, m.datt, a.att, a.lse, a.q, a.k, a.v, B, Tn, m.H, m.D, scale,
                              m.cfg.window(l), m.cfg.window_block, m.docs(), m.attn_scratch, s, m.attention_kernel);
      m.value_mix_backward(l);  // dv -> d(v_raw), the value lambdas and the source's gradient
      // d(attention input) -> d(raw q, k); datt is free again after the attention backward
      m.qk_backward(m.dtmp, m.dq, m.datt, a.q_mid, a.q_rstd, a.q_raw);
      std::swap(m.dtmp, m.dq);
      m.qk_backward(m.dtmp, m.dk, m.datt, a.k_mid, a.k_rstd, a.k_raw);
      std::swap(m.dtmp, m.dk);
      merge_qkv_kernel<<<blocks_for(NC), 256, 0, s>>>(m.dqkv, m.dq, m.dk, m.dv, N, m.C);
      CUDA_CHECK_LAUNCH("merge_qkv_kernel");
      m.matmul.backward(m.dh, m.g(ly.qkv_w), m.g(ly.qkv_b), m.dqkv, a.h1, m.pb(ly.qkv_w), N, m.C, 3 * m.C,
                        /*accumulate_dinp=*/gated, s);
      m.norm_backward(m.dres, m.dh, x_block, ly.norm1_w, ly.norm1_b, a.n1_mean, a.n1_rstd, N, true);
    }
    // dres = dL/d(x_block)
    if (m.cfg.has_x0_mix(l)) {
      const float* lam = m.p32(ly.x0_lambdas);
      float* dlam = m.g(ly.x0_lambdas);
      const bf16* x_pre = src >= 0 ? a.x_skip : a.x_in;
      gpu::mix_backward(m.dtmp, m.dx0, dlam, dlam + 1, m.dres, x_pre, x0, MixCoef::learned(lam),
                        MixCoef::learned(lam + 1), NC, false, true, m.mix_scratch, s);
      std::swap(m.dtmp, m.dres);
    }
    if (src >= 0) {
      const int i = l - m.L / 2;
      gpu::mix_backward(nullptr, m.dskip[src], nullptr, m.g(m.offsets.skip_w) + i, m.dres, a.x_in, m.acts[src].x_in,
                        MixCoef::constant(1.0f), m.skip_coef(l), NC, false, true, m.mix_scratch, s);
    }
    // dres = dL/d(boundary l); add the skip gradients aimed at this boundary
    if (m.dskip[l]) m.add(m.dres, m.dres, m.dskip[l], NC);
    if (m.layer_grads_hook) m.layer_grads_hook(l);  // blocks.l.* gradients are enqueued
  }
  m.add(m.dx0, m.dx0, m.dres, NC);
  bf16* demb = m.dx0;
  if (m.cfg.embed_norm) {
    m.norm_backward(m.dh, m.dx0, x_emb, m.offsets.embn_w, m.offsets.embn_b, m.embn_mean, m.embn_rstd, N, false);
    demb = m.dh;
  }
  if (m.smear()) {  // d(smeared) -> d(emb), into whichever of dx0 and dh is free (de must not alias dy)
    bf16* de = demb == m.dx0 ? m.dh : m.dx0;
    gpu::smear_backward(de, m.g(m.offsets.smear_w), m.g(m.offsets.smear_lambda), demb, m.emb, m.smear_gates,
                        m.p32(m.offsets.smear_w), m.p32(m.offsets.smear_lambda), B, Tn, m.C, m.cfg.smear_gate_dims,
                        m.smear_scratch, s);
    demb = de;
  }
  gpu::embedding_backward(m.g(m.offsets.tok_embed), m.g(m.offsets.pos_embed), demb, m.emb_ids, m.emb_offsets, m.emb_positions,
                          m.num_unique, B, Tn, m.C, s);
  CUDA_CHECK(cudaStreamSynchronize(s));
}

void GptCuda::set_layer_grads_hook(std::function<void(int)> hook) { impl_->layer_grads_hook = std::move(hook); }

void GptCuda::set_attention_windows(const std::vector<int>& windows) {
  check_attention_windows(impl_->cfg, windows);
  impl_->cfg.attn_window = windows;
}

void GptCuda::set_attention(const AttentionSettings& settings) {
  Impl& m = *impl_;
  set_attention_windows(settings.windows);
  MUONGPT_CHECK(settings.scale > 0);
  m.cfg.attn_scale = settings.scale;
  if (!m.rope || settings.rope_freqs == m.rope_freqs) return;
  MUONGPT_CHECK(settings.rope_freqs.size() == m.rope_freqs.size());
  m.rope_freqs = settings.rope_freqs;
  CUDA_CHECK(cudaStreamSynchronize(m.stream));  // no kernel may still read the old tables
  m.upload_rope_tables();
}

}  // namespace muongpt
