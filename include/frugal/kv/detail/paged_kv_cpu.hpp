// frugal/kv/detail/paged_kv_cpu.hpp — CPU implementation of kv_append / kv_copy_blocks / kv_gather (also the test
// reference). Every index read from caller memory is checked before the first write.
#pragma once

#include <cstdint>
#include <cstring>

#include <algorithm>

#include "../../core/device.hpp"
#include "../../core/parallel.hpp"
#include "../../core/view.hpp"
#include "../kv_view.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

template <class T>
void kv_append_cpu(cpu_t tag, const char* op, const kv_slot_store<T>& s, matrix_view<const T> k,
                   matrix_view<const T> v, const std::int32_t* slots) {
  check_matrix(op, "k", k);
  check_matrix(op, "v", v);
  const std::int64_t n = k.rows;
  FRUGAL_CHECK(k.cols == s.row_elems && v.cols == s.row_elems && v.rows == n, op, "k is [", k.rows, ", ", k.cols,
               "] and v is [", v.rows, ", ", v.cols, "] but both must be [n, kv_heads * head_dim = ", s.row_elems, "]");
  FRUGAL_CHECK(slots != nullptr || n == 0, op, "slots is null");
  const std::int64_t cap = s.capacity();
  for (std::int64_t i = 0; i < n; ++i)
    FRUGAL_CHECK(slots[i] < cap, op, "slots[", i, "] (=", slots[i], ") must be < capacity (=", cap,
                 ") or negative (skip)");
  parallel_for(tag, n, 256, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      if (slots[i] < 0) continue;
      const std::int64_t off = s.offset(slots[i]);
      std::memcpy(s.k + off, k.row(i), static_cast<std::size_t>(s.row_elems) * sizeof(T));
      std::memcpy(s.v + off, v.row(i), static_cast<std::size_t>(s.row_elems) * sizeof(T));
    }
  });
}

template <class T>
void kv_copy_blocks_cpu(cpu_t, const paged_kv_view<T>& c, const block_copy* copies, std::int32_t n) {
  constexpr const char* op = "kv_copy_blocks";
  FRUGAL_CHECK(n >= 0 && (copies != nullptr || n == 0), op, "n (=", n, ") < 0 or copies is null");
  for (std::int32_t i = 0; i < n; ++i)
    FRUGAL_CHECK(copies[i].src >= 0 && copies[i].src < c.num_blocks && copies[i].dst >= 0 &&
                     copies[i].dst < c.num_blocks,
                 op, "copies[", i, "] = {", copies[i].src, ", ", copies[i].dst, "} must name blocks in [0, ",
                 c.num_blocks, ")");
  const std::size_t bytes = static_cast<std::size_t>(c.block_elems()) * sizeof(T);
  for (std::int32_t l = 0; l < c.num_layers; ++l) {
    const auto lv = c.layer(l);
    for (std::int32_t i = 0; i < n; ++i)
      if (copies[i].src != copies[i].dst) std::memmove(lv.k(copies[i].dst, 0), lv.k(copies[i].src, 0), bytes);
  }
}

template <class T>
void kv_gather_cpu(cpu_t tag, const paged_kv_view<const T>& c, const paged_kv_table& t,
                   const contiguous_kv_view<T>& out) {
  constexpr const char* op = "kv_gather";
  const std::int64_t cap = static_cast<std::int64_t>(t.max_blocks) * c.page_size;
  for (std::int32_t b = 0; b < t.batch; ++b) {
    const std::int32_t len = t.seq_lens[b];
    FRUGAL_CHECK(len >= 0 && len <= cap, op, "seq_lens[", b, "] (=", len, ") must be in [0, max_blocks * page_size = ",
                 cap, "]");
    const std::int64_t used = (std::min<std::int64_t>(len, out.max_len) + c.page_size - 1) / c.page_size;
    for (std::int64_t j = 0; j < used; ++j) {
      const std::int32_t blk = t.block_table[static_cast<std::int64_t>(b) * t.max_blocks + j];
      FRUGAL_CHECK(blk >= 0 && blk < c.num_blocks, op, "block_table[", b, ", ", j, "] (=", blk,
                   ") must be in [0, num_blocks=", c.num_blocks, ")");
    }
  }
  const std::size_t row_bytes = static_cast<std::size_t>(c.row_elems()) * sizeof(T);
  parallel_for(tag, t.batch, 1, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int32_t len = std::min(t.seq_lens[b], out.max_len);
      for (std::int32_t p = 0; p < len; ++p) {
        const std::int32_t blk = t.block_table[b * t.max_blocks + p / c.page_size];
        std::memcpy(out.k_at(static_cast<std::int32_t>(b), p), c.k(blk, p % c.page_size), row_bytes);
        std::memcpy(out.v_at(static_cast<std::int32_t>(b), p), c.v(blk, p % c.page_size), row_bytes);
      }
    }
  });
}

}  // namespace detail
FRUGAL_NAMESPACE_END
