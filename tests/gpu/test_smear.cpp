// GPU smear against kernels/cpu/smear.h (run in double) on the same
// bf16-rounded embeddings and fp32 weights, with non-zero gate weights and
// lambda, for several shapes: one and several sequences, T = 1 (nothing to
// smear), token counts and widths that are not multiples of the kernels'
// block, chunk or pack sizes, K = 12 (the record's gate) and K = C.
// Tolerances: bf16 outputs (y, de) 1e-2 relative + 1e-4 max|ref|; the gates
// (fp32) 1e-5 relative + 1e-6; dw and dlambda (fp32, summed over tokens on top
// of their initial values) 5e-5 relative + 5e-5 * (|initial| + the sum of the
// terms' magnitudes). Reruns give the same bits.
#include <tuple>

#include "gpu_test_util.h"
#include "kernels/cpu/smear.h"
#include "kernels/cuda/smear.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

struct Shape {
  int B, T, C, K;
};

const std::vector<Shape> kShapes = {
    {1, 1, 64, 12},   {3, 1, 64, 12},     {1, 2, 64, 64},    {5, 7, 12, 12},   {2, 37, 96, 12},
    {4, 129, 60, 12}, {3, 50, 60, 60},    {2, 200, 40, 40},  {2, 300, 768, 12}, {1, 517, 768, 768},
    {3, 130, 36, 36}, {8, 64, 128, 12},
};

// w uniform in +-2/sqrt(K): the gate logits have a standard deviation near 0.7
// for e uniform in +-1, so the sigmoids are neither saturated nor flat.
std::vector<float> random_weights(int K, uint64_t seed) {
  const float bound = 2.0f / std::sqrt(static_cast<float>(K));
  return test::random_vector<float>(static_cast<size_t>(K), seed, -bound, bound);
}

// Non-zero, of either sign.
float lambda_for(size_t shape_index) { return shape_index % 2 ? -0.8f : 0.6f; }

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

std::string describe(const Shape& s) {
  return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " C=" + std::to_string(s.C) +
         " K=" + std::to_string(s.K);
}

}  // namespace

TEST_CASE("gpu smear forward matches the CPU", "[gpu][smear]") {
  for (size_t si = 0; si < kShapes.size(); ++si) {
    const Shape& s = kShapes[si];
    INFO(describe(s));
    const size_t N = static_cast<size_t>(s.B) * s.T, NC = N * s.C;
    const auto e = random_bf16(NC, 1);
    const auto w = random_weights(s.K, 2);
    const float lambda = lambda_for(si);
    std::vector<double> y_ref(NC), g_ref(N);
    cpu::smear_forward(y_ref.data(), g_ref.data(), to_double(e).data(), to_double(w).data(), double(lambda), s.B, s.T,
                       s.C, s.K);

    DeviceBf16 d_e(e), d_y(NC);
    DeviceArray<float> d_w(w), d_lambda(std::vector<float>{lambda}), d_g(N);
    auto run = [&] {
      gpu::smear_forward(d_y.get(), d_g.get(), d_e.get(), d_w.get(), d_lambda.get(), s.B, s.T, s.C, s.K, nullptr);
      return std::make_tuple(d_y.download(), d_g.download());
    };
    const auto [y, g] = run();
    require_close_bf16(y, y_ref, "y");
    require_close_rel(g, g_ref, 1e-5, 1e-6, "gates");
    for (int b = 0; b < s.B; ++b) {  // each sequence's first token: y = e exactly, gate 0
      const size_t row = static_cast<size_t>(b) * s.T * s.C;
      REQUIRE(g[static_cast<size_t>(b) * s.T] == 0.0f);
      require_same_bits(std::vector<float>(y.begin() + row, y.begin() + row + s.C),
                        std::vector<float>(e.begin() + row, e.begin() + row + s.C), "y of a first token");
    }
    const auto [y2, g2] = run();
    require_same_bits(y2, y, "y rerun");
    require_same_bits(g2, g, "gates rerun");
  }
}

TEST_CASE("gpu smear backward matches the CPU, accumulates and is deterministic", "[gpu][smear]") {
  for (size_t si = 0; si < kShapes.size(); ++si) {
    const Shape& s = kShapes[si];
    INFO(describe(s));
    const size_t N = static_cast<size_t>(s.B) * s.T, NC = N * s.C;
    const auto e = random_bf16(NC, 1), dy = random_bf16(NC, 4);
    const auto w = random_weights(s.K, 2);
    const float lambda = lambda_for(si);
    const auto dw0 = test::random_vector<float>(static_cast<size_t>(s.K), 6, -0.5f, 0.5f);
    const float dlambda0 = 0.375f;

    // the gates of the CPU forward, as the fp32 values the GPU gets, feed both backwards
    std::vector<double> y(NC), g_fwd(N);
    cpu::smear_forward(y.data(), g_fwd.data(), to_double(e).data(), to_double(w).data(), double(lambda), s.B, s.T,
                       s.C, s.K);
    std::vector<float> g(N);
    for (size_t t = 0; t < N; ++t) g[t] = static_cast<float>(g_fwd[t]);
    std::vector<double> de_ref(NC), dw_ref = to_double(dw0), dlambda_ref = {double(dlambda0)};
    cpu::smear_backward(de_ref.data(), dw_ref.data(), dlambda_ref.data(), to_double(dy).data(), to_double(e).data(),
                        to_double(g).data(), to_double(w).data(), double(lambda), s.B, s.T, s.C, s.K);

    // tolerances of the sums: |dz_t| <= |lambda| g(1-g) sum_c |dy[t,c] e[t-1,c]|, |g r| <= g sum_c |...|
    std::vector<double> dw_atol(static_cast<size_t>(s.K)), dlambda_atol(1);
    std::vector<double> dw_abs(static_cast<size_t>(s.K));
    double dlambda_abs = std::abs(dlambda0);
    for (size_t t = 0; t < N; ++t) {
      if (t % s.T == 0) continue;
      double r_abs = 0;
      for (int c = 0; c < s.C; ++c) r_abs += std::abs(double(dy[t * s.C + c]) * e[(t - 1) * s.C + c]);
      dlambda_abs += g[t] * r_abs;
      const double dz_abs = std::abs(lambda) * g[t] * (1.0 - g[t]) * r_abs;
      for (int i = 0; i < s.K; ++i) dw_abs[i] += dz_abs * std::abs(e[t * s.C + i]);
    }
    for (int i = 0; i < s.K; ++i) dw_atol[i] = 5e-5 * (std::abs(dw0[i]) + dw_abs[i]) + 1e-7;
    dlambda_atol[0] = 5e-5 * dlambda_abs + 1e-7;

    DeviceBf16 d_e(e), d_dy(dy), d_de(NC);
    DeviceArray<float> d_w(w), d_lambda(std::vector<float>{lambda}), d_g(g), d_dw(dw0), d_dlambda(1);
    DeviceArray<float> d_scratch(gpu::smear_backward_scratch_floats(static_cast<int>(N), s.K));
    auto run = [&] {
      d_dw.upload(dw0);
      d_dlambda.upload({dlambda0});
      gpu::smear_backward(d_de.get(), d_dw.get(), d_dlambda.get(), d_dy.get(), d_e.get(), d_g.get(), d_w.get(),
                          d_lambda.get(), s.B, s.T, s.C, s.K, d_scratch.get(), nullptr);
      return std::make_tuple(d_de.download(), d_dw.download(), d_dlambda.download());
    };
    const auto [de, dw, dlambda] = run();
    require_close_bf16(de, de_ref, "de");
    require_close_each(dw, dw_ref, 5e-5, dw_atol, "dw");
    require_close_each(dlambda, dlambda_ref, 5e-5, dlambda_atol, "dlambda");
    if (s.T == 1) {  // nothing smeared: de = dy, the parameter gradients keep their values
      require_same_bits(de, dy, "de with T = 1");
      require_same_bits(dw, dw0, "dw with T = 1");
      REQUIRE(dlambda[0] == dlambda0);
    }

    const auto [de2, dw2, dlambda2] = run();
    require_same_bits(de2, de, "de rerun");
    require_same_bits(dw2, dw, "dw rerun");
    require_same_bits(dlambda2, dlambda, "dlambda rerun");

    // a second call without resetting adds its sums again
    gpu::smear_backward(d_de.get(), d_dw.get(), d_dlambda.get(), d_dy.get(), d_e.get(), d_g.get(), d_w.get(),
                        d_lambda.get(), s.B, s.T, s.C, s.K, d_scratch.get(), nullptr);
    std::vector<double> dw_twice(static_cast<size_t>(s.K)), dw_twice_atol(static_cast<size_t>(s.K));
    for (int i = 0; i < s.K; ++i) {
      dw_twice[i] = 2 * dw_ref[i] - dw0[i];
      dw_twice_atol[i] = 2 * dw_atol[i];
    }
    require_close_each(d_dw.download(), dw_twice, 5e-5, dw_twice_atol, "dw after two calls");
    require_close_each(d_dlambda.download(), {2 * dlambda_ref[0] - dlambda0}, 5e-5, {2 * dlambda_atol[0]},
                       "dlambda after two calls");
  }
}

TEST_CASE("gpu smear: zero lambda, empty batches and bad arguments", "[gpu][smear]") {
  const Shape s{3, 17, 64, 12};
  const size_t N = static_cast<size_t>(s.B) * s.T, NC = N * s.C;
  const auto e = random_bf16(NC, 1), dy = random_bf16(NC, 2);
  DeviceBf16 d_e(e), d_y(NC), d_dy(dy);
  DeviceArray<float> d_w(random_weights(s.K, 3)), d_lambda(std::vector<float>{0.0f}), d_g(N), d_dw(size_t(s.K)),
      d_dlambda(1), d_scratch(gpu::smear_backward_scratch_floats(static_cast<int>(N), s.K));
  // lambda = 0: y = e exactly
  gpu::smear_forward(d_y.get(), d_g.get(), d_e.get(), d_w.get(), d_lambda.get(), s.B, s.T, s.C, s.K, nullptr);
  require_same_bits(d_y.download(), e, "y with lambda 0");
  // B = 0: nothing to do, nothing touched, no scratch needed
  const auto y_before = d_y.download();
  gpu::smear_forward(d_y.get(), d_g.get(), d_e.get(), d_w.get(), d_lambda.get(), 0, s.T, s.C, s.K, nullptr);
  gpu::smear_backward(d_y.get(), d_dw.get(), d_dlambda.get(), d_dy.get(), d_e.get(), d_g.get(), d_w.get(),
                      d_lambda.get(), 0, s.T, s.C, s.K, nullptr, nullptr);
  require_same_bits(d_y.download(), y_before, "y after empty calls");
  REQUIRE(gpu::smear_backward_scratch_floats(0, s.K) == 0);
  // K outside [1, C], y over e, de over dy
  REQUIRE_THROWS_AS(gpu::smear_forward(d_y.get(), d_g.get(), d_e.get(), d_w.get(), d_lambda.get(), s.B, s.T, s.C,
                                       s.C + 1, nullptr),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(
      gpu::smear_forward(d_e.get(), d_g.get(), d_e.get(), d_w.get(), d_lambda.get(), s.B, s.T, s.C, s.K, nullptr),
      std::invalid_argument);
  REQUIRE_THROWS_AS(gpu::smear_backward(d_dy.get(), d_dw.get(), d_dlambda.get(), d_dy.get(), d_e.get(), d_g.get(),
                                        d_w.get(), d_lambda.get(), s.B, s.T, s.C, s.K, d_scratch.get(), nullptr),
                    std::invalid_argument);
}
