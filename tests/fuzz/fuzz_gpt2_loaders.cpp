// Fuzz target: the GPT-2 weight loaders (HF safetensors and llm.c .bin) of examples/gpt2.
//
// The input's first byte picks the format; the rest becomes the file (for safetensors with a small, valid-looking
// 8-byte length prefix most of the time so the JSON header is reached). A loader must either return weights or
// throw frugal::error — never crash, never read out of bounds, never allocate more than the file can describe.
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <string>

#include "fuzz_common.hpp"
#include "model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const std::string path = "/tmp/frugal_fuzz_loader_" + std::to_string(::getpid()) + ".bin";
  const bool llmc = data[0] & 1;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (llmc) {
      const std::int32_t magic = 20240326;  // get past the magic check most of the time
      if (data[0] & 2) f.write(reinterpret_cast<const char*>(&magic), 4);
    } else if (data[0] & 2) {
      const std::uint64_t hlen = size - 1;  // header = the rest of the input
      f.write(reinterpret_cast<const char*>(&hlen), 8);
    }
    f.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  }
  try {
    const auto w = llmc ? gpt2::load_llmc(path) : gpt2::load_safetensors(path);
    FRUGAL_FUZZ_ASSERT(w.cfg.n_layer >= 1 && w.cfg.n_embd >= 1);
  } catch (const frugal::error&) {
    // a clear error is the expected outcome for almost every input
  }
  std::remove(path.c_str());
  return 0;
}
