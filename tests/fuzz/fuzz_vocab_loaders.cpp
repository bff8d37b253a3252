// Fuzz target: every vocabulary loader of frugal/vocab — encoder.json + vocab.bpe, HF tokenizer.json, and the patch
// vocabulary JSON. The first byte picks the loader; for encoder.json + vocab.bpe the rest is split at the first 0x00
// byte. A loader must return or throw frugal::error: no crash, no out-of-bounds access, no runaway allocation.
#include <frugal/vocab/bpe.hpp>
#include <frugal/vocab/patch_vocab.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "fuzz_common.hpp"

namespace {
std::string temp_file(const char* tag, std::string_view content) {
  const std::string p = "/tmp/frugal_fuzz_" + std::string(tag) + "_" + std::to_string(::getpid());
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(content.data(), static_cast<std::streamsize>(content.size()));
  return p;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0] % 3) {
      case 0: {
        const auto cut = std::min(rest.find('\0'), rest.size());
        const std::string enc = temp_file("enc", rest.substr(0, cut));
        const std::string bpe = temp_file("bpe", cut < rest.size() ? rest.substr(cut + 1) : std::string_view{});
        const auto tok = frugal::gpt2_tokenizer::from_files(enc, bpe);
        (void)tok.decode(tok.encode("hello world"));
        break;
      }
      case 1: {
        const auto tok = frugal::gpt2_tokenizer::from_tokenizer_json(temp_file("hf", rest));
        (void)tok.decode(tok.encode("hello world"));
        break;
      }
      default: (void)frugal::patch_vocab::from_json(rest); break;
    }
  } catch (const frugal::error&) {
  }
  return 0;
}
