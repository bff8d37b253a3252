// examples/gpt2/sampling.hpp — next-token selection rules shared by the CPU and CUDA paths.
//
// Greedy: argmax, lowest index on ties. Sampling: z = logits / temperature; keep the top_k largest z (ties at the
// k-th value kept); of those keep the smallest prefix (by z, descending) whose softmax mass reaches top_p; then draw
// with the Gumbel-max trick, argmax_i z_i + g_i with g_i = -log(-log(u_i)), which samples exactly softmax(z) over
// the kept set. u_i is a counter-based hash of (seed, step, row, i): reproducible, identical on CPU and GPU, and it
// needs no sort (the GPU finds the two thresholds by bisection on the float order).
#pragma once

#include <frugal/core/config.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace gpt2 {

struct sampling {
  float temperature = 0.f;  //!< <= 0: greedy
  int top_k = 0;            //!< 0: all tokens
  float top_p = 1.f;        //!< 1: no nucleus cut
  std::uint64_t seed = 0;
  FRUGAL_HOST_DEVICE bool greedy() const { return temperature <= 0.f || top_k == 1; }
};

FRUGAL_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

//! Gumbel noise for token i of row r at decode step `step`.
FRUGAL_HOST_DEVICE inline float gumbel_noise(std::uint64_t seed, std::uint64_t step, std::uint64_t row, std::uint64_t i) {
  const std::uint64_t h = mix64(mix64(mix64(seed ^ 0x9e3779b97f4a7c15ull) ^ step) ^ (row << 32 ^ i));
  const float u = (static_cast<float>(h >> 40) + 0.5f) * (1.0f / 16777216.0f);  // (0, 1)
  return -logf(-logf(u));
}

//! Host selection for one row of float logits (the reference for the CUDA kernel).
inline std::int32_t select_token(const float* logits /*[V]*/, int V, const sampling& s, std::uint64_t step,
                                 std::uint64_t row) {
  if (s.greedy()) {
    int best = 0;
    for (int i = 1; i < V; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  std::vector<float> z(logits, logits + V);
  for (auto& v : z) v /= s.temperature;
  float cut = -std::numeric_limits<float>::infinity();
  if (s.top_k > 0 && s.top_k < V) {
    std::vector<float> t = z;
    std::nth_element(t.begin(), t.begin() + (s.top_k - 1), t.end(), std::greater<float>());
    cut = t[s.top_k - 1];
  }
  if (s.top_p < 1.f) {
    std::vector<float> kept;
    for (float v : z)
      if (v >= cut) kept.push_back(v);
    std::sort(kept.begin(), kept.end(), std::greater<float>());
    const float mx = kept.front();
    double total = 0;
    for (float v : kept) total += std::exp(double(v) - mx);
    double acc = 0;
    for (float v : kept) {
      acc += std::exp(double(v) - mx) / total;
      if (acc >= s.top_p) {
        cut = std::max(cut, v);
        break;
      }
    }
  }
  int best = -1;
  float best_v = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < V; ++i) {
    if (!(z[i] >= cut)) continue;
    const float v = z[i] + gumbel_noise(s.seed, step, row, static_cast<std::uint64_t>(i));
    if (best < 0 || v > best_v) best = i, best_v = v;
  }
  return best < 0 ? 0 : best;
}

}  // namespace gpt2
