// The optimizer allocates its state buffers when it first steps, loads or
// gathers state. Before that it holds only its layout (groups, state names and
// sizes), which is all the trainer uses when the optimizer runs on the GPU:
// the layout must match the full optimizer's, checkpoints included.
#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>

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
