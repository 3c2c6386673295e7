// GPU embedding forward/backward against kernels/cpu/embedding.h.
// Tolerances: forward is exact (one fp32 add, then the same bf16 rounding);
// backward dwte/dwpe (fp32) |gpu - ref| <= 1e-5 |ref| + 1e-5 max|ref| (only
// the summation order differs); the backward is bit-identical when rerun.
#include "gpu_test_util.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cuda/embedding.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {
struct Shape {
  int B, T, C, V;
  bool pos;
};
const std::vector<Shape> kShapes = {{1, 1, 64, 10, false},  {2, 7, 96, 50, true},  {3, 129, 768, 1000, true},
                                    {1, 33, 77, 5, true},    {2, 5, 1000, 3, false}, {4, 64, 64, 50257, true},
                                    {1, 129, 8, 1, true}};
}  // namespace

TEST_CASE("gpu embedding backward plan is a CSR of ascending positions", "[gpu][embedding]") {
  const std::vector<int32_t> tokens = {3, 1, 3, 0, 1, 3};
  const auto plan = gpu::plan_embedding_backward(tokens.data(), static_cast<int>(tokens.size()), 5);
  REQUIRE(plan.ids == std::vector<int32_t>{0, 1, 3});
  REQUIRE(plan.offsets == std::vector<int32_t>{0, 1, 3, 6});
  REQUIRE(plan.positions == std::vector<int32_t>{3, 1, 4, 0, 2, 5});
  const std::vector<int32_t> bad = {0, 5};
  test::require_error([&] { gpu::plan_embedding_backward(bad.data(), 2, 5); }, {"token id 5", "position 1"});
}

TEST_CASE("gpu embedding forward matches the CPU exactly", "[gpu][embedding]") {
  for (const Shape& s : kShapes) {
    INFO("B=" << s.B << " T=" << s.T << " C=" << s.C << " V=" << s.V << " pos=" << s.pos);
    const size_t N = size_t(s.B) * s.T;
    const auto wte = random_bf16(size_t(s.V) * s.C, 1);
    const auto wpe = random_bf16(size_t(s.T) * s.C, 2);
    const auto tokens = random_ints(N, 3, 0, s.V);
    std::vector<float> ref(N * s.C);
    cpu::embedding_forward(ref.data(), tokens.data(), wte.data(), s.pos ? wpe.data() : nullptr, s.B, s.T, s.C);

    DeviceBf16 d_wte(wte), d_wpe(wpe), d_out(N * s.C);
    DeviceArray<int32_t> d_tok(tokens);
    gpu::embedding_forward(d_out.get(), d_tok.get(), d_wte.get(), s.pos ? d_wpe.get() : nullptr, s.B, s.T, s.C, s.V,
                           nullptr);
    require_same_bits(d_out.download(), round_bf16(ref), "embedding out");
  }
}

TEST_CASE("gpu embedding forward gives NaN for a token outside the vocabulary", "[gpu][embedding]") {
  const int B = 1, T = 3, C = 16, V = 4;
  const std::vector<int32_t> tokens = {0, 4, 2};
  DeviceBf16 d_wte(random_bf16(size_t(V) * C, 1)), d_out(size_t(B) * T * C);
  DeviceArray<int32_t> d_tok(tokens);
  gpu::embedding_forward(d_out.get(), d_tok.get(), d_wte.get(), nullptr, B, T, C, V, nullptr);
  const auto out = d_out.download();
  for (int c = 0; c < C; ++c) {
    REQUIRE(std::isfinite(out[c]));
    REQUIRE(std::isnan(out[C + c]));
    REQUIRE(std::isfinite(out[2 * C + c]));
  }
}

TEST_CASE("gpu embedding backward matches the CPU and is deterministic", "[gpu][embedding]") {
  for (const Shape& s : kShapes) {
    INFO("B=" << s.B << " T=" << s.T << " C=" << s.C << " V=" << s.V << " pos=" << s.pos);
    const int N = s.B * s.T;
    // skewed ids: a few tokens repeat many times, as in text
    auto tokens = random_ints(N, 4, 0, s.V);
    for (int i = 0; i < N; i += 3) tokens[i] = tokens[0];
    const auto dout = random_bf16(size_t(N) * s.C, 5);
    const auto dwte0 = test::random_vector<float>(size_t(s.V) * s.C, 6);
    const auto dwpe0 = test::random_vector<float>(size_t(s.T) * s.C, 7);
    std::vector<float> dwte_ref = dwte0, dwpe_ref = dwpe0;
    cpu::embedding_backward(dwte_ref.data(), s.pos ? dwpe_ref.data() : nullptr, dout.data(), tokens.data(), s.B, s.T,
                            s.C);

    const auto plan = gpu::plan_embedding_backward(tokens.data(), N, s.V);
    DeviceArray<int32_t> d_ids(plan.ids), d_off(plan.offsets), d_pos(plan.positions);
    DeviceBf16 d_dout(dout);
    DeviceArray<float> d_dwte(dwte0), d_dwpe(dwpe0);
    auto run = [&] {
      d_dwte.upload(dwte0);
      d_dwpe.upload(dwpe0);
      gpu::embedding_backward(d_dwte.get(), s.pos ? d_dwpe.get() : nullptr, d_dout.get(), d_ids.get(), d_off.get(),
                              d_pos.get(), static_cast<int>(plan.ids.size()), s.B, s.T, s.C, nullptr);
      return std::make_pair(d_dwte.download(), d_dwpe.download());
    };
    const auto [dwte, dwpe] = run();
    require_close_rel(dwte, dwte_ref, 1e-5, 1e-5, "dwte");
    require_close_rel(dwpe, dwpe_ref, 1e-5, 1e-5, "dwpe");
    const auto [dwte2, dwpe2] = run();
    require_same_bits(dwte, dwte2, "dwte rerun");
    require_same_bits(dwpe, dwpe2, "dwpe rerun");
  }
}
