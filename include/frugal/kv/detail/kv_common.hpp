// frugal/kv/detail/kv_common.hpp — what the paged-KV CPU and CUDA implementations share (host + device, no CUDA
// includes): run-time division by the page size, and the two K/V row sources the attention template reads.
#pragma once

#include <cstdint>

#include "../../core/config.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

//! n / d and n % d for a run-time divisor d >= 1 and 0 <= n < 2^31, with one multiply-high and a shift
//! (Granlund & Montgomery; FlashInfer's uint_fastdiv). Exact for every such n.
struct kv_fastdiv {
  std::uint32_t d = 1, m = 1, s = 0;
  kv_fastdiv() = default;
  FRUGAL_HOST_DEVICE explicit kv_fastdiv(std::uint32_t divisor) : d(divisor) {
    s = 0;
    while ((1ull << s) < divisor) ++s;
    m = static_cast<std::uint32_t>(((1ull << 32) * ((1ull << s) - divisor)) / divisor + 1);
  }
  FRUGAL_HOST_DEVICE std::uint32_t div(std::uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const std::uint32_t hi = __umulhi(m, n);
#else
    const std::uint32_t hi = static_cast<std::uint32_t>((static_cast<std::uint64_t>(m) * n) >> 32);
#endif
    return (hi + n) >> s;
  }
};

//! Rows addressed by slot: chunk c = slot / chunk_len, row r = slot % chunk_len, K element offset
//! c * chunk_stride + r * row_stride (V: same offset from v). Paged: chunk = block. Contiguous: chunk = sequence.
template <class T>
struct kv_slot_store {
  T* k = nullptr;
  T* v = nullptr;
  std::int64_t chunk_stride = 0;  // elements
  std::int64_t row_stride = 0;    // elements (kv_heads * head_dim)
  kv_fastdiv chunk_len;
  std::int32_t chunk_len_i = 1;
  std::int32_t chunks = 0;
  std::int32_t row_elems = 0;  // kv_heads * head_dim
  FRUGAL_HOST_DEVICE std::int64_t capacity() const { return static_cast<std::int64_t>(chunks) * chunk_len_i; }
  //! Element offset of the row of `slot` (caller checked 0 <= slot < capacity()).
  FRUGAL_HOST_DEVICE std::int64_t offset(std::int32_t slot) const {
    const std::uint32_t c = chunk_len.div(static_cast<std::uint32_t>(slot));
    const std::int32_t r = slot - static_cast<std::int32_t>(c) * chunk_len_i;
    return static_cast<std::int64_t>(c) * chunk_stride + static_cast<std::int64_t>(r) * row_stride;
  }
};

//! Attention K/V source over a paged cache: position t of batch entry b lives in block table[b, t / page_size].
//! offset() is the element offset of (b, t, head 0) from k (and from v); -1 when the table holds an invalid block.
template <class T>
struct kv_paged_source {
  const T* k = nullptr;
  const T* v = nullptr;
  std::int64_t block_stride = 0;  // 2 * page_size * kv_heads * head_dim
  std::int64_t row_stride = 0;    // kv_heads * head_dim
  kv_fastdiv page;
  std::int32_t page_size = 16;
  std::int32_t num_blocks = 0;
  const std::int32_t* table = nullptr;  // [batch, max_blocks]
  std::int32_t max_blocks = 0;
  static constexpr bool paged = true;
  FRUGAL_HOST_DEVICE std::int32_t capacity() const { return max_blocks * page_size; }
  //! The block holding position t of batch entry b (one block-table load), -1 when the table entry is invalid.
  FRUGAL_HOST_DEVICE std::int32_t chunk_of(std::int32_t b, std::int32_t t) const {
    const std::int32_t blk = table[static_cast<std::int64_t>(b) * max_blocks + page.div(static_cast<std::uint32_t>(t))];
    return blk >= 0 && blk < num_blocks ? blk : -1;
  }
  //! Element offset of (position t, head 0) in block `blk` (from chunk_of).
  FRUGAL_HOST_DEVICE std::int64_t offset_in(std::int32_t blk, std::int32_t t) const {
    const std::int32_t o = t - static_cast<std::int32_t>(page.div(static_cast<std::uint32_t>(t))) * page_size;
    return static_cast<std::int64_t>(blk) * block_stride + static_cast<std::int64_t>(o) * row_stride;
  }
  FRUGAL_HOST_DEVICE std::int64_t offset(std::int32_t b, std::int32_t t) const {
    const std::uint32_t j = page.div(static_cast<std::uint32_t>(t));
    const std::int32_t blk = table[static_cast<std::int64_t>(b) * max_blocks + j];
    if (blk < 0 || blk >= num_blocks) return -1;
    return static_cast<std::int64_t>(blk) * block_stride +
           static_cast<std::int64_t>(t - static_cast<std::int32_t>(j) * page_size) * row_stride;
  }
};

//! Attention K/V source over contiguous per-sequence storage: (b, t) at b * seq_stride + t * row_stride.
template <class T>
struct kv_contiguous_source {
  const T* k = nullptr;
  const T* v = nullptr;
  std::int64_t seq_stride = 0;
  std::int64_t row_stride = 0;
  std::int32_t max_len = 0;
  static constexpr bool paged = false;
  FRUGAL_HOST_DEVICE std::int32_t capacity() const { return max_len; }
  FRUGAL_HOST_DEVICE std::int32_t chunk_of(std::int32_t b, std::int32_t) const { return b; }
  FRUGAL_HOST_DEVICE std::int64_t offset_in(std::int32_t b, std::int32_t t) const { return offset(b, t); }
  FRUGAL_HOST_DEVICE std::int64_t offset(std::int32_t b, std::int32_t t) const {
    return static_cast<std::int64_t>(b) * seq_stride + static_cast<std::int64_t>(t) * row_stride;
  }
};

}  // namespace detail
FRUGAL_NAMESPACE_END
