// GPU fused softcap + cross-entropy against kernels/cpu/softcap_ce.h.
// Tolerances: lse and loss (fp32) |gpu - ref| <= 1e-5 |ref| + 5e-5;
// dlogits (bf16, written in place over the logits) 1e-2 relative + 1e-6 max|ref|;
// padded columns exactly 0; forward and backward reruns bit-identical.
#include "gpu_test_util.h"
#include "kernels/cpu/softcap_ce.h"
#include "kernels/cuda/softcap_ce.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

TEST_CASE("gpu softcap cross-entropy matches the CPU", "[gpu][softcap_ce]") {
  struct Shape {
    int N, Vp, V;
  };
  for (const Shape& s : std::vector<Shape>{
           {1, 64, 64}, {7, 1000, 997}, {3, 96, 77}, {2, 1001, 1001}, {5, 1001, 990}, {129, 50304, 50257}})
    for (float cap : {0.0f, 15.0f, 30.0f}) {
      INFO("N=" << s.N << " Vp=" << s.Vp << " V=" << s.V << " cap=" << cap);
      const size_t n = size_t(s.N) * s.Vp;
      const auto logits = random_bf16(n, 1, -10.0f, 10.0f);
      auto targets = random_ints(s.N, 2, 0, s.V);
      targets[0] = s.V - 1;  // the last real column
      const float dloss = 0.37f;
      std::vector<float> loss_ref(s.N), lse_ref(s.N), dz_ref(n);
      cpu::softcap_ce_forward(loss_ref.data(), lse_ref.data(), logits.data(), targets.data(), s.N, s.Vp, s.V, cap);
      cpu::softcap_ce_backward(dz_ref.data(), logits.data(), lse_ref.data(), targets.data(), dloss, s.N, s.Vp, s.V,
                               cap);

      DeviceBf16 d_logits(logits), d_dz(n);
      DeviceArray<int32_t> d_targets(targets);
      DeviceArray<float> d_loss(s.N), d_lse(s.N), d_lse_ref(lse_ref);
      gpu::softcap_ce_forward(d_loss.get(), d_lse.get(), d_logits.get(), d_targets.get(), s.N, s.Vp, s.V, cap,
                              nullptr);
      const auto loss = d_loss.download(), lse = d_lse.download();
      require_finite(loss, "loss");
      test::require_close(lse, lse_ref, 1e-5, 5e-5, "lse");
      test::require_close(loss, loss_ref, 1e-5, 5e-5, "loss");
      gpu::softcap_ce_forward(d_loss.get(), d_lse.get(), d_logits.get(), d_targets.get(), s.N, s.Vp, s.V, cap,
                              nullptr);
      require_same_bits(d_loss.download(), loss, "loss rerun");
      require_same_bits(d_lse.download(), lse, "lse rerun");

      // out of place (the reference's lse, so both sides see the same inputs)
      gpu::softcap_ce_backward(d_dz.get(), d_logits.get(), d_lse_ref.get(), d_targets.get(), dloss, s.N, s.Vp, s.V,
                               cap, nullptr);
      const auto dz = d_dz.download();
      require_close_rel(dz, dz_ref, 1e-2, 1e-6, "dlogits");
      for (int r = 0; r < s.N; ++r)
        for (int j = s.V; j < s.Vp; ++j) REQUIRE(dz[size_t(r) * s.Vp + j] == 0.0f);
      // in place over the logits, twice from fresh logits: same bits as out of place
      for (int rep = 0; rep < 2; ++rep) {
        d_logits.upload(logits);
        gpu::softcap_ce_backward(d_logits.get(), d_logits.get(), d_lse_ref.get(), d_targets.get(), dloss, s.N, s.Vp,
                                 s.V, cap, nullptr);
        require_same_bits(d_logits.download(), dz, "dlogits in place");
      }
    }
}

TEST_CASE("gpu softcap cross-entropy: invalid targets give NaN loss, no out-of-range access", "[gpu][softcap_ce]") {
  const int N = 3, Vp = 64, V = 50;
  const auto logits = random_bf16(size_t(N) * Vp, 1);
  const std::vector<int32_t> targets = {-1, 7, V};
  DeviceBf16 d_logits(logits), d_dz(size_t(N) * Vp);
  DeviceArray<int32_t> d_targets(targets);
  DeviceArray<float> d_loss(N), d_lse(N);
  gpu::softcap_ce_forward(d_loss.get(), d_lse.get(), d_logits.get(), d_targets.get(), N, Vp, V, 15.0f, nullptr);
  const auto loss = d_loss.download(), lse = d_lse.download();
  REQUIRE(std::isnan(loss[0]));
  REQUIRE(std::isfinite(loss[1]));
  REQUIRE(std::isnan(loss[2]));
  require_finite(lse, "lse");
  gpu::softcap_ce_backward(d_dz.get(), d_logits.get(), d_lse.get(), d_targets.get(), 1.0f, N, Vp, V, 15.0f, nullptr);
  const auto dz = d_dz.download();
  require_finite(dz, "dlogits");
  for (int r : {0, 2})  // no target term: every gradient is a positive softmax share
    for (int j = 0; j < V; ++j) REQUIRE(dz[size_t(r) * Vp + j] > 0.0f);
  REQUIRE(dz[size_t(1) * Vp + 7] < 0.0f);
}

TEST_CASE("gpu softcap cross-entropy rejects V > Vp", "[gpu][softcap_ce]") {
  test::require_error(
      [] { gpu::softcap_ce_forward(nullptr, nullptr, nullptr, nullptr, 1, 64, 65, 0.0f, nullptr); },
      {"softcap_ce_forward", "V <= Vp"});
}
