// Newton-Schulz, Muon, AdamW and the schedules against hand-computed values
// and an eigen-decomposition computed here.
#include <algorithm>
#include <cmath>

#include "config/config_io.h"
#include "kernels/cpu/newton_schulz.h"
#include "kernels/cpu/optimizer_updates.h"
#include "linalg.h"
#include "model/params.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "test_support.h"

using namespace muongpt;
using namespace muongpt::test;

TEST_CASE("the test's eigen-solver is right on a known spectrum", "[linalg]") {
  // diag(1..5) rotated by a Householder reflection keeps its eigenvalues
  const int n = 5;
  std::vector<double> v = {0.3, -0.5, 0.2, 0.7, -0.1}, A(n * n, 0.0);
  double vv = 0;
  for (double x : v) vv += x * x;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int k = 0; k < n; ++k) {
        const double hik = (i == k) - 2 * v[i] * v[k] / vv, hjk = (j == k) - 2 * v[j] * v[k] / vv;
        s += hik * (k + 1) * hjk;
      }
      A[i * n + j] = s;
    }
  const auto ev = symmetric_eigenvalues(A, n);
  for (int i = 0; i < n; ++i) REQUIRE(ev[i] == Approx(i + 1).epsilon(1e-10));
}

namespace {
// Newton-Schulz acts on each singular value alone: s -> a s + b s^3 + c s^5 per
// iteration, starting from s / (norm_scale * ||G||_F + eps).
std::vector<double> mapped_singular_values(std::vector<double> sv, const NewtonSchulzConfig& ns) {
  double fro = 0;
  for (double s : sv) fro += s * s;
  fro = std::sqrt(fro);
  for (double& s : sv) {
    s /= ns.norm_scale * fro + ns.norm_eps;
    for (const auto& abc : ns.table()) s = abc[0] * s + abc[1] * s * s * s + abc[2] * std::pow(s, 5);
  }
  std::sort(sv.begin(), sv.end());
  return sv;
}
}  // namespace

TEST_CASE("Newton-Schulz maps singular values through its polynomial and into the band",
          "[optim][newton_schulz]") {
  NewtonSchulzConfig quintic;  // classic (3.4445, -4.7750, 2.0315) x5
  NewtonSchulzConfig polar;
  polar.coefficients = "polar_express";
  polar.norm_scale = 1.02;
  polar.norm_eps = 1e-6;
  REQUIRE(quintic.table().size() == 5);
  REQUIRE(quintic.table()[0][0] == 3.4445);
  REQUIRE(polar.table()[0][0] == Approx(8.156554524902461));
  for (auto [rows, cols] : std::vector<std::pair<int, int>>{{64, 64}, {48, 160}, {160, 48}, {768, 3072}}) {
    for (const NewtonSchulzConfig* ns : {&quintic, &polar}) {
      INFO("shape " << rows << "x" << cols << ", " << ns->coefficients);
      auto X = random_vector<float>(size_t(rows) * cols, rows * 7 + cols);
      const auto before = singular_values(X, rows, cols);
      REQUIRE(before.back() / before.front() > 2);  // a spread spectrum to begin with
      const auto expect = mapped_singular_values(before, *ns);
      cpu::newton_schulz(X.data(), rows, cols, ns->table(), ns->norm_scale, ns->norm_eps);
      const auto after = singular_values(X, rows, cols);
      require_close(after, expect, 0, 2e-3, "singular values after Newton-Schulz");
      // every singular value that started above 1e-3 of the norm ends in the band
      double fro = 0;
      for (double s : before) fro += s * s;
      const double lo = ns == &quintic ? 0.68 : 0.75;
      for (size_t i = 0; i < before.size(); ++i) {
        INFO("input s/||G|| = " << before[i] / std::sqrt(fro) << " -> " << expect[i]);
        if (before[i] / std::sqrt(fro) >= 1e-3) REQUIRE(expect[i] > lo);
        REQUIRE(after[i] < 1.2);
      }
    }
  }
}

TEST_CASE("Polar Express converges closer to orthogonal than the quintic", "[optim][newton_schulz]") {
  const int rows = 96, cols = 256;
  auto X = random_vector<double>(size_t(rows) * cols, 5);
  auto Y = X;
  NewtonSchulzConfig quintic, polar;
  polar.coefficients = "polar_express";
  polar.norm_scale = 1.02;
  polar.norm_eps = 1e-6;
  cpu::newton_schulz(X.data(), rows, cols, quintic.table(), quintic.norm_scale, quintic.norm_eps);
  cpu::newton_schulz(Y.data(), rows, cols, polar.table(), polar.norm_scale, polar.norm_eps);
  auto spread = [](const std::vector<double>& sv) {
    double m = 0;
    for (double s : sv) m = std::max(m, std::abs(s - 1));
    return m;
  };
  const double q = spread(singular_values(X, rows, cols)), p = spread(singular_values(Y, rows, cols));
  INFO("max |s - 1|: quintic " << q << ", polar express " << p);
  REQUIRE(p < 0.5 * q);
}

TEST_CASE("Newton-Schulz keeps singular vectors: output of an orthogonal input is orthogonal", "[optim][newton_schulz]") {
  // X = diag(s) with s in (0, 1]: the map acts on each singular value alone
  const int n = 4;
  std::vector<double> X(n * n, 0.0);
  const double s[n] = {1.0, 0.5, 0.25, 0.1};
  for (int i = 0; i < n; ++i) X[i * n + i] = s[i];
  NewtonSchulzConfig ns;
  ns.steps = 1;
  ns.norm_eps = 0;
  ns.norm_scale = 1.0;
  auto Y = X;
  cpu::newton_schulz(Y.data(), n, n, ns.table(), ns.norm_scale, ns.norm_eps);
  double fro = 0;
  for (double v : s) fro += v * v;
  fro = std::sqrt(fro);
  for (int i = 0; i < n; ++i) {
    const double x = s[i] / fro;  // after the Frobenius normalisation
    const double expect = 3.4445 * x - 4.7750 * x * x * x + 2.0315 * std::pow(x, 5);
    REQUIRE(Y[i * n + i] == Approx(expect).epsilon(1e-12));
    for (int j = 0; j < n; ++j)
      if (j != i) REQUIRE(Y[i * n + j] == 0.0);
  }
}

TEST_CASE("AdamW step equals the hand-computed PyTorch formula", "[optim][adamw]") {
  std::vector<double> w = {0.5, -1.0}, m = {0.1, 0.0}, v = {0.01, 0.0};
  const std::vector<double> g = {0.2, -0.3};
  const double lr = 0.01, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1;
  const long step = 3;
  std::vector<double> expect(2);
  for (int i = 0; i < 2; ++i) {
    const double wi = w[i] * (1 - lr * wd);
    const double mi = b1 * m[i] + (1 - b1) * g[i];
    const double vi = b2 * v[i] + (1 - b2) * g[i] * g[i];
    const double mhat = mi / (1 - std::pow(b1, step)), vhat = vi / (1 - std::pow(b2, step));
    expect[i] = wi - lr * mhat / (std::sqrt(vhat) + eps);
  }
  cpu::adamw_update(w.data(), m.data(), v.data(), g.data(), 2, lr, b1, b2, eps, wd, step);
  REQUIRE(w[0] == Approx(expect[0]).epsilon(1e-12));
  REQUIRE(w[1] == Approx(expect[1]).epsilon(1e-12));
}

TEST_CASE("Muon momentum forms", "[optim][muon]") {
  const std::vector<double> g = {1.0, -2.0};
  SECTION("sum form, Nesterov") {
    std::vector<double> buf = {0.5, 0.5}, u(2);
    cpu::muon_momentum(u.data(), buf.data(), g.data(), 2, 0.9, true, false);
    REQUIRE(buf[0] == Approx(0.9 * 0.5 + 1.0));
    REQUIRE(u[0] == Approx(1.0 + 0.9 * buf[0]));
    REQUIRE(u[1] == Approx(-2.0 + 0.9 * (0.9 * 0.5 - 2.0)));
  }
  SECTION("ema form, Nesterov") {
    std::vector<double> buf = {0.5, 0.5}, u(2);
    cpu::muon_momentum(u.data(), buf.data(), g.data(), 2, 0.9, true, true);
    REQUIRE(buf[0] == Approx(0.5 + 0.1 * (1.0 - 0.5)));
    REQUIRE(u[0] == Approx(1.0 + 0.9 * (buf[0] - 1.0)));
  }
  SECTION("plain momentum returns the buffer") {
    std::vector<double> buf = {0.5, 0.5}, u(2);
    cpu::muon_momentum(u.data(), buf.data(), g.data(), 2, 0.9, false, true);
    REQUIRE(u[0] == buf[0]);
  }
}

TEST_CASE("Muon update scales", "[optim][muon]") {
  REQUIRE(muon_update_scale("original", 3072, 768) == Approx(2.0));
  REQUIRE(muon_update_scale("original", 768, 3072) == Approx(1.0));
  REQUIRE(muon_update_scale("match_rms_adamw", 768, 3072) == Approx(0.2 * std::sqrt(3072.0)));
  REQUIRE(muon_update_scale("sqrt_max_dim", 768, 3072) == Approx(std::sqrt(3072.0)));
  REQUIRE(muon_update_scale("none", 5, 7) == 1.0);
}

TEST_CASE("a full Muon step: momentum, orthogonalisation per fused block, scale, weight decay", "[optim][muon]") {
  ModelConfig m;
  m.vocab_size = 10;
  m.padded_vocab_size = 10;
  m.n_layer = 1;
  m.n_head = 1;
  m.d_model = 4;
  m.mlp_hidden = 8;
  ParamTable table(m);
  OptimConfig oc;
  OptimGroupConfig muon;
  muon.name = "hidden";
  muon.type = "muon";
  muon.params = {"blocks.*.attn.*.weight", "blocks.*.mlp.*.weight"};
  muon.lr = 0.1;
  muon.weight_decay = 0.5;
  muon.momentum = 0.9;
  muon.momentum_form = "sum";
  OptimGroupConfig adam;
  adam.name = "rest";
  adam.params = {"*"};
  oc.groups = {muon, adam};
  ScheduleConfig sched;
  sched.kind = "constant";
  Optimizer<double> opt(table, oc, sched, 10, "test");
  std::vector<double> w = random_vector<double>(table.total(), 1), g = random_vector<double>(table.total(), 2);
  const auto w0 = w;
  opt.step(w.data(), g.data(), 0);
  // expected for the fused qkv (12 x 4 = three 4x4 blocks): buf = g, u = g + 0.9 g
  const ParamSpec& qkv = *table.find("blocks.0.attn.qkv.weight");
  REQUIRE(qkv.row_blocks == 3);
  for (int b = 0; b < 3; ++b) {
    std::vector<double> u(16);
    for (int i = 0; i < 16; ++i) u[i] = 1.9 * g[qkv.offset + b * 16 + i];
    cpu::newton_schulz(u.data(), 4, 4, muon.ns.table(), 1.0, 1e-7);
    for (int i = 0; i < 16; ++i) {
      const size_t k = qkv.offset + b * 16 + i;
      REQUIRE(w[k] == Approx(w0[k] * (1 - 0.1 * 0.5) - 0.1 * 1.0 * u[i]).epsilon(1e-12));
    }
  }
  // the 8x4 MLP matrix is tall: scale sqrt(8/4)
  const ParamSpec& fc = *table.find("blocks.0.mlp.fc.weight");
  std::vector<double> u(32);
  for (int i = 0; i < 32; ++i) u[i] = 1.9 * g[fc.offset + i];
  cpu::newton_schulz(u.data(), 8, 4, muon.ns.table(), 1.0, 1e-7);
  REQUIRE(w[fc.offset + 5] == Approx(w0[fc.offset + 5] * 0.95 - 0.1 * std::sqrt(2.0) * u[5]).epsilon(1e-12));
  REQUIRE(opt.last_update_rms()[0] > 0.0);
}

TEST_CASE("optimizer grouping errors name the parameter and the group", "[optim][config]") {
  ModelConfig m;
  m.vocab_size = 10;
  m.padded_vocab_size = 10;
  m.n_layer = 1;
  m.n_head = 1;
  m.d_model = 4;
  m.norm_weight = true;
  ParamTable table(m);
  OptimConfig oc;
  OptimGroupConfig muon;
  muon.name = "hidden";
  muon.type = "muon";
  muon.params = {"blocks.*"};
  OptimGroupConfig rest;
  rest.name = "rest";
  rest.params = {"*"};
  oc.groups = {muon, rest};
  require_error([&] { assign_groups(table, oc, "cfg.json"); }, {"cfg.json", "blocks.0.norm1.weight", "Muon"});
  muon.params = {"blocks.*.attn.*"};
  oc.groups = {muon};
  require_error([&] { assign_groups(table, oc, "cfg.json"); }, {"cfg.json", "tok_embed", "matches no optimizer group"});
}

TEST_CASE("learning-rate schedules at their boundaries", "[optim][schedule]") {
  ScheduleConfig s;
  s.kind = "wsd";
  s.cooldown_frac = 0.4;
  s.final_lr_frac = 0.1;
  REQUIRE(lr_factor(s, 0, 100) == 1.0);
  REQUIRE(lr_factor(s, 59, 100) == 1.0);
  REQUIRE(lr_factor(s, 60, 100) == Approx(1.0));
  REQUIRE(lr_factor(s, 80, 100) == Approx(0.5 + 0.5 * 0.1));
  REQUIRE(lr_factor(s, 100, 100) == Approx(0.1));
  s.warmup_steps = 10;
  REQUIRE(lr_factor(s, 0, 100) == Approx(0.1));
  REQUIRE(lr_factor(s, 9, 100) == Approx(1.0));
  s.kind = "cosine";
  REQUIRE(lr_factor(s, 10, 100) == Approx(1.0));
  REQUIRE(lr_factor(s, 55, 100) == Approx(0.1 + 0.9 * 0.5));
  REQUIRE(lr_factor(s, 100, 100) == Approx(0.1));
  s.kind = "linear";
  REQUIRE(lr_factor(s, 55, 100) == Approx(0.55));
  s.kind = "constant";
  REQUIRE(lr_factor(s, 99, 100) == 1.0);

  OptimGroupConfig g;
  g.type = "muon";
  g.momentum = 0.95;
  g.momentum_warmup_start = 0.85;
  g.momentum_warmup_steps = 300;
  REQUIRE(muon_momentum_at(g, 0, 2000) == Approx(0.85));
  REQUIRE(muon_momentum_at(g, 150, 2000) == Approx(0.90));
  REQUIRE(muon_momentum_at(g, 300, 2000) == Approx(0.95));
  REQUIRE(muon_momentum_at(g, 1000, 2000) == Approx(0.95));
  REQUIRE(muon_momentum_at(g, 1999, 2000) == Approx(0.95));  // no cooldown
}

TEST_CASE("Muon momentum follows record #39's warmup and cooldown at every step", "[optim][schedule]") {
  // The record sets the momentum only while step < 300 (to 0.85 + step/300 * 0.1), so from step
  // 300 on it keeps step 299's value, 0.85 + 299/300 * 0.1, until the cooldown sets
  // 0.95 - (step - S)/50 * 0.1 for step > S = 2420 - 50. The config: momentum at step 299's value,
  // a 299-step warmup from 0.85 and a 50-step cooldown from 0.95 to 0.85.
  OptimGroupConfig g;
  g.type = "muon";
  g.momentum = 0.85 + 299.0 / 300 * 0.1;
  g.momentum_warmup_start = 0.85;
  g.momentum_warmup_steps = 299;
  g.momentum_cooldown_steps = 50;
  g.momentum_cooldown_start = 0.95;
  g.momentum_cooldown_end = 0.85;
  const int total = 2420, start = total - 50;
  double record = 0.95;  // the optimizer's constructor value, overwritten at step 0
  for (int step = 0; step < total; ++step) {
    if (step < 300) record = 0.85 + static_cast<double>(step) / 300 * (0.95 - 0.85);
    if (step > start) record = 0.95 - static_cast<double>(step - start) / 50 * (0.95 - 0.85);
    INFO("step " << step);
    REQUIRE(std::abs(muon_momentum_at(g, step, total) - record) < 1e-15);
  }
  REQUIRE(muon_momentum_at(g, 2419, total) == Approx(0.852));
  // cooldown from the momentum itself when momentum_cooldown_start is 0
  g.momentum_cooldown_start = 0;
  REQUIRE(muon_momentum_at(g, start + 25, total) == Approx(g.momentum - 0.5 * (g.momentum - 0.85)));
}
