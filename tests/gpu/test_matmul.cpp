// cuBLASLt matmuls of the linear layers against kernels/cpu/matmul.h, on the
// same bf16-rounded inputs. Tolerances: bf16 outputs (forward, dinp)
// 1e-2 |ref| + 1e-3 max|ref| (output rounding 2^-9, fp32 sums in another
// order); fp32 dW and dbias 1e-4 |ref| + 1e-5 max|ref| (bf16 x bf16 products
// are exact in fp32: only the summation order differs). Reruns: same bits.
#include "gpu_test_util.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/matmul.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

TEST_CASE("gpu matmul forward and backward match the CPU", "[gpu][matmul]") {
  gpu::Matmul mm;
  struct Shape {
    int N, C, OC;
  };
  for (const Shape s : {Shape{1, 8, 8}, Shape{7, 96, 130}, Shape{64, 64, 192}, Shape{129, 768, 3072},
                        Shape{33, 1000, 77}, Shape{256, 768, 50304}})
    for (bool with_bias : {false, true}) {
      INFO("N=" << s.N << " C=" << s.C << " OC=" << s.OC << " bias=" << with_bias);
      const size_t nx = size_t(s.N) * s.C, nw = size_t(s.OC) * s.C, ny = size_t(s.N) * s.OC;
      const auto x = random_bf16(nx, 1), w = random_bf16(nw, 2, -0.1f, 0.1f), b = random_bf16(s.OC, 3);
      const auto dy = random_bf16(ny, 4);
      const auto dw0 = test::random_vector<float>(nw, 5), db0 = test::random_vector<float>(s.OC, 6);
      const auto dx0 = random_bf16(nx, 7);

      std::vector<float> y_ref(ny), dx_ref(nx), dx_acc_ref = dx0, dw_ref = dw0, db_ref = db0;
      cpu::matmul_forward(y_ref.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, s.N, s.C, s.OC);
      cpu::matmul_backward(dx_ref.data(), dw_ref.data(), with_bias ? db_ref.data() : nullptr, dy.data(), x.data(),
                           w.data(), s.N, s.C, s.OC, false);
      std::vector<float> unused_dw(nw);
      cpu::matmul_backward(dx_acc_ref.data(), unused_dw.data(), static_cast<float*>(nullptr), dy.data(), x.data(), w.data(), s.N, s.C,
                           s.OC, true);

      DeviceBf16 d_x(x), d_w(w), d_b(b), d_y(ny), d_dy(dy), d_dx(nx), d_dx_acc(dx0);
      DeviceArray<float> d_dw(dw0), d_db(db0);
      mm.forward(d_y.get(), d_x.get(), d_w.get(), with_bias ? d_b.get() : nullptr, s.N, s.C, s.OC, nullptr);
      const auto y = d_y.download();
      require_close_rel(y, y_ref, 1e-2, 1e-3, "forward");
      mm.backward(d_dx.get(), d_dw.get(), with_bias ? d_db.get() : nullptr, d_dy.get(), d_x.get(), d_w.get(), s.N,
                  s.C, s.OC, false, nullptr);
      const auto dx = d_dx.download();
      require_close_rel(dx, dx_ref, 1e-2, 1e-3, "dinp");
      require_close_rel(d_dw.download(), dw_ref, 1e-4, 1e-5, "dweight (accumulated)");
      if (with_bias) require_close_rel(d_db.download(), db_ref, 1e-4, 1e-5, "dbias (accumulated)");
      mm.backward(d_dx_acc.get(), d_dw.get(), nullptr, d_dy.get(), d_x.get(), d_w.get(), s.N, s.C, s.OC, true,
                  nullptr);
      require_close_rel(d_dx_acc.download(), dx_acc_ref, 1e-2, 1e-3, "dinp accumulated");

      // reruns give the same bits (the cached algorithm is reused)
      const size_t cached = mm.cached_algorithms();
      mm.forward(d_y.get(), d_x.get(), d_w.get(), with_bias ? d_b.get() : nullptr, s.N, s.C, s.OC, nullptr);
      require_same_bits(d_y.download_bits(), DeviceBf16(y).download_bits(), "forward rerun");
      mm.backward(d_dx.get(), d_dw.get(), nullptr, d_dy.get(), d_x.get(), d_w.get(), s.N, s.C, s.OC, false, nullptr);
      require_same_bits(d_dx.download(), dx, "dinp rerun");
      REQUIRE(mm.cached_algorithms() == cached);
    }
}

TEST_CASE("gpu matmul: unaligned operands still find an algorithm", "[gpu][matmul]") {
  gpu::Matmul mm;
  const int N = 5, C = 24, OC = 40;
  const auto x = random_bf16(size_t(N) * C + 1, 1), w = random_bf16(size_t(OC) * C + 1, 2);
  std::vector<float> y_ref(size_t(N) * OC);
  cpu::matmul_forward(y_ref.data(), x.data() + 1, w.data() + 1, static_cast<const float*>(nullptr), N, C, OC);
  DeviceBf16 d_x(x), d_w(w), d_y(size_t(N) * OC + 1);
  // +1 element: 2-byte aligned operands
  mm.forward(d_y.get() + 1, d_x.get() + 1, d_w.get() + 1, nullptr, N, C, OC, nullptr);
  const auto y = d_y.download();
  require_close_rel(std::vector<float>(y.begin() + 1, y.end()), y_ref, 1e-2, 1e-3, "forward, unaligned");
}
