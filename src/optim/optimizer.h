// The optimizer: parameter groups (Muon for hidden matrices, AdamW for the
// rest, chosen by name patterns in the config), their state, and one step.
//
// Grouping: each parameter goes to the first group whose `params` patterns
// match its name; a parameter matching no group, or a non-matrix parameter in
// a Muon group, is a config error naming both.
// State: Muon keeps one momentum buffer per parameter; AdamW keeps m and v.
// Both are stored per parameter (by name) in checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "config/config.h"
#include "model/params.h"

namespace muongpt {

struct ParamGroupAssignment {
  std::vector<int> group_of_param;             // index into config groups, per table param
  std::vector<std::vector<int>> params_of_group;  // table param indices, per group
};

// Matches parameters to groups; throws Error naming `source` on problems.
ParamGroupAssignment assign_groups(const ParamTable& table, const OptimConfig& optim, const std::string& source);

// Update-scale factor of a Muon matrix block (rows x cols).
double muon_update_scale(const std::string& mode, int rows, int cols);

template <class T>
class Optimizer {
 public:
  Optimizer(const ParamTable& table, const OptimConfig& optim, const ScheduleConfig& schedule, int total_steps,
            const std::string& source);

  // Applies step `step` (0-based) to params given grads.
  void step(T* params, const T* grads, int step);

  const ParamGroupAssignment& groups() const { return assign_; }
  const OptimConfig& config() const { return optim_; }

  // Learning rate of each group at `step` (base lr x schedule).
  std::vector<double> group_lrs(int step) const;

  // Diagnostic per group: RMS of the last update direction before the lr
  // (Muon: scale * O; AdamW: m_hat / (sqrt(v_hat) + eps)).
  const std::vector<double>& last_update_rms() const { return update_rms_; }

  // Named state tensors for checkpoints: "<param>.momentum", "<param>.adam_m", "<param>.adam_v".
  std::map<std::string, std::vector<T>*> state_tensors();

 private:
  void muon_step(const OptimGroupConfig& g, const ParamSpec& spec, T* w, const T* grad, int step, double lr,
                 double& sum_sq, size_t& count);

  const ParamTable& table_;
  OptimConfig optim_;
  ScheduleConfig schedule_;
  int total_steps_;
  ParamGroupAssignment assign_;
  std::vector<std::vector<T>> m_, v_;  // per table param: Muon momentum in m_, AdamW m_ and v_
  std::vector<double> update_rms_;
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace muongpt
