// The optimizer: parameter groups (Muon for hidden matrices, AdamW for the
// rest, chosen by name patterns in the config), their state, and one step,
// on one rank or sharded over several.
//
// Grouping: each parameter goes to the first group whose `params` patterns
// match its name; a parameter matching no group, or a non-matrix parameter in
// a Muon group, is a config error naming both.
//
// State: Muon keeps a momentum buffer, AdamW keeps m and v. With several
// ranks (dist config) each rank keeps only its part (the ShardPlan):
//   AdamW, zero_stage 1: the AdamW parameters' elements, concatenated in
//                        table order, are split evenly; each rank updates its
//                        range with its state.
//   Muon "owner":        each matrix belongs to one rank (balanced by size),
//                        which keeps its momentum and runs Newton-Schulz.
//   Muon "zero1":        each matrix's rows are split evenly; each rank keeps
//                        momentum for its rows, the momentum-updated rows are
//                        all-gathered, every rank orthogonalises the full
//                        matrix and updates its own rows.
// Gradients arrive already summed over ranks. After the local updates the
// sharded parameters are all-gathered, so every rank ends the step with the
// same parameters. Checkpoints hold full state (gathered on rank 0), so a run
// saved on N ranks resumes on M.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config/config.h"
#include "dist/comm.h"
#include "model/params.h"

namespace muongpt {

struct ParamGroupAssignment {
  std::vector<int> group_of_param;                // index into config groups, per table param
  std::vector<std::vector<int>> params_of_group;  // table param indices, per group
};

// Matches parameters to groups; throws Error naming `source` on problems.
ParamGroupAssignment assign_groups(const ParamTable& table, const OptimConfig& optim, const std::string& source);

// Update-scale factor of a Muon matrix block (rows x cols).
double muon_update_scale(const std::string& mode, int rows, int cols);

// Which elements of each parameter every rank updates and keeps state for.
struct ShardPlan {
  int world = 1;
  // ranges[param][rank] = [lo, hi) element range; every rank holds the full
  // range when the parameter is replicated.
  std::vector<std::vector<std::pair<size_t, size_t>>> ranges;
  std::vector<bool> replicated;  // per param
  std::vector<bool> zero1_muon;  // per param: Muon rows sharded (needs the full update gathered)

  static ShardPlan make(const ParamTable& table, const OptimConfig& optim, const ParamGroupAssignment& groups,
                        const DistConfig& dist, int world);
  bool any_sharded() const;
};

template <class T>
class Optimizer {
 public:
  // `comm` may be null (one process). Sharding needs T = float.
  Optimizer(const ParamTable& table, const OptimConfig& optim, const ScheduleConfig& schedule, int total_steps,
            const std::string& source, const DistConfig& dist = {}, Comm* comm = nullptr);

  // Applies step `step` (0-based) to params given grads (summed over ranks).
  // Collective when state is sharded.
  void step(T* params, const T* grads, int step);

  const ParamGroupAssignment& groups() const { return assign_; }
  const OptimConfig& config() const { return optim_; }
  const ShardPlan& plan() const { return plan_; }

  // Learning rate of each group at `step` (base lr x schedule).
  std::vector<double> group_lrs(int step) const;

  // Diagnostic per group: RMS of the last update direction before the lr
  // (Muon: scale * O; AdamW: m_hat / (sqrt(v_hat) + eps)), over all ranks.
  const std::vector<double>& last_update_rms() const { return update_rms_; }

  // Names of the state tensors: "<param>.momentum", "<param>.adam_m", "<param>.adam_v".
  std::vector<std::string> state_names() const;
  size_t state_numel(const std::string& name) const;
  // Collective: calls `sink(name, full tensor)` on rank 0 for every state tensor.
  void gather_state(const std::function<void(const std::string&, const std::vector<float>&)>& sink);
  // Every rank loads its part: `source(name, first element, count, destination)`.
  void load_state(const std::function<void(const std::string&, size_t, size_t, T*)>& source);

 private:
  struct State {
    size_t lo = 0, hi = 0;  // elements of the parameter this rank keeps state for
    std::vector<T> m, v;    // Muon momentum in m; AdamW m and v
  };
  int param_of_state(const std::string& name, std::string& kind) const;
  std::vector<T>& state_buffer(int pi, const std::string& kind);
  void muon_param(const OptimGroupConfig& g, int pi, T* w, const T* grad, int step, double lr, double& sum_sq,
                  size_t& count);
  void all_gather_params(T* params, const char* what);

  const ParamTable& table_;
  OptimConfig optim_;
  ScheduleConfig schedule_;
  int total_steps_;
  Comm* comm_;
  int rank_ = 0;
  ParamGroupAssignment assign_;
  ShardPlan plan_;
  std::vector<State> state_;  // per table param
  std::vector<double> update_rms_;
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace muongpt
