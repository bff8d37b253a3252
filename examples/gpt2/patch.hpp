// examples/gpt2/patch.hpp — AdaptiVocab patch vocabulary for GPT-2 (filled in when frugal/vocab's patch lands).
#pragma once

#include <frugal/vocab/bpe.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model.hpp"

namespace gpt2 {

class patch_bundle {
 public:
  std::vector<std::int32_t> encode(std::string_view) const { fail("patch", "not available yet"); }
  std::string decode(const std::vector<std::int32_t>&) const { fail("patch", "not available yet"); }
  int size() const { return 0; }
  weights take_weights() { fail("patch", "not available yet"); }
  weights weights_copy() const { fail("patch", "not available yet"); }
};

inline patch_bundle build_patch(const frugal::gpt2_tokenizer&, const std::vector<std::string>&, weights&&, int,
                                const std::string&) {
  fail("build_patch", "not available yet");
}

}  // namespace gpt2
