// frugal/rotation/detail/covariance_cpu.hpp — CPU accumulation of Σ xᵀx in f64 (private; see covariance.hpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../../core/device.hpp"
#include "../../core/dtype.hpp"
#include "../../core/parallel.hpp"
#include "../../core/view.hpp"
#include "cpu_mm.hpp"

FRUGAL_NAMESPACE_BEGIN

struct covariance_state;

namespace detail {

inline constexpr std::int64_t covariance_chunk = 256;  // tokens converted to f64 per pass
inline constexpr std::int64_t covariance_tile = 64;    // H is updated in 64 x 64 tiles

template <class T>
inline double to_double(T v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else
    return static_cast<double>(to_float(v));
}

//! (i, j) entry of the finalized matrix before damping: H_ij / count, or (H_ij - s_i s_j / count) / count.
template <class State>
inline double covariance_entry(const State& s, std::int64_t i, std::int64_t j, bool centered, double inv) {
  const std::int64_t lo = i < j ? i : j, hi = i < j ? j : i;
  double h = s.xtx[lo * s.dim + hi];
  if (centered) h -= s.sum[i] * s.sum[j] * inv;
  return h * inv;
}

template <class T, class State>
void covariance_accumulate_cpu(cpu_t tag, const matrix_view<const T>& x, State& s, double* buf /* [chunk, dim] */) {
  const std::int64_t d = s.dim, tokens = x.rows;
  const std::int64_t nt = (d + covariance_tile - 1) / covariance_tile;
  const std::int64_t tiles = nt * (nt + 1) / 2;
  for (std::int64_t t0 = 0; t0 < tokens; t0 += covariance_chunk) {
    const std::int64_t ct = std::min(covariance_chunk, tokens - t0);
    parallel_for(tag, ct, 16, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* src = x.row(t0 + r);
        double* dst = buf + r * d;
        for (std::int64_t c = 0; c < d; ++c) dst[c] = to_double(src[c]);
      }
    });
    if (s.sum)
      for (std::int64_t r = 0; r < ct; ++r)
        for (std::int64_t c = 0; c < d; ++c) s.sum[c] += buf[r * d + c];
    parallel_for(tag, tiles, 1, [&](std::int64_t a0, std::int64_t a1) {
      for (std::int64_t t = a0; t < a1; ++t) {
        std::int64_t ti = 0, rem = t;  // upper tile (ti <= tj) number t, row by row
        while (rem >= nt - ti) {
          rem -= nt - ti;
          ++ti;
        }
        const std::int64_t tj = ti + rem;
        const std::int64_t i0 = ti * covariance_tile, j0 = tj * covariance_tile;
        const int mi = static_cast<int>(std::min(covariance_tile, d - i0));
        const int nc = static_cast<int>(std::min(covariance_tile, d - j0));
        // H[i0 + i][j0 + j] += sum_r buf[r][i0 + i] * buf[r][j0 + j]
        cpu_mm<true>(buf + i0, 1, d, buf + j0, d, s.xtx + i0 * d + j0, d, mi, nc, static_cast<int>(ct));
      }
    });
  }
}

}  // namespace detail
FRUGAL_NAMESPACE_END
