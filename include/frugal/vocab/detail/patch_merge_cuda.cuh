// frugal/vocab/detail/patch_merge_cuda.cuh — CUDA patch merge (nvcc only; included by patch_merge.hpp).
//
// The greedy left-to-right longest match is a chain over positions: from a token start i the next start is
// i + len[i] (len = longest patch match at i, else 1; matches never cross a document end, so every document start
// lies on the chain from 0). Five kernels, no host synchronisation:
//  1. match_kernel      one thread per position: len[i] (max_n..1) and the id it emits;
//  2. chunk_kernel      one thread per (chunk of 128 positions, entry offset e < max_n <= 4): walks the chain
//                       from chunk start + e to the chunk end: exit offset into the next chunk and tokens emitted;
//  3. scan_kernel       one block: composes the chunks' entry -> exit maps (per-thread ranges, a sequential pass over
//                       1024 thread summaries, then per-thread prefixes) -> true entry and first output index of each
//                       chunk, and the total;
//  4. doc_base_kernel   one thread per chunk: walks the chain, records each document start's global output index;
//  5. emit_kernel       one thread per chunk: walks again, writing out[offsets[d] + (g - base[d])] = id;
//  6. counts_kernel     one thread per document: out_counts[d].
#pragma once

#include <cstdint>

#include "../../core/detail/cuda_common.cuh"
#include "../../core/workspace.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

inline constexpr int patch_chunk = 128;
inline constexpr int patch_scan_threads = 1024;

__device__ inline std::int64_t patch_upper_bound(const std::int64_t* a, std::int64_t n, std::int64_t x) {
  std::int64_t lo = 0, hi = n;  // first index with a[idx] > x
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (a[mid] <= x) lo = mid + 1; else hi = mid;
  }
  return lo;
}
__device__ inline std::int64_t patch_lower_bound(const std::int64_t* a, std::int64_t n, std::int64_t x) {
  std::int64_t lo = 0, hi = n;  // first index with a[idx] >= x
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (a[mid] < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

static __global__ void patch_match_kernel(patch_merge_table_view t, const std::int32_t* __restrict__ ids,
                                   const std::int64_t* __restrict__ offsets, std::int64_t docs, std::int64_t total,
                                   std::uint8_t* __restrict__ len, std::int32_t* __restrict__ emit) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const std::int64_t d = patch_upper_bound(offsets, docs + 1, i) - 1;  // offsets[d] <= i < offsets[d+1]
  const std::int64_t end = offsets[d + 1];
  int k = static_cast<int>(end - i < t.max_n ? end - i : t.max_n);
  std::int32_t id = -1;
  for (; k >= 2; --k)
    if ((id = probe_ngram(t, ids + i, k)) >= 0) break;
  if (k < 2) {
    len[i] = 1;
    emit[i] = ids[i];
  } else {
    len[i] = static_cast<std::uint8_t>(k);
    emit[i] = id;
  }
}

static __global__ void patch_chunk_kernel(const std::uint8_t* __restrict__ len, std::int64_t total, std::int64_t chunks,
                                   int entries, std::uint8_t* __restrict__ exit_off, std::int32_t* __restrict__ count) {
  const std::int64_t x = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= chunks * 4) return;
  const std::int64_t c = x / 4;
  const int e = static_cast<int>(x % 4);
  if (e >= entries) return;
  const std::int64_t begin = c * patch_chunk, end = begin + patch_chunk < total ? begin + patch_chunk : total;
  std::int64_t pos = begin + e;
  std::int32_t n = 0;
  while (pos < end) {
    ++n;
    pos += len[pos];
  }
  exit_off[x] = static_cast<std::uint8_t>(pos - end);
  count[x] = n;
}

static __global__ void __launch_bounds__(patch_scan_threads)
    patch_scan_kernel(const std::uint8_t* __restrict__ exit_off, const std::int32_t* __restrict__ count,
                      std::int64_t chunks, int entries, std::uint8_t* __restrict__ entry,
                      std::int64_t* __restrict__ first_out, std::int64_t* __restrict__ total_out) {
  __shared__ std::uint8_t s_exit[patch_scan_threads][4];
  __shared__ std::int64_t s_count[patch_scan_threads][4];
  __shared__ std::uint8_t s_entry[patch_scan_threads];
  __shared__ std::int64_t s_first[patch_scan_threads];
  const int t = static_cast<int>(threadIdx.x);
  const std::int64_t per = (chunks + patch_scan_threads - 1) / patch_scan_threads;
  const std::int64_t cb = t * per, ce = cb + per < chunks ? cb + per : chunks;
  for (int e0 = 0; e0 < 4; ++e0) {  // compose this thread's range for each entry
    int e = e0;
    std::int64_t n = 0;
    if (e0 < entries)
      for (std::int64_t c = cb; c < ce; ++c) {
        n += count[c * 4 + e];
        e = exit_off[c * 4 + e];
      }
    s_exit[t][e0] = static_cast<std::uint8_t>(e);
    s_count[t][e0] = n;
  }
  __syncthreads();
  if (t == 0) {
    int e = 0;
    std::int64_t g = 0;
    for (int k = 0; k < patch_scan_threads; ++k) {
      s_entry[k] = static_cast<std::uint8_t>(e);
      s_first[k] = g;
      g += s_count[k][e];
      e = s_exit[k][e];
    }
    *total_out = g;
  }
  __syncthreads();
  int e = s_entry[t];
  std::int64_t g = s_first[t];
  for (std::int64_t c = cb; c < ce; ++c) {
    entry[c] = static_cast<std::uint8_t>(e);
    first_out[c] = g;
    g += count[c * 4 + e];
    e = exit_off[c * 4 + e];
  }
}

static __global__ void patch_doc_base_kernel(const std::uint8_t* __restrict__ len, const std::int64_t* __restrict__ offsets,
                                      std::int64_t docs, std::int64_t total, std::int64_t chunks,
                                      const std::uint8_t* __restrict__ entry,
                                      const std::int64_t* __restrict__ first_out, std::int64_t* __restrict__ base) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= chunks) return;
  const std::int64_t begin = c * patch_chunk, end = begin + patch_chunk < total ? begin + patch_chunk : total;
  std::int64_t pos = begin + entry[c], g = first_out[c];
  std::int64_t d = patch_lower_bound(offsets, docs, pos);  // first document starting at or after pos
  while (pos < end) {
    while (d < docs && offsets[d] < pos) ++d;
    while (d < docs && offsets[d] == pos) base[d++] = g;  // every document starting here (empty ones too)
    ++g;
    pos += len[pos];
  }
}

static __global__ void patch_emit_kernel(const std::uint8_t* __restrict__ len, const std::int32_t* __restrict__ emit,
                                  const std::int64_t* __restrict__ offsets, std::int64_t docs, std::int64_t total,
                                  std::int64_t chunks, const std::uint8_t* __restrict__ entry,
                                  const std::int64_t* __restrict__ first_out, const std::int64_t* __restrict__ base,
                                  std::int32_t* __restrict__ out) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= chunks) return;
  const std::int64_t begin = c * patch_chunk, end = begin + patch_chunk < total ? begin + patch_chunk : total;
  std::int64_t pos = begin + entry[c], g = first_out[c];
  if (pos >= end) return;
  std::int64_t d = patch_upper_bound(offsets, docs + 1, pos) - 1;  // the document containing pos
  while (pos < end) {
    while (offsets[d + 1] <= pos) ++d;
    out[offsets[d] + (g - base[d])] = emit[pos];
    ++g;
    pos += len[pos];
  }
}

static __global__ void patch_counts_kernel(const std::int64_t* __restrict__ offsets, std::int64_t docs, std::int64_t total,
                                    const std::int64_t* __restrict__ base, const std::int64_t* __restrict__ total_out,
                                    std::int64_t* __restrict__ out_counts) {
  const std::int64_t d = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d >= docs) return;
  const std::int64_t g_end = *total_out;
  const std::int64_t b0 = offsets[d] >= total ? g_end : base[d];
  const std::int64_t b1 = d + 1 < docs ? (offsets[d + 1] >= total ? g_end : base[d + 1]) : g_end;
  out_counts[d] = b1 - b0;
}

inline void patch_merge_cuda(cuda_t tag, const patch_merge_table_view& t, const std::int32_t* ids,
                             const std::int64_t* offsets, std::int64_t docs, std::int64_t total, std::int32_t* out,
                             std::int64_t* out_counts, workspace ws) {
  const char* op = "patch_merge";
  if (docs == 0) return;
  const std::int64_t chunks = (total + patch_chunk - 1) / patch_chunk;
  workspace_carver carve(ws);
  auto* len = carve.take<std::uint8_t>(static_cast<std::size_t>(total));
  auto* emit = carve.take<std::int32_t>(static_cast<std::size_t>(total));
  auto* exit_off = carve.take<std::uint8_t>(static_cast<std::size_t>(chunks * 4));
  auto* count = carve.take<std::int32_t>(static_cast<std::size_t>(chunks * 4));
  auto* entry = carve.take<std::uint8_t>(static_cast<std::size_t>(chunks));
  auto* first_out = carve.take<std::int64_t>(static_cast<std::size_t>(chunks));
  auto* base = carve.take<std::int64_t>(static_cast<std::size_t>(docs + 1));
  auto* total_out = carve.take<std::int64_t>(1);
  carve.check(op);
  const cudaStream_t s = tag.stream;
  constexpr int threads = 256;
  if (total > 0) {
    patch_match_kernel<<<static_cast<unsigned>(ceil_div<std::int64_t>(total, threads)), threads, 0, s>>>(
        t, ids, offsets, docs, total, len, emit);
    check_launch(op, "patch_match_kernel");
    patch_chunk_kernel<<<static_cast<unsigned>(ceil_div<std::int64_t>(chunks * 4, threads)), threads, 0, s>>>(
        len, total, chunks, t.max_n, exit_off, count);
    check_launch(op, "patch_chunk_kernel");
  }
  patch_scan_kernel<<<1, patch_scan_threads, 0, s>>>(exit_off, count, chunks, t.max_n, entry, first_out, total_out);
  check_launch(op, "patch_scan_kernel");
  if (total > 0) {
    const unsigned cblocks = static_cast<unsigned>(ceil_div<std::int64_t>(chunks, threads));
    patch_doc_base_kernel<<<cblocks, threads, 0, s>>>(len, offsets, docs, total, chunks, entry, first_out, base);
    check_launch(op, "patch_doc_base_kernel");
    patch_emit_kernel<<<cblocks, threads, 0, s>>>(len, emit, offsets, docs, total, chunks, entry, first_out, base, out);
    check_launch(op, "patch_emit_kernel");
  }
  patch_counts_kernel<<<static_cast<unsigned>(ceil_div<std::int64_t>(docs, threads)), threads, 0, s>>>(
      offsets, docs, total, base, total_out, out_counts);
  check_launch(op, "patch_counts_kernel");
}

}  // namespace detail
FRUGAL_NAMESPACE_END
