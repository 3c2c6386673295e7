#include "optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

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

template <class T>
Optimizer<T>::Optimizer(const ParamTable& table, const OptimConfig& optim, const ScheduleConfig& schedule,
                        int total_steps, const std::string& source)
    : table_(table), optim_(optim), schedule_(schedule), total_steps_(total_steps) {
  assign_ = assign_groups(table, optim, source);
  m_.resize(table.params().size());
  v_.resize(table.params().size());
  for (size_t pi = 0; pi < table.params().size(); ++pi) {
    const auto& g = optim.groups[assign_.group_of_param[pi]];
    m_[pi].assign(table.params()[pi].numel, T(0));
    if (g.type == "adamw") v_[pi].assign(table.params()[pi].numel, T(0));
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
void Optimizer<T>::muon_step(const OptimGroupConfig& g, const ParamSpec& spec, T* w, const T* grad, int step,
                             double lr, double& sum_sq, size_t& count) {
  const size_t pi = static_cast<size_t>(&spec - table_.params().data());
  std::vector<T> u(spec.numel);
  cpu::muon_momentum(u.data(), m_[pi].data(), grad, spec.numel, muon_momentum_at(g, step), g.nesterov,
                     g.momentum_form == "ema");
  const int block_rows = spec.rows() / spec.row_blocks;
  const int cols = spec.cols();
  const size_t block = static_cast<size_t>(block_rows) * cols;
  const auto table = g.ns.table();
  for (int bi = 0; bi < spec.row_blocks; ++bi) {
    T* ub = u.data() + bi * block;
    cpu::newton_schulz(ub, block_rows, cols, table, g.ns.norm_scale, g.ns.norm_eps);
    const double scale = muon_update_scale(g.update_scale, block_rows, cols);
    sum_sq += scale * scale * cpu::deterministic_sum<double>(block, [&](size_t i) { return double(ub[i]) * ub[i]; });
    count += block;
    cpu::muon_apply(w + bi * block, ub, block, lr, scale, g.weight_decay);
  }
}

template <class T>
void Optimizer<T>::step(T* params, const T* grads, int step) {
  const std::vector<double> lrs = group_lrs(step);
  for (size_t gi = 0; gi < optim_.groups.size(); ++gi) {
    const OptimGroupConfig& g = optim_.groups[gi];
    double sum_sq = 0;
    size_t count = 0;
    for (int pi : assign_.params_of_group[gi]) {
      const ParamSpec& spec = table_.params()[pi];
      T* w = params + spec.offset;
      const T* grad = grads + spec.offset;
      if (g.type == "muon") {
        muon_step(g, spec, w, grad, step, lrs[gi], sum_sq, count);
      } else {
        const long t = static_cast<long>(step) + 1;
        cpu::adamw_update(w, m_[pi].data(), v_[pi].data(), grad, spec.numel, lrs[gi], g.betas[0], g.betas[1], g.eps,
                          g.weight_decay, t);
        // diagnostic: RMS of the normalised Adam direction m_hat / (sqrt(v_hat) + eps)
        const double bc1 = 1.0 - std::pow(g.betas[0], t), bc2 = 1.0 - std::pow(g.betas[1], t);
        const T* m = m_[pi].data();
        const T* v = v_[pi].data();
        sum_sq += cpu::deterministic_sum<double>(spec.numel, [&](size_t i) {
          const double d = (m[i] / bc1) / (std::sqrt(v[i] / bc2) + g.eps);
          return d * d;
        });
        count += spec.numel;
      }
    }
    update_rms_[gi] = count ? std::sqrt(sum_sq / count) : 0.0;
  }
}

template <class T>
std::map<std::string, std::vector<T>*> Optimizer<T>::state_tensors() {
  std::map<std::string, std::vector<T>*> out;
  for (size_t pi = 0; pi < table_.params().size(); ++pi) {
    const std::string& name = table_.params()[pi].name;
    if (optim_.groups[assign_.group_of_param[pi]].type == "muon") {
      out[name + ".momentum"] = &m_[pi];
    } else {
      out[name + ".adam_m"] = &m_[pi];
      out[name + ".adam_v"] = &v_[pi];
    }
  }
  return out;
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace muongpt
