#include "optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "config/config_io.h"
#include "kernels/cpu/newton_schulz.h"
#include "kernels/cpu/optimizer_updates.h"
#include "optim/qk_clip.h"
#include "optim/schedule.h"
#include "util/error.h"

namespace muongpt {

ParamGroupAssignment assign_groups(const ParamTable& table, const OptimConfig& optim, const std::string& source) {
  ParamGroupAssignment a;
  a.params_of_group.resize(optim.groups.size());
  for (size_t pi = 0; pi < table.params().size(); ++pi) {
    const ParamSpec& spec = table.params()[pi];
    int found = -1;
    for (size_t gi = 0; gi < optim.groups.size() && found < 0; ++gi)
      for (const auto& pattern : optim.groups[gi].params)
        if (name_matches(pattern, spec.name)) {
          found = static_cast<int>(gi);
          break;
        }
    if (found < 0)
      fail("config ", source, ": optim.groups: parameter ", spec.name, " ", spec.shape_string(),
           " matches no optimizer group (see `muongpt info` for all parameter names)");
    const OptimGroupConfig& g = optim.groups[found];
    if (g.type == "muon" && !spec.is_matrix())
      fail("config ", source, ": optim.groups[", found, "] (\"", g.name, "\", muon) matches ", spec.name, " ",
           spec.shape_string(), ": Muon orthogonalises matrices; give vectors and scalars to an adamw group");
    a.group_of_param.push_back(found);
    a.params_of_group[found].push_back(static_cast<int>(pi));
  }
  return a;
}

double muon_update_scale(const std::string& mode, int rows, int cols) {
  if (mode == "original") return std::sqrt(std::max(1.0, static_cast<double>(rows) / cols));
  if (mode == "match_rms_adamw") return 0.2 * std::sqrt(static_cast<double>(std::max(rows, cols)));
  if (mode == "sqrt_max_dim") return std::sqrt(static_cast<double>(std::max(rows, cols)));
  return 1.0;  // none
}

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

std::vector<MuonBlock> muon_blocks(const ParamSpec& spec, const OptimGroupConfig& g, int n_head) {
  const bool heads_qk = g.per_head == "qk" || g.per_head == "qkv";
  const bool heads_v = g.per_head == "qkv";
  std::vector<MuonBlock> blocks;
  // rows [row0, row0 + rows) of one attention projection: one block, or one per head group
  auto part = [&](int row0, int rows, bool per_head) {
    if (!per_head) {
      blocks.push_back({row0, rows});
      return;
    }
    if (n_head <= 0) fail("optimizer group \"", g.name, "\": per_head needs the model's number of heads");
    const int C = spec.cols();  // q/k/v map d_model -> d_model
    if (rows != C || C % n_head != 0 || n_head % g.heads_per_block != 0)
      fail("optimizer group \"", g.name, "\": per_head: ", spec.name, " ", spec.shape_string(),
           " does not split into ", n_head, " heads in blocks of ", g.heads_per_block);
    const int block_rows = C / n_head * g.heads_per_block;
    for (int r = 0; r < rows; r += block_rows) blocks.push_back({row0 + r, block_rows});
  };
  if (g.per_head != "none" && ends_with(spec.name, "attn.qkv.weight") && spec.rows() % 3 == 0) {
    const int C = spec.rows() / 3;
    part(0, C, heads_qk);
    part(C, C, heads_qk);
    part(2 * C, C, heads_v);
  } else if (g.per_head != "none" && (ends_with(spec.name, "attn.q.weight") || ends_with(spec.name, "attn.k.weight"))) {
    part(0, spec.rows(), heads_qk);
  } else if (g.per_head != "none" && ends_with(spec.name, "attn.v.weight")) {
    part(0, spec.rows(), heads_v);
  } else {
    const int rows = spec.rows() / spec.row_blocks;
    for (int b = 0; b < spec.row_blocks; ++b) blocks.push_back({b * rows, rows});
  }
  return blocks;
}

bool normuon_per_row(const NorMuonConfig& normuon, int rows, int cols) {
  if (normuon.axis == "rows") return true;
  if (normuon.axis == "cols") return false;
  return rows >= cols;  // auto, as the speedrun: red_dim = -1 if rows >= cols else -2
}

nlohmann::json OptimDiagnostics::to_json(const OptimConfig& optim) const {
  nlohmann::json j;
  nlohmann::json rms;
  for (size_t g = 0; g < optim.groups.size() && g < update_rms.size(); ++g) rms[optim.groups[g].name] = update_rms[g];
  j["update_rms"] = rms;
  if (!orth_param.empty()) j["orthogonality_error"] = {{"param", orth_param}, {"value", orth_error}};
  if (!max_logits.empty() && n_head > 0) {
    std::vector<double> per_layer;
    for (size_t i = 0; i < max_logits.size(); i += n_head)
      per_layer.push_back(*std::max_element(max_logits.begin() + i, max_logits.begin() + i + n_head));
    j["max_attn_logit"] = per_layer;
    if (optim.qk_clip.enabled) j["qk_clipped_heads"] = clipped_heads;
  }
  return j;
}

// ---------------------------------------------------------------------------
// Shard plan
// ---------------------------------------------------------------------------

ShardPlan ShardPlan::make(const ParamTable& table, const OptimConfig& optim, const ParamGroupAssignment& groups,
                          const DistConfig& dist, int world) {
  const auto& params = table.params();
  const size_t n = params.size();
  ShardPlan plan;
  plan.world = world;
  plan.ranges.assign(n, std::vector<std::pair<size_t, size_t>>(world));
  plan.replicated.assign(n, true);
  plan.zero1_muon.assign(n, false);
  auto is_muon = [&](size_t pi) { return optim.groups[groups.group_of_param[pi]].type == "muon"; };
  for (size_t pi = 0; pi < n; ++pi)
    for (int r = 0; r < world; ++r) plan.ranges[pi][r] = {0, params[pi].numel};
  if (world == 1) return plan;

  if (dist.zero_stage == 1) {
    // AdamW elements in table order form one space, split evenly over ranks.
    size_t total = 0;
    for (size_t pi = 0; pi < n; ++pi)
      if (!is_muon(pi)) total += params[pi].numel;
    size_t start = 0;
    for (size_t pi = 0; pi < n; ++pi) {
      if (is_muon(pi)) continue;
      plan.replicated[pi] = false;
      const size_t end = start + params[pi].numel;
      for (int r = 0; r < world; ++r) {
        const size_t lo = total * r / world, hi = total * (r + 1) / world;
        const size_t a = std::max(lo, start), b = std::min(hi, end);
        plan.ranges[pi][r] = a < b ? std::make_pair(a - start, b - start) : std::make_pair(size_t(0), size_t(0));
      }
      start = end;
    }
  }
  if (dist.muon == "owner") {
    // Largest matrices first, each to the least loaded rank (ties: lowest rank).
    std::vector<size_t> order;
    for (size_t pi = 0; pi < n; ++pi)
      if (is_muon(pi)) order.push_back(pi);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return params[a].numel > params[b].numel; });
    std::vector<size_t> load(world, 0);
    for (size_t pi : order) {
      const int owner = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
      load[owner] += params[pi].numel;
      plan.replicated[pi] = false;
      for (int r = 0; r < world; ++r)
        plan.ranges[pi][r] = r == owner ? std::make_pair(size_t(0), params[pi].numel) : std::make_pair(size_t(0), size_t(0));
    }
  } else if (dist.muon == "zero1") {
    for (size_t pi = 0; pi < n; ++pi) {
      if (!is_muon(pi)) continue;
      plan.replicated[pi] = false;
      plan.zero1_muon[pi] = true;
      const size_t rows = params[pi].rows(), cols = params[pi].cols();
      for (int r = 0; r < world; ++r) plan.ranges[pi][r] = {rows * r / world * cols, rows * (r + 1) / world * cols};
    }
  }
  return plan;
}

bool ShardPlan::any_sharded() const {
  return std::find(replicated.begin(), replicated.end(), false) != replicated.end();
}

// ---------------------------------------------------------------------------
// Optimizer
// ---------------------------------------------------------------------------

template <class T>
Optimizer<T>::Optimizer(const ParamTable& table, const OptimConfig& optim, const ScheduleConfig& schedule,
                        int total_steps, const std::string& source, const DistConfig& dist, Comm* comm, int n_head)
    : table_(table), optim_(optim), schedule_(schedule), total_steps_(total_steps), comm_(comm) {
  const int world = comm ? comm->world() : 1;
  rank_ = comm ? comm->rank() : 0;
  assign_ = assign_groups(table, optim, source);
  plan_ = ShardPlan::make(table, optim, assign_, dist, world);
  if (plan_.any_sharded() && !std::is_same_v<T, float>) fail("sharded optimizer state needs float parameters");
  state_.resize(table.params().size());
  blocks_.resize(table.params().size());
  for (size_t pi = 0; pi < table.params().size(); ++pi) {
    const auto& g = optim.groups[assign_.group_of_param[pi]];
    State& s = state_[pi];
    std::tie(s.lo, s.hi) = plan_.ranges[pi][rank_];
    if (g.type != "muon") continue;
    blocks_[pi] = muon_blocks(table.params()[pi], g, n_head);
    if (diag_param_ < 0 && optim.diagnostics_param.empty()) diag_param_ = static_cast<int>(pi);
  }
  if (!optim.diagnostics_param.empty()) {
    const ParamSpec* spec = table.find(optim.diagnostics_param);
    if (!spec || optim.groups[assign_.group_of_param[spec - table.params().data()]].type != "muon")
      fail("config ", source, ": optim.diagnostics_param: \"", optim.diagnostics_param,
           "\" is not a parameter of a Muon group (see `muongpt info` for the names)");
    diag_param_ = static_cast<int>(spec - table.params().data());
  }
  update_rms_.assign(optim.groups.size(), 0.0);
}

template <class T>
void Optimizer<T>::allocate_state() {
  if (state_allocated_) return;
  for (size_t pi = 0; pi < state_.size(); ++pi) {
    const auto& g = optim_.groups[assign_.group_of_param[pi]];
    State& s = state_[pi];
    s.m.assign(s.hi - s.lo, T(0));
    if (g.type == "adamw") s.v.assign(s.hi - s.lo, T(0));
    if (g.type == "adamw" && g.update_every > 1) s.gsum.assign(s.hi - s.lo, T(0));
    // NorMuon state lives whole wherever the matrix is worked on (owner: one rank)
    const bool works_here = plan_.replicated[pi] || plan_.zero1_muon[pi] || s.hi > s.lo;
    if (g.type == "muon" && g.normuon.enabled && works_here) s.nv.assign(normuon_numel(static_cast<int>(pi)), T(0));
  }
  state_allocated_ = true;
}

template <class T>
size_t Optimizer<T>::state_bytes() const {
  size_t n = 0;
  for (const State& s : state_) n += s.m.size() + s.v.size() + s.nv.size() + s.gsum.size();
  return n * sizeof(T);
}

template <class T>
size_t Optimizer<T>::normuon_numel(int pi) const {
  const ParamSpec& spec = table_.params()[pi];
  const auto& g = optim_.groups[assign_.group_of_param[pi]];
  size_t n = 0;
  for (const MuonBlock& b : blocks_[pi])
    n += cpu::normuon_state_size(b.rows, spec.cols(), normuon_per_row(g.normuon, b.rows, spec.cols()));
  return n;
}

template <class T>
bool Optimizer<T>::diagnostics_due(int step) const {
  return optim_.diagnostics_every > 0 && (step + 1) % optim_.diagnostics_every == 0;
}

template <class T>
void Optimizer<T>::observe_attention_logits(const std::vector<T>& max_logits, int n_head) {
  if (!optim_.qk_clip.enabled && optim_.diagnostics_every <= 0) return;
  if (attn_max_.size() != max_logits.size())
    attn_max_.assign(max_logits.size(), -std::numeric_limits<T>::infinity());
  attn_heads_ = n_head;
  for (size_t i = 0; i < max_logits.size(); ++i) attn_max_[i] = std::max(attn_max_[i], max_logits[i]);
}

template <class T>
std::vector<double> Optimizer<T>::group_lrs(int step) const {
  const double factor = lr_factor(schedule_, step, total_steps_);
  std::vector<double> lrs;
  for (const auto& g : optim_.groups) lrs.push_back(g.lr * factor);
  return lrs;
}

template <class T>
void Optimizer<T>::muon_param(const OptimGroupConfig& g, int pi, T* w, const T* grad, int step, double lr, bool diag,
                              Sums& sums) {
  const ParamSpec& spec = table_.params()[pi];
  State& s = state_[pi];
  const bool zero1 = plan_.zero1_muon[pi];
  if (s.hi == s.lo && !zero1) return;  // another rank owns this matrix
  // momentum on this rank's elements (all of them unless rows are sharded)
  std::vector<T> u(spec.numel);
  cpu::muon_momentum(u.data() + s.lo, s.m.data(), grad + s.lo, s.hi - s.lo, muon_momentum_at(g, step, total_steps_), g.nesterov,
                     g.momentum_form == "ema");
  if (zero1) {  // gather the full momentum-updated matrix
    std::vector<int> counts, displs;
    for (const auto& [lo, hi] : plan_.ranges[pi]) {
      displs.push_back(static_cast<int>(lo));
      counts.push_back(static_cast<int>(hi - lo));
    }
    if constexpr (std::is_same_v<T, float>) comm_->allgatherv(u.data(), counts, displs, "Muon momentum rows");
  }
  const int cols = spec.cols();
  const auto table = g.ns.table();
  // With zero1 a rank normally skips blocks that hold none of its rows; NorMuon's
  // state must stay the same on every rank, so then every block is processed.
  const bool every_block = zero1 && g.normuon.enabled;
  size_t nv_at = 0;  // this block's offset in the NorMuon state
  const auto& blocks = blocks_[pi];
  for (size_t bi = 0; bi < blocks.size(); ++bi) {
    const MuonBlock& blk = blocks[bi];
    const bool per_row = normuon_per_row(g.normuon, blk.rows, cols);
    const size_t nv_off = nv_at;
    if (g.normuon.enabled) nv_at += cpu::normuon_state_size(blk.rows, cols, per_row);
    const size_t b0 = static_cast<size_t>(blk.row0) * cols, b1 = b0 + static_cast<size_t>(blk.rows) * cols;
    const size_t lo = std::max(b0, s.lo), hi = std::min(b1, s.hi);
    if (lo >= hi && !every_block) continue;  // none of this block's rows are ours
    T* ub = u.data() + b0;
    cpu::newton_schulz(ub, blk.rows, cols, table, g.ns.norm_scale, g.ns.norm_eps);
    if (diag && pi == diag_param_ && bi == 0) {
      sums.orth += cpu::orthogonality_error(ub, blk.rows, cols);
      sums.orth_count += 1;
    }
    if (g.normuon.enabled) cpu::normuon_normalize(ub, blk.rows, cols, s.nv.data() + nv_off, per_row, g.normuon.beta2);
    if (lo >= hi) continue;
    const double scale = muon_update_scale(g.update_scale, blk.rows, cols);
    sums.sum_sq += scale * scale *
                   cpu::deterministic_sum<double>(hi - lo, [&](size_t i) { return double(u[lo + i]) * u[lo + i]; });
    sums.count += static_cast<double>(hi - lo);
    // lr_squared: decay lr*scale * (wd*lr), passed as an effective wd for muon_apply's lr*wd
    const double wd = g.weight_decay_schedule == "lr_squared" ? g.weight_decay * lr * scale : g.weight_decay;
    cpu::muon_apply(w + lo, u.data() + lo, hi - lo, lr, scale, wd, g.cautious_weight_decay);
  }
}

template <class T>
void Optimizer<T>::all_gather_params(T* params, const char* what) {
  if constexpr (std::is_same_v<T, float>) {
    // Rank r's segment: its ranges of the sharded parameters, in table order.
    const int world = plan_.world;
    std::vector<int> counts(world, 0), displs(world, 0);
    for (size_t pi = 0; pi < state_.size(); ++pi)
      if (!plan_.replicated[pi])
        for (int r = 0; r < world; ++r) counts[r] += static_cast<int>(plan_.ranges[pi][r].second - plan_.ranges[pi][r].first);
    for (int r = 1; r < world; ++r) displs[r] = displs[r - 1] + counts[r - 1];
    std::vector<float> packed(static_cast<size_t>(displs[world - 1]) + counts[world - 1]);
    auto walk = [&](bool pack) {
      for (int r = 0; r < world; ++r) {
        if (pack && r != rank_) continue;
        size_t at = displs[r];
        for (size_t pi = 0; pi < state_.size(); ++pi) {
          if (plan_.replicated[pi]) continue;
          const auto [lo, hi] = plan_.ranges[pi][r];
          float* p = params + table_.params()[pi].offset;
          if (pack) std::copy(p + lo, p + hi, packed.begin() + at);
          else std::copy(packed.begin() + at, packed.begin() + at + (hi - lo), p + lo);
          at += hi - lo;
        }
      }
    };
    walk(true);
    comm_->allgatherv(packed.data(), counts, displs, what);
    walk(false);
  }
}

template <class T>
void Optimizer<T>::step(T* params, const T* grads, int step) {
  allocate_state();
  const std::vector<double> lrs = group_lrs(step);
  const bool diag = diagnostics_due(step);
  std::vector<Sums> sums(optim_.groups.size());
  for (size_t gi = 0; gi < optim_.groups.size(); ++gi) {
    const OptimGroupConfig& g = optim_.groups[gi];
    double sum_sq = 0;
    size_t count = 0;
    for (int pi : assign_.params_of_group[gi]) {
      const ParamSpec& spec = table_.params()[pi];
      T* w = params + spec.offset;
      const T* grad = grads + spec.offset;
      if (g.type == "muon") {
        muon_param(g, pi, w, grad, step, lrs[gi], diag, sums[gi]);
        continue;
      }
      State& s = state_[pi];
      const size_t n = s.hi - s.lo;
      if (n == 0) continue;
      const T* g_used = grad + s.lo;
      const long t = adamw_step_count(g, step);
      if (g.update_every > 1) {  // sum this step's gradient; update on every k-th step only
        for (size_t i = 0; i < n; ++i) s.gsum[i] += grad[s.lo + i];
        if (t == 0) continue;
        g_used = s.gsum.data();
      }
      cpu::adamw_update(w + s.lo, s.m.data(), s.v.data(), g_used, n, lrs[gi], g.betas[0], g.betas[1], g.eps,
                        g.weight_decay, t);
      if (g.update_every > 1) std::fill(s.gsum.begin(), s.gsum.end(), T(0));
      // diagnostic: RMS of the normalised Adam direction m_hat / (sqrt(v_hat) + eps)
      const double bc1 = 1.0 - std::pow(g.betas[0], t), bc2 = 1.0 - std::pow(g.betas[1], t);
      const T* m = s.m.data();
      const T* v = s.v.data();
      sum_sq += cpu::deterministic_sum<double>(n, [&](size_t i) {
        const double d = (m[i] / bc1) / (std::sqrt(v[i] / bc2) + g.eps);
        return d * d;
      });
      count += n;
    }
    sums[gi].sum_sq += sum_sq;
    sums[gi].count += static_cast<double>(count);
  }
  if (plan_.any_sharded()) {
    all_gather_params(params, "updated parameters");
    std::vector<double> packed;
    for (const Sums& x : sums) packed.insert(packed.end(), {x.sum_sq, x.count, x.orth, x.orth_count});
    comm_->allreduce_sum(packed.data(), packed.size(), "update statistics");
    for (size_t gi = 0; gi < sums.size(); ++gi)
      sums[gi] = {packed[4 * gi], packed[4 * gi + 1], packed[4 * gi + 2], packed[4 * gi + 3]};
  }
  double orth = 0, orth_count = 0;
  for (size_t gi = 0; gi < optim_.groups.size(); ++gi) {
    update_rms_[gi] = sums[gi].count > 0 ? std::sqrt(sums[gi].sum_sq / sums[gi].count) : 0.0;
    orth += sums[gi].orth;
    orth_count += sums[gi].orth_count;
  }
  if (diag) {
    diag_ = OptimDiagnostics{};
    diag_.step = step;
    diag_.update_rms = update_rms_;
    if (diag_param_ >= 0) {
      diag_.orth_param = table_.params()[diag_param_].name;
      diag_.orth_error = orth_count > 0 ? orth / orth_count : NAN;
    }
  }
  attention_logits_step(params, diag);
}

template <class T>
void Optimizer<T>::attention_logits_step(T* params, bool diag) {
  clipped_heads_ = 0;
  if (attn_max_.empty() || attn_heads_ <= 0) return;  // nothing observed (or not needed)
  if (!optim_.qk_clip.enabled && !diag) {
    attn_max_.clear();
    return;
  }
  if (comm_ && comm_->world() > 1) comm_->allreduce_max(attn_max_.data(), attn_max_.size(), "max attention logits");
  const int n_layer = static_cast<int>(attn_max_.size()) / attn_heads_;
  if (optim_.qk_clip.enabled)
    clipped_heads_ = qk_clip(table_, params, attn_max_.data(), n_layer, attn_heads_, optim_.qk_clip.tau,
                             optim_.qk_clip.alpha);
  if (diag) {
    diag_.max_logits.assign(attn_max_.begin(), attn_max_.end());
    diag_.n_head = attn_heads_;
    diag_.clipped_heads = clipped_heads_;
  }
  attn_max_.clear();
}

template <class T>
std::vector<std::string> Optimizer<T>::state_names() const {
  std::vector<std::string> names;
  for (size_t pi = 0; pi < table_.params().size(); ++pi) {
    const std::string& name = table_.params()[pi].name;
    const OptimGroupConfig& g = optim_.groups[assign_.group_of_param[pi]];
    if (g.type == "muon") {
      names.push_back(name + ".momentum");
      if (g.normuon.enabled) names.push_back(name + ".normuon_v");
    } else {
      names.push_back(name + ".adam_m");
      names.push_back(name + ".adam_v");
      if (g.update_every > 1) names.push_back(name + ".adam_grad_sum");
    }
  }
  return names;
}

template <class T>
int Optimizer<T>::param_of_state(const std::string& name, std::string& kind) const {
  const auto dot = name.rfind('.');
  kind = name.substr(dot + 1);
  const ParamSpec* spec = table_.find(name.substr(0, dot));
  MUONGPT_CHECK(spec != nullptr, name);
  return static_cast<int>(spec - table_.params().data());
}

template <class T>
std::vector<T>& Optimizer<T>::state_buffer(int pi, const std::string& kind) {
  if (kind == "normuon_v") return state_[pi].nv;
  if (kind == "adam_grad_sum") return state_[pi].gsum;
  return kind == "adam_v" ? state_[pi].v : state_[pi].m;
}

template <class T>
size_t Optimizer<T>::state_numel(const std::string& name) const {
  std::string kind;
  const int pi = param_of_state(name, kind);
  return kind == "normuon_v" ? normuon_numel(pi) : table_.params()[pi].numel;
}

template <class T>
void Optimizer<T>::gather_state(const std::function<void(const std::string&, const std::vector<float>&)>& sink) {
  allocate_state();
  for (const std::string& name : state_names()) {
    std::string kind;
    const int pi = param_of_state(name, kind);
    const std::vector<T>& local = state_buffer(pi, kind);
    std::vector<float> full(state_numel(name));
    // NorMuon state is whole on every rank working on the matrix: all (replicated,
    // zero1) or the owner alone
    const bool whole_here = kind == "normuon_v" && (plan_.replicated[pi] || plan_.zero1_muon[pi]);
    if (plan_.replicated[pi] || whole_here) {
      std::copy(local.begin(), local.end(), full.begin());
    } else if constexpr (std::is_same_v<T, float>) {
      std::vector<int> counts, displs;
      for (const auto& [lo, hi] : plan_.ranges[pi]) {
        const bool owner = hi > lo;
        displs.push_back(kind == "normuon_v" ? 0 : static_cast<int>(lo));
        counts.push_back(kind == "normuon_v" ? (owner ? static_cast<int>(full.size()) : 0) : static_cast<int>(hi - lo));
      }
      comm_->gatherv(local.data(), full.data(), counts, displs, 0, "optimizer state for a checkpoint");
    }
    if (rank_ == 0) sink(name, full);
  }
}

template <class T>
void Optimizer<T>::load_state(const std::function<void(const std::string&, size_t, size_t, T*)>& source) {
  allocate_state();
  for (const std::string& name : state_names()) {
    std::string kind;
    const int pi = param_of_state(name, kind);
    State& s = state_[pi];
    if (kind == "normuon_v")
      source(name, 0, s.nv.size(), s.nv.data());
    else
      source(name, s.lo, s.hi - s.lo, state_buffer(pi, kind).data());
  }
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace muongpt
