// The GPU model behind the Trainer's ModelBackend interface (see
// src/train/model_backend.h): GptCuda plus the host copies of parameters and
// gradients that the optimizer and checkpoints use.
#include <cmath>
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
#include "train/model_backend.h"
#include "util/error.h"

namespace muongpt {

namespace {

// Gradient norm, clipping and the optimizer, all on the model's stream. With
// several ranks the gradients are summed over NCCL on a stream of their own:
// on the last micro-step each block's gradients are reduced as soon as the
// backward has enqueued them (train/grad_buckets.h), overlapping the rest of
// the backward; the embeddings, head and other global parameters follow after
// the backward, and allreduce_grads() waits for all of it.
class CudaDeviceStep final : public DeviceStep {
 public:
  CudaDeviceStep(GptCuda& model, const OptimConfig& optim, const ScheduleConfig& schedule, int total_steps,
                 const std::string& source, Comm& comm, double timeout_s, bool overlap)
      : model_(model),
        optimizer_(model.table(), optim, schedule, total_steps, source, model.config().n_head, model.matmul(),
                   model.stream()) {
    CUDA_CHECK(cudaMalloc(&sum_sq_, sizeof(double) * (1 + gpu::reduce_scratch_doubles())));
#if MUONGPT_HAVE_NCCL
    if (comm.world() > 1) {
      CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
      CUDA_CHECK(cudaEventCreateWithFlags(&grads_ready_, cudaEventDisableTiming));
      nccl_ = std::make_unique<NcclComm>(comm, comm_stream_, timeout_s);
      if (overlap) buckets_ = plan_grad_buckets(model.table(), model.config().n_layer);
    }
#else
    MUONGPT_CHECK(comm.world() == 1, "several ranks need NCCL for the device step");
#endif
  }

  void begin_last_backward() override {
#if MUONGPT_HAVE_NCCL
    if (!nccl_ || buckets_.layers.empty()) return;
    overlapping_ = true;
    model_.set_layer_grads_hook([this](int layer) { reduce_when_ready(buckets_.layers[layer], "block gradients"); });
#endif
  }

  void allreduce_grads() override {
#if MUONGPT_HAVE_NCCL
    if (!nccl_) return;
    model_.set_layer_grads_hook(nullptr);
    if (overlapping_) {
      for (const GradRange& r : buckets_.rest) reduce_when_ready(r, "gradients");
    } else {
      reduce_when_ready({0, model_.table().total()}, "gradients");
    }
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
#endif
    cudaFree(sum_sq_);
  }
  CudaDeviceStep(const CudaDeviceStep&) = delete;
  CudaDeviceStep& operator=(const CudaDeviceStep&) = delete;

  void observe_attention_logits() override { optimizer_.observe_attention_logits(model_.device_max_logits()); }

  double clip_and_step(double max_norm, int step) override {
    const size_t n = model_.table().total();
    cudaStream_t s = model_.stream();
    gpu::grad_sum_squares(sum_sq_, model_.device_grads(), n, sum_sq_ + 1, s);
    double sum_sq = 0;
    CUDA_CHECK(cudaMemcpyAsync(&sum_sq, sum_sq_, sizeof(double), cudaMemcpyDeviceToHost, s));
    gpu::clip_grad_scale(model_.device_grads(), n, sum_sq_, max_norm, s);
    optimizer_.step(model_.device_params(), model_.device_params_bf16(), model_.device_grads(), step);
    CUDA_CHECK(cudaStreamSynchronize(s));  // the norm is read; the step is done before the next forward anyway
    return std::sqrt(sum_sq);
  }

  std::vector<std::string> state_names() const override { return optimizer_.state_names(); }
  std::vector<float> get_state(const std::string& name) const override { return optimizer_.get_state(name); }
  void set_state(const std::string& name, const std::vector<float>& values) override {
    optimizer_.set_state(name, values);
  }

 private:
  GptCuda& model_;
  DeviceOptimizer optimizer_;
  double* sum_sq_ = nullptr;  // [0] = sum of squares, then the reduction scratch
#if MUONGPT_HAVE_NCCL
  // The sum over ranks of grads[r] behind the model stream's work so far.
  void reduce_when_ready(const GradRange& r, const char* what) {
    CUDA_CHECK(cudaEventRecord(grads_ready_, model_.stream()));
    nccl_->all_reduce_sum_after(model_.device_grads() + r.begin, r.size(), grads_ready_, what);
  }

  cudaStream_t comm_stream_ = nullptr;   // several ranks: the gradient reductions
  cudaEvent_t grads_ready_ = nullptr;    // recorded on the model's stream before each reduction
  std::unique_ptr<NcclComm> nccl_;
  GradBuckets buckets_;
  bool overlapping_ = false;             // blocks reduced during this step's last backward
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
  void backward(float loss_scale) override { model_.backward(loss_scale); }
  std::vector<float> max_attention_logits() const override { return model_.max_attention_logits(); }
  void set_layer_grads_hook(std::function<void(int)> hook) override { model_.set_layer_grads_hook(std::move(hook)); }
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
    if (!DeviceOptimizer::supports(optim, why)) return nullptr;  // e.g. diagnostics: the host optimizer runs them
    return std::make_unique<CudaDeviceStep>(model_, optim, schedule, total_steps, source, comm, dist.timeout_s,
                                            dist.overlap_grads);
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
