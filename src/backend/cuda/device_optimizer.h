// The optimizer on the GPU: the same Muon + AdamW step as the CPU reference
// (src/optim/optimizer.h, which is its specification: groups, schedules,
// momentum forms and warmup, Newton-Schulz coefficient tables, update-scale
// modes, weight decay and its schedule, cautious weight decay, NorMuon,
// per-head blocks, QK-clip), run on device buffers with no host
// synchronisation inside step().
//
// Everything of the CPU optimizer for one rank runs here: NorMuon (state
// "<param>.normuon_v", the per-row/column factor fused into the update) and
// QK-clip (the per-head max logits stay on the device: observe_attention_logits
// keeps a running max, which with several ranks the caller first replaces by
// its max over ranks through running_max_logits(); step() rescales the q/k
// rows of heads above tau and refreshes their bf16 copy). Not on the GPU: the
// diagnostics (optim.diagnostics_every > 0: update RMS, orthogonality error,
// logged max logits, clipped-head counts); supports() says so and the trainer
// keeps such runs on the host optimizer.
//
// Speed: the Muon blocks (MuonBlock: whole matrices, q/k/v parts, head
// blocks) of a group with the same shape, across all layers, form one batch.
// Per batch: one fused kernel forms the momentum and the Nesterov blend and
// gathers the fp32 result into a contiguous batch buffer; Newton-Schulz runs
// as strided-batched cuBLASLt bf16 GEMMs (gpu::newton_schulz_batched, each
// block normalised by its own Frobenius norm); one fused kernel applies the
// scale, weight decay (cautious), the NorMuon factor and the update straight
// into the fp32 master weights and refreshes their bf16 copy. AdamW runs one
// kernel per stretch of adjacent parameters of a group. Next: a symmetric
// X X^T (half the Gram FLOPs) and writing the bf16 NS input in the momentum
// kernel (it needs the block norms first, so today u goes through fp32).
//
// One rank's view: the gradients are already summed over ranks (and clipped).
// Sharded state (dist.zero_stage = 1, dist.muon = "owner"): the optimizer
// takes the same ShardPlan as the host optimizer (ShardPlan::make with the
// same groups, dist and world size), so ownership is identical on both paths.
// Rank r then keeps and updates only its part:
//   AdamW, zero_stage 1: m and v for its range of the AdamW elements (the
//     concatenation of the AdamW parameters in table order, split evenly),
//     and updates only those elements;
//   Muon "owner": momentum (and NorMuon state) of the matrices it owns; only
//     their blocks form its Newton-Schulz batches;
//   replicated parameters (Muon "replicated", AdamW with zero_stage 0):
//     everything, as with one rank.
// step() reads the summed gradient only where this rank updates and writes
// only those parameters (fp32 and their bf16 copy). The caller then gathers
// every owner's updated ranges into every rank's fp32 master (CudaDeviceStep:
// grouped ncclBroadcast) and calls finish_gathered_step(), which refreshes
// the bf16 copy from the fp32 master and applies QK-clip, the same on every
// rank. This class makes no collective calls itself, so the sharded step can
// be tested on one GPU by running it once per simulated rank.
// dist.muon = "zero1" (row-sharded momentum, the full momentum-updated matrix
// gathered before Newton-Schulz) is not run on the GPU: supports() says so
// and the trainer keeps such runs on the host optimizer.
//
// Checkpoints: the state tensors have the CPU optimizer's names and layouts
// ("<param>.momentum", "<param>.adam_m", "<param>.adam_v",
// "<param>.normuon_v"), so a checkpoint moves between CPU and GPU runs.
// get_state/set_state move this rank's part of a tensor, elements
// state_part(name, rank) of the full tensor (all of it with one rank or for
// replicated parameters), as Optimizer::gather_state/load_state do: the
// caller gathers the parts on rank 0 to save, and hands each rank its part of
// the full tensor to load, so checkpoints also move between world sizes.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "model/params.h"
#include "optim/optimizer.h"

namespace muongpt {

namespace gpu {
class Matmul;
}

// Times of the last step (filled when timing is on; events on the stream).
struct DeviceOptimizerTiming {
  double muon_ms = 0;       // all Muon groups: momentum, Newton-Schulz, update
  double adamw_ms = 0;      // all AdamW groups
  double ns_ms = 0;         // of muon_ms: the Newton-Schulz GEMMs and their glue
  double ns_flops = 0;      // FLOPs of the Newton-Schulz GEMMs of one step
};

class DeviceOptimizer {
 public:
  // Throws Error naming `source` for configs it cannot run (as the CPU one).
  // `matmul` and `stream` must outlive this object. rank and world (with
  // dist) select this rank's part of sharded state; the defaults are one rank.
  DeviceOptimizer(const ParamTable& table, const OptimConfig& optim, const ScheduleConfig& schedule,
                  int total_steps, const std::string& source, int n_head, gpu::Matmul& matmul,
                  cudaStream_t stream, const DistConfig& dist = DistConfig{}, int rank = 0, int world = 1);
  ~DeviceOptimizer();
  // False (with the reason) for configs this optimizer cannot run yet (today:
  // diagnostics_every > 0; with several ranks, dist.muon = "zero1").
  static bool supports(const OptimConfig& optim, std::string& why);
  static bool supports(const OptimConfig& optim, const DistConfig& dist, int world, std::string& why);

  // Who updates what (the host optimizer's plan for the same config).
  const ShardPlan& plan() const;
  int rank() const;
  // True when some state is sharded (then step() updates only this rank's
  // part and finish_gathered_step() must follow the gather).
  bool sharded() const;
  DeviceOptimizer(const DeviceOptimizer&) = delete;
  DeviceOptimizer& operator=(const DeviceOptimizer&) = delete;

  // Step `step` (0-based): params fp32 master (table.total()), params_bf16
  // its bf16 copy (void*: __nv_bfloat16), grads fp32; all device pointers,
  // laid out by the table. Enqueued on the stream; QK-clip uses the logits
  // observed since the last step. Sharded: updates only this rank's part and
  // leaves QK-clip to finish_gathered_step().
  void step(float* params, void* params_bf16, const float* grads, int step);

  // Sharded only, after every owner's updated fp32 ranges have been copied
  // into params on this rank: refreshes all of params_bf16 from params, then
  // QK-clip (which reads and rescales q/k rows of any owner). Enqueued on the
  // stream.
  void finish_gathered_step(float* params, void* params_bf16);

  // Max pre-softmax attention logits (n_layer x n_head, device fp32) of one
  // forward of this step; call after every micro-batch (max is kept on the
  // device).
  void observe_attention_logits(const float* device_max_logits);
  // The running max that QK-clip will use (device, n_layer x n_head floats,
  // written on the stream), so that several ranks can take its max over ranks
  // before step(); null (n = 0) when QK-clip is off.
  float* running_max_logits(size_t& n);

  void set_timing(bool on);
  DeviceOptimizerTiming last_timing() const;  // synchronises with the stream
  // FLOPs of the Newton-Schulz GEMMs per step (2*m*n*k per product).
  double ns_flops_per_step() const;

  // Checkpoint state, host copies (see above).
  std::vector<std::string> state_names() const;
  // Elements of the full tensor.
  size_t state_numel(const std::string& name) const;
  // [first, end) of the full tensor that `rank` keeps (possibly empty).
  std::pair<size_t, size_t> state_part(const std::string& name, int rank) const;
  // True when every rank keeps the whole tensor (nothing to gather).
  bool state_replicated(const std::string& name) const;
  // This rank's part (state_part(name, rank())).
  std::vector<float> get_state(const std::string& name) const;
  void set_state(const std::string& name, const std::vector<float>& values);
  // Bytes of optimizer state this rank keeps on the GPU.
  size_t state_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace muongpt
