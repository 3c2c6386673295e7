// main() of the GPU kernel tests: exits 77 (CTest: skipped) when this machine
// has no CUDA device that can run this build's kernels, else runs Catch2.
// With Catch2 v2 this file also holds Catch's implementation (it replaces
// tests/catch2_v2_main.cpp for this binary).
#if MUONGPT_CATCH_MAJOR >= 3
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include <cstdio>
#include <string>

#include "kernels/cuda/common.cuh"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {  // listing the tests needs no GPU
    const std::string arg = argv[i];
    if (arg == "-l" || arg.rfind("--list", 0) == 0) return Catch::Session().run(argc, argv);
  }
  const std::string reason = muongpt::gpu::device_probe();
  if (!reason.empty()) {
    std::printf("SKIP gpu.kernels: no CUDA device (%s)\n", reason.c_str());
    std::fflush(stdout);
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
