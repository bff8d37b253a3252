// frugal/vocab/detail/bpe_cpu.hpp — byte-level BPE model, loaders, GPT-2 pre-tokeniser (PCRE2) and merge loop.
//
// Model: every token is a byte string; the 256 single bytes are tokens (GPT-2's bytes_to_unicode alphabet maps
// each byte to one printable code point in the files). Merges are ranked by their line in vocab.bpe (or position
// in tokenizer.json "merges"); pair (a, b) -> (rank, merged id) lives in an open-addressing table.
//
// Merge loop = the reference GPT-2 encoder (openai/gpt-2 src/encoder.py `bpe`): repeatedly take the adjacent pair
// of minimum rank and merge all its occurrences in one left-to-right pass, until no adjacent pair has a rank.
//  - pieces up to 256 bytes: that loop literally, with the pair ranks kept in an array and only the pairs next to
//    a merge looked up again (O(n^2) worst case on tiny n);
//  - longer pieces: a min-heap of (rank, position) over a linked list, O(n log n). It is equal to the reference
//    whenever the merge list is "well ordered" (each merge's parts exist before it, and every merge that uses a
//    token comes after all merges producing it), which the loader checks; GPT-2's list is. Otherwise the literal
//    loop runs on every piece.
// Pre-tokenisation: PCRE2 (JIT) with UTF + UCP and the GPT-2 pattern, where \s is spelled \p{White_Space} so that
// whitespace is exactly what the reference (Python `regex`) calls \s. PCRE2_MATCH_INVALID_UTF lets arbitrary
// bytes through: a maximal run of bytes no pattern item can match (invalid UTF-8) becomes a piece of its own, so
// every byte string encodes and decodes back exactly.
#pragma once

#if !defined(PCRE2_CODE_UNIT_WIDTH)
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#if defined(__has_include)
#if !__has_include(<pcre2.h>)
#error "frugal/vocab needs PCRE2 (Debian/Ubuntu: apt-get install libpcre2-dev; link -lpcre2-8)."
#endif
#endif
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <ostream>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"
#include "hash.hpp"
#include "json.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

//! GPT-2's pre-tokenisation pattern as published, and as compiled (\s -> \p{White_Space}, \S -> \P{White_Space}).
inline constexpr const char* gpt2_pattern_published =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr const char* gpt2_pattern_compiled =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+)";

//! GPT-2 bytes_to_unicode: byte -> code point of its printable stand-in in encoder.json / vocab.bpe.
inline std::uint32_t byte_to_unicode(unsigned b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
  unsigned n = 0;
  for (unsigned x = 0; x < b; ++x)
    if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++n;
  return 256 + n;
}

//! The inverse table: code point (< 324) -> byte, or -1.
inline const std::vector<int>& unicode_to_byte_table() {
  static const std::vector<int> table = [] {
    std::vector<int> t(324, -1);
    for (unsigned b = 0; b < 256; ++b) t[byte_to_unicode(b)] = static_cast<int>(b);
    return t;
  }();
  return table;
}

//! Raw bytes of a token written in the bytes_to_unicode alphabet; false when a code point is outside it.
inline bool unicode_token_to_bytes(std::string_view s, std::string& out) {
  const auto& table = unicode_to_byte_table();
  out.clear();
  for (std::size_t i = 0; i < s.size();) {
    const int n = json::utf8_sequence_length(s, i);
    if (n == 0) return false;
    std::uint32_t cp;
    const auto c0 = static_cast<unsigned char>(s[i]);
    if (n == 1) {
      cp = c0;
    } else if (n == 2) {
      cp = ((c0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
    } else {
      return false;  // every stand-in is below U+0800
    }
    if (cp >= table.size() || table[cp] < 0) return false;
    out += static_cast<char>(table[cp]);
    i += static_cast<std::size_t>(n);
  }
  return true;
}

inline std::string bytes_to_unicode_token(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) json::append_utf8(out, byte_to_unicode(static_cast<unsigned char>(c)));
  return out;
}

//! Compiled pre-tokenisation pattern (shared, immutable; match data is per call).
class pretokenizer {
 public:
  pretokenizer() = default;
  explicit pretokenizer(const char* op) {
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code_8* code = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(gpt2_pattern_compiled), PCRE2_ZERO_TERMINATED,
                                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
    if (!code) {
      PCRE2_UCHAR8 buf[256];
      pcre2_get_error_message_8(err, buf, sizeof buf);
      fail(op, "PCRE2 cannot compile the GPT-2 pattern at offset ", off, ": ", reinterpret_cast<const char*>(buf),
           " (PCRE2 >= 10.40 with Unicode support is needed)");
    }
    jit_ = pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE) == 0;
    code_ = std::shared_ptr<pcre2_code_8>(code, [](pcre2_code_8* c) { pcre2_code_free_8(c); });
  }
  bool jit() const { return jit_; }

  //! Per-call state: PCRE2 match data sized for the pattern.
  class matcher {
   public:
    explicit matcher(const pretokenizer& p) : p_(&p), md_(pcre2_match_data_create_from_pattern_8(p.code_.get(), nullptr)) {
      FRUGAL_CHECK(md_ != nullptr, "gpt2_tokenizer", "out of memory creating PCRE2 match data");
    }
    ~matcher() { pcre2_match_data_free_8(md_); }
    matcher(const matcher&) = delete;
    matcher& operator=(const matcher&) = delete;

    //! Calls f(piece) for every pre-token of `text`, in order; the pieces tile `text` exactly.
    template <class F>
    void for_each_piece(std::string_view text, F&& f) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR8>(text.data());
      const std::size_t n = text.size();
      std::size_t pos = 0;
      while (pos < n) {
        const int rc = p_->jit_ ? pcre2_jit_match_8(p_->code_.get(), subject, n, pos, 0, md_, nullptr)
                                : pcre2_match_8(p_->code_.get(), subject, n, pos, 0, md_, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) {
          f(text.substr(pos));  // trailing bytes no item matches (invalid UTF-8)
          return;
        }
        if (rc < 0) {
          PCRE2_UCHAR8 buf[256];
          pcre2_get_error_message_8(rc, buf, sizeof buf);
          fail("gpt2_tokenizer", "PCRE2 match failed at byte ", pos, ": ", reinterpret_cast<const char*>(buf));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer_8(md_);
        if (ov[0] > pos) f(text.substr(pos, ov[0] - pos));  // skipped invalid bytes
        if (ov[1] == ov[0]) fail("gpt2_tokenizer", "empty pre-token match at byte ", ov[0]);  // cannot happen
        f(text.substr(ov[0], ov[1] - ov[0]));
        pos = ov[1];
      }
    }

   private:
    const pretokenizer* p_;
    pcre2_match_data_8* md_;
  };

 private:
  std::shared_ptr<pcre2_code_8> code_;
  bool jit_ = false;
};

struct bpe_merge {
  std::int32_t a, b, result;
};

//! Everything a byte-level BPE tokenizer needs; immutable once loaded (shared by copies of gpt2_tokenizer).
struct bpe_model {
  std::int32_t n_vocab = 0;
  std::string bytes;                 // concatenated raw bytes of every token
  std::vector<std::uint32_t> offs;   // [n_vocab + 1] offsets into `bytes`
  std::int32_t byte_token[256] = {};  // token of each single byte
  flat_map64 pairs;                  // (a << 32 | b) -> rank
  std::vector<bpe_merge> merges;     // by rank
  std::vector<std::int32_t> parent;  // [n_vocab] rank of the first merge producing the token, -1 if none
  std::vector<std::pair<std::string, std::int32_t>> specials;  // matched in text before pre-tokenisation
  std::vector<std::uint8_t> is_special;                         // [n_vocab]
  bool well_ordered = true;
  pretokenizer pretok;
  std::string source;

  std::string_view token(std::int32_t id) const { return std::string_view(bytes).substr(offs[id], offs[id + 1] - offs[id]); }

  std::uint32_t rank_of(std::int32_t a, std::int32_t b) const {
    const std::uint64_t* v = pairs.find((static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
                                        static_cast<std::uint32_t>(b));
    return v ? static_cast<std::uint32_t>(*v) : no_rank;
  }
  static constexpr std::uint32_t no_rank = ~std::uint32_t{0};
};

//! Scratch of one encoding thread: PCRE2 match data, the piece cache and merge buffers.
struct bpe_scratch {
  explicit bpe_scratch(const bpe_model& m) : match(m.pretok) {}
  pretokenizer::matcher match;
  piece_cache cache;
  std::vector<std::int32_t> sym;
  std::vector<std::uint32_t> rk;
  std::vector<std::int32_t> src;
  std::vector<std::int32_t> next, prev;
};

//! The reference merge loop on one piece (see the header comment); appends the ids to `out`.
inline void bpe_merge_piece(const bpe_model& m, std::string_view piece, std::vector<std::int32_t>& out,
                            bpe_scratch& s) {
  const std::size_t n = piece.size();
  if (n == 0) return;
  if (n == 1) {
    out.push_back(m.byte_token[static_cast<unsigned char>(piece[0])]);
    return;
  }
  constexpr std::uint32_t none = bpe_model::no_rank;
  if (n > 256 && m.well_ordered) {  // heap over a linked list
    auto& sym = s.sym;
    auto& next = s.next;
    auto& prev = s.prev;
    auto& rk = s.rk;
    sym.resize(n);
    next.resize(n);
    prev.resize(n);
    rk.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      sym[i] = m.byte_token[static_cast<unsigned char>(piece[i])];
      next[i] = static_cast<std::int32_t>(i + 1);
      prev[i] = static_cast<std::int32_t>(i) - 1;
    }
    next[n - 1] = -1;
    using item = std::pair<std::uint32_t, std::int32_t>;
    std::priority_queue<item, std::vector<item>, std::greater<item>> heap;
    for (std::size_t i = 0; i + 1 < n; ++i) {
      rk[i] = m.rank_of(sym[i], sym[i + 1]);
      if (rk[i] != none) heap.push({rk[i], static_cast<std::int32_t>(i)});
    }
    rk[n - 1] = none;
    while (!heap.empty()) {
      const auto [r, i] = heap.top();
      heap.pop();
      if (sym[i] < 0 || rk[i] != r) continue;  // stale
      const std::int32_t j = next[i];
      sym[i] = m.merges[r].result;
      sym[j] = -1;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      const std::int32_t p = prev[i];
      if (p >= 0) {
        rk[p] = m.rank_of(sym[p], sym[i]);
        if (rk[p] != none) heap.push({rk[p], p});
      }
      rk[i] = next[i] >= 0 ? m.rank_of(sym[i], sym[next[i]]) : none;
      if (rk[i] != none) heap.push({rk[i], i});
    }
    for (std::int32_t i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
    return;
  }
  auto& sym = s.sym;
  auto& rk = s.rk;
  auto& src = s.src;
  sym.resize(n);
  rk.resize(n);
  src.resize(n);
  for (std::size_t i = 0; i < n; ++i) sym[i] = m.byte_token[static_cast<unsigned char>(piece[i])];
  for (std::size_t i = 0; i + 1 < n; ++i) rk[i] = m.rank_of(sym[i], sym[i + 1]);
  std::size_t len = n;
  while (len > 1) {
    std::uint32_t r = none;
    for (std::size_t i = 0; i + 1 < len; ++i) r = std::min(r, rk[i]);
    if (r == none) break;
    const std::int32_t t = m.merges[r].result;
    std::size_t j = 0;
    for (std::size_t i = 0; i < len; ++j) {
      if (i + 1 < len && rk[i] == r) {
        sym[j] = t;
        src[j] = -1;
        i += 2;
      } else {
        sym[j] = sym[i];
        src[j] = static_cast<std::int32_t>(i);
        i += 1;
      }
    }
    len = j;
    for (std::size_t k = 0; k + 1 < len; ++k)
      rk[k] = (src[k] >= 0 && src[k + 1] >= 0) ? rk[static_cast<std::size_t>(src[k])] : m.rank_of(sym[k], sym[k + 1]);
  }
  out.insert(out.end(), sym.begin(), sym.begin() + static_cast<std::ptrdiff_t>(len));
}

//! Encodes text with no special-token recognition.
inline void bpe_encode_ordinary(const bpe_model& m, std::string_view text, std::vector<std::int32_t>& out,
                                bpe_scratch& s) {
  s.match.for_each_piece(text, [&](std::string_view piece) {
    if (piece.size() == 1) {
      out.push_back(m.byte_token[static_cast<unsigned char>(piece[0])]);
      return;
    }
    if (piece.size() > 64) {
      bpe_merge_piece(m, piece, out, s);
      return;
    }
    const std::uint64_t h = hash_bytes(piece.data(), piece.size());
    const auto hit = s.cache.find(piece, h);
    if (hit.ids) {
      out.insert(out.end(), hit.ids, hit.ids + hit.count);
      return;
    }
    const std::size_t before = out.size();
    bpe_merge_piece(m, piece, out, s);
    s.cache.insert(piece, h, out.data() + before, static_cast<std::uint32_t>(out.size() - before));
  });
}

//! Encodes text, turning every occurrence of a special token's text into its id (longest special wins at a tie).
inline void bpe_encode(const bpe_model& m, std::string_view text, std::vector<std::int32_t>& out, bpe_scratch& s) {
  if (m.specials.empty()) {
    bpe_encode_ordinary(m, text, out, s);
    return;
  }
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t best = std::string_view::npos, best_len = 0;
    std::int32_t best_id = -1;
    for (const auto& [str, id] : m.specials) {
      const std::size_t at = text.find(str, pos);
      if (at == std::string_view::npos) continue;
      if (at < best || (at == best && str.size() > best_len)) {
        best = at;
        best_len = str.size();
        best_id = id;
      }
    }
    if (best == std::string_view::npos) {
      bpe_encode_ordinary(m, text.substr(pos), out, s);
      return;
    }
    if (best > pos) bpe_encode_ordinary(m, text.substr(pos, best - pos), out, s);
    out.push_back(best_id);
    pos = best + best_len;
  }
}

// ----------------------------------------------------------------------------------------------------------------
// Loading

//! Finishes a model from token strings (bytes_to_unicode alphabet), ids, merges and specials; validates everything.
//! `vocab[i]` = (token string as in the file, id, position in file for errors); merges as (a string, b string, where).
//! A position in a source file, turned into "file:line:col" only when an error is reported.
struct source_pos {
  std::string_view file, text;
  std::size_t pos = 0;
  std::string str() const { return concat(file, ":", json::where(text, pos)); }
};
inline std::ostream& operator<<(std::ostream& os, const source_pos& p) { return os << p.str(); }

struct vocab_entry {
  std::string text;
  std::int64_t id;
  source_pos where;  // for error messages
  bool raw = false;   // true: `text` is raw bytes (an added token), not in the byte alphabet
  bool special = false;
};
struct merge_entry {
  std::string a, b;
  source_pos where;
};

inline std::shared_ptr<bpe_model> build_bpe_model(const char* op, std::vector<vocab_entry>& vocab,
                                                  const std::vector<merge_entry>& merges, std::string source) {
  auto model = std::make_shared<bpe_model>();
  bpe_model& m = *model;
  m.source = std::move(source);
  FRUGAL_CHECK(!vocab.empty(), op, m.source, ": the vocabulary is empty");
  std::int64_t max_id = -1;
  for (const auto& v : vocab) max_id = std::max(max_id, v.id);
  FRUGAL_CHECK(max_id < (std::int64_t{1} << 30), op, m.source, ": token id ", max_id, " is too large");
  // Ids are 0..n-1 without gaps, so a valid file has max_id < vocab.size(). Checked before the per-id tables are
  // allocated: a 50-byte encoder.json naming id 1,000,000,000 must not allocate gigabytes (fuzz finding).
  if (max_id >= static_cast<std::int64_t>(vocab.size())) {
    std::vector<char> have(vocab.size() + 1, 0);
    for (const auto& v : vocab)
      if (v.id >= 0 && v.id <= static_cast<std::int64_t>(vocab.size())) have[static_cast<std::size_t>(v.id)] = 1;
    std::size_t missing = 0;
    while (have[missing]) ++missing;
    fail(op, m.source, ": token ids must be 0..", max_id, " without gaps, but id ", missing, " is missing");
  }
  m.n_vocab = static_cast<std::int32_t>(max_id + 1);
  std::vector<std::int32_t> seen(static_cast<std::size_t>(m.n_vocab), -1);
  std::vector<std::string> raw(static_cast<std::size_t>(m.n_vocab));
  std::unordered_map<std::string, std::int32_t> by_text;
  by_text.reserve(vocab.size() * 2);
  m.is_special.assign(static_cast<std::size_t>(m.n_vocab), 0);
  for (std::size_t k = 0; k < vocab.size(); ++k) {
    const auto& v = vocab[k];
    if (v.id < 0) fail(op, v.where, ": token id ", v.id, " is negative");
    const auto id = static_cast<std::int32_t>(v.id);
    if (seen[static_cast<std::size_t>(id)] >= 0) {
      if (v.raw && vocab[static_cast<std::size_t>(seen[static_cast<std::size_t>(id)])].text == v.text) {
        m.is_special[static_cast<std::size_t>(id)] |= v.special;  // added token repeating a vocab entry
        if (v.special) m.specials.emplace_back(v.text, id);
        continue;
      }
      fail(op, v.where, ": token id ", id, " is used twice");
    }
    seen[static_cast<std::size_t>(id)] = static_cast<std::int32_t>(k);
    if (v.raw) {
      raw[static_cast<std::size_t>(id)] = v.text;
      m.specials.emplace_back(v.text, id);
      m.is_special[static_cast<std::size_t>(id)] = 1;
    } else {
      if (!unicode_token_to_bytes(v.text, raw[static_cast<std::size_t>(id)]))
        fail(op, v.where, ": token \"", v.text, "\" has a character outside the byte-level alphabet");
      if (v.special) {
        m.specials.emplace_back(raw[static_cast<std::size_t>(id)], id);
        m.is_special[static_cast<std::size_t>(id)] = 1;
      }
      if (!by_text.emplace(v.text, id).second) fail(op, v.where, ": token \"", v.text, "\" appears twice");
    }
  }
  for (std::int32_t id = 0; id < m.n_vocab; ++id)
    FRUGAL_CHECK(seen[static_cast<std::size_t>(id)] >= 0, op, m.source, ": token ids must be 0..", m.n_vocab - 1,
                 " without gaps, but id ", id, " is missing");
  for (unsigned b = 0; b < 256; ++b) {
    std::string u;
    json::append_utf8(u, byte_to_unicode(b));
    const auto it = by_text.find(u);
    FRUGAL_CHECK(it != by_text.end(), op, m.source, ": the single-byte token for byte ", b, " (\"", u,
                 "\") is missing; byte-level BPE needs all 256");
    m.byte_token[b] = it->second;
  }
  m.offs.resize(static_cast<std::size_t>(m.n_vocab) + 1);
  for (std::int32_t id = 0; id < m.n_vocab; ++id) {
    m.offs[static_cast<std::size_t>(id)] = static_cast<std::uint32_t>(m.bytes.size());
    m.bytes += raw[static_cast<std::size_t>(id)];
  }
  m.offs[static_cast<std::size_t>(m.n_vocab)] = static_cast<std::uint32_t>(m.bytes.size());

  // Merges
  m.merges.reserve(merges.size());
  m.pairs = flat_map64(merges.size());
  m.parent.assign(static_cast<std::size_t>(m.n_vocab), -1);
  std::vector<std::int64_t> first_used(static_cast<std::size_t>(m.n_vocab), -1);
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const auto& e = merges[r];
    const auto ia = by_text.find(e.a);
    if (ia == by_text.end()) fail(op, e.where, ": merge part \"", e.a, "\" is not in the vocabulary");
    const auto ib = by_text.find(e.b);
    if (ib == by_text.end()) fail(op, e.where, ": merge part \"", e.b, "\" is not in the vocabulary");
    const auto ic = by_text.find(e.a + e.b);
    if (ic == by_text.end()) fail(op, e.where, ": merge result \"", e.a, e.b, "\" is not in the vocabulary");
    const bpe_merge mg{ia->second, ib->second, ic->second};
    m.merges.push_back(mg);
    // Later duplicates override earlier ones, as in the reference (dict(zip(merges, range(len(merges))))).
    m.pairs.set((static_cast<std::uint64_t>(static_cast<std::uint32_t>(mg.a)) << 32) | static_cast<std::uint32_t>(mg.b),
                r);
    if (m.parent[static_cast<std::size_t>(mg.result)] < 0) m.parent[static_cast<std::size_t>(mg.result)] = static_cast<std::int32_t>(r);
    // Well ordered: no token is (re)made by a merge after a merge that uses it. Then every pair created by a merge
    // of rank r has a rank > r, which is what the heap path relies on.
    for (const std::int32_t part : {mg.a, mg.b}) {
      const auto p = static_cast<std::size_t>(part);
      if (first_used[p] < 0) first_used[p] = static_cast<std::int64_t>(r);
    }
    if (first_used[static_cast<std::size_t>(mg.result)] >= 0) m.well_ordered = false;
  }
  m.pretok = pretokenizer(op);
  return model;
}

//! Splits a text file into lines, remembering where each starts.
inline void parse_merges_text(const char* op, std::string_view file, std::string_view text,
                              std::vector<merge_entry>& out) {
  std::size_t pos = 0, line = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view l = text.substr(pos, end - pos);
    ++line;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    const std::size_t start = pos;
    pos = end + 1;
    if (line == 1 && l.substr(0, 8) == "#version") continue;
    if (l.empty()) {
      if (end >= text.size() - 1) continue;  // trailing newline
      json::fail_at(op, file, text, start, "empty line in the merge list");
    }
    const std::size_t sp = l.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 >= l.size() || l.find(' ', sp + 1) != std::string_view::npos)
      json::fail_at(op, file, text, start, "expected two tokens separated by one space, found \"", std::string(l), "\"");
    out.push_back({std::string(l.substr(0, sp)), std::string(l.substr(sp + 1)), source_pos{file, text, start}});
  }
}

inline std::string base_name(const std::string& path) {
  const std::size_t s = path.find_last_of('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}

inline std::shared_ptr<bpe_model> load_gpt2_files(const char* op, const std::string& encoder_json,
                                                  const std::string& vocab_bpe) {
  const std::string enc_text = json::read_file(op, encoder_json);
  const std::string bpe_text = json::read_file(op, vocab_bpe);
  const json::value root = json::parse(op, encoder_json, enc_text);
  const json::reader rd{op, encoder_json, enc_text};
  rd.expect(root, json::kind::object, "the top-level value of encoder.json");
  std::vector<vocab_entry> vocab;
  vocab.reserve(root.keys.size());
  for (std::size_t i = 0; i < root.keys.size(); ++i) {
    const json::value& v = root.items[i];
    vocab_entry e;
    e.text = root.keys[i];
    e.id = rd.integer(v, concat("the id of token \"", e.text, "\""), 0, (std::int64_t{1} << 30) - 1);
    e.where = source_pos{encoder_json, enc_text, v.pos};
    e.special = e.text.size() > 4 && e.text.substr(0, 2) == "<|" && e.text.substr(e.text.size() - 2) == "|>";
    vocab.push_back(std::move(e));
  }
  std::vector<merge_entry> merges;
  parse_merges_text(op, vocab_bpe, bpe_text, merges);
  return build_bpe_model(op, vocab, merges, concat(base_name(encoder_json), " + ", base_name(vocab_bpe)));
}

inline std::shared_ptr<bpe_model> load_hf_tokenizer_json(const char* op, const std::string& path) {
  const std::string text = json::read_file(op, path);
  const json::value root = json::parse(op, path, text);
  const json::reader rd{op, path, text};
  rd.expect(root, json::kind::object, "the top-level value of tokenizer.json");
  const json::value& model = rd.member(root, "model", json::kind::object);
  if (const json::value* t = model.find("type"); t && !(t->type == json::kind::string && t->str == "BPE"))
    rd.fail_value(*t, "only BPE models are supported (model.type must be \"BPE\")");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const json::value* v = model.find(key); v && !(v->type == json::kind::null || (v->type == json::kind::string && v->str.empty())))
      rd.fail_value(*v, "model.", key, " is not supported by byte-level BPE");
  for (const char* key : {"byte_fallback", "ignore_merges"})
    if (const json::value* v = model.find(key); v && v->type == json::kind::boolean && v->b)
      rd.fail_value(*v, "model.", key, " = true is not supported");
  if (const json::value* v = model.find("dropout"); v && v->type != json::kind::null)
    rd.fail_value(*v, "model.dropout must be null (BPE dropout is not deterministic)");
  if (const json::value* v = root.find("normalizer"); v && v->type != json::kind::null)
    rd.fail_value(*v, "a normalizer is not supported (GPT-2 style byte-level BPE has none)");
  if (const json::value* pt = root.find("pre_tokenizer"); pt && pt->type != json::kind::null) {
    const json::value& type = rd.member(*pt, "type", json::kind::string);
    if (type.str != "ByteLevel") rd.fail_value(type, "pre_tokenizer.type must be \"ByteLevel\", found \"", type.str, "\"");
    if (const json::value* v = pt->find("add_prefix_space"); v && v->type == json::kind::boolean && v->b)
      rd.fail_value(*v, "pre_tokenizer.add_prefix_space = true is not supported");
    if (const json::value* v = pt->find("use_regex"); v && v->type == json::kind::boolean && !v->b)
      rd.fail_value(*v, "pre_tokenizer.use_regex = false is not supported");
  }
  const json::value& jv = rd.member(model, "vocab", json::kind::object);
  std::vector<vocab_entry> vocab;
  vocab.reserve(jv.keys.size() + 8);
  for (std::size_t i = 0; i < jv.keys.size(); ++i) {
    vocab_entry e;
    e.text = jv.keys[i];
    e.id = rd.integer(jv.items[i], concat("the id of token \"", e.text, "\""), 0, (std::int64_t{1} << 30) - 1);
    e.where = source_pos{path, text, jv.items[i].pos};
    vocab.push_back(std::move(e));
  }
  if (const json::value* added = root.find("added_tokens"); added && added->type != json::kind::null) {
    rd.expect(*added, json::kind::array, "added_tokens");
    for (const json::value& a : added->items) {
      vocab_entry e;
      e.text = rd.member(a, "content", json::kind::string).str;
      if (e.text.empty()) rd.fail_value(a, "an added token's content is empty");
      e.id = rd.integer(rd.member(a, "id", json::kind::number), "added token id", 0, (std::int64_t{1} << 30) - 1);
      e.raw = true;
      e.special = true;
      e.where = source_pos{path, text, a.pos};
      vocab.push_back(std::move(e));
    }
  }
  const json::value& jm = rd.member(model, "merges", json::kind::array);
  std::vector<merge_entry> merges;
  merges.reserve(jm.items.size());
  for (const json::value& item : jm.items) {
    merge_entry e;
    e.where = source_pos{path, text, item.pos};
    if (item.type == json::kind::string) {
      const std::size_t sp = item.str.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= item.str.size() || item.str.find(' ', sp + 1) != std::string::npos)
        rd.fail_value(item, "a merge must be \"a b\" (two tokens, one space), found \"", item.str, "\"");
      e.a = item.str.substr(0, sp);
      e.b = item.str.substr(sp + 1);
    } else if (item.type == json::kind::array && item.items.size() == 2 && item.items[0].type == json::kind::string &&
               item.items[1].type == json::kind::string) {
      e.a = item.items[0].str;
      e.b = item.items[1].str;
    } else {
      rd.fail_value(item, "a merge must be a string \"a b\" or an array [\"a\", \"b\"]");
    }
    merges.push_back(std::move(e));
  }
  auto m = build_bpe_model(op, vocab, merges, base_name(path));
  // A special token's text that is also an ordinary vocab entry is listed once per source; drop duplicates.
  std::sort(m->specials.begin(), m->specials.end());
  m->specials.erase(std::unique(m->specials.begin(), m->specials.end()), m->specials.end());
  return m;
}

}  // namespace detail
FRUGAL_NAMESPACE_END
