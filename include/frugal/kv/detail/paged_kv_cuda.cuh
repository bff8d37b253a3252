// frugal/kv/detail/paged_kv_cuda.cuh — CUDA kernels of kv_append / kv_copy_blocks / kv_gather (nvcc only).
// 16-byte vector copies where sizes and alignment allow, element copies otherwise. Indices read from device memory
// (slots, block ids, lengths) are bounds-checked in the kernels: out-of-range entries are skipped.
#pragma once

#if !defined(__CUDACC__)
#error "frugal/kv/detail/paged_kv_cuda.cuh is CUDA code: include it only from a translation unit compiled by nvcc."
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "../../core/detail/cuda_common.cuh"
#include "../../core/view.hpp"
#include "../kv_view.hpp"
#include "kv_common.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

inline bool kv_aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

inline unsigned kv_grid(std::int64_t work, int threads) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((work + threads - 1) / threads, 1, 65535 * 16));
}

//! V = elements per copy (16 / sizeof(T) for the vector path, 1 for the element path). U = the copy unit type.
template <class T, int V, class U>
__global__ void kv_append_kernel(kv_slot_store<T> s, const T* __restrict__ k, std::int64_t k_ld,
                                 const T* __restrict__ v, std::int64_t v_ld, const std::int32_t* __restrict__ slots,
                                 std::int64_t n) {
  const std::int64_t per_row = s.row_elems / V;
  const std::int64_t total = n * per_row;
  const std::int64_t cap = s.capacity();
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / per_row, c = (i - r * per_row) * V;
    const std::int32_t slot = slots[r];
    if (slot < 0 || slot >= cap) continue;
    const std::int64_t off = s.offset(slot) + c;
    *reinterpret_cast<U*>(s.k + off) = *reinterpret_cast<const U*>(k + r * k_ld + c);
    *reinterpret_cast<U*>(s.v + off) = *reinterpret_cast<const U*>(v + r * v_ld + c);
  }
}

template <class T>
void kv_append_cuda(cuda_t tag, const char* op, const kv_slot_store<T>& s, matrix_view<const T> k,
                    matrix_view<const T> v, const std::int32_t* slots) {
  check_matrix(op, "k", k);
  check_matrix(op, "v", v);
  const std::int64_t n = k.rows;
  FRUGAL_CHECK(k.cols == s.row_elems && v.cols == s.row_elems && v.rows == n, op, "k is [", k.rows, ", ", k.cols,
               "] and v is [", v.rows, ", ", v.cols, "] but both must be [n, kv_heads * head_dim = ", s.row_elems, "]");
  FRUGAL_CHECK(slots != nullptr || n == 0, op, "slots is null");
  if (n == 0 || s.chunks == 0) return;
  constexpr int E = 16 / sizeof(T);
  const bool vec = s.row_elems % E == 0 && k.ld % E == 0 && v.ld % E == 0 && s.chunk_stride % E == 0 &&
                   kv_aligned16(k.data) && kv_aligned16(v.data) && kv_aligned16(s.k) && kv_aligned16(s.v);
  constexpr int threads = 256;
  if (vec) {
    kv_append_kernel<T, E, uint4><<<kv_grid(n * s.row_elems / E, threads), threads, 0, tag.stream>>>(
        s, k.data, k.ld, v.data, v.ld, slots, n);
  } else {
    kv_append_kernel<T, 1, T><<<kv_grid(n * s.row_elems, threads), threads, 0, tag.stream>>>(s, k.data, k.ld, v.data,
                                                                                              v.ld, slots, n);
  }
  check_launch(op, "kv_append_kernel");
}

template <class U>
__global__ void kv_copy_blocks_kernel(U* data, std::int64_t block_units, std::int64_t layer_units,
                                      std::int32_t num_blocks, std::int32_t layers, const block_copy* copies,
                                      std::int32_t n) {
  const std::int64_t total = static_cast<std::int64_t>(layers) * n * block_units;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t u = i % block_units;
    const std::int64_t lc = i / block_units;
    const std::int32_t c = static_cast<std::int32_t>(lc % n), l = static_cast<std::int32_t>(lc / n);
    const block_copy bc = copies[c];
    if (bc.src < 0 || bc.src >= num_blocks || bc.dst < 0 || bc.dst >= num_blocks || bc.src == bc.dst) continue;
    U* base = data + l * layer_units;
    base[bc.dst * block_units + u] = base[bc.src * block_units + u];
  }
}

template <class T>
void kv_copy_blocks_cuda(cuda_t tag, const paged_kv_view<T>& c, const block_copy* copies, std::int32_t n) {
  if (n == 0 || c.num_blocks == 0) return;
  constexpr int threads = 256;
  const std::int64_t bytes = c.block_elems() * static_cast<std::int64_t>(sizeof(T));
  if (bytes % 16 == 0 && kv_aligned16(c.data)) {
    const std::int64_t bu = bytes / 16;
    kv_copy_blocks_kernel<uint4><<<kv_grid(c.num_layers * n * bu, threads), threads, 0, tag.stream>>>(
        reinterpret_cast<uint4*>(c.data), bu, bu * c.num_blocks, c.num_blocks, c.num_layers, copies, n);
  } else {
    const std::int64_t bu = c.block_elems();
    kv_copy_blocks_kernel<T><<<kv_grid(c.num_layers * n * bu, threads), threads, 0, tag.stream>>>(
        c.data, bu, c.layer_elems(), c.num_blocks, c.num_layers, copies, n);
  }
  check_launch("kv_copy_blocks", "kv_copy_blocks_kernel");
}

template <class T, int V, class U>
__global__ void kv_gather_kernel(paged_kv_view<const T> c, const std::int32_t* __restrict__ table,
                                 std::int32_t max_blocks, const std::int32_t* __restrict__ lens,
                                 contiguous_kv_view<T> out) {
  const std::int64_t per_row = c.row_elems() / V;
  const std::int64_t per_seq = static_cast<std::int64_t>(out.max_len) * per_row;
  const std::int64_t total = per_seq * out.batch;
  const std::int32_t cap = max_blocks * c.page_size;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int32_t b = static_cast<std::int32_t>(i / per_seq);
    const std::int64_t rem = i - b * per_seq;
    const std::int32_t t = static_cast<std::int32_t>(rem / per_row);
    const std::int64_t x = (rem - t * per_row) * V;
    if (t >= min(lens[b], cap)) continue;
    const std::int32_t blk = table[static_cast<std::int64_t>(b) * max_blocks + t / c.page_size];
    if (blk < 0 || blk >= c.num_blocks) continue;
    const std::int32_t o = t % c.page_size;
    *reinterpret_cast<U*>(out.k_at(b, t) + x) = *reinterpret_cast<const U*>(c.k(blk, o) + x);
    *reinterpret_cast<U*>(out.v_at(b, t) + x) = *reinterpret_cast<const U*>(c.v(blk, o) + x);
  }
}

template <class T>
void kv_gather_cuda(cuda_t tag, const paged_kv_view<const T>& c, const paged_kv_table& t,
                    const contiguous_kv_view<T>& out) {
  if (out.batch == 0 || out.max_len == 0 || c.num_blocks == 0) return;
  constexpr int threads = 256, E = 16 / sizeof(T);
  const bool vec = c.row_elems() % E == 0 && out.stride() % E == 0 && kv_aligned16(c.data) && kv_aligned16(out.k) &&
                   kv_aligned16(out.v);
  const std::int64_t rows = static_cast<std::int64_t>(out.batch) * out.max_len;
  if (vec) {
    kv_gather_kernel<T, E, uint4><<<kv_grid(rows * c.row_elems() / E, threads), threads, 0, tag.stream>>>(
        c, t.block_table, t.max_blocks, t.seq_lens, out);
  } else {
    kv_gather_kernel<T, 1, T><<<kv_grid(rows * c.row_elems(), threads), threads, 0, tag.stream>>>(
        c, t.block_table, t.max_blocks, t.seq_lens, out);
  }
  check_launch("kv_gather", "kv_gather_kernel");
}

}  // namespace detail
FRUGAL_NAMESPACE_END
