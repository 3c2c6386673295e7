// Newton-Schulz on the GPU (bf16 storage, fp32 accumulation) against the fp32
// CPU reference kernels/cpu/newton_schulz.h on the same fp32 input, for the
// classic quintic (3.4445, -4.7750, 2.0315) x5 and the Polar Express table
// (NewtonSchulzConfig::table(), norm_scale 1.02, eps 1e-6 as in test_optim).
// Tolerances:
//   - ||gpu - cpu||_F / ||cpu||_F <= 3e-2. A host emulation of this bf16
//     pipeline (every X, A, B rounded to bf16 after an fp32 product) gave
//     1.0e-2 to 1.5e-2 on these shapes and tables: 2x margin.
//   - singular values (host, double: eigenvalues of O O^T, tests/unit/linalg.h):
//     sorted, each within 0.05 of the input's singular values mapped through
//     the scalar polynomials (the emulation: at most 0.02); all inside the
//     table's band, the range of the scalar map over the input's
//     [s_min, s_max] / (norm_scale ||G||_F + eps) (about [0.68, 1.14] for the
//     quintic, [0.86, 1.14] for Polar Express), widened by 0.04 for bf16.
//   - reruns give the same bits; a zero matrix gives 0 (also with eps = 0);
//     steps = 0 gives exactly bf16(G / denom).
// Every comparison with the CPU runs for both kernels of the Gram products
// (NsGramKernel::kCublasLt and kSymmetric, symmetric_matmul.cuh), and the two
// GPU paths are held to each other: ||sym - cublaslt||_F / ||cublaslt||_F <= 3e-2
// after the full tables (each is within 3e-2 of the CPU) and <= 1e-2 after one
// iteration, where they differ only by the fp32 summation order inside A, B
// (elements a bf16 rounding apart at most: about 2^-8 relative on a few of them).
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "config/config.h"
#include "gpu_test_util.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/newton_schulz.h"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/newton_schulz.cuh"
#include "kernels/cuda/symmetric_matmul.cuh"
#include "unit/linalg.h"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

struct NsCase {
  std::string name;
  std::vector<std::array<double, 3>> table;
  double norm_scale, eps;
};

NsCase quintic_case() {
  NewtonSchulzConfig cfg;  // quintic x5, norm_scale 1, eps 1e-7
  return {"quintic", cfg.table(), cfg.norm_scale, cfg.norm_eps};
}

NsCase polar_case() {
  NewtonSchulzConfig cfg;
  cfg.coefficients = "polar_express";
  cfg.norm_scale = 1.02;
  cfg.norm_eps = 1e-6;
  return {"polar_express", cfg.table(), cfg.norm_scale, cfg.norm_eps};
}

// Owns the device buffers of one problem size and runs the GPU version.
class GpuNewtonSchulz {
 public:
  GpuNewtonSchulz(int rows, int cols)
      : rows_(rows),
        cols_(cols),
        g_(size_t(rows) * cols),
        out_(size_t(rows) * cols),
        ws_(gpu::newton_schulz_workspace(rows, cols)),
        scratch_(gpu::newton_schulz_scratch_doubles()) {}

  // Returns the output's bf16 bits.
  std::vector<uint16_t> run(const std::vector<float>& G, const NsCase& ns, gpu::Matmul& mm,
                            gpu::NsGramKernel gram = gpu::NsGramKernel::kAuto) {
    g_.upload(G);
    const auto coeffs = gpu::ns_coefficients(ns.table);
    gpu::newton_schulz(out_.get(), g_.get(), rows_, cols_, coeffs.data(), static_cast<int>(coeffs.size()),
                       static_cast<float>(ns.norm_scale), static_cast<float>(ns.eps), ws_.get(), scratch_.get(), mm,
                       nullptr, gram);
    return out_.download_bits();
  }

  // Fills the workspace and scratch with garbage (finite values).
  void scribble() {
    CUDA_CHECK(cudaMemset(ws_.get(), 0x3f, ws_.size() * sizeof(uint16_t)));
    CUDA_CHECK(cudaMemset(scratch_.get(), 0x3f, scratch_.size() * sizeof(double)));
    CUDA_CHECK(cudaMemset(out_.get(), 0x3f, out_.size() * sizeof(uint16_t)));
  }

 private:
  int rows_, cols_;
  DeviceArray<float> g_;
  DeviceBf16 out_;
  DeviceBf16 ws_;
  DeviceArray<double> scratch_;
};

std::vector<float> bits_to_float(const std::vector<uint16_t>& bits) {
  std::vector<float> v(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) v[i] = bf16_value(bits[i]);
  return v;
}

// Singular values (ascending); a tall matrix is transposed first so that
// linalg.h's Gram matrix is formed with contiguous rows (same values).
std::vector<double> singular_values(const std::vector<float>& X, int rows, int cols) {
  if (rows <= cols) return test::singular_values(X, rows, cols);
  std::vector<float> t(X.size());
  cpu::transpose(rows, cols, X.data(), t.data());
  return test::singular_values(t, cols, rows);
}

double scalar_map(double x, const NsCase& ns) {
  for (const auto& abc : ns.table) x = abc[0] * x + abc[1] * x * x * x + abc[2] * std::pow(x, 5);
  return x;
}

double frobenius(const std::vector<double>& sv) {
  double s = 0;
  for (double v : sv) s += v * v;
  return std::sqrt(s);
}

// ||got - ref||_F / ||ref||_F.
template <class A, class B>
double relative_frobenius(const A& got, const B& ref) {
  double diff2 = 0, ref2 = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = double(got[i]) - double(ref[i]);
    diff2 += d * d;
    ref2 += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(diff2 / ref2);
}

constexpr gpu::NsGramKernel kGramKernels[] = {gpu::NsGramKernel::kCublasLt, gpu::NsGramKernel::kSymmetric};

const char* gram_name(gpu::NsGramKernel g) {
  return g == gpu::NsGramKernel::kSymmetric ? "symmetric gram kernel"
         : g == gpu::NsGramKernel::kCublasLt ? "cuBLASLt gram"
                                              : "auto gram";
}

}  // namespace

TEST_CASE("gpu newton_schulz workspace and argument checks", "[gpu][newton_schulz]") {
  REQUIRE(gpu::newton_schulz_workspace(64, 64) >= size_t(64) * 64 + 2 * 64 * 64);
  REQUIRE(gpu::newton_schulz_workspace(300, 128) >= size_t(300) * 128 + 2 * 128 * 128);
  REQUIRE(gpu::newton_schulz_workspace(96, 256) >= size_t(96) * 256 + 2 * 96 * 96);
  REQUIRE(gpu::newton_schulz_workspace(0, 5) % 128 == 0);
  REQUIRE(gpu::newton_schulz_scratch_doubles() >= 2);
  gpu::Matmul mm;
  const gpu::NsCoefficients k{3.4445f, -4.7750f, 2.0315f};
  test::require_error([&] { gpu::newton_schulz(nullptr, nullptr, -1, 4, &k, 1, 1, 1e-7f, nullptr, nullptr, mm, nullptr); },
                      {"newton_schulz", "negative size"});
  test::require_error([&] { gpu::newton_schulz(nullptr, nullptr, 4, 4, &k, -1, 1, 1e-7f, nullptr, nullptr, mm, nullptr); },
                      {"newton_schulz", "steps"});
  test::require_error([&] { gpu::newton_schulz(nullptr, nullptr, 4, 4, &k, 1, 1, 1e-7f, nullptr, nullptr, mm, nullptr); },
                      {"newton_schulz", "required"});
  // empty matrices are a no-op
  gpu::newton_schulz(nullptr, nullptr, 0, 4, &k, 1, 1, 1e-7f, nullptr, nullptr, mm, nullptr);
  gpu::newton_schulz(nullptr, nullptr, 4, 0, &k, 1, 1, 1e-7f, nullptr, nullptr, mm, nullptr);
}

TEST_CASE("gpu newton_schulz matches the CPU reference and lands in the table's band", "[gpu][newton_schulz]") {
  gpu::Matmul mm;
  struct Shape {
    int rows, cols;
  };
  for (const Shape s : {Shape{64, 64}, Shape{96, 256}, Shape{300, 128}, Shape{768, 3072}, Shape{3072, 768}}) {
    const size_t n = size_t(s.rows) * s.cols;
    const auto G = test::random_vector<float>(n, 1000 + s.rows * 7 + s.cols);
    const auto sv_in = singular_values(G, s.rows, s.cols);
    const double fro_in = frobenius(sv_in);
    GpuNewtonSchulz gpu_ns(s.rows, s.cols);
    for (const NsCase& ns : {quintic_case(), polar_case()}) {
      REQUIRE(ns.table.size() == 5);
      auto ref = G;
      cpu::newton_schulz(ref.data(), s.rows, s.cols, ns.table, ns.norm_scale, ns.eps);
      std::vector<float> by_kernel[2];  // cuBLASLt, symmetric
      for (const gpu::NsGramKernel gram : kGramKernels) {
        INFO("shape " << s.rows << "x" << s.cols << ", " << ns.name << ", " << gram_name(gram));
        const auto bits = gpu_ns.run(G, ns, mm, gram);
        const auto got = bits_to_float(bits);
        by_kernel[gram == gpu::NsGramKernel::kSymmetric] = got;
        require_finite(got, "newton_schulz output");

        // 1. the CPU reference, relative Frobenius error of the difference
        const double rel = relative_frobenius(got, ref);
        INFO("||gpu - cpu||_F / ||cpu||_F = " << rel);
        CHECK(rel <= 3e-2);

        // 2. singular values: the scalar map of the input's, and the band
        const double denom = ns.norm_scale * fro_in + ns.eps;
        std::vector<double> mapped;
        for (double v : sv_in) mapped.push_back(scalar_map(v / denom, ns));
        std::sort(mapped.begin(), mapped.end());
        const double x_lo = sv_in.front() / denom, x_hi = sv_in.back() / denom;
        double band_lo = INFINITY, band_hi = -INFINITY;
        const int samples = 20000;  // log-spaced over [x_lo, x_hi]
        for (int i = 0; i <= samples; ++i) {
          const double x = x_lo * std::pow(x_hi / x_lo, double(i) / samples);
          band_lo = std::min(band_lo, scalar_map(x, ns));
          band_hi = std::max(band_hi, scalar_map(x, ns));
        }
        const auto sv_out = singular_values(got, s.rows, s.cols);
        INFO("input s/denom in [" << x_lo << ", " << x_hi << "], band [" << band_lo << ", " << band_hi
                                  << "], gpu singular values [" << sv_out.front() << ", " << sv_out.back() << "]");
        test::require_close(sv_out, mapped, 0, 0.05, "singular values vs the scalar map");
        CHECK(sv_out.front() >= band_lo - 0.04);
        CHECK(sv_out.back() <= band_hi + 0.04);
        if (ns.name == "quintic" && x_lo >= 1e-2) {  // the documented quintic band
          CHECK(sv_out.front() >= 0.68 - 0.04);
          CHECK(sv_out.back() <= 1.14 + 0.04);
        }

        // 3. a rerun (workspace, scratch and out scribbled on first) gives the same bits
        gpu_ns.scribble();
        require_same_bits(gpu_ns.run(G, ns, mm, gram), bits, "newton_schulz rerun");
      }
      // 4. the two GPU paths against each other
      const double between = relative_frobenius(by_kernel[1], by_kernel[0]);
      INFO("shape " << s.rows << "x" << s.cols << ", " << ns.name
                    << ": ||symmetric - cuBLASLt||_F / ||cuBLASLt||_F = " << between);
      CHECK(between <= 3e-2);
    }
  }
}

TEST_CASE("gpu newton_schulz: the symmetric Gram kernel and cuBLASLt agree after one iteration",
          "[gpu][newton_schulz]") {
  gpu::Matmul mm;
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{
           {64, 64}, {96, 256}, {300, 128}, {33, 101}, {101, 33}, {768, 3072}, {3072, 768}}) {
    NsCase ns = quintic_case();
    ns.table.resize(1);
    const auto G = test::random_vector<float>(size_t(rows) * cols, 4000 + rows + 3 * cols);
    GpuNewtonSchulz gpu_ns(rows, cols);
    const auto lt = bits_to_float(gpu_ns.run(G, ns, mm, gpu::NsGramKernel::kCublasLt));
    const auto sym = bits_to_float(gpu_ns.run(G, ns, mm, gpu::NsGramKernel::kSymmetric));
    require_finite(sym, "symmetric path, one iteration");
    const double between = relative_frobenius(sym, lt);
    INFO(rows << "x" << cols << ": ||symmetric - cuBLASLt||_F / ||cuBLASLt||_F = " << between);
    CHECK(between <= 1e-2);
    auto ref = G;
    cpu::newton_schulz(ref.data(), rows, cols, ns.table, ns.norm_scale, ns.eps);
    INFO("symmetric vs cpu " << relative_frobenius(sym, ref) << ", cuBLASLt vs cpu " << relative_frobenius(lt, ref));
    CHECK(relative_frobenius(sym, ref) <= 3e-2);
  }
}

TEST_CASE("gpu newton_schulz of a zero matrix is zero, no NaN", "[gpu][newton_schulz]") {
  gpu::Matmul mm;
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{64, 64}, {96, 256}, {300, 128}})
    for (double eps : {1e-7, 0.0})
      for (const gpu::NsGramKernel gram : kGramKernels) {
        INFO(rows << "x" << cols << " eps " << eps << ", " << gram_name(gram));
        NsCase ns = quintic_case();
        ns.eps = eps;
        GpuNewtonSchulz gpu_ns(rows, cols);
        gpu_ns.scribble();
        const auto out = bits_to_float(gpu_ns.run(std::vector<float>(size_t(rows) * cols, 0.0f), ns, mm, gram));
        require_finite(out, "zero input");
        REQUIRE(max_abs(out) == 0.0);
      }
}

TEST_CASE("gpu newton_schulz with 0 steps writes bf16(G / (norm_scale ||G||_F + eps)) in G's layout",
          "[gpu][newton_schulz]") {
  gpu::Matmul mm;
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{5, 3}, {3, 5}, {300, 128}, {33, 1001}}) {
    INFO(rows << "x" << cols);
    const size_t n = size_t(rows) * cols;
    const auto G = test::random_vector<float>(n, rows + 31 * cols, -3.0f, 3.0f);
    const float norm_scale = 1.02f, eps = 1e-6f;
    double ss = 0;
    for (float g : G) ss += double(g) * g;
    // two roundings like the kernel's __fmul_rn/__fadd_rn (volatile: no FMA contraction)
    volatile float scaled = norm_scale * static_cast<float>(std::sqrt(ss));
    const float denom = scaled + eps;
    std::vector<uint16_t> expect(n);
    for (size_t i = 0; i < n; ++i) expect[i] = bf16_bits(G[i] / denom);
    DeviceArray<float> d_g(G);
    DeviceBf16 d_out(n), d_ws(gpu::newton_schulz_workspace(rows, cols));
    DeviceArray<double> d_scratch(gpu::newton_schulz_scratch_doubles());
    gpu::newton_schulz(d_out.get(), d_g.get(), rows, cols, nullptr, 0, norm_scale, eps, d_ws.get(), d_scratch.get(),
                       mm, nullptr);
    require_same_bits(d_out.download_bits(), expect, "normalised G");
  }
}

TEST_CASE("gpu newton_schulz on the row blocks of a fused q/k/v matrix equals separate calls",
          "[gpu][newton_schulz]") {
  // Optimizer::muon_param orthogonalises each row block alone: a block is a
  // contiguous slice of the row-major matrix, so G + row0*cols works directly.
  gpu::Matmul mm;
  const int block_rows = 96, cols = 64, blocks = 3;  // each block tall (96 > 64)
  const size_t nb = size_t(block_rows) * cols, n = nb * blocks;
  const auto G = test::random_vector<float>(n, 77);
  const NsCase ns = polar_case();
  const auto coeffs = gpu::ns_coefficients(ns.table);
  DeviceArray<float> d_g(G);
  DeviceBf16 d_out(n), d_ws(gpu::newton_schulz_workspace(block_rows, cols));
  DeviceArray<double> d_scratch(gpu::newton_schulz_scratch_doubles());
  for (int b = 0; b < blocks; ++b)
    gpu::newton_schulz(d_out.get() + b * nb, d_g.get() + b * nb, block_rows, cols, coeffs.data(),
                       static_cast<int>(coeffs.size()), static_cast<float>(ns.norm_scale),
                       static_cast<float>(ns.eps), d_ws.get(), d_scratch.get(), mm, nullptr);
  const auto fused = d_out.download_bits();
  GpuNewtonSchulz single(block_rows, cols);
  for (int b = 0; b < blocks; ++b) {
    INFO("block " << b);
    const std::vector<float> Gb(G.begin() + b * nb, G.begin() + (b + 1) * nb);
    require_same_bits(std::vector<uint16_t>(fused.begin() + b * nb, fused.begin() + (b + 1) * nb),
                      single.run(Gb, ns, mm), "block vs separate call");
  }
}

// The batched form (the DeviceOptimizer's): count same-shape matrices at a
// fixed stride, each scaled differently (so a shared norm would show), against
// separate newton_schulz calls (||batched - single||_F / ||single||_F <= 1e-2:
// the same bf16 pipeline, only cuBLASLt's kernel choice for a batch may
// differ; usually 0) and against the CPU reference per matrix (3e-2, as
// above), with every matrix's singular values inside the table's band
// widened for bf16. count == 1 is the single call (same bits); reruns too.
// Both Gram kernels; the shapes cover wide and tall, aligned (16-byte loads)
// and odd (scalar loads of the symmetric kernel) leading dimensions.
TEST_CASE("gpu newton_schulz_batched equals per-matrix calls and the CPU", "[gpu][newton_schulz]") {
  gpu::Matmul mm;
  struct Shape {
    int rows, cols, count;
  };
  REQUIRE(gpu::newton_schulz_batched_workspace(3, 96, 256) == 3 * gpu::newton_schulz_workspace(96, 256));
  REQUIRE(gpu::newton_schulz_batched_scratch_doubles(1) == gpu::newton_schulz_scratch_doubles());
  for (const Shape s : {Shape{64, 64, 4}, Shape{96, 256, 3}, Shape{300, 128, 3}, Shape{33, 101, 5}, Shape{101, 33, 3},
                        Shape{128, 128, 1}})
    for (const NsCase& ns : {quintic_case(), polar_case()})
      for (const gpu::NsGramKernel gram : kGramKernels) {
        INFO("shape " << s.rows << "x" << s.cols << " x" << s.count << ", " << ns.name << ", " << gram_name(gram));
        const size_t n = size_t(s.rows) * s.cols;
        const size_t g_stride = n + 37, out_stride = n + 64;  // G at an odd stride, out 128-byte steps
        std::vector<float> G(g_stride * s.count, 1e9f);       // the gaps hold garbage
        for (int j = 0; j < s.count; ++j) {
          const auto Gj = test::random_vector<float>(n, 500 + 13 * j + s.rows);
          const float scale = std::pow(10.0f, static_cast<float>(j) - 1.0f);
          for (size_t i = 0; i < n; ++i) G[j * g_stride + i] = Gj[i] * scale;
        }
        const auto coeffs = gpu::ns_coefficients(ns.table);
        DeviceArray<float> d_g(G);
        DeviceBf16 d_out(out_stride * s.count), d_ws(gpu::newton_schulz_batched_workspace(s.count, s.rows, s.cols));
        DeviceArray<double> d_scratch(gpu::newton_schulz_batched_scratch_doubles(s.count));
        auto run_batched = [&] {
          gpu::newton_schulz_batched(d_out.get(), out_stride, d_g.get(), g_stride, s.count, s.rows, s.cols,
                                     coeffs.data(), static_cast<int>(coeffs.size()), static_cast<float>(ns.norm_scale),
                                     static_cast<float>(ns.eps), d_ws.get(), d_scratch.get(), mm, nullptr, gram);
          return d_out.download_bits();
        };
        const auto bits = run_batched();
        GpuNewtonSchulz single(s.rows, s.cols);
        for (int j = 0; j < s.count; ++j) {
          INFO("matrix " << j);
          const std::vector<float> Gj(G.begin() + j * g_stride, G.begin() + j * g_stride + n);
          const std::vector<uint16_t> got_bits(bits.begin() + j * out_stride, bits.begin() + j * out_stride + n);
          const auto one_bits = single.run(Gj, ns, mm, gram);
          if (s.count == 1) require_same_bits(got_bits, one_bits, "count 1 vs the single call");
          const auto got = bits_to_float(got_bits), one = bits_to_float(one_bits);
          require_finite(got, "batched output");
          auto ref = Gj;
          cpu::newton_schulz(ref.data(), s.rows, s.cols, ns.table, ns.norm_scale, ns.eps);
          double d_single = 0, d_ref = 0, n_single = 0, n_ref = 0;
          for (size_t i = 0; i < n; ++i) {
            d_single += (double(got[i]) - one[i]) * (double(got[i]) - one[i]);
            n_single += double(one[i]) * one[i];
            d_ref += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
            n_ref += double(ref[i]) * ref[i];
          }
          INFO("vs single " << std::sqrt(d_single / n_single) << ", vs cpu " << std::sqrt(d_ref / n_ref));
          CHECK(std::sqrt(d_single / n_single) <= 1e-2);
          CHECK(std::sqrt(d_ref / n_ref) <= 3e-2);
          const auto sv_in = singular_values(Gj, s.rows, s.cols);
          const double denom = ns.norm_scale * frobenius(sv_in) + ns.eps;
          double band_lo = INFINITY, band_hi = -INFINITY;
          const double x_lo = sv_in.front() / denom, x_hi = sv_in.back() / denom;
          for (int i = 0; i <= 20000; ++i) {
            const double x = x_lo * std::pow(x_hi / x_lo, double(i) / 20000);
            band_lo = std::min(band_lo, scalar_map(x, ns));
            band_hi = std::max(band_hi, scalar_map(x, ns));
          }
          const auto sv_out = singular_values(got, s.rows, s.cols);
          INFO("band [" << band_lo << ", " << band_hi << "], got [" << sv_out.front() << ", " << sv_out.back() << "]");
          CHECK(sv_out.front() >= band_lo - 0.04);
          CHECK(sv_out.back() <= band_hi + 0.04);
        }
        // a rerun (workspace scribbled on) gives the same bits, the gaps between outputs included
        CUDA_CHECK(cudaMemset(d_ws.get(), 0x3f, d_ws.size() * sizeof(uint16_t)));
        require_same_bits(run_batched(), bits, "batched rerun");
      }
}
