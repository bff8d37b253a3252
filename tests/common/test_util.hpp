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

//! FRUGAL_TEST_SMALL: 0 or unset = full sweeps (ctest); 1 = reduced sweeps (memcheck, initcheck, synccheck in
//! tests/cuda-sanitize.sh): fewer and smaller shapes, the same code paths; 2 = minimal sweeps (racecheck, which is
//! one to two orders of magnitude slower again): the few long cases run one configuration per kernel instantiation
//! and skip repeated runs whose only purpose is a determinism or equality check that 0 and 1 already make.
//! Any other non-empty value counts as 1.
inline int test_level() {
  const char* e = std::getenv("FRUGAL_TEST_SMALL");
  if (e == nullptr || *e == '\0' || (e[0] == '0' && e[1] == '\0')) return 0;
  return e[0] == '2' && e[1] == '\0' ? 2 : 1;
}
inline bool small_tests() { return test_level() >= 1; }
inline bool tiny_tests() { return test_level() >= 2; }

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
