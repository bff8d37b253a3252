// examples/gpt2/thresholds.hpp — TEAL's calibrated magnitude thresholds for GPT-2's sparse decode.
//
// TEAL (Liu et al. 2024, "Training-free activation sparsity in large language models") drops the input channels of
// a linear whose magnitude is below a per-layer threshold, calibrated offline so that a fraction p of the values on
// calibration text falls below it: no per-token selection at decode, one comparison per channel. Here:
//
//   calibrate_thresholds(c, m, seqs, p)     runs the token sequences `seqs` through m (a dense prefill each, at most
//                                           n_ctx - 1 tokens: calibration_prefill — the pass LaRoSA calibrates on) and
//                                           returns, for every layer l and site s, the p-quantile of |v| over all
//                                           tokens (of all sequences) × channels of that block input:
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
// Cost: one dense prefill of the calibration tokens plus a download and a selection per (layer, site); with several
// sequences two prefills of each (the selection is then a histogram pass and a selection within one bin).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "engine.hpp"

namespace gpt2 {

namespace detail {
// The bit pattern of a magnitude |v| (a non-negative float) orders as the value; its bits 30..16 (the sign bit is 0)
// name one of 2^15 bins of consecutive floats (2^-7 relative width), the histogram of the two-pass selection.
inline std::uint32_t magnitude_bin(float a) {
  std::uint32_t u;
  std::memcpy(&u, &a, sizeof u);
  return u >> 16;
}
constexpr std::size_t magnitude_bins = std::size_t(1) << 15;
}  // namespace detail

//! Thresholds for several sparsities from one calibration: result[i] is the table for ps[i] (n_layer * 4 floats,
//! index 4 * layer + site, see session_options::thresholds), the p-quantile of each site's |v| over all tokens of all
//! sequences of `seqs` (each at most n_ctx - 1 tokens, one prefill each). Each p in [0, 1).
//! One sequence: one prefill, the magnitudes of one (layer, site) at a time selected exactly (nth_element). Several:
//! keeping all sites' magnitudes would take 7 GB (1558M, 3200 tokens, f32), so the selection is exact in two
//! passes over the sequences: a histogram of the magnitudes' leading bits per site gives the bin that holds each
//! quantile's rank, and the second pass keeps only that bin's values, among which nth_element picks it. The result
//! is the same value as one selection over all magnitudes; the second pass must see the same activations (the
//! prefill is deterministic; a changed bin count is an error).
template <class Tag, class T>
std::vector<std::vector<float>> calibrate_thresholds(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                                     const token_sequences& seqs, const std::vector<float>& ps) {
  const int L = m.cfg.n_layer;
  if (total_tokens(seqs) == 0) fail("calibrate_thresholds", "needs calibration tokens");
  if (ps.empty()) fail("calibrate_thresholds", "needs at least one sparsity p");
  for (float p : ps)
    if (!(p >= 0.f && p < 1.f)) fail("calibrate_thresholds", "p (=", p, ") must be in [0, 1)");
  const std::size_t n_idx = static_cast<std::size_t>(L) * n_sites;
  std::vector<std::vector<float>> t(ps.size(), std::vector<float>(n_idx, 0.f));
  std::vector<std::size_t> seen(n_idx, 0);
  std::vector<T> h;
  std::vector<float> a;
  // |v| of block input (layer, s) into a; returns its index in the tables
  auto magnitudes = [&](int layer, int s, const T* X, std::size_t n) {
    const std::size_t idx = static_cast<std::size_t>(layer) * n_sites + s;
    if (++seen[idx] > seqs.size()) fail("calibrate_thresholds", "layer ", layer, " site ", site_name(s), " seen twice");
    h.resize(n);
    backend<Tag>::to_host(c, h.data(), X, n * sizeof(T));
    a.resize(n);
    for (std::size_t i = 0; i < n; ++i) a[i] = std::abs(static_cast<float>(frugal::to_float(h[i])));
    return idx;
  };
  auto check_seen = [&] {
    for (std::size_t i = 0; i < seen.size(); ++i)
      if (seen[i] != seqs.size())
        fail("calibrate_thresholds", "layer ", i / n_sites, " site ", site_name(int(i % n_sites)), " seen ", seen[i],
             " times for ", seqs.size(), " sequences");
  };
  // ascending p: each selection narrows the range of the next (the elements before position m are <= a[m])
  std::vector<std::size_t> order(ps.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return ps[x] < ps[y]; });
  auto rank = [&](float p, std::size_t n) {
    return std::min(n - 1, static_cast<std::size_t>(std::floor(double(p) * double(n))));
  };

  if (seqs.size() == 1) {
    auto hook = [&](int layer, int s, const T* X, int rows, int cols) {
      const std::size_t n = static_cast<std::size_t>(rows) * cols;
      const std::size_t idx = magnitudes(layer, s, X, n);
      std::size_t lo = 0;
      for (std::size_t i : order) {
        if (ps[i] <= 0.f) continue;  // dense: t = 0 keeps everything, whatever the decode tokens hold
        const std::size_t pos = rank(ps[i], n);
        std::nth_element(a.begin() + lo, a.begin() + pos, a.end());
        t[i][idx] = a[pos];
        lo = pos;
      }
    };
    calibration_prefill(c, m, seqs, [&](session<Tag, T>& s) { s.on_block_input = hook; });
    check_seen();
    return t;
  }

  // pass 1: per site, the count of magnitudes in each bin
  std::vector<std::vector<std::uint64_t>> hist(n_idx);
  std::vector<std::size_t> total(n_idx, 0);
  auto count = [&](int layer, int s, const T* X, int rows, int cols) {
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    const std::size_t idx = magnitudes(layer, s, X, n);
    auto& hb = hist[idx];
    if (hb.empty()) hb.assign(detail::magnitude_bins, 0);
    for (float v : a) ++hb[detail::magnitude_bin(v)];
    total[idx] += n;
  };
  calibration_prefill(c, m, seqs, [&](session<Tag, T>& s) { s.on_block_input = count; });
  check_seen();
  // each p's rank, and the bin that holds it (the values below that bin: `below`); p = 0 needs no selection
  struct target {
    std::uint32_t bin = 0;
    std::uint64_t below = 0, in_bin = 0;
    std::vector<float> values;
  };
  std::vector<std::vector<target>> targets(n_idx);
  std::vector<std::vector<int>> which(n_idx, std::vector<int>(ps.size(), -1));  // p -> its target of the site
  for (std::size_t idx = 0; idx < n_idx; ++idx) {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      if (ps[i] <= 0.f) continue;
      const std::size_t pos = rank(ps[i], total[idx]);
      std::uint64_t below = 0;
      std::uint32_t b = 0;
      while (b + 1 < detail::magnitude_bins && below + hist[idx][b] <= pos) below += hist[idx][b++];
      int k = 0;
      while (k < static_cast<int>(targets[idx].size()) && targets[idx][k].bin != b) ++k;
      if (k == static_cast<int>(targets[idx].size())) targets[idx].push_back({b, below, hist[idx][b], {}});
      which[idx][i] = k;
    }
    std::vector<std::uint64_t>().swap(hist[idx]);
  }
  // pass 2: keep the magnitudes that fall in a target bin
  std::fill(seen.begin(), seen.end(), 0);
  auto collect = [&](int layer, int s, const T* X, int rows, int cols) {
    const std::size_t idx = magnitudes(layer, s, X, static_cast<std::size_t>(rows) * cols);
    auto& tg = targets[idx];
    if (tg.empty()) return;
    for (float v : a) {
      const std::uint32_t b = detail::magnitude_bin(v);
      for (auto& x : tg)
        if (x.bin == b) x.values.push_back(v);
    }
  };
  calibration_prefill(c, m, seqs, [&](session<Tag, T>& s) { s.on_block_input = collect; });
  check_seen();
  for (std::size_t idx = 0; idx < n_idx; ++idx) {
    for (auto& x : targets[idx])
      if (x.values.size() != x.in_bin)
        fail("calibrate_thresholds", "layer ", idx / n_sites, " site ", site_name(int(idx % n_sites)), ": the second ",
             "pass over the calibration sequences found ", x.values.size(),
             " magnitudes in the quantile's bin, the "
             "first ",
             x.in_bin, " (the prefill is not deterministic)");
    for (std::size_t i = 0; i < ps.size(); ++i) {  // (several p may share a bin)
      if (which[idx][i] < 0) continue;
      auto& x = targets[idx][static_cast<std::size_t>(which[idx][i])];
      const std::size_t pos = rank(ps[i], total[idx]) - static_cast<std::size_t>(x.below);
      std::nth_element(x.values.begin(), x.values.begin() + static_cast<std::ptrdiff_t>(pos), x.values.end());
      t[i][idx] = x.values[pos];
    }
  }
  return t;
}

//! The same on one sequence.
template <class Tag, class T>
std::vector<std::vector<float>> calibrate_thresholds(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                                     const std::vector<std::int32_t>& tokens,
                                                     const std::vector<float>& ps) {
  return calibrate_thresholds(c, m, token_sequences{tokens}, ps);
}

//! Thresholds for one sparsity p (n_layer * 4 floats, index 4 * layer + site).
template <class Tag, class T>
std::vector<float> calibrate_thresholds(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                        const token_sequences& seqs, float p) {
  return calibrate_thresholds(c, m, seqs, std::vector<float>{p})[0];
}
template <class Tag, class T>
std::vector<float> calibrate_thresholds(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                        const std::vector<std::int32_t>& tokens, float p) {
  return calibrate_thresholds(c, m, token_sequences{tokens}, std::vector<float>{p})[0];
}

}  // namespace gpt2
