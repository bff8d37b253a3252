// frugal/sparsify/detail/topk_cpu.hpp — CPU top-k by magnitude: per-row radix select on magnitude keys.
//
// Algorithm (one row, n elements, no sort and no heap allocation): the key of an element is its bits with the sign
// cleared and NaNs made maximal (topk_keys.hpp). A most-significant-digit radix select walks the key 11 bits at a
// time: pass 1 counts the top digit of every key into 2048 buckets, and a scan from the top bucket finds the bucket
// of the k-th largest key. The next pass counts the next digit of the keys in that bucket only; when the bucket
// holds at most 2048 keys, that pass also copies them to a stack buffer and any further pass (and the k-th key
// itself) works on the copy. Selection stops as soon as the bucket of the k-th key is taken whole or all bits are
// resolved: at most 3 digits for f32 (31 key bits), 2 for f16/bf16, 6 for f64; random f32 rows usually need 2
// full passes. Then one branch-free pass writes every key above the cut plus the first `quota` keys equal to it
// (lowest index first): exactly k entries, indices ascending. O(n) per row; rows are spread over threads with
// detail::parallel_for when there is enough work.
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
//! (key >> shift) == prefix (quota <= ties; quota == ties means every one of them is kept). `kth` is the exact
//! k-th largest key when it was asked for.
template <class K>
struct topk_cut {
  K prefix = 0;
  int shift = 0;
  std::int64_t quota = 0;
  std::int64_t ties = 0;
  K kth = 0;
};

//! Radix select of the k-th largest key of one row (1 <= k <= n). Pass 1 counts the top digit over the row; the
//! pass that refines a bucket of at most `cand_cap` keys also copies those keys to a stack buffer, so that later
//! passes (and the k-th key) only look at the bucket, not the whole row.
template <class T>
topk_cut<topk_bits_t<T>> topk_cpu_cut(const T* row, std::int64_t n, std::int64_t k, bool want_kth) {
  using K = topk_bits_t<T>;
  constexpr int B = topk_key_traits<T>::key_bits;
  constexpr int chunk = 256;
  constexpr std::int64_t cand_cap = 2048;
  std::uint32_t hist[1 << topk_radix_bits];
  K keys[chunk];
  K cand[cand_cap];
  std::int64_t ncand = -1;  // < 0: the bucket's keys are not in cand
  K prefix = 0;
  int prev = B;
  std::int64_t needed = k, count = n;
  for (;;) {
    const int shift = prev > topk_radix_bits ? prev - topk_radix_bits : 0;
    const int dbits = prev - shift;
    const int nbins = 1 << dbits;
    std::memset(hist, 0, sizeof(std::uint32_t) * static_cast<std::size_t>(nbins));
    const K dmask = static_cast<K>(nbins - 1);
    if (ncand >= 0) {  // refine inside the bucket's copy
      std::int64_t m = 0;
      for (std::int64_t j = 0; j < ncand; ++j)
        if (static_cast<K>(cand[j] >> prev) == prefix) {
          cand[m++] = cand[j];
          ++hist[(cand[j] >> shift) & dmask];
        }
      ncand = m;
    } else {
      const bool collect = prev != B && count <= cand_cap;
      std::int64_t m = 0;
      for (std::int64_t c0 = 0; c0 < n; c0 += chunk) {
        const int len = static_cast<int>(std::min<std::int64_t>(chunk, n - c0));
        for (int j = 0; j < len; ++j) keys[j] = topk_key<T>(topk_bits(row[c0 + j]));  // vectorises
        if (prev == B) {
          for (int j = 0; j < len; ++j) ++hist[keys[j] >> shift];
        } else {
          for (int j = 0; j < len; ++j)
            if (static_cast<K>(keys[j] >> prev) == prefix) {
              ++hist[(keys[j] >> shift) & dmask];
              if (collect) cand[m++] = keys[j];
            }
        }
      }
      if (collect) ncand = m;
    }
    std::int64_t above = 0;
    int b = nbins - 1;
    for (; b > 0; --b) {
      if (above + hist[b] >= needed) break;
      above += hist[b];
    }
    needed -= above;
    count = hist[b];
    prefix = static_cast<K>(static_cast<K>(prefix << dbits) | static_cast<K>(b));
    if (count == needed || shift == 0) {
      topk_cut<K> cut{prefix, shift, needed, count, prefix};
      if (want_kth && shift != 0) {  // bucket taken whole: its smallest key is the k-th
        K best = topk_key_traits<T>::nan_key;
        if (ncand >= 0) {
          for (std::int64_t j = 0; j < ncand; ++j)
            if (static_cast<K>(cand[j] >> shift) == prefix) best = std::min(best, cand[j]);
        } else {
          for (std::int64_t i = 0; i < n; ++i) {
            const K key = topk_key<T>(topk_bits(row[i]));
            if (static_cast<K>(key >> shift) == prefix) best = std::min(best, key);
          }
        }
        cut.kth = best;
      }
      return cut;
    }
    prev = shift;
  }
}

//! Writes the kept column indices (ascending) to idx[0..k) and their values to val[0..k).
template <class T>
void topk_cpu_emit(const T* row, std::int64_t n, std::int64_t k, const topk_cut<topk_bits_t<T>>& cut,
                   std::int32_t* idx, T* val) {
  using K = topk_bits_t<T>;
  std::int64_t pos = 0;
  if (cut.quota == cut.ties) {  // no tie to break: keep = (key >> shift) >= prefix; 64-entry masks, then set bits
    for (std::int64_t c0 = 0; c0 < n; c0 += 64) {
      const int len = static_cast<int>(std::min<std::int64_t>(64, n - c0));
      std::uint64_t mask = 0;
      for (int j = 0; j < len; ++j)
        mask |= static_cast<std::uint64_t>(static_cast<K>(topk_key<T>(topk_bits(row[c0 + j])) >> cut.shift) >=
                                           cut.prefix)
                << j;
      while (mask) {
        const int j = __builtin_ctzll(mask);
        idx[pos] = static_cast<std::int32_t>(c0 + j);
        val[pos] = row[c0 + j];
        ++pos;
        mask &= mask - 1;
      }
    }
    return;
  }
  std::int64_t eq_left = cut.quota;
  for (std::int64_t i = 0; i < n && pos < k; ++i) {  // branch-free: slot `pos` is overwritten until a kept entry claims it
    const T v = row[i];
    const K s = static_cast<K>(topk_key<T>(topk_bits(v)) >> cut.shift);
    const bool eq = s == cut.prefix;
    const bool keep = (s > cut.prefix) | (eq & (eq_left > 0));
    eq_left -= eq;
    idx[pos] = static_cast<std::int32_t>(i);
    val[pos] = v;
    pos += keep;
  }
}

//! Rows per parallel chunk: ~32K elements (~100 us of work) per thread, so that starting a thread pays off.
inline std::int64_t topk_cpu_grain(std::int64_t n) {
  return std::max<std::int64_t>(1, (std::int64_t{1} << 15) / std::max<std::int64_t>(n, 1));
}

template <class T>
void topk_cpu(cpu_t tag, matrix_view<const T> x, int k, matrix_view<std::int32_t> indices, matrix_view<T> values) {
  parallel_for(tag, x.rows, topk_cpu_grain(x.cols), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* row = x.row(r);
      topk_cpu_emit(row, x.cols, k, topk_cpu_cut(row, x.cols, k, false), indices.row(r), values.row(r));
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
      const auto cut = topk_cpu_cut(row, x.cols, k, false);
      std::int64_t eq_left = cut.quota;  // == cut.ties when there is no tie to break
      for (std::int64_t i = 0; i < x.cols; ++i) {
        const T v = row[i];
        const K s = static_cast<K>(topk_key<T>(topk_bits(v)) >> cut.shift);
        const bool eq = s == cut.prefix;
        const bool keep = (s > cut.prefix) | (eq & (eq_left > 0));
        eq_left -= eq;
        out[i] = keep ? v : T{};
      }
    }
  });
}

template <class T>
void topk_select_cpu(cpu_t tag, matrix_view<const T> x, int k, float* kth_abs) {
  parallel_for(tag, x.rows, topk_cpu_grain(x.cols), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* row = x.row(r);
      kth_abs[r] = topk_key_to_float_host<T>(topk_cpu_cut(row, x.cols, k, true).kth);
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
