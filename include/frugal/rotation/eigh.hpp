// frugal/rotation/eigh.hpp — symmetric eigensolver by two-sided block Jacobi, on the CPU and on CUDA.
//
//   eigh(tag, a [n, n], w [n], q [n, n], workspace, options)  ->  a = q · diag(w) · qᵀ
//
// Eigenvalues w are sorted descending (ties keep index order); q is orthogonal and its column k is the
// eigenvector of w[k]. a is read only; its symmetric part (a + aᵀ)/2 is decomposed. T = float or double on
// both devices.
//
// Algorithm — cyclic two-sided *block* Jacobi with a parallel round-robin ordering and a threshold strategy
// (Jacobi 1846; parallel ordering of Brent & Luk, SIAM J. Sci. Stat. Comput. 6, 1985; block form as in
// Van Loan, "The block Jacobi method for computing the singular value decomposition", 1986):
//   * n is padded with zero rows/columns to n_pad, a multiple of 2b, and split into m = n_pad / b blocks of b
//     indices (CPU: b = 16 for n <= 256, else 32; CUDA: b = 16 for n <= 2048, else 32; options.block_size).
//   * A sweep is m-1 steps; step r pairs the blocks by the round-robin ("circle method") schedule, so the m/2
//     pairs of a step are disjoint. For every pair P = (I, J) the 2b x 2b subproblem A[P, P] gets
//     options.max_inner_sweeps (default 1; more did not save outer sweeps in our measurements) sweeps of
//     scalar cyclic Jacobi in f64 (round-robin order inside too: each round computes the b angles, then
//     applies all b disjoint rotations at once). Only a sweep's first step rotates every pair of the
//     subproblem; the later steps rotate only the b² pairs across I and J (b rounds instead of 2b - 1), so a sweep
//     visits each pair (p, q) of A once instead of revisiting the pairs inside each block in every step — the
//     same number of sweeps within one, 26-31 % less time at n = 768 on the H100, 16-19 % on the CPU in f64
//     (FRUGAL_EIGH_FULL_STEPS=1 restores full steps for comparison). This gives J_P, which one f64 Newton–Schulz step
//     J <- J (3I - JᵀJ) / 2 re-orthogonalises. Then A <- Jᵀ A J (tile by tile: A[P, Q] <- J_Pᵀ A[P, Q] J_Q,
//     computed in T; the diagonal tiles are written from the f64 subproblem) and V <- V J. The m/2 pairs are
//     independent: the CPU runs them with detail::parallel_for (and the tiles too), the CUDA solver with one
//     thread block per pair and one per tile. CUDA, b = 16 with max_inner_sweeps = 1 (n <= 2048 by default): one
//     launch per step (detail::eigh_step32_kernel) — each solve forms its subproblem from the previous step's A,
//     J and solves, while the other blocks of the launch apply the previous step's update to A (kept twice,
//     alternating) and V.
//   * Threshold: the scalar rotation (p, q) is applied only when
//         |a_pq| > max(eps · sqrt(|a_pp a_qq|), eps · ||A||_F / n),      eps = machine epsilon of T.
//     The first term is the relative criterion of Demmel & Veselić (1992); the floor stops rotations that only
//     move rounding noise (all entries under it together are below eps · ||A||_F).
//   * Convergence: a sweep in which no rotation passes the threshold (so A is diagonal to that tolerance). The
//     solver stops after options.max_sweeps sweeps (default 100, as cuSOLVER syevj; 9 to 14 are needed for
//     covariance-like matrices, up to ~35 for spectra made of a few highly repeated eigenvalues) and then
//     throws frugal::error naming the rotations still applied in the last sweep — a result is never returned
//     silently unconverged.
//   * Precision: A and V are kept in T; the subproblems, their rotations and the re-orthogonalisation are
//     computed in f64, and each J_P is rounded to T once per step — except on CUDA for T = f32 with b = 16, where
//     the subproblems are solved in f32 (4x the f64 rate on the one SM each uses; FRUGAL_EIGH_F64_SUBPROBLEMS=1
//     restores f64). This gives max|QᵀQ - I| and ||AQ - QΛ||_F / ||A||_F far below the 10·n·eps(T) the tests
//     demand (f32: ~1e-6 at n = 768..4096, ~1e-5 with f32 subproblems at n = 768; f64: ~1e-14; docs/rotation.md).
//     Without the Newton–Schulz step the biased rounding of accumulated f64 rotations made the f64 orthogonality error
//     grow linearly with the number of steps (to ~n·eps/4). No refinement of the final Q is applied.
//
// Bad input throws frugal::error before anything is written: a not square, q not [n, n], w null, a non-finite
// value (reported with its position), or max|a_ij - a_ji| > symmetry_tolerance · max|a| (position and values).
//
// Workspace: eigh_workspace_bytes<T>(tag, n, options) bytes of caller memory (host memory for frugal::cpu,
// device memory for frugal::cuda): two n_pad x n_pad matrices of T (three on CUDA with b = 16) plus O(n·b) more. The
// CPU also has an overload without workspace that allocates it. The CUDA solver is stream-ordered on tag.stream but, to
// decide convergence and to report bad input, it waits for tag.stream once per sweep (cudaStreamSynchronize): it cannot
// be captured in a CUDA Graph. It is an offline (calibration) operation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/view.hpp"
#include "../core/workspace.hpp"
#include "detail/eigh_cpu.hpp"
#include "detail/jacobi_common.hpp"

FRUGAL_NAMESPACE_BEGIN

// eigh_options and eigh_info are defined in detail/jacobi_common.hpp (shared with the implementations):
//   eigh_options { int max_sweeps = 100; double symmetry_tolerance = -1 (1000 eps(T)); int block_size = 0 (auto);
//                  int max_inner_sweeps = 1; }
//   eigh_info    { int sweeps; std::int64_t rotations; }

namespace detail {

template <class T>
inline constexpr bool eigh_type_ok = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <class T>
double eigh_symmetry_tolerance(const eigh_options& o) {
  return o.symmetry_tolerance >= 0 ? o.symmetry_tolerance : 1000.0 * dtype_traits<T>::eps;
}

inline void eigh_check_options(const eigh_options& o) {
  FRUGAL_CHECK(o.max_sweeps >= 1, "eigh", "max_sweeps (=", o.max_sweeps, ") must be >= 1");
  FRUGAL_CHECK(o.max_inner_sweeps >= 1, "eigh", "max_inner_sweeps (=", o.max_inner_sweeps, ") must be >= 1");
  FRUGAL_CHECK(o.block_size == 0 || (o.block_size >= 4 && o.block_size <= 64 && o.block_size % 2 == 0), "eigh",
               "block_size (=", o.block_size, ") must be 0 (automatic) or an even number in [4, 64]");
}

template <class T>
void eigh_check_shapes(const matrix_view<const T>& a, const T* w, const matrix_view<T>& q) {
  check_matrix("eigh", "a", a);
  check_matrix("eigh", "q", q);
  FRUGAL_CHECK(a.rows == a.cols, "eigh", "a must be square, got shape [", a.rows, ", ", a.cols, "]");
  FRUGAL_CHECK(q.rows == a.rows && q.cols == a.rows, "eigh", "q has shape [", q.rows, ", ", q.cols,
               "] but must be [n, n] with n=", a.rows);
  FRUGAL_CHECK(w != nullptr || a.rows == 0, "eigh", "w is null but n=", a.rows);
}

//! What the value checks need to know about a (host scan or device reduction).
struct eigh_scan {
  double fro = 0;                  // ||(a + aᵀ)/2||_F
  double max_abs = 0;              // max |a_ij|
  double max_asym = 0;             // max |a_ij - a_ji|
  std::int64_t asym_at = -1;       // linear index i*n+j of max_asym
  std::int64_t nonfinite_at = -1;  // first (row-major) non-finite entry, -1 if none
};

template <class T>
void eigh_check_values(const eigh_scan& s, std::int64_t n, double sym_tol, double bad_value) {
  if (s.nonfinite_at >= 0)
    fail("eigh", "a has a non-finite value (", bad_value, ") at (", s.nonfinite_at / n, ", ", s.nonfinite_at % n, ")");
  FRUGAL_CHECK(s.max_asym <= sym_tol * s.max_abs, "eigh", "a is not symmetric: |a_ij - a_ji| = ", s.max_asym,
               " at (i, j) = (", s.asym_at / std::max<std::int64_t>(n, 1), ", ",
               s.asym_at % std::max<std::int64_t>(n, 1), ") exceeds symmetry_tolerance (=", sym_tol,
               ") * max|a| (=", s.max_abs, ")");
}

template <class T>
eigh_scan eigh_scan_cpu(cpu_t tag, const matrix_view<const T>& a) {
  const std::int64_t n = a.rows;
  const int parts = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(tag.num_threads(), n)));
  std::vector<eigh_scan> part(static_cast<std::size_t>(parts));
  std::vector<double> fro2(static_cast<std::size_t>(parts), 0.0);
  parallel_for(tag, parts, 1, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      eigh_scan s;
      double f2 = 0;
      for (std::int64_t i = n * c / parts; i < n * (c + 1) / parts; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          const double x = static_cast<double>(a(i, j));
          if (!std::isfinite(x)) {
            if (s.nonfinite_at < 0) s.nonfinite_at = i * n + j;
            continue;
          }
          const double y = static_cast<double>(a(j, i));
          s.max_abs = std::max(s.max_abs, std::fabs(x));
          const double d = std::fabs(x - y);
          if (d > s.max_asym) {
            s.max_asym = d;
            s.asym_at = i * n + j;
          }
          const double h = 0.5 * (x + y);
          f2 += h * h;
        }
      part[static_cast<std::size_t>(c)] = s;
      fro2[static_cast<std::size_t>(c)] = f2;
    }
  });
  eigh_scan r;
  double f2 = 0;
  for (int c = 0; c < parts; ++c) {
    const auto& s = part[static_cast<std::size_t>(c)];
    if (s.nonfinite_at >= 0 && (r.nonfinite_at < 0 || s.nonfinite_at < r.nonfinite_at)) r.nonfinite_at = s.nonfinite_at;
    r.max_abs = std::max(r.max_abs, s.max_abs);
    if (s.max_asym > r.max_asym) {
      r.max_asym = s.max_asym;
      r.asym_at = s.asym_at;
    }
    f2 += fro2[static_cast<std::size_t>(c)];
  }
  r.fro = std::sqrt(f2);
  return r;
}

}  // namespace detail

//! Bytes of host workspace eigh(frugal::cpu, ...) needs for order n (depends on tag.num_threads()).
template <class T>
std::size_t eigh_workspace_bytes(cpu_t tag, std::int64_t n, const eigh_options& options = {}) {
  static_assert(detail::eigh_type_ok<T>, "frugal::eigh supports float and double");
  detail::eigh_check_options(options);
  FRUGAL_CHECK(n >= 0, "eigh_workspace_bytes", "n (=", n, ") must be >= 0");
  if (n <= 1) return 0;
  const auto sh = detail::make_jacobi_shape(n, detail::eigh_block_size(tag, n, options.block_size));
  detail::workspace_carver c;
  (void)detail::eigh_cpu_buffers<T>::carve(c, sh, std::max(1, tag.num_threads()));
  return c.bytes();
}

//! Eigen-decomposition a = q diag(w) qᵀ on the CPU, scratch from `ws` (eigh_workspace_bytes<T>(tag, n) bytes).
template <class T>
eigh_info eigh(cpu_t tag, matrix_view<const std::type_identity_t<T>> a, T* w, matrix_view<T> q, workspace ws,
               const eigh_options& options = {}) {
  static_assert(detail::eigh_type_ok<T>, "frugal::eigh supports float and double");
  detail::eigh_check_options(options);
  detail::eigh_check_shapes<T>(a, w, q);
  const std::int64_t n = a.rows;
  if (n == 0) return {};
  const auto scan = detail::eigh_scan_cpu(tag, a);
  const double bad =
      scan.nonfinite_at >= 0 ? static_cast<double>(a(scan.nonfinite_at / n, scan.nonfinite_at % n)) : 0.0;
  detail::eigh_check_values<T>(scan, n, detail::eigh_symmetry_tolerance<T>(options), bad);
  if (n == 1) {
    w[0] = a(0, 0);
    q(0, 0) = T(1);
    return eigh_info{1, 0};
  }
  const auto sh = detail::make_jacobi_shape(n, detail::eigh_block_size(tag, n, options.block_size));
  return detail::eigh_cpu<T>(tag, a, w, q, sh, scan.fro, ws, options.max_sweeps, options.max_inner_sweeps);
}

//! Same, allocating the workspace (host memory) itself.
template <class T>
eigh_info eigh(cpu_t tag, matrix_view<const std::type_identity_t<T>> a, T* w, matrix_view<T> q,
               const eigh_options& options = {}) {
  std::vector<std::byte> ws(eigh_workspace_bytes<T>(tag, a.rows >= 0 ? a.rows : 0, options));
  return eigh<T>(tag, a, w, q, workspace{ws.data(), ws.size()}, options);
}

FRUGAL_NAMESPACE_END

#if defined(__CUDACC__)
#include "detail/eigh_cuda.cuh"
#endif

FRUGAL_NAMESPACE_BEGIN

//! Bytes of device workspace eigh(frugal::cuda, ...) needs for order n.
template <class T>
std::size_t eigh_workspace_bytes(cuda_t tag, std::int64_t n, const eigh_options& options = {}) {
  static_assert(detail::eigh_type_ok<T>, "frugal::eigh supports float and double");
  detail::eigh_check_options(options);
  FRUGAL_CHECK(n >= 0, "eigh_workspace_bytes", "n (=", n, ") must be >= 0");
#if defined(__CUDACC__)
  return detail::eigh_cuda_workspace_bytes<T>(tag, n, options);
#else
  (void)tag;
  // Same formula as the CUDA solver (kept here so host-only code can size buffers).
  return detail::eigh_cuda_workspace_bytes_host<T>(n, options);
#endif
}

//! Eigen-decomposition on the GPU: a, w, q and ws are device memory. See the header comment for the
//! synchronisation this implies.
template <class T>
eigh_info eigh(cuda_t tag, matrix_view<const std::type_identity_t<T>> a, T* w, matrix_view<T> q, workspace ws,
               const eigh_options& options = {}) {
  static_assert(detail::eigh_type_ok<T>, "frugal::eigh supports float and double");
#if defined(__CUDACC__)
  detail::eigh_check_options(options);
  detail::eigh_check_shapes<T>(a, w, q);
  return detail::eigh_cuda<T>(tag, a, w, q, ws, options);
#else
  FRUGAL_REQUIRE_NVCC(T, "eigh");
  (void)tag, (void)a, (void)w, (void)q, (void)ws, (void)options;
  return {};
#endif
}

FRUGAL_NAMESPACE_END
