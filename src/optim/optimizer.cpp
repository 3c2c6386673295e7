#include "optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "config/config_io.h"
#include "kernels/cpu/newton_schulz.h"
#include "kernels/cpu/optimizer_updates.h"
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
                        int total_steps, const std::string& source, const DistConfig& dist, Comm* comm)
    : table_(table), optim_(optim), schedule_(schedule), total_steps_(total_steps), comm_(comm) {
  const int world = comm ? comm->world() : 1;
  rank_ = comm ? comm->rank() : 0;
  assign_ = assign_groups(table, optim, source);
  plan_ = ShardPlan::make(table, optim, assign_, dist, world);
  if (plan_.any_sharded() && !std::is_same_v<T, float>) fail("sharded optimizer state needs float parameters");
  state_.resize(table.params().size());
  for (size_t pi = 0; pi < table.params().size(); ++pi) {
    const auto& g = optim.groups[assign_.group_of_param[pi]];
    State& s = state_[pi];
    std::tie(s.lo, s.hi) = plan_.ranges[pi][rank_];
    s.m.assign(s.hi - s.lo, T(0));
    if (g.type == "adamw") s.v.assign(s.hi - s.lo, T(0));
  }
  update_rms_.assign(optim.groups.size(), 0.0);
}

template <class T>
std::vector<double> Optimizer<T>::group_lrs(int step) const {
  const double factor = lr_factor(schedule_, step, total_steps_);
  std::vector<double> lrs;
  for (const auto& g : optim_.groups) lrs.push_back(g.lr * factor);
  return lrs;
}

template <class T>
void Optimizer<T>::muon_param(const OptimGroupConfig& g, int pi, T* w, const T* grad, int step, double lr,
                              double& sum_sq, size_t& count) {
  const ParamSpec& spec = table_.params()[pi];
  State& s = state_[pi];
  if (s.hi == s.lo && !plan_.zero1_muon[pi]) return;  // another rank owns this matrix
  // momentum on this rank's elements (all of them unless rows are sharded)
  std::vector<T> u(spec.numel);
  cpu::muon_momentum(u.data() + s.lo, s.m.data(), grad + s.lo, s.hi - s.lo, muon_momentum_at(g, step), g.nesterov,
                     g.momentum_form == "ema");
  if (plan_.zero1_muon[pi]) {  // gather the full momentum-updated matrix
    std::vector<int> counts, displs;
    for (const auto& [lo, hi] : plan_.ranges[pi]) {
      displs.push_back(static_cast<int>(lo));
      counts.push_back(static_cast<int>(hi - lo));
    }
    if constexpr (std::is_same_v<T, float>) comm_->allgatherv(u.data(), counts, displs, "Muon momentum rows");
  }
  const int block_rows = spec.rows() / spec.row_blocks;
  const int cols = spec.cols();
  const size_t block = static_cast<size_t>(block_rows) * cols;
  const auto table = g.ns.table();
  for (int bi = 0; bi < spec.row_blocks; ++bi) {
    const size_t b0 = bi * block, b1 = b0 + block;
    const size_t lo = std::max(b0, s.lo), hi = std::min(b1, s.hi);
    if (lo >= hi) continue;  // none of this block's rows are ours
    T* ub = u.data() + b0;
    cpu::newton_schulz(ub, block_rows, cols, table, g.ns.norm_scale, g.ns.norm_eps);
    const double scale = muon_update_scale(g.update_scale, block_rows, cols);
    sum_sq += scale * scale *
              cpu::deterministic_sum<double>(hi - lo, [&](size_t i) { return double(u[lo + i]) * u[lo + i]; });
    count += hi - lo;
    cpu::muon_apply(w + lo, u.data() + lo, hi - lo, lr, scale, g.weight_decay);
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
  const std::vector<double> lrs = group_lrs(step);
  std::vector<double> sums(2 * optim_.groups.size(), 0.0);  // (sum of squares, count) per group
  for (size_t gi = 0; gi < optim_.groups.size(); ++gi) {
    const OptimGroupConfig& g = optim_.groups[gi];
    double sum_sq = 0;
    size_t count = 0;
    for (int pi : assign_.params_of_group[gi]) {
      const ParamSpec& spec = table_.params()[pi];
      T* w = params + spec.offset;
      const T* grad = grads + spec.offset;
      if (g.type == "muon") {
        muon_param(g, pi, w, grad, step, lrs[gi], sum_sq, count);
        continue;
      }
      State& s = state_[pi];
      const size_t n = s.hi - s.lo;
      if (n == 0) continue;
      const long t = static_cast<long>(step) + 1;
      cpu::adamw_update(w + s.lo, s.m.data(), s.v.data(), grad + s.lo, n, lrs[gi], g.betas[0], g.betas[1], g.eps,
                        g.weight_decay, t);
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
    sums[2 * gi] = sum_sq;
    sums[2 * gi + 1] = static_cast<double>(count);
  }
  if (plan_.any_sharded()) {
    all_gather_params(params, "updated parameters");
    comm_->allreduce_sum(sums.data(), sums.size(), "update statistics");
  }
  for (size_t gi = 0; gi < optim_.groups.size(); ++gi)
    update_rms_[gi] = sums[2 * gi + 1] > 0 ? std::sqrt(sums[2 * gi] / sums[2 * gi + 1]) : 0.0;
}

template <class T>
std::vector<std::string> Optimizer<T>::state_names() const {
  std::vector<std::string> names;
  for (size_t pi = 0; pi < table_.params().size(); ++pi) {
    const std::string& name = table_.params()[pi].name;
    if (optim_.groups[assign_.group_of_param[pi]].type == "muon") {
      names.push_back(name + ".momentum");
    } else {
      names.push_back(name + ".adam_m");
      names.push_back(name + ".adam_v");
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
  return kind == "adam_v" ? state_[pi].v : state_[pi].m;
}

template <class T>
size_t Optimizer<T>::state_numel(const std::string& name) const {
  std::string kind;
  return table_.params()[param_of_state(name, kind)].numel;
}

template <class T>
void Optimizer<T>::gather_state(const std::function<void(const std::string&, const std::vector<float>&)>& sink) {
  for (const std::string& name : state_names()) {
    std::string kind;
    const int pi = param_of_state(name, kind);
    const std::vector<T>& local = state_buffer(pi, kind);
    std::vector<float> full(table_.params()[pi].numel);
    if (plan_.replicated[pi]) {
      std::copy(local.begin(), local.end(), full.begin());
    } else if constexpr (std::is_same_v<T, float>) {
      std::vector<int> counts, displs;
      for (const auto& [lo, hi] : plan_.ranges[pi]) {
        displs.push_back(static_cast<int>(lo));
        counts.push_back(static_cast<int>(hi - lo));
      }
      comm_->gatherv(local.data(), full.data(), counts, displs, 0, "optimizer state for a checkpoint");
    }
    if (rank_ == 0) sink(name, full);
  }
}

template <class T>
void Optimizer<T>::load_state(const std::function<void(const std::string&, size_t, size_t, T*)>& source) {
  for (const std::string& name : state_names()) {
    std::string kind;
    const int pi = param_of_state(name, kind);
    State& s = state_[pi];
    source(name, s.lo, s.hi - s.lo, state_buffer(pi, kind).data());
  }
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace muongpt
