// examples/gpt2/kv.hpp — the GPT-2 engine's KV store over frugal::kv: contiguous per-sequence storage or a paged
// cache with frugal::block_allocator, and the attention calls of prefill and decode.
//
//   contiguous  k, v per layer [max_batch, reserve, C] (C = heads * 64): every sequence reserves `reserve` tokens
//               (the model's n_ctx by default: a server without paging does not know how long a sequence will get).
//   paged       one pool [layers, blocks, 2, page, heads, 64] shared by all sequences; a sequence takes a block only
//               when its last one is full (block_allocator); the dense block table lives in device memory and is
//               updated with one small asynchronous copy per new block (no synchronisation: the host knows every
//               length, one token per step, without reading the device).
//   nocache     the contiguous layout for one sequence, refilled from scratch by every forward pass.
// Decode: the fused append + attention of frugal::kv ((paged_)append_decode_attention: the new K/V go to position
// lens[r] - 1 and row r attends over lens[r] keys, one launch); or, unfused, kv_append at each row's slot (computed on
// the device from its position with the embedding: graph-safe), then decode_attention / paged_decode_attention.
// Prefill (one sequence, all its tokens): kv_append + (paged_)prefill_attention, causal.
#pragma once

#include <frugal/kv/block_allocator.hpp>
#include <frugal/kv/decode_attention.hpp>
#include <frugal/kv/paged_kv.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend.hpp"
#include "model.hpp"
#include "ops_cpu.hpp"

namespace gpt2 {

enum class attn_kind { nocache, contiguous, paged };

inline const char* attn_name(attn_kind a) {
  return a == attn_kind::nocache ? "nocache" : a == attn_kind::contiguous ? "kv" : "paged";
}

template <class Tag, class T>
class kv_store {
  using be = backend<Tag>;
  using ctx_t = typename be::context;

 public:
  //! max_seq: the longest sequence of the run (paged pool: max_batch * ceil(max_seq / page) blocks; the largest
  //! split-K plan); reserve: tokens each sequence's contiguous storage holds (>= max_seq; 0: max_seq); attn_splits:
  //! attention_params::num_splits of the decode attention (0: the library's plan); cluster_merge:
  //! attention_params::cluster_merge.
  kv_store(ctx_t& c, const config& cfg, attn_kind kind, int max_batch, int max_seq, int page_size, int reserve = 0,
           int attn_splits = 0, bool cluster_merge = true)
      : kind_(kind), L_(cfg.n_layer), H_(cfg.n_head), D_(cfg.head_dim()), C_(cfg.n_embd), B_(max_batch),
        S_(max_seq), R_(std::max(reserve, max_seq)), page_(page_size) {
    if (attn_splits < 0) fail("kv_store", "attn_splits (=", attn_splits, ") must be >= 0 (0: the library's plan)");
    params_.q_heads = H_;
    params_.num_splits = attn_splits;
    params_.cluster_merge = cluster_merge;
    if (kind == attn_kind::paged) {
      max_blocks_ = (S_ + page_ - 1) / page_;
      num_blocks_ = B_ * max_blocks_;
      alloc_ = std::make_unique<frugal::block_allocator>(num_blocks_, page_);
      mem_ = buffer<Tag, T>(c, static_cast<std::size_t>(
                                   frugal::paged_kv_view<T>::elements(num_blocks_, page_, H_, D_, L_)));
      table_ = buffer<Tag, std::int32_t>(c, static_cast<std::size_t>(B_) * max_blocks_);
      table_h_ = static_cast<std::int32_t*>(be::alloc_pinned(sizeof(std::int32_t) * B_ * max_blocks_));
      std::fill(table_h_, table_h_ + B_ * max_blocks_, 0);
      be::to_device(c, table_.data(), table_h_, sizeof(std::int32_t) * B_ * max_blocks_);
      seq_.assign(B_, -1);
    } else {
      mem_ = buffer<Tag, T>(c, static_cast<std::size_t>(L_) * 2 * B_ * R_ * C_);
    }
    ints_ = buffer<Tag, std::int32_t>(c, static_cast<std::size_t>(B_) + 3 + S_);
    slots_ = ints_.data(), pre_ = slots_ + B_, pslots_ = pre_ + 3;
    params_.max_seq_len = S_;
    // The split plan depends on the batch and the bound: take the largest need over 1..max_batch rows and every bound
    // plan_bound() can return.
    std::size_t ws = 0;
    for (int b = 1; b <= B_; ++b)
      for (int bound = plan_bound(1);; bound = plan_bound(bound + 1)) {
        ws = std::max(ws, frugal::decode_attention_workspace_bytes<T>(c.tag, b, H_, H_, D_, bound, attn_splits));
        if (bound == S_) break;
      }
    ws_ = buffer<Tag, std::byte>(c, ws);
    be::zero(c, ws_.data(), ws_.bytes());  // the attention workspace is zero-filled once (its split-K counters)
  }
  kv_store(const kv_store&) = delete;
  kv_store& operator=(const kv_store&) = delete;
  ~kv_store() {
    if (table_h_) be::release_pinned(table_h_);
  }

  attn_kind kind() const { return kind_; }

  //! The host-side bound the decode attention plans its split-K for when the longest sequence holds `longest`
  //! tokens: `longest` rounded up to a power of two >= 64, at most max_seq. A plan made for max_seq splits a
  //! 12-head batch-1 step into ceil(max_seq / 128) key ranges even while every sequence is short, and each split
  //! range costs a merge; a CUDA Graph captures the bound, so the session keeps one graph per bound (at most
  //! log2(max_seq / 64) + 1 of them).
  int plan_bound(int longest) const {
    int b = 64;
    while (b < longest && b < S_) b *= 2;
    return std::min(b, S_);
  }
  //! Sets the bound of the next decode steps (attention_params::max_seq_len, 1..max_seq).
  void set_plan_bound(int bound) {
    if (bound < 1 || bound > S_) fail("kv_store::set_plan_bound", "bound ", bound, " outside 1..", S_, " (max_seq)");
    params_.max_seq_len = bound;
  }
  int plan_bound_now() const { return params_.max_seq_len; }

  //! Drops every sequence (the session starts a new batch).
  void reset(ctx_t&) {
    if (alloc_)
      for (auto& s : seq_)
        if (s >= 0) alloc_->free(s), s = -1;
  }

  //! Makes room for sequence r to hold `len` tokens (paged: blocks from the pool, table rows updated on the device).
  void reserve(ctx_t& c, int r, int len) {
    if (len > S_) fail("kv_store", "sequence ", r, " needs ", len, " tokens; max_seq is ", S_);
    if (!alloc_) return;
    if (seq_[r] < 0) seq_[r] = alloc_->allocate(0);
    const auto s = seq_[r];
    const std::int64_t have = alloc_->length(s);
    if (len <= have) return;
    const std::size_t before = alloc_->blocks(s).size();
    if (auto copy = alloc_->append(s, len - have)) fail("kv_store", "unexpected copy-on-write (no forks here)");
    const auto blocks = alloc_->blocks(s);
    if (blocks.size() == before) return;
    std::int32_t* row = table_h_ + static_cast<std::int64_t>(r) * max_blocks_;
    for (std::size_t j = before; j < blocks.size(); ++j) row[j] = blocks[j];
    // Each pinned entry is written once before its copy is queued and not again while the sequence lives.
    be::to_device_async(c, table_.data() + static_cast<std::int64_t>(r) * max_blocks_ + before, row + before,
                        (blocks.size() - before) * sizeof(std::int32_t));
  }

  //! Prefill of sequence r: the K/V of its n tokens (positions 0..n-1) are appended, then causal attention.
  void prefill(ctx_t& c, int layer, int r, int n, frugal::matrix_view<const T> q, frugal::matrix_view<const T> k,
               frugal::matrix_view<const T> v, frugal::matrix_view<T> out) {
    auto tag = c.tag;
    if (layer == 0) {  // indptr {0, n}, seq_len n, and the slots of positions 0..n-1
      std::vector<std::int32_t> h(3 + static_cast<std::size_t>(n));
      h[0] = 0, h[1] = n, h[2] = n;
      if (alloc_) alloc_->slots(seq_[r], 0, n, h.data() + 3);
      else for (int i = 0; i < n; ++i) h[3 + i] = i;
      be::to_device(c, pre_, h.data(), h.size() * sizeof(std::int32_t));
    }
    if (kind_ == attn_kind::paged) {
      const auto cache = paged().layer(layer);
      frugal::kv_append(tag, cache, k, v, pslots_);
      frugal::paged_kv_table t{table_.data() + static_cast<std::int64_t>(r) * max_blocks_, pre_ + 2, 1, max_blocks_};
      frugal::paged_prefill_attention(tag, q, frugal::paged_kv_view<const T>(cache), t, pre_, out, params_);
    } else {
      const auto kv = contiguous(layer, r, 1);
      frugal::kv_append(tag, kv, k, v, pslots_);
      frugal::prefill_attention(tag, q, frugal::contiguous_kv_view<const T>(kv), pre_ + 2, pre_, out, params_);
    }
  }

  //! Where a decode step's K/V go: the embedding op computes each row's slot from its position (device-side,
  //! graph-safe) into slots_, which decode() reads.
  ops::slot_args slot_args() const {
    return ops::slot_args{kind_ == attn_kind::paged ? table_.data() : nullptr, max_blocks_, page_, R_, slots_};
  }

  //! Decode for rows 0..b-1: append each row's K/V at its position (lens[r] - 1), attend over lens[r] keys. fused:
  //! one launch ((paged_)append_decode_attention, no slots needed); else kv_append at slots_ (computed by the
  //! embedding op from slot_args()), then (paged_)decode_attention. ahead (fused only): attention_params::kv_ahead —
  //! lens, the table and the cache were written before the step began; only q/k/v come from the previous kernel.
  void decode(ctx_t& c, int layer, int b, const std::int32_t* lens, frugal::matrix_view<const T> q,
              frugal::matrix_view<const T> k, frugal::matrix_view<const T> v, frugal::matrix_view<T> out, bool fused,
              bool ahead = false) {
    auto tag = c.tag;
    const frugal::workspace ws{ws_.data(), ws_.bytes()};
    if (fused) {
      frugal::attention_params p = params_;
      p.kv_ahead = ahead;
      if (kind_ == attn_kind::paged)
        frugal::paged_append_decode_attention(tag, q, k, v, paged().layer(layer),
                                              frugal::paged_kv_table{table_.data(), lens, b, max_blocks_}, out, p, ws);
      else
        frugal::append_decode_attention(tag, q, k, v, contiguous(layer, 0, b), lens, out, p, ws);
      return;
    }
    if (kind_ == attn_kind::paged) {
      const auto cache = paged().layer(layer);
      frugal::kv_append(tag, cache, k, v, slots_);
      frugal::paged_kv_table t{table_.data(), lens, b, max_blocks_};
      frugal::paged_decode_attention(tag, q, frugal::paged_kv_view<const T>(cache), t, out, params_, ws);
    } else {
      const auto kv = contiguous(layer, 0, b);
      frugal::kv_append(tag, kv, k, v, slots_);
      frugal::decode_attention(tag, q, frugal::contiguous_kv_view<const T>(kv), lens, out, params_, ws);
    }
  }

  //! Bytes of KV memory allocated (the pool, or max_batch * reserve rows).
  std::size_t bytes_allocated() const { return mem_.bytes(); }
  //! Bytes that hold (or are reserved for) the current sequences: paged = used blocks; contiguous = b * reserve rows.
  std::size_t bytes_in_use(int b) const {
    const std::size_t row = static_cast<std::size_t>(2) * L_ * C_ * sizeof(T);
    if (alloc_) return static_cast<std::size_t>(alloc_->num_used_blocks()) * page_ * row;
    return static_cast<std::size_t>(b) * R_ * row;
  }
  //! Bytes of K/V the stored tokens need exactly (lengths * row bytes).
  std::size_t bytes_needed(const std::vector<int>& lens) const {
    std::size_t t = 0;
    for (int l : lens) t += static_cast<std::size_t>(l);
    return t * 2 * L_ * C_ * sizeof(T);
  }
  const frugal::block_allocator* allocator() const { return alloc_.get(); }
  //! Layer `layer` of the contiguous storage, every sequence (the one-kernel decode step addresses it directly).
  frugal::contiguous_kv_view<T> contiguous_layer(int layer) const {
    if (kind_ != attn_kind::contiguous) fail("kv_store", "contiguous_layer needs the contiguous KV cache");
    return contiguous(layer, 0, B_);
  }

 private:
  frugal::paged_kv_view<T> paged() const { return frugal::paged_kv_view<T>(mem_.data(), num_blocks_, page_, H_, D_, L_); }
  //! Layer `layer`, sequences r .. r + b - 1, of the contiguous storage ([layer][k|v][B][S][C]).
  frugal::contiguous_kv_view<T> contiguous(int layer, int r, int b) const {
    const std::int64_t per = static_cast<std::int64_t>(B_) * R_ * C_;
    T* k = mem_.data() + (static_cast<std::int64_t>(layer) * 2) * per + static_cast<std::int64_t>(r) * R_ * C_;
    return frugal::contiguous_kv_view<T>(k, k + per, b, R_, H_, D_);
  }

  attn_kind kind_;
  int L_, H_, D_, C_, B_, S_, R_, page_;
  int max_blocks_ = 0, num_blocks_ = 0;
  frugal::attention_params params_{};
  std::unique_ptr<frugal::block_allocator> alloc_;
  std::vector<frugal::block_allocator::seq_id> seq_;
  buffer<Tag, T> mem_;
  buffer<Tag, std::int32_t> table_, ints_;
  std::int32_t* table_h_ = nullptr;
  std::int32_t *slots_ = nullptr, *pre_ = nullptr, *pslots_ = nullptr;
  buffer<Tag, std::byte> ws_;
};

}  // namespace gpt2
