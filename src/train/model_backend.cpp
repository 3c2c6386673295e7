#include "train/model_backend.h"

#include "model/gpt.h"
#include "util/error.h"

namespace muongpt {

namespace {

class CpuModel final : public ModelBackend {
 public:
  CpuModel(const ModelConfig& cfg, int max_batch, int max_seq_len) : model_(cfg, max_batch, max_seq_len) {}
  std::string device() const override { return "cpu"; }
  const ParamTable& table() const override { return model_.table(); }
  std::vector<float>& params() override { return model_.params(); }
  std::vector<float>& grads() override { return model_.grads(); }
  void zero_grad() override { model_.zero_grad(); }
  double forward(const int32_t* tokens, const int32_t* targets, int B, int Tn, const int32_t* doc_ids) override {
    return model_.forward(tokens, targets, B, Tn, doc_ids);
  }
  std::vector<float> token_losses() const override {
    return std::vector<float>(model_.losses(), model_.losses() + model_.tokens_in_batch());
  }
  void backward(float loss_scale) override { model_.backward(loss_scale); }
  std::vector<float> max_attention_logits() const override { return model_.max_attention_logits(); }
  void set_layer_grads_hook(std::function<void(int)> hook) override { model_.set_layer_grads_hook(std::move(hook)); }
  void set_attention(const AttentionSettings& settings) override { model_.set_attention(settings); }

 private:
  Gpt<float> model_;
};

}  // namespace

std::unique_ptr<ModelBackend> make_model_backend(const std::string& device, const ModelConfig& cfg, int max_batch,
                                                 int max_seq_len) {
  if (device == "cpu") return std::make_unique<CpuModel>(cfg, max_batch, max_seq_len);
  if (device == "cuda") {
#if MUONGPT_HAVE_CUDA
    return make_cuda_model_backend(cfg, max_batch, max_seq_len);
#else
    fail("--device cuda: this build has no CUDA backend (built without the CUDA toolkit)");
#endif
  }
  fail("unknown device \"", device, "\" (expected cpu or cuda)");
}

}  // namespace muongpt
