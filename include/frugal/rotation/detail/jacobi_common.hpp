// frugal/rotation/detail/jacobi_common.hpp — pieces of the block Jacobi eigensolver shared by the CPU and CUDA
// implementations (host/device functions): the round-robin ordering, the 2x2 symmetric Schur rotation, the
// threshold test, and the workspace layout. Private: include <frugal/rotation/eigh.hpp> instead.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "../../core/config.hpp"
#include "../../core/workspace.hpp"

FRUGAL_NAMESPACE_BEGIN

//! Options of frugal::eigh (see rotation/eigh.hpp).
struct eigh_options {
  int max_sweeps = 100;              //!< sweeps before giving up with frugal::error (as syevj)
  double symmetry_tolerance = -1.0;  //!< allowed max|a_ij - a_ji| / max|a|; negative: 1000 · eps(T)
  int block_size = 0;                //!< b (subproblems are 2b x 2b); 0 = automatic, else 4..64 and even
  int max_inner_sweeps = 1;          //!< scalar Jacobi sweeps per 2b x 2b subproblem and step (stops early when
                                     //!< converged); more do not save outer sweeps in our measurements
};

struct eigh_info {
  int sweeps = 0;              //!< outer sweeps run, the last one applied no rotation
  std::int64_t rotations = 0;  //!< 2x2 rotations applied in total
};

namespace detail {

//! Round-robin ("circle method", Brent & Luk 1985) ordering of m players (m even): in round r (0 <= r < m-1),
//! pair k (0 <= k < m/2) is returned as (lo, hi) with lo < hi. Player m-1 stays fixed and meets (r) in pair 0;
//! pair k > 0 is ((r+k) mod (m-1), (r-k) mod (m-1)). Over m-1 rounds every unordered pair meets exactly once and
//! the pairs of one round are disjoint.
FRUGAL_HOST_DEVICE inline void round_robin_pair(int m, int r, int k, int& lo, int& hi) {
  int a, b;
  if (k == 0) {
    a = r;
    b = m - 1;
  } else {
    const int mm = m - 1;
    a = (r + k) % mm;
    b = (r - k + mm) % mm;
  }
  lo = a < b ? a : b;
  hi = a < b ? b : a;
}

//! Cross ordering of a 2h x 2h subproblem (players 0..h-1: block lo, h..2h-1: block hi): only the h² pairs across
//! the two blocks, in h rounds; pair k of round r is (k, h + (k + r) mod h). The solver uses it in every step of a
//! sweep but the first (which rotates all pairs, the pairs inside each block included), so that a sweep visits every
//! pair of the matrix once instead of revisiting the pairs inside each block in every step.
FRUGAL_HOST_DEVICE inline void cross_pair(int h, int r, int k, int& p, int& q) {
  p = k;
  q = h + (k + r) % h;
}

//! FRUGAL_EIGH_FULL_STEPS=1: every step rotates all pairs of its subproblems (the solver before the cross ordering,
//! for A/B measurements). Host only.
inline bool eigh_full_steps() {
  const char* e = std::getenv("FRUGAL_EIGH_FULL_STEPS");
  return e != nullptr && e[0] == '1';
}

//! Jacobi threshold: the pair (p, q) is rotated only when |a_pq| > max(tol * sqrt(|a_pp * a_qq|), floor), with
//! tol = eps(T) and floor = eps(T) * ||A||_F / n (see eigh.hpp for why).
FRUGAL_HOST_DEVICE inline bool jacobi_needs_rotation(double app, double aqq, double apq, double tol, double floor_) {
  const double a = fabs(apq);
  const double rel = tol * sqrt(fabs(app) * fabs(aqq));
  return a > (rel > floor_ ? rel : floor_);
}

//! The symmetric Schur rotation (Golub & Van Loan, Alg. 8.5.1): J = [[c, s], [-s, c]] at (p, q) such that
//! (J^T A J)_pq = 0. Returns t = tan(angle); the new diagonal is a_pp - t a_pq, a_qq + t a_pq.
//! With d = a_qq - a_pp and e = 2 a_pq: t = sign(d) e / (|d| + sqrt(d² + e²)) (the smaller root of
//! t² + 2 (d/e) t - 1 = 0), c = 1/sqrt(1 + t²), s = t c — one sqrt, one division and one reciprocal square root on
//! the critical path of a Jacobi round; the textbook form through θ = d/e is used where d² + e² could over- or
//! underflow.
FRUGAL_HOST_DEVICE inline double jacobi_rotation(double app, double aqq, double apq, double& c, double& s) {
  const double d = aqq - app, e = 2.0 * apq;
  const double ad = fabs(d), ae = fabs(e);
  double t;
  if (ad < 1e150 && ae < 1e150 && ae > 1e-150) {
    t = e / (ad + sqrt(d * d + e * e));
    if (d < 0) t = -t;
  } else {
    const double theta = d / e;
    if (fabs(theta) > 1e150) {
      t = 0.5 / theta;  // theta^2 would overflow; t ~ 1/(2 theta)
    } else {
      t = 1.0 / (fabs(theta) + sqrt(1.0 + theta * theta));
      if (theta < 0) t = -t;
    }
  }
#if defined(__CUDA_ARCH__)
  c = rsqrt(1.0 + t * t);
#else
  c = 1.0 / sqrt(1.0 + t * t);
#endif
  s = t * c;
  return t;
}

//! f32 versions of the two functions above, for the f32 subproblem solves of the CUDA solver (T = f32, b = 16):
//! the same formulas with f32 range limits (d² + e² stays finite and normal for |d|, |e| in (1e-18, 1e18)); on the
//! device the common case uses the approximate f32 square root and division (t need not be correctly rounded: c and
//! s are derived from it, and the rotated pair's off-diagonal element is set to 0).
FRUGAL_HOST_DEVICE inline bool jacobi_needs_rotation(float app, float aqq, float apq, float tol, float floor_) {
  const float a = fabsf(apq);
  const float rel = tol * sqrtf(fabsf(app) * fabsf(aqq));
  return a > (rel > floor_ ? rel : floor_);
}

FRUGAL_HOST_DEVICE inline float jacobi_rotation(float app, float aqq, float apq, float& c, float& s) {
  const float d = aqq - app, e = 2.0f * apq;
  const float ad = fabsf(d), ae = fabsf(e);
  float t;
  if (ad < 1e18f && ae < 1e18f && ae > 1e-18f) {
#if defined(__CUDA_ARCH__)
    const float h = d * d + e * e;  // > 0 here: approximate square root and division (2 ulp), no slow paths
    t = __fdividef(e, ad + h * rsqrtf(h));
#else
    t = e / (ad + sqrtf(d * d + e * e));
#endif
    if (d < 0) t = -t;
  } else {
    const float theta = d / e;
    if (fabsf(theta) > 1e18f) {
      t = 0.5f / theta;
    } else {
      t = 1.0f / (fabsf(theta) + sqrtf(1.0f + theta * theta));
      if (theta < 0) t = -t;
    }
  }
#if defined(__CUDA_ARCH__)
  c = rsqrtf(1.0f + t * t);
#else
  c = 1.0f / sqrtf(1.0f + t * t);
#endif
  s = t * c;
  return t;
}

//! One round of the subproblem solve, for the 2 x 2 block (rows of pair k1, columns of pair k2) of S:
//! B <- G_k1ᵀ B G_k2 with G = [[c, s], [-s, c]] (identity for a pair that does not rotate); the diagonal block
//! of a rotated pair is set to diag(dp, dq) exactly. Rows first, then columns — the per-element arithmetic of
//! applying all row rotations and then all column rotations, so one pass over the blocks does a whole round.
FRUGAL_HOST_DEVICE inline void jacobi_block_update(double* s, int ld, int p1, int q1, int p2, int q2, bool on1,
                                                   double c1, double s1, bool on2, double c2, double s2) {
  double b00 = s[p1 * ld + p2], b01 = s[p1 * ld + q2], b10 = s[q1 * ld + p2], b11 = s[q1 * ld + q2];
  if (on1) {
    const double t00 = c1 * b00 - s1 * b10, t10 = s1 * b00 + c1 * b10;
    const double t01 = c1 * b01 - s1 * b11, t11 = s1 * b01 + c1 * b11;
    b00 = t00, b10 = t10, b01 = t01, b11 = t11;
  }
  if (on2) {
    const double u00 = c2 * b00 - s2 * b01, u01 = s2 * b00 + c2 * b01;
    const double u10 = c2 * b10 - s2 * b11, u11 = s2 * b10 + c2 * b11;
    b00 = u00, b01 = u01, b10 = u10, b11 = u11;
  }
  s[p1 * ld + p2] = b00;
  s[p1 * ld + q2] = b01;
  s[q1 * ld + p2] = b10;
  s[q1 * ld + q2] = b11;
}

//! Shape of one block Jacobi problem: n padded to a multiple of B2 = 2*b, m = n_pad / b blocks (even), m/2 pairs.
struct jacobi_shape {
  std::int64_t n = 0;      // true order
  std::int64_t n_pad = 0;  // multiple of b2
  int b = 0;               // block size
  int b2 = 0;              // 2 * b: order of the subproblems
  int m = 0;               // number of blocks (even)
  int pairs = 0;           // m / 2
};

inline jacobi_shape make_jacobi_shape(std::int64_t n, int b) {
  jacobi_shape s;
  s.n = n;
  s.b = b;
  s.b2 = 2 * b;
  s.n_pad = (n + s.b2 - 1) / s.b2 * s.b2;
  if (s.n_pad == 0) s.n_pad = s.b2;
  s.m = static_cast<int>(s.n_pad / b);
  s.pairs = s.m / 2;
  return s;
}

//! Global index of position i (0 <= i < b2) of pair (lo, hi): the first b positions are block lo, the rest hi.
FRUGAL_HOST_DEVICE inline std::int64_t jacobi_index(int lo, int hi, int b, int i) {
  return i < b ? static_cast<std::int64_t>(lo) * b + i : static_cast<std::int64_t>(hi) * b + (i - b);
}

//! Block size b of the CUDA solver for order n: 16 (32 x 32 subproblems, one-kernel steps) up to n = 2048,
//! 32 above (64 x 64 subproblems: fewer steps per sweep and larger, more efficient update tiles).
inline int eigh_cuda_block_size(std::int64_t n, int requested) {
  if (requested > 0) return requested == 16 || requested == 32 ? requested : (requested < 24 ? 16 : 32);
  return n <= 2048 ? 16 : 32;
}

//! Device result of the input scan (one per solve) — plain data so that host code can read it back.
struct eigh_scan_device {
  double fro2;  // sum of squares of the symmetric part
  double max_abs;
  double max_asym;
  long long asym_at;       // linear index of max_asym (smallest on ties)
  long long nonfinite_at;  // smallest linear index of a non-finite entry, or n*n
  double bad_value;        // the value at nonfinite_at
};

//! Device workspace of the CUDA solver, carved in this order (the size query runs the same code).
template <class T>
struct eigh_cuda_buffers {
  T* a = nullptr;                       // [n_pad, n_pad]
  T* a2 = nullptr;                      // [n_pad, n_pad] the other A of the b = 16 path (one per step, alternating)
  T* vt = nullptr;                      // [n_pad, n_pad] V^T
  T* sp = nullptr;                      // [2, pairs, b2, b2] solved subproblems of the b = 16 path
  T* jt = nullptr;                      // [2, pairs, b2, b2] J_P of the current step (and of the previous one)
  int* rot = nullptr;                   // [2, pairs] rotations per pair in the current (and previous) step
  unsigned long long* count = nullptr;  // [1] rotations in the current sweep
  eigh_scan_device* scan = nullptr;     // [scan_blocks + 1] per-block partials, then the total
  int* rank = nullptr;                  // [n] output position of eigenvalue i
  static constexpr int scan_rows = 16;  // rows of a per scan block

  static std::int64_t scan_blocks(std::int64_t n) { return (n + scan_rows - 1) / scan_rows; }

  template <class Carver>
  static eigh_cuda_buffers carve(Carver& c, const jacobi_shape& sh) {
    eigh_cuda_buffers b;
    const auto np2 = static_cast<std::size_t>(sh.n_pad * sh.n_pad);
    b.a = c.template take<T>(np2);
    b.a2 = c.template take<T>(sh.b2 == 32 ? np2 : 0);
    b.vt = c.template take<T>(np2);
    b.sp = c.template take<T>(sh.b2 == 32 ? 2 * static_cast<std::size_t>(sh.pairs) * sh.b2 * sh.b2 : 0);
    b.jt = c.template take<T>(2 * static_cast<std::size_t>(sh.pairs) * sh.b2 * sh.b2);
    b.rot = c.template take<int>(2 * static_cast<std::size_t>(sh.pairs));
    b.count = c.template take<unsigned long long>(1);
    b.scan = c.template take<eigh_scan_device>(static_cast<std::size_t>(scan_blocks(sh.n) + 1));
    b.rank = c.template take<int>(static_cast<std::size_t>(sh.n));
    return b;
  }
};

template <class T, class Options>
std::size_t eigh_cuda_workspace_bytes_host(std::int64_t n, const Options& options) {
  if (n == 0) return 0;
  const auto sh = make_jacobi_shape(n, eigh_cuda_block_size(n, options.block_size));
  workspace_carver c;
  (void)eigh_cuda_buffers<T>::carve(c, sh);
  return c.bytes();
}

}  // namespace detail
FRUGAL_NAMESPACE_END
