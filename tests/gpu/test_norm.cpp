// GPU RMSNorm / LayerNorm (and the fused residual variants) against
// kernels/cpu/norm.h, on the same bf16-rounded inputs.
// Tolerances: bf16 outputs (y, dx) 1e-2 relative + 1e-4 max|ref|; rstd, mean
// (fp32) 1e-5 relative; dweight/dbias (fp32 sums over rows) 1e-5 relative +
// 1e-5 * (|initial| + sum over rows of |term|) per column; residual_out exact.
// Backward reruns are bit-identical.
#include <functional>
#include <tuple>

#include "gpu_test_util.h"
#include "kernels/cpu/norm.h"
#include "kernels/cuda/norm.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

const std::vector<int> kRows = {1, 7, 129};
const std::vector<int> kCols = {64, 96, 768, 1000, 77};
constexpr float kEps = 1e-5f;

// Per-column tolerance for a sum over rows of terms(r, c), on top of an initial value.
std::vector<double> column_atol(const std::vector<float>& init, int rows, int C,
                                const std::function<double(int, int)>& term) {
  std::vector<double> atol(C);
  for (int c = 0; c < C; ++c) {
    double s = std::abs(init[c]);
    for (int r = 0; r < rows; ++r) s += std::abs(term(r, c));
    atol[c] = 1e-5 * s + 1e-7;
  }
  return atol;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST_CASE("gpu rmsnorm forward matches the CPU", "[gpu][norm]") {
  for (int rows : kRows)
    for (int C : kCols)
      for (bool with_weight : {true, false}) {
        INFO("rows=" << rows << " C=" << C << " weight=" << with_weight);
        const auto x = random_bf16(size_t(rows) * C, 1, -2.0f, 2.0f);
        const auto w = random_bf16(C, 2, 0.5f, 1.5f);
        std::vector<float> y_ref(x.size()), rstd_ref(rows);
        cpu::rmsnorm_forward(y_ref.data(), rstd_ref.data(), x.data(), with_weight ? w.data() : nullptr, rows, C, kEps);

        DeviceBf16 d_x(x), d_w(w), d_y(x.size());
        DeviceArray<float> d_rstd(rows);
        gpu::rmsnorm_forward(d_y.get(), d_rstd.get(), d_x.get(), with_weight ? d_w.get() : nullptr, rows, C, kEps,
                             nullptr);
        require_close_bf16(d_y.download(), y_ref, "rmsnorm y");
        require_close_rel(d_rstd.download(), rstd_ref, 1e-5, 0, "rmsnorm rstd");
      }
}

TEST_CASE("gpu layernorm forward matches the CPU", "[gpu][norm]") {
  for (int rows : kRows)
    for (int C : kCols) {
      INFO("rows=" << rows << " C=" << C);
      const auto x = random_bf16(size_t(rows) * C, 1, -1.0f, 3.0f);
      const auto w = random_bf16(C, 2, 0.5f, 1.5f);
      const auto b = random_bf16(C, 3, -0.5f, 0.5f);
      std::vector<float> y_ref(x.size()), mean_ref(rows), rstd_ref(rows);
      cpu::layernorm_forward(y_ref.data(), mean_ref.data(), rstd_ref.data(), x.data(), w.data(), b.data(), rows, C,
                             kEps);

      DeviceBf16 d_x(x), d_w(w), d_b(b), d_y(x.size());
      DeviceArray<float> d_mean(rows), d_rstd(rows);
      gpu::layernorm_forward(d_y.get(), d_mean.get(), d_rstd.get(), d_x.get(), d_w.get(), d_b.get(), rows, C, kEps,
                             nullptr);
      require_close_bf16(d_y.download(), y_ref, "layernorm y");
      require_close_rel(d_mean.download(), mean_ref, 1e-5, 1e-5, "layernorm mean");
      require_close_rel(d_rstd.download(), rstd_ref, 1e-5, 0, "layernorm rstd");
    }
}

TEST_CASE("gpu fused residual + norm forward matches add then norm", "[gpu][norm]") {
  for (int rows : kRows)
    for (int C : kCols)
      for (bool layernorm : {false, true})
        for (bool in_place : {false, true}) {
          INFO("rows=" << rows << " C=" << C << " layernorm=" << layernorm << " in_place=" << in_place);
          const auto a = random_bf16(size_t(rows) * C, 1, -2.0f, 2.0f);
          const auto b = random_bf16(size_t(rows) * C, 2, -1.0f, 1.0f);
          const auto w = random_bf16(C, 3, 0.5f, 1.5f);
          const auto bias = random_bf16(C, 4, -0.5f, 0.5f);
          std::vector<float> sum(a.size());
          for (size_t i = 0; i < a.size(); ++i) sum[i] = round_bf16(a[i] + b[i]);
          std::vector<float> y_ref(a.size()), mean_ref(rows), rstd_ref(rows);
          if (layernorm)
            cpu::layernorm_forward(y_ref.data(), mean_ref.data(), rstd_ref.data(), sum.data(), w.data(), bias.data(),
                                   rows, C, kEps);
          else
            cpu::rmsnorm_forward(y_ref.data(), rstd_ref.data(), sum.data(), w.data(), rows, C, kEps);

          DeviceBf16 d_a(a), d_b(b), d_w(w), d_bias(bias), d_res(a.size()), d_y(a.size());
          DeviceArray<float> d_mean(rows), d_rstd(rows);
          bf16* res = in_place ? d_a.get() : d_res.get();
          if (layernorm)
            gpu::residual_layernorm_forward(res, d_y.get(), d_mean.get(), d_rstd.get(), d_a.get(), d_b.get(),
                                            d_w.get(), d_bias.get(), rows, C, kEps, nullptr);
          else
            gpu::residual_rmsnorm_forward(res, d_y.get(), d_rstd.get(), d_a.get(), d_b.get(), d_w.get(), rows, C,
                                          kEps, nullptr);
          require_same_bits(in_place ? d_a.download() : d_res.download(), sum, "residual_out");
          require_close_bf16(d_y.download(), y_ref, "normed");
          require_close_rel(d_rstd.download(), rstd_ref, 1e-5, 0, "rstd");
          if (layernorm) require_close_rel(d_mean.download(), mean_ref, 1e-5, 1e-5, "mean");
        }
}

TEST_CASE("gpu rmsnorm backward matches the CPU and is deterministic", "[gpu][norm]") {
  for (int rows : kRows)
    for (int C : kCols)
      for (bool with_weight : {true, false})
        for (bool accumulate : {false, true}) {
          INFO("rows=" << rows << " C=" << C << " weight=" << with_weight << " accumulate=" << accumulate);
          const auto x = random_bf16(size_t(rows) * C, 1, -2.0f, 2.0f);
          const auto w = random_bf16(C, 2, 0.5f, 1.5f);
          const auto dout = random_bf16(size_t(rows) * C, 3);
          const auto dx0 = random_bf16(size_t(rows) * C, 4);
          const auto dw0 = test::random_vector<float>(C, 5);
          std::vector<float> y(x.size()), rstd(rows);
          cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), rows, C, kEps);
          std::vector<float> dx_ref = dx0, dw_ref = dw0;
          const float* wp = with_weight ? w.data() : nullptr;
          cpu::rmsnorm_backward(dx_ref.data(), with_weight ? dw_ref.data() : nullptr, dout.data(), x.data(), wp,
                                rstd.data(), rows, C, accumulate);

          DeviceBf16 d_x(x), d_w(w), d_dout(dout), d_dx(dx0);
          DeviceArray<float> d_rstd(rstd), d_dw(dw0), d_scratch(gpu::norm_backward_scratch_floats(rows, C));
          auto run = [&] {
            d_dx.upload(dx0);
            d_dw.upload(dw0);
            gpu::rmsnorm_backward(d_dx.get(), with_weight ? d_dw.get() : nullptr, d_dout.get(), d_x.get(),
                                  with_weight ? d_w.get() : nullptr, d_rstd.get(), rows, C, accumulate,
                                  d_scratch.get(), nullptr);
            return std::make_pair(d_dx.download(), d_dw.download());
          };
          const auto [dx, dw] = run();
          require_close_bf16(dx, dx_ref, "dx");
          if (with_weight) {
            const auto atol = column_atol(dw0, rows, C, [&](int r, int c) {
              const size_t i = size_t(r) * C + c;
              return double(dout[i]) * x[i] * rstd[r];
            });
            require_close_each(dw, to_double(dw_ref), 1e-5, atol, "dweight");
          } else {
            require_same_bits(dw, dw0, "dweight untouched");
          }
          const auto [dx2, dw2] = run();
          require_same_bits(dx, dx2, "dx rerun");
          require_same_bits(dw, dw2, "dweight rerun");
        }
}

TEST_CASE("gpu layernorm backward matches the CPU and is deterministic", "[gpu][norm]") {
  for (int rows : kRows)
    for (int C : kCols)
      for (bool accumulate : {false, true}) {
        INFO("rows=" << rows << " C=" << C << " accumulate=" << accumulate);
        const auto x = random_bf16(size_t(rows) * C, 1, -1.0f, 3.0f);
        const auto w = random_bf16(C, 2, 0.5f, 1.5f);
        const auto b = random_bf16(C, 3, -0.5f, 0.5f);
        const auto dout = random_bf16(size_t(rows) * C, 4);
        const auto dx0 = random_bf16(size_t(rows) * C, 5);
        const auto dw0 = test::random_vector<float>(C, 6);
        const auto db0 = test::random_vector<float>(C, 7);
        std::vector<float> y(x.size()), mean(rows), rstd(rows);
        cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, C, kEps);
        std::vector<float> dx_ref = dx0, dw_ref = dw0, db_ref = db0;
        cpu::layernorm_backward(dx_ref.data(), dw_ref.data(), db_ref.data(), dout.data(), x.data(), w.data(),
                                mean.data(), rstd.data(), rows, C, accumulate);

        DeviceBf16 d_x(x), d_w(w), d_dout(dout), d_dx(dx0);
        DeviceArray<float> d_mean(mean), d_rstd(rstd), d_dw(dw0), d_db(db0),
            d_scratch(gpu::norm_backward_scratch_floats(rows, C));
        auto run = [&] {
          d_dx.upload(dx0);
          d_dw.upload(dw0);
          d_db.upload(db0);
          gpu::layernorm_backward(d_dx.get(), d_dw.get(), d_db.get(), d_dout.get(), d_x.get(), d_w.get(),
                                  d_mean.get(), d_rstd.get(), rows, C, accumulate, d_scratch.get(), nullptr);
          return std::make_tuple(d_dx.download(), d_dw.download(), d_db.download());
        };
        const auto [dx, dw, db] = run();
        require_close_bf16(dx, dx_ref, "dx");
        const auto atol_w = column_atol(dw0, rows, C, [&](int r, int c) {
          const size_t i = size_t(r) * C + c;
          return double(dout[i]) * (x[i] - mean[r]) * rstd[r];
        });
        require_close_each(dw, to_double(dw_ref), 1e-5, atol_w, "dweight");
        const auto atol_b = column_atol(db0, rows, C, [&](int r, int c) { return double(dout[size_t(r) * C + c]); });
        require_close_each(db, to_double(db_ref), 1e-5, atol_b, "dbias");
        const auto [dx2, dw2, db2] = run();
        require_same_bits(dx, dx2, "dx rerun");
        require_same_bits(dw, dw2, "dweight rerun");
        require_same_bits(db, db2, "dbias rerun");
      }
}

TEST_CASE("gpu norm backward without weight gradients needs no scratch", "[gpu][norm]") {
  const int rows = 7, C = 96;
  const auto x = random_bf16(size_t(rows) * C, 1);
  const auto dout = random_bf16(size_t(rows) * C, 2);
  std::vector<float> y(x.size()), rstd(rows);
  cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), static_cast<const float*>(nullptr), rows, C, kEps);
  std::vector<float> dx_ref(x.size());
  cpu::rmsnorm_backward(dx_ref.data(), static_cast<float*>(nullptr), dout.data(), x.data(),
                        static_cast<const float*>(nullptr), rstd.data(), rows, C, false);
  DeviceBf16 d_x(x), d_dout(dout), d_dx(x.size());
  DeviceArray<float> d_rstd(rstd);
  gpu::rmsnorm_backward(d_dx.get(), nullptr, d_dout.get(), d_x.get(), nullptr, d_rstd.get(), rows, C, false, nullptr,
                        nullptr);
  require_close_bf16(d_dx.download(), dx_ref, "dx");
}
