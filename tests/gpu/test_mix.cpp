// GPU scalar-weighted mixes against kernels/cpu/mix.h, with constant, learned,
// one-minus and sigmoid coefficients.
// Tolerances: out, dx, dy (bf16) 1e-2 relative + 1e-4 max|ref|; the scalar
// gradients (fp32, summed over n) against a double reference with
// |gpu - ref| <= 1e-5 |ref| + 1e-5 * (|initial| + sum |terms|); reruns are
// bit-identical (including the scalar gradients).
#include <tuple>

#include "gpu_test_util.h"
#include "kernels/cpu/mix.h"
#include "kernels/cuda/mix.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

const std::vector<size_t> kSizes = {1, 7, 8, 1000, 129 * 768, 1000003};

void require_scalar(float got, double ref, double sum_abs, const std::string& what) {
  INFO(what << ": got " << got << " expected " << ref);
  REQUIRE(std::isfinite(got));
  REQUIRE(std::abs(got - ref) <= 1e-5 * std::abs(ref) + 1e-5 * sum_abs + 1e-30);
}

}  // namespace

TEST_CASE("gpu mix forward matches the CPU for learned and constant weights", "[gpu][mix]") {
  const std::vector<float> params = {0.7f, -0.3f};
  DeviceArray<float> d_params(params);
  for (size_t n : kSizes)
    for (int mode = 0; mode < 3; ++mode) {
      INFO("n=" << n << " mode=" << mode);
      // mode 0: learned a, b; 1: constant 1, learned b; 2: value residual (1-lam, lam)
      gpu::MixCoef ca = gpu::MixCoef::learned(d_params.get()), cb = gpu::MixCoef::learned(d_params.get() + 1);
      float a = params[0], b = params[1];
      if (mode == 1) {
        ca = gpu::MixCoef::constant(1.0f);
        a = 1.0f;
      }
      if (mode == 2) {
        ca = gpu::MixCoef::one_minus(d_params.get());
        cb = gpu::MixCoef::learned(d_params.get());
        a = 1.0f - params[0];
        b = params[0];
      }
      const auto x = random_bf16(n, 1), y = random_bf16(n, 2);
      std::vector<float> ref(n);
      cpu::mix_forward(ref.data(), x.data(), y.data(), a, b, n);
      DeviceBf16 d_x(x), d_y(y), d_out(n);
      gpu::mix_forward(d_out.get(), d_x.get(), d_y.get(), ca, cb, n, nullptr);
      const auto out = d_out.download();
      require_close_bf16(out, ref, "mix out");
      gpu::mix_forward(d_x.get(), d_x.get(), d_y.get(), ca, cb, n, nullptr);  // in place over x
      require_same_bits(d_x.download(), out, "mix out in place");
    }
}

TEST_CASE("gpu mix backward matches the CPU and is deterministic", "[gpu][mix]") {
  const std::vector<float> params = {0.7f, -0.3f};
  DeviceArray<float> d_params(params);
  DeviceArray<float> d_scratch(gpu::mix_backward_scratch_floats());
  for (size_t n : kSizes)
    for (bool acc : {false, true})
      for (bool unaligned : {false, true}) {
        if (unaligned && n < 8) continue;
        INFO("n=" << n << " accumulate=" << acc << " unaligned=" << unaligned);
        const size_t off = unaligned ? 1 : 0;
        const auto x = random_bf16(n + off, 1), y = random_bf16(n + off, 2), dout = random_bf16(n + off, 3);
        const auto dx0 = random_bf16(n + off, 4), dy0 = random_bf16(n + off, 5);
        const std::vector<float> grads0 = {0.25f, -0.5f};
        // CPU on the elements [off, off + n)
        // CPU for dx, dy; the scalar gradients' reference is summed in double here
        std::vector<float> dx_ref(dx0.begin() + off, dx0.end()), dy_ref(dy0.begin() + off, dy0.end());
        cpu::mix_backward(dx_ref.data(), dy_ref.data(), static_cast<float*>(nullptr), static_cast<float*>(nullptr),
                          dout.data() + off, x.data() + off, y.data() + off, params[0], params[1], n, acc, acc);
        double da_ref = grads0[0], db_ref = grads0[1], abs_a = std::abs(grads0[0]), abs_b = std::abs(grads0[1]);
        for (size_t i = off; i < n + off; ++i) {
          da_ref += double(dout[i]) * x[i];
          db_ref += double(dout[i]) * y[i];
          abs_a += std::abs(double(dout[i]) * x[i]);
          abs_b += std::abs(double(dout[i]) * y[i]);
        }

        DeviceBf16 d_x(x), d_y(y), d_dout(dout), d_dx(dx0), d_dy(dy0);
        DeviceArray<float> d_grads(grads0);
        auto run = [&] {
          d_dx.upload(dx0);
          d_dy.upload(dy0);
          d_grads.upload(grads0);
          gpu::mix_backward(d_dx.get() + off, d_dy.get() + off, d_grads.get(), d_grads.get() + 1, d_dout.get() + off,
                            d_x.get() + off, d_y.get() + off, gpu::MixCoef::learned(d_params.get()),
                            gpu::MixCoef::learned(d_params.get() + 1), n, acc, acc, d_scratch.get(), nullptr);
          auto dx = d_dx.download(), dy = d_dy.download();
          return std::make_tuple(std::vector<float>(dx.begin() + off, dx.end()),
                                 std::vector<float>(dy.begin() + off, dy.end()), d_grads.download());
        };
        const auto [dx, dy, grads] = run();
        require_close_bf16(dx, dx_ref, "dx");
        require_close_bf16(dy, dy_ref, "dy");
        require_scalar(grads[0], da_ref, abs_a, "da");
        require_scalar(grads[1], db_ref, abs_b, "db");
        const auto [dx2, dy2, grads2] = run();
        require_same_bits(dx, dx2, "dx rerun");
        require_same_bits(dy, dy2, "dy rerun");
        require_same_bits(grads, grads2, "scalar grads rerun");
      }
}

TEST_CASE("gpu mix backward: value residual form, null outputs, dx over dout", "[gpu][mix]") {
  const size_t n = 129 * 96 + 3;
  const std::vector<float> lam = {0.3f};
  DeviceArray<float> d_lam(lam), d_scratch(gpu::mix_backward_scratch_floats());
  const auto v_raw = random_bf16(n, 1), v_first = random_bf16(n, 2), dv = random_bf16(n, 3);
  // v = (1 - lam) v_raw + lam v_first: dlam = sum dv * (v_first - v_raw)
  double dlam_ref = 0.125, sum_abs = 0.125;
  for (size_t i = 0; i < n; ++i) {
    dlam_ref += double(dv[i]) * (double(v_first[i]) - v_raw[i]);
    sum_abs += std::abs(double(dv[i]) * v_raw[i]) + std::abs(double(dv[i]) * v_first[i]);
  }
  std::vector<float> dv_raw_ref(n);
  for (size_t i = 0; i < n; ++i) dv_raw_ref[i] = (1.0f - lam[0]) * dv[i];

  DeviceBf16 d_vraw(v_raw), d_vfirst(v_first), d_dv(dv);
  DeviceArray<float> d_dlam(std::vector<float>{0.125f});
  // dx written over dout, dy not wanted, both scalar terms into the same gradient
  gpu::mix_backward(d_dv.get(), nullptr, d_dlam.get(), d_dlam.get(), d_dv.get(), d_vraw.get(), d_vfirst.get(),
                    gpu::MixCoef::one_minus(d_lam.get()), gpu::MixCoef::learned(d_lam.get()), n, false, false,
                    d_scratch.get(), nullptr);
  require_close_bf16(d_dv.download(), dv_raw_ref, "dv_raw");
  require_scalar(d_dlam.download()[0], dlam_ref, sum_abs, "dlam");

  // no scalar gradients: no scratch needed
  DeviceBf16 d_dout(dv), d_dy(n);
  gpu::mix_backward(nullptr, d_dy.get(), nullptr, nullptr, d_dout.get(), nullptr, nullptr, gpu::MixCoef::constant(1.0f),
                    gpu::MixCoef::constant(2.0f), n, false, false, nullptr, nullptr);
  std::vector<float> dy_ref(n);
  for (size_t i = 0; i < n; ++i) dy_ref[i] = 2.0f * dv[i];
  require_close_bf16(d_dy.download(), dy_ref, "dy constant");
}

TEST_CASE("gpu mix: sigmoid coefficients (gated U-net skips) match a CPU computation", "[gpu][mix]") {
  // a = sigmoid(p0), b = sigmoid(p1): the forward's values and the parameters'
  // gradients s(1-s) * sum(dout * x|y), against float values and double sums.
  const std::vector<float> params = {-1.5f, 0.8f};
  DeviceArray<float> d_params(params), d_scratch(gpu::mix_backward_scratch_floats());
  const gpu::MixCoef ca = gpu::MixCoef::sigmoid_of(d_params.get()), cb = gpu::MixCoef::sigmoid_of(d_params.get() + 1);
  const double sa = 1.0 / (1.0 + std::exp(-double(params[0]))), sb = 1.0 / (1.0 + std::exp(-double(params[1])));
  for (size_t n : kSizes)
    for (bool acc : {false, true}) {
      INFO("n=" << n << " accumulate=" << acc);
      const auto x = random_bf16(n, 1), y = random_bf16(n, 2), dout = random_bf16(n, 3);
      const auto dx0 = random_bf16(n, 4), dy0 = random_bf16(n, 5);
      const std::vector<float> grads0 = {0.25f, -0.5f};

      std::vector<float> out_ref(n);
      cpu::mix_forward(out_ref.data(), x.data(), y.data(), float(sa), float(sb), n);
      DeviceBf16 d_x(x), d_y(y), d_out(n);
      gpu::mix_forward(d_out.get(), d_x.get(), d_y.get(), ca, cb, n, nullptr);
      require_close_bf16(d_out.download(), out_ref, "sigmoid mix out");

      std::vector<float> dx_ref = dx0, dy_ref = dy0;
      cpu::mix_backward(dx_ref.data(), dy_ref.data(), static_cast<float*>(nullptr), static_cast<float*>(nullptr),
                        dout.data(), x.data(), y.data(), float(sa), float(sb), n, acc, acc);
      double sum_x = 0, sum_y = 0, abs_x = 0, abs_y = 0;
      for (size_t i = 0; i < n; ++i) {
        sum_x += double(dout[i]) * x[i];
        sum_y += double(dout[i]) * y[i];
        abs_x += std::abs(double(dout[i]) * x[i]);
        abs_y += std::abs(double(dout[i]) * y[i]);
      }
      const double da_ref = grads0[0] + sa * (1 - sa) * sum_x, db_ref = grads0[1] + sb * (1 - sb) * sum_y;

      DeviceBf16 d_dout(dout), d_dx(dx0), d_dy(dy0);
      DeviceArray<float> d_grads(grads0);
      auto run = [&] {
        d_dx.upload(dx0);
        d_dy.upload(dy0);
        d_grads.upload(grads0);
        gpu::mix_backward(d_dx.get(), d_dy.get(), d_grads.get(), d_grads.get() + 1, d_dout.get(), d_x.get(),
                          d_y.get(), ca, cb, n, acc, acc, d_scratch.get(), nullptr);
        return std::make_tuple(d_dx.download(), d_dy.download(), d_grads.download());
      };
      const auto [dx, dy, grads] = run();
      require_close_bf16(dx, dx_ref, "dx");
      require_close_bf16(dy, dy_ref, "dy");
      require_scalar(grads[0], da_ref, std::abs(grads0[0]) + sa * (1 - sa) * abs_x, "d p0");
      require_scalar(grads[1], db_ref, std::abs(grads0[1]) + sb * (1 - sb) * abs_y, "d p1");
      const auto [dx2, dy2, grads2] = run();
      require_same_bits(dx2, dx, "dx rerun");
      require_same_bits(dy2, dy, "dy rerun");
      require_same_bits(grads2, grads, "scalar grads rerun");
    }

  // the U-net skip's use: x + sigmoid(w) skip, only dskip and dw wanted; a
  // sigmoid coefficient without its parameter is refused
  const size_t n = 1000;
  const auto x = random_bf16(n, 6), skip = random_bf16(n, 7), dout = random_bf16(n, 8);
  DeviceBf16 d_x(x), d_skip(skip), d_dout(dout), d_dskip(n);
  DeviceArray<float> d_dw(std::vector<float>{0.0f});
  gpu::mix_backward(nullptr, d_dskip.get(), nullptr, d_dw.get(), d_dout.get(), d_x.get(), d_skip.get(),
                    gpu::MixCoef::constant(1.0f), ca, n, false, false, d_scratch.get(), nullptr);
  double sum = 0, sum_abs = 0;
  std::vector<float> dskip_ref(n);
  for (size_t i = 0; i < n; ++i) {
    sum += double(dout[i]) * skip[i];
    sum_abs += std::abs(double(dout[i]) * skip[i]);
    dskip_ref[i] = float(sa) * dout[i];
  }
  require_close_bf16(d_dskip.download(), dskip_ref, "dskip");
  require_scalar(d_dw.download()[0], sa * (1 - sa) * sum, sa * (1 - sa) * sum_abs, "dw");
  REQUIRE_THROWS_AS(gpu::mix_forward(d_x.get(), d_x.get(), d_skip.get(), gpu::MixCoef::constant(1.0f),
                                     gpu::MixCoef::sigmoid_of(nullptr), n, nullptr),
                    std::invalid_argument);
}
