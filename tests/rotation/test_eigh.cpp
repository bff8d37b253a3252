// eigh on the CPU: accuracy (orthogonality and residual <= 10·n·eps(T)) on random SPD matrices and prescribed
// spectra (clustered, repeated/indefinite, graded 1e-8..1, rank-deficient), order, eigenvalues against the known
// spectrum, threads, block sizes, and every documented error.
#include <frugal/rotation/eigh.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "common/test_util.hpp"
#include "rotation_test_util.hpp"

namespace {

template <class T>
struct result {
  std::vector<double> w, q;
  frugal::eigh_info info;
};

template <class T>
result<T> solve_cpu(const std::vector<T>& a, int n, frugal::cpu_t tag = frugal::cpu, frugal::eigh_options o = {}) {
  std::vector<T> w(static_cast<std::size_t>(n)), q(static_cast<std::size_t>(n) * n);
  result<T> r;
  r.info = frugal::eigh<T>(tag, frugal::matrix_view<const T>(a.data(), n, n), w.data(),
                           frugal::matrix_view<T>(q.data(), n, n), o);
  r.w.assign(w.begin(), w.end());
  r.q.assign(q.begin(), q.end());
  return r;
}

template <class T>
void check_case(const std::vector<double>& a64, const std::vector<double>& lam, int n, const char* name,
                frugal::cpu_t tag = frugal::cpu, frugal::eigh_options o = {}) {
  const std::vector<T> a(a64.begin(), a64.end());
  const std::vector<double> at(a.begin(), a.end());  // the matrix actually given, in f64
  const auto r = solve_cpu<T>(a, n, tag, o);
  const auto acc = rotation_test::measure(at, r.w, r.q, n);
  const double eps = frugal::dtype_traits<T>::eps, bound = 10.0 * n * eps;
  INFO(frugal::dtype_traits<T>::name, " n=", n, " ", name, ": orth=", acc.orth, " residual=", acc.residual,
       " bound=", bound, " sweeps=", r.info.sweeps);
  CHECK(acc.orth <= bound);
  CHECK(acc.residual <= bound);
  for (int i = 1; i < n; ++i) CHECK(r.w[static_cast<std::size_t>(i - 1)] >= r.w[static_cast<std::size_t>(i)]);
  if (!lam.empty()) {  // eigenvalues of the f64 matrix, perturbed by rounding a to T: |dλ| <= ||A - A_T||_2
    auto sorted = lam;
    std::sort(sorted.begin(), sorted.end(), [](double x, double y) { return x > y; });
    double scale = 0;
    for (double v : lam) scale = std::max(scale, std::fabs(v));
    double err = 0;
    for (int i = 0; i < n; ++i)
      err = std::max(err, std::fabs(r.w[static_cast<std::size_t>(i)] - sorted[static_cast<std::size_t>(i)]));
    CHECK(err <= bound * scale);
  }
}

template <class T>
void check_all_spectra(int n, frugal::cpu_t tag = frugal::cpu, frugal::eigh_options o = {}) {
  std::uint64_t seed = 100 + n;
  for (const auto& c : rotation_test::spectra(n)) {
    const auto a = c.lam.empty() ? rotation_test::random_spd(n, seed) : rotation_test::with_spectrum(c.lam, seed);
    check_case<T>(a, c.lam, n, c.name.c_str(), tag, o);
    ++seed;
  }
}

}  // namespace

TEST_CASE_TEMPLATE("eigh cpu: tiny orders n = 1, 2, 3", T, float, double) {
  for (int n : {1, 2, 3}) check_all_spectra<T>(n);
  // closed forms
  const std::vector<T> a2 = {T(2), T(1), T(1), T(2)};
  const auto r = solve_cpu<T>(a2, 2);
  CHECK(r.w[0] == doctest::Approx(3.0).epsilon(1e-6));
  CHECK(r.w[1] == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(std::fabs(std::fabs(r.q[0]) - std::sqrt(0.5)) < 1e-6);
  const std::vector<T> a1 = {T(-4)};
  const auto r1 = solve_cpu<T>(a1, 1);
  CHECK(r1.w[0] == -4.0);
  CHECK(r1.q[0] == 1.0);
}

TEST_CASE_TEMPLATE("eigh cpu: n = 64 and sizes that are not multiples of the block", T, float, double) {
  for (int n : {64, 33, 97}) check_all_spectra<T>(n);
}

TEST_CASE_TEMPLATE("eigh cpu: n = 768, random SPD (all spectra at 768: test_rotation_eigh_slow)", T, float, double) {
  check_case<T>(rotation_test::random_spd(768, 4), {}, 768, "random SPD");
}

TEST_CASE("eigh cpu: results do not depend on the thread count; block sizes 4..32 all converge") {
  const int n = 150;
  const auto a64 = rotation_test::random_spd(n, 7);
  const std::vector<double> a(a64);
  const auto r1 = solve_cpu<double>(a, n, frugal::cpu_t{1});
  const auto r3 = solve_cpu<double>(a, n, frugal::cpu_t{3});
  CHECK(r1.w == r3.w);  // same operations in the same order per element
  CHECK(r1.q == r3.q);
  for (int b : {4, 8, 16, 32}) {
    frugal::eigh_options o;
    o.block_size = b;
    check_case<double>(a64, {}, n, "block sweep", frugal::cpu, o);
    check_case<float>(a64, {}, n, "block sweep", frugal::cpu, o);
  }
  frugal::eigh_options o;
  o.max_inner_sweeps = 5;
  check_case<double>(a64, {}, n, "5 inner sweeps", frugal::cpu, o);
}

// A sweep's first step rotates every pair of its subproblems, the later steps only the pairs across the two blocks
// (FRUGAL_EIGH_FULL_STEPS=1: every pair in every step). Both converge to the bound with the same eigenvalues; the
// full ordering revisits the pairs inside each block in every step, so it applies more rotations. A matrix whose
// entries all lie inside the blocks has nothing for the cross steps: the first step must diagonalise every block.
TEST_CASE_TEMPLATE("eigh cpu: cross and full steps; block-diagonal input", T, float, double) {
  const int n = 150;
  const auto a64 = rotation_test::random_spd(n, 9);
  const std::vector<T> a(a64.begin(), a64.end());
  for (int b : {16, 32}) {
    frugal::eigh_options o;
    o.block_size = b;
    const auto cross = solve_cpu<T>(a, n, frugal::cpu, o);
    setenv("FRUGAL_EIGH_FULL_STEPS", "1", 1);
    const auto full = solve_cpu<T>(a, n, frugal::cpu, o);
    unsetenv("FRUGAL_EIGH_FULL_STEPS");
    CHECK(full.info.rotations > cross.info.rotations + cross.info.rotations / 4);
    check_case<T>(a64, {}, n, "cross steps", frugal::cpu, o);
    const double bound = 10.0 * n * frugal::dtype_traits<T>::eps;
    for (int i = 0; i < n; ++i)
      CHECK(std::fabs(cross.w[static_cast<std::size_t>(i)] - full.w[static_cast<std::size_t>(i)]) <=
            bound * std::fabs(full.w[0]));
  }
  const int nb = 96, b = 16;
  std::vector<double> blocks(static_cast<std::size_t>(nb) * nb, 0.0), lam;
  for (int blk = 0; blk < nb / b; ++blk) {
    std::vector<double> l(b);
    for (int i = 0; i < b; ++i) l[static_cast<std::size_t>(i)] = 1.0 + blk + 0.37 * i;
    lam.insert(lam.end(), l.begin(), l.end());
    const auto s = rotation_test::with_spectrum(l, 40 + static_cast<std::uint64_t>(blk));
    for (int i = 0; i < b; ++i)
      for (int j = 0; j < b; ++j)
        blocks[static_cast<std::size_t>(blk * b + i) * nb + blk * b + j] = s[static_cast<std::size_t>(i) * b + j];
  }
  frugal::eigh_options o;
  o.block_size = b;
  check_case<T>(blocks, lam, nb, "block-diagonal", frugal::cpu, o);
}

TEST_CASE("eigh cpu: diagonal and zero matrices need no rotation") {
  const int n = 40;
  std::vector<double> a(static_cast<std::size_t>(n) * n, 0.0);
  auto r = solve_cpu<double>(a, n);
  CHECK(r.info.rotations == 0);
  CHECK(r.info.sweeps == 1);
  for (double v : r.w) CHECK(v == 0.0);
  for (int i = 0; i < n; ++i) a[static_cast<std::size_t>(i) * n + i] = i;
  r = solve_cpu<double>(a, n);
  CHECK(r.info.rotations == 0);
  for (int i = 0; i < n; ++i) {
    CHECK(r.w[static_cast<std::size_t>(i)] == n - 1 - i);
    CHECK(r.q[static_cast<std::size_t>(n - 1 - i) * n + i] == 1.0);  // column i is e_{n-1-i}
  }
}

TEST_CASE("eigh cpu: strided views and a workspace from the caller") {
  const int n = 50, ld = 57;
  const auto a64 = rotation_test::random_spd(n, 9);
  std::vector<float> a(static_cast<std::size_t>(n) * ld, 99.f), q(static_cast<std::size_t>(n) * ld, 7.f), w(n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      a[static_cast<std::size_t>(i) * ld + j] = static_cast<float>(a64[static_cast<std::size_t>(i) * n + j]);
  std::vector<std::byte> ws(frugal::eigh_workspace_bytes<float>(frugal::cpu, n));
  frugal::eigh<float>(frugal::cpu, frugal::matrix_view<const float>(a.data(), n, n, ld), w.data(),
                      frugal::matrix_view<float>(q.data(), n, n, ld), frugal::workspace{ws.data(), ws.size()});
  std::vector<double> qd(static_cast<std::size_t>(n) * n), wd(w.begin(), w.end()), ad(static_cast<std::size_t>(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      qd[static_cast<std::size_t>(i) * n + j] = q[static_cast<std::size_t>(i) * ld + j];
      ad[static_cast<std::size_t>(i) * n + j] = a[static_cast<std::size_t>(i) * ld + j];
      CHECK(q[static_cast<std::size_t>(i) * ld + n + (j % (ld - n))] == 7.f);  // padding untouched
    }
  const auto acc = rotation_test::measure(ad, wd, qd, n);
  CHECK(acc.orth <= 10.0 * n * frugal::dtype_traits<float>::eps);
  CHECK(acc.residual <= 10.0 * n * frugal::dtype_traits<float>::eps);
}

TEST_CASE("eigh cpu: bad input throws before writing, with the values") {
  const int n = 4;
  std::vector<double> a = {4, 1, 0, 0, 1, 3, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1};
  std::vector<double> w(n, -1.0), q(n * n, -1.0);
  const frugal::matrix_view<double> qv(q.data(), n, n);
  FRUGAL_CHECK_THROWS_WITH(
      frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(a.data(), 3, 4), w.data(), qv),
      "frugal::eigh: a must be square, got shape [3, 4]");
  FRUGAL_CHECK_THROWS_WITH(frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(a.data(), n, n),
                                                w.data(), frugal::matrix_view<double>(q.data(), 3, 3)),
                           "q has shape [3, 3] but must be [n, n] with n=4");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(a.data(), n, n), nullptr, qv),
      "w is null but n=4");
  auto bad = a;
  bad[1 * n + 2] = std::numeric_limits<double>::quiet_NaN();
  FRUGAL_CHECK_THROWS_WITH(
      frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(bad.data(), n, n), w.data(), qv),
      "a has a non-finite value (nan) at (1, 2)");
  bad = a;
  bad[3 * n + 0] = std::numeric_limits<double>::infinity();
  FRUGAL_CHECK_THROWS_WITH(
      frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(bad.data(), n, n), w.data(), qv),
      "a has a non-finite value (inf) at (3, 0)");
  bad = a;
  bad[0 * n + 3] = 0.5;  // a_03 = 0.5, a_30 = 0
  FRUGAL_CHECK_THROWS_WITH(
      frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(bad.data(), n, n), w.data(), qv),
      "a is not symmetric: |a_ij - a_ji| = 0.5 at (i, j) = (0, 3)");
  // within the tolerance: accepted, the symmetric part is decomposed
  bad[0 * n + 3] = 1e-14;
  CHECK_NOTHROW(frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(bad.data(), n, n), w.data(), qv));
  frugal::eigh_options loose;
  loose.symmetry_tolerance = 0.2;
  bad[0 * n + 3] = 0.5;
  CHECK_NOTHROW(
      frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(bad.data(), n, n), w.data(), qv, loose));
  // nothing written by a failing call
  std::fill(w.begin(), w.end(), -1.0);
  std::fill(q.begin(), q.end(), -1.0);
  bad[0 * n + 3] = 0.5;
  CHECK_THROWS_AS(frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(bad.data(), n, n), w.data(), qv),
                  frugal::error);
  for (double v : w) CHECK(v == -1.0);
  for (double v : q) CHECK(v == -1.0);
  frugal::eigh_options o;
  o.block_size = 5;
  FRUGAL_CHECK_THROWS_WITH(
      frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(a.data(), n, n), w.data(), qv, o),
      "block_size (=5) must be 0 (automatic) or an even number in [4, 64]");
  o = {};
  o.max_sweeps = 0;
  FRUGAL_CHECK_THROWS_WITH(
      frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(a.data(), n, n), w.data(), qv, o),
      "max_sweeps (=0) must be >= 1");
  std::vector<std::byte> small(16);
  FRUGAL_CHECK_THROWS_WITH(frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(a.data(), n, n),
                                                w.data(), qv, frugal::workspace{small.data(), small.size()}),
                           "workspace too small: 16 bytes given");
}

TEST_CASE("eigh cpu: non-convergence within max_sweeps is an error, not a silent result") {
  const int n = 100;
  const std::vector<double> a = rotation_test::random_spd(n, 3);
  std::vector<double> w(n), q(static_cast<std::size_t>(n) * n);
  frugal::eigh_options o;
  o.max_sweeps = 2;
  FRUGAL_CHECK_THROWS_WITH(frugal::eigh<double>(frugal::cpu, frugal::matrix_view<const double>(a.data(), n, n),
                                                w.data(), frugal::matrix_view<double>(q.data(), n, n), o),
                           "frugal::eigh: Jacobi did not converge in max_sweeps (=2) sweeps for n=100");
}

TEST_CASE("eigh cpu: empty matrix is a no-op") {
  const auto info = frugal::eigh<float>(frugal::cpu, frugal::matrix_view<const float>(nullptr, 0, 0), nullptr,
                                        frugal::matrix_view<float>(nullptr, 0, 0));
  CHECK(info.sweeps == 0);
  CHECK(frugal::eigh_workspace_bytes<float>(frugal::cpu, 0) == 0);
}
