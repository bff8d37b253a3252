// frugal/vocab/patch_merge.hpp — AdaptiVocab's greedy patch merge over many documents' token-id streams.
//
// What it computes: for each document (a run of base token ids, already free of removed tokens), the patched ids:
// walking left to right, at position i the longest k in [max_n .. 2] such that ids[i, i+k) is a patch n-gram is
// replaced by that patch's id and i advances by k; otherwise ids[i] is kept and i advances by 1 (Nakash et al.,
// "AdaptiVocab", COLM 2025, Algorithm 2 step 3: left-to-right longest match). N-grams never cross documents.
//
// Layout (CSR): ids [total] int32 with offsets [docs + 1] int64 (offsets[0] = 0, non-decreasing,
// offsets[docs] = total). Output: document d's patched ids go to out[offsets[d], offsets[d] + out_counts[d]) — the
// same start as its input, since patching never lengthens a document; the rest of its span is left untouched.
//
// Table: open addressing (linear probing, power-of-two capacity) from the packed n-gram key
//   key = sum_j (ids[j] + 1) << (j * key_bits)   (key_bits = 16 when vocab < 65535, else 21, so max_n*key_bits <= 64)
// to the patch id; built on the host by patch_tokenizer (or make_patch_merge_table) and, for CUDA, copied to the
// device by the caller (two arrays; patch_merge_table_view holds their pointers).
//
// CPU: documents split over threads. CUDA: (1) every position finds its longest match in parallel; (2) chunks of
// 128 positions are walked from each of their max_n - 1 possible entry offsets; (3) one block composes the chunks'
// entry->exit maps (a scan); (4) every chunk is walked again from its true entry to place the documents' starts,
// then (5) to write the ids. Equal to the CPU result id for id. Workspace: patch_merge_workspace_bytes(cuda, ...).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/workspace.hpp"
#include "detail/hash.hpp"

FRUGAL_NAMESPACE_BEGIN

//! Non-owning view of a merge table (host or device memory, as the tag says).
struct patch_merge_table_view {
  const std::uint64_t* keys = nullptr;   // [mask + 1], empty slots hold ~0
  const std::int32_t* values = nullptr;  // [mask + 1] patch id of each key
  std::uint64_t mask = 0;                // capacity - 1 (capacity a power of two)
  int max_n = 2;                         // longest patch, in base tokens (2..4)
  int key_bits = 16;
};

namespace detail {
FRUGAL_HOST_DEVICE inline std::uint64_t pack_ngram(const std::int32_t* ids, int k, int key_bits) {
  std::uint64_t key = 0;
  for (int j = 0; j < k; ++j) key |= static_cast<std::uint64_t>(ids[j] + 1) << (j * key_bits);
  return key;
}
//! Patch id of ids[0, k), or -1.
FRUGAL_HOST_DEVICE inline std::int32_t probe_ngram(const patch_merge_table_view& t, const std::int32_t* ids, int k) {
  const std::uint64_t key = pack_ngram(ids, k, t.key_bits);
  std::uint64_t i = mix64(key) & t.mask;
  for (;;) {
    const std::uint64_t s = t.keys[i];
    if (s == key) return t.values[i];
    if (s == ~std::uint64_t{0}) return -1;
    i = (i + 1) & t.mask;
  }
}
inline int key_bits_for(std::int64_t vocab_size) { return vocab_size < 65535 ? 16 : 21; }
}  // namespace detail

//! Host-side merge table (owning). `view()` points at the host arrays; upload keys/values for CUDA.
struct patch_merge_table {
  std::vector<std::uint64_t> keys;
  std::vector<std::int32_t> values;
  int max_n = 2;
  int key_bits = 16;

  patch_merge_table_view view() const {
    return {keys.data(), values.data(), keys.empty() ? 0 : keys.size() - 1, max_n, key_bits};
  }
  //! The same table at other (e.g. device) addresses holding copies of keys and values.
  patch_merge_table_view view_at(const std::uint64_t* keys_ptr, const std::int32_t* values_ptr) const {
    return {keys_ptr, values_ptr, keys.empty() ? 0 : keys.size() - 1, max_n, key_bits};
  }
};

//! Builds a table from patches given as (id, pieces). `vocab_size` fixes the key packing.
inline patch_merge_table make_patch_merge_table(const std::vector<std::pair<std::int32_t, std::vector<std::int32_t>>>& patches,
                                                std::int64_t vocab_size) {
  patch_merge_table t;
  t.key_bits = detail::key_bits_for(vocab_size);
  int max_n = 2;
  for (const auto& [id, pieces] : patches) {
    FRUGAL_CHECK(pieces.size() >= 2 && pieces.size() <= 4, "make_patch_merge_table", "patch ", id, " has ",
                 pieces.size(), " pieces; 2..4 are supported");
    FRUGAL_CHECK(static_cast<int>(pieces.size()) * t.key_bits <= 64, "make_patch_merge_table", "patch ", id, " has ",
                 pieces.size(), " pieces, but a vocabulary of ", vocab_size, " ids allows at most ", 64 / t.key_bits);
    for (const std::int32_t p : pieces)
      FRUGAL_CHECK(p >= 0 && p < vocab_size, "make_patch_merge_table", "patch ", id, " has piece ", p,
                   " outside [0, ", vocab_size, ")");
    max_n = std::max(max_n, static_cast<int>(pieces.size()));
  }
  t.max_n = max_n;
  std::size_t cap = 16;
  while (cap < 2 * patches.size() + 2) cap *= 2;
  t.keys.assign(cap, ~std::uint64_t{0});
  t.values.assign(cap, -1);
  for (const auto& [id, pieces] : patches) {
    const std::uint64_t key = detail::pack_ngram(pieces.data(), static_cast<int>(pieces.size()), t.key_bits);
    std::size_t i = detail::mix64(key) & (cap - 1);
    while (t.keys[i] != ~std::uint64_t{0} && t.keys[i] != key) i = (i + 1) & (cap - 1);
    FRUGAL_CHECK(t.keys[i] != key, "make_patch_merge_table", "patch ", id, " repeats the pieces of patch ", t.values[i]);
    t.keys[i] = key;
    t.values[i] = id;
  }
  return t;
}

namespace detail {
inline void check_patch_merge_args(const char* op, const patch_merge_table_view& t, const std::int32_t* ids,
                                   const std::int64_t* offsets, std::int64_t docs, std::int32_t* out,
                                   std::int64_t* out_counts) {
  FRUGAL_CHECK(docs >= 0, op, "docs (=", docs, ") must be >= 0");
  FRUGAL_CHECK(offsets != nullptr || docs == 0, op, "offsets is null");
  FRUGAL_CHECK(out_counts != nullptr || docs == 0, op, "out_counts is null");
  FRUGAL_CHECK(t.keys != nullptr && t.values != nullptr, op, "the merge table is empty (null keys/values)");
  FRUGAL_CHECK(((t.mask + 1) & t.mask) == 0, op, "table capacity (=", t.mask + 1, ") must be a power of two");
  FRUGAL_CHECK(t.max_n >= 2 && t.max_n <= 4 && t.max_n * t.key_bits <= 64, op, "max_n (=", t.max_n,
               ") must be in [2, 4] with max_n * key_bits <= 64");
  (void)ids;
  (void)out;
}

inline void patch_merge_cpu(cpu_t tag, const patch_merge_table_view& t, const std::int32_t* ids,
                            const std::int64_t* offsets, std::int64_t docs, std::int32_t* out, std::int64_t* out_counts) {
  parallel_for(tag, docs, 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t d = b; d < e; ++d) {
      const std::int64_t begin = offsets[d], end = offsets[d + 1];
      std::int64_t o = begin;
      for (std::int64_t i = begin; i < end;) {
        int k = static_cast<int>(std::min<std::int64_t>(t.max_n, end - i));
        std::int32_t id = -1;
        for (; k >= 2; --k)
          if ((id = probe_ngram(t, ids + i, k)) >= 0) break;
        if (k < 2) {
          out[o++] = ids[i];
          i += 1;
        } else {
          out[o++] = id;
          i += k;
        }
      }
      out_counts[d] = o - begin;
    }
  });
}
}  // namespace detail

//! CPU: patch merge of `docs` documents. ids/out may be the same array (in place).
inline void patch_merge(cpu_t tag, const patch_merge_table_view& table,
                        const std::int32_t* ids,       // [offsets[docs]]
                        const std::int64_t* offsets,   // [docs + 1]
                        std::int64_t docs,
                        std::int32_t* out,             // [offsets[docs]]
                        std::int64_t* out_counts) {    // [docs]
  detail::check_patch_merge_args("patch_merge", table, ids, offsets, docs, out, out_counts);
  if (docs == 0) return;
  FRUGAL_CHECK(offsets[0] == 0, "patch_merge", "offsets[0] (=", offsets[0], ") must be 0");
  for (std::int64_t d = 0; d < docs; ++d)
    FRUGAL_CHECK(offsets[d + 1] >= offsets[d], "patch_merge", "offsets must be non-decreasing, but offsets[", d + 1,
                 "] = ", offsets[d + 1], " < offsets[", d, "] = ", offsets[d]);
  FRUGAL_CHECK((ids != nullptr && out != nullptr) || offsets[docs] == 0, "patch_merge", "ids/out is null");
  detail::patch_merge_cpu(tag, table, ids, offsets, docs, out, out_counts);
}

//! Bytes of device workspace patch_merge(cuda, ...) needs for `total` ids in `docs` documents.
inline std::size_t patch_merge_workspace_bytes(cuda_t, std::int64_t total, std::int64_t docs) {
  constexpr std::int64_t chunk = 128;
  const std::int64_t chunks = (total + chunk - 1) / chunk;
  detail::workspace_carver c;
  c.take<std::uint8_t>(static_cast<std::size_t>(total));        // match length
  c.take<std::int32_t>(static_cast<std::size_t>(total));        // matched id
  c.take<std::uint8_t>(static_cast<std::size_t>(chunks * 4));   // exit offset per (chunk, entry)
  c.take<std::int32_t>(static_cast<std::size_t>(chunks * 4));   // tokens emitted per (chunk, entry)
  c.take<std::uint8_t>(static_cast<std::size_t>(chunks));       // true entry of each chunk
  c.take<std::int64_t>(static_cast<std::size_t>(chunks));       // global index of the chunk's first output
  c.take<std::int64_t>(static_cast<std::size_t>(docs + 1));     // global index of each document's first output
  c.take<std::int64_t>(1);                                      // total outputs
  return c.bytes();
}

FRUGAL_NAMESPACE_END

#if defined(__CUDACC__)
#include "detail/patch_merge_cuda.cuh"
#endif

FRUGAL_NAMESPACE_BEGIN
//! CUDA: the same on device arrays, asynchronously on tag.stream. `table` must point at device copies.
//! `offsets` is read on the device only, so it is not validated (pass what patch_tokenizer::flatten gives).
//! ids and out must not overlap.
template <class Tag>
  requires std::is_same_v<Tag, cuda_t>
void patch_merge(Tag tag, const patch_merge_table_view& table,
                 const std::int32_t* ids,       // [total] device
                 const std::int64_t* offsets,   // [docs + 1] device
                 std::int64_t docs, std::int64_t total,
                 std::int32_t* out,             // [total] device
                 std::int64_t* out_counts,      // [docs] device
                 workspace ws) {
#if defined(__CUDACC__)
  detail::check_patch_merge_args("patch_merge", table, ids, offsets, docs, out, out_counts);
  FRUGAL_CHECK(total >= 0 && total < (std::int64_t{1} << 40), "patch_merge", "total (=", total, ") is out of range");
  detail::patch_merge_cuda(tag, table, ids, offsets, docs, total, out, out_counts, ws);
#else
  FRUGAL_REQUIRE_NVCC(Tag, "patch_merge");
  (void)tag, (void)table, (void)ids, (void)offsets, (void)docs, (void)total, (void)out, (void)out_counts, (void)ws;
#endif
}
FRUGAL_NAMESPACE_END
