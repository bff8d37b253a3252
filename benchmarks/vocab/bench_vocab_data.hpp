// Inputs of the vocab benchmarks: GPT-2's files (default_dir()), the man-page corpus (tests/vocab/make-corpus.sh)
// and English prose (Debian's /usr/share/common-licenses, concatenated).
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <frugal/vocab/bpe.hpp>

namespace vocab_bench {

inline std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const std::optional<frugal::gpt2_tokenizer>& gpt2() {
  static const std::optional<frugal::gpt2_tokenizer> t = []() -> std::optional<frugal::gpt2_tokenizer> {
    const std::string d = frugal::gpt2_tokenizer::default_dir();
    if (!std::filesystem::exists(d + "/encoder.json")) return std::nullopt;
    return frugal::gpt2_tokenizer::from_dir(d);
  }();
  return t;
}

inline std::string corpus_dir() {
  const std::string d = frugal::gpt2_tokenizer::default_dir();
  return std::filesystem::path(d).parent_path().string() + "/corpus";
}

//! "manpages-test" (held-out split), "manpages-train" or "licenses" (English prose); empty when unavailable.
inline const std::string& text(const std::string& name) {
  static std::map<std::string, std::string> cache;
  auto& s = cache[name];
  if (!s.empty()) return s;
  if (name == "licenses") {
    for (const char* f : {"GPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "GFDL-1.3", "Artistic", "CC0-1.0"})
      s += slurp(std::string("/usr/share/common-licenses/") + f);
  } else if (name == "manpages-test") {
    s = slurp(corpus_dir() + "/test.txt");
  } else if (name == "manpages-train") {
    s = slurp(corpus_dir() + "/train.txt");
  }
  return s;
}

inline std::vector<std::string_view> split_docs(std::string_view t) {
  std::vector<std::string_view> docs;
  std::size_t p = 0;
  for (;;) {
    const std::size_t q = t.find("<|endoftext|>", p);
    if (q == std::string_view::npos) {
      docs.push_back(t.substr(p));
      return docs;
    }
    docs.push_back(t.substr(p, q - p));
    p = q + 13;
  }
}

}  // namespace vocab_bench
