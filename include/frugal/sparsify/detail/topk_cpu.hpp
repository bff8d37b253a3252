// frugal/sparsify/detail/topk_cpu.hpp — CPU top-k by magnitude: per-row radix select on magnitude keys.
//
// Algorithm (one row, n elements, no sort and no allocation): the key of an element is its bits with the sign
// cleared and NaNs made maximal (topk_keys.hpp). A most-significant-digit radix select walks the key 11 bits at a
// time: one histogram pass over the row counts the next digit of the keys that still share the prefix found so
// far, and a scan from the top bucket finds the digit of the k-th largest key. It stops as soon as the bucket holding
// the k-th key is taken whole or all bits are resolved: 3 passes at most for f32 (31 key bits), 2 for f16/bf16,
// 6 for f64; random data usually resolve a f32 row in 2. Then one emit pass keeps every key above the cut plus the
// first `quota` keys equal to it (lowest index first), so exactly k elements are kept and indices come out
// ascending. O(n) per row; rows are spread over threads with detail::parallel_for when there is enough work.
//
// This is also the reference implementation of the CUDA kernels (same keys, same cut, same tie rule).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../../core/config.hpp"
#include "../../core/device.hpp"
#include "../../core/parallel.hpp"
#include "../../core/view.hpp"
#include "topk_keys.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

//! Where one row is cut: an element is kept when (key >> shift) > prefix, or when (key >> shift) == prefix and
//! fewer than `quota` such elements of lower index were kept before it. `ties` counts the elements with
//! (key >> shift) == prefix (quota <= ties; quota == ties means every one of them is kept).
template <class K>
struct topk_cut {
  K prefix = 0;
  int shift = 0;
  std::int64_t quota = 0;
  std::int64_t ties = 0;
};

//! Radix select of the k-th largest key of one row (1 <= k <= n).
template <class T>
topk_cut<topk_bits_t<T>> topk_cpu_cut(const T* row, std::int64_t n, std::int64_t k) {
  using K = topk_bits_t<T>;
  constexpr int B = topk_key_traits<T>::key_bits;
  constexpr int chunk = 256;
  std::uint32_t hist[1 << topk_radix_bits];
  K keys[chunk];
  K prefix = 0;
  int prev = B;
  std::int64_t needed = k;
  for (;;) {
    const int shift = prev > topk_radix_bits ? prev - topk_radix_bits : 0;
    const int dbits = prev - shift;
    const int nbins = 1 << dbits;
    std::memset(hist, 0, sizeof(std::uint32_t) * static_cast<std::size_t>(nbins));
    const K dmask = static_cast<K>(nbins - 1);
    for (std::int64_t c0 = 0; c0 < n; c0 += chunk) {
      const int m = static_cast<int>(std::min<std::int64_t>(chunk, n - c0));
      for (int j = 0; j < m; ++j) keys[j] = topk_key<T>(topk_bits(row[c0 + j]));  // vectorises
      if (prev == B) {
        for (int j = 0; j < m; ++j) ++hist[keys[j] >> shift];
      } else {
        for (int j = 0; j < m; ++j)
          if (static_cast<K>(keys[j] >> prev) == prefix) ++hist[(keys[j] >> shift) & dmask];
      }
    }
    std::int64_t above = 0;
    int b = nbins - 1;
    for (; b > 0; --b) {
      if (above + hist[b] >= needed) break;
      above += hist[b];
    }
    needed -= above;
    prefix = static_cast<K>(static_cast<K>(prefix << dbits) | static_cast<K>(b));
    if (static_cast<std::int64_t>(hist[b]) == needed || shift == 0)
      return {prefix, shift, needed, static_cast<std::int64_t>(hist[b])};
    prev = shift;
  }
}

//! Calls keep_fn(i, kept) for i = 0..n-1 in order, kept per the cut (exactly k calls with kept == true).
template <class T, class F>
void topk_cpu_emit(const T* row, std::int64_t n, const topk_cut<topk_bits_t<T>>& cut, F&& keep_fn) {
  using K = topk_bits_t<T>;
  std::int64_t eq_left = cut.quota;
  for (std::int64_t i = 0; i < n; ++i) {
    const K s = static_cast<K>(topk_key<T>(topk_bits(row[i])) >> cut.shift);
    bool keep = s > cut.prefix;
    if (s == cut.prefix && eq_left > 0) {
      keep = true;
      --eq_left;
    }
    keep_fn(i, keep);
  }
}

//! The exact k-th largest key: the prefix itself when all bits were resolved, else the smallest key in the bucket.
template <class T>
topk_bits_t<T> topk_cpu_kth_key(const T* row, std::int64_t n, const topk_cut<topk_bits_t<T>>& cut) {
  using K = topk_bits_t<T>;
  if (cut.shift == 0) return cut.prefix;
  K best = topk_key_traits<T>::nan_key;
  for (std::int64_t i = 0; i < n; ++i) {
    const K key = topk_key<T>(topk_bits(row[i]));
    if (static_cast<K>(key >> cut.shift) == cut.prefix) best = std::min(best, key);
  }
  return best;
}

//! Rows per parallel chunk so that each thread gets ~256K elements of work (thread start-up is ~10-50 us).
inline std::int64_t topk_cpu_grain(std::int64_t n) { return std::max<std::int64_t>(1, (std::int64_t{1} << 18) / std::max<std::int64_t>(n, 1)); }

template <class T>
void topk_cpu(cpu_t tag, matrix_view<const T> x, int k, matrix_view<std::int32_t> indices, matrix_view<T> values) {
  parallel_for(tag, x.rows, topk_cpu_grain(x.cols), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* row = x.row(r);
      const auto cut = topk_cpu_cut(row, x.cols, k);
      std::int32_t* idx = indices.row(r);
      T* val = values.row(r);
      std::int64_t pos = 0;
      topk_cpu_emit(row, x.cols, cut, [&](std::int64_t i, bool keep) {
        if (keep) {
          idx[pos] = static_cast<std::int32_t>(i);
          val[pos] = row[i];
          ++pos;
        }
      });
    }
  });
}

template <class T>
void topk_mask_cpu(cpu_t tag, matrix_view<const T> x, int k, matrix_view<T> y) {
  parallel_for(tag, x.rows, topk_cpu_grain(x.cols), [&](std::int64_t r0, std::int64_t r1) {
    using K = topk_bits_t<T>;
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* row = x.row(r);
      T* out = y.row(r);  // may equal row: each element is read before it is written
      const auto cut = topk_cpu_cut(row, x.cols, k);
      if (cut.quota == cut.ties) {  // no tie to break: a branch-free pass
        for (std::int64_t i = 0; i < x.cols; ++i) {
          const T v = row[i];
          out[i] = static_cast<K>(topk_key<T>(topk_bits(v)) >> cut.shift) >= cut.prefix ? v : T{};
        }
      } else {
        topk_cpu_emit(row, x.cols, cut, [&](std::int64_t i, bool keep) { out[i] = keep ? row[i] : T{}; });
      }
    }
  });
}

template <class T>
void topk_select_cpu(cpu_t tag, matrix_view<const T> x, int k, float* kth_abs) {
  parallel_for(tag, x.rows, topk_cpu_grain(x.cols), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* row = x.row(r);
      kth_abs[r] = topk_key_to_float_host<T>(topk_cpu_kth_key(row, x.cols, topk_cpu_cut(row, x.cols, k)));
    }
  });
}

template <class T>
void threshold_mask_cpu(cpu_t tag, matrix_view<const T> x, const float* per_row, float all, matrix_view<T> y,
                        std::int32_t* counts) {
  using K = topk_bits_t<T>;
  parallel_for(tag, x.rows, topk_cpu_grain(x.cols), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const K tk = topk_threshold_key<T>(per_row ? per_row[r] : all);
      const T* row = x.row(r);
      T* out = y.row(r);
      std::int32_t c = 0;
      for (std::int64_t i = 0; i < x.cols; ++i) {
        const T v = row[i];
        const bool keep = topk_key<T>(topk_bits(v)) >= tk;
        c += keep;
        out[i] = keep ? v : T{};
      }
      if (counts) counts[r] = c;
    }
  });
}

}  // namespace detail
FRUGAL_NAMESPACE_END
