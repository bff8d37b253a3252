// frugal/kv/block_allocator.hpp — paged-KV block allocator: a pool of fixed-size pages, per-sequence block tables,
// fork with shared blocks, copy-on-write, and the two de-facto block-table formats (vLLM dense, FlashInfer CSR).
//
// What it manages (host memory only; it never touches the K/V storage itself):
//   - a pool of `num_blocks` blocks (pages) of `page_size` token slots each (page_size in [1, 256], default 16, the
//     vLLM default; PagedAttention, Kwon et al., SOSP'23). Block b, offset o is KV "slot" b * page_size + o, the
//     index kv_append() writes to (vLLM's slot_mapping).
//   - sequences: a length (tokens) and a block table (block ids, ceil(length / page_size) of them).
//   - per-block reference counts: fork() makes a new sequence that shares every block of its parent (ref += 1).
//
// Operations (all O(1) per block touched; allocate/free of a block is a pop/push on an intrusive free list):
//   allocate(tokens)   new sequence holding `tokens` slots (positions 0..tokens-1), returns its id
//   append(seq, n)     reserves positions length..length+n-1; takes new blocks only when the last one is full.
//                      Copy-on-write: if the last block is partially filled AND shared (ref > 1), the sequence gets a
//                      fresh block instead and append returns the copy {src, dst} that the CALLER must perform on the
//                      storage of every layer (kv_copy_blocks) before writing the new tokens. At most one copy per
//                      call, hence std::optional. The result is [[nodiscard]]: ignoring it loses the shared prefix.
//   fork(seq)          new sequence sharing all of seq's blocks (parallel sampling, beam search)
//   free(seq)          drops the sequence; blocks whose count reaches 0 go back to the pool (exactly its unshared
//                      blocks; the count is returned)
//   can_allocate(t) / can_append(seq, n) / blocks_needed(seq, n)   capacity queries, never throw on exhaustion
//
// Exhaustion: allocate/append that need more blocks than are free throw frugal::error and leave the allocator
// exactly as before (strong guarantee: every check and every allocation that can throw happens before the first
// change). Invalid sequence ids, negative token counts and block-count overflow throw likewise.
//
// Accounting: num_used_blocks() + num_free_blocks() == num_blocks(); tokens_stored() counts token slots that hold data
// (a shared block counts once); logical_tokens() sums sequence lengths (shared tokens count per sequence);
// wasted_slots() = used blocks * page_size - tokens_stored() (the internal fragmentation of partially filled last
// blocks); waste_fraction() = wasted_slots / (used blocks * page_size).
//
// Block-table exports (into caller memory, e.g. pinned host buffers that are then copied to the GPU):
//   export_dense(seqs, table[n, max_blocks], max_blocks, seq_lens[n])          vLLM's block_tables + seq_lens
//   export_csr(seqs, indptr[n + 1], indices[nnz], last_page_len[n])            FlashInfer's paged_kv_t arrays
// Sequence ids are small non-negative integers, reused after free().
//
// Thread safety: none (one allocator per scheduler thread, like vLLM's BlockPool).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

FRUGAL_NAMESPACE_BEGIN

//! One copy-on-write block copy: copy the whole block `src` to block `dst` (K and V, every layer).
struct block_copy {
  std::int32_t src = 0;
  std::int32_t dst = 0;
  friend bool operator==(const block_copy&, const block_copy&) = default;
};

class block_allocator {
 public:
  using seq_id = std::int32_t;
  static constexpr std::int32_t max_page_size = 256;

  //! A pool of `num_blocks` blocks of `page_size` tokens. num_blocks * page_size must fit in int32 (slots are int32).
  explicit block_allocator(std::int32_t num_blocks, std::int32_t page_size = 16)
      : page_size_(page_size), num_blocks_(num_blocks) {
    FRUGAL_CHECK(page_size >= 1 && page_size <= max_page_size, "block_allocator", "page_size (=", page_size,
                 ") must be in [1, ", max_page_size, "]");
    FRUGAL_CHECK(num_blocks >= 0, "block_allocator", "num_blocks (=", num_blocks, ") must be >= 0");
    FRUGAL_CHECK(static_cast<std::int64_t>(num_blocks) * page_size <= std::numeric_limits<std::int32_t>::max(),
                 "block_allocator", "num_blocks * page_size (=", static_cast<std::int64_t>(num_blocks) * page_size,
                 ") must be < 2^31 (slots are int32)");
    ref_.assign(static_cast<std::size_t>(num_blocks), 0);
    fill_.assign(static_cast<std::size_t>(num_blocks), 0);
    next_.resize(static_cast<std::size_t>(num_blocks));
    for (std::int32_t b = 0; b < num_blocks; ++b) next_[static_cast<std::size_t>(b)] = b + 1 < num_blocks ? b + 1 : -1;
    head_ = num_blocks > 0 ? 0 : -1;
    free_count_ = num_blocks;
  }

  // ---- sizes and accounting ----------------------------------------------------------------------------------------
  std::int32_t page_size() const noexcept { return page_size_; }
  std::int32_t num_blocks() const noexcept { return num_blocks_; }
  std::int32_t num_free_blocks() const noexcept { return free_count_; }
  std::int32_t num_used_blocks() const noexcept { return num_blocks_ - free_count_; }
  std::int32_t num_sequences() const noexcept { return live_; }
  std::int64_t tokens_stored() const noexcept { return tokens_stored_; }
  std::int64_t logical_tokens() const noexcept { return logical_tokens_; }
  std::int64_t wasted_slots() const noexcept {
    return static_cast<std::int64_t>(num_used_blocks()) * page_size_ - tokens_stored_;
  }
  double waste_fraction() const noexcept {
    const std::int64_t slots = static_cast<std::int64_t>(num_used_blocks()) * page_size_;
    return slots ? static_cast<double>(wasted_slots()) / static_cast<double>(slots) : 0.0;
  }
  //! Blocks a sequence of `tokens` tokens occupies: ceil(tokens / page_size).
  std::int64_t blocks_for(std::int64_t tokens) const noexcept { return (tokens + page_size_ - 1) / page_size_; }

  // ---- capacity queries (never throw on exhaustion) ----------------------------------------------------------------
  bool can_allocate(std::int64_t tokens) const noexcept { return tokens >= 0 && blocks_for(tokens) <= free_count_; }

  //! New blocks append(seq, n) would take, the copy-on-write block included.
  std::int64_t blocks_needed(seq_id s, std::int64_t n) const {
    const seq_state& q = get("block_allocator::blocks_needed", s);
    FRUGAL_CHECK(n >= 0, "block_allocator::blocks_needed", "n (=", n, ") must be >= 0");
    return needed(q, n);
  }
  bool can_append(seq_id s, std::int64_t n) const { return blocks_needed(s, n) <= free_count_; }

  // ---- sequence operations -----------------------------------------------------------------------------------------
  //! A new sequence of `tokens` tokens (slots for positions 0..tokens-1). Throws when the pool cannot hold it.
  seq_id allocate(std::int64_t tokens = 0) {
    constexpr const char* op = "block_allocator::allocate";
    FRUGAL_CHECK(tokens >= 0, op, "tokens (=", tokens, ") must be >= 0");
    const std::int64_t nb = blocks_for(tokens);
    FRUGAL_CHECK(nb <= free_count_, op, "out of KV blocks: ", tokens, " tokens need ", nb, " blocks of ", page_size_,
                 " tokens, ", free_count_, " of ", num_blocks_, " are free");
    std::vector<std::int32_t> blocks;
    blocks.reserve(static_cast<std::size_t>(nb));  // may throw: nothing changed yet
    const seq_id s = new_slot();                    // may throw: nothing changed yet
    // ---- no throw below ----
    for (std::int64_t i = 0; i < nb; ++i) {
      const std::int32_t b = pop_block();
      fill_[idx(b)] = static_cast<std::int32_t>(std::min<std::int64_t>(page_size_, tokens - i * page_size_));
      blocks.push_back(b);
    }
    seq_state& q = seqs_[idx(s)];
    q.blocks = std::move(blocks);
    q.length = tokens;
    q.live = true;
    ++live_;
    tokens_stored_ += tokens;
    logical_tokens_ += tokens;
    return s;
  }

  //! Reserves `n` more positions for `s`. Returns the copy-on-write copy the caller must perform (see header).
  [[nodiscard]] std::optional<block_copy> append(seq_id s, std::int64_t n = 1) {
    constexpr const char* op = "block_allocator::append";
    seq_state& q = get(op, s);
    FRUGAL_CHECK(n >= 0, op, "n (=", n, ") must be >= 0");
    if (n == 0) return std::nullopt;
    const std::int64_t need = needed(q, n);
    FRUGAL_CHECK(need <= free_count_, op, "out of KV blocks: appending ", n, " tokens to sequence ", s, " (length ",
                 q.length, ") needs ", need, " new blocks of ", page_size_, " tokens, ", free_count_, " of ",
                 num_blocks_, " are free");
    const std::int64_t new_len = q.length + n;
    q.blocks.reserve(static_cast<std::size_t>(blocks_for(new_len)));  // may throw: nothing changed yet
    // ---- no throw below ----
    std::optional<block_copy> copy;
    std::int64_t pos = q.length;
    const std::int32_t in_last = static_cast<std::int32_t>(q.length % page_size_);
    if (in_last != 0) {  // the last block has room
      std::int32_t& last = q.blocks.back();
      if (ref_[idx(last)] > 1) {  // shared: copy on write
        const std::int32_t dst = pop_block();
        fill_[idx(dst)] = fill_[idx(last)];
        tokens_stored_ += fill_[idx(dst)];
        --ref_[idx(last)];
        copy = block_copy{last, dst};
        last = dst;
      }
      const std::int32_t add = static_cast<std::int32_t>(std::min<std::int64_t>(page_size_ - in_last, n));
      fill_[idx(last)] += add;
      tokens_stored_ += add;
      pos += add;
    }
    while (pos < new_len) {
      const std::int32_t b = pop_block();
      const std::int32_t add = static_cast<std::int32_t>(std::min<std::int64_t>(page_size_, new_len - pos));
      fill_[idx(b)] = add;
      tokens_stored_ += add;
      pos += add;
      q.blocks.push_back(b);
    }
    q.length = new_len;
    logical_tokens_ += n;
    return copy;
  }

  //! A new sequence that shares every block of `s` (same length, same tokens). Takes no block.
  seq_id fork(seq_id s) {
    constexpr const char* op = "block_allocator::fork";
    get(op, s);
    std::vector<std::int32_t> blocks = seqs_[idx(s)].blocks;  // may throw: nothing changed yet
    const seq_id f = new_slot();                              // may throw: nothing changed yet (may move seqs_)
    // ---- no throw below ----
    seq_state& src = seqs_[idx(s)];
    for (const std::int32_t b : blocks) ++ref_[idx(b)];
    seq_state& q = seqs_[idx(f)];
    q.blocks = std::move(blocks);
    q.length = src.length;
    q.live = true;
    ++live_;
    logical_tokens_ += q.length;
    return f;
  }

  //! Drops `s`. Returns the number of blocks that went back to the pool (those not shared with another sequence).
  std::int32_t free(seq_id s) {
    seq_state& q = get("block_allocator::free", s);
    std::int32_t returned = 0;
    for (const std::int32_t b : q.blocks) {
      if (--ref_[idx(b)] == 0) {
        tokens_stored_ -= fill_[idx(b)];
        fill_[idx(b)] = 0;
        push_block(b);
        ++returned;
      }
    }
    logical_tokens_ -= q.length;
    std::vector<std::int32_t>().swap(q.blocks);
    q.length = 0;
    q.live = false;
    --live_;
    free_ids_.push_back(s);  // capacity reserved in new_slot(): never throws
    return returned;
  }

  // ---- per-sequence state ------------------------------------------------------------------------------------------
  bool contains(seq_id s) const noexcept { return s >= 0 && s < static_cast<seq_id>(seqs_.size()) && seqs_[idx(s)].live; }
  std::int64_t length(seq_id s) const { return get("block_allocator::length", s).length; }
  //! The block ids of `s`, in position order (block i holds positions i*page_size .. i*page_size+page_size-1).
  std::span<const std::int32_t> blocks(seq_id s) const { return get("block_allocator::blocks", s).blocks; }
  //! Number of sequences holding block `b` (0: free).
  std::int32_t ref_count(std::int32_t b) const {
    FRUGAL_CHECK(b >= 0 && b < num_blocks_, "block_allocator::ref_count", "block (=", b, ") must be in [0, ",
                 num_blocks_, ")");
    return ref_[idx(b)];
  }
  //! The KV slot of position `pos` of `s`: block * page_size + pos % page_size.
  std::int32_t slot(seq_id s, std::int64_t pos) const {
    const seq_state& q = get("block_allocator::slot", s);
    FRUGAL_CHECK(pos >= 0 && pos < q.length, "block_allocator::slot", "position (=", pos, ") must be in [0, length=",
                 q.length, ")");
    return q.blocks[static_cast<std::size_t>(pos / page_size_)] * page_size_ + static_cast<std::int32_t>(pos % page_size_);
  }
  //! out[i] = slot(s, first + i) for i < n: the slot_mapping kv_append() takes for these tokens.
  void slots(seq_id s, std::int64_t first, std::int64_t n, std::int32_t* out /* [n] */) const {
    const seq_state& q = get("block_allocator::slots", s);
    FRUGAL_CHECK(first >= 0 && n >= 0 && first + n <= q.length, "block_allocator::slots", "positions [", first, ", ",
                 first + n, ") must lie in [0, length=", q.length, ")");
    FRUGAL_CHECK(out != nullptr || n == 0, "block_allocator::slots", "out is null");
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t p = first + i;
      out[i] = q.blocks[static_cast<std::size_t>(p / page_size_)] * page_size_ + static_cast<std::int32_t>(p % page_size_);
    }
  }

  // ---- block-table exports -----------------------------------------------------------------------------------------
  //! The longest block table among `seqs` (the smallest max_blocks export_dense accepts).
  std::int32_t max_blocks(std::span<const seq_id> seqs) const {
    std::size_t m = 0;
    for (const seq_id s : seqs) m = std::max(m, get("block_allocator::max_blocks", s).blocks.size());
    return static_cast<std::int32_t>(m);
  }
  //! vLLM layout: table[i, j] = j-th block of seqs[i] (rows padded with 0 up to max_blocks), seq_lens[i] = length.
  //! `seq_lens` may be null.
  void export_dense(std::span<const seq_id> seqs, std::int32_t* table /* [seqs, max_blocks] */, std::int32_t max_blocks,
                    std::int32_t* seq_lens /* [seqs] or null */) const {
    constexpr const char* op = "block_allocator::export_dense";
    FRUGAL_CHECK(table != nullptr || seqs.empty() || max_blocks == 0, op, "table is null");
    for (const seq_id s : seqs) {
      const seq_state& q = get(op, s);
      FRUGAL_CHECK(static_cast<std::int64_t>(q.blocks.size()) <= max_blocks, op, "sequence ", s, " has ",
                   q.blocks.size(), " blocks but max_blocks is ", max_blocks);
      FRUGAL_CHECK(q.length <= std::numeric_limits<std::int32_t>::max(), op, "sequence ", s, " is too long for int32");
    }
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      const seq_state& q = seqs_[idx(seqs[i])];
      std::int32_t* row = table + static_cast<std::int64_t>(i) * max_blocks;
      std::copy(q.blocks.begin(), q.blocks.end(), row);
      std::fill(row + q.blocks.size(), row + max_blocks, 0);
      if (seq_lens) seq_lens[i] = static_cast<std::int32_t>(q.length);
    }
  }
  //! Number of indices export_csr writes (sum of block-table sizes).
  std::int32_t csr_nnz(std::span<const seq_id> seqs) const {
    std::int64_t n = 0;
    for (const seq_id s : seqs) n += static_cast<std::int64_t>(get("block_allocator::csr_nnz", s).blocks.size());
    return static_cast<std::int32_t>(n);
  }
  //! FlashInfer layout: blocks of seqs[i] are indices[indptr[i] .. indptr[i+1]); last_page_len[i] in [1, page_size]
  //! is the fill of its last block (0 for an empty sequence). length = (pages - 1) * page_size + last_page_len.
  void export_csr(std::span<const seq_id> seqs, std::int32_t* indptr /* [seqs + 1] */,
                  std::int32_t* indices /* [csr_nnz(seqs)] */, std::int32_t* last_page_len /* [seqs] */) const {
    constexpr const char* op = "block_allocator::export_csr";
    FRUGAL_CHECK(indptr != nullptr, op, "indptr is null");
    const std::int32_t nnz = csr_nnz(seqs);  // validates every id
    FRUGAL_CHECK((indices != nullptr || nnz == 0) && (last_page_len != nullptr || seqs.empty()), op,
                 "indices or last_page_len is null");
    std::int32_t at = 0;
    indptr[0] = 0;
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      const seq_state& q = seqs_[idx(seqs[i])];
      std::copy(q.blocks.begin(), q.blocks.end(), indices + at);
      at += static_cast<std::int32_t>(q.blocks.size());
      indptr[i + 1] = at;
      last_page_len[i] =
          q.length == 0 ? 0 : static_cast<std::int32_t>(q.length - (q.length - 1) / page_size_ * page_size_);
    }
  }

  //! Walks every internal structure and throws frugal::error on any inconsistency (free list vs ref counts, fills,
  //! counters). O(num_blocks + tokens); for tests and debugging.
  void validate() const {
    constexpr const char* op = "block_allocator::validate";
    std::vector<std::int32_t> seen(static_cast<std::size_t>(num_blocks_), 0);
    std::int32_t nfree = 0;
    for (std::int32_t b = head_; b != -1; b = next_[idx(b)]) {
      FRUGAL_CHECK(b >= 0 && b < num_blocks_, op, "free list holds block ", b);
      FRUGAL_CHECK(seen[idx(b)] == 0, op, "block ", b, " is twice in the free list");
      FRUGAL_CHECK(ref_[idx(b)] == 0, op, "free block ", b, " has ref count ", ref_[idx(b)]);
      FRUGAL_CHECK(fill_[idx(b)] == 0, op, "free block ", b, " has fill ", fill_[idx(b)]);
      seen[idx(b)] = -1;
      ++nfree;
    }
    FRUGAL_CHECK(nfree == free_count_, op, "free list has ", nfree, " blocks, counter says ", free_count_);
    std::int64_t logical = 0;
    std::int32_t live = 0;
    for (const seq_state& q : seqs_) {
      if (!q.live) {
        FRUGAL_CHECK(q.blocks.empty() && q.length == 0, op, "a dead sequence holds blocks");
        continue;
      }
      ++live;
      logical += q.length;
      FRUGAL_CHECK(static_cast<std::int64_t>(q.blocks.size()) == blocks_for(q.length), op, "a sequence of length ",
                   q.length, " has ", q.blocks.size(), " blocks");
      for (std::size_t i = 0; i < q.blocks.size(); ++i) {
        const std::int32_t b = q.blocks[i];
        FRUGAL_CHECK(b >= 0 && b < num_blocks_ && seen[idx(b)] >= 0, op, "block ", b,
                     " is both free and in a sequence, or out of range");
        ++seen[idx(b)];
        const std::int64_t expect = std::min<std::int64_t>(page_size_, q.length - static_cast<std::int64_t>(i) * page_size_);
        FRUGAL_CHECK(fill_[idx(b)] == expect, op, "block ", b, " has fill ", fill_[idx(b)], ", its position implies ",
                     expect);
      }
    }
    std::int64_t stored = 0;
    for (std::int32_t b = 0; b < num_blocks_; ++b) {
      if (seen[idx(b)] < 0) continue;
      FRUGAL_CHECK(seen[idx(b)] == ref_[idx(b)], op, "block ", b, " is in ", seen[idx(b)], " sequences, ref count ",
                   ref_[idx(b)]);
      FRUGAL_CHECK(seen[idx(b)] > 0, op, "block ", b, " is neither free nor used (leaked)");
      stored += fill_[idx(b)];
    }
    FRUGAL_CHECK(stored == tokens_stored_ && logical == logical_tokens_ && live == live_, op, "counters disagree");
    FRUGAL_CHECK(free_ids_.size() + static_cast<std::size_t>(live_) == seqs_.size(), op, "sequence ids leaked");
  }

 private:
  struct seq_state {
    std::vector<std::int32_t> blocks;
    std::int64_t length = 0;
    bool live = false;
  };

  static std::size_t idx(std::int64_t i) { return static_cast<std::size_t>(i); }

  seq_state& get(const char* op, seq_id s) {
    FRUGAL_CHECK(contains(s), op, "sequence ", s, " does not exist");
    return seqs_[idx(s)];
  }
  const seq_state& get(const char* op, seq_id s) const {
    FRUGAL_CHECK(contains(s), op, "sequence ", s, " does not exist");
    return seqs_[idx(s)];
  }

  std::int64_t needed(const seq_state& q, std::int64_t n) const {
    if (n == 0) return 0;
    std::int64_t need = blocks_for(q.length + n) - static_cast<std::int64_t>(q.blocks.size());
    if (q.length % page_size_ != 0 && ref_[idx(q.blocks.back())] > 1) ++need;  // copy on write
    return need;
  }

  //! A dead slot for a new sequence (reused id or a new one). Strong guarantee: on throw nothing changed.
  seq_id new_slot() {
    if (!free_ids_.empty()) {
      const seq_id s = free_ids_.back();
      free_ids_.pop_back();
      return s;
    }
    FRUGAL_CHECK(seqs_.size() < static_cast<std::size_t>(std::numeric_limits<seq_id>::max()), "block_allocator",
                 "too many sequences");
    free_ids_.reserve(seqs_.size() + 1);  // so that free() never reallocates
    seqs_.emplace_back();
    return static_cast<seq_id>(seqs_.size() - 1);
  }

  std::int32_t pop_block() noexcept {
    const std::int32_t b = head_;
    head_ = next_[idx(b)];
    next_[idx(b)] = -1;
    ref_[idx(b)] = 1;
    --free_count_;
    return b;
  }
  void push_block(std::int32_t b) noexcept {
    next_[idx(b)] = head_;
    head_ = b;
    ++free_count_;
  }

  std::int32_t page_size_;
  std::int32_t num_blocks_;
  std::vector<std::int32_t> ref_;   // [num_blocks] sequences holding the block
  std::vector<std::int32_t> fill_;  // [num_blocks] token slots holding data
  std::vector<std::int32_t> next_;  // [num_blocks] intrusive free list (-1 terminates)
  std::int32_t head_ = -1;
  std::int32_t free_count_ = 0;
  std::vector<seq_state> seqs_;
  std::vector<seq_id> free_ids_;
  std::int32_t live_ = 0;
  std::int64_t tokens_stored_ = 0;
  std::int64_t logical_tokens_ = 0;
};

FRUGAL_NAMESPACE_END
