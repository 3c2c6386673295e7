// GPU attention output gate against kernels/cpu/attention_gate.h, on the same
// bf16-rounded activations and fp32 weights, for several shapes: token counts
// that are not multiples of the kernels' block or chunk sizes, head dims with
// and without 16-byte packs, K = 12 (the records' gate) and K = C.
// Tolerances: bf16 outputs (y, da, dx) 1e-2 relative + 1e-4 max|ref|; the gates
// (fp32) 1e-5 relative + 1e-6; dW (fp32, summed over tokens on top of its
// initial value) 5e-5 relative + 5e-5 * (|initial| + sum_n |x[n,i]| * g(1-g) *
// sum_d |dy a|) per weight. dx's channels from K on are untouched (exact).
// In-place calls (y over a, da over dy) and reruns give the same bits.
#include <tuple>

#include "gpu_test_util.h"
#include "kernels/cpu/attention_gate.h"
#include "kernels/cuda/attention_gate.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

struct Shape {
  int N, C, H, D, K;
};

// a is (N, H*D) with H*D = C, as in the model.
const std::vector<Shape> kShapes = {
    {1, 64, 4, 16, 12},     {7, 64, 4, 16, 64},     {37, 96, 3, 32, 12},   {129, 60, 5, 12, 12},
    {300, 768, 6, 128, 12}, {300, 768, 6, 128, 768}, {1000, 40, 5, 8, 40}, {517, 60, 5, 12, 60},
};

// W uniform in +-2/sqrt(K): the gate logits have a standard deviation near 0.7
// for x uniform in +-1, so the sigmoids are neither saturated nor flat.
std::vector<float> random_weights(const Shape& s, uint64_t seed) {
  const float bound = 2.0f / std::sqrt(static_cast<float>(s.K));
  return test::random_vector<float>(static_cast<size_t>(s.H) * s.K, seed, -bound, bound);
}

std::string describe(const Shape& s) {
  return "N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) + " H=" + std::to_string(s.H) +
         " D=" + std::to_string(s.D) + " K=" + std::to_string(s.K);
}

}  // namespace

TEST_CASE("gpu attention gate forward matches the CPU", "[gpu][attention_gate]") {
  for (const Shape& s : kShapes) {
    INFO(describe(s));
    const size_t NC = static_cast<size_t>(s.N) * s.C, NH = static_cast<size_t>(s.N) * s.H;
    const auto x = random_bf16(NC, 1), a = random_bf16(NC, 2);
    const auto W = random_weights(s, 3);
    std::vector<float> y_ref(NC), g_ref(NH);
    cpu::attention_gate_forward(y_ref.data(), g_ref.data(), a.data(), x.data(), W.data(), s.N, s.C, s.H, s.D, s.K);

    DeviceBf16 d_x(x), d_a(a), d_y(NC);
    DeviceArray<float> d_W(W), d_g(NH);
    gpu::attention_gate_forward(d_y.get(), d_g.get(), d_a.get(), d_x.get(), d_W.get(), s.N, s.C, s.H, s.D, s.K,
                                nullptr);
    const auto y = d_y.download();
    require_close_bf16(y, y_ref, "y");
    require_close_rel(d_g.download(), g_ref, 1e-5, 1e-6, "gates");

    gpu::attention_gate_forward(d_a.get(), d_g.get(), d_a.get(), d_x.get(), d_W.get(), s.N, s.C, s.H, s.D, s.K,
                                nullptr);  // in place over a
    require_same_bits(d_a.download(), y, "y in place");
  }
}

TEST_CASE("gpu attention gate backward matches the CPU and is deterministic", "[gpu][attention_gate]") {
  for (const Shape& s : kShapes) {
    INFO(describe(s));
    const size_t NC = static_cast<size_t>(s.N) * s.C, NH = static_cast<size_t>(s.N) * s.H;
    const size_t HK = static_cast<size_t>(s.H) * s.K;
    const auto x = random_bf16(NC, 1), a = random_bf16(NC, 2), dy = random_bf16(NC, 4), dx0 = random_bf16(NC, 5);
    const auto W = random_weights(s, 3);
    const auto dW0 = test::random_vector<float>(HK, 6, -0.5f, 0.5f);

    // the gates from the CPU forward feed both backwards
    std::vector<float> y(NC), g(NH);
    cpu::attention_gate_forward(y.data(), g.data(), a.data(), x.data(), W.data(), s.N, s.C, s.H, s.D, s.K);
    std::vector<float> da_ref(NC), dW_ref = dW0, dx_ref = dx0;
    cpu::attention_gate_backward(da_ref.data(), dW_ref.data(), dx_ref.data(), dy.data(), a.data(), g.data(), x.data(),
                                 W.data(), s.N, s.C, s.H, s.D, s.K);
    // dW's tolerance: each weight's sum of |terms| (with |dz| bounded by g(1-g) sum_d |dy a|)
    std::vector<double> dW_atol(HK);
    for (int h = 0; h < s.H; ++h)
      for (int i = 0; i < s.K; ++i) {
        double sum = std::abs(dW0[h * s.K + i]);
        for (int n = 0; n < s.N; ++n) {
          const float gate = g[static_cast<size_t>(n) * s.H + h];
          double dg_abs = 0;
          for (int d = 0; d < s.D; ++d) {
            const size_t e = (static_cast<size_t>(n) * s.H + h) * s.D + d;
            dg_abs += std::abs(double(dy[e]) * a[e]);
          }
          sum += std::abs(double(x[static_cast<size_t>(n) * s.C + i])) * gate * (1.0 - gate) * dg_abs;
        }
        dW_atol[h * s.K + i] = 5e-5 * sum + 1e-7;
      }

    DeviceBf16 d_x(x), d_a(a), d_dy(dy), d_da(NC), d_dx(dx0);
    DeviceArray<float> d_W(W), d_g(g), d_dW(dW0);
    DeviceArray<float> d_scratch(gpu::attention_gate_backward_scratch_floats(s.N, s.H, s.K));
    auto run = [&](bool in_place) {
      d_dW.upload(dW0);
      d_dx.upload(dx0);
      d_dy.upload(dy);
      bf16* da = in_place ? d_dy.get() : d_da.get();
      gpu::attention_gate_backward(da, d_dW.get(), d_dx.get(), d_dy.get(), d_a.get(), d_g.get(), d_x.get(),
                                   d_W.get(), s.N, s.C, s.H, s.D, s.K, d_scratch.get(), nullptr);
      return std::make_tuple(in_place ? d_dy.download() : d_da.download(), d_dW.download(), d_dx.download());
    };
    const auto [da, dW, dx] = run(false);
    require_close_bf16(da, da_ref, "da");
    require_close_each(dW, std::vector<double>(dW_ref.begin(), dW_ref.end()), 5e-5, dW_atol, "dW");
    require_close_bf16(dx, dx_ref, "dx");
    std::vector<float> dx_rest, dx0_rest;  // channels K.. of dx are not touched
    for (int n = 0; n < s.N; ++n)
      for (int i = s.K; i < s.C; ++i) {
        dx_rest.push_back(dx[static_cast<size_t>(n) * s.C + i]);
        dx0_rest.push_back(dx0[static_cast<size_t>(n) * s.C + i]);
      }
    require_same_bits(dx_rest, dx0_rest, "dx beyond K");

    const auto [da2, dW2, dx2] = run(true);  // da over dy, and a rerun
    require_same_bits(da2, da, "da in place");
    require_same_bits(dW2, dW, "dW rerun");
    require_same_bits(dx2, dx, "dx rerun");
  }
}

TEST_CASE("gpu attention gate: zero weights give gates of one half and no tokens do nothing",
          "[gpu][attention_gate]") {
  const Shape s{33, 64, 4, 16, 12};
  const size_t NC = static_cast<size_t>(s.N) * s.C;
  const auto x = random_bf16(NC, 1), a = random_bf16(NC, 2);
  DeviceBf16 d_x(x), d_a(a), d_y(NC);
  DeviceArray<float> d_W(std::vector<float>(static_cast<size_t>(s.H) * s.K, 0.0f)), d_g(size_t(s.N) * s.H);
  gpu::attention_gate_forward(d_y.get(), d_g.get(), d_a.get(), d_x.get(), d_W.get(), s.N, s.C, s.H, s.D, s.K,
                              nullptr);
  std::vector<float> half_a(NC);
  for (size_t i = 0; i < NC; ++i) half_a[i] = 0.5f * a[i];  // exact in bf16
  require_same_bits(d_y.download(), half_a, "y = a / 2");
  require_same_bits(d_g.download(), std::vector<float>(size_t(s.N) * s.H, 0.5f), "gates");
  // N = 0: nothing to do, nothing touched, no scratch needed
  gpu::attention_gate_forward(d_y.get(), d_g.get(), d_a.get(), d_x.get(), d_W.get(), 0, s.C, s.H, s.D, s.K, nullptr);
  gpu::attention_gate_backward(d_y.get(), d_W.get(), d_x.get(), d_a.get(), d_a.get(), d_g.get(), d_x.get(), d_W.get(),
                               0, s.C, s.H, s.D, s.K, nullptr, nullptr);
  require_same_bits(d_y.download(), half_a, "y after empty calls");
  REQUIRE_THROWS_AS(gpu::attention_gate_forward(d_y.get(), d_g.get(), d_a.get(), d_x.get(), d_W.get(), s.N, s.C, s.H,
                                                s.D, s.C + 1, nullptr),
                    std::invalid_argument);
}
