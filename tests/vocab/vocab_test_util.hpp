// Helpers shared by the vocab tests: GPT-2 files, the corpus, oracle files, temporary files.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <frugal/vocab/bpe.hpp>

namespace vocab_test {

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
inline bool exists(const std::string& p) { return std::filesystem::exists(p); }
inline void write(const std::string& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

//! A fresh temporary directory (removed at exit of the process is not needed: under /tmp).
inline std::string temp_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() / ("frugal-vocab-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d.string();
}

//! GPT-2 tokenizer from default_dir(), loaded once; nullopt (with a message) when the files are absent.
inline const std::optional<frugal::gpt2_tokenizer>& gpt2() {
  static const std::optional<frugal::gpt2_tokenizer> tok = []() -> std::optional<frugal::gpt2_tokenizer> {
    const std::string dir = frugal::gpt2_tokenizer::default_dir();
    if (!exists(dir + "/encoder.json") || !exists(dir + "/vocab.bpe")) return std::nullopt;
    return frugal::gpt2_tokenizer::from_dir(dir);
  }();
  return tok;
}
#define VOCAB_REQUIRE_GPT2()                                                                                   \
  do {                                                                                                         \
    if (!::vocab_test::gpt2()) {                                                                               \
      MESSAGE("skipped: GPT-2 tokenizer files not found in " << frugal::gpt2_tokenizer::default_dir()          \
                                                              << " (run tests/vocab/fetch-gpt2-tokenizer.sh)"); \
      return;                                                                                                  \
    }                                                                                                          \
  } while (0)

//! Splits a corpus on "<|endoftext|>" (the documents' separator).
inline std::vector<std::string_view> split_docs(std::string_view text) {
  std::vector<std::string_view> docs;
  std::size_t p = 0;
  for (;;) {
    const std::size_t q = text.find("<|endoftext|>", p);
    if (q == std::string_view::npos) {
      docs.push_back(text.substr(p));
      return docs;
    }
    docs.push_back(text.substr(p, q - p));
    p = q + 13;
  }
}

//! One line of space-separated ids per document.
inline std::vector<std::vector<std::int32_t>> read_ids(const std::string& path) {
  std::vector<std::vector<std::int32_t>> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::int32_t> ids;
    std::int32_t x;
    while (ls >> x) ids.push_back(x);
    out.push_back(std::move(ids));
  }
  return out;
}

inline std::string corpus_file(const char* name) { return std::string(FRUGAL_VOCAB_CORPUS_DIR) + "/" + name; }

//! Random byte strings from several alphabets (raw bytes, ASCII words, UTF-8 with invalid bytes mixed in).
inline std::string random_bytes(std::mt19937_64& rng, std::size_t max_len) {
  std::uniform_int_distribution<std::size_t> len_d(0, max_len);
  const std::size_t n = len_d(rng);
  const int kind = static_cast<int>(rng() % 4);
  static const char* pieces[] = {"the", " the", "'s", "'ll", " ", "  ", "\n", "\t", "é", "日本", "😀", "\xff",
                                 "\xc3", "\x80", "\xe2\x82", "1", "23", ",", ".", "<|endoftext|>", "\xf0\x9f", "A"};
  std::string s;
  while (s.size() < n) {
    if (kind == 0) {
      s += static_cast<char>(rng() & 0xff);
    } else if (kind == 1) {
      s += static_cast<char>(0x20 + rng() % 95);
    } else {
      s += pieces[rng() % (sizeof pieces / sizeof pieces[0])];
    }
  }
  return s;
}

}  // namespace vocab_test
