// frugal/kv/paged_kv.hpp — paged KV storage (views over caller memory) and its device operations: append K/V of new
// tokens, copy blocks (copy-on-write), gather sequences into contiguous memory. CPU and CUDA.
//
// Layout (one layer; the vLLM flash / FlashInfer "NHD" page layout with K and V of a block adjacent):
//   paged_kv_view<T>::data   [num_layers, num_blocks, 2, page_size, kv_heads, head_dim]
//     K of (block b, slot-in-page o, head h) at data + ((b * 2 + 0) * page_size + o) * kv_heads * head_dim + h * head_dim
//     V of the same                      at data + ((b * 2 + 1) * page_size + o) * kv_heads * head_dim + h * head_dim
//   A token's K row (all heads) is contiguous (kv_heads * head_dim elements), so appends are one contiguous write and
//   the attention kernel reads whole 16-byte vectors. One block of one layer (K and V) is contiguous, so a
//   copy-on-write block copy is one memcpy per layer. All layers share one block allocator (same block ids).
//   contiguous_kv_view<T>    k and v each [batch, max_len, kv_heads, head_dim], sequence b at k + b * seq_stride
//     (seq_stride >= max_len * kv_heads * head_dim; the vAttention backend pads it to its page size).
//   paged_kv_table           the dense vLLM block table [batch, max_blocks] (int32) and seq_lens [batch] (int32),
//     in memory the tag's device reads (block_allocator::export_dense fills it).
//
// Operations (tag first; with frugal::cuda every pointer is device memory and work is asynchronous on tag.stream;
// no allocation, no synchronisation, so all of them can be captured in a CUDA Graph):
//   kv_append(tag, cache, k, v, slots)      token i's K/V rows k[i, :], v[i, :] ([n, kv_heads * head_dim], any row
//       stride, e.g. columns of a fused QKV projection) go to slot slots[i] (block * page_size + offset, from
//       block_allocator::slots; for a contiguous view slot = b * max_len + t). Negative slots are skipped (padding).
//       Decode is n = batch (one token per sequence); prefill is n = prompt tokens.
//   kv_copy_blocks(tag, cache, copies, n)   for each block_copy {src, dst}: block dst := block src, K and V, in every
//       layer of the view (do it before appending after block_allocator::append returned a copy).
//   kv_gather(tag, cache, table, out)       out.k[b, t] = K of position t of sequence b, for t < min(seq_lens[b],
//       out.max_len) (same for V); the rest of out is left untouched.
// Host-side validation of shapes happens before any write. Device-side contents (slots, block ids, lengths) cannot be
// checked without a synchronisation: CPU ops check them and throw; CUDA kernels skip out-of-range slots and blocks.
//
// dtypes: float, frugal::half, frugal::bfloat16 (CPU and CUDA). head_dim: any on CPU; CUDA needs
// kv_heads * head_dim * sizeof(T) to be a multiple of 16 bytes and 16-byte aligned pointers for the vector path
// (otherwise a scalar path runs). Attention supports head_dim 64, 80, 96, 128 (decode_attention.hpp).
//
// Usage recipe (e.g. GPT-2 small: 12 layers, 12 heads, head_dim 64, kv_heads = heads; one sequence shown):
//   frugal::block_allocator alloc(num_blocks, 16);
//   half* mem = /* cudaMalloc */ paged_kv_view<half>::elements(num_blocks, 16, 12, 64, 12) elements;
//   frugal::paged_kv_view<half> cache{mem, num_blocks, 16, 12, 64, 12};       // all 12 layers
//   auto s = alloc.allocate(prompt_len);                                        // prefill
//   alloc.slots(s, 0, prompt_len, h_slots);  alloc.export_dense({&s, 1}, h_table, max_blocks, h_lens);  // upload
//   int32_t indptr[2] = {0, prompt_len};                                        // one sequence, all its tokens new
//   for each layer l:  qkv = x @ W_qkv  -> [n, 3 * 768]
//     kv_append(cuda, cache.layer(l), matrix_view(qkv + 768, n, 768, 2304), matrix_view(qkv + 1536, n, 768, 2304),
//               d_slots);
//     paged_prefill_attention(cuda, matrix_view(qkv, n, 768, 2304), cache.layer(l), table, d_indptr, out, params);
//   per decode step:  if (auto c = alloc.append(s, 1)) kv_copy_blocks(cuda, cache, d_copy, 1);   // CoW, rare
//     slot = alloc.slot(s, alloc.length(s) - 1); export_dense(...) again (lengths changed); upload
//     for each layer: kv_append(cuda, cache.layer(l), k_row, v_row, d_slot);
//       paged_decode_attention(cuda, q, cache.layer(l), table, out, params, ws);
//     or, one launch instead of two (decode_attention.hpp; the slot comes from the table and lengths):
//       paged_append_decode_attention(cuda, q, k_row, v_row, cache.layer(l), table, out, params, ws);
//   alloc.free(s) when the sequence ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/view.hpp"
#include "block_allocator.hpp"
#include "kv_view.hpp"
#include "detail/paged_kv_cpu.hpp"
#if defined(__CUDACC__)
#include "detail/paged_kv_cuda.cuh"
#endif

FRUGAL_NAMESPACE_BEGIN

// ------------------------------------------------------------------------------------------------------------------
// kv_append: K/V rows of n new tokens into their slots.

template <class T>
void kv_append(cpu_t tag, const paged_kv_view<T>& cache,
               matrix_view<const std::type_identity_t<T>> k,  // [n, kv_heads * head_dim]
               matrix_view<const std::type_identity_t<T>> v,  // [n, kv_heads * head_dim]
               const std::int32_t* slots) {                   // [n]; slot = block * page_size + offset, < 0: skip
  detail::kv_check_paged("kv_append", cache, true);
  detail::kv_append_cpu(tag, "kv_append", detail::kv_store_of(cache), k, v, slots);
}
template <class T>
void kv_append(cuda_t tag, const paged_kv_view<T>& cache, matrix_view<const std::type_identity_t<T>> k,
               matrix_view<const std::type_identity_t<T>> v, const std::int32_t* slots) {
  FRUGAL_REQUIRE_NVCC(T, "kv_append");
  detail::kv_check_paged("kv_append", cache, true);
#if defined(__CUDACC__)
  detail::kv_append_cuda(tag, "kv_append", detail::kv_store_of(cache), k, v, slots);
#else
  (void)tag, (void)k, (void)v, (void)slots;
#endif
}
//! Contiguous storage: slot = b * max_len + t.
template <class T>
void kv_append(cpu_t tag, const contiguous_kv_view<T>& kv, matrix_view<const std::type_identity_t<T>> k,
               matrix_view<const std::type_identity_t<T>> v, const std::int32_t* slots) {
  detail::kv_check_contiguous("kv_append", kv);
  detail::kv_append_cpu(tag, "kv_append", detail::kv_store_of(kv), k, v, slots);
}
template <class T>
void kv_append(cuda_t tag, const contiguous_kv_view<T>& kv, matrix_view<const std::type_identity_t<T>> k,
               matrix_view<const std::type_identity_t<T>> v, const std::int32_t* slots) {
  FRUGAL_REQUIRE_NVCC(T, "kv_append");
  detail::kv_check_contiguous("kv_append", kv);
#if defined(__CUDACC__)
  detail::kv_append_cuda(tag, "kv_append", detail::kv_store_of(kv), k, v, slots);
#else
  (void)tag, (void)k, (void)v, (void)slots;
#endif
}

// ------------------------------------------------------------------------------------------------------------------
// kv_copy_blocks: block dst := block src for each copy, in every layer of the view.

template <class T>
void kv_copy_blocks(cpu_t tag, const paged_kv_view<T>& cache, const block_copy* copies /* [n] */, std::int32_t n) {
  detail::kv_check_paged("kv_copy_blocks", cache, false);
  detail::kv_copy_blocks_cpu(tag, cache, copies, n);
}
template <class T>
void kv_copy_blocks(cuda_t tag, const paged_kv_view<T>& cache, const block_copy* copies /* [n] */, std::int32_t n) {
  FRUGAL_REQUIRE_NVCC(T, "kv_copy_blocks");
  detail::kv_check_paged("kv_copy_blocks", cache, false);
  FRUGAL_CHECK(n >= 0 && (copies != nullptr || n == 0), "kv_copy_blocks", "n (=", n, ") < 0 or copies is null");
#if defined(__CUDACC__)
  detail::kv_copy_blocks_cuda(tag, cache, copies, n);
#else
  (void)tag;
#endif
}

// ------------------------------------------------------------------------------------------------------------------
// kv_gather: paged sequences -> contiguous [batch, max_len, kv_heads, head_dim].

template <class T>
void kv_gather(cpu_t tag, const paged_kv_view<const std::type_identity_t<T>>& cache, const paged_kv_table& table,
               const contiguous_kv_view<T>& out) {
  detail::kv_check_gather("kv_gather", cache, table, out);
  detail::kv_gather_cpu(tag, cache, table, out);
}
template <class T>
void kv_gather(cuda_t tag, const paged_kv_view<const std::type_identity_t<T>>& cache, const paged_kv_table& table,
               const contiguous_kv_view<T>& out) {
  FRUGAL_REQUIRE_NVCC(T, "kv_gather");
  detail::kv_check_gather("kv_gather", cache, table, out);
#if defined(__CUDACC__)
  detail::kv_gather_cuda(tag, cache, table, out);
#else
  (void)tag;
#endif
}

FRUGAL_NAMESPACE_END
