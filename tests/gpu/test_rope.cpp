// GPU RoPE forward/backward against kernels/cpu/rope.h (half-split layout,
// (B, T, H, D), fp32 cos/sin tables from cpu::rope_tables<float>).
// Tolerance: bf16 outputs 1e-2 relative + 1e-4 max|ref|; in place gives the
// same bits as out of place; reruns are bit-identical.
#include "gpu_test_util.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/rope.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

TEST_CASE("gpu rope forward and backward match the CPU", "[gpu][rope]") {
  struct Shape {
    int B, T, H, D;
  };
  for (const Shape& s : std::vector<Shape>{
           {1, 1, 1, 64}, {2, 7, 3, 64}, {1, 129, 4, 128}, {2, 5, 2, 96}, {3, 9, 2, 20}, {1, 3, 1, 2}}) {
    INFO("B=" << s.B << " T=" << s.T << " H=" << s.H << " D=" << s.D);
    const size_t n = size_t(s.B) * s.T * s.H * s.D;
    const int T_max = s.T + 5;  // tables longer than the sequence, as in the model
    std::vector<float> cos_t, sin_t;
    cpu::rope_tables(cos_t, sin_t, T_max, s.D, 10000.0);
    const auto x = random_bf16(n, 1, -2.0f, 2.0f);
    const auto dy = random_bf16(n, 2);
    std::vector<float> y_ref(n), dx_ref(n);
    cpu::rope_forward(y_ref.data(), x.data(), cos_t.data(), sin_t.data(), s.B, s.T, s.H, s.D);
    cpu::rope_backward(dx_ref.data(), dy.data(), cos_t.data(), sin_t.data(), s.B, s.T, s.H, s.D);

    DeviceArray<float> d_cos(cos_t), d_sin(sin_t);
    DeviceBf16 d_x(x), d_y(n), d_dy(dy), d_dx(n);
    gpu::rope_forward(d_y.get(), d_x.get(), d_cos.get(), d_sin.get(), s.B, s.T, s.H, s.D, nullptr);
    const auto y = d_y.download();
    require_close_bf16(y, y_ref, "rope forward");
    gpu::rope_backward(d_dx.get(), d_dy.get(), d_cos.get(), d_sin.get(), s.B, s.T, s.H, s.D, nullptr);
    const auto dx = d_dx.download();
    require_close_bf16(dx, dx_ref, "rope backward");

    // in place
    gpu::rope_forward(d_x.get(), d_x.get(), d_cos.get(), d_sin.get(), s.B, s.T, s.H, s.D, nullptr);
    require_same_bits(d_x.download(), y, "rope forward in place");
    gpu::rope_backward(d_dy.get(), d_dy.get(), d_cos.get(), d_sin.get(), s.B, s.T, s.H, s.D, nullptr);
    require_same_bits(d_dy.download(), dx, "rope backward in place");

    // rerun
    d_dy.upload(dy);
    gpu::rope_backward(d_dx.get(), d_dy.get(), d_cos.get(), d_sin.get(), s.B, s.T, s.H, s.D, nullptr);
    require_same_bits(d_dx.download(), dx, "rope backward rerun");
  }
}

TEST_CASE("gpu rope rejects an odd head dimension", "[gpu][rope]") {
  test::require_error([] { gpu::rope_forward(nullptr, nullptr, nullptr, nullptr, 1, 1, 1, 63, nullptr); },
                      {"rope_forward", "even"});
}
