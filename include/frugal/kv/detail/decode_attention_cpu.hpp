// frugal/kv/detail/decode_attention_cpu.hpp — CPU implementation of paged/contiguous decode and prefill attention
// (also the test reference): the same Source template as the CUDA kernel, online softmax in f32 over tiles of 64
// keys, one task per (query row, kv head) that handles the whole GQA group.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../../core/device.hpp"
#include "../../core/dtype.hpp"
#include "../../core/error.hpp"
#include "../../core/parallel.hpp"
#include "../../core/view.hpp"
#include "kv_common.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

//! Which sequence query row `row` belongs to and how many keys it sees. Decode (q_indptr null): row b is sequence b
//! and sees seq_lens[b] keys. Prefill: rows q_indptr[b] .. q_indptr[b+1]-1 are the LAST n_b tokens of sequence b;
//! causal row i sees positions 0 .. seq_lens[b] - n_b + i; non-causal rows see all seq_lens[b].
FRUGAL_HOST_DEVICE inline void attn_row_info(std::int32_t row, const std::int32_t* q_indptr, std::int32_t batch,
                                             const std::int32_t* lens, bool causal, std::int32_t& seq,
                                             std::int32_t& len) {
  if (!q_indptr) {
    seq = row;
    len = lens[row];
    return;
  }
  std::int32_t lo = 0, hi = batch - 1;  // largest b with q_indptr[b] <= row
  while (lo < hi) {
    const std::int32_t mid = (lo + hi + 1) / 2;
    if (q_indptr[mid] <= row)
      lo = mid;
    else
      hi = mid - 1;
  }
  seq = lo;
  const std::int32_t total = lens[lo];
  const std::int32_t n = q_indptr[lo + 1] - q_indptr[lo];
  const std::int32_t i = row - q_indptr[lo];
  len = causal ? total - (n - 1 - i) : total;
  len = len < 0 ? 0 : (len > total ? total : len);
}

//! Host-side validation of device-independent contents (CPU path only): lengths, q_indptr, block ids.
template <class Source>
void attn_check_contents_cpu(const char* op, const Source& src, const std::int32_t* lens, std::int32_t batch,
                             const std::int32_t* q_indptr, std::int64_t rows) {
  for (std::int32_t b = 0; b < batch; ++b) {
    FRUGAL_CHECK(lens[b] >= 0 && lens[b] <= src.capacity(), op, "seq_lens[", b, "] (=", lens[b], ") must be in [0, ",
                 src.capacity(), "]");
    if constexpr (Source::paged) {
      const std::int32_t nb = (lens[b] + src.page_size - 1) / src.page_size;
      for (std::int32_t j = 0; j < nb; ++j) {
        const std::int32_t blk = src.table[static_cast<std::int64_t>(b) * src.max_blocks + j];
        FRUGAL_CHECK(blk >= 0 && blk < src.num_blocks, op, "block_table[", b, ", ", j, "] (=", blk,
                     ") must be in [0, num_blocks=", src.num_blocks, ")");
      }
    }
  }
  if (q_indptr) {
    FRUGAL_CHECK(q_indptr[0] == 0 && q_indptr[batch] == rows, op, "q_indptr must start at 0 and end at the number of ",
                 "query rows (=", rows, "), got ", q_indptr[0], " .. ", q_indptr[batch]);
    for (std::int32_t b = 0; b < batch; ++b)
      FRUGAL_CHECK(q_indptr[b + 1] >= q_indptr[b], op, "q_indptr must be non-decreasing (at ", b, ")");
  }
}

//! Fused append on CPU (after attn_check_contents_cpu): row b's new K/V row goes to position seq_lens[b] - 1 of
//! sequence b (rows with seq_lens[b] = 0 are skipped). cache_k / cache_v are the writable bases of src.k / src.v.
template <class T, class Source>
void attn_append_cpu(const Source& src, const std::int32_t* lens, std::int32_t batch, matrix_view<const T> k,
                     matrix_view<const T> v, T* cache_k, T* cache_v, std::int64_t row_elems) {
  for (std::int32_t b = 0; b < batch; ++b) {
    if (lens[b] < 1) continue;
    const std::int64_t o = src.offset(b, lens[b] - 1);
    std::copy(k.row(b), k.row(b) + row_elems, cache_k + o);
    std::copy(v.row(b), v.row(b) + row_elems, cache_v + o);
  }
}

template <class T, class Source>
void attention_cpu(cpu_t tag, matrix_view<const T> q, matrix_view<T> out, const Source& src, const std::int32_t* lens,
                   const std::int32_t* q_indptr, std::int32_t batch, std::int32_t q_heads, std::int32_t kv_heads,
                   std::int32_t head_dim, float scale, bool causal) {
  constexpr int max_dim = 256, tile = 64;
  const std::int32_t group = q_heads / kv_heads;
  const std::int64_t rows = q.rows;
  parallel_for(tag, rows * kv_heads, 1, [&](std::int64_t w0, std::int64_t w1) {
    float qf[max_dim], acc[max_dim], s[tile];
    for (std::int64_t w = w0; w < w1; ++w) {
      const std::int32_t row = static_cast<std::int32_t>(w / kv_heads), h = static_cast<std::int32_t>(w % kv_heads);
      std::int32_t seq = 0, len = 0;
      attn_row_info(row, q_indptr, batch, lens, causal, seq, len);
      len = std::min(len, src.capacity());
      for (std::int32_t g = 0; g < group; ++g) {
        const std::int32_t qh = h * group + g;
        const T* qr = q.row(row) + static_cast<std::int64_t>(qh) * head_dim;
        for (int d = 0; d < head_dim; ++d) {
          qf[d] = to_float(qr[d]) * scale;
          acc[d] = 0.f;
        }
        float m = -std::numeric_limits<float>::infinity(), l = 0.f;
        for (std::int32_t t0 = 0; t0 < len; t0 += tile) {
          const int nt = std::min<std::int32_t>(tile, len - t0);
          float mt = -std::numeric_limits<float>::infinity();
          for (int i = 0; i < nt; ++i) {
            const T* kr = src.k + src.offset(seq, t0 + i) + static_cast<std::int64_t>(h) * head_dim;
            float d = 0.f;
            for (int x = 0; x < head_dim; ++x) d += qf[x] * to_float(kr[x]);
            s[i] = d;
            mt = std::max(mt, d);
          }
          const float mn = std::max(m, mt);
          const float corr = std::exp(m - mn);  // m = -inf at first: 0
          l *= corr;
          for (int d = 0; d < head_dim; ++d) acc[d] *= corr;
          m = mn;
          for (int i = 0; i < nt; ++i) {
            const float p = std::exp(s[i] - mn);
            l += p;
            const T* vr = src.v + src.offset(seq, t0 + i) + static_cast<std::int64_t>(h) * head_dim;
            for (int x = 0; x < head_dim; ++x) acc[x] += p * to_float(vr[x]);
          }
        }
        T* orow = out.row(row) + static_cast<std::int64_t>(qh) * head_dim;
        const float inv = l > 0.f ? 1.f / l : 0.f;
        for (int d = 0; d < head_dim; ++d) orow[d] = from_float<T>(acc[d] * inv);
      }
    }
  });
}

}  // namespace detail
FRUGAL_NAMESPACE_END
