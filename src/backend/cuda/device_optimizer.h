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
// keeps a running max, step() rescales the q/k rows of heads above tau and
// refreshes their bf16 copy). Not on the GPU: the diagnostics
// (optim.diagnostics_every > 0: update RMS, orthogonality error, logged max
// logits, clipped-head counts); supports() says so and the trainer keeps such
// runs on the host optimizer.
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
// One rank's view: the gradients are already summed over ranks (and clipped);
// every rank that runs this keeps the full state (replicated; sharding the
// GPU state is future work).
//
// Checkpoints: the state tensors have the CPU optimizer's names and layouts
// ("<param>.momentum", "<param>.adam_m", "<param>.adam_v",
// "<param>.normuon_v"), so a checkpoint moves between CPU and GPU runs.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "model/params.h"

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
  // `matmul` and `stream` must outlive this object.
  DeviceOptimizer(const ParamTable& table, const OptimConfig& optim, const ScheduleConfig& schedule,
                  int total_steps, const std::string& source, int n_head, gpu::Matmul& matmul,
                  cudaStream_t stream);
  ~DeviceOptimizer();
  // False (with the reason) for configs this optimizer cannot run yet (today:
  // diagnostics_every > 0).
  static bool supports(const OptimConfig& optim, std::string& why);
  DeviceOptimizer(const DeviceOptimizer&) = delete;
  DeviceOptimizer& operator=(const DeviceOptimizer&) = delete;

  // Step `step` (0-based): params fp32 master (table.total()), params_bf16
  // its bf16 copy (void*: __nv_bfloat16), grads fp32; all device pointers,
  // laid out by the table. Enqueued on the stream; QK-clip uses the logits
  // observed since the last step.
  void step(float* params, void* params_bf16, const float* grads, int step);

  // Max pre-softmax attention logits (n_layer x n_head, device fp32) of one
  // forward of this step; call after every micro-batch (max is kept on the
  // device).
  void observe_attention_logits(const float* device_max_logits);

  void set_timing(bool on);
  DeviceOptimizerTiming last_timing() const;  // synchronises with the stream
  // FLOPs of the Newton-Schulz GEMMs per step (2*m*n*k per product).
  double ns_flops_per_step() const;

  // Checkpoint state, host copies (see above).
  std::vector<std::string> state_names() const;
  std::vector<float> get_state(const std::string& name) const;
  void set_state(const std::string& name, const std::vector<float>& values);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace muongpt
