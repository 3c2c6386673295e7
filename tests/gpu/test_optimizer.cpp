// GPU optimizer updates and reductions against kernels/cpu/optimizer_updates.h
// and kernels/cpu/reduce.h semantics.
// Tolerances (all fp32 state): w, m, v, buf, u |gpu - ref| <= 1e-6 |ref| +
// 1e-6 max|ref| (the same float operations; only FMA contraction may differ);
// the bf16 working copies equal the bf16 rounding of the GPU's fp32 values
// exactly; sums (double accumulation) 1e-12 relative; clip 1e-6 relative.
#include <tuple>

#include "gpu_test_util.h"
#include "kernels/cpu/optimizer_updates.h"
#include "kernels/cuda/optimizer.cuh"
#include "kernels/cuda/reduce.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

const std::vector<size_t> kSizes = {1, 7, 129, 100003};

std::vector<float> rounded(const std::vector<float>& v) { return round_bf16(v); }

}  // namespace

TEST_CASE("gpu adamw update matches the CPU and refreshes the bf16 copy", "[gpu][optimizer]") {
  for (size_t n : kSizes)
    for (long step : {1L, 10L}) {
      INFO("n=" << n << " step=" << step);
      auto w = test::random_vector<float>(n, 1);
      auto m = test::random_vector<float>(n, 2, -0.01f, 0.01f);
      auto v = test::random_vector<float>(n, 3, 0.0f, 1e-3f);
      const auto g = test::random_vector<float>(n, 4, -0.1f, 0.1f);
      const double lr = 0.01, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
      DeviceArray<float> d_w(w), d_m(m), d_v(v), d_g(g);
      DeviceBf16 d_wb(n);
      cpu::adamw_update(w.data(), m.data(), v.data(), g.data(), n, lr, b1, b2, eps, wd, step);
      gpu::adamw_update(d_w.get(), d_wb.get(), d_m.get(), d_v.get(), d_g.get(), n, lr, b1, b2, eps, wd, step, nullptr);
      const auto gw = d_w.download();
      require_close_rel(gw, w, 1e-6, 1e-6, "w");
      require_close_rel(d_m.download(), m, 1e-6, 1e-6, "m");
      require_close_rel(d_v.download(), v, 1e-6, 1e-6, "v");
      require_same_bits(d_wb.download(), rounded(gw), "w bf16 copy");
    }
  test::require_error([] { gpu::adamw_update(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 0.1, 0.9, 0.95, 1e-8, 0, 0,
                                             nullptr); },
                      {"adamw_update", "step"});
}

TEST_CASE("gpu muon momentum matches the CPU in all four forms", "[gpu][optimizer]") {
  for (size_t n : kSizes)
    for (bool nesterov : {false, true})
      for (bool ema : {false, true}) {
        INFO("n=" << n << " nesterov=" << nesterov << " ema=" << ema);
        auto buf = test::random_vector<float>(n, 1);
        const auto g = test::random_vector<float>(n, 2);
        std::vector<float> u(n);
        DeviceArray<float> d_buf(buf), d_g(g), d_u(n);
        DeviceBf16 d_ub(n);
        cpu::muon_momentum(u.data(), buf.data(), g.data(), n, 0.95, nesterov, ema);
        gpu::muon_momentum(d_u.get(), d_ub.get(), d_buf.get(), d_g.get(), n, 0.95, nesterov, ema, nullptr);
        const auto gu = d_u.download();
        require_close_rel(gu, u, 1e-6, 1e-6, "u");
        require_close_rel(d_buf.download(), buf, 1e-6, 1e-6, "buf");
        require_same_bits(d_ub.download(), rounded(gu), "u bf16");
      }
}

TEST_CASE("gpu muon apply matches the CPU for bf16 and fp32 updates, plain and cautious", "[gpu][optimizer]") {
  for (size_t n : kSizes)
    for (bool bf16_update : {true, false})
      for (bool cautious : {false, true}) {
        INFO("n=" << n << " bf16 update=" << bf16_update << " cautious=" << cautious);
        auto w = test::random_vector<float>(n, 1);
        const auto o = random_bf16(n, 2);  // bf16 values, also used as the fp32 update
        const double lr = 0.02, scale = 1.7, wd = 0.5;
        DeviceArray<float> d_w(w), d_of(o);
        DeviceBf16 d_ob(o), d_wb(n);
        cpu::muon_apply(w.data(), o.data(), n, lr, scale, wd, cautious);
        if (bf16_update)
          gpu::muon_apply(d_w.get(), d_wb.get(), d_ob.get(), n, lr, scale, wd, cautious, nullptr);
        else
          gpu::muon_apply(d_w.get(), d_wb.get(), d_of.get(), n, lr, scale, wd, cautious, nullptr);
        const auto gw = d_w.download();
        require_close_rel(gw, w, 1e-6, 1e-6, "w");
        require_same_bits(d_wb.download(), rounded(gw), "w bf16 copy");
      }
}

TEST_CASE("gpu deterministic sums match a double reference", "[gpu][reduce]") {
  DeviceArray<double> d_scratch(gpu::reduce_scratch_doubles()), d_out(1);
  for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(1000), size_t(1000003)}) {
    INFO("n=" << n);
    const auto x = test::random_vector<float>(n, 1);
    double sum = 0, sum_abs = 0, sum_sq = 0;
    for (float v : x) sum += v, sum_abs += std::abs(v), sum_sq += double(v) * v;
    DeviceArray<float> d_x(x);
    gpu::sum_f32(d_out.get(), d_x.get(), n, d_scratch.get(), nullptr);
    const double got_sum = d_out.download()[0];
    REQUIRE(std::abs(got_sum - sum) <= 1e-12 * sum_abs);
    gpu::grad_sum_squares(d_out.get(), d_x.get(), n, d_scratch.get(), nullptr);
    const auto got_sq = d_out.download();
    REQUIRE(std::abs(got_sq[0] - sum_sq) <= 1e-12 * sum_sq);
    gpu::sum_squares_f32(d_out.get(), d_x.get(), n, d_scratch.get(), nullptr);
    require_same_bits(d_out.download(), got_sq, "sum of squares rerun");
  }
}

TEST_CASE("gpu gradient clipping scales only above the threshold", "[gpu][optimizer]") {
  const size_t n = 100003;
  const auto g = test::random_vector<float>(n, 1);
  double sum_sq = 0;
  for (float v : g) sum_sq += double(v) * v;
  const double norm = std::sqrt(sum_sq);
  DeviceArray<double> d_scratch(gpu::reduce_scratch_doubles()), d_sum(1);
  DeviceArray<float> d_g(g);
  gpu::grad_sum_squares(d_sum.get(), d_g.get(), n, d_scratch.get(), nullptr);
  for (double max_norm : {0.0, 2 * norm}) {  // disabled, and above the norm: untouched
    gpu::clip_grad_scale(d_g.get(), n, d_sum.get(), max_norm, nullptr);
    require_same_bits(d_g.download(), g, "unclipped");
  }
  const double max_norm = 0.5 * norm;
  gpu::clip_grad_scale(d_g.get(), n, d_sum.get(), max_norm, nullptr);
  const float c = static_cast<float>(max_norm / norm);
  std::vector<float> ref(g);
  for (auto& x : ref) x *= c;
  require_close_rel(d_g.download(), ref, 1e-6, 0, "clipped");
}
