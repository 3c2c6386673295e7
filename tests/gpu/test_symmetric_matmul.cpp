// The symmetric product kernel (kernels/cuda/symmetric_matmul.cuh),
// C = alpha X X^T + beta D, against a double-precision CPU product of the same
// bf16 inputs, on fresh random inputs of shapes from 1x1 to 768x3072 (tile
// edges of both tile sizes included), both X layouts, both tile sizes and the
// automatic choice, the 16-byte (cp.async, vector store) and the scalar paths.
//
// 1. Exact inputs. X holds multiples of 1/8 in [-1, 1] and D multiples of 1/8
//    in [-4, 4]; alpha and beta are powers of two (or 0). Every partial sum of
//    X X^T is then a multiple of 2^-6 below 2^12 and alpha acc + beta d a
//    multiple of 2^-7 below 2^13: exact in fp32 in any summation order. So each
//    element must have exactly the bits of bf16(v), v computed in double (+0
//    and -0 count as equal): a wrong fragment, tile, edge, mirror or stride
//    shows as a wrong element, not as a tolerance question.
// 2. Random inputs (uniform [-1, 1], alpha 1.7, beta -0.3): the rigorous
//    bound |got - ref| <= 2^-8 |ref| + 2 (k + 16) 2^-23 (|alpha| sum_kk |x_ik x_jk|
//    + |beta| |d_ij|) (one bf16 rounding, fp32 accumulation with at most one
//    2^-23 relative error per term and step), and the same bits for every
//    layout, tile size and load path (each element's sum runs over the same
//    k steps in the same order).
// Everywhere: C[i][j] and C[j][i] have the same bits; NaN never passes (the
// padding of X, the unused upper triangle of D and C before the call are NaN,
// so a read outside the matrices or an unwritten element fails); nothing
// outside the r x r outputs is written.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cuda/symmetric_matmul.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

constexpr uint16_t kNaN = 0x7fc0;       // padding and the unread parts of the inputs
constexpr uint16_t kSentinel = 0xffff;  // C before the call (also a NaN)

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

bf16* as_bf16(uint16_t* p) { return reinterpret_cast<bf16*>(p); }

// count matrices X_z (r x k, row-major, bf16 bits) and symmetric D_z (r x r).
struct Batch {
  int r = 0, k = 0, count = 1;
  std::vector<std::vector<uint16_t>> x, d;
};

// Exact inputs: x = m / 8, m in [-8, 8]; d = m / 8, m in [-32, 32], symmetric.
Batch dyadic_batch(int r, int k, int count, uint64_t seed) {
  Batch b{r, k, count, {}, {}};
  for (int z = 0; z < count; ++z) {
    const auto mx = random_ints(size_t(r) * k, seed + 11 * z, -8, 9);
    const auto md = random_ints(size_t(r) * r, seed + 11 * z + 5, -32, 33);
    std::vector<uint16_t> x(mx.size()), d(size_t(r) * r);
    for (size_t i = 0; i < x.size(); ++i) x[i] = bf16_bits(static_cast<float>(mx[i]) / 8.0f);
    for (int i = 0; i < r; ++i)
      for (int j = 0; j <= i; ++j)
        d[size_t(i) * r + j] = d[size_t(j) * r + i] = bf16_bits(md[size_t(i) * r + j] / 8.0f);
    b.x.push_back(std::move(x));
    b.d.push_back(std::move(d));
  }
  return b;
}

// Random inputs: uniform [-1, 1) rounded to bf16, D symmetric.
Batch random_batch(int r, int k, int count, uint64_t seed) {
  Batch b{r, k, count, {}, {}};
  for (int z = 0; z < count; ++z) {
    const auto fx = random_bf16(size_t(r) * k, seed + 7 * z);
    const auto fd = random_bf16(size_t(r) * r, seed + 7 * z + 3);
    std::vector<uint16_t> x(fx.size()), d(size_t(r) * r);
    for (size_t i = 0; i < x.size(); ++i) x[i] = bf16_bits(fx[i]);
    for (int i = 0; i < r; ++i)
      for (int j = 0; j <= i; ++j) d[size_t(i) * r + j] = d[size_t(j) * r + i] = bf16_bits(fd[size_t(i) * r + j]);
    b.x.push_back(std::move(x));
    b.d.push_back(std::move(d));
  }
  return b;
}

// How the inputs sit on the device.
//   aligned: 256-byte aligned pointers, ld and strides multiples of 8 (cp.async
//            loads; 16-byte stores when r % 8 == 0), padding of 8+ elements;
//   else:    every pointer one element past an aligned address, odd ld and strides
//            (the scalar load and store paths).
struct Placement {
  gpu::GramLayout layout = gpu::GramLayout::kRowMajor;
  bool aligned = true;
  int tile = 0;
  std::string describe() const {
    return std::string(layout == gpu::GramLayout::kRowMajor ? "row-major X" : "column-major X") +
           (aligned ? ", aligned" : ", unaligned") + ", tile " + std::to_string(tile);
  }
};

std::vector<Placement> placements(std::initializer_list<int> tiles) {
  std::vector<Placement> out;
  for (auto layout : {gpu::GramLayout::kRowMajor, gpu::GramLayout::kColMajor})
    for (bool aligned : {true, false})
      for (int tile : tiles) out.push_back({layout, aligned, tile});
  return out;
}

struct Scalars {
  float alpha = 1, beta = 0;
  bool with_d = false;  // D passed (else null; beta must then be 0)
};

// Runs the kernel (symmetric_matmul for count 1, symmetric_matmul_batched
// else) and returns each matrix's r x r output bits. Requires that nothing
// around the outputs was written.
std::vector<std::vector<uint16_t>> run(const Batch& b, const Placement& p, const Scalars& s) {
  const int r = b.r, k = b.k, count = b.count;
  const bool col = p.layout == gpu::GramLayout::kColMajor;
  const int min_ld = col ? r : k;
  const int ld = p.aligned ? static_cast<int>(round_up(std::max(min_ld, 1), 8)) + 8 : min_ld + 3;
  const size_t x_size = size_t(col ? k : r) * ld, rr = size_t(r) * r;
  const size_t off = p.aligned ? 0 : 1;
  const size_t x_stride = p.aligned ? round_up(x_size, 8) + 16 : x_size + 5;
  const size_t c_stride = p.aligned ? round_up(rr, 8) + 8 : rr + 3;
  const size_t d_stride = p.aligned ? round_up(rr, 8) + 16 : rr + 7;
  std::vector<uint16_t> hx(off + x_stride * count + 8, kNaN), hd(off + d_stride * count + 8, kNaN);
  for (int z = 0; z < count; ++z)
    for (int i = 0; i < r; ++i) {
      for (int kk = 0; kk < k; ++kk)
        hx[off + z * x_stride + (col ? size_t(kk) * ld + i : size_t(i) * ld + kk)] = b.x[z][size_t(i) * k + kk];
      for (int j = 0; j <= i; ++j) hd[off + z * d_stride + size_t(i) * r + j] = b.d[z][size_t(i) * r + j];
    }
  DeviceArray<uint16_t> dx(hx), dd(hd), dc(std::vector<uint16_t>(off + c_stride * count + 64, kSentinel));
  bf16* C = as_bf16(dc.get()) + off;
  const bf16* X = as_bf16(dx.get()) + off;
  const bf16* D = s.with_d ? as_bf16(dd.get()) + off : nullptr;
  if (count == 1)
    gpu::symmetric_matmul(C, X, ld, p.layout, D, r, k, s.alpha, s.beta, nullptr, p.tile);
  else
    gpu::symmetric_matmul_batched(C, c_stride, X, ld, x_stride, p.layout, D, d_stride, count, r, k, s.alpha, s.beta,
                                  nullptr, p.tile);
  const std::vector<uint16_t> hc = dc.download();
  std::vector<char> inside(hc.size(), 0);
  std::vector<std::vector<uint16_t>> out(count);
  for (int z = 0; z < count; ++z) {
    const size_t at = off + z * c_stride;
    std::fill(inside.begin() + at, inside.begin() + at + rr, 1);
    out[z].assign(hc.begin() + at, hc.begin() + at + rr);
  }
  size_t written_outside = 0;
  for (size_t i = 0; i < hc.size(); ++i) written_outside += !inside[i] && hc[i] != kSentinel;
  INFO("elements written outside the outputs: " << written_outside);
  REQUIRE(written_outside == 0);
  return out;
}

// Lower triangle (i >= j, at i*r + j) of X X^T in double; abs: of sum |x_ik x_jk|.
void gram_lower(const std::vector<uint16_t>& xb, int r, int k, std::vector<double>& acc, std::vector<double>* abs) {
  std::vector<double> x(xb.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = bf16_value(xb[i]);
  acc.assign(size_t(r) * r, 0.0);
  if (abs) abs->assign(size_t(r) * r, 0.0);
  for (int i = 0; i < r; ++i)
    for (int j = 0; j <= i; ++j) {
      const double* xi = x.data() + size_t(i) * k;
      const double* xj = x.data() + size_t(j) * k;
      double s = 0, sa = 0;
      for (int kk = 0; kk < k; ++kk) s += xi[kk] * xj[kk];
      if (abs)
        for (int kk = 0; kk < k; ++kk) sa += std::abs(xi[kk] * xj[kk]);
      acc[size_t(i) * r + j] = s;
      if (abs) (*abs)[size_t(i) * r + j] = sa;
    }
}

double reference(const std::vector<double>& acc, const std::vector<uint16_t>& d, int r, int i, int j,
                 const Scalars& s) {
  const size_t at = size_t(std::max(i, j)) * r + std::min(i, j);
  double v = double(s.alpha) * acc[at];
  if (s.beta != 0.0f) v += double(s.beta) * bf16_value(d[at]);
  return v;
}

bool same_value_bits(uint16_t a, uint16_t b) { return a == b || ((a & 0x7fff) == 0 && (b & 0x7fff) == 0); }

// C[i][j] and C[j][i] carry the same bits.
void require_symmetric(const std::vector<uint16_t>& c, int r, const std::string& what) {
  long long bad = -1;
  for (int i = 0; i < r && bad < 0; ++i)
    for (int j = 0; j < i; ++j)
      if (c[size_t(i) * r + j] != c[size_t(j) * r + i]) {
        bad = static_cast<long long>(i) * r + j;
        break;
      }
  INFO(what << ": first asymmetric element (i*r + j) " << bad);
  REQUIRE(bad < 0);
}

// Every element has the bits of bf16(v), v exact (test 1).
void require_exact(const std::vector<uint16_t>& c, const std::vector<double>& acc, const std::vector<uint16_t>& d,
                   int r, const Scalars& s, const std::string& what) {
  int bad_i = -1, bad_j = -1;
  uint16_t got = 0, want = 0;
  bool representable = true;  // the inputs keep every v exact in fp32
  for (int i = 0; i < r && bad_i < 0; ++i)
    for (int j = 0; j < r; ++j) {
      const double v = reference(acc, d, r, i, j, s);
      representable = representable && static_cast<double>(static_cast<float>(v)) == v;
      const uint16_t e = bf16_bits(static_cast<float>(v));
      if (!same_value_bits(c[size_t(i) * r + j], e)) {
        bad_i = i, bad_j = j, got = c[size_t(i) * r + j], want = e;
        break;
      }
    }
  INFO(what << ": element (" << bad_i << ", " << bad_j << ") got " << bf16_value(got) << " (0x" << std::hex << got
            << ") expected " << bf16_value(want) << " (0x" << want << std::dec << ")");
  REQUIRE(representable);
  REQUIRE(bad_i < 0);
}

// Within the fp32 + bf16 error bound (test 2).
void require_within_bound(const std::vector<uint16_t>& c, const std::vector<double>& acc,
                          const std::vector<double>& abs, const std::vector<uint16_t>& d, int r, int k,
                          const Scalars& s, const std::string& what) {
  double worst = 0;
  int wi = 0, wj = 0;
  for (int i = 0; i < r; ++i)
    for (int j = 0; j < r; ++j) {
      const size_t at = size_t(std::max(i, j)) * r + std::min(i, j);
      const double ref = reference(acc, d, r, i, j, s);
      const double mag = std::abs(double(s.alpha)) * abs[at] + std::abs(double(s.beta)) * std::abs(bf16_value(d[at]));
      const double bound = std::ldexp(std::abs(ref), -8) + 2.0 * (k + 16) * std::ldexp(mag, -23) + 1e-30;
      const double ratio = std::abs(double(bf16_value(c[size_t(i) * r + j])) - ref) / bound;
      if (!(ratio <= worst)) {  // NaN never passes
        worst = std::isnan(ratio) ? INFINITY : ratio;
        wi = i, wj = j;
      }
    }
  INFO(what << ": worst element (" << wi << ", " << wj << ") got " << bf16_value(c[size_t(wi) * r + wj]) << " expected "
            << reference(acc, d, r, wi, wj, s) << ", |error| / bound = " << worst);
  REQUIRE(worst <= 1.0);
}

struct Shape {
  int r, k;
};

// Tile edges: 1x1, sizes below, at and above 64 and 128, k not a multiple of 8 or 32.
const std::vector<Shape> kShapes = {{1, 1}, {5, 7}, {17, 33}, {64, 64}, {130, 300}, {768, 3072}};

}  // namespace

TEST_CASE("gpu symmetric_matmul argument checks", "[gpu][symmetric_matmul]") {
  DeviceArray<uint16_t> buf(64 * 64);
  bf16* p = as_bf16(buf.get());
  using gpu::GramLayout;
  test::require_error([&] { gpu::symmetric_matmul(p, p, 8, GramLayout::kRowMajor, nullptr, -1, 8, 1, 0, nullptr); },
                      {"symmetric_matmul", "negative size"});
  test::require_error([&] { gpu::symmetric_matmul(p, p, 8, GramLayout::kRowMajor, nullptr, 8, -1, 1, 0, nullptr); },
                      {"symmetric_matmul", "negative size"});
  test::require_error(
      [&] { gpu::symmetric_matmul(nullptr, p, 8, GramLayout::kRowMajor, nullptr, 8, 8, 1, 0, nullptr); },
      {"symmetric_matmul", "C is required"});
  test::require_error(
      [&] { gpu::symmetric_matmul(p, nullptr, 8, GramLayout::kRowMajor, nullptr, 8, 8, 1, 0, nullptr); },
      {"symmetric_matmul", "X is required"});
  test::require_error([&] { gpu::symmetric_matmul(p, p, 8, GramLayout::kRowMajor, nullptr, 8, 8, 1, 0.5f, nullptr); },
                      {"symmetric_matmul", "D is required"});
  test::require_error([&] { gpu::symmetric_matmul(p, p, 8, GramLayout::kRowMajor, nullptr, 8, 8, 1, 0, nullptr, 32); },
                      {"symmetric_matmul", "tile"});
  test::require_error([&] { gpu::symmetric_matmul(p, p, 7, GramLayout::kRowMajor, nullptr, 4, 8, 1, 0, nullptr); },
                      {"symmetric_matmul", "ld = 7 < k = 8"});
  test::require_error([&] { gpu::symmetric_matmul(p, p, 3, GramLayout::kColMajor, nullptr, 4, 8, 1, 0, nullptr); },
                      {"symmetric_matmul", "ld = 3 < r = 4"});
  test::require_error(
      [&] {
        gpu::symmetric_matmul_batched(p, 8, p, 8, 64, GramLayout::kRowMajor, nullptr, 0, 70000, 4, 8, 1, 0, nullptr);
      },
      {"symmetric_matmul", "batch count"});
  test::require_error(
      [&] {
        gpu::symmetric_matmul_batched(p, 15, p, 8, 64, GramLayout::kRowMajor, nullptr, 0, 2, 4, 8, 1, 0, nullptr);
      },
      {"symmetric_matmul", "c_stride 15 < r*r = 16"});
  // empty problems are no-ops, even without pointers
  gpu::symmetric_matmul(nullptr, nullptr, 0, GramLayout::kRowMajor, nullptr, 0, 8, 1, 0, nullptr);
  gpu::symmetric_matmul_batched(nullptr, 0, nullptr, 0, 0, GramLayout::kRowMajor, nullptr, 0, 0, 8, 8, 1, 0, nullptr);
  gpu_test::sync();
}

TEST_CASE("gpu symmetric_matmul is exact on dyadic inputs: every layout, tile and load/store path",
          "[gpu][symmetric_matmul]") {
  const Scalars calls[] = {{1.0f, 0.0f, false}, {0.5f, -0.25f, true}, {-2.0f, 1.0f, true}};
  for (const Shape sh : kShapes) {
    const Batch b = dyadic_batch(sh.r, sh.k, 1, 100 + sh.r * 3 + sh.k);
    std::vector<double> acc;
    gram_lower(b.x[0], sh.r, sh.k, acc, nullptr);
    for (const Scalars& s : calls)
      for (const Placement& p : placements({0, 64, 128})) {
        const std::string what = std::to_string(sh.r) + "x" + std::to_string(sh.k) + ", " + p.describe() + ", alpha " +
                                 std::to_string(s.alpha) + ", beta " + std::to_string(s.beta);
        INFO(what);
        const auto c = run(b, p, s)[0];
        require_symmetric(c, sh.r, what);
        require_exact(c, acc, b.d[0], sh.r, s, what);
      }
  }
}

TEST_CASE("gpu symmetric_matmul on random inputs: within the error bound, the same bits on every path",
          "[gpu][symmetric_matmul]") {
  const Scalars calls[] = {{1.7f, -0.3f, true}, {1.0f, 0.0f, false}};
  for (const Shape sh : kShapes) {
    const Batch b = random_batch(sh.r, sh.k, 1, 900 + sh.r * 5 + sh.k);
    std::vector<double> acc, abs;
    gram_lower(b.x[0], sh.r, sh.k, acc, &abs);
    for (const Scalars& s : calls) {
      std::vector<uint16_t> first;
      for (const Placement& p : placements({64, 128})) {
        const std::string what = std::to_string(sh.r) + "x" + std::to_string(sh.k) + ", " + p.describe() + ", alpha " +
                                 std::to_string(s.alpha) + ", beta " + std::to_string(s.beta);
        INFO(what);
        const auto c = run(b, p, s)[0];
        require_symmetric(c, sh.r, what);
        if (first.empty()) {
          require_within_bound(c, acc, abs, b.d[0], sh.r, sh.k, s, what);
          require_same_bits(run(b, p, s)[0], c, what + ": rerun");
          first = c;
        } else {
          require_same_bits(c, first, what + " vs the first placement");
        }
      }
    }
  }
}

TEST_CASE("gpu symmetric_matmul_batched: 3 matrices at strides, each as a single call", "[gpu][symmetric_matmul]") {
  const Scalars calls[] = {{0.5f, -0.25f, true}, {1.0f, 0.0f, false}};
  for (const Shape sh : {Shape{100, 72}, Shape{129, 136}, Shape{64, 200}, Shape{200, 64}}) {
    const Batch b = dyadic_batch(sh.r, sh.k, 3, 300 + sh.r + sh.k);
    std::vector<std::vector<double>> acc(3);
    for (int z = 0; z < 3; ++z) gram_lower(b.x[z], sh.r, sh.k, acc[z], nullptr);
    for (const Scalars& s : calls)
      for (const Placement& p : placements({0, 64, 128})) {
        const std::string what = std::to_string(sh.r) + "x" + std::to_string(sh.k) + " x3, " + p.describe() +
                                 ", alpha " + std::to_string(s.alpha) + ", beta " + std::to_string(s.beta);
        INFO(what);
        const auto c = run(b, p, s);
        for (int z = 0; z < 3; ++z) {
          INFO("matrix " << z);
          require_symmetric(c[z], sh.r, what);
          require_exact(c[z], acc[z], b.d[z], sh.r, s, what);
          Batch one{sh.r, sh.k, 1, {b.x[z]}, {b.d[z]}};
          require_same_bits(c[z], run(one, p, s)[0], what + ": batched vs single call");
        }
      }
  }
}

TEST_CASE("gpu symmetric_matmul forms Newton-Schulz's B = b A + c A A with X = D = A in place",
          "[gpu][symmetric_matmul]") {
  const float b_coef = -4.7750f, c_coef = 2.0315f;  // the quintic's b and c
  for (int r : {1, 64, 130, 768}) {
    INFO("r = " << r);
    // A = bf16(Y Y^T / k): symmetric, the scale of Newton-Schulz's A
    const int k = 2 * r + 3;
    const auto y = random_bf16(size_t(r) * k, 40 + r);
    std::vector<uint16_t> a(size_t(r) * r);
    for (int i = 0; i < r; ++i)
      for (int j = 0; j <= i; ++j) {
        double s = 0;
        for (int kk = 0; kk < k; ++kk) s += double(y[size_t(i) * k + kk]) * y[size_t(j) * k + kk];
        a[size_t(i) * r + j] = a[size_t(j) * r + i] = bf16_bits(static_cast<float>(s / k));
      }
    std::vector<double> acc, abs;
    gram_lower(a, r, r, acc, &abs);
    DeviceArray<uint16_t> d_a(a), d_c(std::vector<uint16_t>(size_t(r) * r, kSentinel));
    const bf16* A = as_bf16(d_a.get());
    const Scalars s{c_coef, b_coef, true};
    gpu::symmetric_matmul(as_bf16(d_c.get()), A, r, gpu::GramLayout::kRowMajor, A, r, r, c_coef, b_coef, nullptr);
    const auto c = d_c.download();
    require_symmetric(c, r, "B");
    require_within_bound(c, acc, abs, a, r, r, s, "B = b A + c A A");
    // A is symmetric: read as column-major it is the same matrix, same bits
    gpu::symmetric_matmul(as_bf16(d_c.get()), A, r, gpu::GramLayout::kColMajor, A, r, r, c_coef, b_coef, nullptr);
    require_same_bits(d_c.download(), c, "B with A read column-major");
  }
}

TEST_CASE("gpu symmetric_matmul with k = 0 writes bf16(beta D), or zeros", "[gpu][symmetric_matmul]") {
  for (int r : {37, 64}) {
    INFO("r = " << r);
    const Batch b = random_batch(r, 0, 1, 77 + r);
    for (const Placement& p : placements({0})) {
      INFO(p.describe());
      const auto c = run(b, p, {0.5f, -1.5f, true})[0];
      size_t wrong = 0;
      for (int i = 0; i < r; ++i)
        for (int j = 0; j < r; ++j) {
          const float d = bf16_value(b.d[0][size_t(std::max(i, j)) * r + std::min(i, j)]);
          wrong += !(bf16_value(c[size_t(i) * r + j]) == round_bf16(-1.5f * d));  // exact: -1.5 d fits in fp32
        }
      CHECK(wrong == 0);
      const auto z = run(b, p, {1.0f, 0.0f, false})[0];
      size_t nonzero = 0;
      for (uint16_t v : z) nonzero += !(bf16_value(v) == 0.0f);
      CHECK(nonzero == 0);
    }
  }
}
