// frugal/vocab/patch_tokenizer.hpp — AdaptiVocab's patched tokenizer on top of GPT-2 BPE (encode / decode).
//
// Encode (Nakash et al., COLM 2025, Algorithm 2): (1) base GPT-2 encode; (2) every replaced base token is split
// through the base merges, recursively, until no piece is replaced (tokenization -> tokeniza + tion -> token + iza +
// tion); (3) greedy left-to-right longest-match merge of patch n-grams (patch_merge.hpp). Special tokens are never
// part of a patch, so they pass through and cut n-grams.
// Decode: every patch id expands to its pieces, then base decode. Patching only regroups base tokens, so
// decode(encode(s)) == s for every byte string s, as for the base tokenizer.
// Same vocabulary size as the base: a patch id is the id of the base token it replaced (patch_vocab.hpp).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "bpe.hpp"
#include "patch_merge.hpp"
#include "patch_vocab.hpp"

FRUGAL_NAMESPACE_BEGIN

class patch_tokenizer {
 public:
  patch_tokenizer() = default;
  //! Binds a patch vocabulary to its base tokenizer; throws if the vocabulary was built on another base.
  patch_tokenizer(gpt2_tokenizer base, patch_vocab vocab) : base_(std::move(base)), vocab_(std::move(vocab)) {
    const char* op = "patch_tokenizer";
    FRUGAL_CHECK(base_.vocab_size() > 0, op, "the base tokenizer is empty");
    FRUGAL_CHECK(vocab_.vocab_size() == base_.vocab_size(), op, "the patch vocabulary is for ", vocab_.vocab_size(),
                 " ids but the base tokenizer has ", base_.vocab_size());
    const std::string fp = patch_vocab::fingerprint(base_);
    FRUGAL_CHECK(vocab_.base_fingerprint() == fp, op, "the patch vocabulary was built on another base tokenizer (",
                 "fingerprint ", vocab_.base_fingerprint(), ", this base has ", fp, ")");
    const auto V = static_cast<std::size_t>(base_.vocab_size());
    removed_.assign(V, 0);
    expand_off_.assign(V + 1, 0);
    std::vector<std::pair<std::int32_t, std::vector<std::int32_t>>> table;
    for (const auto& p : vocab_.patches()) {
      FRUGAL_CHECK(patch_vocab::replaceable(base_, p.id), op, "patch id ", p.id,
                   " replaces a base token that cannot be replaced (a byte, special, or not made by a merge)");
      removed_[static_cast<std::size_t>(p.id)] = 1;
      table.emplace_back(p.id, p.pieces);
    }
    for (const auto& p : vocab_.patches())
      for (const std::int32_t x : p.pieces)
        FRUGAL_CHECK(!base_.is_special(x), op, "patch ", p.id, " contains the special token ", x);
    // Split table of replaced base tokens, and expansion table (id -> base ids) for decode.
    split_off_.assign(V + 1, 0);
    std::vector<std::vector<std::int32_t>> split(V);
    for (std::size_t id = 0; id < V; ++id)
      if (removed_[id]) detail::decompose_token(base_, removed_, static_cast<std::int32_t>(id), split[id]);
    for (std::size_t id = 0; id < V; ++id) {
      split_off_[id + 1] = split_off_[id] + static_cast<std::int64_t>(split[id].size());
      split_ids_.insert(split_ids_.end(), split[id].begin(), split[id].end());
    }
    std::vector<std::vector<std::int32_t>> exp(V);
    for (const auto& p : vocab_.patches()) exp[static_cast<std::size_t>(p.id)] = p.pieces;
    for (std::size_t id = 0; id < V; ++id) {
      if (!removed_[id]) exp[id] = {static_cast<std::int32_t>(id)};
      expand_off_[id + 1] = expand_off_[id] + static_cast<std::int64_t>(exp[id].size());
      expand_ids_.insert(expand_ids_.end(), exp[id].begin(), exp[id].end());
    }
    table_ = make_patch_merge_table(table, base_.vocab_size());
    table_.max_n = std::max(table_.max_n, vocab_.max_n());
  }

  //! Patched token ids of `text`.
  std::vector<std::int32_t> encode(std::string_view text) const {
    check("encode");
    return patch(base_.encode(text));
  }
  //! Many texts on tag.num_threads() threads.
  std::vector<std::vector<std::int32_t>> encode_batch(cpu_t tag, std::span<const std::string_view> texts) const {
    check("encode_batch");
    auto out = base_.encode_batch(tag, texts);
    detail::parallel_for(tag, static_cast<std::int64_t>(out.size()), 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) out[static_cast<std::size_t>(i)] = patch(out[static_cast<std::size_t>(i)]);
    });
    return out;
  }
  //! Base ids -> patched ids (split replaced tokens, then merge). One document.
  std::vector<std::int32_t> patch(std::span<const std::int32_t> base_ids) const {
    check("patch");
    std::vector<std::int32_t> s = split(base_ids);
    const std::int64_t offsets[2] = {0, static_cast<std::int64_t>(s.size())};
    std::int64_t count = 0;
    detail::patch_merge_cpu(cpu_t{1}, table_.view(), s.data(), offsets, 1, s.data(), &count);
    s.resize(static_cast<std::size_t>(count));
    return s;
  }
  //! Base ids with every replaced token split through the merges (the input of patch_merge).
  std::vector<std::int32_t> split(std::span<const std::int32_t> base_ids) const {
    check("split");
    std::vector<std::int32_t> s;
    s.reserve(base_ids.size() + 8);
    for (const std::int32_t id : base_ids) {
      FRUGAL_CHECK(id >= 0 && id < base_.vocab_size(), "patch_tokenizer::split", "token id ", id, " is outside [0, ",
                   base_.vocab_size(), ")");
      if (!removed_[static_cast<std::size_t>(id)]) {
        s.push_back(id);
      } else {
        s.insert(s.end(), split_ids_.begin() + split_off_[static_cast<std::size_t>(id)],
                 split_ids_.begin() + split_off_[static_cast<std::size_t>(id) + 1]);
      }
    }
    return s;
  }
  //! Patched ids -> base ids (each patch replaced by its pieces).
  std::vector<std::int32_t> expand(std::span<const std::int32_t> ids) const {
    check("expand");
    std::vector<std::int32_t> out;
    out.reserve(ids.size() * 2);
    for (const std::int32_t id : ids) {
      FRUGAL_CHECK(id >= 0 && id < base_.vocab_size(), "patch_tokenizer::decode", "token id ", id, " is outside [0, ",
                   base_.vocab_size(), ")");
      out.insert(out.end(), expand_ids_.begin() + expand_off_[static_cast<std::size_t>(id)],
                 expand_ids_.begin() + expand_off_[static_cast<std::size_t>(id) + 1]);
    }
    return out;
  }
  //! Bytes of patched ids.
  std::string decode(std::span<const std::int32_t> ids) const { return base_.decode(expand(ids)); }
  //! Bytes of one patched id.
  std::string token_bytes(std::int32_t id) const {
    const std::int32_t one[1] = {id};
    return decode(one);
  }
  std::int32_t vocab_size() const { return base_.vocab_size(); }
  //! Whether `id` is a patch token (its base token was replaced).
  bool is_patch(std::int32_t id) const {
    return id >= 0 && static_cast<std::size_t>(id) < removed_.size() && removed_[static_cast<std::size_t>(id)];
  }
  const gpt2_tokenizer& base() const { return base_; }
  const patch_vocab& vocab() const { return vocab_; }
  //! The merge table (host); upload keys/values and use table().view_at(...) for patch_merge(frugal::cuda, ...).
  const patch_merge_table& table() const { return table_; }

  //! Base-encodes and splits many documents into one CSR stream for patch_merge (offsets [docs + 1]).
  void flatten(cpu_t tag, std::span<const std::string_view> texts, std::vector<std::int32_t>& ids,
               std::vector<std::int64_t>& offsets) const {
    check("flatten");
    auto parts = base_.encode_batch(tag, texts);
    ids.clear();
    offsets.assign(1, 0);
    for (const auto& p : parts) {
      const auto s = split(p);
      ids.insert(ids.end(), s.begin(), s.end());
      offsets.push_back(static_cast<std::int64_t>(ids.size()));
    }
  }

 private:
  gpt2_tokenizer base_;
  patch_vocab vocab_;
  std::vector<std::uint8_t> removed_;
  std::vector<std::int64_t> split_off_, expand_off_;
  std::vector<std::int32_t> split_ids_, expand_ids_;
  patch_merge_table table_;

  void check(const char* what) const {
    FRUGAL_CHECK(base_.vocab_size() > 0, "patch_tokenizer", what, "() called on an empty patch_tokenizer");
  }
};

FRUGAL_NAMESPACE_END
