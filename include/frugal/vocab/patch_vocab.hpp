// frugal/vocab/patch_vocab.hpp — AdaptiVocab patch vocabulary: build from a domain corpus, save, load.
//
// What it is: m "patch tokens", each an n-gram (2..max_n) of base GPT-2 tokens that is frequent in a domain, given
// the ids of m base tokens that the domain (almost) never uses, so the vocabulary size — and the model's embedding
// and LM-head shapes — stay the same (Nakash, Calderon, Ben David, Hoffer, Reichart, "AdaptiVocab: Enhancing LLM
// Efficiency in Focused Domains through Lightweight Vocabulary Adaptation", COLM 2025, arXiv:2503.19693, Alg. 1).
//
// Build (patch_vocab::build), multi-threaded where it can be:
//  1. base-tokenise every document (special tokens such as <|endoftext|> also cut documents);
//  2. choose the m tokens to replace: first those the corpus never uses (highest id first: GPT-2's ids follow
//     merge order, so high ids are the rarest in its training data), then the rarest used ones (fewest uses,
//     ties to the higher id). Never single bytes, special tokens, or tokens no merge produces (they could not be
//     split). m larger than the number of such tokens is an error;
//  3. split the replaced tokens in the corpus through the base merges (recursively) so the n-grams are counted on
//     the text the patched tokenizer will really see;
//  4. count every n-gram of n = 2..max_n base tokens inside a document; drop those made only of digit pieces
//     (e.g. " 2023" "1"), those seen fewer than min_freq times, and keep the max_candidates most frequent;
//  5. greedy selection by score = freq × n with the paper's overlap-aware update: when an n-gram is chosen, each
//     of its (still counted) occurrences claims its span, and every other counted occurrence that overlaps it is
//     no longer counted, lowering that n-gram's frequency (so "special rel" and "the special" fall after "special
//     relativity"). Scores only decrease, so a lazy max-heap gives the exact greedy order. Option keep_containing:
//     occurrences of longer n-grams containing the claimed span keep counting (see the option). The i-th chosen
//     n-gram takes the id of the i-th replaced token. If fewer than m n-grams qualify, fewer tokens are replaced.
// Files: JSON {"format": "frugal.patch_vocab", "version": 1, "base": {vocab_size, fingerprint, source}, "max_n",
// "patches": [{"id", "pieces": [...], "freq", "text"}], "stats": {...}}. "text" is informative (GPT-2's printable
// byte alphabet); loading checks ids, pieces and the base fingerprint (patch_tokenizer refuses a different base).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <queue>
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
#include "detail/hash.hpp"
#include "detail/json.hpp"
#include "patch_merge.hpp"

FRUGAL_NAMESPACE_BEGIN

struct patch_vocab_options {
  std::int32_t num_patches = 10000;  //!< m: patch tokens to add (= base tokens replaced)
  int max_n = 4;                     //!< longest n-gram, in base tokens (2..4; the paper's default is 3)
  std::int64_t min_freq = 2;         //!< n-grams seen fewer times are never candidates
  std::int64_t max_candidates = 0;   //!< keep the most frequent ones; 0 = 5 × base vocabulary (as the paper's code)
  bool overlap_aware = true;         //!< false: plain top-m by freq × n (the paper's naive ablation)
  //! With overlap_aware: an occurrence of a longer n-gram that contains a chosen n-gram's occurrence keeps counting
  //! (frugal's refinement, not in the paper: the longest-match encoder still uses it). Measured better on the
  //! man-page corpus than both the paper's rule and naive top-m (docs/vocab.md).
  bool keep_containing = false;
  bool skip_digit_ngrams = true;     //!< drop n-grams made only of digit pieces
  //! Called from the building thread with a stage name ("tokenize", "count", "index", "select") and the fraction
  //! of that stage done; for progress bars. The library itself never prints.
  std::function<void(std::string_view stage, double fraction)> progress;
};

struct patch_entry {
  std::int32_t id = 0;                 //!< the (replaced) base id this patch token takes
  std::vector<std::int32_t> pieces;    //!< base token ids it stands for (2..max_n)
  std::int64_t freq = 0;               //!< non-overlapping uses in the build corpus when it was chosen
};

struct patch_build_stats {
  std::int64_t documents = 0, corpus_bytes = 0, base_tokens = 0;  //!< base tokens before splitting replaced ones
  std::int64_t split_tokens = 0;          //!< tokens after splitting the replaced ones (what n-grams are counted on)
  std::int64_t unused_base_tokens = 0;    //!< replaceable base tokens the corpus never uses
  std::int64_t replaceable_tokens = 0;    //!< base tokens that could be replaced at all
  std::int64_t distinct_ngrams = 0, candidates = 0;
  std::int64_t estimated_saving = 0;      //!< sum over patches of freq × (n − 1) at selection (greedy's estimate)
  double seconds_tokenize = 0, seconds_count = 0, seconds_select = 0, seconds_total = 0;
};

class patch_vocab {
 public:
  patch_vocab() = default;

  //! Builds from a domain corpus (one string per document) on tag.num_threads() threads.
  static patch_vocab build(cpu_t tag, const gpt2_tokenizer& base, std::span<const std::string_view> documents,
                           const patch_vocab_options& opt = {});

  //! Reads / writes the JSON file. Errors name the file and line:column.
  static patch_vocab load(const std::string& path) {
    const std::string text = detail::json::read_file("patch_vocab::load", path);
    return from_json(text, path);
  }
  static patch_vocab from_json(std::string_view text, std::string_view name = "<string>");
  void save(const std::string& path, const gpt2_tokenizer* base = nullptr) const;
  std::string to_json(const gpt2_tokenizer* base = nullptr) const;

  std::int32_t vocab_size() const { return vocab_size_; }
  int max_n() const { return max_n_; }
  std::int32_t size() const { return static_cast<std::int32_t>(patches_.size()); }
  const std::vector<patch_entry>& patches() const { return patches_; }
  const std::string& base_fingerprint() const { return fingerprint_; }
  const patch_build_stats& stats() const { return stats_; }

  //! Embedding-initialisation table: targets [size()] (the patch ids) and pieces [size(), max_n()] (-1 padded).
  std::vector<std::int32_t> init_targets() const {
    std::vector<std::int32_t> t;
    for (const auto& p : patches_) t.push_back(p.id);
    return t;
  }
  std::vector<std::int32_t> init_pieces() const {
    std::vector<std::int32_t> t(patches_.size() * static_cast<std::size_t>(max_n_), -1);
    for (std::size_t i = 0; i < patches_.size(); ++i)
      std::copy(patches_[i].pieces.begin(), patches_[i].pieces.end(), t.begin() + static_cast<std::ptrdiff_t>(i) * max_n_);
    return t;
  }

  //! A fingerprint of a base tokenizer (its token bytes and merges), to tie a patch vocabulary to its base.
  static std::string fingerprint(const gpt2_tokenizer& base) {
    const auto& m = base.model();
    std::uint64_t h = detail::hash_bytes(m.bytes.data(), m.bytes.size());
    h ^= detail::hash_bytes(reinterpret_cast<const char*>(m.offs.data()), m.offs.size() * sizeof(m.offs[0])) * 3;
    h ^= detail::hash_bytes(reinterpret_cast<const char*>(m.merges.data()), m.merges.size() * sizeof(m.merges[0])) * 7;
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }

  //! Whether a base token can be replaced: not a byte, not special, produced by some merge.
  static bool replaceable(const gpt2_tokenizer& base, std::int32_t id) {
    return !base.is_special(id) && base.producing_merge(id) >= 0 && base.token_bytes(id).size() >= 2;
  }

 private:
  std::int32_t vocab_size_ = 0;
  int max_n_ = 2;
  std::string fingerprint_;
  std::vector<patch_entry> patches_;
  patch_build_stats stats_;

  friend class patch_tokenizer;
  void validate(const char* op, std::string_view where) const;
};

// ------------------------------------------------------------------------------------------------------------------

namespace detail {

//! Base ids of token `id` split through the merges until no piece is in `removed` (a bitmap over ids).
inline void decompose_token(const gpt2_tokenizer& base, const std::vector<std::uint8_t>& removed, std::int32_t id,
                            std::vector<std::int32_t>& out) {
  if (!removed[static_cast<std::size_t>(id)]) {
    out.push_back(id);
    return;
  }
  const std::int32_t r = base.producing_merge(id);
  const bpe_merge mg = base.merge(r);
  decompose_token(base, removed, mg.a, out);
  decompose_token(base, removed, mg.b, out);
}

//! A token whose bytes (after one optional leading space) are 1+ ASCII digits.
inline bool digit_piece(std::string_view b) {
  if (!b.empty() && b[0] == ' ') b.remove_prefix(1);
  if (b.empty()) return false;
  for (const char c : b)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace detail

inline patch_vocab patch_vocab::build(cpu_t tag, const gpt2_tokenizer& base, std::span<const std::string_view> documents,
                                      const patch_vocab_options& opt) {
  const char* op = "patch_vocab::build";
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  FRUGAL_CHECK(base.vocab_size() > 0, op, "the base tokenizer is empty");
  const std::int32_t V = base.vocab_size();
  const int key_bits = detail::key_bits_for(V);
  FRUGAL_CHECK(opt.max_n >= 2 && opt.max_n <= 4 && opt.max_n * key_bits <= 64, op, "max_n (=", opt.max_n,
               ") must be in [2, ", 64 / key_bits > 4 ? 4 : 64 / key_bits, "] for a vocabulary of ", V, " ids");
  FRUGAL_CHECK(opt.num_patches >= 1, op, "num_patches (=", opt.num_patches, ") must be >= 1");
  FRUGAL_CHECK(opt.min_freq >= 1, op, "min_freq (=", opt.min_freq, ") must be >= 1");
  std::int64_t corpus_bytes = 0;
  for (const auto d : documents) corpus_bytes += static_cast<std::int64_t>(d.size());
  FRUGAL_CHECK(corpus_bytes > 0, op, "the corpus is empty (", documents.size(), " documents, 0 bytes)");
  auto progress = [&](std::string_view stage, double f) {
    if (opt.progress) opt.progress(stage, f);
  };

  patch_vocab pv;
  pv.vocab_size_ = V;
  pv.max_n_ = opt.max_n;
  pv.fingerprint_ = fingerprint(base);
  patch_build_stats& st = pv.stats_;
  st.documents = static_cast<std::int64_t>(documents.size());
  st.corpus_bytes = corpus_bytes;

  // 1. Tokenise, in blocks so that progress can be reported.
  progress("tokenize", 0);
  std::vector<std::vector<std::int32_t>> toks(documents.size());
  {
    const std::size_t block = 256;
    for (std::size_t b = 0; b < documents.size(); b += block) {
      const std::size_t e = std::min(documents.size(), b + block);
      auto part = base.encode_batch(tag, documents.subspan(b, e - b));
      for (std::size_t i = b; i < e; ++i) toks[i] = std::move(part[i - b]);
      progress("tokenize", static_cast<double>(e) / static_cast<double>(documents.size()));
    }
  }
  const auto t_tok = clock::now();

  // 2. Tokens to replace.
  std::vector<std::int64_t> uses(static_cast<std::size_t>(V), 0);
  for (const auto& t : toks)
    for (const std::int32_t id : t) ++uses[static_cast<std::size_t>(id)];
  for (const std::int64_t u : uses) st.base_tokens += u;
  std::vector<std::int32_t> candidates_to_remove;
  for (std::int32_t id = 0; id < V; ++id)
    if (replaceable(base, id)) candidates_to_remove.push_back(id);
  st.replaceable_tokens = static_cast<std::int64_t>(candidates_to_remove.size());
  for (const std::int32_t id : candidates_to_remove) st.unused_base_tokens += uses[static_cast<std::size_t>(id)] == 0;
  FRUGAL_CHECK(opt.num_patches <= st.replaceable_tokens, op, "num_patches (=", opt.num_patches,
               ") is larger than the number of replaceable base tokens (", st.replaceable_tokens,
               ": not single bytes, not special, produced by a merge)");
  std::sort(candidates_to_remove.begin(), candidates_to_remove.end(), [&](std::int32_t a, std::int32_t b) {
    const std::int64_t ua = uses[static_cast<std::size_t>(a)], ub = uses[static_cast<std::size_t>(b)];
    return ua != ub ? ua < ub : a > b;
  });
  candidates_to_remove.resize(static_cast<std::size_t>(opt.num_patches));
  std::vector<std::uint8_t> removed(static_cast<std::size_t>(V), 0);
  for (const std::int32_t id : candidates_to_remove) removed[static_cast<std::size_t>(id)] = 1;

  // 3. Split replaced tokens; cut documents at special tokens: the stream below holds -1 at every boundary.
  std::vector<std::int32_t> stream;
  {
    std::int64_t total = 0;
    for (const auto& t : toks) total += static_cast<std::int64_t>(t.size()) + 1;
    stream.reserve(static_cast<std::size_t>(total));
    stream.push_back(-1);
    for (auto& t : toks) {
      for (const std::int32_t id : t) {
        if (base.is_special(id)) {
          if (stream.back() != -1) stream.push_back(-1);
        } else {
          detail::decompose_token(base, removed, id, stream);
        }
      }
      if (stream.back() != -1) stream.push_back(-1);
      std::vector<std::int32_t>().swap(t);
    }
  }
  const std::int64_t S = static_cast<std::int64_t>(stream.size());
  for (const std::int32_t id : stream) st.split_tokens += id >= 0;

  // 4. Count n-grams (per-thread tables over slices of the stream, cut at boundaries), then merge.
  progress("count", 0);
  const int N = opt.max_n;
  std::vector<std::uint8_t> digit(static_cast<std::size_t>(V), 0);
  for (std::int32_t id = 0; id < V; ++id) digit[static_cast<std::size_t>(id)] = detail::digit_piece(base.token_bytes(id));
  const bool skip_digits = opt.skip_digit_ngrams;
  // Calls f(i, k) for every counted n-gram stream[i, i+k) starting in [b, e): inside one document, not digits only.
  auto for_each_ngram = [&](std::int64_t b, std::int64_t e, auto&& f) {
    for (std::int64_t i = b; i < e; ++i) {
      const std::int32_t first = stream[static_cast<std::size_t>(i)];
      if (first < 0) continue;
      bool all_digits = digit[static_cast<std::size_t>(first)];
      for (int k = 2; k <= N && i + k <= S; ++k) {
        const std::int32_t id = stream[static_cast<std::size_t>(i + k - 1)];
        if (id < 0) break;
        all_digits = all_digits && digit[static_cast<std::size_t>(id)];
        if (skip_digits && all_digits) continue;
        f(i, k);
      }
    }
  };
  const int threads = std::max(1, tag.num_threads());
  std::vector<detail::flat_map64> partial(static_cast<std::size_t>(threads));
  detail::parallel_for(tag, threads, 1, [&](std::int64_t tb, std::int64_t te) {
    for (std::int64_t t = tb; t < te; ++t) {
      auto& map = partial[static_cast<std::size_t>(t)];
      for_each_ngram(S * t / threads, S * (t + 1) / threads, [&](std::int64_t i, int k) {
        ++map.get_or_insert(detail::pack_ngram(&stream[static_cast<std::size_t>(i)], k, key_bits), 0);
      });
    }
  });
  detail::flat_map64 counts = std::move(partial[0]);
  for (std::size_t t = 1; t < partial.size(); ++t) {
    partial[t].for_each([&](std::uint64_t k, std::uint64_t v) { counts.get_or_insert(k, 0) += v; });
    partial[t] = detail::flat_map64();
  }
  st.distinct_ngrams = static_cast<std::int64_t>(counts.size());
  progress("count", 1);

  struct cand {
    std::uint64_t key;
    std::int64_t freq;
    int len;
  };
  std::vector<cand> cands;
  counts.for_each([&](std::uint64_t k, std::uint64_t v) {
    if (static_cast<std::int64_t>(v) >= opt.min_freq) {
      int len = 0;
      while (len < 4 && ((k >> (len * key_bits)) & ((std::uint64_t{1} << key_bits) - 1)) != 0) ++len;
      cands.push_back({k, static_cast<std::int64_t>(v), len});
    }
  });
  counts = detail::flat_map64();
  const std::int64_t max_c = opt.max_candidates > 0 ? opt.max_candidates : std::int64_t{5} * V;
  auto by_freq = [](const cand& a, const cand& b) { return a.freq != b.freq ? a.freq > b.freq : a.key < b.key; };
  if (static_cast<std::int64_t>(cands.size()) > max_c) {
    std::nth_element(cands.begin(), cands.begin() + max_c, cands.end(), by_freq);
    cands.resize(static_cast<std::size_t>(max_c));
  }
  std::sort(cands.begin(), cands.end(), by_freq);
  st.candidates = static_cast<std::int64_t>(cands.size());
  const auto t_count = clock::now();

  // 5. Occurrence index: occ[i * (N-1) + (k-2)] = candidate of stream[i, i+k), or -1.
  progress("index", 0);
  detail::flat_map64 cand_of(cands.size());
  for (std::size_t c = 0; c < cands.size(); ++c) cand_of.set(cands[c].key, c);
  const std::int64_t W = N - 1;
  std::vector<std::int32_t> occ(static_cast<std::size_t>(S * W), -1);
  detail::parallel_for(tag, S, 1 << 16, [&](std::int64_t b, std::int64_t e) {
    for_each_ngram(b, e, [&](std::int64_t i, int k) {
      if (const std::uint64_t* c = cand_of.find(detail::pack_ngram(&stream[static_cast<std::size_t>(i)], k, key_bits)))
        occ[static_cast<std::size_t>(i * W + k - 2)] = static_cast<std::int32_t>(*c);
    });
  });
  progress("index", 1);

  // 6. Greedy selection.
  progress("select", 0);
  const bool keep_containing = opt.keep_containing;
  std::vector<std::int64_t> freq(cands.size());
  for (std::size_t c = 0; c < cands.size(); ++c) freq[c] = cands[c].freq;
  std::vector<std::int32_t> chosen;
  std::vector<std::int64_t> chosen_freq;
  const std::size_t m = static_cast<std::size_t>(opt.num_patches);
  if (!opt.overlap_aware) {
    std::vector<std::size_t> order(cands.size());
    for (std::size_t c = 0; c < order.size(); ++c) order[c] = c;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return cands[a].freq * cands[a].len > cands[b].freq * cands[b].len;
    });
    for (std::size_t k = 0; k < order.size() && chosen.size() < m; ++k) {
      chosen.push_back(static_cast<std::int32_t>(order[k]));
      chosen_freq.push_back(cands[order[k]].freq);
    }
  } else {
    // Per-candidate occurrence lists (CSR over start positions).
    std::vector<std::int64_t> start(cands.size() + 1, 0);
    for (const std::int32_t c : occ)
      if (c >= 0) ++start[static_cast<std::size_t>(c) + 1];
    for (std::size_t c = 0; c < cands.size(); ++c) start[c + 1] += start[c];
    std::vector<std::uint32_t> pos(static_cast<std::size_t>(start.back()));
    {
      std::vector<std::int64_t> fill(start.begin(), start.end() - 1);
      for (std::int64_t i = 0; i < S; ++i)
        for (std::int64_t k = 0; k < W; ++k)
          if (const std::int32_t c = occ[static_cast<std::size_t>(i * W + k)]; c >= 0)
            pos[static_cast<std::size_t>(fill[static_cast<std::size_t>(c)]++)] = static_cast<std::uint32_t>(i);
    }
    FRUGAL_CHECK(S < (std::int64_t{1} << 32), op, "the corpus is too large (", S, " tokens; at most 2^32)");
    // occ doubles as the "still counted" flag: a dead occurrence is set to -1 - candidate.
    using item = std::pair<std::int64_t, std::int32_t>;  // (score, -candidate) so that ties go to the lower index
    std::priority_queue<item> heap;
    for (std::size_t c = 0; c < cands.size(); ++c)
      heap.push({cands[c].freq * cands[c].len, -static_cast<std::int32_t>(c)});
    while (!heap.empty() && chosen.size() < m) {
      const auto [score, negc] = heap.top();
      heap.pop();
      const std::size_t c = static_cast<std::size_t>(-negc);
      const std::int64_t cur = freq[c] * cands[c].len;
      if (cur != score) {
        if (freq[c] >= opt.min_freq) heap.push({cur, negc});
        continue;
      }
      if (freq[c] < opt.min_freq) continue;
      chosen.push_back(static_cast<std::int32_t>(c));
      chosen_freq.push_back(freq[c]);
      const int L = cands[c].len;
      for (std::int64_t p = start[c]; p < start[c + 1]; ++p) {
        const std::int64_t i = pos[static_cast<std::size_t>(p)];
        if (occ[static_cast<std::size_t>(i * W + L - 2)] != static_cast<std::int32_t>(c)) continue;  // no longer counted
        // Claim [i, i+L): every counted occurrence overlapping it (this one included) stops being counted.
        for (std::int64_t j = std::max<std::int64_t>(0, i - (N - 1)); j < i + L && j < S; ++j)
          for (int k = 2; k <= N; ++k) {
            if (j + k <= i) continue;
            if (keep_containing && j <= i && j + k >= i + L && !(j == i && k == L)) continue;
            std::int32_t& o = occ[static_cast<std::size_t>(j * W + k - 2)];
            if (o < 0) continue;
            --freq[static_cast<std::size_t>(o)];
            o = -1 - o;
          }
      }
      if ((chosen.size() & 255) == 0) progress("select", static_cast<double>(chosen.size()) / static_cast<double>(m));
    }
  }
  progress("select", 1);

  // 7. Assign ids: the i-th chosen n-gram takes the i-th replaced token.
  pv.patches_.reserve(chosen.size());
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    const cand& cd = cands[static_cast<std::size_t>(chosen[i])];
    patch_entry e;
    e.id = candidates_to_remove[i];
    for (int j = 0; j < cd.len; ++j)
      e.pieces.push_back(static_cast<std::int32_t>(((cd.key >> (j * key_bits)) & ((std::uint64_t{1} << key_bits) - 1)) - 1));
    e.freq = chosen_freq[i];
    pv.patches_.push_back(std::move(e));
  }
  for (const auto& p : pv.patches_) st.estimated_saving += p.freq * static_cast<std::int64_t>(p.pieces.size() - 1);
  const auto t_end = clock::now();
  st.seconds_tokenize = std::chrono::duration<double>(t_tok - t_start).count();
  st.seconds_count = std::chrono::duration<double>(t_count - t_tok).count();
  st.seconds_select = std::chrono::duration<double>(t_end - t_count).count();
  st.seconds_total = std::chrono::duration<double>(t_end - t_start).count();
  pv.validate(op, "the built vocabulary");
  return pv;
}

inline void patch_vocab::validate(const char* op, std::string_view where) const {
  FRUGAL_CHECK(vocab_size_ > 0, op, where, ": vocab_size must be > 0");
  FRUGAL_CHECK(max_n_ >= 2 && max_n_ <= 4, op, where, ": max_n (=", max_n_, ") must be in [2, 4]");
  std::vector<std::uint8_t> is_target(static_cast<std::size_t>(vocab_size_), 0);
  for (const auto& p : patches_) {
    FRUGAL_CHECK(p.id >= 0 && p.id < vocab_size_, op, where, ": patch id ", p.id, " is outside [0, ", vocab_size_, ")");
    FRUGAL_CHECK(!is_target[static_cast<std::size_t>(p.id)], op, where, ": patch id ", p.id, " is used twice");
    is_target[static_cast<std::size_t>(p.id)] = 1;
  }
  for (const auto& p : patches_) {
    FRUGAL_CHECK(p.pieces.size() >= 2 && static_cast<int>(p.pieces.size()) <= max_n_, op, where, ": patch ", p.id,
                 " has ", p.pieces.size(), " pieces; must be 2..max_n=", max_n_);
    for (const std::int32_t x : p.pieces) {
      FRUGAL_CHECK(x >= 0 && x < vocab_size_, op, where, ": patch ", p.id, " has piece ", x, " outside [0, ",
                   vocab_size_, ")");
      FRUGAL_CHECK(!is_target[static_cast<std::size_t>(x)], op, where, ": patch ", p.id, " has piece ", x,
                   ", which is itself replaced by a patch");
    }
  }
}

inline std::string patch_vocab::to_json(const gpt2_tokenizer* base) const {
  std::string o;
  o += "{\n  \"format\": \"frugal.patch_vocab\",\n  \"version\": 1,\n";
  o += detail::concat("  \"base\": {\"vocab_size\": ", vocab_size_, ", \"fingerprint\": \"", fingerprint_, "\"");
  if (base) {
    o += ", \"source\": ";
    detail::json::write_string(o, base->source());
  }
  o += "},\n";
  o += detail::concat("  \"max_n\": ", max_n_, ",\n");
  const auto& s = stats_;
  o += detail::concat("  \"stats\": {\"documents\": ", s.documents, ", \"corpus_bytes\": ", s.corpus_bytes,
                      ", \"base_tokens\": ", s.base_tokens, ", \"split_tokens\": ", s.split_tokens,
                      ", \"unused_base_tokens\": ", s.unused_base_tokens, ", \"replaceable_tokens\": ",
                      s.replaceable_tokens, ", \"distinct_ngrams\": ", s.distinct_ngrams, ", \"candidates\": ",
                      s.candidates, ", \"estimated_saving\": ", s.estimated_saving, ", \"seconds_total\": ",
                      s.seconds_total, "},\n");
  o += "  \"patches\": [";
  for (std::size_t i = 0; i < patches_.size(); ++i) {
    const auto& p = patches_[i];
    o += i ? ",\n    " : "\n    ";
    o += detail::concat("{\"id\": ", p.id, ", \"pieces\": [");
    for (std::size_t j = 0; j < p.pieces.size(); ++j) o += detail::concat(j ? ", " : "", p.pieces[j]);
    o += detail::concat("], \"freq\": ", p.freq);
    if (base) {
      std::string bytes;
      for (const std::int32_t x : p.pieces) bytes += base->token_bytes(x);
      o += ", \"text\": ";
      detail::json::write_string(o, detail::bytes_to_unicode_token(bytes));
    }
    o += "}";
  }
  o += patches_.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return o;
}

inline void patch_vocab::save(const std::string& path, const gpt2_tokenizer* base) const {
  const std::string text = to_json(base);
  std::ofstream out(path, std::ios::binary);
  FRUGAL_CHECK(out.good(), "patch_vocab::save", "cannot open '", path, "' for writing");
  out << text;
  out.close();
  FRUGAL_CHECK(out.good(), "patch_vocab::save", "error while writing '", path, "'");
}

inline patch_vocab patch_vocab::from_json(std::string_view text, std::string_view name) {
  const char* op = "patch_vocab::load";
  const detail::json::value root = detail::json::parse(op, name, text);
  const detail::json::reader rd{op, name, text};
  rd.expect(root, detail::json::kind::object, "the top-level value");
  const auto& fmt = rd.member(root, "format", detail::json::kind::string);
  if (fmt.str != "frugal.patch_vocab") rd.fail_value(fmt, "format must be \"frugal.patch_vocab\", found \"", fmt.str, "\"");
  const auto& ver = rd.member(root, "version", detail::json::kind::number);
  if (rd.integer(ver, "version", 0, 1000) != 1) rd.fail_value(ver, "unsupported version ", ver.integer, " (this reader knows 1)");
  patch_vocab pv;
  const auto& basev = rd.member(root, "base", detail::json::kind::object);
  pv.vocab_size_ = static_cast<std::int32_t>(
      rd.integer(rd.member(basev, "vocab_size", detail::json::kind::number), "base.vocab_size", 1, (1 << 30) - 1));
  pv.fingerprint_ = rd.member(basev, "fingerprint", detail::json::kind::string).str;
  pv.max_n_ = static_cast<int>(rd.integer(rd.member(root, "max_n", detail::json::kind::number), "max_n", 2, 4));
  if (const auto* s = root.find("stats"); s && s->type == detail::json::kind::object) {
    // informative counts, but still checked: a double outside int64's range would make the conversion undefined
    // (found by fuzz_vocab_loaders)
    auto get = [&](const char* k, std::int64_t& dst) {
      if (const auto* v = s->find(k); v && v->type == detail::json::kind::number)
        dst = rd.integer(*v, std::string("stats.") + k, -(std::int64_t{1} << 53), std::int64_t{1} << 53);
    };
    auto& st = pv.stats_;
    get("documents", st.documents);
    get("corpus_bytes", st.corpus_bytes);
    get("base_tokens", st.base_tokens);
    get("split_tokens", st.split_tokens);
    get("unused_base_tokens", st.unused_base_tokens);
    get("replaceable_tokens", st.replaceable_tokens);
    get("distinct_ngrams", st.distinct_ngrams);
    get("candidates", st.candidates);
    get("estimated_saving", st.estimated_saving);
    if (const auto* v = s->find("seconds_total"); v && v->type == detail::json::kind::number) st.seconds_total = v->num;
  }
  const auto& arr = rd.member(root, "patches", detail::json::kind::array);
  for (const auto& item : arr.items) {
    patch_entry e;
    e.id = static_cast<std::int32_t>(rd.integer(rd.member(item, "id", detail::json::kind::number), "patch id", 0,
                                                pv.vocab_size_ - 1));
    const auto& pieces = rd.member(item, "pieces", detail::json::kind::array);
    if (pieces.items.size() < 2 || static_cast<int>(pieces.items.size()) > pv.max_n_)
      rd.fail_value(pieces, "a patch must have 2..max_n=", pv.max_n_, " pieces, found ", pieces.items.size());
    for (const auto& x : pieces.items)
      e.pieces.push_back(static_cast<std::int32_t>(rd.integer(x, "a piece id", 0, pv.vocab_size_ - 1)));
    if (const auto* f = item.find("freq"); f) e.freq = rd.integer(*f, "freq", 0, std::int64_t{1} << 62);
    pv.patches_.push_back(std::move(e));
  }
  pv.validate(op, name);
  return pv;
}

FRUGAL_NAMESPACE_END
