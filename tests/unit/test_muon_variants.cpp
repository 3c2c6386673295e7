// The Muon variants (docs/muon.md): update scale none, cautious weight decay
// and its lr_squared schedule, NorMuon, per-head orthogonalisation, QK-clip,
// diagnostics. Each against hand-computed values, the PyTorch reference
// (tests/fixtures/reference/muon_variants.json, scripts/reference/reference.py)
// and, for the sharded modes, the single-process optimizer (ranks simulated by
// threads).
#include <atomic>
#include <barrier>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <tuple>

#include "config/config_io.h"
#include "kernels/cpu/newton_schulz.h"
#include "kernels/cpu/optimizer_updates.h"
#include "linalg.h"
#include "model/gpt.h"
#include "model_fixtures.h"
#include "optim/optimizer.h"
#include "optim/qk_clip.h"
#include "test_support.h"

using namespace muongpt;
using namespace muongpt::test;
using nlohmann::json;

namespace {

json load_variants() {
  std::ifstream in(test_path("fixtures/reference/muon_variants.json"));
  REQUIRE(in.good());
  return json::parse(in);
}

ModelConfig small_model(const std::string& qkv, int n_head, int d_model, bool bias) {
  ModelConfig m;
  m.vocab_size = 16;
  m.padded_vocab_size = 16;
  m.n_layer = 1;
  m.n_head = n_head;
  m.d_model = d_model;
  m.mlp_hidden = 12;
  m.max_seq_len = 8;
  m.qkv = qkv;
  m.bias = bias;
  return m;
}

ScheduleConfig constant_schedule() {
  ScheduleConfig s;
  s.kind = "constant";
  return s;
}

template <class T>
void load_named(const ParamTable& table, std::vector<T>& params, const json& values) {
  for (const auto& [name, v] : values.items()) {
    const ParamSpec* spec = table.find(name);
    INFO("parameter " << name);
    REQUIRE(spec != nullptr);
    REQUIRE(v.size() == spec->numel);
    for (size_t i = 0; i < spec->numel; ++i) params[spec->offset + i] = static_cast<T>(v[i].template get<double>());
  }
}

template <class T>
std::vector<double> slice(const std::vector<T>& params, const ParamSpec& spec) {
  return std::vector<double>(params.begin() + spec.offset, params.begin() + spec.offset + spec.numel);
}

template <class T>
std::map<std::string, std::vector<float>> gathered_state(Optimizer<T>& opt) {
  std::map<std::string, std::vector<float>> out;
  opt.gather_state([&](const std::string& name, const std::vector<float>& full) { out[name] = full; });
  return out;
}

template <class T>
void check_fixture_case(const json& fx, const json& c, double rtol, double atol, double state_rtol) {
  const std::string name = c.at("name").get<std::string>();
  INFO("variant " << name);
  const Config cfg = config_from_json(c.at("config"), "fixture muon_variants " + name);
  const ParamTable table(cfg.model);
  const json& inputs = fx.at("inputs").at(c.at("inputs").get<std::string>());
  std::vector<T> w(table.total(), T(0));
  load_named(table, w, inputs.at("params"));
  const int steps = fx.at("steps").get<int>();
  Optimizer<T> opt(table, cfg.optim, cfg.schedule, steps, "fixture", {}, nullptr, cfg.model.n_head);
  for (int step = 0; step < steps; ++step) {
    std::vector<T> g(table.total(), T(0));
    load_named(table, g, inputs.at("grads")[step]);
    opt.step(w.data(), g.data(), step);
  }
  for (const auto& [pname, expect] : c.at("final_params").items())
    require_close(slice(w, *table.find(pname)), expect.template get<std::vector<double>>(), rtol, atol, name + " " + pname);
  const auto state = gathered_state(opt);
  for (const auto& [sname, expect] : c.at("final_state").items()) {
    INFO("state " << sname);
    REQUIRE(state.count(sname) == 1);
    require_close(state.at(sname), expect.template get<std::vector<double>>(), state_rtol, 1e-12, name + " " + sname);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Against the PyTorch reference
// ---------------------------------------------------------------------------

TEST_CASE("Muon variants: three steps equal the PyTorch reference", "[optim][muon_variants][reference]") {
  const json fx = load_variants();
  REQUIRE(fx.at("muon").size() >= 10);
  for (const json& c : fx.at("muon")) {
    // double: summation order and the fixture's 12 digits; the state is gathered as float
    check_fixture_case<double>(fx, c, 1e-9, 1e-11, 1e-6);
    check_fixture_case<float>(fx, c, 2e-4, 2e-5, 1e-4);  // fp32 Newton-Schulz
  }
}

TEST_CASE("QK-clip equals the PyTorch reference", "[optim][qk_clip][reference]") {
  const json fx = load_variants();
  for (const json& c : fx.at("qk_clip")) {
    const std::string name = c.at("name").get<std::string>();
    INFO("case " << name);
    json doc = {{"model", c.at("model")}};
    const Config cfg = config_from_json(doc, "fixture " + name);
    const ParamTable table(cfg.model);
    std::vector<double> w(table.total(), 0.0);
    load_named(table, w, c.at("params"));
    std::vector<double> logits;
    for (const auto& row : c.at("max_logits"))
      for (const auto& x : row) logits.push_back(x.get<double>());
    const int clipped = qk_clip(table, w.data(), logits.data(), cfg.model.n_layer, cfg.model.n_head,
                                c.at("tau").get<double>(), c.at("alpha").get<double>());
    REQUIRE(clipped == c.at("clipped_heads").get<int>());
    for (const auto& [pname, expect] : c.at("clipped_params").items())
      require_close(slice(w, *table.find(pname)), expect.get<std::vector<double>>(), 1e-11, 1e-13, name + " " + pname);
  }
}

// ---------------------------------------------------------------------------
// Hand-computed
// ---------------------------------------------------------------------------

TEST_CASE("update scale none leaves the orthogonalised update unscaled", "[optim][muon_variants]") {
  REQUIRE(muon_update_scale("none", 3072, 768) == 1.0);
  const ModelConfig m = small_model("fused", 2, 8, false);
  const ParamTable table(m);
  OptimGroupConfig g = muon_group(0.1);
  g.update_scale = "none";
  g.weight_decay = 0.5;
  g.momentum_form = "sum";
  Optimizer<double> opt(table, muon_and_rest(g, 0.0, 0.0), constant_schedule(), 10, "test");
  auto w = random_vector<double>(table.total(), 1), grad = random_vector<double>(table.total(), 2);
  const auto w0 = w;
  opt.step(w.data(), grad.data(), 0);
  const ParamSpec& fc = *table.find("blocks.0.mlp.fc.weight");  // 12 x 8: tall, "original" would scale sqrt(1.5)
  std::vector<double> u(fc.numel);
  for (size_t i = 0; i < fc.numel; ++i) u[i] = 1.9 * grad[fc.offset + i];
  cpu::newton_schulz(u.data(), 12, 8, g.ns.table(), 1.0, 1e-7);
  for (size_t i = 0; i < fc.numel; ++i)
    REQUIRE(w[fc.offset + i] == Approx(w0[fc.offset + i] * (1 - 0.1 * 0.5) - 0.1 * u[i]).epsilon(1e-12));
}

TEST_CASE("cautious weight decay skips elements whose update and weight differ in sign", "[optim][muon_variants]") {
  // update and weight: same sign at 0 and 3, opposite at 1 and 2, update 0 at 4 (counts as agreeing)
  std::vector<double> w = {1.0, -1.0, 2.0, -2.0, 0.5};
  const std::vector<double> u = {0.5, 0.5, -0.3, -0.3, 0.0};
  const double lr = 0.1, scale = 2.0, wd = 0.5;
  cpu::muon_apply(w.data(), u.data(), w.size(), lr, scale, wd, true);
  const double decay = 1 - lr * wd, step = lr * scale;
  REQUIRE(w[0] == Approx(1.0 * decay - step * 0.5).epsilon(1e-15));
  REQUIRE(w[1] == Approx(-1.0 - step * 0.5).epsilon(1e-15));  // not decayed
  REQUIRE(w[2] == Approx(2.0 + step * 0.3).epsilon(1e-15));   // not decayed
  REQUIRE(w[3] == Approx(-2.0 * decay + step * 0.3).epsilon(1e-15));
  REQUIRE(w[4] == Approx(0.5 * decay).epsilon(1e-15));

  SECTION("through the optimizer, with the lr_squared schedule") {
    const ModelConfig m = small_model("fused", 2, 8, false);
    const ParamTable table(m);
    OptimGroupConfig g = muon_group(0.1);
    g.weight_decay = 3.0;
    g.cautious_weight_decay = true;
    g.weight_decay_schedule = "lr_squared";
    ScheduleConfig sched;
    sched.kind = "linear";
    sched.final_lr_frac = 0.5;
    Optimizer<double> opt(table, muon_and_rest(g, 0.0, 0.0), sched, 10, "test");
    auto wv = random_vector<double>(table.total(), 3), grad = random_vector<double>(table.total(), 4);
    const auto w0 = wv;
    opt.step(wv.data(), grad.data(), 4);  // lr = 0.1 * (1 - 0.5 * 4/10) = 0.08
    const double lr4 = 0.1 * (1 - 0.5 * 0.4);
    const ParamSpec& fc = *table.find("blocks.0.mlp.fc.weight");
    const double s = std::sqrt(12.0 / 8.0);  // original scale of the tall 12 x 8 matrix
    std::vector<double> o(fc.numel);
    for (size_t i = 0; i < fc.numel; ++i) o[i] = 1.9 * grad[fc.offset + i];  // ema momentum 0.9 from zero, Nesterov
    for (auto& x : o) x *= 0.1;  // ema: buf = 0.1 g, u = lerp(g, buf, 0.9) = 0.19 g: NS is scale-free up to eps
    cpu::newton_schulz(o.data(), 12, 8, g.ns.table(), 1.0, 1e-7);
    int skipped = 0;
    for (size_t i = 0; i < fc.numel; ++i) {
      const double wi = w0[fc.offset + i];
      const bool agree = o[i] * wi >= 0;
      skipped += !agree;
      const double decay = agree ? (lr4 * s) * (3.0 * lr4) : 0.0;
      REQUIRE(wv[fc.offset + i] == Approx(wi - decay * wi - lr4 * s * o[i]).epsilon(1e-9));
    }
    REQUIRE(skipped > 10);  // both kinds of element occur
    REQUIRE(skipped < 86);
  }
}

TEST_CASE("NorMuon preserves the Frobenius norm and equalises row (column) RMS", "[optim][muon_variants]") {
  for (auto [rows, cols, axis] : std::vector<std::tuple<int, int, std::string>>{
           {12, 8, "auto"}, {8, 12, "auto"}, {8, 12, "rows"}, {12, 8, "cols"}}) {
    NorMuonConfig nm;
    nm.axis = axis;
    const bool per_row = normuon_per_row(nm, rows, cols);
    REQUIRE(per_row == (axis == "rows" || (axis == "auto" && rows >= cols)));
    INFO(rows << "x" << cols << " axis " << axis << (per_row ? " (rows)" : " (cols)"));
    auto O = random_vector<double>(size_t(rows) * cols, rows * 31 + cols);
    cpu::newton_schulz(O.data(), rows, cols, NewtonSchulzConfig{}.table(), 1.0, 1e-7);
    const double fro = cpu::frobenius_norm(O.data(), O.size());
    std::vector<double> v(cpu::normuon_state_size(rows, cols, per_row), 0.0);
    auto mean_sq = [&](const std::vector<double>& X, int i) {  // of row (column) i
      double s = 0;
      const int n = per_row ? cols : rows;
      for (int k = 0; k < n; ++k) {
        const double x = per_row ? X[size_t(i) * cols + k] : X[size_t(k) * cols + i];
        s += x * x;
      }
      return s / n;
    };
    std::vector<double> first_means;
    for (size_t i = 0; i < v.size(); ++i) first_means.push_back(mean_sq(O, static_cast<int>(i)));
    const double beta2 = 0.9;
    cpu::normuon_normalize(O.data(), rows, cols, v.data(), per_row, beta2);
    REQUIRE(cpu::frobenius_norm(O.data(), O.size()) == Approx(fro).epsilon(1e-12));
    const double target = fro * fro / (double(rows) * cols);  // every row (column) at the mean square
    for (size_t i = 0; i < v.size(); ++i) {
      REQUIRE(v[i] == Approx((1 - beta2) * first_means[i]).epsilon(1e-12));  // lerp from 0
      REQUIRE(mean_sq(O, static_cast<int>(i)) == Approx(target).epsilon(1e-10));
    }
    // a second step with another matrix: the norm is still preserved
    auto O2 = random_vector<double>(size_t(rows) * cols, 99);
    const double fro2 = cpu::frobenius_norm(O2.data(), O2.size());
    cpu::normuon_normalize(O2.data(), rows, cols, v.data(), per_row, beta2);
    REQUIRE(cpu::frobenius_norm(O2.data(), O2.size()) == Approx(fro2).epsilon(1e-12));
  }
}

TEST_CASE("per-head orthogonalisation: every head block is orthogonal on its own", "[optim][muon_variants]") {
  for (const std::string qkv : {"fused", "separate"})
    for (int heads_per_block : {1, 2}) {
      INFO(qkv << " qkv, " << heads_per_block << " heads per block");
      const ModelConfig m = small_model(qkv, 4, 16, false);  // head_dim 4
      const ParamTable table(m);
      OptimGroupConfig g = muon_group(0.1);
      g.per_head = "qk";
      g.heads_per_block = heads_per_block;
      g.lr = 1.0;
      g.momentum = 0.0;
      g.nesterov = false;
      g.update_scale = "none";
      const int block_rows = 4 * heads_per_block;
      const std::string qname = qkv == "fused" ? "blocks.0.attn.qkv.weight" : "blocks.0.attn.q.weight";
      const auto blocks = muon_blocks(*table.find(qname), g, m.n_head);
      REQUIRE(blocks.size() == size_t(qkv == "fused" ? 2 * 4 / heads_per_block + 1 : 4 / heads_per_block));
      REQUIRE(blocks[1].row0 == block_rows);
      REQUIRE(blocks[1].rows == block_rows);
      Optimizer<double> opt(table, muon_and_rest(g, 0.0, 0.0), constant_schedule(), 10, "test", {}, nullptr, m.n_head);
      std::vector<double> w(table.total(), 0.0);
      const auto grad = random_vector<double>(table.total(), 7);
      opt.step(w.data(), grad.data(), 0);  // w = -O
      // q and k: each head block (block_rows x 16) has its singular values in the quintic's band
      auto check_rows = [&](const std::string& name, int row0, int rows, double lower) {
        const ParamSpec& spec = *table.find(name);
        std::vector<double> X(w.begin() + spec.offset + size_t(row0) * 16,
                              w.begin() + spec.offset + size_t(row0 + rows) * 16);
        const auto sv = singular_values(X, rows, 16);
        INFO(name << " rows " << row0 << "+" << rows << ": singular values " << sv.front() << " .. " << sv.back());
        if (lower > 0) {
          REQUIRE(sv.front() > lower);
          REQUIRE(sv.back() < 1.2);
        }
        return sv;
      };
      const std::string kname = qkv == "fused" ? qname : "blocks.0.attn.k.weight";
      const int k0 = qkv == "fused" ? 16 : 0;
      for (int b = 0; b < 4 / heads_per_block; ++b) {
        check_rows(qname, b * block_rows, block_rows, 0.6);
        check_rows(kname, k0 + b * block_rows, block_rows, 0.6);
      }
      // v is one block, orthogonalised as a whole (a random square matrix has a small
      // singular value that five quintic steps do not lift all the way to the band)
      const std::string vname = qkv == "fused" ? qname : "blocks.0.attn.v.weight";
      const int v0 = qkv == "fused" ? 32 : 0;
      check_rows(vname, v0, 16, 0.2);
      // the whole q (16 x 16) is not orthogonal: its head blocks were orthogonalised apart
      const auto q_all = check_rows(qname, 0, 16, 0);
      REQUIRE(q_all.back() / q_all.front() > 1.5);
    }
}

// ---------------------------------------------------------------------------
// QK-clip on a real forward pass
// ---------------------------------------------------------------------------

namespace {
ModelConfig clip_model(const std::string& qkv, bool bias) {
  ModelConfig m;
  m.vocab_size = 20;
  m.padded_vocab_size = 20;
  m.n_layer = 2;
  m.n_head = 4;
  m.d_model = 16;
  m.mlp_hidden = 16;
  m.max_seq_len = 12;
  m.qkv = qkv;
  m.bias = bias;
  m.qk_norm = false;
  return m;
}

// Scales head h of layer l's q and k rows (and biases) by f.
void blow_up(Gpt<double>& model, int l, int h, double f) {
  const ParamTable& table = model.table();
  const int D = model.config().head_dim(), C = model.config().d_model;
  const std::string b = "blocks." + std::to_string(l) + ".attn.";
  const bool fused = table.has(b + "qkv.weight");
  for (int part = 0; part < 2; ++part) {
    const std::string base = fused ? b + "qkv" : b + (part == 0 ? "q" : "k");
    const int row0 = (fused ? part * C : 0) + h * D;
    const ParamSpec& w = *table.find(base + ".weight");
    for (int r = row0; r < row0 + D; ++r)
      for (int c = 0; c < C; ++c) model.params()[w.offset + size_t(r) * C + c] *= f;
    if (const ParamSpec* bias = table.find(base + ".bias"))
      for (int r = row0; r < row0 + D; ++r) model.params()[bias->offset + r] *= f;
  }
}
}  // namespace

TEST_CASE("QK-clip brings each clipped head's max logit to tau and leaves the others alone", "[optim][qk_clip]") {
  // Clipping a head of layer 0 changes the input of later layers, so their
  // logits move a little too; "last_layer" clips in the last layer only, where
  // every check is exact.
  for (const bool first_layer_too : {false, true})
    for (const std::string qkv : {"fused", "separate"})
      for (bool bias : {true, false})
        for (bool through_optimizer : {false, true}) {
          INFO((first_layer_too ? "layers 0 and 1" : "last layer") << ", " << qkv << " qkv, bias " << bias
                                                                  << (through_optimizer ? ", via Optimizer::step" : ", qk_clip()"));
          const ModelConfig m = clip_model(qkv, bias);  // 2 layers, 4 heads of 4
          const int H = m.n_head;
          Gpt<double> model(m, 2, 12);
          model.init(5);
          for (const ParamSpec& spec : model.table().params())  // biases start at 0: give them values to scale
            if (spec.role == ParamRole::Bias) {
              const auto values = random_vector<double>(spec.numel, spec.offset, -0.02, 0.02);
              std::copy(values.begin(), values.end(), model.params().begin() + spec.offset);
            }
          std::vector<int> blown = {H + 1, H + 3};  // layer 1, heads 1 and 3
          if (first_layer_too) blown.push_back(0);
          for (int slot : blown) blow_up(model, slot / H, slot % H, 200.0);  // logits scale by the square
          const auto noise = random_vector<double>(24, 11);
          std::vector<int32_t> tok(24);
          for (int i = 0; i < 24; ++i) tok[i] = static_cast<int32_t>((noise[i] + 1) * 9.99) % 20;
          model.forward(tok.data(), nullptr, 2, 12);
          const std::vector<double> before = model.max_attention_logits();
          const double tau = 100.0;
          auto is_blown = [&](int slot) { return std::find(blown.begin(), blown.end(), slot) != blown.end(); };
          for (int slot = 0; slot < 2 * H; ++slot) {
            INFO("slot " << slot << ": max logit " << before[slot]);
            REQUIRE((before[slot] > tau) == is_blown(slot));
          }
          const auto params_before = model.params();
          const int expect_clipped = static_cast<int>(blown.size());
          if (through_optimizer) {
            OptimGroupConfig g = muon_group(0.1);
            g.lr = 0.0;  // the step itself changes nothing: only the clip acts
            OptimConfig oc = muon_and_rest(g, 0.0, 0.0);
            oc.qk_clip.enabled = true;
            Optimizer<double> opt(model.table(), oc, constant_schedule(), 10, "test");
            std::vector<double> grads(model.table().total(), 0.0);
            opt.observe_attention_logits(before, H);
            opt.step(model.params().data(), grads.data(), 0);
            REQUIRE(opt.last_clipped_heads() == expect_clipped);
          } else {
            REQUIRE(qk_clip(model.table(), model.params().data(), before.data(), m.n_layer, H, tau, 0.5) ==
                    expect_clipped);
          }
          model.forward(tok.data(), nullptr, 2, 12);
          const std::vector<double> after = model.max_attention_logits();
          for (int slot = 0; slot < 2 * H; ++slot) {
            INFO("slot " << slot << ": max logit " << before[slot] << " -> " << after[slot]);
            const bool exact = !first_layer_too || slot < H;
            if (is_blown(slot))
              REQUIRE(after[slot] == Approx(tau).epsilon(exact ? 1e-12 : 1e-3));
            else if (exact)
              REQUIRE(after[slot] == before[slot]);  // untouched heads: the same bits
            else
              REQUIRE(after[slot] < tau);
          }
          // only q/k rows (and biases) of the clipped heads changed; v untouched
          size_t changed = 0;
          for (size_t i = 0; i < params_before.size(); ++i) changed += params_before[i] != model.params()[i];
          const size_t per_head = 2 * (4 * 16 + (bias ? 4 : 0));  // q and k rows of one head
          REQUIRE(changed == blown.size() * per_head);
        }
}

TEST_CASE("QK-clip with QK-norm is a config error", "[optim][qk_clip][config]") {
  Config cfg = config_from_json(json::parse(R"({"optim": {"groups": [{"name": "all", "params": ["*"]}],
      "qk_clip": {"enabled": true}}})"), "cfg.json");
  cfg.model.qk_norm = true;
  require_error([&] { validate_config(cfg, "cfg.json", 1); }, {"cfg.json", "optim.qk_clip.enabled", "qk_norm"});
  cfg.model.qk_norm = false;
  cfg.optim.qk_clip.tau = 0;
  require_error([&] { validate_config(cfg, "cfg.json", 1); }, {"optim.qk_clip.tau", "positive"});
}

TEST_CASE("Muon variant config errors name the key", "[optim][muon_variants][config]") {
  Config cfg = config_from_json(json::parse(R"({"model": {"n_head": 4, "d_model": 32},
      "optim": {"groups": [{"name": "m", "type": "muon", "params": ["blocks.*.attn.*.weight"],
                            "per_head": "qk", "heads_per_block": 3}, {"name": "rest", "params": ["*"]}]}})"),
                                "cfg.json");
  require_error([&] { validate_config(cfg, "cfg.json", 1); }, {"optim.groups[0].heads_per_block", "n_head = 4"});
  cfg.optim.groups[0].heads_per_block = 2;
  cfg.optim.groups[0].normuon.beta2 = 1.0;
  require_error([&] { validate_config(cfg, "cfg.json", 1); }, {"optim.groups[0].normuon.beta2"});
  require_error([&] { config_from_json(json::parse(R"({"optim": {"groups": [{"name": "m", "type": "muon",
      "params": ["*"], "normuon": {"axis": "diagonal"}}]}})"), "cfg.json"); },
                {"cfg.json", "axis", "diagonal"});
  cfg.optim.groups[0].normuon.beta2 = 0.9;
  cfg.optim.diagnostics_param = "tok_embed";
  const ParamTable table(cfg.model);
  require_error([&] { Optimizer<float> opt(table, cfg.optim, cfg.schedule, 10, "cfg.json", {}, nullptr, 4); },
                {"cfg.json", "optim.diagnostics_param", "tok_embed"});
}

// ---------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------

TEST_CASE("diagnostics: update RMS, orthogonality error, max logits", "[optim][muon_variants][diagnostics]") {
  // the orthogonality error of an exactly orthogonal matrix is 0, of 2*I it is 3
  std::vector<double> I = {1, 0, 0, 0, 1, 0};  // 2 x 3, orthonormal rows
  REQUIRE(cpu::orthogonality_error(I.data(), 2, 3) == 0.0);
  std::vector<double> twoI = {2, 0, 0, 2, 0, 0};  // 3 x 2 (tall): O^T O = 4 I
  REQUIRE(cpu::orthogonality_error(twoI.data(), 3, 2) == Approx(3.0));

  const ModelConfig m = small_model("fused", 2, 8, false);
  const ParamTable table(m);
  OptimConfig oc = muon_and_rest(muon_group(0.1), 0.0, 0.0);
  oc.diagnostics_every = 2;
  oc.diagnostics_param = "blocks.0.mlp.fc.weight";
  Optimizer<double> opt(table, oc, constant_schedule(), 10, "test");
  REQUIRE(!opt.diagnostics_due(0));
  REQUIRE(opt.diagnostics_due(1));
  auto w = random_vector<double>(table.total(), 1);
  const auto grad = random_vector<double>(table.total(), 2);
  const std::vector<double> logits_a = {1.0, 7.0}, logits_b = {3.0, 2.0};  // 1 layer x 2 heads, two micro-batches
  opt.step(w.data(), grad.data(), 0);
  REQUIRE(opt.diagnostics().step == -1);
  opt.observe_attention_logits(logits_a, 2);
  opt.observe_attention_logits(logits_b, 2);
  opt.step(w.data(), grad.data(), 1);
  const OptimDiagnostics& d = opt.diagnostics();
  REQUIRE(d.step == 1);
  REQUIRE(d.update_rms == opt.last_update_rms());
  REQUIRE(d.orth_param == "blocks.0.mlp.fc.weight");
  // the quintic leaves singular values in about [0.68, 1.13]: error well above 0, below 0.5
  REQUIRE(d.orth_error > 0.01);
  REQUIRE(d.orth_error < 0.5);
  REQUIRE(d.max_logits == std::vector<double>{3.0, 7.0});
  const json j = d.to_json(oc);
  REQUIRE(j.at("max_attn_logit") == json::array({7.0}));
  REQUIRE(j.at("orthogonality_error").at("param") == "blocks.0.mlp.fc.weight");
  REQUIRE(j.at("update_rms").contains("hidden"));

  // the same error from the Newton-Schulz output computed here: after two ema
  // steps with the same gradient, u = (1 - 0.9^3) g
  const ParamSpec& fc = *table.find("blocks.0.mlp.fc.weight");
  REQUIRE(muon_blocks(fc, oc.groups[0], 2).size() == 1);
  std::vector<double> u(fc.numel);
  for (size_t i = 0; i < fc.numel; ++i) u[i] = (1 - 0.729) * grad[fc.offset + i];
  cpu::newton_schulz(u.data(), 12, 8, oc.groups[0].ns.table(), 1.0, 1e-7);
  REQUIRE(d.orth_error == Approx(cpu::orthogonality_error(u.data(), 12, 8)).epsilon(1e-9));
}

// ---------------------------------------------------------------------------
// Sharded modes: ranks as threads sharing memory
// ---------------------------------------------------------------------------

namespace {

// An in-process communicator: `world` threads, each with its own ThreadComm
// over one shared Hub. Collectives exchange pointers and copy in rank order.
class ThreadComm final : public Comm {
 public:
  struct Hub {
    explicit Hub(int world) : world(world), sync(world), ptrs(world), cptrs(world) {}
    int world;
    std::barrier<> sync;
    std::vector<void*> ptrs;
    std::vector<const void*> cptrs;
  };
  ThreadComm(Hub& hub, int rank) : hub_(hub), rank_(rank) {}
  int rank() const override { return rank_; }
  int world() const override { return hub_.world; }
  std::string name() const override { return "threads"; }
  void allreduce_sum(float* data, size_t n, const char*) override { sum(data, n); }
  void allreduce_sum(double* data, size_t n, const char*) override { sum(data, n); }
  void allgatherv(float* buffer, const std::vector<int>& counts, const std::vector<int>& displs,
                  const char*) override {
    hub_.ptrs[rank_] = buffer;
    hub_.sync.arrive_and_wait();
    for (int r = 0; r < world(); ++r)
      if (r != rank_) {
        const float* src = static_cast<float*>(hub_.ptrs[r]) + displs[r];
        std::copy(src, src + counts[r], buffer + displs[r]);
      }
    hub_.sync.arrive_and_wait();
  }
  void reduce_scatter_sum(float* buffer, const std::vector<int>& counts, const std::vector<int>& displs,
                          const char*) override {
    hub_.ptrs[rank_] = buffer;
    hub_.sync.arrive_and_wait();
    std::vector<float> part(counts[rank_], 0.0f);
    for (int r = 0; r < world(); ++r)
      for (int i = 0; i < counts[rank_]; ++i) part[i] += static_cast<float*>(hub_.ptrs[r])[displs[rank_] + i];
    hub_.sync.arrive_and_wait();
    std::copy(part.begin(), part.end(), buffer + displs[rank_]);
  }
  void gatherv(const float* send, float* recv, const std::vector<int>& counts, const std::vector<int>& displs,
               int root, const char*) override {
    hub_.cptrs[rank_] = send;
    hub_.sync.arrive_and_wait();
    if (rank_ == root)
      for (int r = 0; r < world(); ++r) {
        const float* src = static_cast<const float*>(hub_.cptrs[r]);
        std::copy(src, src + counts[r], recv + displs[r]);
      }
    hub_.sync.arrive_and_wait();
  }
  void broadcast(void* data, size_t bytes, int root, const char*) override {
    hub_.ptrs[rank_] = data;
    hub_.sync.arrive_and_wait();
    if (rank_ != root) std::memcpy(data, hub_.ptrs[root], bytes);
    hub_.sync.arrive_and_wait();
  }
  void barrier(const char*) override { hub_.sync.arrive_and_wait(); }
  void set_timeout(double) override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }

 private:
  template <class T>
  void sum(T* data, size_t n) {
    hub_.ptrs[rank_] = data;
    hub_.sync.arrive_and_wait();
    std::vector<T> total(n, T(0));
    for (int r = 0; r < world(); ++r)
      for (size_t i = 0; i < n; ++i) total[i] += static_cast<T*>(hub_.ptrs[r])[i];
    hub_.sync.arrive_and_wait();
    std::copy(total.begin(), total.end(), data);
  }
  Hub& hub_;
  int rank_;
};

// All the variants at once on a model with separate and fused attention.
OptimConfig everything_config() {
  OptimGroupConfig g = muon_group(0.1);
  g.lr = 0.05;
  g.weight_decay = 5.0;
  g.cautious_weight_decay = true;
  g.weight_decay_schedule = "lr_squared";
  g.normuon.enabled = true;
  g.normuon.beta2 = 0.9;
  g.per_head = "qk";
  g.ns.coefficients = "polar_express";
  g.ns.norm_scale = 1.02;
  g.ns.norm_eps = 1e-6;
  OptimConfig oc = muon_and_rest(g, 0.01, 0.0);  // AdamW too (zero1 shards it)
  oc.qk_clip.enabled = true;
  oc.qk_clip.tau = 1.25;  // fake_logit exceeds it at some heads
  oc.diagnostics_every = 2;
  return oc;
}

// Rank `rank`'s max logit at head slot i: rank 0 sees the largest at even
// slots, the last rank at odd ones; their max is fake_logit(i, step, 0, 1).
float fake_logit(size_t i, int step, int rank, int world) {
  return 0.5f + 0.1f * step + (i % 2 == 0 && rank == 0 ? 0.9f : 0.0f) + (i % 2 == 1 && rank == world - 1 ? 0.7f : 0.0f);
}

struct RunResult {
  std::vector<float> params;
  std::map<std::string, std::vector<float>> state;
  OptimDiagnostics diag;
};

// Three steps; each rank sees its own max logits (their max is what counts).
RunResult run_ranks(const ModelConfig& m, const OptimConfig& oc, const DistConfig& dist, int world) {
  const ParamTable table(m);
  const auto w0 = random_vector<float>(table.total(), 21);
  std::vector<RunResult> results(world);
  ThreadComm::Hub hub(world);
  auto body = [&](int rank) {
    ThreadComm comm(hub, rank);
    Optimizer<float> opt(table, oc, constant_schedule(), 10, "test", dist, &comm, m.n_head);
    auto w = w0;
    for (int step = 0; step < 3; ++step) {
      const auto grad = random_vector<float>(table.total(), 100 + step);  // already summed over ranks
      // rank r's logits: rank 0 carries the max at even heads, the last rank at odd ones
      std::vector<float> logits(size_t(m.n_layer) * m.n_head);
      for (size_t i = 0; i < logits.size(); ++i) logits[i] = fake_logit(i, step, rank, world);
      opt.observe_attention_logits(logits, m.n_head);
      opt.step(w.data(), grad.data(), step);
    }
    results[rank].params = w;
    results[rank].state = gathered_state(opt);
    results[rank].diag = opt.diagnostics();
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back(body, r);
  for (auto& t : threads) t.join();
  for (int r = 1; r < world; ++r) REQUIRE(results[r].params == results[0].params);  // every rank ends equal
  for (int r = 1; r < world; ++r) REQUIRE(results[r].diag.max_logits == results[0].diag.max_logits);
  return results[0];
}

}  // namespace

TEST_CASE("sharded Muon variants give the single-process result", "[optim][muon_variants][dist]") {
  for (const std::string qkv : {"fused", "separate"}) {
    ModelConfig m = small_model(qkv, 4, 16, true);
    m.n_layer = 2;
    const OptimConfig oc = everything_config();
    RunResult single;
    {
      // one rank: the same logits the ranks' max gives
      const ParamTable table(m);
      auto w = random_vector<float>(table.total(), 21);
      Optimizer<float> opt(table, oc, constant_schedule(), 10, "test", {}, nullptr, m.n_head);
      for (int step = 0; step < 3; ++step) {
        const auto grad = random_vector<float>(table.total(), 100 + step);
        std::vector<float> logits(size_t(m.n_layer) * m.n_head);
        for (size_t i = 0; i < logits.size(); ++i) logits[i] = fake_logit(i, step, 0, 1);
        opt.observe_attention_logits(logits, m.n_head);
        opt.step(w.data(), grad.data(), step);
        // tau 1.25: the even slots (1.4 +) always clip, the odd ones (1.2 +) from step 1 on
        REQUIRE(opt.last_clipped_heads() == int(logits.size() / 2) * (step >= 1 ? 2 : 1));
      }
      single.params = w;
      single.state = gathered_state(opt);
      single.diag = opt.diagnostics();
    }
    REQUIRE(single.state.count(std::string("blocks.0.attn.") + (qkv == "fused" ? "qkv" : "q") + ".weight.normuon_v"));
    for (int world : {2, 3})
      for (const char* muon : {"owner", "zero1", "replicated"}) {
        INFO(qkv << " qkv, " << world << " ranks, dist.muon " << muon << ", zero_stage 1");
        DistConfig dist;
        dist.zero_stage = 1;
        dist.muon = muon;
        const RunResult r = run_ranks(m, oc, dist, world);
        REQUIRE(r.params == single.params);
        REQUIRE(r.state == single.state);
        REQUIRE(r.diag.step == 2 - 1);
        REQUIRE(r.diag.max_logits == single.diag.max_logits);
        REQUIRE(r.diag.orth_error == Approx(single.diag.orth_error).epsilon(1e-12));
        REQUIRE(r.diag.update_rms.size() == single.diag.update_rms.size());
        for (size_t g = 0; g < r.diag.update_rms.size(); ++g)
          REQUIRE(r.diag.update_rms[g] == Approx(single.diag.update_rms[g]).epsilon(1e-12));
      }
  }
}

TEST_CASE("NorMuon state survives a checkpoint across rank counts", "[optim][muon_variants][dist]") {
  ModelConfig m = small_model("fused", 4, 16, false);
  m.n_layer = 2;
  const OptimConfig oc = everything_config();
  const ParamTable table(m);
  // state written by 3 ranks (owner), loaded by 2 ranks (zero1): gathering again gives the same tensors
  DistConfig owner;
  owner.zero_stage = 1;
  owner.muon = "owner";
  const RunResult written = run_ranks(m, oc, owner, 3);
  std::vector<std::map<std::string, std::vector<float>>> reloaded(2);
  std::atomic<bool> sizes_agree{true};
  ThreadComm::Hub hub(2);
  auto body = [&](int rank) {
    ThreadComm comm(hub, rank);
    DistConfig zero1;
    zero1.zero_stage = 1;
    zero1.muon = "zero1";
    Optimizer<float> opt(table, oc, constant_schedule(), 10, "test", zero1, &comm, m.n_head);
    opt.load_state([&](const std::string& name, size_t first, size_t count, float* out) {
      if (written.state.at(name).size() != opt.state_numel(name)) sizes_agree = false;  // no REQUIRE off the main thread
      std::copy(written.state.at(name).begin() + first, written.state.at(name).begin() + first + count, out);
    });
    reloaded[rank] = gathered_state(opt);
  };
  std::thread t0(body, 0), t1(body, 1);
  t0.join();
  t1.join();
  REQUIRE(sizes_agree);
  REQUIRE(reloaded[0] == written.state);
}
