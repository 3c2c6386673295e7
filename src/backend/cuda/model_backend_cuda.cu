// The GPU model behind the Trainer's ModelBackend interface (see
// src/train/model_backend.h): GptCuda plus the host copies of parameters and
// gradients that the optimizer and checkpoints use.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend/cuda/device_optimizer.h"
#include "backend/cuda/gpt_cuda.h"
#include "backend/cuda/local_gpu.h"
#if MUONGPT_HAVE_NCCL
#include "backend/cuda/nccl_comm.h"
#endif
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/optimizer.cuh"
#include "kernels/cuda/reduce.cuh"
#include "train/grad_buckets.h"
#include "train/shard_ranges.h"
#include "train/model_backend.h"
#include "util/error.h"

namespace muongpt {

namespace {

// Gradient norm, clipping and the optimizer, all on the model's stream. With
// several ranks the gradients are reduced over NCCL on a stream of their own:
// on the last micro-step each block's gradients are reduced as soon as the
// backward has enqueued them (train/grad_buckets.h), overlapping the rest of
// the backward; the embeddings, head and other global parameters follow after
// the backward, and allreduce_grads() waits for all of it
// (dist.overlap_grads = false: one reduction of everything after the backward).
//
// Replicated optimizer state: every bucket is all-reduced, every rank computes
// the norm of the whole gradient and runs the whole step.
//
// Sharded state (dist.zero_stage = 1, dist.muon = "owner"; the DeviceOptimizer
// takes the host optimizer's ShardPlan, train/shard_ranges.h cuts the flat
// buffer by it into ranges of one owner): in the same buckets, each range is
// summed into its owner only (one NCCL group per bucket: ncclReduce with
// root = owner; replicated ranges ncclAllReduce). Then, per step, every rank
// makes the same calls in this order:
//   1. QK-clip on: the running max attention logits, max over ranks
//      (all-reduce; also with replicated state);
//   2. the squared norm of the gradient this rank owns (and, on rank 0, of the
//      replicated ranges), one double per rank all-gathered and added in rank
//      order: the same norm, bit for bit, on every rank;
//   3. clipping and the update of this rank's ranges (DeviceOptimizer::step);
//   4. every owner broadcasts its updated fp32 master ranges (one NCCL group
//      of ncclBroadcast, root = owner);
//   5. the bf16 copy refreshed from the fp32 master and QK-clip, identically
//      on every rank (DeviceOptimizer::finish_gathered_step).
// Checkpoints: get_state() gathers each sharded state tensor on rank 0 over
// the host communicator (gatherv, as Optimizer::gather_state); set_state()
// takes the full tensor (every rank reads the checkpoint) and keeps this
// rank's part (as Optimizer::load_state).
class CudaDeviceStep final : public DeviceStep {
 public:
  CudaDeviceStep(GptCuda& model, const OptimConfig& optim, const ScheduleConfig& schedule, int total_steps,
                 const std::string& source, Comm& comm, const DistConfig& dist)
      : model_(model),
        comm_(comm),
        optimizer_(model.table(), optim, schedule, total_steps, source, model.config().n_head, model.matmul(),
                   model.stream(), dist, comm.rank(), comm.world()) {
    CUDA_CHECK(cudaMalloc(&sum_sq_, sizeof(double) * (1 + gpu::reduce_scratch_doubles())));
#if MUONGPT_HAVE_NCCL
    if (comm.world() > 1) {
      CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
      CUDA_CHECK(cudaEventCreateWithFlags(&grads_ready_, cudaEventDisableTiming));
      nccl_ = std::make_unique<NcclComm>(comm, comm_stream_, dist.timeout_s);
      if (dist.overlap_grads) buckets_ = plan_grad_buckets(model.table(), model.config().n_layer);
      if (optimizer_.sharded()) plan_sharded();
    }
#else
    MUONGPT_CHECK(comm.world() == 1, "several ranks need NCCL for the device step");
#endif
  }

  void begin_last_backward() override {
#if MUONGPT_HAVE_NCCL
    if (!nccl_ || buckets_.layers.empty()) return;
    overlapping_ = true;
    model_.set_layer_grads_hook([this](int layer) { reduce_when_ready(layer, "block gradients"); });
#endif
  }

  void allreduce_grads() override {
#if MUONGPT_HAVE_NCCL
    if (!nccl_) return;
    model_.set_layer_grads_hook(nullptr);
    reduce_when_ready(overlapping_ ? kRest : kAll, "gradients");
    overlapping_ = false;
    nccl_->finish("gradients");  // the model's stream is idle (backward synchronises), so it may go on
#endif
  }

  ~CudaDeviceStep() override {
#if MUONGPT_HAVE_NCCL
    model_.set_layer_grads_hook(nullptr);
    nccl_.reset();
    if (grads_ready_) cudaEventDestroy(grads_ready_);
    if (comm_stream_) cudaStreamDestroy(comm_stream_);
    if (rank_sums_) cudaFree(rank_sums_);
#endif
    cudaFree(sum_sq_);
  }
  CudaDeviceStep(const CudaDeviceStep&) = delete;
  CudaDeviceStep& operator=(const CudaDeviceStep&) = delete;

  void observe_attention_logits() override { optimizer_.observe_attention_logits(model_.device_max_logits()); }

  double clip_and_step(double max_norm, int step) override {
    cudaStream_t s = model_.stream();
#if MUONGPT_HAVE_NCCL
    max_logits_over_ranks();
#endif
    if (!optimizer_.sharded()) {
      const size_t n = model_.table().total();
      gpu::grad_sum_squares(sum_sq_, model_.device_grads(), n, sum_sq_ + 1, s);
      double sum_sq = 0;
      CUDA_CHECK(cudaMemcpyAsync(&sum_sq, sum_sq_, sizeof(double), cudaMemcpyDeviceToHost, s));
      gpu::clip_grad_scale(model_.device_grads(), n, sum_sq_, max_norm, s);
      optimizer_.step(model_.device_params(), model_.device_params_bf16(), model_.device_grads(), step);
      CUDA_CHECK(cudaStreamSynchronize(s));  // the norm is read; the step is done before the next forward anyway
      return std::sqrt(sum_sq);
    }
#if MUONGPT_HAVE_NCCL
    const double sum_sq = sharded_sum_squares();
    sum_sq_host_ = sum_sq;
    CUDA_CHECK(cudaMemcpyAsync(sum_sq_, &sum_sq_host_, sizeof(double), cudaMemcpyHostToDevice, s));
    for (const OwnedRange& r : used_ranges_)
      gpu::clip_grad_scale(model_.device_grads() + r.begin, r.size(), sum_sq_, max_norm, s);
    optimizer_.step(model_.device_params(), model_.device_params_bf16(), model_.device_grads(), step);
    CUDA_CHECK(cudaEventRecord(grads_ready_, s));
    nccl_->broadcast_from_owners_after(model_.device_params(), ranges_, grads_ready_, "updated parameters");
    nccl_->finish("updated parameters");
    optimizer_.finish_gathered_step(model_.device_params(), model_.device_params_bf16());
    CUDA_CHECK(cudaStreamSynchronize(s));
    return std::sqrt(sum_sq);
#else
    fail("sharded optimizer state on the GPU needs NCCL");  // unreachable: sharding needs several ranks
#endif
  }

  std::vector<std::string> state_names() const override { return optimizer_.state_names(); }

  // Collective when the tensor is sharded (every rank calls it, names in
  // state_names() order); the full tensor on rank 0, this rank's part elsewhere.
  std::vector<float> get_state(const std::string& name) const override {
    std::vector<float> part = optimizer_.get_state(name);
    if (optimizer_.state_replicated(name)) return part;
    std::vector<int> counts, displs;
    for (int r = 0; r < comm_.world(); ++r) {
      const auto [lo, hi] = optimizer_.state_part(name, r);
      displs.push_back(static_cast<int>(lo));
      counts.push_back(static_cast<int>(hi - lo));
    }
    std::vector<float> full(comm_.is_root() ? optimizer_.state_numel(name) : 0);
    comm_.gatherv(part.data(), full.data(), counts, displs, 0, "optimizer state for a checkpoint");
    return comm_.is_root() ? full : part;
  }

  // `values`: the full tensor (as in the checkpoint); this rank keeps its part.
  void set_state(const std::string& name, const std::vector<float>& values) override {
    const size_t full = optimizer_.state_numel(name);
    if (values.size() != full) fail("optimizer state ", name, ": ", values.size(), " values, expected ", full);
    const auto [lo, hi] = optimizer_.state_part(name, optimizer_.rank());
    optimizer_.set_state(name, std::vector<float>(values.begin() + lo, values.begin() + hi));
  }

 private:
  GptCuda& model_;
  Comm& comm_;
  DeviceOptimizer optimizer_;
  double* sum_sq_ = nullptr;  // [0] = sum of squares, then the reduction scratch
#if MUONGPT_HAVE_NCCL
  static constexpr int kRest = -1, kAll = -2;  // reduce_when_ready: after the backward; everything

  // Sharded state: the reduction lists and the norm's buffers, fixed for the run.
  void plan_sharded() {
    const int rank = comm_.rank(), world = comm_.world();
    ranges_ = plan_owned_ranges(model_.table(), optimizer_.plan());
    used_ranges_ = ranges_used_by(ranges_, rank);
    norm_ranges_ = norm_ranges_of(ranges_, rank);
    for (const GradRange& b : buckets_.layers) layer_ranges_.push_back(owned_ranges_within(ranges_, b.begin, b.end));
    for (const GradRange& b : buckets_.rest) {
      const auto pieces = owned_ranges_within(ranges_, b.begin, b.end);
      rest_ranges_.insert(rest_ranges_.end(), pieces.begin(), pieces.end());
    }
    // per norm range one partial sum, then one slot per rank for the all-gather
    CUDA_CHECK(cudaMalloc(&rank_sums_, sizeof(double) * (norm_ranges_.size() + world)));
    partials_.assign(norm_ranges_.size(), 0.0);
    rank_sums_host_.assign(world, 0.0);
  }

  // Reduces bucket `which` (a block, kRest or kAll) over ranks behind the
  // model stream's work so far: all-reduced with replicated state, into each
  // range's owner with sharded state.
  void reduce_when_ready(int which, const char* what) {
    CUDA_CHECK(cudaEventRecord(grads_ready_, model_.stream()));
    float* grads = model_.device_grads();
    if (optimizer_.sharded()) {
      const std::vector<OwnedRange>& r = which == kAll ? ranges_ : which == kRest ? rest_ranges_ : layer_ranges_[which];
      nccl_->reduce_to_owners_after(grads, r, grads_ready_, what);
      return;
    }
    if (which == kAll) {
      nccl_->all_reduce_sum_after(grads, model_.table().total(), grads_ready_, what);
    } else if (which == kRest) {
      for (const GradRange& r : buckets_.rest) nccl_->all_reduce_sum_after(grads + r.begin, r.size(), grads_ready_, what);
    } else {
      const GradRange& r = buckets_.layers[which];
      nccl_->all_reduce_sum_after(grads + r.begin, r.size(), grads_ready_, what);
    }
  }

  // QK-clip's running max logits: the max over ranks, so that every rank
  // clips the same heads (the host path all-reduces them the same way).
  void max_logits_over_ranks() {
    size_t n = 0;
    float* running = optimizer_.running_max_logits(n);
    if (!nccl_ || n == 0) return;
    CUDA_CHECK(cudaStreamSynchronize(model_.stream()));  // the last forward's maxima are in
    nccl_->all_reduce_max(running, n, "max attention logits");
  }

  // Sum of squares of the summed gradient over all ranks: this rank's
  // norm ranges in order, then the ranks' sums in rank order (identical on
  // every rank, the same bits on every run).
  double sharded_sum_squares() {
    cudaStream_t s = model_.stream();
    const float* grads = model_.device_grads();
    for (size_t k = 0; k < norm_ranges_.size(); ++k)
      gpu::grad_sum_squares(rank_sums_ + k, grads + norm_ranges_[k].begin, norm_ranges_[k].size(), sum_sq_ + 1, s);
    if (!partials_.empty())
      CUDA_CHECK(cudaMemcpyAsync(partials_.data(), rank_sums_, sizeof(double) * partials_.size(),
                                 cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    double mine = 0;
    for (double p : partials_) mine += p;
    const int rank = comm_.rank(), world = comm_.world();
    double* slots = rank_sums_ + norm_ranges_.size();
    rank_sums_host_[rank] = mine;
    CUDA_CHECK(cudaMemcpyAsync(slots + rank, &rank_sums_host_[rank], sizeof(double), cudaMemcpyHostToDevice,
                               nccl_->stream()));
    nccl_->all_gather(slots + rank, slots, 1, "gradient norm");
    CUDA_CHECK(cudaMemcpyAsync(rank_sums_host_.data(), slots, sizeof(double) * world, cudaMemcpyDeviceToHost,
                               nccl_->stream()));
    CUDA_CHECK(cudaStreamSynchronize(nccl_->stream()));
    double total = 0;
    for (double x : rank_sums_host_) total += x;
    return total;
  }

  cudaStream_t comm_stream_ = nullptr;   // several ranks: the gradient reductions
  cudaEvent_t grads_ready_ = nullptr;    // recorded on the model's stream before each collective that reads its work
  std::unique_ptr<NcclComm> nccl_;
  GradBuckets buckets_;
  bool overlapping_ = false;             // blocks reduced during this step's last backward
  // sharded state
  std::vector<OwnedRange> ranges_;                     // the whole buffer by owner
  std::vector<std::vector<OwnedRange>> layer_ranges_;  // per block bucket
  std::vector<OwnedRange> rest_ranges_;                // the buckets after the backward
  std::vector<OwnedRange> used_ranges_;                // what this rank clips (its own and replicated)
  std::vector<OwnedRange> norm_ranges_;                // what this rank adds to the norm
  double* rank_sums_ = nullptr;                        // device: per norm range, then per rank
  std::vector<double> partials_, rank_sums_host_;
  double sum_sq_host_ = 0;
#endif
};

class CudaModel final : public ModelBackend {
 public:
  CudaModel(const ModelConfig& cfg, int max_batch, int max_seq_len) : index_(select()), model_(cfg, max_batch, max_seq_len) {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, index_));
    name_ = prop.name;
    params_.assign(model_.table().total(), 0.0f);  // grads_ stays empty until grads_to_host()
  }
  std::string device() const override { return str("cuda:", index_, " (", name_, ")"); }
  const ParamTable& table() const override { return model_.table(); }
  std::vector<float>& params() override { return params_; }
  std::vector<float>& grads() override { return grads_; }
  void zero_grad() override { model_.zero_grad(); }
  double forward(const int32_t* tokens, const int32_t* targets, int B, int Tn, const int32_t* doc_ids) override {
    return model_.forward(tokens, targets, B, Tn, doc_ids);
  }
  std::vector<float> token_losses() const override { return model_.token_losses(); }
  void backward(float loss_scale) override { model_.backward(loss_scale); }
  std::vector<float> max_attention_logits() const override { return model_.max_attention_logits(); }
  void set_layer_grads_hook(std::function<void(int)> hook) override { model_.set_layer_grads_hook(std::move(hook)); }
  void set_attention(const AttentionSettings& settings) override { model_.set_attention(settings); }
  void grads_to_host() override { grads_ = model_.grads(); }
  void params_to_device() override { model_.set_params(params_); }
  void params_to_host() override { params_ = model_.params(); }
  std::unique_ptr<DeviceStep> make_device_step(const OptimConfig& optim, const ScheduleConfig& schedule,
                                               int total_steps, const std::string& source, Comm& comm,
                                               const DistConfig& dist) override {
#if !MUONGPT_HAVE_NCCL
    if (comm.world() > 1) return nullptr;  // host all-reduce and the host optimizer
#endif
    std::string why;
    if (!DeviceOptimizer::supports(optim, dist, comm.world(), why)) {  // the host optimizer runs these
      if (comm.is_root()) std::printf("note: optimizer on the host: the GPU optimizer does not run %s\n", why.c_str());
      return nullptr;
    }
    return std::make_unique<CudaDeviceStep>(model_, optim, schedule, total_steps, source, comm, dist);
  }

 private:
  static int select() {
    const int index = local_gpu_index();
    CUDA_CHECK(cudaSetDevice(index));
    return index;
  }
  int index_;
  std::string name_;
  GptCuda model_;
  std::vector<float> params_, grads_;
};

}  // namespace

std::unique_ptr<ModelBackend> make_cuda_model_backend(const ModelConfig& cfg, int max_batch, int max_seq_len) {
  return std::make_unique<CudaModel>(cfg, max_batch, max_seq_len);
}

}  // namespace muongpt
