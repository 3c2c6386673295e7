// The whole GPU model against the CPU reference model (Gpt<float>) on the
// same bf16-exact parameters and the same tokens: loss, logits, per-head max
// attention logits and every parameter's gradient, for every feature on and
// for the other side of each switch, and for the later records' features
// (value embeddings with shared tables, lerp and weighted value mixes,
// attention-free blocks, half-truncated RoPE, block windows, the attention
// output gate, MLP-free blocks, windows counting the previous tokens, the
// smear and sigmoid-gated U-net skips). Tolerances
// (bf16 activations through every layer, fp32 accumulation): loss 2e-2
// relative; logits and gradients by relative Frobenius error per tensor,
// 5e-2, with a floor of 1e-3 of the typical gradient size for tensors whose
// gradient is near zero. Reruns give the same bits. Training: 10 steps on the
// GPU follow the CPU's losses.
#include <cmath>

#include "backend/cuda/gpt_cuda.h"
#include "config/config_io.h"
#include "dist/comm.h"
#include "train/grad_buckets.h"
#include "train/trainer.h"
#include "gpu_test_util.h"
#include "model/gpt.h"
#include "unit/model_fixtures.h"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

double frobenius(const float* a, const float* b, size_t n) {  // ||a - b|| (b null: ||a||)
  double s = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - (b ? b[i] : 0.0);
    s += d * d;
  }
  return std::sqrt(s);
}

ModelConfig gpu_sized(ModelConfig m) {
  m.d_model = 64;
  m.n_head = 4;
  m.mlp_hidden = 96;
  m.max_seq_len = 32;
  return m;
}

// The later records' features on top of every earlier one (head dim 16):
// six layers, value embeddings from two tables instead of the value residual,
// each table shared by two layers (0 and 5, 1 and 4), layer 2 with attention
// but no table and layer 3 without attention; half-truncated RoPE (the
// frequencies of the upper half of each head are 0); windows of whole 3-token
// blocks (T = 20 is not a multiple of 3) under a document mask. `mix`: the
// value mix, weighted (layer 2 keeps l0 v) or lerp (layer 2 has no lambda).
ModelConfig value_embedding_model(const std::string& mix) {
  ModelConfig m = gpu_sized(test::all_features_model());
  m.n_layer = 6;
  m.value_residual = false;
  m.value_embeds = 2;
  m.value_embed_layers = {0, 1, -1, -1, 1, 0};
  m.value_mix = mix;
  m.attention_free_layers = {3};
  m.rope_frequencies = "half_truncated";
  m.rope_base = 1024;
  m.window_block = 3;
  m.attn_window = {0, 6, 3, 0, 9, 6};
  m.document_mask = true;
  return m;
}

void compare_with_cpu(const ModelConfig& cfg, const std::string& label) {
  INFO("variant: " << label);
  const int B = 2, T = 20, N = B * T;
  Gpt<float> cpu_model(cfg, B, T);
  GptCuda gpu_model(cfg, B, T);
  // every parameter random (zero-initialised ones too) and exactly representable in bf16
  std::vector<float> params = random_bf16(cpu_model.params().size(), 11, -0.3f, 0.3f);
  for (const ParamSpec& spec : cpu_model.table().params())  // attention and smear gates: sigmoids spread wider
    if (spec.name.find(".attn.gate.") != std::string::npos || spec.name.find("smear.gate.") != std::string::npos)
      for (size_t i = 0; i < spec.numel; ++i) params[spec.offset + i] *= 4.0f;  // exact
  cpu_model.params() = params;
  gpu_model.set_params(params);

  std::vector<int32_t> tokens(N), targets(N), doc_ids(N);
  const auto r = random_ints(2 * N, 5, 0, cfg.vocab_size);
  for (int i = 0; i < N; ++i) tokens[i] = r[i], targets[i] = r[N + i];
  for (int b = 0; b < B; ++b)  // documents: boundaries at 0, 7 and 8 (a one-token document)
    for (int t = 0; t < T; ++t) doc_ids[b * T + t] = 1 + (t >= 7) + (t >= 8) + b * (t >= 15);

  cpu_model.zero_grad();
  gpu_model.zero_grad();
  const double cpu_loss = cpu_model.forward(tokens.data(), targets.data(), B, T, doc_ids.data());
  const double gpu_loss = gpu_model.forward(tokens.data(), targets.data(), B, T, doc_ids.data());
  REQUIRE(std::isfinite(gpu_loss));
  REQUIRE(std::abs(gpu_loss - cpu_loss) <= 2e-2 * std::abs(cpu_loss));

  const size_t nlog = static_cast<size_t>(N) * cfg.padded_vocab_size;
  const std::vector<float> gpu_logits = gpu_model.logits();
  require_finite(gpu_logits, "logits");
  REQUIRE(frobenius(gpu_logits.data(), cpu_model.logits(), nlog) <= 5e-2 * frobenius(cpu_model.logits(), nullptr, nlog));
  const std::vector<float> gpu_max = gpu_model.max_attention_logits();
  const std::vector<float>& cpu_max = cpu_model.max_attention_logits();
  REQUIRE(gpu_max.size() == cpu_max.size());
  for (size_t i = 0; i < cpu_max.size(); ++i) REQUIRE(std::abs(gpu_max[i] - cpu_max[i]) <= 2e-2 * (1 + std::abs(cpu_max[i])));

  cpu_model.backward(1.0f / N);
  gpu_model.backward(1.0f / N);
  const std::vector<float> gpu_grads = gpu_model.grads();
  const std::vector<float>& cpu_grads = cpu_model.grads();
  require_finite(gpu_grads, "gradients");
  const double typical = frobenius(cpu_grads.data(), nullptr, cpu_grads.size()) / std::sqrt(double(cpu_grads.size()));
  for (const ParamSpec& spec : cpu_model.table().params()) {
    INFO("gradient of " << spec.name);
    const double err = frobenius(gpu_grads.data() + spec.offset, cpu_grads.data() + spec.offset, spec.numel);
    const double ref = frobenius(cpu_grads.data() + spec.offset, nullptr, spec.numel);
    REQUIRE(err <= 5e-2 * ref + 1e-3 * typical * std::sqrt(double(spec.numel)));
  }

  // determinism: the same step again gives the same bits
  gpu_model.zero_grad();
  const double again = gpu_model.forward(tokens.data(), targets.data(), B, T, doc_ids.data());
  gpu_model.backward(1.0f / N);
  REQUIRE(again == gpu_loss);
  require_same_bits(gpu_model.grads(), gpu_grads, "gradients on a rerun");
}

}  // namespace

TEST_CASE("gpu model: loss, logits and gradients match the CPU model, every feature on", "[gpu][model]") {
  compare_with_cpu(gpu_sized(test::all_features_model()), "all features");
}

TEST_CASE("gpu model: the other side of each switch", "[gpu][model]") {
  ModelConfig m = test::other_switches(gpu_sized(test::all_features_model()));
  m.init.zero_head = false;
  compare_with_cpu(m, test::kOtherSwitches);
  m = gpu_sized(test::all_features_model());
  m.qk_norm_position = "after_rope";
  m.embed_norm = false;
  m.value_residual = false;
  m.x0_shortcut = false;
  m.unet_skips = false;
  m.bias = false;
  compare_with_cpu(m, "qk-norm after rope, plain residual stream, no biases");
  m = gpu_sized(test::all_features_model());
  m.document_mask = true;
  m.attn_window = {0, 5, 1, 12};
  compare_with_cpu(m, "document mask, windows 0/5/1/12");
}

TEST_CASE("gpu model: tensor-core attention (head dim 64) matches the CPU model", "[gpu][model]") {
  ModelConfig m = gpu_sized(test::all_features_model());
  m.d_model = 128;
  m.n_head = 2;  // head dim 64
  m.attention_kernel = "tensor_cores";
  compare_with_cpu(m, "tensor cores, all features");
  m.document_mask = true;
  m.attn_window = {0, 5, 1, 12};
  compare_with_cpu(m, "tensor cores, document mask, windows 0/5/1/12");
}

TEST_CASE("gpu model: value embeddings, attention-free blocks, half-truncated RoPE and block windows match the CPU",
          "[gpu][model][value_embeds]") {
  compare_with_cpu(value_embedding_model("weighted"), "value embeddings weighted, attention-free layer 3, blocks of 3");
  compare_with_cpu(value_embedding_model("lerp"), "value embeddings lerp, attention-free layer 3, blocks of 3");
  compare_with_cpu(gpu_sized(test::value_embed_model()), "the CPU tests' value-embedding model (blocks of 2)");
  ModelConfig m = value_embedding_model("weighted");
  m.attention_free_layers = {};
  m.value_embed_layers = {0, 1, -1, 1, 1, 0};  // table 1 in three layers
  m.window_block = 4;
  m.attn_window = {8};
  m.document_mask = false;
  compare_with_cpu(m, "value embeddings weighted, table 1 in three layers, every window 2 blocks of 4, no documents");
  m = value_embedding_model("lerp");
  m.attention_free_layers = {0, 3};  // the first block without attention
  m.value_embed_layers = {-1, 1, 0, -1, 1, 0};
  m.window_block = 0;  // token windows, standard RoPE
  m.rope_frequencies = "standard";
  m.attn_window = {0, 6, 3, 0, 9, 6};
  compare_with_cpu(m, "value embeddings lerp, attention-free layers 0 and 3, token windows");
}

TEST_CASE("gpu model: attention gates, MLP-free blocks and windows counting the previous tokens match the CPU",
          "[gpu][model][attn_gate]") {
  ModelConfig m = gpu_sized(test::all_features_model());
  m.attn_gate_dims = 12;
  m.mlp_free_layers = {0};  // the next block and a U-net skip read the attention residual's output
  m.window_counts = "previous";
  m.attn_window = {0, 5, 1, 12};
  m.document_mask = true;
  compare_with_cpu(m, "gate K=12, MLP-free layer 0, windows 0/5/1/12 counting previous tokens");
  m = value_embedding_model("weighted");
  m.attn_gate_dims = m.d_model;  // K = C
  m.mlp_free_layers = {1, 5};    // the last block writes x_final from its attention residual
  m.window_block = 0;            // window_counts "previous" needs token windows
  m.window_counts = "previous";
  compare_with_cpu(m, "value embeddings, attention-free layer 3, gate K=C, MLP-free layers 1 and 5");
  m = gpu_sized(test::all_features_model());
  m.d_model = 128;
  m.n_head = 2;  // head dim 64
  m.attention_kernel = "tensor_cores";
  m.attn_gate_dims = 12;
  m.mlp_free_layers = {0, 3};
  m.window_counts = "previous";
  m.attn_window = {0, 5, 1, 12};
  compare_with_cpu(m, "tensor cores, gate K=12, MLP-free layers 0 and 3, windows counting previous tokens");
}

TEST_CASE("gpu model: the smear and sigmoid-gated U-net skips match the CPU", "[gpu][model][smear]") {
  // embedding norm (the smear's output is its input), x0 shortcuts, U-net skips
  ModelConfig m = gpu_sized(test::all_features_model());
  m.smear_gate_dims = 12;
  m.unet_skip_gate = "sigmoid";
  compare_with_cpu(m, "smear K=12, sigmoid skip gates");
  m.unet_skip_gate = "none";
  compare_with_cpu(m, "smear K=12, plain skip weights");
  // no embedding norm (the smear's output is x0 itself), learned positions (in the smeared embedding), tied head
  m = test::other_switches(gpu_sized(test::all_features_model()));
  m.init.zero_head = false;
  m.embed_norm = false;
  m.smear_gate_dims = m.d_model;  // K = C
  m.unet_skip_gate = "sigmoid";
  compare_with_cpu(m, "smear K=C without embedding norm, sigmoid skip gates, " + std::string(test::kOtherSwitches));
  // the records' combination: value embeddings, attention gates, six layers (three skips), document mask
  m = value_embedding_model("weighted");
  m.attn_gate_dims = 12;
  m.smear_gate_dims = 12;
  m.unet_skip_gate = "sigmoid";
  compare_with_cpu(m, "smear K=12, sigmoid skip gates, value embeddings, attention gates, blocks of 3");
}

TEST_CASE("gpu model: a skipped block, fewer U-net skips and backout match the CPU", "[gpu][model]") {
  ModelConfig m = value_embedding_model("weighted");  // record #35: block 0 has neither sublayer
  m.value_embed_layers = {-1, 1, 0, -1, 1, 0};
  m.attention_free_layers = {0, 3};
  m.mlp_free_layers = {0};
  m.unet_skip_blocks = 2;  // blocks 3 and 4 take a skip, block 5 none
  m.unet_skip_gate = "sigmoid";
  compare_with_cpu(m, "block 0 skipped, skips into blocks 3 and 4, sigmoid gates");
  m.backout_layer = 2;  // record #40: the backed-out state is also block 3's skip
  compare_with_cpu(m, "block 0 skipped, skips into blocks 3 and 4, sigmoid gates, backout of block 2's output");
}

TEST_CASE("gpu model: the value residual with weighted lambdas matches the CPU", "[gpu][model][value_embeds]") {
  ModelConfig m = gpu_sized(test::all_features_model());
  m.value_mix = "weighted";  // layer 0 mixes its own V: v = (l0 + l1) v_raw
  compare_with_cpu(m, "value residual weighted");
  m.attention_free_layers = {2};
  m.window_block = 2;
  m.attn_window = {4, 2, 0, 6};
  m.document_mask = true;
  compare_with_cpu(m, "value residual weighted, attention-free layer 2, blocks of 2");
}

TEST_CASE("gpu model: tensor-core attention with value embeddings and block windows matches the CPU",
          "[gpu][model][value_embeds]") {
  ModelConfig m = value_embedding_model("weighted");
  m.d_model = 128;
  m.n_head = 2;  // head dim 64
  m.attention_kernel = "tensor_cores";
  compare_with_cpu(m, "tensor cores, value embeddings weighted, blocks of 3");
}

namespace {

void check_layer_grads_hook(const ModelConfig& cfg, const std::string& label) {
  INFO("variant: " << label);
  const int B = 2, T = 20, N = B * T;
  GptCuda model(cfg, B, T);
  model.set_params(random_bf16(model.table().total(), 3, -0.3f, 0.3f));
  const GradBuckets plan = plan_grad_buckets(model.table(), cfg.n_layer);
  REQUIRE(plan.layers.size() == static_cast<size_t>(cfg.n_layer));
  std::vector<int32_t> tokens(N), targets(N);
  const auto r = random_ints(2 * N, 9, 0, cfg.vocab_size);
  for (int i = 0; i < N; ++i) tokens[i] = r[i], targets[i] = r[N + i];

  // The hook copies the block's gradients on the model's stream (ordered after
  // the kernels enqueued so far): the copy must equal the final gradients.
  DeviceArray<float> snapshot(std::vector<float>(model.table().total(), std::nanf("")));
  std::vector<int> order;
  model.set_layer_grads_hook([&](int l) {
    order.push_back(l);
    const GradRange g = plan.layers[l];
    CUDA_CHECK(cudaMemcpyAsync(snapshot.get() + g.begin, model.device_grads() + g.begin, g.size() * sizeof(float),
                               cudaMemcpyDeviceToDevice, model.stream()));
  });
  model.zero_grad();
  model.forward(tokens.data(), targets.data(), B, T);
  model.backward(1.0f / N);
  model.set_layer_grads_hook(nullptr);
  gpu_test::sync();
  std::vector<int> expected(cfg.n_layer);
  for (int l = 0; l < cfg.n_layer; ++l) expected[l] = cfg.n_layer - 1 - l;
  REQUIRE(order == expected);
  const std::vector<float> grads = model.grads(), copy = snapshot.download();
  for (int l = 0; l < cfg.n_layer; ++l) {
    INFO("block " << l);
    const GradRange g = plan.layers[l];
    const std::vector<float> a(grads.begin() + g.begin, grads.begin() + g.end), b(copy.begin() + g.begin,
                                                                                 copy.begin() + g.end);
    require_same_bits(b, a, "snapshot vs final gradients");
  }
}

}  // namespace

TEST_CASE("gpu model: each block's gradients are final when the backward reports them", "[gpu][model]") {
  check_layer_grads_hook(gpu_sized(test::all_features_model()), "all features");
  ModelConfig m = value_embedding_model("weighted");
  m.document_mask = false;  // the hook test's forward has no document ids
  check_layer_grads_hook(m, "value embeddings, attention-free layer, block windows");
  m.attn_gate_dims = 12;
  m.mlp_free_layers = {0, 5};
  check_layer_grads_hook(m, "value embeddings, attention gates, MLP-free layers 0 and 5");
  m.smear_gate_dims = 12;
  m.unet_skip_gate = "sigmoid";
  check_layer_grads_hook(m, "value embeddings, attention gates, MLP-free layers 0 and 5, smear, sigmoid skips");
  m.backout_layer = 3;
  check_layer_grads_hook(m, "value embeddings, attention gates, MLP-free layers 0 and 5, smear, sigmoid skips, backout");
}

TEST_CASE("gpu training: 10 Muon + AdamW steps follow the CPU's losses", "[gpu][model][train]") {
  Config cfg = load_config("configs/tiny.json", {"model.n_layer=2", "batch.micro_batch=4", "batch.global_tokens=1024",
                                                 "data.val_tokens=0", "train.steps=10"});
  validate_config(cfg, "test", 1);
  auto comm = make_single_comm();
  Trainer cpu_trainer(cfg, "test", *comm, "cpu");
  Trainer gpu_trainer(cfg, "test", *comm, "cuda");
  REQUIRE(gpu_trainer.model().params() == cpu_trainer.model().params());  // same init
  for (int step = 0; step < 10; ++step) {
    INFO("step " << step + 1);
    const StepStats c = cpu_trainer.train_step();
    const StepStats g = gpu_trainer.train_step();
    REQUIRE(std::isfinite(g.train_loss));
    REQUIRE(std::abs(g.train_loss - c.train_loss) <= 2e-2 * std::abs(c.train_loss));
  }
  REQUIRE(gpu_trainer.optimizer_on_device());
  // and the GPU run is deterministic: a second one gives the same parameters bit for bit
  Trainer again(cfg, "test", *comm, "cuda");
  for (int step = 0; step < 10; ++step) again.train_step();
  again.model().params_to_host();
  gpu_trainer.model().params_to_host();
  require_same_bits(again.model().params(), gpu_trainer.model().params(), "parameters after 10 steps");
}

TEST_CASE("gpu training: the host-optimizer path follows the device-optimizer path", "[gpu][model][train]") {
  Config cfg = load_config("configs/tiny.json", {"model.n_layer=2", "batch.micro_batch=4", "batch.global_tokens=1024",
                                                 "data.val_tokens=0", "train.steps=6"});
  auto comm = make_single_comm();
  Trainer device_opt(cfg, "test", *comm, "cuda");
  cfg.optim.diagnostics_every = 3;  // diagnostics keep the optimizer on the host
  Trainer host_opt(cfg, "test", *comm, "cuda");
  REQUIRE(device_opt.optimizer_on_device());
  REQUIRE_FALSE(host_opt.optimizer_on_device());
  for (int step = 0; step < 6; ++step) {
    INFO("step " << step + 1);
    const double a = device_opt.train_step().train_loss, b = host_opt.train_step().train_loss;
    REQUIRE(std::abs(a - b) <= 1e-2 * std::abs(b));
  }
}

TEST_CASE("gpu training: resuming from a checkpoint gives the uninterrupted run's bits", "[gpu][model][train]") {
  Config cfg = load_config("configs/tiny.json", {"model.n_layer=2", "batch.micro_batch=4", "batch.global_tokens=1024",
                                                 "data.val_tokens=0", "train.steps=8"});
  auto comm = make_single_comm();
  const auto dir = test::scratch_dir("gpu_resume");
  Trainer straight(cfg, "test", *comm, "cuda");
  std::vector<double> losses;
  for (int step = 0; step < 8; ++step) losses.push_back(straight.train_step().train_loss);
  Trainer first(cfg, "test", *comm, "cuda");
  for (int step = 0; step < 4; ++step) first.train_step();
  const std::string ckpt = first.save_checkpoint(dir.string());
  Trainer resumed(cfg, "test", *comm, "cuda");
  resumed.load_checkpoint(ckpt);
  REQUIRE(resumed.step() == 4);
  for (int step = 4; step < 8; ++step) {
    INFO("step " << step + 1);
    REQUIRE(resumed.train_step().train_loss == losses[step]);
  }
}

namespace {

// Trains cfg on the CPU and the GPU side by side: the same windows and scale
// every step, losses within bf16 tolerance, and the evaluation after the run.
void check_schedule_follows_cpu(const Config& cfg) {
  validate_config(cfg, "test", 1);
  auto comm = make_single_comm();
  Trainer cpu_trainer(cfg, "test", *comm, "cpu");
  Trainer gpu_trainer(cfg, "test", *comm, "cuda");
  for (int step = 0; step < cfg.train.steps; ++step) {
    INFO("step " << step + 1);
    const StepStats c = cpu_trainer.train_step();
    const StepStats g = gpu_trainer.train_step();
    REQUIRE(g.attn_window == c.attn_window);
    REQUIRE(g.attn_scale == c.attn_scale);
    REQUIRE(std::isfinite(g.train_loss));
    REQUIRE(std::abs(g.train_loss - c.train_loss) <= 2e-2 * std::abs(c.train_loss));
  }
  const double c = cpu_trainer.evaluate(), g = gpu_trainer.evaluate();
  REQUIRE(std::abs(g - c) <= 2e-2 * std::abs(c));
}

}  // namespace

TEST_CASE("gpu training: a window warmup follows the CPU's losses and windows", "[gpu][model][train][window]") {
  // windows grow 8 -> 64 tokens over 6 steps on two of four layers, document masks on
  Config cfg = load_config("configs/tiny.json",
                           {"batch.micro_batch=4", "batch.global_tokens=1024", "data.val_tokens=1024",
                            "train.steps=6", "model.attn_window=[0,64,64,0]", "model.document_mask=true",
                            "schedule.window_warmup.start=8", "schedule.window_warmup.multiple=8"});
  check_schedule_follows_cpu(cfg);
}

TEST_CASE("gpu training: window stages with a scale and YaRN follow the CPU's losses", "[gpu][model][train][window]") {
  // three stages (8, 16, 32 tokens) over 6 steps on two of four layers, the scale and the RoPE
  // frequencies changing with them, and a longer window (64) for the final evaluation
  Config cfg = load_config("configs/tiny.json",
                           {"batch.micro_batch=4", "batch.global_tokens=1024", "data.val_tokens=1024",
                            "train.steps=6", "model.attn_window=[0,64,32,0]", "model.document_mask=true",
                            "model.window_counts=\"previous\"", "model.attn_scale=0.3",
                            "schedule.window_stages.windows=[8,16,32]", "schedule.window_stages.multiple=8",
                            "schedule.window_stages.final_eval=64", "schedule.window_stages.scale_log_factor=0.2",
                            "schedule.window_stages.yarn=true", "schedule.window_stages.yarn_beta=4"});
  check_schedule_follows_cpu(cfg);
}
