// GPU causal attention (forward + backward) against kernels/cpu/attention.h,
// on the same bf16-rounded inputs: full causal, sliding windows (token and
// block windows) and document masks, T from 1 to 300 (partial tiles, several
// tiles), D in {32, 64, 128}; every case runs on the CUDA-core kernels and,
// for D 64 and 128, on the tensor-core kernels (same tolerances), plus longer
// sequences for the latter.
// The kernels take delta_t = dout_t . out_t from the bf16 out that the forward
// stored (as FlashAttention does); the CPU uses sum_j P_tj dP_tj, i.e. the
// unrounded out. The dq/dk references are shifted by that (known) difference,
// see delta_shift(), so the comparison sees only rounding; the unshifted CPU
// gradients are checked too, with a looser absolute term.
// Tolerances:
//   out, dq, dk, dv (bf16)   2e-2 |ref| + 2e-3 max|ref| + 1e-5 (the 1e-5 floor covers
//                            gradients that are exactly 0 in the reference, e.g. T = 1
//                            or window 1, where the GPU leaves fp32 rounding noise)
//   dq, dk vs the unshifted CPU   2e-2 |ref| + 1e-2 max|ref| + 1e-5
//   lse, max_logit (fp32)    1e-5 |ref| + 1e-4 against a double-precision recomputation
// Outputs start as NaN, so an element the kernels never write fails. Forward
// and backward reruns give identical bits.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>

#include "gpu_test_util.h"
#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

struct AttnCase {
  int B = 1, T = 1, H = 1, D = 64;
  float scale = 0.12f;
  int window = 0;
  int block = 0;             // window_block: 0 = token windows, else whole blocks of this many keys
  std::vector<int32_t> doc;  // (B, T) or empty
  float qk_range = 2.0f;     // q, k uniform in [-qk_range, qk_range]
  bool with_max_logit = true;
  gpu::AttentionKernel kernel = gpu::AttentionKernel::kCudaCores;

  std::string describe() const {
    std::ostringstream s;
    s << gpu::attention_kernel_name(kernel) << " B=" << B << " T=" << T << " H=" << H << " D=" << D
      << " scale=" << scale << " window=" << window << " block=" << block << " doc=" << (doc.empty() ? "none" : "yes")
      << " qk_range=" << qk_range;
    return s.str();
  }
};

size_t index(const AttnCase& c, int b, int t, int h, int d) {
  return ((static_cast<size_t>(b) * c.T + t) * c.H + h) * c.D + d;
}

// lse (B, H, T) and max_logit (H) in double from the bf16-rounded q, k.
void reference_lse(const AttnCase& c, const std::vector<float>& q, const std::vector<float>& k,
                   const cpu::AttentionMask& mask, std::vector<double>& lse, std::vector<double>& max_logit) {
  const double scale = c.scale;
  lse.assign(static_cast<size_t>(c.B) * c.H * c.T, 0.0);
  max_logit.assign(c.H, -std::numeric_limits<double>::infinity());
  std::vector<double> s(c.T);
  for (int b = 0; b < c.B; ++b)
    for (int h = 0; h < c.H; ++h)
      for (int t = 0; t < c.T; ++t) {
        double m = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < c.T; ++j) {
          if (!mask.allowed(b, c.T, t, j)) continue;
          double dot = 0;
          for (int d = 0; d < c.D; ++d) dot += double(q[index(c, b, t, h, d)]) * double(k[index(c, b, j, h, d)]);
          s[j] = scale * dot;
          m = std::max(m, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < c.T; ++j)
          if (mask.allowed(b, c.T, t, j)) sum += std::exp(s[j] - m);
        lse[(static_cast<size_t>(b) * c.H + h) * c.T + t] = m + std::log(sum);
        max_logit[h] = std::max(max_logit[h], m);
      }
}

// The CPU gradients with delta_t = dout_t . out_gpu_t in place of the CPU's
// dout_t . out_cpu_t: with c_t = dout_t . (out_cpu_t - out_gpu_t),
//   dq_t += scale c_t sum_j P_tj k_j        dk_j += scale sum_t P_tj c_t q_t
// (dS_tj = P_tj (dP_tj - delta_t) grows by P_tj c_t). probs: the CPU forward's P.
void delta_shift(const AttnCase& c, const std::vector<float>& q, const std::vector<float>& k,
                 const std::vector<float>& dout, const std::vector<float>& out_cpu, const std::vector<float>& out_gpu,
                 const std::vector<float>& probs, std::vector<float>& dq, std::vector<float>& dk) {
  std::vector<double> shift_q(c.D), shift_k(dk.size(), 0.0);
  for (int b = 0; b < c.B; ++b)
    for (int h = 0; h < c.H; ++h)
      for (int t = 0; t < c.T; ++t) {
        double ct = 0;
        for (int d = 0; d < c.D; ++d) {
          const size_t i = index(c, b, t, h, d);
          ct += double(dout[i]) * (double(out_cpu[i]) - double(out_gpu[i]));
        }
        const float* p = probs.data() + ((static_cast<size_t>(b) * c.H + h) * c.T + t) * c.T;
        std::fill(shift_q.begin(), shift_q.end(), 0.0);
        for (int j = 0; j <= t; ++j) {
          if (p[j] == 0.0f) continue;  // masked (or underflowed: no contribution either way)
          for (int d = 0; d < c.D; ++d) {
            shift_q[d] += double(p[j]) * k[index(c, b, j, h, d)];
            shift_k[index(c, b, j, h, d)] += c.scale * double(p[j]) * ct * q[index(c, b, t, h, d)];
          }
        }
        for (int d = 0; d < c.D; ++d) dq[index(c, b, t, h, d)] += static_cast<float>(c.scale * ct * shift_q[d]);
      }
  for (size_t i = 0; i < dk.size(); ++i) dk[i] += static_cast<float>(shift_k[i]);
}

void require_close_bf16_grad(const std::vector<float>& got, const std::vector<float>& ref, const std::string& what,
                             double atol_rel = 2e-3) {
  require_finite(got, what);
  test::require_close(got, ref, 2e-2, atol_rel * max_abs(ref) + 1e-5, what);
}

void require_close_logits(const std::vector<float>& got, const std::vector<double>& ref, const std::string& what) {
  require_finite(got, what);
  test::require_close(got, ref, 1e-5, 1e-4, what);
}

std::vector<float> nan_vector(size_t n) { return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()); }

void check_case(const AttnCase& c, uint64_t seed) {
  INFO(c.describe());
  const size_t n = static_cast<size_t>(c.B) * c.T * c.H * c.D;
  const size_t rows = static_cast<size_t>(c.B) * c.H * c.T;
  REQUIRE((c.doc.empty() || c.doc.size() == static_cast<size_t>(c.B) * c.T));
  const auto q = random_bf16(n, seed, -c.qk_range, c.qk_range);
  const auto k = random_bf16(n, seed + 1, -c.qk_range, c.qk_range);
  const auto v = random_bf16(n, seed + 2);
  const auto dout = random_bf16(n, seed + 3);
  const cpu::AttentionMask mask{c.window, c.doc.empty() ? nullptr : c.doc.data(), c.block};

  std::vector<float> out_ref(n), probs(rows * c.T), max_ref_f(c.H);
  cpu::attention_forward(out_ref.data(), probs.data(), q.data(), k.data(), v.data(), c.B, c.T, c.H, c.D, c.scale,
                         mask, max_ref_f.data());
  std::vector<float> dq_ref(n), dk_ref(n), dv_ref(n);
  cpu::attention_backward(dq_ref.data(), dk_ref.data(), dv_ref.data(), dout.data(), probs.data(), q.data(), k.data(),
                          v.data(), c.B, c.T, c.H, c.D, c.scale, mask);
  std::vector<double> lse_ref, max_ref;
  reference_lse(c, q, k, mask, lse_ref, max_ref);

  DeviceBf16 d_q(q), d_k(k), d_v(v), d_dout(dout), d_out(nan_vector(n));
  DeviceBf16 d_dq(nan_vector(n)), d_dk(nan_vector(n)), d_dv(nan_vector(n));
  DeviceArray<float> d_lse(nan_vector(rows)), d_max(std::vector<float>(c.H, 1e30f));
  DeviceArray<int32_t> d_doc(c.doc);
  DeviceArray<float> d_scratch(gpu::attention_backward_scratch_floats(c.B, c.T, c.H));
  const int32_t* doc = c.doc.empty() ? nullptr : d_doc.get();
  float* max_logit = c.with_max_logit ? d_max.get() : nullptr;

  gpu::attention_forward(d_out.get(), d_lse.get(), max_logit, d_q.get(), d_k.get(), d_v.get(), c.B, c.T, c.H, c.D,
                         c.scale, c.window, c.block, doc, nullptr, c.kernel);
  const auto out = d_out.download();
  const auto lse = d_lse.download();
  const auto max_logit_got = d_max.download();
  require_close_bf16_grad(out, out_ref, "out");
  require_close_logits(lse, lse_ref, "lse");
  if (c.with_max_logit) {
    require_close_logits(max_logit_got, max_ref, "max_logit");
  } else {
    require_same_bits(max_logit_got, std::vector<float>(c.H, 1e30f), "max_logit untouched");
  }

  auto backward = [&] {
    gpu::attention_backward(d_dq.get(), d_dk.get(), d_dv.get(), d_dout.get(), d_out.get(), d_lse.get(), d_q.get(),
                            d_k.get(), d_v.get(), c.B, c.T, c.H, c.D, c.scale, c.window, c.block, doc,
                            d_scratch.get(), nullptr, c.kernel);
    return std::make_tuple(d_dq.download_bits(), d_dk.download_bits(), d_dv.download_bits());
  };
  const auto [dq_bits, dk_bits, dv_bits] = backward();
  const auto dq = d_dq.download(), dk = d_dk.download(), dv = d_dv.download();
  require_close_bf16_grad(dv, dv_ref, "dv");
  require_close_bf16_grad(dq, dq_ref, "dq (unshifted CPU)", 1e-2);
  require_close_bf16_grad(dk, dk_ref, "dk (unshifted CPU)", 1e-2);
  delta_shift(c, q, k, dout, out_ref, out, probs, dq_ref, dk_ref);
  require_close_bf16_grad(dq, dq_ref, "dq");
  require_close_bf16_grad(dk, dk_ref, "dk");

  // Determinism: the backward and the forward again, bit for bit.
  const auto [dq2, dk2, dv2] = backward();
  require_same_bits(dq_bits, dq2, "dq rerun");
  require_same_bits(dk_bits, dk2, "dk rerun");
  require_same_bits(dv_bits, dv2, "dv rerun");
  gpu::attention_forward(d_out.get(), d_lse.get(), max_logit, d_q.get(), d_k.get(), d_v.get(), c.B, c.T, c.H, c.D,
                         c.scale, c.window, c.block, doc, nullptr, c.kernel);
  require_same_bits(d_out.download(), out, "out rerun");
  require_same_bits(d_lse.download(), lse, "lse rerun");
  require_same_bits(d_max.download(), max_logit_got, "max_logit rerun");
}

const std::vector<int> kSeqLens = {1, 7, 64, 65, 200, 300};
const std::vector<int> kHeadDims = {64, 128, 32};

// Both implementations where the tensor-core one applies (D 64, 128).
void check_all_kernels(AttnCase c, uint64_t seed) {
  c.kernel = gpu::AttentionKernel::kCudaCores;
  check_case(c, seed);
  if (c.D == 64 || c.D == 128) {
    c.kernel = gpu::AttentionKernel::kTensorCores;
    check_case(c, seed);
  }
}

float inv_sqrt(int D) { return 1.0f / std::sqrt(static_cast<float>(D)); }

// Document ids (B, T) with random boundaries. Batch row 0 starts with a
// document of length 1 (boundaries at 0 and 1); every row has another
// length-1 document at a random place (when T > 2) and ends with a document
// boundary at T - 1 (when T > 3).
std::vector<int32_t> random_documents(int B, int T, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> cut(0, 9);  // a boundary at ~1 position in 10
  std::vector<int32_t> doc(static_cast<size_t>(B) * T);
  for (int b = 0; b < B; ++b) {
    std::vector<bool> starts(T, false);
    if (T > 0) starts[0] = true;
    for (int t = 1; t < T; ++t) starts[t] = cut(gen) == 0;
    if (b == 0 && T > 1) starts[1] = true;  // [0] is a document of length 1
    if (T > 2) {
      const int p = std::uniform_int_distribution<int>(1, T - 2)(gen);
      starts[p] = starts[p + 1] = true;  // [p] is a document of length 1
    }
    if (T > 3) starts[T - 1] = true;
    int id = 100 * b;  // ids need not start at 0
    for (int t = 0; t < T; ++t) {
      if (t > 0 && starts[t]) ++id;
      doc[static_cast<size_t>(b) * T + t] = id;
    }
  }
  return doc;
}

}  // namespace

TEST_CASE("gpu attention matches the CPU: full causal", "[gpu][attention]") {
  uint64_t seed = 1;
  for (int T : kSeqLens)
    for (int D : kHeadDims)
      for (float scale : {0.12f, inv_sqrt(D)}) {
        AttnCase c;
        c.B = 2;
        c.T = T;
        c.H = 2;
        c.D = D;
        c.scale = scale;
        check_all_kernels(c, seed += 10);
      }
}

// Case number i of a sweep: the head dim cycles through kHeadDims and the
// scale alternates between 0.12 and 1/sqrt(D) (0.12 first with twelve_first).
AttnCase sweep_case(int i, int B, int T, int H, int window, int block, bool twelve_first) {
  AttnCase c;
  c.B = B;
  c.T = T;
  c.H = H;
  c.D = kHeadDims[i % kHeadDims.size()];
  c.scale = (i % 2 == 0) == twelve_first ? 0.12f : inv_sqrt(c.D);
  c.window = window;
  c.block = block;
  return c;
}

TEST_CASE("gpu attention matches the CPU: sliding windows", "[gpu][attention]") {
  uint64_t seed = 1000;
  int i = 0;
  for (int window : {1, 3, 64, 100, 1000})
    for (int T : kSeqLens) {
      AttnCase c = sweep_case(i++, 1, T, 3, window, 0, false);
      check_all_kernels(c, seed += 10);
    }
}

TEST_CASE("gpu attention matches the CPU: document masks", "[gpu][attention]") {
  uint64_t seed = 2000;
  int i = 0;
  for (int T : kSeqLens)
    for (int window : {0, 3, 100}) {
      AttnCase c = sweep_case(i, 2, T, 2, window, 0, true);
      c.doc = random_documents(c.B, T, seed);
      c.with_max_logit = i % 4 != 3;
      ++i;
      check_all_kernels(c, seed += 10);
    }
}

TEST_CASE("gpu attention matches the CPU: block windows", "[gpu][attention][window_block]") {
  // Query t sees key j when floor(t/b) - floor(j/b) < window/b: window edges fall on block edges,
  // which need not be tile edges (tiles of 32 on CUDA cores, 64 and 32 on tensor cores); T is
  // mostly not a multiple of b. One block (window = b) sees only its own block's past.
  uint64_t seed = 5000;
  int i = 0;
  for (int block : {16, 32})
    for (int blocks_in_window : {1, 2, 3, 5})
      for (int T : {7, 50, 129, 300}) {
        AttnCase c = sweep_case(i, 1 + i % 2, T, 2, block * blocks_in_window, block, false);
        ++i;
        check_all_kernels(c, seed += 10);
      }
}

TEST_CASE("gpu attention matches the CPU: block windows with document masks", "[gpu][attention][window_block]") {
  uint64_t seed = 6000;
  int i = 0;
  for (int block : {16, 32})
    for (int blocks_in_window : {1, 3})
      for (int T : {65, 200, 300}) {
        AttnCase c = sweep_case(i, 2, T, 2, block * blocks_in_window, block, true);
        c.doc = random_documents(c.B, T, seed);
        c.with_max_logit = i % 3 != 2;
        ++i;
        check_all_kernels(c, seed += 10);
      }
}

TEST_CASE("gpu attention: a block size with window 0 is full causal, bit for bit", "[gpu][attention][window_block]") {
  // window 0 ignores the block size: the same kernels run on the same mask.
  for (auto kernel : {gpu::AttentionKernel::kCudaCores, gpu::AttentionKernel::kTensorCores}) {
    INFO(gpu::attention_kernel_name(kernel));
    const int B = 1, T = 130, H = 2, D = 64;
    const size_t n = static_cast<size_t>(B) * T * H * D;
    DeviceBf16 q(random_bf16(n, 1)), k(random_bf16(n, 2)), v(random_bf16(n, 3)), dout(random_bf16(n, 4));
    DeviceBf16 out(n), dq(n), dk(n), dv(n);
    DeviceArray<float> lse(static_cast<size_t>(B) * H * T), scratch(gpu::attention_backward_scratch_floats(B, T, H));
    auto run = [&](int block) {
      gpu::attention_forward(out.get(), lse.get(), nullptr, q.get(), k.get(), v.get(), B, T, H, D, 0.12f, 0, block,
                             nullptr, nullptr, kernel);
      gpu::attention_backward(dq.get(), dk.get(), dv.get(), dout.get(), out.get(), lse.get(), q.get(), k.get(),
                              v.get(), B, T, H, D, 0.12f, 0, block, nullptr, scratch.get(), nullptr, kernel);
      return std::make_tuple(out.download_bits(), lse.download(), dq.download_bits(), dk.download_bits(),
                             dv.download_bits());
    };
    const auto [out0, lse0, dq0, dk0, dv0] = run(0);
    const auto [out1, lse1, dq1, dk1, dv1] = run(16);
    require_same_bits(out0, out1, "out");
    require_same_bits(lse0, lse1, "lse");
    require_same_bits(dq0, dq1, "dq");
    require_same_bits(dk0, dk1, "dk");
    require_same_bits(dv0, dv1, "dv");
  }
}

TEST_CASE("gpu attention matches the CPU: unusual shapes and sharp softmax", "[gpu][attention]") {
  uint64_t seed = 3000;
  {  // large logits (|s| up to ~100): online-softmax rescaling across tiles, one-hot rows
    AttnCase c;
    c.B = 1;
    c.T = 200;
    c.H = 2;
    c.D = 128;
    c.scale = 0.3f;
    c.qk_range = 4.0f;
    check_all_kernels(c, seed += 10);
  }
  {  // other even head dims (not a multiple of 32), one batch row, several heads
    for (int D : {2, 48, 96, 126}) {
      AttnCase c;
      c.B = 1;
      c.T = 70;
      c.H = 3;
      c.D = D;
      c.scale = inv_sqrt(D);
      c.window = D == 48 ? 33 : 0;
      check_all_kernels(c, seed += 10);
    }
  }
  {  // document ids that are not contiguous runs: token j visible iff same id
    AttnCase c;
    c.B = 2;
    c.T = 100;
    c.H = 1;
    c.D = 64;
    c.doc = random_ints(static_cast<size_t>(c.B) * c.T, seed, 0, 3);
    check_all_kernels(c, seed += 10);
  }
}

TEST_CASE("gpu attention, tensor cores: long sequences over many tiles", "[gpu][attention]") {
  uint64_t seed = 4000;
  for (int D : {64, 128}) {
    AttnCase c;
    c.B = 1;
    c.T = 1030;  // 17 tiles of 64, the last one partial
    c.H = 2;
    c.D = D;
    c.scale = 0.12f;
    c.kernel = gpu::AttentionKernel::kTensorCores;
    check_case(c, seed += 10);
    c.window = 300;  // window edges inside tiles
    check_case(c, seed += 10);
    c.window = 0;
    c.doc = random_documents(c.B, c.T, seed);
    check_case(c, seed += 10);
  }
}

TEST_CASE("gpu attention, tensor cores: long sequences with block windows", "[gpu][attention][window_block]") {
  // The speedrun's block of 128 (two tensor-core tiles) and a block of 48 (not a divisor of the tiles):
  // block edges inside tiles, windows of several blocks, with and without documents.
  uint64_t seed = 7000;
  for (int D : {64, 128})
    for (auto [block, window] : {std::pair{128, 384}, std::pair{48, 144}}) {
      AttnCase c;
      c.B = 1;
      c.T = 1030;
      c.H = 2;
      c.D = D;
      c.scale = 0.12f;
      c.window = window;
      c.block = block;
      c.kernel = gpu::AttentionKernel::kTensorCores;
      check_case(c, seed += 10);
      c.doc = random_documents(c.B, c.T, seed);
      check_case(c, seed += 10);
    }
}

TEST_CASE("gpu attention, tensor cores: unsupported head dims and misaligned tensors are refused", "[gpu][attention]") {
  const auto tc = gpu::AttentionKernel::kTensorCores;
  DeviceBf16 x(4 * 128), y(4 * 128 + 8);  // inputs; outputs, y.get() + 1 misaligned
  DeviceArray<float> lse(4);
  REQUIRE_THROWS_AS(gpu::attention_forward(y.get(), lse.get(), nullptr, x.get(), x.get(), x.get(), 1, 4, 1, 32, 1.0f,
                                           0, 0, nullptr, nullptr, tc),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(gpu::attention_forward(y.get() + 1, lse.get(), nullptr, x.get(), x.get(), x.get(), 1, 4, 1, 64,
                                           1.0f, 0, 0, nullptr, nullptr, tc),
                    std::invalid_argument);
  // auto never refuses: it falls back to the CUDA cores for these.
  gpu::attention_forward(y.get() + 1, lse.get(), nullptr, x.get(), x.get(), x.get(), 1, 4, 1, 64, 1.0f, 0, 0, nullptr,
                         nullptr, gpu::AttentionKernel::kAuto);
  CUDA_CHECK(cudaDeviceSynchronize());
  REQUIRE(gpu::parse_attention_kernel("tensor_cores") == tc);
  REQUIRE_THROWS_AS(gpu::parse_attention_kernel("fast"), std::invalid_argument);
}

TEST_CASE("gpu attention rejects bad sizes and empty inputs write max_logit", "[gpu][attention]") {
  DeviceBf16 x(64);
  DeviceArray<float> lse(1), max_logit(std::vector<float>{7.0f, 7.0f});
  for (int D : {0, 3, 130}) {
    INFO("D=" << D);
    REQUIRE_THROWS_AS(gpu::attention_forward(x.get(), lse.get(), nullptr, x.get(), x.get(), x.get(), 1, 1, 1, D, 1.0f,
                                             0, 0, nullptr, nullptr),
                      std::invalid_argument);
  }
  REQUIRE_THROWS_AS(gpu::attention_forward(x.get(), lse.get(), nullptr, x.get(), x.get(), x.get(), 1, 1, 1, 64, 1.0f,
                                           -1, 0, nullptr, nullptr),
                    std::invalid_argument);
  // block windows: the block size must be >= 0 and divide the window
  REQUIRE_THROWS_AS(gpu::attention_forward(x.get(), lse.get(), nullptr, x.get(), x.get(), x.get(), 1, 1, 1, 64, 1.0f,
                                           32, -16, nullptr, nullptr),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(gpu::attention_forward(x.get(), lse.get(), nullptr, x.get(), x.get(), x.get(), 1, 1, 1, 64, 1.0f,
                                           40, 16, nullptr, nullptr),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(gpu::attention_backward(x.get(), x.get(), x.get(), x.get(), x.get(), lse.get(), x.get(), x.get(),
                                            x.get(), 1, 1, 1, 64, 1.0f, 8, 16, nullptr, nullptr, nullptr),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(gpu::attention_backward(x.get(), x.get(), x.get(), x.get(), x.get(), lse.get(), x.get(), x.get(),
                                            x.get(), 1, 1, 1, 64, 1.0f, 0, 0, nullptr, nullptr, nullptr),
                    std::invalid_argument);
  // T = 0: nothing to attend to, max_logit = -inf (written, not left as is).
  gpu::attention_forward(nullptr, nullptr, max_logit.get(), nullptr, nullptr, nullptr, 1, 0, 2, 64, 1.0f, 0, 0, nullptr,
                         nullptr);
  const auto m = max_logit.download();
  REQUIRE(m[0] == -std::numeric_limits<float>::infinity());
  REQUIRE(m[1] == -std::numeric_limits<float>::infinity());
  REQUIRE(gpu::attention_backward_scratch_floats(2, 0, 3) == 0);
  gpu::attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 2, 0, 3, 64,
                          1.0f, 0, 0, nullptr, nullptr, nullptr);
}
