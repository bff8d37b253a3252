// Tests of the threshold rule (TEAL's calibrated thresholds) in the GPT-2 example, on the CPU: all-zero thresholds
// give the dense decode (greedy tokens and logits) on the unrotated and the rotation-folded model, fused and not;
// calibrate_thresholds returns the p-quantile of each site (checked directly on the prefill activations, and through
// the kept fraction the decode GEMVs realise on the calibration text, per site — a wrong quantile or a wrong site
// shows there); on several sequences, the exact quantile of all their activations together; threshold and top-k at
// the same p both run and differ from dense; bad tables are errors that leave the session unchanged.
#include <doctest/doctest.h>

#include <common/test_util.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gpt2_test_models.hpp"
#include "larosa.hpp"
#include "thresholds.hpp"

namespace {

using namespace gpt2;
using ctx_t = backend<frugal::cpu_t>::context;

config small_config() {
  config c;
  c.name = "test";
  c.n_layer = 3, c.n_head = 4, c.n_embd = 128, c.vocab_size = 1001, c.n_ctx = 96;  // odd V: padded LM head
  return c;
}

weights model_with_affine(std::uint64_t seed) {
  return gpt2_test::model_with_affine(small_config(), seed);
}

using gpt2_test::tokens;

template <class T>
std::vector<std::int32_t> greedy(ctx_t& c, const device_model<frugal::cpu_t, T>& m, const std::vector<std::int32_t>& pr,
                                 int n_new, float p, std::vector<float> thr = {}) {
  session_options o;
  o.max_seq = 80;
  o.p = p;
  o.thresholds = std::move(thr);
  session<frugal::cpu_t, T> s(c, m, o);
  s.start({pr});
  s.decode(n_new - 1);
  return s.generated()[0];
}

//! Teacher-forced logits of every decode step (prefill `prefix` tokens, then feed the rest), concatenated; the kept
//! fraction per (layer, site) over those steps in *kept when given.
template <class T>
std::vector<float> logits(ctx_t& c, const device_model<frugal::cpu_t, T>& m, float p, std::vector<float> thr,
                          const std::vector<std::int32_t>& text, bool fused = true, std::vector<double>* kept = nullptr,
                          int prefix = 8) {
  session_options o;
  o.max_seq = static_cast<int>(text.size()) + 2;
  o.p = p;
  o.thresholds = std::move(thr);
  o.fused = fused;
  o.count_kept = kept != nullptr;
  session<frugal::cpu_t, T> s(c, m, o);
  const std::vector<std::vector<std::int32_t>> pr = {std::vector<std::int32_t>(text.begin(), text.begin() + prefix)};
  const std::vector<std::vector<std::int32_t>> f = {std::vector<std::int32_t>(text.begin() + prefix, text.end())};
  s.start(pr, &f);
  std::vector<float> all;
  for (std::size_t i = prefix; i < text.size(); ++i) {
    s.decode(1);
    const auto l = s.logits();
    all.insert(all.end(), l.begin(), l.end());
  }
  if (kept) *kept = s.kept_fraction();
  return all;
}

using gpt2_test::rel_err;

}  // namespace

TEST_CASE_TEMPLATE("gpt2 thresholds: all zero keeps every channel — the dense decode (tokens and logits)", T, float,
                   frugal::half) {
  // t = 0 keeps |v| >= 0, every channel: the threshold GEMV sums the same products as the dense one (f32 ~1e-6;
  // f16: the same rounding of the output, small differences of summation order).
  const double tol = std::is_same_v<T, float> ? 1e-5 : 2e-3;
  ctx_t c;
  auto dense = upload_model<frugal::cpu_t, T>(c, model_with_affine(3));
  const auto rot = larosa_calibrate(c, dense, tokens(48, 5, 1001), larosa_options{});
  auto folded = upload_model<frugal::cpu_t, T>(c, larosa_apply<frugal::cpu_t>(c, model_with_affine(3), rot));
  const std::vector<float> zeros(static_cast<std::size_t>(dense.cfg.n_layer) * 4, 0.f);
  const auto pr = tokens(13, 1, 1001), text = tokens(24, 2, 1001);
  for (const auto* m : {&dense, &folded}) {
    CAPTURE(m->rms);
    CHECK(greedy(c, *m, pr, 24, 0.f, zeros) == greedy(c, *m, pr, 24, 0.f));
    CHECK(greedy(c, *m, pr, 24, 0.5f, zeros) == greedy(c, *m, pr, 24, 0.f));  // thresholds win over p's top-k
    for (bool fused : {true, false}) {
      CAPTURE(fused);
      CHECK(rel_err(logits(c, *m, 0.f, zeros, text, fused), logits(c, *m, 0.f, {}, text, fused)) < tol);
    }
  }
}

TEST_CASE("gpt2 thresholds: calibration gives each site's p-quantile; decode realises about p on that text") {
  ctx_t c;
  auto dense = upload_model<frugal::cpu_t, float>(c, model_with_affine(7));
  const auto cal = tokens(80, 11, 1001);
  const auto rot = larosa_calibrate(c, dense, cal, larosa_options{});
  auto folded = upload_model<frugal::cpu_t, float>(c, larosa_apply<frugal::cpu_t>(c, model_with_affine(7), rot));
  const int L = dense.cfg.n_layer;
  for (const auto* m : {&dense, &folded}) {
    CAPTURE(m->rms);
    const auto all = calibrate_thresholds(c, *m, cal, std::vector<float>{0.f, 0.25f, 0.5f, 0.75f});
    REQUIRE(all.size() == 4);
    for (float t : all[0]) CHECK(t == 0.f);            // p = 0: dense
    for (std::size_t i = 0; i < all[1].size(); ++i) {  // the quantile grows with p; every site has a spread
      CHECK(all[1][i] > 0.f);
      CHECK(all[1][i] <= all[2][i]);
      CHECK(all[2][i] < all[3][i]);
    }
    const auto thr = all[2];
    CHECK(thr == calibrate_thresholds(c, *m, cal, 0.5f));  // one p = the same pass with several
    // directly: on the prefill activations of the calibration text, |v| < t for half of each site's values
    std::vector<double> below(thr.size(), 0.0), n(thr.size(), 0.0);
    calibration_prefill(c, *m, cal, [&](session<frugal::cpu_t, float>& s) {
      s.on_block_input = [&](int l, int site, const float* X, int rows, int cols) {
        const std::size_t i = std::size_t(l) * 4 + site;
        for (std::int64_t j = 0; j < std::int64_t(rows) * cols; ++j) below[i] += std::abs(X[j]) < thr[i];
        n[i] += double(rows) * cols;
      };
    });
    for (std::size_t i = 0; i < thr.size(); ++i) {
      CAPTURE(i);
      CHECK(std::abs(below[i] / n[i] - 0.5) < 0.02);  // ties at t are kept
    }
    // through the decode GEMVs (teacher forced on the calibration text, fused and unfused): the fraction each site
    // drops. Layer 0's qkv input is the same as in the calibration pass; later sites see the sparsified model, so
    // their fractions drift a little. A threshold computed on another site (a GELU output vs an attention output, a
    // normalised vs a raw input) lands far from 0.5.
    for (bool fused : {true, false}) {
      CAPTURE(fused);
      std::vector<double> kept;
      logits(c, *m, 0.f, thr, cal, fused, &kept, 16);
      REQUIRE(kept.size() == thr.size());
      CHECK(std::abs((1 - kept[0]) - 0.5) < 0.06);
      for (int s = 0; s < 4; ++s) {
        double mean = 0;
        for (int l = 0; l < L; ++l) {
          CAPTURE(l);
          CAPTURE(site_name(s));
          CHECK(std::abs((1 - kept[l * 4 + s]) - 0.5) < 0.15);
          mean += (1 - kept[l * 4 + s]) / L;
        }
        CAPTURE(site_name(s));
        CHECK(std::abs(mean - 0.5) < 0.1);
      }
    }
    // the counters also measure top-k: k = round((1 - p) K) kept (ties at the k-th magnitude too)
    std::vector<double> kept;
    logits(c, *m, 0.5f, {}, cal, true, &kept, 16);
    for (double k : kept) CHECK(std::abs(k - 0.5) < 0.01);
  }
}

TEST_CASE_TEMPLATE("gpt2 thresholds: threshold and top-k at the same p both differ from dense", T, float,
                   frugal::half) {
  ctx_t c;
  auto dense = upload_model<frugal::cpu_t, T>(c, model_with_affine(9));
  const auto cal = tokens(64, 3, 1001), text = tokens(24, 4, 1001);
  const auto rot = larosa_calibrate(c, dense, cal, larosa_options{});
  auto folded = upload_model<frugal::cpu_t, T>(c, larosa_apply<frugal::cpu_t>(c, model_with_affine(9), rot));
  for (const auto* m : {&dense, &folded}) {
    CAPTURE(m->rms);
    const auto thr = calibrate_thresholds(c, *m, cal, 0.5f);
    const auto ref = logits(c, *m, 0.f, {}, text);
    const auto th = logits(c, *m, 0.5f, thr, text), tk = logits(c, *m, 0.5f, {}, text);
    const double eth = rel_err(th, ref), etk = rel_err(tk, ref);
    CAPTURE(eth);
    CAPTURE(etk);
    CHECK(std::isfinite(eth));
    CHECK(std::isfinite(etk));
    CHECK(eth > 1e-3);  // something was dropped
    CHECK(etk > 1e-3);
    CHECK(eth < 1.0);  // but the model still computes roughly the same logits
    CHECK(etk < 1.0);
    CHECK(rel_err(th, tk) > 1e-3);  // different rules, different kept sets
    // the fused threshold step (norm in the GEMV, also on the LayerNorm model) equals separate ops; f16 can move a
    // channel across t by the rounding of x̂ (fused: unrounded)
    CHECK(rel_err(th, logits(c, *m, 0.5f, thr, text, false)) < (std::is_same_v<T, float> ? 1e-4 : 0.2));
    // greedy decode runs with both rules
    CHECK(greedy(c, *m, tokens(9, 5, 1001), 12, 0.5f, thr).size() == 12);
  }
}

TEST_CASE("gpt2 thresholds: bad tables are errors naming the values; the session is unchanged") {
  ctx_t c;
  auto m = upload_model<frugal::cpu_t, float>(c, random_weights(small_config(), 1));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  session_options o;
  o.max_seq = 40;
  o.thresholds = std::vector<float>(11, 0.1f);
  FRUGAL_CHECK_THROWS_WITH((session<frugal::cpu_t, float>(c, m, o)),
                           "gpt2::session: thresholds has 11 values; expected n_layer * 4 = 3 * 4 = 12");
  o.thresholds = std::vector<float>(12, 0.1f);
  o.thresholds[5] = nan;
  FRUGAL_CHECK_THROWS_WITH((session<frugal::cpu_t, float>(c, m, o)),
                           "gpt2::session: thresholds[5] (layer 1, site o_proj) = nan must be >= 0 and not NaN");
  o.thresholds[5] = 0.1f;
  o.thresholds[11] = -0.5f;
  FRUGAL_CHECK_THROWS_WITH((session<frugal::cpu_t, float>(c, m, o)),
                           "gpt2::session: thresholds[11] (layer 2, site down) = -0.5 must be >= 0 and not NaN");
  o.thresholds[11] = std::numeric_limits<float>::infinity();  // allowed: keeps no channel of that input
  CHECK_NOTHROW((session<frugal::cpu_t, float>(c, m, o)));

  // set_thresholds between steps: a bad table throws and the session decodes on as if it had not been called
  const auto pr = tokens(7, 6, 1001);
  const std::vector<float> good(12, 0.3f);
  auto run = [&](bool bad_calls) {
    session_options so;
    so.max_seq = 40;
    so.thresholds = good;
    session<frugal::cpu_t, float> s(c, m, so);
    s.start({pr});
    s.decode(3);
    if (bad_calls) {
      FRUGAL_CHECK_THROWS_WITH(s.set_thresholds(std::vector<float>(4, 0.f)),
                               "gpt2::session::set_thresholds: thresholds has 4 values");
      std::vector<float> t = good;
      t[2] = -1.f;
      FRUGAL_CHECK_THROWS_WITH(s.set_thresholds(t), "thresholds[2] (layer 0, site fc) = -1 must be >= 0");
      t[2] = nan;
      FRUGAL_CHECK_THROWS_WITH(s.set_thresholds(t), "thresholds[2] (layer 0, site fc) = nan");
      CHECK(s.options().thresholds == good);
    }
    s.decode(6);
    return s.generated()[0];
  };
  CHECK(run(true) == run(false));
  // switching the rule between steps works (empty: top-k at p / dense)
  {
    session_options so;
    so.max_seq = 40;
    session<frugal::cpu_t, float> s(c, m, so);
    s.start({pr});
    s.decode(2);
    s.set_thresholds(good);
    s.decode(2);
    s.set_thresholds({});
    s.decode(2);
    CHECK(s.generated()[0].size() == 7);
  }
  FRUGAL_CHECK_THROWS_WITH(calibrate_thresholds(c, m, tokens(16, 1, 1001), 1.f), "p (=1) must be in [0, 1)");
  FRUGAL_CHECK_THROWS_WITH(calibrate_thresholds(c, m, std::vector<std::int32_t>{}, 0.5f), "needs calibration tokens");
  FRUGAL_CHECK_THROWS_WITH(calibrate_thresholds(c, m, token_sequences{}, 0.5f), "needs calibration tokens");
  FRUGAL_CHECK_THROWS_WITH(calibrate_thresholds(c, m, token_sequences{tokens(16, 1, 1001), tokens(96, 2, 1001)}, 0.5f),
                           "gpt2::calibration_prefill: sequence 1 has 96 tokens; allowed 1..95 (n_ctx - 1)");
}

TEST_CASE_TEMPLATE("gpt2 thresholds: on several sequences, each site's p-quantile of all their activations together", T,
                   float, frugal::half) {
  // The several-sequence path selects in two passes (a histogram of the magnitudes' leading bits, then the one bin);
  // its result must be the exact quantile of the pooled magnitudes that the one-sequence prefills give — f16 has
  // many ties, and p = 0.9 / 0.95 fall where bins are sparse.
  ctx_t c;
  auto dense = upload_model<frugal::cpu_t, T>(c, model_with_affine(4));
  const auto rot = larosa_calibrate(c, dense, tokens(60, 6, 1001), larosa_options{});
  auto folded = upload_model<frugal::cpu_t, T>(c, larosa_apply<frugal::cpu_t>(c, model_with_affine(4), rot));
  const token_sequences seqs = {tokens(40, 21, 1001), tokens(57, 22, 1001), tokens(30, 23, 1001)};
  const std::vector<float> ps = {0.5f, 0.f, 0.25f, 0.75f, 0.9f, 0.95f, 0.5f};
  const std::size_t sites = std::size_t(dense.cfg.n_layer) * 4;
  for (const auto* m : {&dense, &folded}) {
    CAPTURE(m->rms);
    const auto got = calibrate_thresholds(c, *m, seqs, ps);
    REQUIRE(got.size() == ps.size());
    // by hand: every site's magnitudes from a one-sequence prefill of each sequence, pooled
    std::vector<std::vector<float>> pooled(sites);
    for (const auto& q : seqs)
      calibration_prefill(c, *m, q, [&](session<frugal::cpu_t, T>& s) {
        s.on_block_input = [&](int l, int site, const T* X, int rows, int cols) {
          for (std::int64_t j = 0; j < std::int64_t(rows) * cols; ++j)
            pooled[std::size_t(l) * 4 + site].push_back(std::abs(static_cast<float>(frugal::to_float(X[j]))));
        };
      });
    for (auto& v : pooled) std::sort(v.begin(), v.end());
    for (std::size_t i = 0; i < ps.size(); ++i) {
      CAPTURE(ps[i]);
      REQUIRE(got[i].size() == sites);
      for (std::size_t k = 0; k < sites; ++k) {
        CAPTURE(k);
        const std::size_t n = pooled[k].size();
        const float want = ps[i] > 0 ? pooled[k][std::min(n - 1, std::size_t(std::floor(double(ps[i]) * n)))] : 0.f;
        CHECK(got[i][k] == want);
      }
    }
    CHECK(got[0] == got[6]);  // the same p twice
    // the pooled quantile is not the first sequence's alone
    CHECK(got[0] != calibrate_thresholds(c, *m, seqs[0], 0.5f));
    CHECK(calibrate_thresholds(c, *m, seqs, 0.5f) == got[0]);
  }
}
