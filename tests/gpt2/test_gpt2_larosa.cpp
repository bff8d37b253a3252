// Tests of LaRoSA in the GPT-2 example: LayerNorm folding and rotation folding (model-level and layer-level with
// residual adapters) leave the logits unchanged at p = 0, within the dtype's tolerance, and calibration produces
// orthogonal rotations. Also: the fused decode step (norm / GELU inside the GEMVs, KV append inside the attention)
// gives the logits of the step with separate ops, dense / TEAL / LaRoSA, contiguous and paged KV.
// Calibration over several sequences: where one context holds fewer rows than n_embd its covariance is
// rank-deficient and several sequences make it full rank; a calibration on [a, b] is the sum of those on a and on b;
// the training tokens are cut into consecutive sequences of at most n_ctx - 1 (rotation and threshold chunks
// disjoint), and a bad --calib-tokens is an error naming the option, the value and the limit.
#include <doctest/doctest.h>

#include <common/test_util.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "calibration.hpp"
#include "cli.hpp"
#include "gpt2_test_models.hpp"
#include "larosa.hpp"

namespace {

using namespace gpt2;

config small_config() {
  config c;
  c.name = "test";
  c.n_layer = 3, c.n_head = 4, c.n_embd = 128, c.vocab_size = 1000, c.n_ctx = 96;
  return c;
}

weights model_with_affine(std::uint64_t seed) {
  return gpt2_test::model_with_affine(small_config(), seed);
}

using gpt2_test::tokens;

//! Teacher-forced logits of every decode step (prefill 8 tokens, then feed the rest), concatenated.
template <class T>
std::vector<float> logits(backend<frugal::cpu_t>::context& c, const device_model<frugal::cpu_t, T>& m, float p,
                          const std::vector<std::int32_t>& text, bool fused = true,
                          attn_kind attn = attn_kind::contiguous) {
  session_options o;
  o.attn = attn;
  o.page_size = 5;
  o.max_seq = static_cast<int>(text.size()) + 2;
  o.p = p;
  o.fused = fused;
  session<frugal::cpu_t, T> s(c, m, o);
  const std::vector<std::vector<std::int32_t>> pr = {std::vector<std::int32_t>(text.begin(), text.begin() + 8)};
  const std::vector<std::vector<std::int32_t>> f = {std::vector<std::int32_t>(text.begin() + 8, text.end())};
  s.start(pr, &f);
  std::vector<float> all;
  for (std::size_t i = 8; i < text.size(); ++i) {
    s.decode(1);
    const auto l = s.logits();
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

using gpt2_test::rel_err;

//! A context shorter than the width: one sequence (n_ctx - 1 = 15 tokens) gives the model rotation's covariance
//! 2 rows per token (the residual before each of the layer's two norms), 30 < n_embd = 64.
config narrow_config() {
  config c;
  c.name = "narrow";
  c.n_layer = 1, c.n_head = 2, c.n_embd = 64, c.vocab_size = 1000, c.n_ctx = 16;
  return c;
}

//! Eigenvalues of a damped second moment that are the damping alone: directions without calibration variance.
//! The damping adds d·trace/n to each of the n eigenvalues (d = 0.01), so sum(lam) = trace·(1 + d).
int at_damping(const std::vector<float>& lam, double d = 0.01) {
  double sum = 0;
  for (float l : lam) sum += l;
  const double floor = d / (1 + d) * sum / double(lam.size());
  int n = 0;
  for (float l : lam) n += l <= 1.002 * floor;  // f32 eigh: within 1e-4 of it; the next ones here: >= 1.004
  return n;
}

}  // namespace

TEST_CASE("gpt2 larosa: LayerNorm folding keeps the logits (f32)") {
  backend<frugal::cpu_t>::context c;
  const auto text = tokens(24, 1, 1000);
  auto dense = upload_model<frugal::cpu_t, float>(c, model_with_affine(3));
  auto folded = upload_model<frugal::cpu_t, float>(c, fold_layernorms(model_with_affine(3)));
  CHECK(folded.rms);
  CHECK(!dense.rms);
  CHECK(dense.lm_b.size() == static_cast<std::size_t>(dense.cfg.vocab_size));  // ln_f's beta·W went into a new bias
  CHECK(rel_err(logits(c, folded, 0.f, text), logits(c, dense, 0.f, text)) < 1e-5);
}

TEST_CASE_TEMPLATE("gpt2 larosa: folded rotations at p = 0 match dense within the dtype's tolerance", T, float,
                   frugal::half, frugal::bfloat16) {
  // f32 ~ 1e-6; 16-bit: the folded model rounds different numbers (rotated weights), so the two differ by the
  // rounding noise of the dtype accumulated over the layers.
  const double tol = std::is_same_v<T, float> ? 2e-5 : std::is_same_v<T, frugal::half> ? 2e-2 : 1e-1;
  backend<frugal::cpu_t>::context c;
  const auto text = tokens(24, 2, 1000);
  auto dense = upload_model<frugal::cpu_t, T>(c, model_with_affine(5));
  const auto ref = logits(c, dense, 0.f, text);
  for (bool layerwise : {false, true}) {
    CAPTURE(layerwise);
    larosa_options o;
    o.layerwise = layerwise;
    const auto rot = larosa_calibrate(c, dense, tokens(64, 9, 1000), o);
    CHECK(rot.q.size() == (layerwise ? 3u : 1u));
    // orthogonality of each Q
    for (const auto& q : rot.q) {
      double worst = 0;
      const int C = rot.dim;
      for (int i = 0; i < C; i += 7)
        for (int j = 0; j < C; j += 5) {
          double d = 0;
          for (int k = 0; k < C; ++k) d += double(q[k * C + i]) * q[k * C + j];
          worst = std::max(worst, std::abs(d - (i == j ? 1.0 : 0.0)));
        }
      CHECK(worst < 1e-4);
    }
    auto folded = upload_model<frugal::cpu_t, T>(c, larosa_apply<frugal::cpu_t>(c, model_with_affine(5), rot));
    CHECK(folded.layers[0].adapter.empty() == !layerwise);
    const auto got = logits(c, folded, 0.f, text);
    CHECK(rel_err(got, ref) < tol);
    // sparsity changes the logits but keeps them finite and mostly on the same top-1 at a light p
    const auto sp = logits(c, folded, 0.25f, text);
    const double e = rel_err(sp, ref);
    CHECK(e > 0);
    CHECK(std::isfinite(e));
  }
}

TEST_CASE("gpt2 larosa: bytes per token count the kept channels and the adapters") {
  backend<frugal::cpu_t>::context c;
  auto dense = upload_model<frugal::cpu_t, float>(c, random_weights(small_config(), 1));
  const double d0 = dense.weight_bytes_per_token(0.f), d5 = dense.weight_bytes_per_token(0.5f);
  const auto cfg = small_config();
  const double C = cfg.n_embd, V = cfg.vocab_size, L = cfg.n_layer;
  // LayerNorm affines are folded into the linears at upload (random init: beta = 0, so no LM-head bias appears)
  CHECK(d0 == doctest::Approx(4.0 * (L * (12 * C * C + 9 * C) + C * V + 2 * C)));
  CHECK(d5 == doctest::Approx(4.0 * (L * (6 * C * C + 9 * C) + C * V + 2 * C)));
  larosa_options o;
  o.layerwise = true;
  const auto rot = larosa_calibrate(c, dense, tokens(32, 3, 1000), o);
  auto folded =
      upload_model<frugal::cpu_t, float>(c, larosa_apply<frugal::cpu_t>(c, random_weights(small_config(), 1), rot));
  // folded: no LayerNorm parameters, an LM-head bias, and (L - 1) adapters
  CHECK(folded.weight_bytes_per_token(0.f) ==
        doctest::Approx(4.0 * (L * (12 * C * C + 9 * C) + (L - 1) * C * C + C * V + V + 2 * C)));
}

TEST_CASE_TEMPLATE("gpt2 cpu: the fused decode step (norm / GELU inside the GEMVs) matches separate ops", T, float,
                   frugal::half) {
  // dense and TEAL on the LayerNorm model (affine folded at upload), dense and LaRoSA on the rotation-folded one
  const double tol = std::is_same_v<T, float> ? 1e-5 : 2e-2;
  backend<frugal::cpu_t>::context c;
  const auto text = tokens(24, 4, 1000);
  auto dense = upload_model<frugal::cpu_t, T>(c, model_with_affine(6));
  const auto rot = larosa_calibrate(c, dense, tokens(48, 5, 1000), larosa_options{});
  auto folded = upload_model<frugal::cpu_t, T>(c, larosa_apply<frugal::cpu_t>(c, model_with_affine(6), rot));
  for (const auto* m : {&dense, &folded})
    for (float p : {0.f, 0.5f})
      for (attn_kind a : {attn_kind::contiguous, attn_kind::paged}) {  // fused: append inside the attention call
        CAPTURE(m->rms);
        CAPTURE(p);
        CAPTURE(attn_name(a));
        const auto f = logits(c, *m, p, text, true, a), u = logits(c, *m, p, text, false, a);
        REQUIRE(f.size() == u.size());
        CHECK(rel_err(f, u) < tol);
      }
}

TEST_CASE("gpt2 calibration: several sequences give full rank where one sequence's covariance is rank-deficient") {
  backend<frugal::cpu_t>::context c;
  const auto cfg = narrow_config();
  auto dense = upload_model<frugal::cpu_t, float>(c, gpt2_test::model_with_affine(cfg, 2));
  // the default for n_embd >= n_ctx - 1: 2 x 64 = 128 tokens, in 9 sequences of at most 15
  const auto ct = make_calibration_text(tokens(400, 11, cfg.vocab_size), 0, cfg, 2);
  REQUIRE(ct.rotation.size() == 9);
  const auto one = larosa_calibrate(c, dense, ct.rotation[0], larosa_options{});
  const auto all = larosa_calibrate(c, dense, ct.rotation, larosa_options{});
  REQUIRE(one.eigenvalues.size() == 1);
  REQUIRE(all.eigenvalues.size() == 1);
  // one sequence: 30 rows span 30 of the 64 directions; the other 34 carry only the damping
  CHECK(at_damping(one.eigenvalues[0]) == 64 - 30);
  // nine (256 rows): only (1, ..., 1) stays there — every normalised row u = (x - mean) / std sums to 0
  CHECK(at_damping(all.eigenvalues[0]) == 1);
  // the threshold chunk holds other tokens, so it gives another covariance
  CHECK(larosa_calibrate(c, dense, ct.thresholds, larosa_options{}).eigenvalues != all.eigenvalues);
}

TEST_CASE("gpt2 calibration: larosa_calibrate on sequences [a, b] is the sum of the calibrations on a and on b") {
  backend<frugal::cpu_t>::context c;
  const auto cfg = small_config();
  auto dense = upload_model<frugal::cpu_t, float>(c, model_with_affine(7));
  const auto a = tokens(40, 3, 1000), b = tokens(29, 4, 1000);
  for (bool layerwise : {false, true}) {
    CAPTURE(layerwise);
    larosa_options o;
    o.layerwise = layerwise;
    auto both = larosa_accumulators(cfg, o), ca = larosa_accumulators(cfg, o), cb = larosa_accumulators(cfg, o);
    larosa_accumulate(c, dense, {a, b}, o, both);
    larosa_accumulate(c, dense, {a}, o, ca);
    larosa_accumulate(c, dense, {b}, o, cb);
    REQUIRE(both.sites() == (layerwise ? cfg.n_layer : 1));
    const std::int64_t C = cfg.n_embd, rows_per_token = layerwise ? 2 : 2 * cfg.n_layer;
    for (int site = 0; site < both.sites(); ++site) {
      CAPTURE(site);
      const auto &s = both.accumulator(site).state(), &sa = ca.accumulator(site).state(),
                 &sb = cb.accumulator(site).state();
      CHECK(s.count == (40 + 29) * rows_per_token);
      CHECK(s.count == sa.count + sb.count);
      double worst = 0, big = 0;
      for (std::int64_t i = 0; i < C; ++i)
        for (std::int64_t j = i; j < C; ++j) {
          worst = std::max(worst, std::abs(s.xtx[i * C + j] - (sa.xtx[i * C + j] + sb.xtx[i * C + j])));
          big = std::max(big, std::abs(s.xtx[i * C + j]));
        }
      CHECK(worst <= 1e-12 * big);  // f64 sums, another order
    }
    const auto rot = larosa_calibrate(c, dense, token_sequences{a, b}, o);
    const auto hand = larosa_solve(both);
    CHECK(rot.q == hand.q);
    CHECK(rot.eigenvalues == hand.eigenvalues);
    CHECK(rot.eigenvalues != larosa_calibrate(c, dense, a, o).eigenvalues);  // b counted
    // one sequence through either interface: the same rotation
    CHECK(larosa_calibrate(c, dense, token_sequences{a}, o).q == larosa_calibrate(c, dense, a, o).q);
  }
  FRUGAL_CHECK_THROWS_WITH(larosa_calibrate(c, dense, token_sequences{}, larosa_options{}),
                           "gpt2::larosa_calibrate: needs calibration tokens (got 0 in 0 sequences)");
  FRUGAL_CHECK_THROWS_WITH(larosa_calibrate(c, dense, token_sequences{a, tokens(96, 5, 1000)}, larosa_options{}),
                           "gpt2::calibration_prefill: sequence 1 has 96 tokens; allowed 1..95 (n_ctx - 1)");
  FRUGAL_CHECK_THROWS_WITH(larosa_calibrate(c, dense, token_sequences{a, {}}, larosa_options{}),
                           "gpt2::calibration_prefill: sequence 1 has 0 tokens; allowed 1..95");
  larosa_options lw;
  lw.layerwise = true;
  auto wrong = larosa_accumulators(cfg, larosa_options{});
  FRUGAL_CHECK_THROWS_WITH(larosa_accumulate(c, dense, {a}, lw, wrong), "accumulators of 1 sites x dim 128");
}

namespace {
//! Checks that s cuts tokens [first, first + n) of a text whose token i is i into consecutive sequences of near-equal
//! length, each 1..cap tokens.
void check_cut(const token_sequences& s, std::int32_t first, std::size_t n, std::size_t cap) {
  std::int32_t at = first;
  std::size_t lo = n, hi = 0;
  for (const auto& q : s) {
    CHECK(!q.empty());
    CHECK(q.size() <= cap);
    lo = std::min(lo, q.size()), hi = std::max(hi, q.size());
    for (std::int32_t v : q) {
      REQUIRE(v == at);
      ++at;
    }
  }
  CHECK(std::size_t(at - first) == n);
  CHECK(s.size() == (n + cap - 1) / cap);
  CHECK(hi - lo <= 1);
}
}  // namespace

TEST_CASE("gpt2 calibration: --calib-tokens cuts the training tokens into consecutive sequences of <= n_ctx - 1") {
  std::vector<std::int32_t> text(20000);
  for (std::size_t i = 0; i < text.size(); ++i) text[i] = std::int32_t(i);
  struct expect {
    const char* model;
    std::size_t per_use, sequences;
  };
  // default: n_ctx - 1 when that exceeds n_embd (124M: as before, one sequence), else 2 n_embd
  for (const expect& e :
       {expect{"124M", 1023, 1}, expect{"355M", 2048, 3}, expect{"774M", 2560, 3}, expect{"1558M", 3200, 4}}) {
    CAPTURE(e.model);
    const auto cfg = config::from_name(e.model);
    CHECK(default_calibration_tokens(cfg) == e.per_use);
    const auto ct = make_calibration_text(text, 0, cfg, 2);
    CHECK(ct.per_use == e.per_use);
    CHECK(ct.rotation.size() == e.sequences);
    check_cut(ct.rotation, 0, e.per_use, 1023);                          // rotation: tokens [0, n)
    check_cut(ct.thresholds, std::int32_t(e.per_use), e.per_use, 1023);  // thresholds: the next n, disjoint
    CHECK(make_calibration_text(text, 0, cfg, 1).thresholds.empty());    // a run without thresholds
    CHECK(make_calibration_text(text, 0, cfg, 1).rotation == ct.rotation);
  }
  const auto xl = config::from_name("1558M");
  for (const auto& q : make_calibration_text(text, 0, xl, 2).rotation) CHECK(q.size() == 800);  // 4 x 800
  // explicit values: every value accepted before (2..n_ctx - 1) still gives one sequence, the first n tokens, and
  // the next n for the thresholds; larger ones are cut
  const auto base = config::from_name("124M");
  for (int n : {2, 512, 1000, 1023}) {
    CAPTURE(n);
    const auto ct = make_calibration_text(text, n, base, 2);
    REQUIRE(ct.rotation.size() == 1);
    CHECK(ct.rotation[0] == std::vector<std::int32_t>(text.begin(), text.begin() + n));
    CHECK(ct.thresholds[0] == std::vector<std::int32_t>(text.begin() + n, text.begin() + 2 * n));
  }
  for (int n : {1024, 2500, 5000, 10000}) {
    CAPTURE(n);
    const auto ct = make_calibration_text(text, n, base, 2);
    check_cut(ct.rotation, 0, std::size_t(n), 1023);
    check_cut(ct.thresholds, n, std::size_t(n), 1023);
  }
  // a short split (the demo's built-in corpus): the default is half of it, as before
  const std::vector<std::int32_t> demo(text.begin(), text.begin() + 1401);
  for (const char* m : {"124M", "1558M"}) {
    const auto ct = make_calibration_text(demo, 0, config::from_name(m), 2);
    CHECK(ct.per_use == 700);
    check_cut(ct.rotation, 0, 700, 1023);
    check_cut(ct.thresholds, 700, 700, 1023);
  }
  // what a run reads of the split: uses x n, or twice the default
  CHECK(calibration_tokens_needed(0, base, 1) == 2046);
  CHECK(calibration_tokens_needed(0, xl, 2) == 6400);
  CHECK(calibration_tokens_needed(3000, xl, 1) == 3000);
  CHECK(calibration_tokens_needed(3000, xl, 2) == 6000);
  // split_sequences on its own: none for n = 0, max_len 1 gives single tokens
  CHECK(split_sequences(text, 5, 0, 10).empty());
  check_cut(split_sequences(text, 5, 7, 1), 5, 7, 1);
  FRUGAL_CHECK_THROWS_WITH(split_sequences(demo, 1000, 402, 1023), "tokens [1000, 1402) of a text of 1401");
}

TEST_CASE("gpt2 calibration: a bad --calib-tokens is an error naming the option, the value and the limit") {
  std::vector<std::int32_t> text(3001);
  const auto base = config::from_name("124M");
  FRUGAL_CHECK_THROWS_WITH(
      make_calibration_text(text, 2000, base, 2),
      "gpt2::calibration: --calib-tokens (=2000) is more than the training split holds: 3001 tokens, which give at "
      "most 1500 for the rotations and as many more for the thresholds");
  FRUGAL_CHECK_THROWS_WITH(make_calibration_text(text, 4000, base, 1),
                           "gpt2::calibration: --calib-tokens (=4000) is more than the training split holds: 3001 "
                           "tokens; at most 3001");
  FRUGAL_CHECK_THROWS_WITH(make_calibration_text(text, 4000, base, 1, "the training split (in patch tokens)"),
                           "more than the training split (in patch tokens) holds");
  CHECK(make_calibration_text(text, 2000, base, 1).rotation.size() == 2);  // without thresholds n tokens suffice
  CHECK(make_calibration_text(text, 1500, base, 2).per_use == 1500);       // the limit itself
  FRUGAL_CHECK_THROWS_WITH(make_calibration_text(text, -5, base, 2),
                           "gpt2::calibration: --calib-tokens (=-5) must be 0 (the default) or an integer in [2, the "
                           "tokens of the training split]");
  FRUGAL_CHECK_THROWS_WITH(make_calibration_text(text, 1, base, 2), "--calib-tokens (=1) must be 0 (the default)");
  FRUGAL_CHECK_THROWS_WITH(make_calibration_text(std::vector<std::int32_t>(3), 0, base, 2),
                           "gpt2::calibration: the training split has 3 tokens; at least 4 needed");
  // the command line: refused at parsing (negative, 1, not an integer), accepted as before otherwise
  auto parse = [](std::vector<std::string> args) {
    args.insert(args.begin(), "gpt2");
    std::vector<char*> argv;
    for (auto& x : args) argv.push_back(x.data());
    return cli::parse(static_cast<int>(argv.size()), argv.data());
  };
  FRUGAL_CHECK_THROWS_WITH(parse({"--calib-tokens", "-1"}), "--calib-tokens (=-1) must be 0 (the default)");
  FRUGAL_CHECK_THROWS_WITH(parse({"--calib-tokens", "1"}), "--calib-tokens (=1) must be 0 (the default)");
  FRUGAL_CHECK_THROWS_WITH(parse({"--calib-tokens", "2.5"}), "--calib-tokens (=2.5) must be 0 (the default)");
  FRUGAL_CHECK_THROWS_WITH(parse({"--calib-tokens", "1e12"}), "--calib-tokens (=1e+12) must be 0");
  for (int n : {0, 2, 512, 1023, 3200}) CHECK(parse({"--calib-tokens", std::to_string(n)}).calib_tokens == n);
  CHECK(parse({}).calib_tokens == 0);
}
