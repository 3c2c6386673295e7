// GPU GELU (tanh) and ReLU^2 forward/backward against kernels/cpu/activation.h.
// Tolerance: bf16 outputs 1e-2 relative + 1e-4 max|ref|. Also: in place,
// unaligned pointers (the scalar path), reruns bit-identical.
#include "gpu_test_util.h"
#include "kernels/cpu/activation.h"
#include "kernels/cuda/activation.cuh"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

using Fwd = void (*)(gpu::bf16*, const gpu::bf16*, size_t, cudaStream_t);
using Bwd = void (*)(gpu::bf16*, const gpu::bf16*, const gpu::bf16*, size_t, cudaStream_t);

void check_activation(const char* name, Fwd fwd, Bwd bwd, void (*cpu_fwd)(float*, const float*, size_t),
                      void (*cpu_bwd)(float*, const float*, const float*, size_t)) {
  for (size_t n : {size_t(1), size_t(7), size_t(8), size_t(129 * 96 + 5), size_t(8000), size_t(100003)})
    for (size_t offset : {size_t(0), size_t(1)}) {  // offset 1: not 16-byte aligned
      INFO(name << " n=" << n << " offset=" << offset);
      const auto x = random_bf16(n, 1, -4.0f, 4.0f);
      const auto dy = random_bf16(n, 2);
      std::vector<float> y_ref(n), dx_ref(n);
      cpu_fwd(y_ref.data(), x.data(), n);
      cpu_bwd(dx_ref.data(), dy.data(), x.data(), n);

      std::vector<float> xpad(offset, 0.0f), dypad(offset, 0.0f);
      xpad.insert(xpad.end(), x.begin(), x.end());
      dypad.insert(dypad.end(), dy.begin(), dy.end());
      DeviceBf16 d_x(xpad), d_y(n + offset), d_dy(dypad), d_dx(n + offset);
      auto tail = [&](const std::vector<float>& v) { return std::vector<float>(v.begin() + offset, v.end()); };
      fwd(d_y.get() + offset, d_x.get() + offset, n, nullptr);
      const auto y = tail(d_y.download());
      require_close_bf16(y, y_ref, "forward");
      bwd(d_dx.get() + offset, d_dy.get() + offset, d_x.get() + offset, n, nullptr);
      const auto dx = tail(d_dx.download());
      require_close_bf16(dx, dx_ref, "backward");
      bwd(d_dx.get() + offset, d_dy.get() + offset, d_x.get() + offset, n, nullptr);
      require_same_bits(tail(d_dx.download()), dx, "backward rerun");
      // in place: dx over dout, then y over x
      bwd(d_dy.get() + offset, d_dy.get() + offset, d_x.get() + offset, n, nullptr);
      require_same_bits(tail(d_dy.download()), dx, "backward in place");
      fwd(d_x.get() + offset, d_x.get() + offset, n, nullptr);
      require_same_bits(tail(d_x.download()), y, "forward in place");
    }
}

}  // namespace

TEST_CASE("gpu gelu forward and backward match the CPU", "[gpu][activation]") {
  check_activation("gelu", gpu::gelu_forward, gpu::gelu_backward, cpu::gelu_forward<float>,
                   cpu::gelu_backward<float>);
}

TEST_CASE("gpu relu2 forward and backward match the CPU", "[gpu][activation]") {
  check_activation("relu2", gpu::relu2_forward, gpu::relu2_backward, cpu::relu2_forward<float>,
                   cpu::relu2_backward<float>);
}
