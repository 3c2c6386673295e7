// The optimizer: parameter groups (Muon for hidden matrices, AdamW for the
// rest, chosen by name patterns in the config), their state, and one step,
// on one rank or sharded over several.
//
// Grouping: each parameter goes to the first group whose `params` patterns
// match its name; a parameter matching no group, or a non-matrix parameter in
// a Muon group, is a config error naming both.
//
// State: Muon keeps a momentum buffer, AdamW keeps m and v, allocated (zero)
// on the first step(), load_state() or gather_state(). Until then the
// optimizer holds only its layout (groups, plan, state names and sizes), which
// is all a run whose optimizer steps on the GPU needs from it (state_bytes()
// stays 0). With several ranks (dist config) each rank keeps only its part
// (the ShardPlan):
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
//
// Muon variants (docs/muon.md): each matrix is orthogonalised in row blocks
// (MuonBlock: the whole matrix, the fused qkv's three parts, or one block per
// attention head with per_head); NorMuon keeps one second-moment value per
// row or column of each block ("<param>.normuon_v", whole on every rank that
// works on the matrix: with zero1 every rank then orthogonalises every block);
// cautious weight decay and the lr_squared decay schedule act in the update.
// An AdamW group with update_every k sums its gradients over k steps and
// updates on steps k-1, 2k-1, ... (Adam's t = (step + 1) / k), speedrun record
// 39's Adam "every other step".
// After the update, QK-clip rescales W_q/W_k of heads whose max attention
// logit (observe_attention_logits, max over micro-batches and ranks) exceeded
// tau. Diagnostics every optim.diagnostics_every steps.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
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

// Rows [row0, row0 + rows) of a matrix, orthogonalised on their own.
struct MuonBlock {
  int row0 = 0, rows = 0;
};

// The blocks Muon orthogonalises a matrix in: by default its spec.row_blocks
// equal parts (fused qkv: q, k, v); with group.per_head, attention q/k (and v
// for "qkv") matrices in blocks of heads_per_block heads (rows of W_q for head
// h: h*head_dim .. (h+1)*head_dim - 1). n_head is the model's (needed for
// per_head only).
std::vector<MuonBlock> muon_blocks(const ParamSpec& spec, const OptimGroupConfig& group, int n_head);

// NorMuon: one statistic per row of a rows x cols block (else per column).
bool normuon_per_row(const NorMuonConfig& normuon, int rows, int cols);

// What the optimizer measured at a diagnostics step.
struct OptimDiagnostics {
  int step = -1;                      // 0-based step; -1 = none taken yet
  std::vector<double> update_rms;     // per group
  std::string orth_param;             // sampled Muon matrix
  double orth_error = 0;              // ||O O^T - I||_F / sqrt(n) of its first block
  std::vector<double> max_logits;     // per layer and head (n_layer x n_head), over ranks; empty = none observed
  int n_head = 0;
  int clipped_heads = 0;              // heads QK-clip rescaled at this step
  nlohmann::json to_json(const OptimConfig& optim) const;
};

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
  // `comm` may be null (one process). Sharding needs T = float. n_head is
  // the model's (used by per_head orthogonalisation; 0 = unknown).
  Optimizer(const ParamTable& table, const OptimConfig& optim, const ScheduleConfig& schedule, int total_steps,
            const std::string& source, const DistConfig& dist = {}, Comm* comm = nullptr, int n_head = 0);

  // Applies step `step` (0-based) to params given grads (summed over ranks),
  // then QK-clip. Collective when state is sharded, when it reduces the
  // attention logits (several ranks, QK-clip or a diagnostics step).
  void step(T* params, const T* grads, int step);

  // Takes the max attention logits (n_layer x n_head) of one forward of this
  // step (call after every micro-batch); step() uses their max, then forgets.
  void observe_attention_logits(const std::vector<T>& max_logits, int n_head);

  // True when step `step` (0-based) records diagnostics.
  bool diagnostics_due(int step) const;
  // The latest diagnostics (check .step).
  const OptimDiagnostics& diagnostics() const { return diag_; }
  // Heads QK-clip rescaled in the last step.
  int last_clipped_heads() const { return clipped_heads_; }

  const ParamGroupAssignment& groups() const { return assign_; }
  const OptimConfig& config() const { return optim_; }
  const ShardPlan& plan() const { return plan_; }

  // Learning rate of each group at `step` (base lr x schedule).
  std::vector<double> group_lrs(int step) const;

  // Diagnostic per group: RMS of the last update direction before the lr
  // (Muon: scale * O; AdamW: m_hat / (sqrt(v_hat) + eps)), over all ranks.
  const std::vector<double>& last_update_rms() const { return update_rms_; }

  // Names of the state tensors: "<param>.momentum", "<param>.adam_m",
  // "<param>.adam_v", "<param>.normuon_v" (NorMuon groups) and
  // "<param>.adam_grad_sum" (AdamW groups with update_every > 1).
  std::vector<std::string> state_names() const;
  size_t state_numel(const std::string& name) const;
  // Bytes of state buffers this rank holds (0 before the first step or load).
  size_t state_bytes() const;
  // Collective: calls `sink(name, full tensor)` on rank 0 for every state tensor.
  void gather_state(const std::function<void(const std::string&, const std::vector<float>&)>& sink);
  // Every rank loads its part: `source(name, first element, count, destination)`.
  void load_state(const std::function<void(const std::string&, size_t, size_t, T*)>& source);

 private:
  struct State {
    size_t lo = 0, hi = 0;  // elements of the parameter this rank keeps state for
    std::vector<T> m, v;    // Muon momentum in m; AdamW m and v
    std::vector<T> gsum;    // AdamW with update_every > 1: the gradients summed since its last update
    std::vector<T> nv;      // NorMuon second moment, whole (blocks in order), where this rank works on the matrix
  };
  // Per-step sums: update RMS (sum of squares, count) and orthogonality error (sum, count).
  struct Sums {
    double sum_sq = 0, count = 0, orth = 0, orth_count = 0;
  };
  void allocate_state();  // once: zero buffers for this rank's part
  int param_of_state(const std::string& name, std::string& kind) const;
  std::vector<T>& state_buffer(int pi, const std::string& kind);
  size_t normuon_numel(int pi) const;
  void muon_param(const OptimGroupConfig& g, int pi, T* w, const T* grad, int step, double lr, bool diag, Sums& sums);
  void all_gather_params(T* params, const char* what);
  void attention_logits_step(T* params, bool diag);

  const ParamTable& table_;
  OptimConfig optim_;
  ScheduleConfig schedule_;
  int total_steps_;
  Comm* comm_;
  int rank_ = 0;
  ParamGroupAssignment assign_;
  ShardPlan plan_;
  std::vector<State> state_;  // per table param
  bool state_allocated_ = false;
  std::vector<std::vector<MuonBlock>> blocks_;  // per table param (Muon only)
  std::vector<double> update_rms_;
  int diag_param_ = -1;         // table index of the matrix whose orthogonality error is logged
  std::vector<T> attn_max_;     // max attention logits observed during this step
  int attn_heads_ = 0;
  int clipped_heads_ = 0;
  OptimDiagnostics diag_;
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace muongpt
