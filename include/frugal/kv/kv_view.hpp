// frugal/kv/kv_view.hpp — the K/V storage views of frugal::kv (paged and contiguous) and the block-table struct.
// Layouts are documented in paged_kv.hpp. Non-owning, usable on host and device (kernels take them by value).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "block_allocator.hpp"
#include "detail/kv_common.hpp"

FRUGAL_NAMESPACE_BEGIN

//! Non-owning view of a paged K/V cache: [num_layers, num_blocks, 2, page_size, kv_heads, head_dim].
template <class T>
struct paged_kv_view {
  T* data = nullptr;  // [num_layers, num_blocks, 2, page_size, kv_heads, head_dim]
  std::int32_t num_blocks = 0;
  std::int32_t page_size = 16;
  std::int32_t kv_heads = 0;
  std::int32_t head_dim = 0;
  std::int32_t num_layers = 1;

  paged_kv_view() = default;
  FRUGAL_HOST_DEVICE paged_kv_view(T* p, std::int32_t blocks, std::int32_t page, std::int32_t heads, std::int32_t dim,
                                   std::int32_t layers = 1)
      : data(p), num_blocks(blocks), page_size(page), kv_heads(heads), head_dim(dim), num_layers(layers) {}
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  FRUGAL_HOST_DEVICE paged_kv_view(const paged_kv_view<U>& o)
      : data(o.data), num_blocks(o.num_blocks), page_size(o.page_size), kv_heads(o.kv_heads), head_dim(o.head_dim),
        num_layers(o.num_layers) {}

  //! Elements of the whole view (what to allocate).
  static constexpr std::int64_t elements(std::int64_t blocks, std::int64_t page, std::int64_t heads, std::int64_t dim,
                                         std::int64_t layers = 1) {
    return layers * blocks * 2 * page * heads * dim;
  }
  FRUGAL_HOST_DEVICE std::int64_t row_elems() const { return static_cast<std::int64_t>(kv_heads) * head_dim; }
  FRUGAL_HOST_DEVICE std::int64_t block_elems() const { return 2 * page_size * row_elems(); }
  FRUGAL_HOST_DEVICE std::int64_t layer_elems() const { return num_blocks * block_elems(); }
  FRUGAL_HOST_DEVICE std::int64_t size() const { return num_layers * layer_elems(); }
  //! The view of one layer (num_layers = 1). Append, gather and attention take one layer.
  FRUGAL_HOST_DEVICE paged_kv_view layer(std::int32_t l) const {
    return paged_kv_view(data + l * layer_elems(), num_blocks, page_size, kv_heads, head_dim, 1);
  }
  //! K / V of (block, slot in page, head): head_dim contiguous elements (layer 0 of the view).
  FRUGAL_HOST_DEVICE T* k(std::int32_t block, std::int32_t slot, std::int32_t head = 0) const {
    return data + block * block_elems() + slot * row_elems() + static_cast<std::int64_t>(head) * head_dim;
  }
  FRUGAL_HOST_DEVICE T* v(std::int32_t block, std::int32_t slot, std::int32_t head = 0) const {
    return k(block, slot, head) + page_size * row_elems();
  }
};

//! Non-owning view of contiguous per-sequence K/V: k and v each [batch, max_len, kv_heads, head_dim] with sequence b
//! starting at b * seq_stride (0 means dense: max_len * kv_heads * head_dim).
template <class T>
struct contiguous_kv_view {
  T* k = nullptr;  // [batch, seq_stride]: row t of sequence b at k + b * seq_stride + t * kv_heads * head_dim
  T* v = nullptr;  // same
  std::int32_t batch = 0;
  std::int32_t max_len = 0;
  std::int32_t kv_heads = 0;
  std::int32_t head_dim = 0;
  std::int64_t seq_stride = 0;

  contiguous_kv_view() = default;
  FRUGAL_HOST_DEVICE contiguous_kv_view(T* k_, T* v_, std::int32_t b, std::int32_t len, std::int32_t heads,
                                        std::int32_t dim, std::int64_t stride = 0)
      : k(k_), v(v_), batch(b), max_len(len), kv_heads(heads), head_dim(dim),
        seq_stride(stride ? stride : static_cast<std::int64_t>(len) * heads * dim) {}
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  FRUGAL_HOST_DEVICE contiguous_kv_view(const contiguous_kv_view<U>& o)
      : k(o.k), v(o.v), batch(o.batch), max_len(o.max_len), kv_heads(o.kv_heads), head_dim(o.head_dim),
        seq_stride(o.seq_stride) {}

  FRUGAL_HOST_DEVICE std::int64_t row_elems() const { return static_cast<std::int64_t>(kv_heads) * head_dim; }
  FRUGAL_HOST_DEVICE std::int64_t stride() const { return seq_stride ? seq_stride : max_len * row_elems(); }
  FRUGAL_HOST_DEVICE T* k_at(std::int32_t b, std::int32_t t, std::int32_t head = 0) const {
    return k + b * stride() + t * row_elems() + static_cast<std::int64_t>(head) * head_dim;
  }
  FRUGAL_HOST_DEVICE T* v_at(std::int32_t b, std::int32_t t, std::int32_t head = 0) const {
    return v + b * stride() + t * row_elems() + static_cast<std::int64_t>(head) * head_dim;
  }
};

//! The dense (vLLM) block table and lengths of a batch, in memory the tag's device reads.
struct paged_kv_table {
  const std::int32_t* block_table = nullptr;  // [batch, max_blocks]
  const std::int32_t* seq_lens = nullptr;     // [batch]
  std::int32_t batch = 0;
  std::int32_t max_blocks = 0;
};

namespace detail {

template <class T>
inline constexpr bool kv_dtype_ok_v =
    std::is_same_v<T, float> || std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

template <class T>
void kv_check_paged(const char* op, const paged_kv_view<T>& c, bool one_layer) {
  static_assert(kv_dtype_ok_v<std::remove_const_t<T>>, "frugal kv supports float, frugal::half, frugal::bfloat16");
  FRUGAL_CHECK(c.page_size >= 1 && c.page_size <= block_allocator::max_page_size, op, "page_size (=", c.page_size,
               ") must be in [1, ", block_allocator::max_page_size, "]");
  FRUGAL_CHECK(c.num_blocks >= 0 && c.kv_heads >= 1 && c.head_dim >= 1 && c.num_layers >= 1, op,
               "cache has num_blocks=", c.num_blocks, ", kv_heads=", c.kv_heads, ", head_dim=", c.head_dim,
               ", num_layers=", c.num_layers, " (need num_blocks >= 0 and the others >= 1)");
  FRUGAL_CHECK(static_cast<std::int64_t>(c.num_blocks) * c.page_size <= INT32_MAX, op,
               "num_blocks * page_size must be < 2^31");
  FRUGAL_CHECK(c.data != nullptr || c.num_blocks == 0, op, "cache data is null");
  if (one_layer)
    FRUGAL_CHECK(c.num_layers == 1, op, "takes one layer but the cache view has num_layers=", c.num_layers,
                 "; pass cache.layer(l)");
}

template <class T>
void kv_check_contiguous(const char* op, const contiguous_kv_view<T>& c) {
  static_assert(kv_dtype_ok_v<std::remove_const_t<T>>, "frugal kv supports float, frugal::half, frugal::bfloat16");
  FRUGAL_CHECK(c.batch >= 0 && c.max_len >= 0 && c.kv_heads >= 1 && c.head_dim >= 1, op, "contiguous view has batch=",
               c.batch, ", max_len=", c.max_len, ", kv_heads=", c.kv_heads, ", head_dim=", c.head_dim);
  FRUGAL_CHECK(c.stride() >= c.max_len * c.row_elems(), op, "seq_stride (=", c.seq_stride, ") must be >= max_len * ",
               "kv_heads * head_dim (=", c.max_len * c.row_elems(), ")");
  FRUGAL_CHECK(static_cast<std::int64_t>(c.batch) * c.max_len <= INT32_MAX, op, "batch * max_len must be < 2^31");
  FRUGAL_CHECK((c.k != nullptr && c.v != nullptr) || c.batch == 0 || c.max_len == 0, op, "k or v is null");
}

inline void kv_check_table(const char* op, const paged_kv_table& t) {
  FRUGAL_CHECK(t.batch >= 0 && t.max_blocks >= 0, op, "table has batch=", t.batch, ", max_blocks=", t.max_blocks);
  FRUGAL_CHECK(t.seq_lens != nullptr || t.batch == 0, op, "table.seq_lens is null");
  FRUGAL_CHECK(t.block_table != nullptr || t.batch == 0 || t.max_blocks == 0, op, "table.block_table is null");
}

template <class T>
void kv_check_gather(const char* op, const paged_kv_view<const T>& c, const paged_kv_table& t,
                     const contiguous_kv_view<T>& out) {
  kv_check_paged(op, c, true);
  kv_check_table(op, t);
  kv_check_contiguous(op, out);
  FRUGAL_CHECK(out.batch == t.batch, op, "out.batch (=", out.batch, ") must equal table.batch (=", t.batch, ")");
  FRUGAL_CHECK(out.kv_heads == c.kv_heads && out.head_dim == c.head_dim, op, "out has kv_heads=", out.kv_heads,
               ", head_dim=", out.head_dim, " but the cache has ", c.kv_heads, ", ", c.head_dim);
}

template <class T>
kv_slot_store<T> kv_store_of(const paged_kv_view<T>& c) {
  kv_slot_store<T> s;
  s.k = c.data;
  s.v = c.data + c.page_size * c.row_elems();
  s.chunk_stride = c.block_elems();
  s.row_stride = c.row_elems();
  s.chunk_len = kv_fastdiv(static_cast<std::uint32_t>(c.page_size));
  s.chunk_len_i = c.page_size;
  s.chunks = c.num_blocks;
  s.row_elems = static_cast<std::int32_t>(c.row_elems());
  return s;
}
template <class T>
kv_slot_store<T> kv_store_of(const contiguous_kv_view<T>& c) {
  kv_slot_store<T> s;
  s.k = c.k;
  s.v = c.v;
  s.chunk_stride = c.stride();
  s.row_stride = c.row_elems();
  s.chunk_len = kv_fastdiv(static_cast<std::uint32_t>(c.max_len > 0 ? c.max_len : 1));
  s.chunk_len_i = c.max_len > 0 ? c.max_len : 1;
  s.chunks = c.max_len > 0 ? c.batch : 0;
  s.row_elems = static_cast<std::int32_t>(c.row_elems());
  return s;
}

template <class T>
kv_paged_source<T> kv_source_of(const paged_kv_view<const T>& c, const paged_kv_table& t) {
  kv_paged_source<T> s;
  s.k = c.data;
  s.v = c.data + c.page_size * c.row_elems();
  s.block_stride = c.block_elems();
  s.row_stride = c.row_elems();
  s.page = kv_fastdiv(static_cast<std::uint32_t>(c.page_size));
  s.page_size = c.page_size;
  s.num_blocks = c.num_blocks;
  s.table = t.block_table;
  s.max_blocks = t.max_blocks;
  return s;
}
template <class T>
kv_contiguous_source<T> kv_source_of(const contiguous_kv_view<const T>& c) {
  kv_contiguous_source<T> s;
  s.k = c.k;
  s.v = c.v;
  s.seq_stride = c.stride();
  s.row_stride = c.row_elems();
  s.max_len = c.max_len;
  return s;
}

}  // namespace detail
FRUGAL_NAMESPACE_END
