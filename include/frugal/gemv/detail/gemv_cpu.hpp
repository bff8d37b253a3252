// frugal/gemv/detail/gemv_cpu.hpp — CPU implementation of every gemv form (also the tests' reference).
//
// y[b, N] = x[b, K] · W[K, N] (+ bias), W channel-major. Threads split N into contiguous column ranges
// (detail::parallel_for; at batch 1 with short ranges they split the kept input channels, see gemv_cpu). Within a
// range, columns go in blocks of `cols_for(rows)` (8192 / rows, at least 256) and batch rows in tiles of `rows`
// (16): an f32/f64 accumulator tile [rows, cols] stays in L1/L2 while the kept channels are staged `stage` (256) at a
// time — ids and per-row values, computed from x by the keep rule — and consumed 8 (f32/f64) or 4 (f16/bf16) weight
// rows per pass:
//   acc[r, :] += v0[r]·w[k0, :] + v1[r]·w[k1, :] + ... + v7[r]·w[k7, :]
// a loop the compiler vectorises (16-bit rows are first converted to f32 in blocks, branch-free). Each weight
// row segment is read once per (column block, batch tile) — once in total for b <= 16.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../../core/device.hpp"
#include "../../core/dtype.hpp"
#include "../../core/error.hpp"
#include "../../core/parallel.hpp"
#include "../../core/view.hpp"
#include "../gemv_types.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

namespace gemv_cpu_cfg {
inline constexpr int acc_elems = 8192;  // accumulator tile [rows, cols] (32 KB of f32, in L1/L2): long row streams
inline constexpr int cvt_chunk = 512;   // 16-bit weights are converted to f32 this many at a time
inline constexpr int rows = 16;         // batch rows per accumulator tile
inline constexpr int stage = 256;       // channels staged at once
inline constexpr int min_cols = 256;
inline constexpr int acc_max = std::max(acc_elems, rows * min_cols);
#ifndef FRUGAL_GEMV_CPU_COLS_OVERRIDE
inline int cols_for(int nr) {
  return std::max(min_cols, acc_elems / std::max(nr, 1) / 16 * 16);
}
#else
inline int cols_for(int nr) {
  return std::max(16, FRUGAL_GEMV_CPU_COLS_OVERRIDE / std::max(nr, 1) / 16 * 16);
}
#endif
}  // namespace gemv_cpu_cfg

// Branch-free 16-bit -> f32 block conversions (vectorisable; same results as dtype.hpp's scalar conversions).
inline void gemv_cvt(const bfloat16* s, float* d, int n) {
  for (int i = 0; i < n; ++i) {
    std::uint16_t b;
    std::memcpy(&b, s + i, 2);
    const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    d[i] = f;
  }
}
inline void gemv_cvt(const half* s, float* d, int n) {
  for (int i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, s + i, 2);
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t em = h & 0x7fffu;
    const std::uint32_t shifted = em << 13;
    float f;
    std::memcpy(&f, &shifted, 4);
    f *= 5.192296858534828e+33f;  // 2^112: rebias the exponent; also exact for subnormal halves
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    u = em >= 0x7c00u ? (0x7f800000u | ((em & 0x3ffu) << 13)) : u;  // Inf / NaN
    u |= sign;
    std::memcpy(&f, &u, 4);
    d[i] = f;
  }
}

template <class T>
using gemv_acc_t = typename dtype_traits<T>::accum_t;

template <class T>
inline gemv_acc_t<T> gemv_load(T v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else
    return to_float(v);
}

//! acc[r, 0..n) += sum_u vals[r][u] * w_u[0..n) for the staged channels [0, cnt): 8 rows of W per pass for f32 / f64
//! weights, 4 for the 16-bit ones (converted to f32 in blocks first), then the remainder.
template <class T>
void gemv_cpu_block(const std::int32_t* ids, const gemv_acc_t<T>* vals /*[nr, stage]*/, int cnt, int nr, const T* w,
                    std::int64_t ldw, std::int64_t n0, int n, gemv_acc_t<T>* acc /*[nr, ldacc]*/, int ldacc) {
  using A = gemv_acc_t<T>;
  constexpr int S = gemv_cpu_cfg::stage;
  constexpr bool direct = std::is_same_v<T, A>;
  constexpr int chunk = direct ? (1 << 30) : gemv_cpu_cfg::cvt_chunk;  // 16-bit rows: convert this many at once
  alignas(64) float buf[direct ? 1 : 4][direct ? 1 : gemv_cpu_cfg::cvt_chunk];
  int i = 0;
  if constexpr (direct) {  // f32 / f64 rows are read in place: 8 per pass (half the accumulator traffic of 4)
    for (; i + 8 <= cnt; i += 8) {
      const A* __restrict__ w0 = w + static_cast<std::int64_t>(ids[i]) * ldw + n0;
      const A* __restrict__ w1 = w + static_cast<std::int64_t>(ids[i + 1]) * ldw + n0;
      const A* __restrict__ w2 = w + static_cast<std::int64_t>(ids[i + 2]) * ldw + n0;
      const A* __restrict__ w3 = w + static_cast<std::int64_t>(ids[i + 3]) * ldw + n0;
      const A* __restrict__ w4 = w + static_cast<std::int64_t>(ids[i + 4]) * ldw + n0;
      const A* __restrict__ w5 = w + static_cast<std::int64_t>(ids[i + 5]) * ldw + n0;
      const A* __restrict__ w6 = w + static_cast<std::int64_t>(ids[i + 6]) * ldw + n0;
      const A* __restrict__ w7 = w + static_cast<std::int64_t>(ids[i + 7]) * ldw + n0;
      for (int r = 0; r < nr; ++r) {
        const A* v = vals + r * S + i;
        if (v[0] == A(0) && v[1] == A(0) && v[2] == A(0) && v[3] == A(0) && v[4] == A(0) && v[5] == A(0) &&
            v[6] == A(0) && v[7] == A(0))
          continue;  // row dropped all eight channels
        const A a0 = v[0], a1 = v[1], a2 = v[2], a3 = v[3], a4 = v[4], a5 = v[5], a6 = v[6], a7 = v[7];
        A* __restrict__ out = acc + static_cast<std::ptrdiff_t>(r) * ldacc;
        for (int j = 0; j < n; ++j)
          out[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j] + a4 * w4[j] + a5 * w5[j] + a6 * w6[j] +
                    a7 * w7[j];
      }
    }
  }
  for (; i + 4 <= cnt; i += 4) {
    const T* src[4];
    for (int u = 0; u < 4; ++u) src[u] = w + static_cast<std::int64_t>(ids[i + u]) * ldw + n0;
    for (int j0 = 0; j0 < n; j0 += chunk) {
      const int m = std::min(chunk, n - j0);
      const A* w4[4];
      for (int u = 0; u < 4; ++u) {
        if constexpr (direct) {
          w4[u] = src[u] + j0;
        } else {
          gemv_cvt(src[u] + j0, buf[u], m);
          w4[u] = buf[u];
        }
      }
      const A* __restrict__ w0 = w4[0];
      const A* __restrict__ w1 = w4[1];
      const A* __restrict__ w2 = w4[2];
      const A* __restrict__ w3 = w4[3];
      for (int r = 0; r < nr; ++r) {
        const A a0 = vals[r * S + i], a1 = vals[r * S + i + 1], a2 = vals[r * S + i + 2], a3 = vals[r * S + i + 3];
        if (a0 == A(0) && a1 == A(0) && a2 == A(0) && a3 == A(0)) continue;  // row dropped all four channels
        A* __restrict__ out = acc + static_cast<std::ptrdiff_t>(r) * ldacc + j0;
        for (int j = 0; j < m; ++j) out[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j];
      }
    }
  }
  for (; i < cnt; ++i) {
    const T* src = w + static_cast<std::int64_t>(ids[i]) * ldw + n0;
    for (int j0 = 0; j0 < n; j0 += chunk) {
      const int m = std::min(chunk, n - j0);
      const A* w0;
      if constexpr (direct) {
        w0 = src + j0;
      } else {
        gemv_cvt(src + j0, buf[0], m);
        w0 = buf[0];
      }
      for (int r = 0; r < nr; ++r) {
        const A a0 = vals[r * S + i];
        if (a0 == A(0)) continue;
        A* __restrict__ out = acc + static_cast<std::ptrdiff_t>(r) * ldacc + j0;
        for (int j = 0; j < m; ++j) out[j] += a0 * w0[j];
      }
    }
  }
}

//! Row statistics of the norm prologue: x̂[r, k] = (x[r, k] - mean[r]) · rstd[r] (mean = 0 for rmsnorm).
template <class T>
struct gemv_cpu_norm {
  const gemv_acc_t<T>* mean = nullptr;  // [b] or null (no norm)
  const gemv_acc_t<T>* rstd = nullptr;  // [b]
};

//! mean and rstd of every row of x over its K channels, two passes in f64 (layernorm: biased variance of the
//! centred values; rmsnorm: mean of squares), rounded to the accumulation type. K = 0: mean 0, rstd 1/sqrt(eps).
template <class T>
void gemv_cpu_row_stats(const gemv_problem<T>& p, gemv_acc_t<T>* mean, gemv_acc_t<T>* rstd) {
  using A = gemv_acc_t<T>;
  for (std::int64_t r = 0; r < p.b; ++r) {
    double m = 0, q = 0;
    if (p.opt.norm == gemv_norm::layernorm && p.K > 0) {
      for (std::int64_t k = 0; k < p.K; ++k) m += static_cast<double>(gemv_load(p.x(r, k)));
      m /= static_cast<double>(p.K);
    }
    for (std::int64_t k = 0; k < p.K; ++k) {
      const double d = static_cast<double>(gemv_load(p.x(r, k))) - m;
      q += d * d;
    }
    const double var = p.K > 0 ? q / static_cast<double>(p.K) : 0.0;
    mean[r] = static_cast<A>(m);
    rstd[r] = static_cast<A>(1.0 / std::sqrt(var + static_cast<double>(p.opt.eps)));
  }
}

//! The fused activation (gemv_act) in the accumulation type.
template <class A>
inline A gemv_cpu_act(gemv_act act, A v) {
  if (act == gemv_act::gelu_tanh) {
    const A c = A(0.7978845608028654), d = A(0.044715);
    return A(0.5) * v * (A(1) + std::tanh(c * (v + d * v * v * v)));
  }
  return v;
}

//! Stages channels [c0, c1) of batch rows [r0, r0 + nr) under the keep rule: returns the kept count.
template <class T>
int gemv_cpu_stage_dense(const gemv_problem<T>& p, const gemv_cpu_norm<T>& nm, std::int64_t r0, int nr, std::int64_t c0,
                         std::int64_t c1, std::int32_t* ids, gemv_acc_t<T>* vals) {
  using A = gemv_acc_t<T>;
  constexpr int S = gemv_cpu_cfg::stage;
  int cnt = 0;
  for (std::int64_t c = c0; c < c1; ++c) {
    bool any = false;
    for (int r = 0; r < nr; ++r) {
      const A raw = gemv_load(p.x(r0 + r, c));
      const A v = nm.mean ? (raw - nm.mean[r0 + r]) * nm.rstd[r0 + r] : raw;  // x̂
      const A sel = p.select_raw ? raw : v;  // top-k + rmsnorm ranks raw |x| (same set)
      bool keep = true;
      if (p.mode == gemv_input::masked) {
        keep = sel != A(0);
      } else if (p.mode == gemv_input::threshold) {
        const A t = static_cast<A>(p.t_rows ? p.t_rows[r0 + r] : p.t_all);
        keep = std::isnan(sel) || std::fabs(sel) >= t;
      }
      vals[r * S + cnt] = keep ? v : A(0);
      any |= keep;
    }
    if (p.mode == gemv_input::dense || any) ids[cnt++] = static_cast<std::int32_t>(c);
  }
  return cnt;
}

//! Columns [c_begin, c_end) of y for every row.
template <class T>
void gemv_cpu_columns(const gemv_problem<T>& p, const gemv_cpu_norm<T>& nm, std::int64_t c_begin, std::int64_t c_end) {
  using A = gemv_acc_t<T>;
  constexpr int S = gemv_cpu_cfg::stage, R = gemv_cpu_cfg::rows;
  const int tile_rows = p.mode == gemv_input::list ? 1 : static_cast<int>(std::min<std::int64_t>(R, p.b));
  const int C = gemv_cpu_cfg::cols_for(tile_rows);  // columns per block: the accumulator tile stays in L1
  alignas(64) A acc[gemv_cpu_cfg::acc_max];         // [tile_rows, C]
  alignas(64) A vals[R * S];
  std::int32_t ids[S];
  for (std::int64_t n0 = c_begin; n0 < c_end; n0 += C) {
    const int n = static_cast<int>(std::min<std::int64_t>(C, c_end - n0));
    for (std::int64_t r0 = 0; r0 < p.b; r0 += tile_rows) {
      const int nr = static_cast<int>(std::min<std::int64_t>(tile_rows, p.b - r0));
      std::fill(acc, acc + static_cast<std::ptrdiff_t>(nr) * C, A(0));
      if (p.mode == gemv_input::list) {
        const std::int64_t nnz = p.list.nnz[r0];
        const std::int32_t* idx = p.list.indices + r0 * p.list.ld;
        const T* val = p.list.values + r0 * p.list.ld;
        for (std::int64_t e0 = 0; e0 < nnz; e0 += S) {
          int cnt = 0;
          for (std::int64_t e = e0; e < std::min<std::int64_t>(e0 + S, nnz); ++e) {
            ids[cnt] = idx[e];
            vals[cnt++] = gemv_load(val[e]);
          }
          gemv_cpu_block<T>(ids, vals, cnt, 1, p.w.data, p.w.ld, n0, n, acc, C);
        }
      } else {
        for (std::int64_t c0 = 0; c0 < p.K; c0 += S) {
          const int cnt = gemv_cpu_stage_dense(p, nm, r0, nr, c0, std::min<std::int64_t>(c0 + S, p.K), ids, vals);
          gemv_cpu_block<T>(ids, vals, cnt, nr, p.w.data, p.w.ld, n0, n, acc, C);
        }
      }
      for (int r = 0; r < nr; ++r) {
        T* yr = p.y.row(r0 + r) + n0;
        const A* ar = acc + static_cast<std::ptrdiff_t>(r) * C;
        for (int j = 0; j < n; ++j) {
          A v = ar[j];
          if (p.bias) v += gemv_load(p.bias[n0 + j]);
          v = gemv_cpu_act(p.opt.act, v);
          if (p.opt.accumulate) v += gemv_load(yr[j]);
          yr[j] = static_cast<T>(v);
        }
      }
    }
  }
}

//! Batch 1: out[0, N) = sum over the staged channels [0, cnt) of vals[i] · w[ids[i], :] (the raw sums, no bias or
//! activation), column block by column block.
template <class T>
void gemv_cpu_kept_rows(const gemv_problem<T>& p, const std::int32_t* ids, const gemv_acc_t<T>* vals, std::int64_t cnt,
                        gemv_acc_t<T>* out) {
  using A = gemv_acc_t<T>;
  constexpr int S = gemv_cpu_cfg::stage;
  const int C = gemv_cpu_cfg::cols_for(1);
  alignas(64) A acc[gemv_cpu_cfg::acc_max];
  for (std::int64_t n0 = 0; n0 < p.N; n0 += C) {
    const int n = static_cast<int>(std::min<std::int64_t>(C, p.N - n0));
    std::fill(acc, acc + n, A(0));
    for (std::int64_t e0 = 0; e0 < cnt; e0 += S)
      gemv_cpu_block<T>(ids + e0, vals + e0, static_cast<int>(std::min<std::int64_t>(S, cnt - e0)), 1, p.w.data,
                        p.w.ld, n0, n, acc, C);
    std::copy(acc, acc + n, out + n0);
  }
}

template <class T>
void gemv_cpu(cpu_t tag, const gemv_problem<T>& p) {
  if (p.b == 0 || p.N == 0) return;
  // Work per 16-column unit: one multiply-add per (kept channel, row); split only when a thread gets >= 2^18.
  constexpr std::int64_t unit = 16;
  const std::int64_t units = (p.N + unit - 1) / unit;
  const std::int64_t per_unit = std::max<std::int64_t>(1, p.K * p.b * unit);
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 18) / per_unit);
  std::vector<gemv_acc_t<T>> stats;  // [2, b]: mean, rstd (norm prologue only)
  gemv_cpu_norm<T> nm;
  if (p.opt.norm != gemv_norm::none && p.mode != gemv_input::list) {
    stats.resize(static_cast<std::size_t>(2 * p.b));
    gemv_cpu_row_stats(p, stats.data(), stats.data() + p.b);
    nm.mean = stats.data();
    nm.rstd = stats.data() + p.b;
  }
  // Batch 1 with short column ranges per thread (N < threads x 4096): the threads split the kept input channels
  // instead of the columns, so each streams longer contiguous weight-row segments (N = 4096 on 2 threads: 16 KB
  // instead of 8 KB per kept row; measured 4-12% faster there, and slower for N >= 11008, docs/gemv.md), into its
  // own partial sums, added in thread order. The keep rule is applied to all K channels first and the kept list is
  // cut into equal counts. (The cut was once K rounded to 256-channel stages: K = 768 on 2 threads gave 256 and 512
  // channels; and the kept channels cluster — LaRoSA's rotated inputs are in PCA order, so top-k keeps ~57% of GPT-2
  // XL's qkv / fc inputs in the first half of K. docs/gemv.md measures both cuts.) The cut depends only on the input
  // and the thread count, so the result is deterministic for a given thread count.
  const int nt = tag.num_threads();
  const std::int64_t k_chunks = std::min<std::int64_t>(nt, p.K / gemv_cpu_cfg::stage);
  if (p.b == 1 && k_chunks > 1 && p.N < std::int64_t{4096} * nt && p.K * p.N >= (std::int64_t{1} << 20)) {
    using A = gemv_acc_t<T>;
    std::vector<std::int32_t> ids(static_cast<std::size_t>(p.K));
    std::vector<A> vals(static_cast<std::size_t>(p.K));
    std::int64_t kept = 0;
    if (p.mode == gemv_input::list) {  // the list is the kept set (nnz <= K, checked by the caller)
      for (; kept < p.list.nnz[0]; ++kept) {
        ids[static_cast<std::size_t>(kept)] = p.list.indices[kept];
        vals[static_cast<std::size_t>(kept)] = gemv_load(p.list.values[kept]);
      }
    } else {
      kept = gemv_cpu_stage_dense(p, nm, 0, 1, 0, p.K, ids.data(), vals.data());
    }
    std::vector<A> part(static_cast<std::size_t>(k_chunks * p.N));
    parallel_for(tag.with_threads(static_cast<int>(k_chunks)), k_chunks, 1, [&](std::int64_t t0, std::int64_t t1) {
      for (std::int64_t t = t0; t < t1; ++t)
        gemv_cpu_kept_rows(p, ids.data() + kept * t / k_chunks, vals.data() + kept * t / k_chunks,
                           kept * (t + 1) / k_chunks - kept * t / k_chunks, part.data() + t * p.N);
    });
    T* y = p.y.row(0);
    for (std::int64_t j = 0; j < p.N; ++j) {
      A v = part[static_cast<std::size_t>(j)];
      for (std::int64_t t = 1; t < k_chunks; ++t) v += part[static_cast<std::size_t>(t * p.N + j)];
      if (p.bias) v += gemv_load(p.bias[j]);
      v = gemv_cpu_act(p.opt.act, v);
      if (p.opt.accumulate) v += gemv_load(y[j]);
      y[j] = static_cast<T>(v);
    }
    return;
  }
  parallel_for(tag, units, grain, [&](std::int64_t u0, std::int64_t u1) {
    gemv_cpu_columns(p, nm, u0 * unit, std::min(p.N, u1 * unit));
  });
}

//! Explicit lists on the CPU: nnz in [0, min(cap, K)] and indices in [0, K) always; duplicates when checked.
template <class T>
void gemv_cpu_check_list(const char* op, const gemv_problem<T>& p) {
  const auto& x = p.list;
  std::vector<std::uint64_t> seen;
  if (p.opt.checked) seen.assign(static_cast<std::size_t>((p.K + 63) / 64), 0);
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const std::int64_t nnz = x.nnz[r];
    FRUGAL_CHECK(nnz >= 0 && nnz <= x.cap && nnz <= p.K, op, "nnz[", r, "] (=", nnz, ") must be in [0, min(cap=", x.cap,
                 ", K=", p.K, ")]");
    const std::int32_t* idx = x.indices + r * x.ld;
    for (std::int64_t j = 0; j < nnz; ++j)
      FRUGAL_CHECK(idx[j] >= 0 && idx[j] < p.K, op, "index ", idx[j], " at row ", r, ", entry ", j,
                   " is outside [0, K=", p.K, ")");
    if (p.opt.checked) {
      for (std::int64_t j = 0; j < nnz; ++j) {
        const auto k = static_cast<std::uint64_t>(idx[j]);
        FRUGAL_CHECK(!(seen[k / 64] >> (k % 64) & 1u), op, "index ", idx[j], " appears twice in row ", r, " (entry ", j,
                     ")");
        seen[k / 64] |= std::uint64_t{1} << (k % 64);
      }
      for (std::int64_t j = 0; j < nnz; ++j) seen[static_cast<std::uint64_t>(idx[j]) / 64] = 0;
    }
  }
}

}  // namespace detail
FRUGAL_NAMESPACE_END
