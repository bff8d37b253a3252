// Tests of LaRoSA in the GPT-2 example: LayerNorm folding and rotation folding (model-level and layer-level with
// residual adapters) leave the logits unchanged at p = 0, within the dtype's tolerance, and calibration produces
// orthogonal rotations. Also: the fused decode step (norm / GELU inside the GEMVs, KV append inside the attention)
// gives the logits of the step with separate ops, dense / TEAL / LaRoSA, contiguous and paged KV.
#include <doctest/doctest.h>

#include <common/test_util.hpp>

#include <cmath>
#include <vector>

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

weights model_with_affine(std::uint64_t seed) { return gpt2_test::model_with_affine(small_config(), seed); }

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
  auto folded = upload_model<frugal::cpu_t, float>(c, larosa_apply<frugal::cpu_t>(c, random_weights(small_config(), 1), rot));
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
