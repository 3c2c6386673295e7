// Config loading: types, unknown keys, overrides, validation messages, round trip.
#include <fstream>
#include <nlohmann/json.hpp>

#include "config/config_io.h"
#include "test_support.h"

using namespace muongpt;
using namespace muongpt::test;
using nlohmann::json;

namespace {
json tiny() {
  std::ifstream in(source_path("configs/tiny.json"));
  return json::parse(in);
}
}  // namespace

TEST_CASE("the default config loads and validates", "[config]") {
  const Config cfg = load_config(source_path("configs/tiny.json"));
  validate_config(cfg, "tiny.json", 1);
  REQUIRE(cfg.model.n_layer > 0);
  REQUIRE(cfg.data.train_pattern == "data/tiny/train_*.bin");
  REQUIRE(cfg.data.val_pattern == "data/tiny/val_*.bin");
  REQUIRE(cfg.train.steps > 0);
}

TEST_CASE("config round-trips through JSON", "[config]") {
  const Config a = config_from_json(tiny(), "tiny");
  const json j = config_to_json(a);
  const Config b = config_from_json(j, "round trip");
  REQUIRE(config_to_json(b) == j);
}

TEST_CASE("unknown keys are errors that name the file and suggest the near miss", "[config]") {
  json doc = tiny();
  doc["model"]["n_layers"] = 6;
  require_error([&] { config_from_json(doc, "configs/x.json"); },
                {"config configs/x.json", "unknown key model.n_layers", "did you mean model.n_layer"});
  doc = tiny();
  doc["optim"]["groups"][0]["betas"] = json::array({0.9, 0.95});  // an AdamW key on a Muon group
  require_error([&] { config_from_json(doc, "x.json"); }, {"unknown key optim.groups[0].betas"});
}

TEST_CASE("wrong types name the key and what was found", "[config]") {
  json doc = tiny();
  doc["model"]["d_model"] = "wide";
  require_error([&] { config_from_json(doc, "x.json"); }, {"x.json", "model.d_model", "expected an integer", "wide"});
  doc = tiny();
  doc["model"]["d_model"] = 12.5;
  require_error([&] { config_from_json(doc, "x.json"); }, {"model.d_model", "expected an integer"});
  doc = tiny();
  doc["model"]["qk_norm"] = 1;
  require_error([&] { config_from_json(doc, "x.json"); }, {"model.qk_norm", "true or false"});
  doc = tiny();
  doc["model"]["norm"] = "batchnorm";
  require_error([&] { config_from_json(doc, "x.json"); }, {"model.norm", "\"batchnorm\" is not one of", "rmsnorm"});
  doc = tiny();
  doc["batch"]["global_tokens"] = 8192.0;  // integral floats are accepted
  REQUIRE(config_from_json(doc, "x.json").batch.global_tokens == 8192);
}

TEST_CASE("impossible shapes and batches are rejected with the key", "[config]") {
  Config cfg = config_from_json(tiny(), "t.json");
  cfg.model.n_head = 5;
  require_error([&] { validate_config(cfg, "t.json", 1); }, {"t.json", "model.n_head", "does not divide model.d_model"});
  cfg = config_from_json(tiny(), "t.json");
  cfg.model.attention_kernel = "tensor_cores";  // the tiny model's head dim is not 64 or 128
  REQUIRE(cfg.model.head_dim() != 64);
  REQUIRE(cfg.model.head_dim() != 128);
  require_error([&] { validate_config(cfg, "t.json", 1); }, {"model.attention_kernel", "64 or 128", "cuda_cores"});
  cfg = config_from_json(tiny(), "t.json");
  cfg.batch.global_tokens = 1000;
  require_error([&] { validate_config(cfg, "t.json", 1); }, {"batch.global_tokens", "not divisible"});
  cfg = config_from_json(tiny(), "t.json");
  require_error([&] { validate_config(cfg, "t.json", 3); }, {"batch.global_tokens", "world_size"});
  cfg = config_from_json(tiny(), "t.json");
  cfg.batch.seq_len = 4096;
  require_error([&] { validate_config(cfg, "t.json", 1); }, {"batch.seq_len", "max_seq_len"});
  cfg = config_from_json(tiny(), "t.json");
  cfg.data.val_tokens = 1000;  // not a multiple of seq_len: the last val sequence is shorter
  validate_config(cfg, "t.json", 1);
  cfg.data.val_tokens = -1;
  require_error([&] { validate_config(cfg, "t.json", 1); }, {"data.val_tokens", ">= 0"});
  cfg = config_from_json(tiny(), "t.json");
  cfg.model.padded_vocab_size = 100;
  require_error([&] { validate_config(cfg, "t.json", 1); }, {"model.padded_vocab_size"});
  cfg = config_from_json(tiny(), "t.json");
  cfg.optim.groups[1].name = cfg.optim.groups[0].name;
  require_error([&] { validate_config(cfg, "t.json", 1); }, {"optim.groups[1].name", "duplicate"});
}

TEST_CASE("missing data files are named with their key", "[config]") {
  Config cfg = config_from_json(tiny(), "t.json");
  cfg.data.train_pattern = "/nonexistent/train_*.bin";
  require_error([&] { check_data_files(cfg, "t.json"); }, {"t.json", "data.train_pattern", "/nonexistent/train_*.bin"});
}

TEST_CASE("overrides (--set) reach any field, with values parsed as JSON", "[config]") {
  json doc = tiny();
  apply_override(doc, "model.n_layer=7");
  apply_override(doc, "model.norm=layernorm");
  apply_override(doc, "model.attn_scale=0.12");
  apply_override(doc, "optim.groups.1.lr=0.5");
  apply_override(doc, "data.train_pattern=/tmp/x_*.bin");
  doc.erase("dist");  // a section the file leaves out
  apply_override(doc, "dist.zero_stage=1");
  require_error([&] { apply_override(doc, "model.n_layer.deeper=1"); }, {"model.n_layer is not an object"});
  const Config cfg = config_from_json(doc, "x");
  REQUIRE(cfg.model.n_layer == 7);
  REQUIRE(cfg.model.norm == "layernorm");
  REQUIRE(*cfg.model.attn_scale == 0.12);
  REQUIRE(cfg.optim.groups[1].lr == 0.5);
  REQUIRE(cfg.data.train_pattern == "/tmp/x_*.bin");
  REQUIRE(cfg.dist.zero_stage == 1);
  require_error([&] { apply_override(doc, "model.n_layer"); }, {"expected key.path=value"});
  require_error([&] { apply_override(doc, "optim.groups.9.lr=1"); }, {"optim.groups.9", "index out of range"});
  apply_override(doc, "model.n_layerz=3");
  require_error([&] { config_from_json(doc, "x"); }, {"unknown key model.n_layerz"});
}

TEST_CASE("invalid JSON names the file", "[config]") {
  const auto dir = scratch_dir("config");
  const std::string path = (dir / "bad.json").string();
  std::ofstream(path) << "{\"model\": {\"n_layer\": 4,}";
  require_error([&] { load_config(path); }, {"config " + path, "invalid JSON"});
  require_error([&] { load_config((dir / "missing.json").string()); }, {"missing.json", "cannot open"});
}

TEST_CASE("the config reference lists every key", "[config]") {
  const std::string ref = config_reference_markdown();
  for (const char* key : {"`model.n_layer`", "`data.train_pattern`", "`train.steps`", "`train.seed`",
                          "`optim.groups[].betas`", "`optim.groups[].ns.coefficients`", "`schedule.cooldown_frac`"})
    REQUIRE(ref.find(key) != std::string::npos);
}
