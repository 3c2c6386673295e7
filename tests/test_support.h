// Shared test helpers: the right Catch2 headers for v2 or v3, paths, random
// inputs and tolerance checks.
#pragma once

#if MUONGPT_CATCH_MAJOR >= 3
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <unistd.h>

#include <vector>

namespace muongpt::test {

inline std::string source_path(const std::string& relative) { return std::string(MUONGPT_SOURCE_DIR) + "/" + relative; }
inline std::string test_path(const std::string& relative) { return std::string(MUONGPT_TEST_DIR) + "/" + relative; }

// A fresh empty directory under the build tree's temp area.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("muongpt_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

template <class T>
std::vector<T> random_vector(size_t n, uint64_t seed, T lo = T(-1), T hi = T(1)) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

// max_i |a_i - b_i| / (atol + rtol * |b_i|) <= 1, with the worst index reported.
template <class A, class B>
void require_close(const A& a, const B& b, double rtol, double atol, const std::string& what) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double diff = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    const double ratio = diff == 0 ? 0.0 : diff / (atol + rtol * std::abs(static_cast<double>(b[i])));
    if (!(ratio <= worst) || std::isnan(ratio)) {  // NaN never passes
      worst = std::isnan(ratio) ? INFINITY : ratio;
      worst_i = i;
    }
  }
  INFO(what << ": worst element " << worst_i << " got " << static_cast<double>(a[worst_i]) << " expected "
            << static_cast<double>(b[worst_i]) << " (ratio " << worst << ")");
  REQUIRE(worst <= 1.0);
}

// Runs `f` and requires it to throw an exception whose message contains
// every one of `needles`.
template <class F>
void require_error(F&& f, std::initializer_list<std::string> needles) {
  std::string message;
  bool threw = false;
  try {
    f();
  } catch (const std::exception& e) {
    threw = true;
    message = e.what();
  }
  INFO("message: " << message);
  REQUIRE(threw);
  for (const auto& n : needles) {
    INFO("expected to find: " << n);
    REQUIRE(message.find(n) != std::string::npos);
  }
}

}  // namespace muongpt::test
