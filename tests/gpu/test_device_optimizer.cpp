// The optimizer on the GPU (DeviceOptimizer) against the CPU optimizer
// (Optimizer<float>, the specification) on the same parameters and the same
// random gradients, step by step (after every one of 5 consecutive steps),
// for the variants of docs/muon.md.
//
// Tolerances:
//   - AdamW parameters: fp32 on both sides, only FMA contraction differs:
//     ||gpu - cpu||_F <= 1e-4 ||cpu - start||_F per parameter.
//   - Muon parameters: the update direction goes through bf16 Newton-Schulz
//     (X, A, B stored in bf16, 1-1.5e-2 relative error per orthogonalisation,
//     tests/gpu/test_newton_schulz.cpp), so the change of a matrix is compared
//     relative to its size: ||gpu - cpu||_F <= 5e-2 ||cpu - start||_F. The
//     gradients do not depend on the parameters, so the errors do not compound.
//   - State: Muon momentum and Adam moments see no bf16 (1e-5 relative);
//     NorMuon's second moment is the mean square of the bf16 O (3e-2).
//   - The bf16 weight copy is the fp32 master rounded (same bits).
#include <algorithm>
#include <cmath>
#include <map>

#include "backend/cuda/device_optimizer.h"
#include "config/config_io.h"
#include "gpu_test_util.h"
#include "kernels/cuda/matmul.cuh"
#include "model/params.h"
#include "optim/optimizer.h"
#include "unit/model_fixtures.h"

using namespace muongpt;
using namespace muongpt::gpu_test;
using muongpt::test::muon_and_rest;
using muongpt::test::muon_group;

namespace {

double frobenius_diff(const std::vector<float>& a, const std::vector<float>& b, size_t off, size_t n) {
  double s = 0;
  for (size_t i = off; i < off + n; ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return std::sqrt(s);
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { CUDA_CHECK(cudaStreamCreate(&s)); }
  ~Stream() { cudaStreamDestroy(s); }
};

// Per-parameter comparison of the GPU's parameters with the CPU's.
void require_params_follow(const ParamTable& table, const Optimizer<float>& cpu_opt, const std::vector<float>& start,
                           const std::vector<float>& cpu_params, const std::vector<float>& gpu_params) {
  require_finite(gpu_params, "parameters");
  for (size_t pi = 0; pi < table.params().size(); ++pi) {
    const ParamSpec& spec = table.params()[pi];
    INFO("parameter " << spec.name);
    const double change = frobenius_diff(cpu_params, start, spec.offset, spec.numel);
    const double err = frobenius_diff(gpu_params, cpu_params, spec.offset, spec.numel);
    const bool muon = cpu_opt.config().groups[cpu_opt.groups().group_of_param[pi]].type == "muon";
    INFO("change " << change << ", error " << err);
    REQUIRE(err <= (muon ? 5e-2 : 1e-4) * change + 1e-7);
  }
}

// GPU state vs the CPU's gather_state (names, sizes, values).
void require_state_follows(Optimizer<float>& cpu_opt, const DeviceOptimizer& gpu_opt) {
  REQUIRE(gpu_opt.state_names() == cpu_opt.state_names());
  std::map<std::string, std::vector<float>> cpu_state;
  cpu_opt.gather_state([&](const std::string& name, const std::vector<float>& v) { cpu_state[name] = v; });
  for (const std::string& name : gpu_opt.state_names()) {
    INFO("state " << name);
    const std::vector<float> s = gpu_opt.get_state(name);
    const std::vector<float>& c = cpu_state.at(name);
    REQUIRE(s.size() == c.size());
    REQUIRE(s.size() == cpu_opt.state_numel(name));
    const bool normuon = name.size() > 10 && name.compare(name.size() - 10, 10, ".normuon_v") == 0;
    const float tol = normuon ? 3e-2f : 1e-5f;
    for (size_t i = 0; i < s.size(); ++i) REQUIRE(std::abs(s[i] - c[i]) <= tol * (1e-6f + std::abs(c[i])) + 1e-7f);
  }
}

struct Setup {
  ModelConfig model = test::optimizer_test_model();
  ScheduleConfig sched;
  int total_steps = 10;
  Setup() { sched.warmup_steps = 1; }
};

void compare(const OptimConfig& oc, const std::string& label, const Setup& setup = {}, int steps = 5) {
  INFO("variant: " << label);
  const ParamTable table(setup.model);
  const int n_head = setup.model.n_head;
  Optimizer<float> cpu_opt(table, oc, setup.sched, setup.total_steps, "test", {}, nullptr, n_head);
  gpu::Matmul mm;
  Stream stream;
  DeviceOptimizer gpu_opt(table, oc, setup.sched, setup.total_steps, "test", n_head, mm, stream.s);
  REQUIRE(gpu_opt.ns_flops_per_step() >= 0);
  const size_t n = table.total();
  const std::vector<float> start = test::random_vector<float>(n, 3, -0.5f, 0.5f);
  std::vector<float> cpu_params = start;
  DeviceArray<float> params(start), grads(n);
  DeviceArray<uint16_t> params_bf16(n);
  for (int step = 0; step < steps; ++step) {
    INFO("after step " << step + 1 << " of " << steps);
    const std::vector<float> g = test::random_vector<float>(n, 100 + step, -1.0f, 1.0f);
    cpu_opt.step(cpu_params.data(), g.data(), step);
    grads.upload(g);
    gpu_opt.step(params.get(), params_bf16.get(), grads.get(), step);
    const std::vector<float> gpu_params = params.download();
    require_params_follow(table, cpu_opt, start, cpu_params, gpu_params);
    if (step == 0 || step + 1 == steps) {
      const std::vector<uint16_t> bits = params_bf16.download();
      for (size_t i = 0; i < n; i += 7) REQUIRE(bits[i] == bf16_bits(gpu_params[i]));
      require_state_follows(cpu_opt, gpu_opt);
    }
  }
}

}  // namespace

TEST_CASE("gpu optimizer: the tiny config's groups and schedule follow the CPU", "[gpu][optimizer]") {
  const Config cfg = load_config(test::source_path("configs/tiny.json"), {"model.vocab_size=500",
                                                                         "model.padded_vocab_size=512"});
  Setup s;
  s.model = cfg.model;
  s.sched = cfg.schedule;
  s.total_steps = 8;  // the wsd cooldown starts within the 5 steps
  compare(cfg.optim, "configs/tiny.json", s);
  // one step alone, too (the first step's bias corrections and momentum warmup)
  compare(cfg.optim, "configs/tiny.json, one step", s, 1);
}

TEST_CASE("gpu optimizer: momentum forms sum and ema, with and without Nesterov", "[gpu][optimizer]") {
  OptimGroupConfig g = muon_group();
  compare(muon_and_rest(g), "ema momentum, nesterov, original scale");
  g.nesterov = false;
  compare(muon_and_rest(g), "ema momentum, no nesterov");
  g.momentum_form = "sum";
  compare(muon_and_rest(g), "sum momentum, no nesterov");
  g.nesterov = true;
  compare(muon_and_rest(g), "sum momentum, nesterov");
}

TEST_CASE("gpu optimizer: update scales", "[gpu][optimizer]") {
  OptimGroupConfig g = muon_group();
  for (const char* scale : {"original", "match_rms_adamw", "none", "sqrt_max_dim"}) {
    g.update_scale = scale;
    compare(muon_and_rest(g), std::string("update_scale ") + scale);
  }
}

TEST_CASE("gpu optimizer: weight decay, its lr_squared schedule, cautious decay", "[gpu][optimizer]") {
  OptimGroupConfig g = muon_group();
  g.weight_decay = 0.5;
  compare(muon_and_rest(g), "weight decay");
  g.cautious_weight_decay = true;
  compare(muon_and_rest(g), "cautious weight decay");
  g.weight_decay_schedule = "lr_squared";
  g.weight_decay = 5.0;
  compare(muon_and_rest(g), "cautious weight decay, lr_squared schedule");
}

TEST_CASE("gpu optimizer: NorMuon on every axis", "[gpu][optimizer]") {
  OptimGroupConfig g = muon_group();
  g.normuon.enabled = true;
  for (const char* axis : {"auto", "rows", "cols"}) {
    g.normuon.axis = axis;
    g.update_scale = "match_rms_adamw";
    compare(muon_and_rest(g), std::string("NorMuon axis ") + axis);
  }
  g.normuon.axis = "auto";
  g.per_head = "qkv";
  compare(muon_and_rest(g), "NorMuon with per-head blocks");
}

TEST_CASE("gpu optimizer: per-head blocks, momentum warmup, Polar Express", "[gpu][optimizer]") {
  OptimGroupConfig g = muon_group();
  g.per_head = "qk";
  compare(muon_and_rest(g), "per-head q/k blocks (fused qkv)");
  g.per_head = "qkv";
  g.heads_per_block = 2;
  compare(muon_and_rest(g), "per-head q/k/v blocks of 2 heads (fused qkv)");
  Setup separate;
  separate.model.qkv = "separate";
  g.heads_per_block = 1;
  compare(muon_and_rest(g), "per-head q/k/v blocks (separate q, k, v)", separate);
  g = muon_group();
  g.momentum_warmup_start = 0.5;
  g.momentum_warmup_steps = 3;
  compare(muon_and_rest(g), "momentum warmup");
  g.ns.coefficients = "polar_express";
  g.ns.norm_scale = 1.02;
  g.ns.norm_eps = 1e-6;
  compare(muon_and_rest(g), "momentum warmup, Polar Express");
}

TEST_CASE("gpu optimizer: AdamW only", "[gpu][optimizer]") {
  OptimConfig oc = test::adamw_only(0.02);
  oc.groups[0].betas = {0.8, 0.95};
  oc.groups[0].eps = 1e-10;
  oc.groups[0].weight_decay = 0.1;
  compare(oc, "one AdamW group");
  // several AdamW groups interleaved in the table (no merged stretches across groups)
  const OptimGroupConfig all = oc.groups[0];
  OptimGroupConfig norms = all;
  norms.name = "attn";
  norms.params = {"blocks.*.attn.*"};
  norms.lr = 0.003;
  oc.groups = {norms, all};
  compare(oc, "two interleaved AdamW groups");
}

TEST_CASE("gpu optimizer: AdamW every k-th step on summed gradients, Muon momentum cooldown", "[gpu][optimizer]") {
  // record #39: AdamW update_every 2 and a momentum cooldown within the 5 compared steps (of 6);
  // the state after the last step holds a pending gradient sum (adam_grad_sum)
  OptimGroupConfig g = muon_group();
  g.momentum_cooldown_steps = 4;
  g.momentum_cooldown_start = 0.95;
  g.momentum_cooldown_end = 0.85;
  OptimConfig oc = muon_and_rest(g);
  oc.groups[1].update_every = 2;
  oc.groups[1].betas = {0.7, 0.95};
  Setup s;
  s.total_steps = 6;
  compare(oc, "AdamW update_every 2, momentum cooldown", s);
  oc.groups[1].update_every = 3;
  compare(oc, "AdamW update_every 3", s);
}

TEST_CASE("gpu optimizer: state round trip and resume from the CPU's state", "[gpu][optimizer]") {
  OptimGroupConfig g = muon_group();
  g.normuon.enabled = true;
  const OptimConfig oc = muon_and_rest(g);
  const ModelConfig mc = test::optimizer_test_model();
  const ParamTable table(mc);
  ScheduleConfig sched;
  Optimizer<float> cpu_opt(table, oc, sched, 10, "test", {}, nullptr, mc.n_head);
  gpu::Matmul mm;
  Stream stream;
  DeviceOptimizer gpu_opt(table, oc, sched, 10, "test", mc.n_head, mm, stream.s);
  const size_t n = table.total();
  const std::vector<float> start = test::random_vector<float>(n, 5, -0.5f, 0.5f);
  std::vector<float> cpu_params = start;
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> grad = test::random_vector<float>(n, 200 + step);
    cpu_opt.step(cpu_params.data(), grad.data(), step);
  }
  // load the CPU's state (the checkpoint layout) into the GPU optimizer
  std::map<std::string, std::vector<float>> cpu_state;
  cpu_opt.gather_state([&](const std::string& name, const std::vector<float>& v) { cpu_state[name] = v; });
  REQUIRE(gpu_opt.state_names() == cpu_opt.state_names());
  for (const std::string& name : gpu_opt.state_names()) {
    INFO("state " << name);
    gpu_opt.set_state(name, cpu_state.at(name));
    require_same_bits(gpu_opt.get_state(name), cpu_state.at(name), "state round trip");
  }
  test::require_error([&] { gpu_opt.set_state("blocks.0.attn.qkv.weight.momentum", {1.0f}); }, {"values"});
  test::require_error([&] { (void)gpu_opt.get_state("tok_embed.momentum"); }, {"no state"});
  // both continue from the same point: step 3 follows
  const std::vector<float> resumed = cpu_params;
  DeviceArray<float> params(cpu_params), grads(n);
  DeviceArray<uint16_t> params_bf16(n);
  const std::vector<float> grad = test::random_vector<float>(n, 203);
  cpu_opt.step(cpu_params.data(), grad.data(), 3);
  grads.upload(grad);
  gpu_opt.step(params.get(), params_bf16.get(), grads.get(), 3);
  require_params_follow(table, cpu_opt, resumed, cpu_params, params.download());
  require_state_follows(cpu_opt, gpu_opt);
}

TEST_CASE("gpu optimizer: QK-clip rescales the heads whose logits exceeded tau, like the CPU", "[gpu][optimizer]") {
  for (const char* qkv : {"fused", "separate"})
    for (bool bias : {false, true}) {
      INFO("qkv " << qkv << ", bias " << bias);
      ModelConfig mc = test::optimizer_test_model();
      mc.qkv = qkv;
      mc.bias = bias;
      const ParamTable table(mc);
      // AdamW only, so that every difference would be the clip's
      OptimConfig oc = test::adamw_only(1e-3);
      oc.qk_clip.enabled = true;
      oc.qk_clip.tau = 10.0;
      oc.qk_clip.alpha = 0.3;
      ScheduleConfig sched;
      Optimizer<float> cpu_opt(table, oc, sched, 10, "test", {}, nullptr, mc.n_head);
      gpu::Matmul mm;
      Stream stream;
      DeviceOptimizer gpu_opt(table, oc, sched, 10, "test", mc.n_head, mm, stream.s);
      const size_t n = table.total();
      const size_t heads = static_cast<size_t>(mc.n_layer) * mc.n_head;
      const std::vector<float> start = test::random_vector<float>(n, 9, -0.5f, 0.5f);
      std::vector<float> cpu_params = start;
      DeviceArray<float> params(start), grads(n), logits(heads);
      DeviceArray<uint16_t> params_bf16(n);
      for (int step = 0; step < 3; ++step) {
        INFO("step " << step);
        // two micro-batches; step 0: some heads above tau (max of the two), step 1: none, step 2: nothing observed
        if (step < 2)
          for (int micro = 0; micro < 2; ++micro) {
            std::vector<float> m = test::random_vector<float>(heads, 50 + 2 * step + micro, 0.0f, 8.0f);
            if (step == 0)
              for (size_t i = micro; i < heads; i += 3) m[i] = 12.0f + 20.0f * static_cast<float>(i) / heads;
            cpu_opt.observe_attention_logits(m, mc.n_head);
            logits.upload(m);
            gpu_opt.observe_attention_logits(logits.get());
          }
        const std::vector<float> grad = test::random_vector<float>(n, 300 + step);
        cpu_opt.step(cpu_params.data(), grad.data(), step);
        grads.upload(grad);
        gpu_opt.step(params.get(), params_bf16.get(), grads.get(), step);
        if (step == 0) REQUIRE(cpu_opt.last_clipped_heads() > 0);
        else REQUIRE(cpu_opt.last_clipped_heads() == 0);
        const std::vector<float> got = params.download();
        require_finite(got, "parameters");
        // per element: the clip is one float multiply on both sides, AdamW the same float ops
        for (size_t i = 0; i < n; ++i) {
          INFO("element " << i);
          REQUIRE(std::abs(got[i] - cpu_params[i]) <= 1e-6f * (1.0f + std::abs(cpu_params[i])));
        }
        const std::vector<uint16_t> bits = params_bf16.download();
        for (size_t i = 0; i < n; ++i) REQUIRE(bits[i] == bf16_bits(got[i]));
      }
    }
}

TEST_CASE("gpu optimizer: what it cannot run is named", "[gpu][optimizer]") {
  OptimConfig oc = muon_and_rest(muon_group());
  std::string why;
  REQUIRE(DeviceOptimizer::supports(oc, why));
  oc.groups[0].normuon.enabled = true;
  oc.qk_clip.enabled = true;
  REQUIRE(DeviceOptimizer::supports(oc, why));
  oc.diagnostics_every = 5;
  REQUIRE_FALSE(DeviceOptimizer::supports(oc, why));
  REQUIRE(why.find("diagnostics") != std::string::npos);
  gpu::Matmul mm;
  const ParamTable table(test::optimizer_test_model());
  test::require_error([&] { (void)DeviceOptimizer(table, oc, {}, 10, "cfg.json", 4, mm, nullptr); },
                      {"cfg.json", "diagnostics"});
}
