// Shared helpers for frugal's tests: seeded random data, dtype lists, tolerances, and the GPU skip rule.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <frugal/core/dtype.hpp>
#include <frugal/core/error.hpp>

namespace frugal_test {

//! FRUGAL_TEST_SMALL=1 (set by tests/cuda-sanitize.sh for the slow compute-sanitizer tools): tests sweep fewer and
//! smaller shapes — the same code paths, minutes less under instrumentation.
inline bool small_tests() {
  const char* e = std::getenv("FRUGAL_TEST_SMALL");
  return e != nullptr && *e != '\0' && *e != '0';
}

//! CHECK that `expr` throws frugal::error whose message contains `needle`.
#define FRUGAL_CHECK_THROWS_WITH(expr, needle)                                                \
  do {                                                                                        \
    bool frugal_thrown_ = false;                                                              \
    try {                                                                                     \
      (void)(expr);                                                                           \
    } catch (const ::frugal::error& e) {                                                      \
      frugal_thrown_ = true;                                                                  \
      INFO("message: ", e.what());                                                            \
      CHECK(std::string(e.what()).find(needle) != std::string::npos);                         \
    }                                                                                         \
    CHECK_MESSAGE(frugal_thrown_, "expected frugal::error containing '" << (needle) << "'"); \
  } while (0)

//! Values drawn N(0, 1) (or uniform) with a fixed seed, converted to T.
template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = frugal::from_float<T>(dist(rng));
  return v;
}

template <class T>
std::vector<float> to_floats(const std::vector<T>& v) {
  std::vector<float> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = frugal::to_float(v[i]);
  return r;
}

//! Unit roundoff of T (eps/2), used to state tolerances as multiples of it.
template <class T>
constexpr double unit_roundoff() {
  return frugal::dtype_traits<T>::eps / 2;
}

}  // namespace frugal_test
