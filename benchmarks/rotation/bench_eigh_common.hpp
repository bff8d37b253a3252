// Shared by the eigh benchmarks: test matrix and accuracy counters (orthogonality, residual), computed in f64 once
// per benchmark, outside the timed loop.
#pragma once

#include <benchmark/benchmark.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../../tests/rotation/rotation_test_util.hpp"

namespace bench_eigh {

//! The benchmark matrix: SPD, covariance-like, A = X Xᵀ / (2n) with X Gaussian n x 2n (same as the research note).
inline const std::vector<double>& matrix(int n) {
  static std::vector<std::vector<double>> cache(16385);
  auto& m = cache[static_cast<std::size_t>(n)];
  if (m.empty()) m = rotation_test::random_spd(n, 1234);
  return m;
}

//! Sets the accuracy counters of a result (w [n], q [n, n] row-major, any precision). Skipped above n = 4096.
template <class T>
void set_accuracy(benchmark::State& state, const std::vector<double>& a, const std::vector<T>& w,
                  const std::vector<T>& q, int n, bool q_column_major = false) {
  if (n > 4096) return;
  std::vector<double> wd(w.begin(), w.end()), qd(q.size());
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      qd[static_cast<std::size_t>(i) * n + j] = static_cast<double>(
          q_column_major ? q[static_cast<std::size_t>(j) * n + i] : q[static_cast<std::size_t>(i) * n + j]);
  const auto acc = rotation_test::measure(a, wd, qd, n);
  state.counters["orth"] = acc.orth;
  state.counters["residual"] = acc.residual;
  state.counters["bound"] = 10.0 * n * (sizeof(T) == 4 ? 1.1920928955078125e-07 : 2.220446049250313e-16);
}

}  // namespace bench_eigh
