// The GPU model behind the Trainer's ModelBackend interface (see
// src/train/model_backend.h): GptCuda plus the host copies of parameters and
// gradients that the optimizer and checkpoints use.
#include <cstdlib>
#include <string>

#include "backend/cuda/gpt_cuda.h"
#include "kernels/cuda/common.cuh"
#include "train/model_backend.h"
#include "util/error.h"

namespace muongpt {

namespace {

// The GPU of this process: the node-local rank (set by mpirun or srun) modulo
// the number of visible GPUs, so that the ranks of a node spread over its GPUs.
int local_device() {
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  if (count == 0) fail("--device cuda: no CUDA device is visible");
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"})
    if (const char* v = std::getenv(var)) return std::atoi(v) % count;
  return 0;
}

class CudaModel final : public ModelBackend {
 public:
  CudaModel(const ModelConfig& cfg, int max_batch, int max_seq_len) : index_(select()), model_(cfg, max_batch, max_seq_len) {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, index_));
    name_ = prop.name;
    params_.assign(model_.table().total(), 0.0f);
    grads_.assign(model_.table().total(), 0.0f);
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
  void grads_to_host() override { grads_ = model_.grads(); }
  void params_to_device() override { model_.set_params(params_); }

 private:
  static int select() {
    const int index = local_device();
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
