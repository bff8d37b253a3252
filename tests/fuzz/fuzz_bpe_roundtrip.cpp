// Fuzz target: GPT-2 byte-level BPE and the AdaptiVocab patch tokenizer on arbitrary bytes (invalid UTF-8 too).
// Properties: decode(encode(s)) == s for the base tokenizer and for the patch tokenizer; every id is in range.
// Needs GPT-2's files (tests/vocab/fetch-gpt2-tokenizer.sh; $FRUGAL_GPT2_DIR or <repo>/.cache/gpt2); without them
// the target does nothing (the replay test then only proves it starts).
#include <frugal/vocab/bpe.hpp>
#include <frugal/vocab/patch_tokenizer.hpp>
#include <frugal/vocab/patch_vocab.hpp>

#include <memory>
#include <string>
#include <vector>

#include "fuzz_common.hpp"

namespace {
struct tokenizers {
  std::unique_ptr<frugal::gpt2_tokenizer> base;
  std::unique_ptr<frugal::patch_tokenizer> patched;
};

const tokenizers& get() {
  static const tokenizers t = [] {
    tokenizers r;
    try {
      r.base = std::make_unique<frugal::gpt2_tokenizer>(frugal::gpt2_tokenizer::from_dir(frugal::gpt2_tokenizer::default_dir()));
    } catch (const frugal::error& e) {
      std::fprintf(stderr, "fuzz_bpe_roundtrip: %s — nothing to fuzz\n", e.what());
      return r;
    }
    // A small domain vocabulary, built in-process so the target needs no corpus file.
    std::vector<std::string> docs;
    for (int i = 0; i < 60; ++i)
      docs.push_back("The quick brown fox jumps over the lazy dog. int main(int argc, char** argv) { return " +
                     std::to_string(i) + "; }  // see man 3 printf, fprintf, snprintf\n");
    std::vector<std::string_view> views(docs.begin(), docs.end());
    frugal::patch_vocab_options opt;
    opt.num_patches = 64;
    auto vocab = frugal::patch_vocab::build(frugal::cpu.with_threads(1), *r.base, views, opt);
    r.patched = std::make_unique<frugal::patch_tokenizer>(*r.base, std::move(vocab));
    return r;
  }();
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const tokenizers& t = get();
  if (!t.base) return 0;
  const std::string s(reinterpret_cast<const char*>(data), size);
  const auto ids = t.base->encode(s);
  for (const auto id : ids) FRUGAL_FUZZ_ASSERT(id >= 0 && id < t.base->vocab_size());
  FRUGAL_FUZZ_ASSERT(t.base->decode(ids) == s, "base round trip");
  const auto pids = t.patched->encode(s);
  FRUGAL_FUZZ_ASSERT(t.patched->decode(pids) == s, "patch round trip");
  return 0;
}
