// The optimizer on the GPU: see device_optimizer.h.
//
// Layout of the work. At construction every Muon matrix is cut into its
// MuonBlocks (muon_blocks, as the CPU), and the blocks of one group with the
// same shape, across all layers, form a batch (gpu::MuonBlockRef table on the
// device). A step then runs, per batch:
//   1. muon_momentum_batched: momentum + Nesterov blend of every block, the
//      fp32 result gathered into a contiguous batch buffer (copy in);
//   2. newton_schulz_batched: per-block ||.||_F normalisation to bf16 and the
//      iterations as strided-batched cuBLASLt GEMMs (3 per iteration);
//   3. NorMuon (if on): per-row/column factors and the state update;
//   4. muon_apply_batched: scale, weight decay (cautious), NorMuon factor and
//      the update straight into the parameters (copy out), refreshing bf16.
// AdamW runs once per stretch of a group's parameters that are adjacent in the
// parameter buffer. QK-clip scales the q/k rows of heads whose running max
// logit (kept on the device) exceeded tau, after all updates, as the CPU.
// Every scalar (lr, momentum, bias corrections) comes from the step index on
// the host; nothing in step() waits for the device.
//
// Sharded state: the batches hold only the blocks of matrices this rank
// updates (all of them, or the ones it owns), the AdamW runs only its range of
// each parameter, and the state buffers are sized for those parts alone
// (state_off is then an offset into this rank's compact buffers).
#include "backend/cuda/device_optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <tuple>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/newton_schulz.cuh"
#include "kernels/cuda/optimizer.cuh"
#include "optim/optimizer.h"
#include "optim/qk_clip.h"
#include "optim/schedule.h"
#include "util/error.h"

namespace muongpt {

using gpu::bf16;

namespace {

constexpr size_t kPad = 128;  // batch strides in elements (256 bytes of bf16)

size_t padded(size_t n) { return (n + kPad - 1) / kPad * kPad; }

// bf16 copy of the fp32 master after a gather (round to nearest, as every
// update kernel writes it).
__global__ void refresh_bf16_kernel(gpu::bf16* out, const float* in, size_t n) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out[i] = gpu::f2bf(in[i]);
}

void refresh_bf16(gpu::bf16* out, const float* in, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  const size_t blocks = std::min<size_t>(gpu::ceil_div(n, static_cast<size_t>(kThreads)), 65536 * 16);
  refresh_bf16_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(out, in, n);
  CUDA_CHECK_LAUNCH("refresh_bf16_kernel");
}

template <class T>
T* device_alloc(size_t n) {
  T* p = nullptr;
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), sizeof(T) * std::max<size_t>(n, 1)));
  return p;
}

}  // namespace

struct DeviceOptimizer::Impl {
  // Same-shape Muon blocks of one group.
  struct Batch {
    int group = 0, rows = 0, cols = 0;
    size_t ref0 = 0;  // first entry in refs
    int count = 0;
    size_t stride = 0;  // elements between blocks in the batch buffers
    double scale = 1;   // muon_update_scale
    bool per_row = true;
    int stats = 0;      // NorMuon statistics per block
  };
  // Adjacent AdamW parameters of one group (one launch).
  struct AdamRun {
    int group = 0;
    size_t w_off = 0, s_off = 0, n = 0;
  };

  Impl(const ParamTable& t, gpu::Matmul& m, cudaStream_t s) : table(t), mm(m), stream(s) {}
  ~Impl() {
    for (void* p : {static_cast<void*>(mom), static_cast<void*>(adam_m), static_cast<void*>(adam_v),
                    static_cast<void*>(adam_gsum),
                    static_cast<void*>(nv), static_cast<void*>(u32), static_cast<void*>(o16), static_cast<void*>(ws),
                    static_cast<void*>(scratch), static_cast<void*>(factors), static_cast<void*>(nscratch),
                    static_cast<void*>(d_refs), static_cast<void*>(attn_max), static_cast<void*>(d_layers)})
      if (p) cudaFree(p);
    for (cudaEvent_t e : events) cudaEventDestroy(e);
  }

  const ParamTable& table;
  OptimConfig optim;
  ScheduleConfig schedule;
  int total_steps = 0;
  gpu::Matmul& mm;
  cudaStream_t stream;
  ParamGroupAssignment assign;
  ShardPlan plan;
  int rank = 0;
  bool sharded = false;
  std::vector<std::vector<gpu::NsCoefficients>> coeffs;  // per group
  std::vector<size_t> state_off;                          // per param: into mom (Muon) or adam_m/adam_v (AdamW), this rank's part
  std::vector<size_t> nv_off, nv_numel;                   // per param: NorMuon state (nv_numel: the full tensor's)
  size_t mom_total = 0, adam_total = 0, nv_total = 0;    // floats of state this rank keeps
  std::vector<Batch> batches;
  std::vector<AdamRun> adam_runs;
  float *mom = nullptr, *adam_m = nullptr, *adam_v = nullptr, *nv = nullptr;
  float* adam_gsum = nullptr;  // summed gradients of AdamW groups with update_every > 1 (as adam_m), or null
  size_t gsum_total = 0;
  float* u32 = nullptr;  // momentum-blended blocks of a batch, fp32
  bf16* o16 = nullptr;   // their orthogonalisation
  bf16* ws = nullptr;    // Newton-Schulz workspace (largest batch)
  double* scratch = nullptr;
  float* factors = nullptr;   // NorMuon factors of a batch
  double* nscratch = nullptr; // NorMuon per-statistic scratch
  gpu::MuonBlockRef* d_refs = nullptr;
  // QK-clip
  int n_layer = 0, n_head = 0, head_dim = 0, qk_cols = 0;
  float* attn_max = nullptr;  // running max logits, n_layer x n_head, -inf = none
  gpu::QkClipLayer* d_layers = nullptr;
  double ns_flops = 0;
  bool timing = false;
  // events: [0] start, [1] Muon done, [2] AdamW done, then a pair per Newton-Schulz batch
  std::vector<cudaEvent_t> events;
  int ns_calls = 0;

  const OptimGroupConfig& group_of(int pi) const { return optim.groups[assign.group_of_param[pi]]; }
  bool is_muon(int pi) const { return group_of(pi).type == "muon"; }

  // Muon: whether rank r updates (and keeps the state of) matrix pi.
  bool muon_on(int pi, int r) const {
    return plan.replicated[pi] || plan.ranges[pi][r].second > plan.ranges[pi][r].first;
  }

  // One state tensor ("<param>.<kind>"): its full size and the part rank r
  // keeps, [lo, hi) of the full tensor; data points at that part on this
  // rank (r == rank; null when empty).
  struct StatePart {
    int param = 0;
    size_t full = 0, lo = 0, hi = 0;
    float* data = nullptr;
  };
  StatePart state_part(const std::string& name, int r) const {
    const auto dot = name.rfind('.');
    if (dot == std::string::npos) fail("optimizer state ", name, ": expected <param>.<kind>");
    const std::string kind = name.substr(dot + 1);
    const ParamSpec* spec = table.find(name.substr(0, dot));
    if (!spec) fail("optimizer state ", name, ": no such parameter");
    if (r < 0 || r >= plan.world) fail("optimizer state ", name, ": rank ", r, " of ", plan.world);
    StatePart p;
    p.param = static_cast<int>(spec - table.params().data());
    const int pi = p.param;
    const bool muon = is_muon(pi);
    float* base = nullptr;
    if (muon && kind == "momentum") {
      p.full = spec->numel;
      base = mom + state_off[pi];
    } else if (muon && kind == "normuon_v" && group_of(pi).normuon.enabled) {
      p.full = nv_numel[pi];
      base = nv + nv_off[pi];
    } else if (!muon && (kind == "adam_m" || kind == "adam_v")) {
      p.full = spec->numel;
      base = (kind == "adam_m" ? adam_m : adam_v) + state_off[pi];
    } else if (!muon && kind == "adam_grad_sum" && group_of(pi).update_every > 1) {
      p.full = spec->numel;
      base = adam_gsum + state_off[pi];
    } else {
      fail("optimizer state ", name, ": parameter ", spec->name, " has no state \"", kind, "\"");
    }
    if (muon) {  // the whole tensor where the matrix is worked on, nothing elsewhere
      p.hi = muon_on(pi, r) ? p.full : 0;
    } else {
      std::tie(p.lo, p.hi) = plan.ranges[pi][r];
    }
    if (r == rank && p.hi > p.lo) p.data = base;
    return p;
  }

  void event(int i) {
    if (!timing) return;
    while (static_cast<int>(events.size()) <= i) {
      cudaEvent_t e;
      CUDA_CHECK(cudaEventCreate(&e));
      events.push_back(e);
    }
    CUDA_CHECK(cudaEventRecord(events[i], stream));
  }

  void setup_qk_clip(const std::string& source);
};

bool DeviceOptimizer::supports(const OptimConfig& optim, std::string& why) {
  if (optim.diagnostics_every > 0) {
    why = "diagnostics (optim.diagnostics_every)";
    return false;
  }
  return true;
}

bool DeviceOptimizer::supports(const OptimConfig& optim, const DistConfig& dist, int world, std::string& why) {
  if (!supports(optim, why)) return false;
  const bool any_muon =
      std::any_of(optim.groups.begin(), optim.groups.end(), [](const OptimGroupConfig& g) { return g.type == "muon"; });
  if (world > 1 && dist.muon == "zero1" && any_muon) {
    why = "dist.muon = \"zero1\" with several ranks (row-sharded momentum gathered for Newton-Schulz)";
    return false;
  }
  return true;
}

void DeviceOptimizer::Impl::setup_qk_clip(const std::string& source) {
  if (n_head <= 0) fail("config ", source, ": QK-clip on the GPU needs the model's number of heads");
  // layers: blocks.<l>. prefixes of the table
  for (const ParamSpec& spec : table.params()) {
    if (spec.name.rfind("blocks.", 0) != 0) continue;
    const int l = std::atoi(spec.name.c_str() + 7);
    n_layer = std::max(n_layer, l + 1);
  }
  std::vector<gpu::QkClipLayer> layers;
  for (int l = 0; l < n_layer; ++l) {
    const auto [wq, wk, bq, bk, q0, k0] = qk_params(table, l);
    if (!wq) {  // attention-free block: its entry keeps the layer index of the max-logit rows
      layers.push_back(gpu::QkClipLayer{-1, -1, -1, -1});
      continue;
    }
    const int C = wq->cols();
    MUONGPT_CHECK(C % n_head == 0, "QK-clip: d_model ", C, " is not divisible by ", n_head, " heads");
    if (qk_cols > 0) MUONGPT_CHECK(C == qk_cols, "QK-clip: layers of different widths");
    qk_cols = C;
    head_dim = C / n_head;
    gpu::QkClipLayer L;
    L.wq = static_cast<long long>(wq->offset + static_cast<size_t>(q0) * C);
    L.wk = static_cast<long long>(wk->offset + static_cast<size_t>(k0) * C);
    L.bq = bq ? static_cast<long long>(bq->offset + q0) : -1;
    L.bk = bk ? static_cast<long long>(bk->offset + k0) : -1;
    layers.push_back(L);
  }
  const size_t n = static_cast<size_t>(n_layer) * n_head;
  attn_max = device_alloc<float>(n);
  gpu::fill_neg_inf(attn_max, n, stream);
  d_layers = device_alloc<gpu::QkClipLayer>(layers.size());
  if (!layers.empty())
    CUDA_CHECK(cudaMemcpyAsync(d_layers, layers.data(), layers.size() * sizeof(layers[0]), cudaMemcpyHostToDevice,
                               stream));
}

DeviceOptimizer::DeviceOptimizer(const ParamTable& table, const OptimConfig& optim, const ScheduleConfig& schedule,
                                 int total_steps, const std::string& source, int n_head, gpu::Matmul& matmul,
                                 cudaStream_t stream, const DistConfig& dist, int rank, int world)
    : impl_(std::make_unique<Impl>(table, matmul, stream)) {
  Impl& m = *impl_;
  std::string why;
  if (!supports(optim, dist, world, why))
    fail(source, ": the GPU optimizer does not run ", why, " (the host optimizer does)");
  if (world < 1 || rank < 0 || rank >= world) fail(source, ": GPU optimizer for rank ", rank, " of ", world);
  m.optim = optim;
  m.schedule = schedule;
  m.total_steps = total_steps;
  m.n_head = n_head;
  m.assign = assign_groups(table, optim, source);
  m.plan = ShardPlan::make(table, optim, m.assign, dist, world);  // the host optimizer's plan
  m.rank = rank;
  m.sharded = m.plan.any_sharded();
  const size_t n_params = table.params().size();
  m.state_off.assign(n_params, 0);
  m.nv_off.assign(n_params, 0);
  m.nv_numel.assign(n_params, 0);
  for (const auto& g : optim.groups)
    m.coeffs.push_back(g.type == "muon" ? gpu::ns_coefficients(g.ns.table()) : std::vector<gpu::NsCoefficients>{});

  // State, group by group in group order (so a group's adjacent parameters
  // have adjacent state), for this rank's part of each parameter only.
  size_t mom_total = 0, adam_total = 0, nv_total = 0;
  std::vector<std::vector<gpu::MuonBlockRef>> batch_refs;
  std::map<std::tuple<int, int, int>, size_t> batch_of;  // (group, rows, cols) -> batch
  for (size_t gi = 0; gi < optim.groups.size(); ++gi) {
    const OptimGroupConfig& g = optim.groups[gi];
    for (int pi : m.assign.params_of_group[gi]) {
      const ParamSpec& spec = table.params()[pi];
      if (g.type != "muon") {
        const auto [lo, hi] = m.plan.ranges[pi][rank];  // all of it unless ZeRO-1 shards it
        const size_t n = hi - lo, w_off = spec.offset + lo;
        m.state_off[pi] = adam_total;
        Impl::AdamRun* last = m.adam_runs.empty() ? nullptr : &m.adam_runs.back();
        if (n == 0) continue;
        if (last && last->group == static_cast<int>(gi) && last->w_off + last->n == w_off &&
            last->s_off + last->n == adam_total)
          last->n += n;
        else
          m.adam_runs.push_back({static_cast<int>(gi), w_off, adam_total, n});
        adam_total += n;
        continue;
      }
      const std::vector<MuonBlock> blocks = muon_blocks(spec, g, n_head);
      for (const MuonBlock& blk : blocks)  // NorMuon statistics of the full tensor
        if (g.normuon.enabled)
          m.nv_numel[pi] += normuon_per_row(g.normuon, blk.rows, spec.cols()) ? blk.rows : spec.cols();
      if (!m.muon_on(pi, rank)) continue;  // another rank owns this matrix
      m.state_off[pi] = mom_total;
      const int cols = spec.cols();
      m.nv_off[pi] = nv_total;
      size_t nv_at = nv_total;
      for (const MuonBlock& blk : blocks) {
        const auto key = std::make_tuple(static_cast<int>(gi), blk.rows, cols);
        auto it = batch_of.find(key);
        if (it == batch_of.end()) {
          Impl::Batch b;
          b.group = static_cast<int>(gi);
          b.rows = blk.rows;
          b.cols = cols;
          b.stride = padded(static_cast<size_t>(blk.rows) * cols);
          b.scale = muon_update_scale(g.update_scale, blk.rows, cols);
          b.per_row = normuon_per_row(g.normuon, blk.rows, cols);
          b.stats = b.per_row ? blk.rows : cols;
          it = batch_of.emplace(key, m.batches.size()).first;
          m.batches.push_back(b);
          batch_refs.emplace_back();
        }
        const Impl::Batch& b = m.batches[it->second];
        const size_t row_off = static_cast<size_t>(blk.row0) * cols;
        batch_refs[it->second].push_back({spec.offset + row_off, mom_total + row_off, nv_at});
        if (g.normuon.enabled) nv_at += static_cast<size_t>(b.stats);
      }
      MUONGPT_CHECK(nv_at - nv_total == m.nv_numel[pi], spec.name, ": NorMuon statistics ", nv_at - nv_total,
                    " != ", m.nv_numel[pi]);
      nv_total = nv_at;
      mom_total += spec.numel;
    }
  }

  // Batches: refs in one device table; buffers sized for the largest batch.
  std::vector<gpu::MuonBlockRef> refs;
  size_t max_batch = 1, max_ws = 1, max_scratch = 1, max_stats = 1;
  for (size_t bi = 0; bi < m.batches.size(); ++bi) {
    Impl::Batch& b = m.batches[bi];
    b.ref0 = refs.size();
    b.count = static_cast<int>(batch_refs[bi].size());
    if (b.count > 65535) fail(source, ": more than 65535 same-shape Muon blocks in one group");
    refs.insert(refs.end(), batch_refs[bi].begin(), batch_refs[bi].end());
    max_batch = std::max(max_batch, b.stride * b.count);
    max_ws = std::max(max_ws, gpu::newton_schulz_batched_workspace(b.count, b.rows, b.cols));
    max_scratch = std::max(max_scratch, gpu::newton_schulz_batched_scratch_doubles(b.count));
    max_stats = std::max(max_stats, static_cast<size_t>(b.stats) * b.count);
    const double iters = static_cast<double>(m.coeffs[b.group].size());
    const double r = std::min(b.rows, b.cols), c = std::max(b.rows, b.cols);
    m.ns_flops += b.count * iters * (4.0 * r * r * c + 2.0 * r * r * r);  // X X^T, A A, B X
  }

  m.mom_total = mom_total;
  m.adam_total = adam_total;
  m.nv_total = nv_total;
  m.mom = device_alloc<float>(mom_total);
  m.adam_m = device_alloc<float>(adam_total);
  m.adam_v = device_alloc<float>(adam_total);
  m.nv = device_alloc<float>(nv_total);
  const bool any_sum = std::any_of(optim.groups.begin(), optim.groups.end(),
                                   [](const OptimGroupConfig& g) { return g.type == "adamw" && g.update_every > 1; });
  if (any_sum) {  // indexed as adam_m; only the groups with update_every > 1 use their part
    m.gsum_total = adam_total;
    m.adam_gsum = device_alloc<float>(adam_total);
    CUDA_CHECK(cudaMemsetAsync(m.adam_gsum, 0, sizeof(float) * std::max<size_t>(adam_total, 1), stream));
  }
  CUDA_CHECK(cudaMemsetAsync(m.mom, 0, sizeof(float) * std::max<size_t>(mom_total, 1), stream));
  CUDA_CHECK(cudaMemsetAsync(m.adam_m, 0, sizeof(float) * std::max<size_t>(adam_total, 1), stream));
  CUDA_CHECK(cudaMemsetAsync(m.adam_v, 0, sizeof(float) * std::max<size_t>(adam_total, 1), stream));
  CUDA_CHECK(cudaMemsetAsync(m.nv, 0, sizeof(float) * std::max<size_t>(nv_total, 1), stream));
  m.u32 = device_alloc<float>(max_batch);
  m.o16 = device_alloc<bf16>(max_batch);
  m.ws = device_alloc<bf16>(max_ws);
  m.scratch = device_alloc<double>(max_scratch);
  m.factors = device_alloc<float>(max_stats);
  m.nscratch = device_alloc<double>(max_stats);
  m.d_refs = device_alloc<gpu::MuonBlockRef>(refs.size());
  if (!refs.empty())
    CUDA_CHECK(cudaMemcpyAsync(m.d_refs, refs.data(), refs.size() * sizeof(refs[0]), cudaMemcpyHostToDevice, stream));
  if (optim.qk_clip.enabled) m.setup_qk_clip(source);
  CUDA_CHECK(cudaStreamSynchronize(stream));  // the host tables above go out of scope
}

DeviceOptimizer::~DeviceOptimizer() = default;

void DeviceOptimizer::step(float* params, void* params_bf16, const float* grads, int step) {
  Impl& m = *impl_;
  bf16* w16 = static_cast<bf16*>(params_bf16);
  const double factor = lr_factor(m.schedule, step, m.total_steps);
  m.ns_calls = 0;
  m.event(0);
  for (const Impl::Batch& b : m.batches) {
    const OptimGroupConfig& g = m.optim.groups[b.group];
    const double lr = g.lr * factor;
    const gpu::MuonBlockRef* refs = m.d_refs + b.ref0;
    const size_t n = static_cast<size_t>(b.rows) * b.cols;
    gpu::muon_momentum_batched(m.u32, b.stride, m.mom, grads, refs, b.count, n, muon_momentum_at(g, step, m.total_steps),
                               g.nesterov, g.momentum_form == "ema", m.stream);
    const auto& k = m.coeffs[b.group];
    m.event(3 + 2 * m.ns_calls);
    gpu::newton_schulz_batched(m.o16, b.stride, m.u32, b.stride, b.count, b.rows, b.cols, k.data(),
                               static_cast<int>(k.size()), static_cast<float>(g.ns.norm_scale),
                               static_cast<float>(g.ns.norm_eps), m.ws, m.scratch, m.mm, m.stream);
    m.event(4 + 2 * m.ns_calls);
    ++m.ns_calls;
    if (g.normuon.enabled)
      gpu::normuon_factors_batched(m.factors, m.o16, b.stride, m.nv, refs, b.count, b.rows, b.cols, b.per_row,
                                   g.normuon.beta2, m.nscratch, m.stream);
    // lr_squared: decay lr*scale * (wd*lr), passed as an effective wd (as the CPU optimizer)
    const double wd = g.weight_decay_schedule == "lr_squared" ? g.weight_decay * lr * b.scale : g.weight_decay;
    gpu::muon_apply_batched(params, w16, m.o16, b.stride, refs, b.count, b.rows, b.cols,
                            g.normuon.enabled ? m.factors : nullptr, b.per_row, lr, b.scale, wd,
                            g.cautious_weight_decay, m.stream);
  }
  m.event(1);
  for (const Impl::AdamRun& r : m.adam_runs) {
    const OptimGroupConfig& g = m.optim.groups[r.group];
    const float* g_used = grads + r.w_off;
    const long t = adamw_step_count(g, step);
    if (g.update_every > 1) {  // sum this step's gradient; update on every k-th step only (as the host optimizer)
      float* sum = m.adam_gsum + r.s_off;
      gpu::add_into(sum, g_used, r.n, m.stream);
      if (t == 0) continue;
      g_used = sum;
    }
    gpu::adamw_update(params + r.w_off, w16 ? w16 + r.w_off : nullptr, m.adam_m + r.s_off, m.adam_v + r.s_off,
                      g_used, r.n, g.lr * factor, g.betas[0], g.betas[1], g.eps, g.weight_decay, t, m.stream);
    if (g.update_every > 1) CUDA_CHECK(cudaMemsetAsync(m.adam_gsum + r.s_off, 0, sizeof(float) * r.n, m.stream));
  }
  m.event(2);
  // QK-clip rescales rows of any owner: with sharded state it waits for the gather
  if (m.optim.qk_clip.enabled && !m.sharded)
    gpu::qk_clip_apply(params, w16, m.attn_max, m.d_layers, m.n_layer, m.n_head, m.head_dim, m.qk_cols,
                       m.optim.qk_clip.tau, m.optim.qk_clip.alpha, m.stream);
}

void DeviceOptimizer::finish_gathered_step(float* params, void* params_bf16) {
  Impl& m = *impl_;
  MUONGPT_CHECK(m.sharded, "finish_gathered_step: the optimizer state is not sharded (step() finished the step)");
  bf16* w16 = static_cast<bf16*>(params_bf16);
  if (w16) refresh_bf16(w16, params, m.table.total(), m.stream);
  if (m.optim.qk_clip.enabled)
    gpu::qk_clip_apply(params, w16, m.attn_max, m.d_layers, m.n_layer, m.n_head, m.head_dim, m.qk_cols,
                       m.optim.qk_clip.tau, m.optim.qk_clip.alpha, m.stream);
}

float* DeviceOptimizer::running_max_logits(size_t& n) {
  Impl& m = *impl_;
  n = m.optim.qk_clip.enabled ? static_cast<size_t>(m.n_layer) * m.n_head : 0;
  return n ? m.attn_max : nullptr;
}

const ShardPlan& DeviceOptimizer::plan() const { return impl_->plan; }
int DeviceOptimizer::rank() const { return impl_->rank; }
bool DeviceOptimizer::sharded() const { return impl_->sharded; }

void DeviceOptimizer::observe_attention_logits(const float* device_max_logits) {
  Impl& m = *impl_;
  if (!m.optim.qk_clip.enabled || !device_max_logits) return;  // only QK-clip needs them on the GPU
  gpu::attention_logits_max(m.attn_max, device_max_logits, static_cast<size_t>(m.n_layer) * m.n_head, m.stream);
}

void DeviceOptimizer::set_timing(bool on) { impl_->timing = on; }

DeviceOptimizerTiming DeviceOptimizer::last_timing() const {
  const Impl& m = *impl_;
  DeviceOptimizerTiming t;
  t.ns_flops = m.ns_flops;
  if (!m.timing || m.events.size() < 3) return t;
  CUDA_CHECK(cudaEventSynchronize(m.events[2]));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, m.events[0], m.events[1]));
  t.muon_ms = ms;
  CUDA_CHECK(cudaEventElapsedTime(&ms, m.events[1], m.events[2]));
  t.adamw_ms = ms;
  for (int i = 0; i < m.ns_calls; ++i) {
    CUDA_CHECK(cudaEventElapsedTime(&ms, m.events[3 + 2 * i], m.events[4 + 2 * i]));
    t.ns_ms += ms;
  }
  return t;
}

double DeviceOptimizer::ns_flops_per_step() const { return impl_->ns_flops; }

std::vector<std::string> DeviceOptimizer::state_names() const {
  const Impl& m = *impl_;
  std::vector<std::string> names;
  for (size_t pi = 0; pi < m.table.params().size(); ++pi) {
    const std::string& name = m.table.params()[pi].name;
    if (m.is_muon(static_cast<int>(pi))) {
      names.push_back(name + ".momentum");
      if (m.group_of(static_cast<int>(pi)).normuon.enabled) names.push_back(name + ".normuon_v");
    } else {
      names.push_back(name + ".adam_m");
      names.push_back(name + ".adam_v");
      if (m.group_of(static_cast<int>(pi)).update_every > 1) names.push_back(name + ".adam_grad_sum");
    }
  }
  return names;
}

size_t DeviceOptimizer::state_numel(const std::string& name) const { return impl_->state_part(name, 0).full; }

std::pair<size_t, size_t> DeviceOptimizer::state_part(const std::string& name, int rank) const {
  const Impl::StatePart p = impl_->state_part(name, rank);
  return {p.lo, p.hi};
}

bool DeviceOptimizer::state_replicated(const std::string& name) const {
  return impl_->plan.replicated[impl_->state_part(name, 0).param];
}

std::vector<float> DeviceOptimizer::get_state(const std::string& name) const {
  const Impl::StatePart p = impl_->state_part(name, impl_->rank);
  std::vector<float> host(p.hi - p.lo);
  CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  if (!host.empty()) CUDA_CHECK(cudaMemcpy(host.data(), p.data, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

void DeviceOptimizer::set_state(const std::string& name, const std::vector<float>& values) {
  const Impl::StatePart p = impl_->state_part(name, impl_->rank);
  if (values.size() != p.hi - p.lo)
    fail("optimizer state ", name, ": ", values.size(), " values, expected ", p.hi - p.lo, " (rank ", impl_->rank,
         "'s part [", p.lo, ", ", p.hi, ") of ", p.full, ")");
  CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  if (!values.empty())
    CUDA_CHECK(cudaMemcpy(p.data, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice));
}

size_t DeviceOptimizer::state_bytes() const {
  const Impl& m = *impl_;
  return sizeof(float) * (m.mom_total + 2 * m.adam_total + m.nv_total + m.gsum_total);
}

}  // namespace muongpt
