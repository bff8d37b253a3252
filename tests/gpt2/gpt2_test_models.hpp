// tests/gpt2/gpt2_test_models.hpp — small GPT-2 models, token streams and the logits error shared by the CPU tests of
// the example.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model.hpp"

namespace gpt2_test {

//! GPT-2's random initialisation of `cfg` with non-trivial LayerNorm parameters and biases (folded at upload), so
//! that the LayerNorm / rotation foldings and the fused norm are exercised.
inline gpt2::weights model_with_affine(const gpt2::config& cfg, std::uint64_t seed) {
  using gpt2::detail::fill_normal;
  auto w = gpt2::random_weights(cfg, seed);
  for (auto& l : w.layers) {
    fill_normal(l.ln1_g, seed, 101, 0.2f), fill_normal(l.ln1_b, seed, 102, 0.1f);
    fill_normal(l.ln2_g, seed, 103, 0.2f), fill_normal(l.ln2_b, seed, 104, 0.1f);
    fill_normal(l.qkv_b, seed, 105, 0.05f), fill_normal(l.proj_b, seed, 106, 0.05f);
    fill_normal(l.fc_b, seed, 107, 0.05f), fill_normal(l.fcproj_b, seed, 108, 0.05f);
    for (auto& g : l.ln1_g) g += 1.f;
    for (auto& g : l.ln2_g) g += 1.f;
  }
  fill_normal(w.lnf_g, seed, 109, 0.2f), fill_normal(w.lnf_b, seed, 110, 0.1f);
  for (auto& g : w.lnf_g) g += 1.f;
  return w;
}

//! n pseudo-random token ids in [0, V) (splitmix64 of seed and position).
inline std::vector<std::int32_t> tokens(int n, int seed, int V) {
  std::vector<std::int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = static_cast<std::int32_t>(gpt2::detail::splitmix64(seed * 7919 + i) % V);
  return p;
}

//! ‖a − b‖ / ‖b‖ in f64.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) num += double(a[i] - b[i]) * (a[i] - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / den);
}

}  // namespace gpt2_test
