// examples/gpt2/thresholds.hpp — TEAL's calibrated magnitude thresholds for GPT-2's sparse decode.
//
// TEAL (Liu et al. 2024, "Training-free activation sparsity in large language models") drops the input channels of
// a linear whose magnitude is below a per-layer threshold, calibrated offline so that a fraction p of the values on
// calibration text falls below it: no per-token selection at decode, one comparison per channel. Here:
//
//   calibrate_thresholds(c, m, tokens, p)   runs `tokens` through m (dense prefill, calibration_prefill — the pass
//                                           LaRoSA calibrates on) and returns, for every layer l and site s, the
//                                           p-quantile of |v| over all tokens × channels of that block input:
//                                             t[4·l + s],  s = 0 qkv input x̂ = norm(x) (affine-free LayerNorm on an
//                                             unrotated model, rmsnorm on a rotation-folded one), 1 o_proj input (the
//                                             attention output), 2 fc input x̂, 3 MLP-down input (the GELU output).
//                                           Keeping |v| >= t then keeps about 1 - p of the values on the calibration
//                                           text (ties at t are kept). p = 0 gives all-zero thresholds (dense).
//   The result goes into session_options::thresholds (engine.hpp) or session::set_thresholds; it works for the dense
//   model (TEAL) and the LaRoSA-folded one (calibrate on the folded model itself: its x̂ are rotated).
//
// The quantile: the value at index floor(p·n) of the n magnitudes in ascending order (nth_element, exact), taken
// from the prefill's activations rounded to T — what the decode GEMVs see, up to the fused prologue's rounding.
// Cost: one dense prefill of the calibration tokens plus a download and a selection per (layer, site).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine.hpp"

namespace gpt2 {

//! Thresholds for several sparsities from one calibration pass: result[i] is the table for ps[i]
//! (n_layer * 4 floats, index 4 * layer + site, see session_options::thresholds). Each p in [0, 1).
template <class Tag, class T>
std::vector<std::vector<float>> calibrate_thresholds(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                                     const std::vector<std::int32_t>& tokens,
                                                     const std::vector<float>& ps) {
  const int L = m.cfg.n_layer;
  if (tokens.empty()) fail("calibrate_thresholds", "needs calibration tokens");
  if (ps.empty()) fail("calibrate_thresholds", "needs at least one sparsity p");
  for (float p : ps)
    if (!(p >= 0.f && p < 1.f)) fail("calibrate_thresholds", "p (=", p, ") must be in [0, 1)");
  std::vector<std::vector<float>> t(ps.size(), std::vector<float>(static_cast<std::size_t>(L) * n_sites, 0.f));
  std::vector<int> seen(static_cast<std::size_t>(L) * n_sites, 0);
  std::vector<T> h;
  std::vector<float> a;
  auto hook = [&](int layer, int s, const T* X, int rows, int cols) {
    const std::size_t idx = static_cast<std::size_t>(layer) * n_sites + s;
    if (seen[idx]++) fail("calibrate_thresholds", "layer ", layer, " site ", site_name(s), " seen twice");
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    h.resize(n);
    backend<Tag>::to_host(c, h.data(), X, n * sizeof(T));
    a.resize(n);
    for (std::size_t i = 0; i < n; ++i) a[i] = std::abs(static_cast<float>(frugal::to_float(h[i])));
    // ascending p: each selection narrows the range of the next (the elements before position m are <= a[m])
    std::vector<std::size_t> order(ps.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return ps[x] < ps[y]; });
    std::size_t lo = 0;
    for (std::size_t i : order) {
      if (ps[i] <= 0.f) continue;  // dense: t = 0 keeps everything, whatever the decode tokens hold
      const std::size_t pos = std::min(n - 1, static_cast<std::size_t>(std::floor(double(ps[i]) * double(n))));
      std::nth_element(a.begin() + lo, a.begin() + pos, a.end());
      t[i][idx] = a[pos];
      lo = pos;
    }
  };
  calibration_prefill(c, m, tokens, [&](session<Tag, T>& s) { s.on_block_input = hook; });
  for (std::size_t i = 0; i < seen.size(); ++i)
    if (seen[i] != 1) fail("calibrate_thresholds", "layer ", i / n_sites, " site ", site_name(int(i % n_sites)), " not seen");
  return t;
}

//! Thresholds for one sparsity p (n_layer * 4 floats, index 4 * layer + site).
template <class Tag, class T>
std::vector<float> calibrate_thresholds(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                        const std::vector<std::int32_t>& tokens, float p) {
  return calibrate_thresholds(c, m, tokens, std::vector<float>{p})[0];
}

}  // namespace gpt2
