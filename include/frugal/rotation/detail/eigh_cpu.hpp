// frugal/rotation/detail/eigh_cpu.hpp — CPU two-sided block Jacobi eigensolver (the reference for the CUDA one).
// Private: include <frugal/rotation/eigh.hpp>. The algorithm and its numerics are described there.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "../../core/device.hpp"
#include "../../core/dtype.hpp"
#include "../../core/error.hpp"
#include "../../core/parallel.hpp"
#include "../../core/view.hpp"
#include "../../core/workspace.hpp"
#include "cpu_mm.hpp"
#include "jacobi_common.hpp"

FRUGAL_NAMESPACE_BEGIN

namespace detail {

//! Scratch of one CPU solve, carved in a fixed order from the caller's workspace (see eigh_workspace_bytes).
template <class T>
struct eigh_cpu_buffers {
  T* a = nullptr;                 // [n_pad, n_pad] working copy of A, driven to diagonal form
  T* vt = nullptr;                // [n_pad, n_pad] V^T: row i is the eigenvector of a[i][i]
  T* jt = nullptr;                // [pairs, b2, b2] rotation of each pair in working precision
  double* s = nullptr;            // [pairs, b2, b2] subproblem (f64)
  double* js = nullptr;           // [pairs, b2, b2] accumulated subproblem rotation (f64)
  double* e = nullptr;            // [pairs, b2, b2] scratch of the re-orthogonalisation
  double* f = nullptr;            // [pairs, b2, b2] scratch of the re-orthogonalisation
  std::int64_t* rot = nullptr;    // [pairs] rotations applied per pair in this step
  std::int32_t* tiles = nullptr;  // [pairs * (pairs + 1) / 2, 2] upper tile list (P <= Q)
  std::int64_t* perm = nullptr;   // [n] eigenvalue order
  T* scratch = nullptr;           // [threads, 2 * b2 * vchunk + b2 * b2] per-thread tile buffers
  int threads = 1;
  static constexpr int vchunk = 128;  // columns of V^T per work item

  static std::size_t scratch_per_thread(const jacobi_shape& sh) {
    return 2 * static_cast<std::size_t>(sh.b2) * std::max(sh.b2, vchunk) + static_cast<std::size_t>(sh.b2) * sh.b2;
  }

  template <class Carver>
  static eigh_cpu_buffers carve(Carver& c, const jacobi_shape& sh, int threads) {
    eigh_cpu_buffers b;
    const auto np2 = static_cast<std::size_t>(sh.n_pad * sh.n_pad);
    const auto sub = static_cast<std::size_t>(sh.pairs) * sh.b2 * sh.b2;
    b.a = c.template take<T>(np2);
    b.vt = c.template take<T>(np2);
    b.jt = c.template take<T>(sub);
    b.s = c.template take<double>(sub);
    b.js = c.template take<double>(sub);
    b.e = c.template take<double>(sub);
    b.f = c.template take<double>(sub);
    b.rot = c.template take<std::int64_t>(static_cast<std::size_t>(sh.pairs));
    b.tiles = c.template take<std::int32_t>(static_cast<std::size_t>(sh.pairs) * (sh.pairs + 1));
    b.perm = c.template take<std::int64_t>(static_cast<std::size_t>(sh.n));
    b.threads = threads;
    b.scratch = c.template take<T>(scratch_per_thread(sh) * static_cast<std::size_t>(threads));
    return b;
  }
};

//! Block size b used for order n (subproblems are 2b x 2b).
inline int eigh_block_size(cpu_t, std::int64_t n, int requested) {
  if (requested > 0) return requested;
  return n <= 256 ? 16 : 32;
}

FRUGAL_FORCEINLINE void jacobi_transpose_square(double* m, int b2) {
  for (int i = 0; i < b2; ++i)
    for (int j = i + 1; j < b2; ++j) {
      const double t = m[i * b2 + j];
      m[i * b2 + j] = m[j * b2 + i];
      m[j * b2 + i] = t;
    }
}

//! Rotates rows p and q of the row-major b2 x b2 matrix m: (row_p, row_q) <- (c row_p - s row_q, s row_p + c row_q).
FRUGAL_FORCEINLINE void jacobi_rotate_rows(double* __restrict m, int b2, int p, int q, double c, double s) {
  double* __restrict rp = m + p * b2;
  double* __restrict rq = m + q * b2;
  for (int j = 0; j < b2; ++j) {
    const double x = rp[j], y = rq[j];
    rp[j] = c * x - s * y;
    rq[j] = s * x + c * y;
  }
}

//! Runs up to max_inner sweeps of cyclic Jacobi in round-robin order with the threshold test on the b2 x b2
//! subproblem s (row-major, f64), stopping after a sweep without rotation; js accumulates the rotations
//! (s_final = js^T s_initial js). Returns the number of rotations. Each round computes all b2/2 angles from the
//! same s and then applies S <- Rᵀ S R. The CPU does that as row rotations, a transpose and row rotations again
//! (S symmetric: (Rᵀ S)ᵀ = S R), so that every inner loop runs over contiguous rows; Jᵀ is accumulated by rows
//! too. The arithmetic per element is that of the CUDA kernel's 2 x 2 block update (rows first, then columns).
FRUGAL_FORCEINLINE std::int64_t jacobi_subproblem_body(double* s, double* js, int b2, double tol, double floor_,
                                                       int max_inner, bool cross) {
  double* jt = js;  // Jᵀ while iterating, transposed into J at the end
  for (int i = 0; i < b2 * b2; ++i) jt[i] = 0;
  for (int i = 0; i < b2; ++i) jt[i * b2 + i] = 1;
  std::int64_t total = 0;
  constexpr int max_half = 64;
  int pp[max_half], qq[max_half];
  double cc[max_half], ss[max_half], dp[max_half], dq[max_half];
  bool on[max_half];
  const int half = b2 / 2;
  for (int sweep = 0; sweep < max_inner; ++sweep) {
    std::int64_t count = 0;
    for (int r = 0; r < (cross ? half : b2 - 1); ++r) {
      int in_round = 0;
      for (int k = 0; k < half; ++k) {
        int p, q;
        if (cross)
          cross_pair(half, r, k, p, q);
        else
          round_robin_pair(b2, r, k, p, q);
        pp[k] = p;
        qq[k] = q;
        const double app = s[p * b2 + p], aqq = s[q * b2 + q], apq = s[p * b2 + q];
        on[k] = jacobi_needs_rotation(app, aqq, apq, tol, floor_);
        if (on[k]) {
          const double t = jacobi_rotation(app, aqq, apq, cc[k], ss[k]);
          dp[k] = app - t * apq;
          dq[k] = aqq + t * apq;
          ++in_round;
        }
      }
      if (in_round == 0) continue;
      count += in_round;
      for (int k = 0; k < half; ++k)
        if (on[k]) jacobi_rotate_rows(s, b2, pp[k], qq[k], cc[k], ss[k]);  // Rᵀ S
      jacobi_transpose_square(s, b2);                                      // S R
      for (int k = 0; k < half; ++k)
        if (on[k]) {
          jacobi_rotate_rows(s, b2, pp[k], qq[k], cc[k], ss[k]);   // Rᵀ S R
          jacobi_rotate_rows(jt, b2, pp[k], qq[k], cc[k], ss[k]);  // Jᵀ <- Rᵀ Jᵀ
        }
      for (int k = 0; k < half; ++k)
        if (on[k]) {
          const int p = pp[k], q = qq[k];
          s[p * b2 + p] = dp[k];
          s[q * b2 + q] = dq[k];
          s[p * b2 + q] = 0;
          s[q * b2 + p] = 0;
        }
    }
    total += count;
    if (count == 0) break;
  }
  jacobi_transpose_square(jt, b2);
  return total;
}

#if defined(FRUGAL_CPU_MM_X86_DISPATCH)
__attribute__((target("avx512f,avx512vl,avx2,fma"))) inline std::int64_t jacobi_subproblem_avx512(
    double* s, double* js, int b2, double tol, double floor_, int max_inner, bool cross) {
  return jacobi_subproblem_body(s, js, b2, tol, floor_, max_inner, cross);
}
__attribute__((target("avx2,fma"))) inline std::int64_t jacobi_subproblem_avx2(double* s, double* js, int b2,
                                                                               double tol, double floor_, int max_inner,
                                                                               bool cross) {
  return jacobi_subproblem_body(s, js, b2, tol, floor_, max_inner, cross);
}
#endif

//! jacobi_subproblem_body compiled for the widest vector instructions of this CPU (run-time choice on x86-64).
inline std::int64_t jacobi_subproblem(double* s, double* js, int b2, double tol, double floor_, int max_inner,
                                      bool cross) {
#if defined(FRUGAL_CPU_MM_X86_DISPATCH)
  switch (cpu_mm_level()) {
    case 2:
      return jacobi_subproblem_avx512(s, js, b2, tol, floor_, max_inner, cross);
    case 1:
      return jacobi_subproblem_avx2(s, js, b2, tol, floor_, max_inner, cross);
    default:
      break;
  }
#endif
  return jacobi_subproblem_body(s, js, b2, tol, floor_, max_inner, cross);
}

//! One Newton–Schulz step J <- J (3I - JᵀJ) / 2 = J - J E / 2 with E = JᵀJ - I, in f64: removes the drift from
//! orthogonality that the rounding of many accumulated rotations leaves in J (it is biased, so it would add up
//! linearly over the steps of the outer iteration). e and f are [b2, b2] scratch.
inline void jacobi_reorthogonalize(double* js, double* e, double* f, int b2) {
  cpu_mm<false>(js, 1, b2, js, b2, e, b2, b2, b2, b2);  // JᵀJ
  for (int i = 0; i < b2; ++i) e[i * b2 + i] -= 1.0;
  cpu_mm<false>(js, b2, 1, e, b2, f, b2, b2, b2, b2);  // J E
  for (int i = 0; i < b2 * b2; ++i) js[i] -= 0.5 * f[i];
}

//! y[i][0:nc) = sum_k jt[k][i] * x[k][0:nc) (jt: [b2, b2]; x, y: [b2, ld]).
template <class T>
void jacobi_left_tn(const T* jt, const T* x, T* y, int b2, int nc, int ld) {
  cpu_mm<false>(jt, 1, b2, x, ld, y, ld, b2, nc, b2);
}

//! z = y * j (all [b2, b2]).
template <class T>
void jacobi_right_nn(const T* y, const T* j, T* z, int b2) {
  cpu_mm<false>(y, b2, 1, j, b2, z, b2, b2, b2, b2);
}

template <class T>
eigh_info eigh_cpu(cpu_t tag, matrix_view<const T> a, T* w, matrix_view<T> q, const jacobi_shape& sh, double fro,
                   workspace ws, int max_sweeps, int max_inner) {
  workspace_carver carver(ws);
  const int threads = std::max(1, tag.num_threads());
  auto buf = eigh_cpu_buffers<T>::carve(carver, sh, threads);
  carver.check("eigh");
  const std::int64_t n = sh.n, np = sh.n_pad;
  const int b = sh.b, b2 = sh.b2, pairs = sh.pairs;
  const auto sub = static_cast<std::int64_t>(b2) * b2;
  const double eps = dtype_traits<T>::eps;
  const double tol = eps;
  const double floor_ = eps * fro / static_cast<double>(n);

  // Working copy: the symmetric part of a, zero padded; V = I.
  parallel_for(tag, np, 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t i = r0; i < r1; ++i) {
      T* ai = buf.a + i * np;
      T* vi = buf.vt + i * np;
      for (std::int64_t j = 0; j < np; ++j) {
        ai[j] = (i < n && j < n) ? static_cast<T>(0.5 * (static_cast<double>(a(i, j)) + static_cast<double>(a(j, i))))
                                 : T(0);
        vi[j] = i == j ? T(1) : T(0);
      }
    }
  });
  {
    std::int64_t t = 0;
    for (int p = 0; p < pairs; ++p)
      for (int r = p; r < pairs; ++r) {
        buf.tiles[2 * t] = p;
        buf.tiles[2 * t + 1] = r;
        ++t;
      }
  }
  const std::int64_t ntiles = static_cast<std::int64_t>(pairs) * (pairs + 1) / 2;
  constexpr int vchunk = eigh_cpu_buffers<T>::vchunk;
  const std::size_t per_thread = eigh_cpu_buffers<T>::scratch_per_thread(sh);
  const std::int64_t vchunks = (np + vchunk - 1) / vchunk;

  eigh_info info{};
  const bool full_steps = eigh_full_steps();
  bool converged = false;
  std::int64_t last_count = 0;
  for (int sweep = 1; sweep <= max_sweeps && !converged; ++sweep) {
    std::int64_t sweep_count = 0;
    for (int step = 0; step < sh.m - 1; ++step) {
      const bool cross = step > 0 && !full_steps;  // see cross_pair
      // 1. solve every pair's subproblem
      parallel_for(tag, pairs, 1, [&](std::int64_t k0, std::int64_t k1) {
        for (std::int64_t k = k0; k < k1; ++k) {
          int lo, hi;
          round_robin_pair(sh.m, step, static_cast<int>(k), lo, hi);
          double* s = buf.s + k * sub;
          double* js = buf.js + k * sub;
          for (int i = 0; i < b2; ++i) {
            const T* ar = buf.a + jacobi_index(lo, hi, b, i) * np;
            for (int j = 0; j < b2; ++j) s[i * b2 + j] = static_cast<double>(ar[jacobi_index(lo, hi, b, j)]);
          }
          buf.rot[k] = jacobi_subproblem(s, js, b2, tol, floor_, max_inner, cross);
          if (buf.rot[k]) {
            jacobi_reorthogonalize(js, buf.e + k * sub, buf.f + k * sub, b2);
            T* jt = buf.jt + k * sub;
            for (std::int64_t i = 0; i < sub; ++i) jt[i] = static_cast<T>(js[i]);
          }
        }
      });
      std::int64_t step_count = 0;
      for (int k = 0; k < pairs; ++k) step_count += buf.rot[k];
      if (step_count == 0) continue;
      sweep_count += step_count;
      // 2. A <- J^T A J on the upper tiles (mirrored), and V^T <- J^T V^T
      const std::int64_t items = ntiles + static_cast<std::int64_t>(pairs) * vchunks;
      const int parts = static_cast<int>(std::min<std::int64_t>(threads, items));
      parallel_for(tag, parts, 1, [&](std::int64_t c0, std::int64_t c1) {
        for (std::int64_t part = c0; part < c1; ++part) {
          T* x = buf.scratch + static_cast<std::size_t>(part) * per_thread;
          T* y = x + static_cast<std::size_t>(b2) * std::max(b2, vchunk);
          T* z = y + static_cast<std::size_t>(b2) * std::max(b2, vchunk);
          const std::int64_t i0 = items * part / parts, i1 = items * (part + 1) / parts;
          for (std::int64_t it = i0; it < i1; ++it) {
            if (it < ntiles) {
              const int kp = buf.tiles[2 * it], kq = buf.tiles[2 * it + 1];
              int lp, hp, lq, hq;
              round_robin_pair(sh.m, step, kp, lp, hp);
              round_robin_pair(sh.m, step, kq, lq, hq);
              if (kp == kq) {
                if (!buf.rot[kp]) continue;
                const double* s = buf.s + kp * sub;
                for (int i = 0; i < b2; ++i) {
                  T* ar = buf.a + jacobi_index(lp, hp, b, i) * np;
                  for (int j = 0; j < b2; ++j) ar[jacobi_index(lp, hp, b, j)] = static_cast<T>(s[i * b2 + j]);
                }
                continue;
              }
              if (!buf.rot[kp] && !buf.rot[kq]) continue;
              for (int i = 0; i < b2; ++i) {
                const T* ar = buf.a + jacobi_index(lp, hp, b, i) * np;
                for (int j = 0; j < b2; ++j) x[i * b2 + j] = ar[jacobi_index(lq, hq, b, j)];
              }
              const T* cur = x;
              if (buf.rot[kp]) {
                jacobi_left_tn(buf.jt + kp * sub, x, y, b2, b2, b2);
                cur = y;
              }
              if (buf.rot[kq]) {
                jacobi_right_nn(cur, buf.jt + kq * sub, z, b2);
                cur = z;
              }
              for (int i = 0; i < b2; ++i) {
                const std::int64_t gi = jacobi_index(lp, hp, b, i);
                for (int j = 0; j < b2; ++j) {
                  const std::int64_t gj = jacobi_index(lq, hq, b, j);
                  buf.a[gi * np + gj] = cur[i * b2 + j];
                  buf.a[gj * np + gi] = cur[i * b2 + j];
                }
              }
            } else {
              const std::int64_t v = it - ntiles;
              const int k = static_cast<int>(v / vchunks);
              if (!buf.rot[k]) continue;
              const std::int64_t c0 = (v % vchunks) * vchunk;
              const int nc = static_cast<int>(std::min<std::int64_t>(vchunk, np - c0));
              int lo, hi;
              round_robin_pair(sh.m, step, k, lo, hi);
              // y = J_Pᵀ Vᵀ[P, chunk], read in place from the two blocks of rows: y = J[:b]ᵀ V_lo + J[b:]ᵀ V_hi
              const T* jk = buf.jt + k * sub;
              cpu_mm<false>(jk, 1, b2, buf.vt + static_cast<std::int64_t>(lo) * b * np + c0, np, y, vchunk, b2, nc, b);
              cpu_mm<true>(jk + static_cast<std::int64_t>(b) * b2, 1, b2,
                           buf.vt + static_cast<std::int64_t>(hi) * b * np + c0, np, y, vchunk, b2, nc, b);
              for (int i = 0; i < b2; ++i) {
                T* vr = buf.vt + jacobi_index(lo, hi, b, i) * np + c0;
                std::copy(y + static_cast<std::int64_t>(i) * vchunk, y + static_cast<std::int64_t>(i) * vchunk + nc,
                          vr);
              }
            }
          }
        }
      });
    }
    info.sweeps = sweep;
    info.rotations += sweep_count;
    last_count = sweep_count;
    converged = sweep_count == 0;
  }
  FRUGAL_CHECK(converged, "eigh", "Jacobi did not converge in max_sweeps (=", max_sweeps, ") sweeps for n=", n,
               "; the last sweep still applied ", last_count, " rotations");

  // Eigenvalues descending (ties by index), eigenvectors gathered as columns of q.
  std::iota(buf.perm, buf.perm + n, std::int64_t{0});
  std::stable_sort(buf.perm, buf.perm + n,
                   [&](std::int64_t x, std::int64_t y) { return buf.a[x * np + x] > buf.a[y * np + y]; });
  for (std::int64_t k = 0; k < n; ++k) w[k] = buf.a[buf.perm[k] * np + buf.perm[k]];
  parallel_for(tag, n, 32, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t k = 0; k < n; ++k) q(r, k) = buf.vt[buf.perm[k] * np + r];
  });
  return info;
}

}  // namespace detail
FRUGAL_NAMESPACE_END
