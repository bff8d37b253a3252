// frugal/kv/decode_attention.hpp — decode attention over a paged KV cache (PagedAttention) and over contiguous KV,
// from one kernel template, plus causal prefill attention over the same caches.
//
// Decode: for each batch entry b and query head qh (GQA: kv head h = qh / group, group = q_heads / kv_heads, any
// group size; query heads h*group .. h*group+group-1 share kv head h, as Hugging Face's repeat_kv)
//   out[b, qh, :] = softmax(scale * q[b, qh, :] . K[b, t, h, :] for t < seq_lens[b]) @ V[b, :, h, :]
// Prefill (paged_prefill_attention / prefill_attention): the query rows of sequence b are rows q_indptr[b] ..
// q_indptr[b+1]-1 and are its LAST n_b tokens (already appended to the cache); with causal (default) row i of them
// sees positions 0 .. seq_lens[b] - n_b + i. Decode is the case n_b = 1. (FlashInfer's "append" attention.)
// A sequence (or causal row) with no keys gets a zero output.
// Fused append + decode (paged_append_decode_attention / append_decode_attention): a decode step's kv_append and
// decode attention in one launch: row b's new K/V row is written at position seq_lens[b] - 1 and attended to.
//
// Algorithm (CUDA): one CTA of 128 threads per (query row, kv head, split) handles the whole GQA group (up to 8 query
// heads per CTA; larger groups take ceil(group/8) CTAs), so K/V are read from HBM once per group. K/V tiles of 16-64
// keys (16 KB) stream through shared memory with cp.async (3 stages, 16-byte copies, <= 48 KB; the block ids of the
// first stages are loaded together, then one tile ahead of their copies); a row
// group of 4-16 lanes owns one key row per step (16-byte vectors, f32 dot products reduced with shuffles); f16/bf16
// instead use tensor cores: each warp takes 8-key slabs, S^T = K Q^T (mma m16n8k16, f32 accumulation, q unscaled,
// the scale applied to the f32 scores) and O^T += V^T P^T (mma m16n8k8, P split into hi + lo halves in T so that the
// products keep ~f32 precision); online softmax in f32 with exp2 (Milakov & Gimelshein 2018; FlashAttention).
// Split-K ("flash-decoding", vLLM v2): the keys of a row are cut into num_splits chunks, each CTA writes a
// normalized partial (f32 o, log-sum-exp) to the workspace, and the last CTA of each (row, kv head) to finish (an
// arrival counter in the workspace) combines all splits in a fixed order: deterministic, no merge launch (a merge
// kernel remains for more than 4096 (row, kv head) pairs or when its scratch does not fit). On sm_90 with 2..8
// splits and a grid of at most one CTA per SM the splits of a (row, kv head) are one thread-block cluster instead:
// partials stay in shared memory and are combined through DSMEM (attention_params::cluster_merge). The paged and
// contiguous variants differ only in the Source that maps (b, t) to an address (one block-table load per row and
// tile for paging), so their difference is the cost of paging. Lengths and tables are read from device memory;
// grid size depends only on host values (batch, max_seq_len): safe inside CUDA Graph capture, no allocation.
// CPU: same Source template, online softmax in f32 over tiles of 64 keys, threads over (row, kv head).
//
// Layouts: q and out [rows, q_heads * head_dim] (row stride ld, e.g. the Q columns of a fused QKV projection);
// caches as in paged_kv.hpp. Precision: dot products, softmax and accumulation in f32; out rounded to T once.
// dtypes: float, frugal::half, frugal::bfloat16. head_dim: 64, 80, 96, 128 on CUDA (64 and 128 tuned); 1..256 on CPU.
//
// Workspace (CUDA, split-K only): decode_attention_workspace_bytes<T>(cuda, batch, q_heads, kv_heads, head_dim,
// max_seq_len, num_splits) bytes of device memory (16-byte aligned), ZERO-FILLED ONCE before its first use (e.g.
// cudaMemset after allocating it): its first 16 KB hold the split-K merge's arrival counters, which every call leaves
// at zero again, so one workspace serves any number of calls (CUDA Graph replays included) of any shapes, one call at
// a time (calls running concurrently need separate workspaces). The split count fills at most one wave of
// resident CTAs (SM count x the kernel's occupancy), >= 128 keys per split and 256 while that leaves >= 1.5 CTAs
// per SM (attn_make_plan); decode_attention_num_splits tells it: query on the device that runs.
// num_splits = 1 needs none. CPU needs none. Prefill does not split (no workspace).
//
// Errors (frugal::error, before any work): q_heads not a positive multiple of kv_heads, unsupported head_dim, shape
// mismatches, null pointers, a workspace that is too small; on CPU also lengths outside [0, capacity] and invalid
// block ids. On CUDA, lengths above the capacity (max_blocks * page_size, or max_len) are clamped to it and invalid
// block ids read as zero rows.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/view.hpp"
#include "../core/workspace.hpp"
#include "detail/decode_attention_cpu.hpp"
#include "kv_view.hpp"

FRUGAL_NAMESPACE_BEGIN

struct attention_params {
  std::int32_t q_heads = 0;      //!< query heads: a positive multiple of the cache's kv_heads
  float scale = 0.f;             //!< softmax scale; 0 means 1 / sqrt(head_dim)
  std::int32_t max_seq_len = 0;  //!< host-side bound on seq_lens that plans split-K; 0: the view's capacity. Longer
                                 //!< sequences stay correct (the last split takes the rest), only slower. A bound far
                                 //!< above the current lengths splits short sequences for nothing: a decode loop
                                 //!< should pass the longest current length rounded up (e.g. to a power of two; one
                                 //!< CUDA Graph per bound), as examples/gpt2 does (1.04x per token on GPT-2 124M).
  std::int32_t num_splits = 0;   //!< split-K partitions (CUDA decode): 0 chooses from the SM count, 1 disables
  bool causal = true;            //!< prefill only: row i of a sequence's new tokens sees keys up to its position
  //! CUDA decode on sm_90, in a programmatic-dependent-launch chain (the previous kernel in the stream calls
  //! griddepcontrol.launch_dependents): start streaming the cache before that kernel has finished. seq_lens, the block
  //! table and the cached K/V are then read while it (and any kernel still running before it) runs, so none of them
  //! may be written by those kernels; q, and with the fused append the new token's k/v, are read after the wait. The
  //! decode step of a model fits: the lengths, tables and earlier tokens' K/V were written before the step began, the
  //! previous kernel (the qkv projection) writes q/k/v. Results are bitwise those without it. Ignored on the CPU, by
  //! prefill, and without PDL (then nothing runs early).
  bool kv_ahead = false;
  //! CUDA decode on sm_90 with 2..8 splits and at most one CTA per SM (rows x kv heads x splits <= SMs: batch-1
  //! decode): the splits of a (row, kv head) run as one thread-block cluster and merge through distributed shared
  //! memory (two cluster barriers) instead of partials in the workspace, an arrival counter and the last CTA's L2
  //! round trips. Same formula, split order fixed; false: the global-memory merge (A/B runs).
  bool cluster_merge = true;
};

namespace detail {

inline bool attn_head_dim_cuda_ok(std::int32_t d) {
  return d == 64 || d == 80 || d == 96 || d == 128;
}

template <class T>
void attn_check(const char* op, bool cuda, matrix_view<const T> q, matrix_view<T> out, std::int32_t kv_heads,
                std::int32_t head_dim, const attention_params& p) {
  static_assert(kv_dtype_ok_v<T>, "frugal attention supports float, frugal::half, frugal::bfloat16");
  FRUGAL_CHECK(p.q_heads >= 1 && kv_heads >= 1 && p.q_heads % kv_heads == 0, op, "q_heads (=", p.q_heads,
               ") must be a positive multiple of kv_heads (=", kv_heads, ")");
  if (cuda)
    FRUGAL_CHECK(attn_head_dim_cuda_ok(head_dim), op, "head_dim (=", head_dim,
                 ") is not supported on CUDA; supported: 64, 80, 96, 128");
  else
    FRUGAL_CHECK(head_dim >= 1 && head_dim <= 256, op, "head_dim (=", head_dim, ") must be in [1, 256] on CPU");
  check_matrix(op, "q", q);
  check_matrix(op, "out", out);
  const std::int64_t cols = static_cast<std::int64_t>(p.q_heads) * head_dim;
  FRUGAL_CHECK(q.cols == cols, op, "q has ", q.cols, " columns but q_heads * head_dim = ", cols);
  check_same_shape(op, "q", q, "out", out);
  FRUGAL_CHECK(q.rows <= INT32_MAX, op, "too many query rows");
  FRUGAL_CHECK(p.max_seq_len >= 0 && p.num_splits >= 0, op, "max_seq_len and num_splits must be >= 0");
  FRUGAL_CHECK(std::isfinite(p.scale), op, "scale (=", p.scale, ") must be finite");
}

inline float attn_scale(const attention_params& p, std::int32_t head_dim) {
  return p.scale != 0.f ? p.scale : 1.f / std::sqrt(static_cast<float>(head_dim));
}

}  // namespace detail
FRUGAL_NAMESPACE_END

#if defined(__CUDACC__)
#include "detail/decode_attention_cuda.cuh"
#endif

FRUGAL_NAMESPACE_BEGIN

// ------------------------------------------------------------------------------------------------------------------
// Workspace and split planning.

template <class T>
std::size_t decode_attention_workspace_bytes(cpu_t, std::int32_t, std::int32_t, std::int32_t, std::int32_t,
                                             std::int32_t, std::int32_t = 0) {
  return 0;
}
//! Device bytes the CUDA decode needs for split-K partials (0 when it does not split).
template <class T>
std::size_t decode_attention_workspace_bytes(cuda_t, std::int32_t batch, std::int32_t q_heads, std::int32_t kv_heads,
                                             std::int32_t head_dim, std::int32_t max_seq_len,
                                             std::int32_t num_splits = 0) {
  FRUGAL_REQUIRE_NVCC(T, "decode_attention_workspace_bytes");
#if defined(__CUDACC__)
  FRUGAL_CHECK(kv_heads >= 1 && q_heads >= kv_heads && q_heads % kv_heads == 0 && batch >= 0 && max_seq_len >= 0,
               "decode_attention_workspace_bytes", "bad shape: batch=", batch, ", q_heads=", q_heads,
               ", kv_heads=", kv_heads, ", max_seq_len=", max_seq_len);
  const auto plan = detail::attn_plan_cuda<T>(batch, kv_heads, q_heads / kv_heads, head_dim, max_seq_len, num_splits);
  return detail::attn_workspace_bytes(plan, batch, q_heads, head_dim);
#else
  (void)batch, (void)q_heads, (void)kv_heads, (void)head_dim, (void)max_seq_len, (void)num_splits;
  return 0;
#endif
}
//! The number of split-K partitions the CUDA decode will use for these shapes on the current device.
template <class T>
std::int32_t decode_attention_num_splits(cuda_t, std::int32_t batch, std::int32_t q_heads, std::int32_t kv_heads,
                                         std::int32_t head_dim, std::int32_t max_seq_len, std::int32_t num_splits = 0) {
  FRUGAL_REQUIRE_NVCC(T, "decode_attention_num_splits");
#if defined(__CUDACC__)
  FRUGAL_CHECK(kv_heads >= 1 && q_heads >= kv_heads && q_heads % kv_heads == 0, "decode_attention_num_splits",
               "q_heads (=", q_heads, ") must be a positive multiple of kv_heads (=", kv_heads, ")");
  return detail::attn_plan_cuda<T>(batch, kv_heads, q_heads / kv_heads, head_dim, max_seq_len, num_splits).splits;
#else
  (void)batch, (void)q_heads, (void)kv_heads, (void)head_dim, (void)max_seq_len, (void)num_splits;
  return 1;
#endif
}

// ------------------------------------------------------------------------------------------------------------------
// Decode over a paged cache.

template <class T>
void paged_decode_attention(cpu_t tag, matrix_view<const std::type_identity_t<T>> q,    // [batch, q_heads * head_dim]
                            const paged_kv_view<const std::type_identity_t<T>>& cache,  // one layer
                            const paged_kv_table& table,                                // [batch, max_blocks], [batch]
                            matrix_view<T> out,                                         // [batch, q_heads * head_dim]
                            const attention_params& p, workspace = {}) {
  constexpr const char* op = "paged_decode_attention";
  detail::kv_check_paged(op, cache, true);
  detail::kv_check_table(op, table);
  detail::attn_check(op, false, q, out, cache.kv_heads, cache.head_dim, p);
  FRUGAL_CHECK(q.rows == table.batch, op, "q has ", q.rows, " rows but table.batch is ", table.batch);
  const auto src = detail::kv_source_of(cache, table);
  detail::attn_check_contents_cpu(op, src, table.seq_lens, table.batch, nullptr, q.rows);
  detail::attention_cpu(tag, q, out, src, table.seq_lens, nullptr, table.batch, p.q_heads, cache.kv_heads,
                        cache.head_dim, detail::attn_scale(p, cache.head_dim), true);
}
template <class T>
void paged_decode_attention(cuda_t tag, matrix_view<const std::type_identity_t<T>> q,
                            const paged_kv_view<const std::type_identity_t<T>>& cache, const paged_kv_table& table,
                            matrix_view<T> out, const attention_params& p, workspace ws = {}) {
  FRUGAL_REQUIRE_NVCC(T, "paged_decode_attention");
  constexpr const char* op = "paged_decode_attention";
  detail::kv_check_paged(op, cache, true);
  detail::kv_check_table(op, table);
  detail::attn_check(op, true, q, out, cache.kv_heads, cache.head_dim, p);
  FRUGAL_CHECK(q.rows == table.batch, op, "q has ", q.rows, " rows but table.batch is ", table.batch);
#if defined(__CUDACC__)
  const auto src = detail::kv_source_of(cache, table);
  detail::attention_cuda(tag, op, q, out, src, table.seq_lens, nullptr, table.batch, p, cache.kv_heads, cache.head_dim,
                         p.max_seq_len ? p.max_seq_len : src.capacity(), p.num_splits, ws);
#else
  (void)tag, (void)ws;
#endif
}

// ------------------------------------------------------------------------------------------------------------------
// Decode over contiguous KV ([batch, max_len, kv_heads, head_dim], e.g. the vAttention backend): the same kernel.

template <class T>
void decode_attention(cpu_t tag, matrix_view<const std::type_identity_t<T>> q,      // [batch, q_heads * head_dim]
                      const contiguous_kv_view<const std::type_identity_t<T>>& kv,  // batch = q.rows
                      const std::int32_t* seq_lens,                                 // [batch]
                      matrix_view<T> out, const attention_params& p, workspace = {}) {
  constexpr const char* op = "decode_attention";
  detail::kv_check_contiguous(op, kv);
  detail::attn_check(op, false, q, out, kv.kv_heads, kv.head_dim, p);
  FRUGAL_CHECK(q.rows == kv.batch, op, "q has ", q.rows, " rows but kv.batch is ", kv.batch);
  FRUGAL_CHECK(seq_lens != nullptr || kv.batch == 0, op, "seq_lens is null");
  const auto src = detail::kv_source_of(kv);
  detail::attn_check_contents_cpu(op, src, seq_lens, kv.batch, nullptr, q.rows);
  detail::attention_cpu(tag, q, out, src, seq_lens, nullptr, kv.batch, p.q_heads, kv.kv_heads, kv.head_dim,
                        detail::attn_scale(p, kv.head_dim), true);
}
template <class T>
void decode_attention(cuda_t tag, matrix_view<const std::type_identity_t<T>> q,
                      const contiguous_kv_view<const std::type_identity_t<T>>& kv, const std::int32_t* seq_lens,
                      matrix_view<T> out, const attention_params& p, workspace ws = {}) {
  FRUGAL_REQUIRE_NVCC(T, "decode_attention");
  constexpr const char* op = "decode_attention";
  detail::kv_check_contiguous(op, kv);
  detail::attn_check(op, true, q, out, kv.kv_heads, kv.head_dim, p);
  FRUGAL_CHECK(q.rows == kv.batch, op, "q has ", q.rows, " rows but kv.batch is ", kv.batch);
  FRUGAL_CHECK(seq_lens != nullptr || kv.batch == 0, op, "seq_lens is null");
#if defined(__CUDACC__)
  const auto src = detail::kv_source_of(kv);
  detail::attention_cuda(tag, op, q, out, src, seq_lens, nullptr, kv.batch, p, kv.kv_heads, kv.head_dim,
                         p.max_seq_len ? p.max_seq_len : kv.max_len, p.num_splits, ws);
#else
  (void)tag, (void)ws;
#endif
}

// ------------------------------------------------------------------------------------------------------------------
// Fused append + decode: one new token per sequence. Row b's K/V (k_new[b], v_new[b]: [batch, kv_heads * head_dim],
// any row stride, e.g. the K and V columns of a fused QKV projection) are written to position seq_lens[b] - 1 of
// sequence b and row b attends over its seq_lens[b] keys, the new one included: seq_lens are the lengths AFTER the
// append (what block_allocator::append + export_dense give), the table already holds the new token's block. Same
// result as kv_append at those slots followed by paged_decode_attention / decode_attention (bit for bit: the new
// token's K/V are read from k_new / v_new while the cache write is in flight), in one attention launch (+ the
// split-K merge) instead of two. A row with seq_lens[b] = 0 is skipped (nothing written, zero output). CUDA: lengths
// above the capacity are clamped and write nothing; rows whose block id is invalid attend but write nothing.
// Workspace: decode_attention_workspace_bytes (the same plan as decode). Errors: as decode, plus k_new / v_new
// shapes and, on CUDA, their 16-byte alignment (pointer and row stride).

namespace detail {
template <class T>
void attn_check_append(const char* op, bool cuda, std::int64_t rows, matrix_view<const T> k, matrix_view<const T> v,
                       std::int64_t row_elems) {
  check_matrix(op, "k_new", k);
  check_matrix(op, "v_new", v);
  FRUGAL_CHECK(k.rows == rows && v.rows == rows && k.cols == row_elems && v.cols == row_elems, op, "k_new is [", k.rows,
               ", ", k.cols, "] and v_new is [", v.rows, ", ", v.cols, "] but both must be [rows = ", rows,
               ", kv_heads * head_dim = ", row_elems, "]");
  if (cuda && rows > 0) {
    const auto a16 = [](const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; };
    const auto ld16 = [](std::int64_t ld) { return ld * static_cast<std::int64_t>(sizeof(T)) % 16 == 0; };
    FRUGAL_CHECK(a16(k.data) && a16(v.data) && ld16(k.ld) && ld16(v.ld), op,
                 "k_new and v_new must be 16-byte aligned with row strides of a multiple of 16 bytes (k_new.ld=", k.ld,
                 ", v_new.ld=", v.ld, " elements)");
  }
}
}  // namespace detail

template <class T>
void paged_append_decode_attention(cpu_t tag, matrix_view<const std::type_identity_t<T>> q,  // [batch, q_heads*D]
                                   matrix_view<const std::type_identity_t<T>> k_new,         // [batch, kv_heads*D]
                                   matrix_view<const std::type_identity_t<T>> v_new,         // [batch, kv_heads*D]
                                   const paged_kv_view<std::type_identity_t<T>>& cache,      // one layer, written
                                   const paged_kv_table& table,                              // lengths after the append
                                   matrix_view<T> out, const attention_params& p, workspace = {}) {
  constexpr const char* op = "paged_append_decode_attention";
  detail::kv_check_paged(op, cache, true);
  detail::kv_check_table(op, table);
  detail::attn_check(op, false, q, out, cache.kv_heads, cache.head_dim, p);
  FRUGAL_CHECK(q.rows == table.batch, op, "q has ", q.rows, " rows but table.batch is ", table.batch);
  detail::attn_check_append(op, false, q.rows, k_new, v_new, cache.row_elems());
  const paged_kv_view<const T> ro(cache);
  const auto src = detail::kv_source_of(ro, table);
  detail::attn_check_contents_cpu(op, src, table.seq_lens, table.batch, nullptr, q.rows);  // before any write
  detail::attn_append_cpu(src, table.seq_lens, table.batch, k_new, v_new, cache.data,
                          cache.data + cache.page_size * cache.row_elems(), cache.row_elems());
  detail::attention_cpu(tag, q, out, src, table.seq_lens, nullptr, table.batch, p.q_heads, cache.kv_heads,
                        cache.head_dim, detail::attn_scale(p, cache.head_dim), true);
}
template <class T>
void paged_append_decode_attention(cuda_t tag, matrix_view<const std::type_identity_t<T>> q,
                                   matrix_view<const std::type_identity_t<T>> k_new,
                                   matrix_view<const std::type_identity_t<T>> v_new,
                                   const paged_kv_view<std::type_identity_t<T>>& cache, const paged_kv_table& table,
                                   matrix_view<T> out, const attention_params& p, workspace ws = {}) {
  FRUGAL_REQUIRE_NVCC(T, "paged_append_decode_attention");
  constexpr const char* op = "paged_append_decode_attention";
  detail::kv_check_paged(op, cache, true);
  detail::kv_check_table(op, table);
  detail::attn_check(op, true, q, out, cache.kv_heads, cache.head_dim, p);
  FRUGAL_CHECK(q.rows == table.batch, op, "q has ", q.rows, " rows but table.batch is ", table.batch);
  detail::attn_check_append(op, true, q.rows, k_new, v_new, cache.row_elems());
#if defined(__CUDACC__)
  const paged_kv_view<const T> ro(cache);
  const auto src = detail::kv_source_of(ro, table);
  const detail::attn_append_in<T> app{k_new, v_new, cache.data, cache.data + cache.page_size * cache.row_elems()};
  detail::attention_cuda(tag, op, q, out, src, table.seq_lens, nullptr, table.batch, p, cache.kv_heads, cache.head_dim,
                         p.max_seq_len ? p.max_seq_len : src.capacity(), p.num_splits, ws, &app);
#else
  (void)tag, (void)ws;
#endif
}

//! Fused append + decode over contiguous KV: row b's new token goes to kv.k/v[b, seq_lens[b] - 1].
template <class T>
void append_decode_attention(cpu_t tag, matrix_view<const std::type_identity_t<T>> q,
                             matrix_view<const std::type_identity_t<T>> k_new,
                             matrix_view<const std::type_identity_t<T>> v_new,
                             const contiguous_kv_view<std::type_identity_t<T>>& kv,  // batch = q.rows, written
                             const std::int32_t* seq_lens,                           // [batch], after the append
                             matrix_view<T> out, const attention_params& p, workspace = {}) {
  constexpr const char* op = "append_decode_attention";
  detail::kv_check_contiguous(op, kv);
  detail::attn_check(op, false, q, out, kv.kv_heads, kv.head_dim, p);
  FRUGAL_CHECK(q.rows == kv.batch, op, "q has ", q.rows, " rows but kv.batch is ", kv.batch);
  FRUGAL_CHECK(seq_lens != nullptr || kv.batch == 0, op, "seq_lens is null");
  detail::attn_check_append(op, false, q.rows, k_new, v_new, kv.row_elems());
  const contiguous_kv_view<const T> ro(kv);
  const auto src = detail::kv_source_of(ro);
  detail::attn_check_contents_cpu(op, src, seq_lens, kv.batch, nullptr, q.rows);
  detail::attn_append_cpu(src, seq_lens, kv.batch, k_new, v_new, kv.k, kv.v, kv.row_elems());
  detail::attention_cpu(tag, q, out, src, seq_lens, nullptr, kv.batch, p.q_heads, kv.kv_heads, kv.head_dim,
                        detail::attn_scale(p, kv.head_dim), true);
}
template <class T>
void append_decode_attention(cuda_t tag, matrix_view<const std::type_identity_t<T>> q,
                             matrix_view<const std::type_identity_t<T>> k_new,
                             matrix_view<const std::type_identity_t<T>> v_new,
                             const contiguous_kv_view<std::type_identity_t<T>>& kv, const std::int32_t* seq_lens,
                             matrix_view<T> out, const attention_params& p, workspace ws = {}) {
  FRUGAL_REQUIRE_NVCC(T, "append_decode_attention");
  constexpr const char* op = "append_decode_attention";
  detail::kv_check_contiguous(op, kv);
  detail::attn_check(op, true, q, out, kv.kv_heads, kv.head_dim, p);
  FRUGAL_CHECK(q.rows == kv.batch, op, "q has ", q.rows, " rows but kv.batch is ", kv.batch);
  FRUGAL_CHECK(seq_lens != nullptr || kv.batch == 0, op, "seq_lens is null");
  detail::attn_check_append(op, true, q.rows, k_new, v_new, kv.row_elems());
#if defined(__CUDACC__)
  const contiguous_kv_view<const T> ro(kv);
  const auto src = detail::kv_source_of(ro);
  const detail::attn_append_in<T> app{k_new, v_new, kv.k, kv.v};
  detail::attention_cuda(tag, op, q, out, src, seq_lens, nullptr, kv.batch, p, kv.kv_heads, kv.head_dim,
                         p.max_seq_len ? p.max_seq_len : kv.max_len, p.num_splits, ws, &app);
#else
  (void)tag, (void)ws;
#endif
}

// ------------------------------------------------------------------------------------------------------------------
// Prefill over a paged cache: q rows of all sequences concatenated, q_indptr[batch + 1] says which rows are whose.

template <class T>
void paged_prefill_attention(cpu_t tag, matrix_view<const std::type_identity_t<T>> q,  // [rows, q_heads * head_dim]
                             const paged_kv_view<const std::type_identity_t<T>>& cache, const paged_kv_table& table,
                             const std::int32_t* q_indptr,  // [batch + 1], q_indptr[0] = 0, q_indptr[batch] = rows
                             matrix_view<T> out,            // [rows, q_heads * head_dim]
                             const attention_params& p) {
  constexpr const char* op = "paged_prefill_attention";
  detail::kv_check_paged(op, cache, true);
  detail::kv_check_table(op, table);
  detail::attn_check(op, false, q, out, cache.kv_heads, cache.head_dim, p);
  FRUGAL_CHECK(q_indptr != nullptr, op, "q_indptr is null");
  FRUGAL_CHECK(table.batch >= 1 || q.rows == 0, op, "query rows without sequences");
  const auto src = detail::kv_source_of(cache, table);
  detail::attn_check_contents_cpu(op, src, table.seq_lens, table.batch, q_indptr, q.rows);
  detail::attention_cpu(tag, q, out, src, table.seq_lens, q_indptr, table.batch, p.q_heads, cache.kv_heads,
                        cache.head_dim, detail::attn_scale(p, cache.head_dim), p.causal);
}
template <class T>
void paged_prefill_attention(cuda_t tag, matrix_view<const std::type_identity_t<T>> q,
                             const paged_kv_view<const std::type_identity_t<T>>& cache, const paged_kv_table& table,
                             const std::int32_t* q_indptr, matrix_view<T> out, const attention_params& p) {
  FRUGAL_REQUIRE_NVCC(T, "paged_prefill_attention");
  constexpr const char* op = "paged_prefill_attention";
  detail::kv_check_paged(op, cache, true);
  detail::kv_check_table(op, table);
  detail::attn_check(op, true, q, out, cache.kv_heads, cache.head_dim, p);
  FRUGAL_CHECK(q_indptr != nullptr, op, "q_indptr is null");
  FRUGAL_CHECK(table.batch >= 1 || q.rows == 0, op, "query rows without sequences");
#if defined(__CUDACC__)
  const auto src = detail::kv_source_of(cache, table);
  detail::attention_cuda(tag, op, q, out, src, table.seq_lens, q_indptr, table.batch, p, cache.kv_heads, cache.head_dim,
                         src.capacity(), 1, workspace{});
#else
  (void)tag;
#endif
}

//! Prefill over contiguous KV (same semantics as paged_prefill_attention).
template <class T>
void prefill_attention(cpu_t tag, matrix_view<const std::type_identity_t<T>> q,
                       const contiguous_kv_view<const std::type_identity_t<T>>& kv, const std::int32_t* seq_lens,
                       const std::int32_t* q_indptr, matrix_view<T> out, const attention_params& p) {
  constexpr const char* op = "prefill_attention";
  detail::kv_check_contiguous(op, kv);
  detail::attn_check(op, false, q, out, kv.kv_heads, kv.head_dim, p);
  FRUGAL_CHECK(q_indptr != nullptr && (seq_lens != nullptr || kv.batch == 0), op, "q_indptr or seq_lens is null");
  FRUGAL_CHECK(kv.batch >= 1 || q.rows == 0, op, "query rows without sequences");
  const auto src = detail::kv_source_of(kv);
  detail::attn_check_contents_cpu(op, src, seq_lens, kv.batch, q_indptr, q.rows);
  detail::attention_cpu(tag, q, out, src, seq_lens, q_indptr, kv.batch, p.q_heads, kv.kv_heads, kv.head_dim,
                        detail::attn_scale(p, kv.head_dim), p.causal);
}
template <class T>
void prefill_attention(cuda_t tag, matrix_view<const std::type_identity_t<T>> q,
                       const contiguous_kv_view<const std::type_identity_t<T>>& kv, const std::int32_t* seq_lens,
                       const std::int32_t* q_indptr, matrix_view<T> out, const attention_params& p) {
  FRUGAL_REQUIRE_NVCC(T, "prefill_attention");
  constexpr const char* op = "prefill_attention";
  detail::kv_check_contiguous(op, kv);
  detail::attn_check(op, true, q, out, kv.kv_heads, kv.head_dim, p);
  FRUGAL_CHECK(q_indptr != nullptr && (seq_lens != nullptr || kv.batch == 0), op, "q_indptr or seq_lens is null");
  FRUGAL_CHECK(kv.batch >= 1 || q.rows == 0, op, "query rows without sequences");
#if defined(__CUDACC__)
  const auto src = detail::kv_source_of(kv);
  detail::attention_cuda(tag, op, q, out, src, seq_lens, q_indptr, kv.batch, p, kv.kv_heads, kv.head_dim, kv.max_len, 1,
                         workspace{});
#else
  (void)tag;
#endif
}

FRUGAL_NAMESPACE_END
