// Every CPU reference op, forward against a direct formula where one exists,
// and backward against finite differences in double precision.
#include <cmath>

#include "gradcheck.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/mix.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/softcap_ce.h"

using namespace muongpt;
using namespace muongpt::test;
using Vec = std::vector<double>;

TEST_CASE("gemm matches a naive triple loop for odd shapes", "[kernels][matmul]") {
  for (auto [M, N, K] : std::vector<std::array<int, 3>>{{1, 1, 1}, {5, 37, 3}, {17, 70, 300}, {64, 33, 513}}) {
    const Vec A = random_vector<double>(size_t(M) * K, 1), B = random_vector<double>(size_t(K) * N, 2);
    Vec C0 = random_vector<double>(size_t(M) * N, 3), C = C0;
    cpu::gemm_nn(M, N, K, A.data(), K, B.data(), N, C.data(), N, /*accumulate=*/true);
    Vec expect = C0;
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        for (int k = 0; k < K; ++k) expect[i * N + j] += A[i * K + k] * B[k * N + j];
    require_close(C, expect, 1e-12, 1e-12, "gemm");
    // float gives the same result whatever the blocking: summation over k is in order
    std::vector<float> Af(A.begin(), A.end()), Bf(B.begin(), B.end()), Cf(size_t(M) * N);
    cpu::gemm_nn(M, N, K, Af.data(), K, Bf.data(), N, Cf.data(), N, false);
    std::vector<float> ref(size_t(M) * N, 0.f);
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        for (int k = 0; k < K; ++k) ref[i * N + j] += Af[i * K + k] * Bf[k * N + j];
    require_close(Cf, ref, 1e-5, 1e-5, "gemm float");
  }
}

TEST_CASE("gemm_tn matches a naive loop", "[kernels][matmul]") {
  for (auto [M, N, K] : std::vector<std::array<int, 3>>{{1, 1, 1}, {13, 37, 5}, {70, 33, 300}}) {
    const Vec A = random_vector<double>(size_t(K) * M, 1), B = random_vector<double>(size_t(K) * N, 2);
    Vec C = random_vector<double>(size_t(M) * N, 3), expect = C;
    cpu::gemm_tn(M, N, K, A.data(), M, B.data(), N, C.data(), N);
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        for (int k = 0; k < K; ++k) expect[i * N + j] += A[k * M + i] * B[k * N + j];
    require_close(C, expect, 1e-12, 1e-12, "gemm_tn");
  }
}

TEST_CASE("vectorisable float exp is accurate to a few ulp", "[kernels][exp]") {
  double worst = 0;
  for (float x = -86.5f; x < 88.0f; x += 0.0013f) {
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(cpu::exp_vectorizable(x) - exact) / exact);
  }
  INFO("worst relative error " << worst);
  REQUIRE(worst < 4 * 5.97e-8);  // 4 ulp
  REQUIRE(cpu::exp_vectorizable(-100.0f) == 0.0f);
  REQUIRE(cpu::exp_vectorizable(0.0f) == 1.0f);
}

TEST_CASE("linear layer backward", "[kernels][matmul][gradcheck]") {
  const int N = 7, C = 5, OC = 9;
  Vec X = random_vector<double>(N * C, 1), W = random_vector<double>(OC * C, 2), b = random_vector<double>(OC, 3);
  const Vec w = random_vector<double>(N * OC, 4);
  auto loss = [&] {
    Vec Y(N * OC);
    cpu::matmul_forward(Y.data(), X.data(), W.data(), b.data(), N, C, OC);
    return weighted_sum(Y, w);
  };
  Vec dX(N * C), dW(OC * C, 0.0), db(OC, 0.0);
  cpu::matmul_backward(dX.data(), dW.data(), db.data(), w.data(), X.data(), W.data(), N, C, OC, false);
  require_gradient(dX, numeric_gradient(X, loss), "dX");
  require_gradient(dW, numeric_gradient(W, loss), "dW");
  require_gradient(db, numeric_gradient(b, loss), "db");
}

TEST_CASE("embedding backward", "[kernels][embedding][gradcheck]") {
  const int B = 2, T = 5, C = 4, V = 6;
  const std::vector<int32_t> tokens = {1, 3, 3, 0, 5, 5, 5, 2, 1, 1};
  Vec wte = random_vector<double>(V * C, 1), wpe = random_vector<double>(T * C, 2);
  const Vec w = random_vector<double>(B * T * C, 3);
  auto loss = [&] {
    Vec out(B * T * C);
    cpu::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    return weighted_sum(out, w);
  };
  Vec dwte(V * C, 0.0), dwpe(T * C, 0.0);
  cpu::embedding_backward(dwte.data(), dwpe.data(), w.data(), tokens.data(), B, T, C);
  require_gradient(dwte, numeric_gradient(wte, loss), "dwte");
  require_gradient(dwpe, numeric_gradient(wpe, loss), "dwpe");
}

TEST_CASE("rmsnorm forward and backward", "[kernels][norm][gradcheck]") {
  const int rows = 6, C = 8;
  Vec x = random_vector<double>(rows * C, 1), weight = random_vector<double>(C, 2, 0.5, 1.5);
  const Vec w = random_vector<double>(rows * C, 3);
  const double eps = 1e-6;
  for (bool with_weight : {true, false}) {
    auto forward = [&] {
      Vec out(rows * C), rstd(rows);
      cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), with_weight ? weight.data() : nullptr, rows, C, eps);
      return out;
    };
    const Vec out = forward();
    for (int r = 0; r < rows; ++r) {  // direct formula
      double ms = 0;
      for (int c = 0; c < C; ++c) ms += x[r * C + c] * x[r * C + c] / C;
      for (int c = 0; c < C; ++c)
        REQUIRE(out[r * C + c] == Approx(x[r * C + c] / std::sqrt(ms + eps) * (with_weight ? weight[c] : 1.0)).epsilon(1e-12));
    }
    auto loss = [&] { return weighted_sum(forward(), w); };
    Vec rstd(rows), tmp(rows * C), dx(rows * C, 0.0), dweight(C, 0.0);
    cpu::rmsnorm_forward(tmp.data(), rstd.data(), x.data(), with_weight ? weight.data() : nullptr, rows, C, eps);
    cpu::rmsnorm_backward(dx.data(), with_weight ? dweight.data() : nullptr, w.data(), x.data(),
                          with_weight ? weight.data() : nullptr, rstd.data(), rows, C, false);
    require_gradient(dx, numeric_gradient(x, loss), "rmsnorm dx");
    if (with_weight) require_gradient(dweight, numeric_gradient(weight, loss), "rmsnorm dweight");
  }
}

TEST_CASE("layernorm forward and backward", "[kernels][norm][gradcheck]") {
  const int rows = 5, C = 7;
  Vec x = random_vector<double>(rows * C, 1), weight = random_vector<double>(C, 2, 0.5, 1.5),
      bias = random_vector<double>(C, 3);
  const Vec w = random_vector<double>(rows * C, 4);
  auto forward = [&] {
    Vec out(rows * C), mean(rows), rstd(rows);
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), weight.data(), bias.data(), rows, C, 1e-5);
    return out;
  };
  const Vec out = forward();
  for (int r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += x[r * C + c] / C;
    for (int c = 0; c < C; ++c) v += (x[r * C + c] - m) * (x[r * C + c] - m) / C;
    for (int c = 0; c < C; ++c)
      REQUIRE(out[r * C + c] == Approx((x[r * C + c] - m) / std::sqrt(v + 1e-5) * weight[c] + bias[c]).epsilon(1e-12));
  }
  auto loss = [&] { return weighted_sum(forward(), w); };
  Vec mean(rows), rstd(rows), tmp(rows * C), dx(rows * C, 0.0), dweight(C, 0.0), dbias(C, 0.0);
  cpu::layernorm_forward(tmp.data(), mean.data(), rstd.data(), x.data(), weight.data(), bias.data(), rows, C, 1e-5);
  cpu::layernorm_backward(dx.data(), dweight.data(), dbias.data(), w.data(), x.data(), weight.data(), mean.data(),
                          rstd.data(), rows, C, false);
  require_gradient(dx, numeric_gradient(x, loss), "layernorm dx");
  require_gradient(dweight, numeric_gradient(weight, loss), "layernorm dweight");
  require_gradient(dbias, numeric_gradient(bias, loss), "layernorm dbias");
}

TEST_CASE("rope is a rotation with the speedrun's sign convention", "[kernels][rope][gradcheck]") {
  const int B = 2, T = 5, H = 3, D = 8;
  Vec cos_t, sin_t;
  cpu::rope_tables(cos_t, sin_t, T, D, 10000.0);
  Vec x = random_vector<double>(B * T * H * D, 1);
  const Vec w = random_vector<double>(x.size(), 2);
  Vec y(x.size());
  cpu::rope_forward(y.data(), x.data(), cos_t.data(), sin_t.data(), B, T, H, D);
  // direct formula for one element: b=1, t=3, h=2, i=1
  {
    const int b = 1, t = 3, h = 2, i = 1;
    const double theta = t * std::pow(10000.0, -2.0 * i / D);
    const size_t base = ((size_t(b) * T + t) * H + h) * D;
    REQUIRE(y[base + i] == Approx(x[base + i] * std::cos(theta) + x[base + D / 2 + i] * std::sin(theta)));
    REQUIRE(y[base + D / 2 + i] == Approx(-x[base + i] * std::sin(theta) + x[base + D / 2 + i] * std::cos(theta)));
  }
  // rotation preserves norms; position 0 is the identity
  for (int bt = 0; bt < B * T; ++bt)
    for (int h = 0; h < H; ++h) {
      double nx = 0, ny = 0;
      for (int d = 0; d < D; ++d) {
        nx += x[(bt * H + h) * D + d] * x[(bt * H + h) * D + d];
        ny += y[(bt * H + h) * D + d] * y[(bt * H + h) * D + d];
      }
      REQUIRE(ny == Approx(nx).epsilon(1e-12));
    }
  REQUIRE(y[0] == x[0]);
  auto loss = [&] {
    Vec out(x.size());
    cpu::rope_forward(out.data(), x.data(), cos_t.data(), sin_t.data(), B, T, H, D);
    return weighted_sum(out, w);
  };
  Vec dx(x.size());
  cpu::rope_backward(dx.data(), w.data(), cos_t.data(), sin_t.data(), B, T, H, D);
  require_gradient(dx, numeric_gradient(x, loss), "rope dx");
}

TEST_CASE("activations", "[kernels][activation][gradcheck]") {
  Vec x = random_vector<double>(40, 1, -3, 3);
  const Vec w = random_vector<double>(40, 2);
  Vec y(40);
  cpu::gelu_forward(y.data(), x.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i)
    REQUIRE(y[i] == Approx(0.5 * x[i] * (1 + std::tanh(std::sqrt(2 / M_PI) * (x[i] + 0.044715 * std::pow(x[i], 3))))));
  cpu::relu2_forward(y.data(), x.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == (x[i] > 0 ? x[i] * x[i] : 0.0));
  for (bool gelu : {true, false}) {
    auto loss = [&] {
      Vec out(x.size());
      if (gelu) cpu::gelu_forward(out.data(), x.data(), x.size());
      else cpu::relu2_forward(out.data(), x.data(), x.size());
      return weighted_sum(out, w);
    };
    Vec dx(x.size());
    if (gelu) cpu::gelu_backward(dx.data(), w.data(), x.data(), x.size());
    else cpu::relu2_backward(dx.data(), w.data(), x.data(), x.size());
    require_gradient(dx, numeric_gradient(x, loss), gelu ? "gelu" : "relu2");
  }
}

TEST_CASE("mix backward including scalar weights", "[kernels][mix][gradcheck]") {
  const size_t n = 5000;  // more than one reduction chunk
  Vec x = random_vector<double>(n, 1), y = random_vector<double>(n, 2), ab = {0.7, -0.3};
  const Vec w = random_vector<double>(n, 3);
  auto loss = [&] {
    Vec out(n);
    cpu::mix_forward(out.data(), x.data(), y.data(), ab[0], ab[1], n);
    return weighted_sum(out, w);
  };
  Vec dx(n, 0.0), dy(n, 0.0), dab(2, 0.0);
  cpu::mix_backward(dx.data(), dy.data(), &dab[0], &dab[1], w.data(), x.data(), y.data(), ab[0], ab[1], n, false, true);
  require_gradient(dab, numeric_gradient(ab, loss), "mix d(a,b)", 1e-5, 1e-6);
  Vec xs(x.begin(), x.begin() + 50);
  REQUIRE(dx[10] == Approx(ab[0] * w[10]));
  REQUIRE(dy[10] == Approx(ab[1] * w[10]));
}

namespace {
struct AttentionCase {
  int B, T, H, D;
  int window;
  bool docs;
};
}  // namespace

TEST_CASE("attention forward matches a direct softmax and backward matches finite differences",
          "[kernels][attention][gradcheck]") {
  for (const AttentionCase c : {AttentionCase{2, 6, 2, 4, 0, false}, AttentionCase{1, 9, 3, 2, 3, false},
                                AttentionCase{2, 8, 2, 4, 0, true}, AttentionCase{1, 7, 1, 4, 2, true}}) {
    INFO("B=" << c.B << " T=" << c.T << " H=" << c.H << " D=" << c.D << " window=" << c.window << " docs=" << c.docs);
    const size_t n = size_t(c.B) * c.T * c.H * c.D;
    Vec q = random_vector<double>(n, 1), k = random_vector<double>(n, 2), v = random_vector<double>(n, 3);
    const Vec w = random_vector<double>(n, 4);
    // documents: boundaries at 0, 3 and 4 (a length-1 document) for every sequence
    std::vector<int32_t> doc(size_t(c.B) * c.T);
    for (int b = 0; b < c.B; ++b)
      for (int t = 0; t < c.T; ++t) doc[b * c.T + t] = (t >= 3) + (t >= 4);
    cpu::AttentionMask mask{c.window, c.docs ? doc.data() : nullptr};
    const double scale = 0.37;
    Vec probs(size_t(c.B) * c.H * c.T * c.T), out(n);
    Vec max_logit(c.H);
    cpu::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), c.B, c.T, c.H, c.D, scale, mask,
                           max_logit.data());
    // direct evaluation of one query row per (b, h) and of the max logits
    Vec expect_max(c.H, -INFINITY);
    for (int b = 0; b < c.B; ++b)
      for (int h = 0; h < c.H; ++h)
        for (int t = 0; t < c.T; ++t) {
          Vec s(c.T, -INFINITY);
          double m = -INFINITY;
          for (int j = 0; j < c.T; ++j) {
            if (!mask.allowed(b, c.T, t, j)) continue;
            s[j] = 0;
            for (int d = 0; d < c.D; ++d)
              s[j] += q[((b * c.T + t) * c.H + h) * c.D + d] * k[((b * c.T + j) * c.H + h) * c.D + d];
            s[j] *= scale;
            m = std::max(m, s[j]);
          }
          expect_max[h] = std::max(expect_max[h], m);
          double z = 0;
          for (int j = 0; j < c.T; ++j) z += std::isinf(s[j]) ? 0 : std::exp(s[j] - m);
          for (int d = 0; d < c.D; ++d) {
            double y = 0;
            for (int j = 0; j < c.T; ++j)
              if (!std::isinf(s[j])) y += std::exp(s[j] - m) / z * v[((b * c.T + j) * c.H + h) * c.D + d];
            REQUIRE(out[((b * c.T + t) * c.H + h) * c.D + d] == Approx(y).epsilon(1e-12));
          }
        }
    require_close(max_logit, expect_max, 1e-12, 1e-12, "max logits");
    auto loss = [&] {
      Vec o(n), p(probs.size());
      cpu::attention_forward(o.data(), p.data(), q.data(), k.data(), v.data(), c.B, c.T, c.H, c.D, scale, mask);
      return weighted_sum(o, w);
    };
    Vec dq(n), dk(n), dv(n);
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), w.data(), probs.data(), q.data(), k.data(), v.data(),
                            c.B, c.T, c.H, c.D, scale, mask);
    require_gradient(dq, numeric_gradient(q, loss), "dq");
    require_gradient(dk, numeric_gradient(k, loss), "dk");
    require_gradient(dv, numeric_gradient(v, loss), "dv");
  }
}

TEST_CASE("softcap cross-entropy", "[kernels][loss][gradcheck]") {
  const int N = 4, Vp = 11;
  const std::vector<int32_t> targets = {0, 7, 3, 9};
  for (double cap : {0.0, 2.5}) {
    for (int V : {Vp, 8}) {
      INFO("cap=" << cap << " V=" << V);
      Vec z = random_vector<double>(N * Vp, 1, -4, 4);
      std::vector<int32_t> t = targets;
      for (auto& x : t) x = std::min(x, V - 1);
      const Vec w = random_vector<double>(N, 2, 0.1, 1.0);
      auto per_token = [&] {
        Vec losses(N), lse(N);
        cpu::softcap_ce_forward(losses.data(), lse.data(), z.data(), t.data(), N, Vp, V, cap);
        return losses;
      };
      const Vec losses = per_token();
      for (int n = 0; n < N; ++n) {  // direct formula
        double sum = 0;
        auto capped = [&](double x) { return cap > 0 ? cap * std::tanh(x / cap) : x; };
        for (int j = 0; j < V; ++j) sum += std::exp(capped(z[n * Vp + j]));
        REQUIRE(losses[n] == Approx(std::log(sum) - capped(z[n * Vp + t[n]])).epsilon(1e-12));
      }
      // backward takes one upstream scalar; check each token's gradient row with that scalar
      const double g = 0.37;
      Vec dz(N * Vp), lse(N), unused(N);
      cpu::softcap_ce_forward(unused.data(), lse.data(), z.data(), t.data(), N, Vp, V, cap);
      cpu::softcap_ce_backward(dz.data(), z.data(), lse.data(), t.data(), g, N, Vp, V, cap);
      auto loss = [&] {
        const Vec l = per_token();
        double s = 0;
        for (double x : l) s += g * x;
        return s;
      };
      require_gradient(dz, numeric_gradient(z, loss), "dlogits");
      for (int n = 0; n < N; ++n)
        for (int j = V; j < Vp; ++j) REQUIRE(dz[n * Vp + j] == 0.0);
      // in place over the logits gives the same result
      Vec inplace = z;
      cpu::softcap_ce_backward(inplace.data(), inplace.data(), lse.data(), t.data(), g, N, Vp, V, cap);
      require_close(inplace, dz, 0, 0, "in-place dlogits");
    }
  }
}
