// eigh on the CPU, label "slow": every prescribed spectrum at n = 768, and n = 1600 (random SPD, graded spectrum);
// accuracy bounds 10·n·eps(T), f32 and f64. The cases run only with FRUGAL_SLOW_TESTS set (minutes; CI skips them):
//   FRUGAL_SLOW_TESTS=1 ctest -L slow
#include <frugal/rotation/eigh.hpp>

#include <cstdlib>
#include <vector>

#include "common/test_util.hpp"
#include "rotation_test_util.hpp"

TEST_CASE_TEMPLATE("eigh cpu (slow): n = 768, all spectra" * doctest::skip(std::getenv("FRUGAL_SLOW_TESTS") == nullptr),
                   T, float, double) {
  const int n = 768;
  std::uint64_t seed = 40;
  for (const auto& c : rotation_test::spectra(n)) {
    const auto a64 = c.lam.empty() ? rotation_test::random_spd(n, seed) : rotation_test::with_spectrum(c.lam, seed);
    ++seed;
    const std::vector<T> a(a64.begin(), a64.end());
    std::vector<T> w(n), q(static_cast<std::size_t>(n) * n);
    const auto info = frugal::eigh<T>(frugal::cpu, frugal::matrix_view<const T>(a.data(), n, n), w.data(),
                                      frugal::matrix_view<T>(q.data(), n, n));
    const auto acc =
        rotation_test::measure(std::vector<double>(a.begin(), a.end()), std::vector<double>(w.begin(), w.end()),
                               std::vector<double>(q.begin(), q.end()), n);
    const double bound = 10.0 * n * frugal::dtype_traits<T>::eps;
    INFO(c.name, " orth=", acc.orth, " residual=", acc.residual, " sweeps=", info.sweeps);
    CHECK(acc.orth <= bound);
    CHECK(acc.residual <= bound);
  }
}

TEST_CASE_TEMPLATE("eigh cpu (slow): n = 1600" * doctest::skip(std::getenv("FRUGAL_SLOW_TESTS") == nullptr), T, float,
                   double) {
  const int n = 1600;
  const auto cases = rotation_test::spectra(n);
  for (const auto* c : {&cases[0], &cases[3]}) {
    const auto a64 = c->lam.empty() ? rotation_test::random_spd(n, 11) : rotation_test::with_spectrum(c->lam, 12);
    const std::vector<T> a(a64.begin(), a64.end());
    std::vector<T> w(n), q(static_cast<std::size_t>(n) * n);
    const auto info = frugal::eigh<T>(frugal::cpu, frugal::matrix_view<const T>(a.data(), n, n), w.data(),
                                      frugal::matrix_view<T>(q.data(), n, n));
    const auto acc =
        rotation_test::measure(std::vector<double>(a.begin(), a.end()), std::vector<double>(w.begin(), w.end()),
                               std::vector<double>(q.begin(), q.end()), n);
    const double bound = 10.0 * n * frugal::dtype_traits<T>::eps;
    INFO(c->name, " orth=", acc.orth, " residual=", acc.residual, " sweeps=", info.sweeps);
    CHECK(acc.orth <= bound);
    CHECK(acc.residual <= bound);
  }
}
