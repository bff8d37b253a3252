// examples/gpt2/calibration.hpp — which tokens of the training text calibrate the gpt2 program's LaRoSA rotations
// and TEAL thresholds, cut into sequences the model can prefill.
//
// --calib-tokens n (0: the default below) is the number of calibration tokens per use. The training split's documents
// are tokenized and concatenated in order; the rotations take its tokens [0, n), the thresholds the next n, [n, 2n),
// so that a threshold is not the quantile of the very activations its rotation was fitted to (on those, the rotated
// input is more concentrated than on new text, and the thresholds come out too low). Each use is cut into
// k = ceil(n / (n_ctx - 1)) consecutive sequences of near-equal length (the first n mod k one token longer), each at
// most n_ctx - 1 tokens: one dense prefill each, positions from 0 (calibration_prefill). All sequences of a use go
// into the same covariance (larosa_calibrate) or the same quantile sample (calibrate_thresholds).
//
// Default n: n_ctx - 1 (one sequence) when that exceeds n_embd, else 2·n_embd — 124M: 1023 tokens in one sequence;
// 355M: 2048 (3 sequences); 774M: 2560 (3); 1558M: 3200 (4 of 800). The model rotation sees 2·n_layer rows per
// token, a per-layer rotation (--rotation layer) only 2: with fewer than n_embd / 2 tokens its covariance is
// rank-deficient, and 2·n_embd tokens keep every rotation well above that. More text also helps the model rotation:
// thresholds on the rotated inputs keep more than 1 - p when the rotation fits its calibration text too closely
// (124M at p = 0.5 on the CPU: 0.54 with 512 tokens, 0.501 with 1023; docs/results.md). When the training split holds
// fewer than twice the default (the demo's built-in corpus), the default is half of it, so that the thresholds still
// get the other half. An explicit n must be 0 or at least 2, and the split must hold its tokens: n for a run that
// calibrates only rotations, 2n for one that calibrates thresholds (which start at token n).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cli.hpp"
#include "engine.hpp"

namespace gpt2 {

//! The calibration text of one run: sequences of the training split's tokens.
struct calibration_text {
  std::size_t per_use = 0;     //!< n: tokens per use
  token_sequences rotation;    //!< tokens [0, n) of the split
  token_sequences thresholds;  //!< tokens [n, 2n); empty when the run calibrates only rotations (uses = 1)
};

//! The default calibration tokens per use for a model of config `cfg` (before the limit of the training split).
inline std::size_t default_calibration_tokens(const config& cfg) {
  const std::size_t cap = static_cast<std::size_t>(cfg.n_ctx) - 1, C = static_cast<std::size_t>(cfg.n_embd);
  return C < cap ? cap : 2 * C;
}

//! Cuts tokens [first, first + n) of `text` into ceil(n / max_len) consecutive sequences of near-equal length (the
//! first n mod k one token longer), each at most max_len tokens. n = 0 gives none.
inline token_sequences split_sequences(const std::vector<std::int32_t>& text, std::size_t first, std::size_t n,
                                       std::size_t max_len) {
  if (max_len < 1) fail("split_sequences", "max_len (=", max_len, ") must be >= 1");
  if (first > text.size() || n > text.size() - first)
    fail("split_sequences", "tokens [", first, ", ", first + n, ") of a text of ", text.size());
  token_sequences s;
  const std::size_t k = (n + max_len - 1) / max_len;
  std::size_t at = first;
  for (std::size_t i = 0; i < k; ++i) {
    const std::size_t len = n / k + (i < n % k ? 1 : 0);
    s.emplace_back(text.begin() + static_cast<std::ptrdiff_t>(at),
                   text.begin() + static_cast<std::ptrdiff_t>(at + len));
    at += len;
  }
  return s;
}

//! Tokens a run needs to read from the start of the training split for --calib-tokens `calib_tokens` (0: default)
//! and `uses` (1: rotations only, 2: thresholds too): uses·n, or for the default twice the default (its half-the-split
//! rule looks at that much).
inline std::size_t calibration_tokens_needed(int calib_tokens, const config& cfg, int uses) {
  check_calib_tokens(calib_tokens);
  if (uses < 1 || uses > 2) fail("calibration", "uses (=", uses, ") must be 1 or 2");
  return calib_tokens > 0 ? static_cast<std::size_t>(uses) * static_cast<std::size_t>(calib_tokens)
                          : 2 * default_calibration_tokens(cfg);
}

//! The calibration text of a run from `split`: the training split's first tokens in order (at least
//! calibration_tokens_needed(calib_tokens, cfg, uses) of them, or all it holds when shorter). `what` names the split in
//! the error messages. A bad --calib-tokens (negative, 1, or more than the split holds for `uses`) is a frugal::error
//! naming the option, the value and the limit.
inline calibration_text make_calibration_text(const std::vector<std::int32_t>& split, int calib_tokens,
                                              const config& cfg, int uses,
                                              const std::string& what = "the training split") {
  const std::size_t need = calibration_tokens_needed(calib_tokens, cfg, uses), have = split.size();
  calibration_text r;
  if (calib_tokens > 0) {
    if (have < need)
      fail("calibration", "--calib-tokens (=", calib_tokens, ") is more than ", what, " holds: ", have, " tokens",
           uses == 2 ? ", which give at most " : "; at most ", have / static_cast<std::size_t>(uses),
           uses == 2 ? " for the rotations and as many more for the thresholds" : "");
    r.per_use = static_cast<std::size_t>(calib_tokens);
  } else {
    r.per_use = std::min(default_calibration_tokens(cfg), have / 2);
    if (r.per_use < 2) fail("calibration", what, " has ", have, " tokens; at least 4 needed");
  }
  const std::size_t cap = static_cast<std::size_t>(cfg.n_ctx) - 1;
  r.rotation = split_sequences(split, 0, r.per_use, cap);
  if (uses == 2) r.thresholds = split_sequences(split, r.per_use, r.per_use, cap);
  return r;
}

}  // namespace gpt2
