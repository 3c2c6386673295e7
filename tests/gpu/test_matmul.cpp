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

// Strided-batched gemm (the Newton-Schulz batches): every product of the batch
// equals the same product run alone through gemm() (fp32 output: bf16 x bf16
// products are exact in fp32, only the summation order may differ, 1e-5; bf16
// output 1e-2 relative + one bf16 ulp of the largest value) and a double host
// reference; batch == 1 is gemm() itself (same bits); strides that break the
// 16-byte alignment of later products and a shared operand (stride 0) work.
TEST_CASE("gpu matmul: strided-batched gemm equals per-matrix gemm", "[gpu][matmul]") {
  gpu::Matmul mm;
  struct Case {
    bool ta, tb;
    int m, n, k, batch;
    long long pad_a, pad_b;  // extra elements between the batch's operands; -1: stride 0 (shared)
    bool fp32;
    float alpha, beta;
  };
  for (const Case c : {Case{false, false, 64, 48, 80, 5, 8, 8, true, 1.0f, 0.0f},
                       Case{true, false, 33, 17, 65, 3, 1, 3, true, 0.5f, 1.0f},
                       Case{false, true, 96, 96, 96, 4, 0, -1, false, -1.5f, 2.0f},
                       Case{true, true, 40, 72, 24, 7, 128, 5, false, 1.0f, 0.25f},
                       Case{false, false, 128, 128, 128, 1, 0, 0, false, 3.4f, -4.7f}}) {
    INFO("ta=" << c.ta << " tb=" << c.tb << " m=" << c.m << " n=" << c.n << " k=" << c.k << " batch=" << c.batch
               << " fp32=" << c.fp32);
    const int lda = c.ta ? c.k : c.m, ldb = c.tb ? c.n : c.k, ldd = c.m;
    const size_t a_size = size_t(lda) * (c.ta ? c.m : c.k), b_size = size_t(ldb) * (c.tb ? c.k : c.n);
    const size_t d_size = size_t(ldd) * c.n;
    const long long sa = c.pad_a < 0 ? 0 : static_cast<long long>(a_size) + c.pad_a;
    const long long sb = c.pad_b < 0 ? 0 : static_cast<long long>(b_size) + c.pad_b;
    const long long sd = static_cast<long long>(d_size) + 3;
    const size_t a_total = sa * (c.batch - 1) + a_size, b_total = sb * (c.batch - 1) + b_size;
    const size_t d_total = sd * (c.batch - 1) + d_size;
    const auto A = random_bf16(a_total, 11), B = random_bf16(b_total, 12), D0 = random_bf16(d_total, 13);
    DeviceBf16 d_a(A), d_b(B);
    // batched
    std::vector<float> batched, single;
    if (c.fp32) {
      DeviceArray<float> d(D0);
      mm.gemm_batched(c.ta, c.tb, c.m, c.n, c.k, c.alpha, d_a.get(), lda, sa, d_b.get(), ldb, sb, c.beta, d.get(),
                      ldd, sd, true, c.batch, nullptr);
      batched = d.download();
      DeviceArray<float> e(D0);
      for (int i = 0; i < c.batch; ++i)
        mm.gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, d_a.get() + i * sa, lda, d_b.get() + i * sb, ldb, c.beta,
                e.get() + i * sd, ldd, true, nullptr, nullptr);
      single = e.download();
    } else {
      DeviceBf16 d(D0);
      mm.gemm_batched(c.ta, c.tb, c.m, c.n, c.k, c.alpha, d_a.get(), lda, sa, d_b.get(), ldb, sb, c.beta, d.get(),
                      ldd, sd, false, c.batch, nullptr);
      batched = d.download();
      DeviceBf16 e(D0);
      for (int i = 0; i < c.batch; ++i)
        mm.gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, d_a.get() + i * sa, lda, d_b.get() + i * sb, ldb, c.beta,
                e.get() + i * sd, ldd, false, nullptr, nullptr);
      single = e.download();
      if (c.batch == 1) REQUIRE(d.download_bits() == e.download_bits());
    }
    // host reference, double
    std::vector<double> ref(D0.begin(), D0.end());
    for (int b = 0; b < c.batch; ++b)
      for (int j = 0; j < c.n; ++j)
        for (int i = 0; i < c.m; ++i) {
          double acc = 0;
          for (int l = 0; l < c.k; ++l) {
            const double a = A[b * sa + (c.ta ? l + size_t(i) * lda : i + size_t(l) * lda)];
            const double bb = B[b * sb + (c.tb ? j + size_t(l) * ldb : l + size_t(j) * ldb)];
            acc += a * bb;
          }
          const size_t at = b * sd + i + size_t(j) * ldd;
          ref[at] = c.alpha * acc + c.beta * double(D0[at]);
        }
    if (c.fp32) {
      require_close_rel(batched, single, 1e-5, 1e-6, "batched vs single (fp32)");
      require_close_rel(batched, ref, 1e-5, 1e-5, "batched vs host reference (fp32)");
    } else {
      require_close_rel(batched, single, 1e-2, 4e-3, "batched vs single (bf16)");
      require_close_rel(batched, ref, 1e-2, 4e-3, "batched vs host reference (bf16)");
    }
  }
  test::require_error([&] {
    mm.gemm_batched(false, false, 4, 4, 4, 1.0f, nullptr, 4, 16, nullptr, 4, 16, 0.0f, nullptr, 4, 0, true, 2, nullptr);
  }, {"gemm_batched", "stride"});
}
