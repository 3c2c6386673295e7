// The optimizer allocates its state buffers when it first steps, loads or
// gathers state. Before that it holds only its layout (groups, state names and
// sizes), which is all the trainer uses when the optimizer runs on the GPU:
// the layout must match the full optimizer's, checkpoints included.
#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>

#include "config/config_io.h"
#include "kernels/cpu/optimizer_updates.h"
#include "model/estimate.h"
#include "model_fixtures.h"
#include "optim/optimizer.h"
#include "test_support.h"
#include "train/checkpoint.h"

using namespace muongpt;
using namespace muongpt::test;

namespace {

// NorMuon with per-head blocks (state "<param>.normuon_v" with its own size), AdamW for the rest.
OptimConfig normuon_config() {
  OptimGroupConfig g = muon_group();
  g.normuon.enabled = true;
  g.per_head = "qk";
  return muon_and_rest(g);
}

std::map<std::string, std::vector<float>> gathered_state(Optimizer<float>& opt) {
  std::map<std::string, std::vector<float>> out;
  opt.gather_state([&](const std::string& name, const std::vector<float>& full) { out[name] = full; });
  return out;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("an optimizer that has not stepped has the full layout and no state buffers", "[optim][state]") {
  const ModelConfig m = all_features_model();
  const ParamTable table(m);
  const OptimConfig oc = normuon_config();
  const ScheduleConfig sched;
  Optimizer<float> layout(table, oc, sched, 10, "test", {}, nullptr, m.n_head);
  Optimizer<float> full(table, oc, sched, 10, "test", {}, nullptr, m.n_head);
  auto w = random_vector<float>(table.total(), 1);
  full.step(w.data(), random_vector<float>(table.total(), 2).data(), 0);

  REQUIRE(layout.state_bytes() == 0);
  REQUIRE(layout.groups().group_of_param == full.groups().group_of_param);
  REQUIRE(layout.groups().params_of_group == full.groups().params_of_group);
  const std::vector<std::string> names = layout.state_names();
  REQUIRE(names == full.state_names());
  REQUIRE(std::count(names.begin(), names.end(), "blocks.0.attn.qkv.weight.normuon_v") == 1);
  size_t numel = 0;
  for (const std::string& name : names) {
    INFO("state " << name);
    REQUIRE(layout.state_numel(name) == full.state_numel(name));
    numel += full.state_numel(name);
  }
  REQUIRE(full.state_bytes() == numel * sizeof(float));
  REQUIRE(layout.state_bytes() == 0);  // asking for names and sizes allocates nothing
}

TEST_CASE("checkpoint state moves through the layout alone, byte for byte", "[optim][state][checkpoint]") {
  const ModelConfig m = all_features_model();
  const ParamTable table(m);
  const OptimConfig oc = normuon_config();
  const ScheduleConfig sched;
  Optimizer<float> full(table, oc, sched, 10, "test", {}, nullptr, m.n_head);
  auto w = random_vector<float>(table.total(), 1);
  for (int step = 0; step < 3; ++step) full.step(w.data(), random_vector<float>(table.total(), 10 + step).data(), step);
  const auto state = gathered_state(full);
  const auto dir = scratch_dir("optimizer_state");
  const nlohmann::json header = {{"step", 3}};
  auto save = [&](const std::string& path, const std::vector<std::pair<std::string, std::vector<float>>>& tensors) {
    std::vector<CheckpointTensor> t;
    for (const auto& [name, values] : tensors) t.push_back({name, values.data(), values.size()});
    save_checkpoint(path, header, t);
  };

  // the host path writes the gathered state in state_names() order
  const std::string host_path = (dir / "host.bin").string();
  std::vector<std::pair<std::string, std::vector<float>>> host_tensors;
  for (const std::string& name : full.state_names()) host_tensors.emplace_back(name, state.at(name));
  save(host_path, host_tensors);

  // the device path: names and sizes from a layout-only optimizer, as Trainer::load_checkpoint and
  // save_checkpoint use them with a DeviceStep
  Optimizer<float> layout(table, oc, sched, 10, "test", {}, nullptr, m.n_head);
  const Checkpoint host_ckpt(host_path);
  std::vector<std::pair<std::string, std::vector<float>>> device_tensors;
  for (const std::string& name : layout.state_names()) {
    std::vector<float> values(layout.state_numel(name));
    host_ckpt.read(name, values.data(), values.size());
    device_tensors.emplace_back(name, values);
  }
  REQUIRE(layout.state_bytes() == 0);
  const std::string device_path = (dir / "device.bin").string();
  save(device_path, device_tensors);
  REQUIRE(file_bytes(device_path) == file_bytes(host_path));

  // the host path resumes from what the device path wrote
  Optimizer<float> resumed(table, oc, sched, 10, "test", {}, nullptr, m.n_head);
  const Checkpoint device_ckpt(device_path);
  resumed.load_state([&](const std::string& name, size_t first, size_t count, float* out) {
    device_ckpt.read_range(name, resumed.state_numel(name), first, count, out);
  });
  REQUIRE(resumed.state_bytes() == full.state_bytes());
  REQUIRE(gathered_state(resumed) == state);
}

TEST_CASE("an AdamW group with update_every 2 updates every other step with the summed gradients",
          "[optim][adamw][state]") {
  // Record #39: Adam steps at odd steps on the sum of two steps' gradients, with t = 1, 2, ...;
  // Muon steps every step. Checked element by element against cpu::adamw_update.
  const ModelConfig m = all_features_model();
  const ParamTable table(m);
  OptimConfig every2 = muon_and_rest(muon_group());
  every2.groups[1].update_every = 2;
  every2.groups[1].betas = {0.7, 0.95};
  OptimConfig every1 = every2;
  every1.groups[1].update_every = 1;
  ScheduleConfig sched;
  sched.kind = "linear";  // a different lr at every step
  sched.final_lr_frac = 0.2;
  Optimizer<double> opt(table, every2, sched, 8, "test", {}, nullptr, m.n_head);
  Optimizer<double> muon_reference(table, every1, sched, 8, "test", {}, nullptr, m.n_head);
  const std::vector<std::string> names = opt.state_names(), reference_names = muon_reference.state_names();
  REQUIRE(std::count(names.begin(), names.end(), "tok_embed.adam_grad_sum") == 1);
  REQUIRE(std::count(reference_names.begin(), reference_names.end(), "tok_embed.adam_grad_sum") == 0);

  const size_t n = table.total();
  std::vector<double> w = random_vector<double>(n, 1), w_ref = w;
  std::vector<double> expect = w, am(n, 0.0), av(n, 0.0);  // hand-run Adam on the "rest" parameters
  const OptimGroupConfig& rest = every2.groups[1];
  std::vector<double> pending(n, 0.0);
  for (int step = 0; step < 4; ++step) {
    const std::vector<double> g = random_vector<double>(n, 10 + step);
    opt.step(w.data(), g.data(), step);
    muon_reference.step(w_ref.data(), g.data(), step);
    for (size_t i = 0; i < n; ++i) pending[i] += g[i];
    const bool adam_step = step % 2 == 1;
    const double lr = opt.group_lrs(step)[1];
    for (int pi : opt.groups().params_of_group[1]) {
      const ParamSpec& spec = table.params()[pi];
      if (adam_step)
        cpu::adamw_update(expect.data() + spec.offset, am.data() + spec.offset, av.data() + spec.offset,
                          pending.data() + spec.offset, spec.numel, lr, rest.betas[0], rest.betas[1], rest.eps,
                          rest.weight_decay, static_cast<long>((step + 1) / 2));
    }
    if (adam_step) std::fill(pending.begin(), pending.end(), 0.0);
    INFO("step " << step);
    for (int pi : opt.groups().params_of_group[1]) {  // AdamW: unchanged at even steps, the hand-run values at odd
      const ParamSpec& spec = table.params()[pi];
      for (size_t i = spec.offset; i < spec.offset + spec.numel; ++i) REQUIRE(w[i] == expect[i]);
    }
    for (int pi : opt.groups().params_of_group[0]) {  // Muon: every step, as with update_every 1
      const ParamSpec& spec = table.params()[pi];
      for (size_t i = spec.offset; i < spec.offset + spec.numel; ++i) REQUIRE(w[i] == w_ref[i]);
    }
  }
  // the Adam parameters moved twice
  const ParamSpec& embed = *table.find("tok_embed");
  REQUIRE(w[embed.offset] != random_vector<double>(n, 1)[embed.offset]);
}

TEST_CASE("the summed gradients of a pending AdamW update are checkpoint state", "[optim][adamw][state][checkpoint]") {
  const ModelConfig m = all_features_model();
  const ParamTable table(m);
  OptimConfig oc = muon_and_rest(muon_group());
  oc.groups[1].update_every = 3;
  const ScheduleConfig sched;
  const size_t n = table.total();
  Optimizer<float> a(table, oc, sched, 6, "test", {}, nullptr, m.n_head);
  std::vector<float> w = random_vector<float>(n, 3);
  const std::vector<float> g0 = random_vector<float>(n, 4), g1 = random_vector<float>(n, 5), g2 = random_vector<float>(n, 6);
  a.step(w.data(), g0.data(), 0);
  a.step(w.data(), g1.data(), 1);  // two of three gradients pending
  const auto saved = gathered_state(a);
  const ParamSpec& embed = *table.find("tok_embed");
  const std::vector<float>& sum = saved.at("tok_embed.adam_grad_sum");
  REQUIRE(sum.size() == embed.numel);
  for (size_t i = 0; i < embed.numel; ++i) REQUIRE(sum[i] == g0[embed.offset + i] + g1[embed.offset + i]);

  Optimizer<float> b(table, oc, sched, 6, "test", {}, nullptr, m.n_head);
  b.load_state([&](const std::string& name, size_t first, size_t count, float* out) {
    const std::vector<float>& full = saved.at(name);
    std::copy(full.begin() + first, full.begin() + first + count, out);
  });
  std::vector<float> w_resumed = w;
  a.step(w.data(), g2.data(), 2);
  b.step(w_resumed.data(), g2.data(), 2);
  REQUIRE(w_resumed == w);  // the resumed optimizer applies the same three-step sum
}

TEST_CASE("update_every and the momentum cooldown are validated with the key named", "[optim][config]") {
  Config cfg = load_config(source_path("configs/tiny.json"));
  cfg.optim.groups[1].update_every = 0;
  require_error([&] { validate_config(cfg, "tiny.json", 1); }, {"tiny.json", "optim.groups[1].update_every", "0"});
  Config cd = load_config(source_path("configs/tiny.json"));
  cd.optim.groups[0].momentum_cooldown_steps = -1;
  require_error([&] { validate_config(cd, "tiny.json", 1); }, {"optim.groups[0].momentum_cooldown_steps", "-1"});
  cd.optim.groups[0].momentum_cooldown_steps = 50;
  cd.optim.groups[0].momentum_cooldown_end = 1.0;
  require_error([&] { validate_config(cd, "tiny.json", 1); }, {"optim.groups[0].momentum_cooldown_end", "[0, 1)"});
}

TEST_CASE("the optimizer-state estimate counts the summed gradients of update_every", "[optim][state][estimate]") {
  for (const int every : {1, 2}) {
    Config cfg = load_config(source_path("configs/tiny.json"));
    for (OptimGroupConfig& g : cfg.optim.groups)
      if (g.type == "adamw") g.update_every = every;
    const ParamTable table(cfg.model);
    Optimizer<float> opt(table, cfg.optim, cfg.schedule, cfg.train.steps, "tiny", {}, nullptr, cfg.model.n_head);
    std::vector<float> w = random_vector<float>(table.total(), 1);
    opt.step(w.data(), random_vector<float>(table.total(), 2).data(), 0);
    INFO("update_every " << every);
    REQUIRE(estimate_model(cfg).optimizer_bytes == static_cast<double>(opt.state_bytes()));
  }
}
