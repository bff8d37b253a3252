// Helpers shared by the rotation tests: test matrices with known spectra and the accuracy measures of eigh.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <frugal/core/parallel.hpp>
#include <frugal/rotation/detail/cpu_mm.hpp>

namespace rotation_test {

//! Random orthogonal n x n matrix (row-major, f64): modified Gram–Schmidt, twice, on a Gaussian matrix.
inline std::vector<double> random_orthogonal(int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  std::vector<double> v(static_cast<std::size_t>(n) * n);  // rows are the vectors
  for (auto& x : v) x = nd(rng);
  for (int i = 0; i < n; ++i) {
    double* vi = v.data() + static_cast<std::size_t>(i) * n;
    for (int pass = 0; pass < 2; ++pass)
      for (int j = 0; j < i; ++j) {
        const double* vj = v.data() + static_cast<std::size_t>(j) * n;
        double d = 0;
        for (int k = 0; k < n; ++k) d += vi[k] * vj[k];
        for (int k = 0; k < n; ++k) vi[k] -= d * vj[k];
      }
    double nn = 0;
    for (int k = 0; k < n; ++k) nn += vi[k] * vi[k];
    nn = std::sqrt(nn);
    for (int k = 0; k < n; ++k) vi[k] /= nn;
  }
  return v;
}

//! Orthogonal U = H_1 ... H_k (k random Householder reflectors applied to a random permutation): cheap for large
//! n (O(k n^2)) and dense enough to make a test matrix with a prescribed spectrum.
inline std::vector<double> householder_orthogonal(int n, int k, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  std::vector<int> perm(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<double> u(static_cast<std::size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) u[static_cast<std::size_t>(i) * n + perm[static_cast<std::size_t>(i)]] = 1.0;
  std::vector<double> v(static_cast<std::size_t>(n));
  for (int r = 0; r < k; ++r) {
    double nn = 0;
    for (auto& x : v) {
      x = nd(rng);
      nn += x * x;
    }
    const double inv = 1.0 / std::sqrt(nn);
    for (auto& x : v) x *= inv;
    // rows of u: u_i <- u_i - 2 (u_i . v) v
    frugal::detail::parallel_for(frugal::cpu, n, 64, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) {
        double* ui = u.data() + i * n;
        double d = 0;
        for (int j = 0; j < n; ++j) d += ui[j] * v[static_cast<std::size_t>(j)];
        for (int j = 0; j < n; ++j) ui[j] -= 2 * d * v[static_cast<std::size_t>(j)];
      }
    });
  }
  return u;
}

//! A = Uᵀ diag(lam) U with U random orthogonal (f64, row-major, exactly symmetric). U is Haar-like (Gram–Schmidt)
//! up to n = 800 and a product of 24 Householder reflectors above.
inline std::vector<double> with_spectrum(const std::vector<double>& lam, std::uint64_t seed) {
  const int n = static_cast<int>(lam.size());
  const auto u = n <= 800 ? random_orthogonal(n, seed) : householder_orthogonal(n, 24, seed);
  std::vector<double> ul(u.size()), a(u.size());
  for (int k = 0; k < n; ++k)
    for (int j = 0; j < n; ++j)
      ul[static_cast<std::size_t>(k) * n + j] =
          lam[static_cast<std::size_t>(k)] * u[static_cast<std::size_t>(k) * n + j];
  // a[i][j] = sum_k u[k][i] * lam_k * u[k][j]
  frugal::detail::parallel_for(frugal::cpu, n, 8, [&](std::int64_t i0, std::int64_t i1) {
    frugal::detail::cpu_mm<false>(u.data() + i0, 1, n, ul.data(), n, a.data() + i0 * n, n, static_cast<int>(i1 - i0), n,
                                  n);
  });
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) {
      const double m = 0.5 * (a[static_cast<std::size_t>(i) * n + j] + a[static_cast<std::size_t>(j) * n + i]);
      a[static_cast<std::size_t>(i) * n + j] = a[static_cast<std::size_t>(j) * n + i] = m;
    }
  return a;
}

//! Random SPD covariance-like matrix X Xᵀ / (2n), X: n x 2n Gaussian.
inline std::vector<double> random_spd(int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  const int m = 2 * n;
  std::vector<double> xt(static_cast<std::size_t>(m) * n), a(static_cast<std::size_t>(n) * n);  // xt = Xᵀ: [m, n]
  for (auto& v : xt) v = nd(rng) / std::sqrt(static_cast<double>(m));
  frugal::detail::parallel_for(frugal::cpu, n, 8, [&](std::int64_t i0, std::int64_t i1) {
    // a[i][j] = sum_k xt[k][i] xt[k][j]
    frugal::detail::cpu_mm<false>(xt.data() + i0, 1, n, xt.data(), n, a.data() + i0 * n, n, static_cast<int>(i1 - i0),
                                  n, m);
  });
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) a[static_cast<std::size_t>(i) * n + j] = a[static_cast<std::size_t>(j) * n + i];
  return a;
}

struct spectrum_case {
  std::string name;
  std::vector<double> lam;  // empty: random SPD
};

//! The prescribed spectra of the tests (n >= 1).
inline std::vector<spectrum_case> spectra(int n) {
  std::vector<spectrum_case> r;
  r.push_back({"random SPD", {}});
  std::vector<double> l(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) l[static_cast<std::size_t>(i)] = (i % 2 ? 1.0 : 0.5) + 1e-9 * i;  // two tight clusters
  r.push_back({"clustered", l});
  for (int i = 0; i < n; ++i) l[static_cast<std::size_t>(i)] = i < n / 2 ? 1.0 : (i < 3 * n / 4 ? 0.25 : -0.5);
  r.push_back({"repeated (indefinite)", l});
  for (int i = 0; i < n; ++i) l[static_cast<std::size_t>(i)] = std::pow(10.0, n > 1 ? -8.0 * i / (n - 1) : 0.0);
  r.push_back({"graded 1e-8..1", l});
  for (int i = 0; i < n; ++i) l[static_cast<std::size_t>(i)] = i < (n + 1) / 2 ? 0.5 + 0.5 * i / n : 0.0;
  r.push_back({"rank-deficient", l});
  return r;
}

struct accuracy {
  double orth = 0;      // max |QᵀQ - I|
  double residual = 0;  // ||A Q - Q diag(w)||_F / ||A||_F
};

//! Accuracy of (w, q) for the f64 matrix a (all row-major n x n).
inline accuracy measure(const std::vector<double>& a, const std::vector<double>& w, const std::vector<double>& q,
                        int n) {
  std::vector<double> qtq(static_cast<std::size_t>(n) * n), aq(static_cast<std::size_t>(n) * n);
  frugal::detail::parallel_for(frugal::cpu, n, 8, [&](std::int64_t i0, std::int64_t i1) {
    frugal::detail::cpu_mm<false>(q.data() + i0, 1, n, q.data(), n, qtq.data() + i0 * n, n, static_cast<int>(i1 - i0),
                                  n, n);
    frugal::detail::cpu_mm<false>(a.data() + i0 * n, n, 1, q.data(), n, aq.data() + i0 * n, n,
                                  static_cast<int>(i1 - i0), n, n);
  });
  accuracy r;
  double num = 0, den = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const std::size_t e = static_cast<std::size_t>(i) * n + j;
      r.orth = std::max(r.orth, std::fabs(qtq[e] - (i == j ? 1.0 : 0.0)));
      const double d = aq[e] - q[e] * w[static_cast<std::size_t>(j)];
      num += d * d;
      den += a[e] * a[e];
    }
  r.residual = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return r;
}

}  // namespace rotation_test
