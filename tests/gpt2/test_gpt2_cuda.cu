// CUDA tests of the GPT-2 example (run on the GPU machine; skip without a GPU): no cache, contiguous KV and paged KV
// give identical greedy tokens with the decode step replayed from a CUDA Graph; the CUDA logits match the CPU
// engine's; batches and teacher forcing behave as on the CPU; seeded sampling is the same on CPU and GPU; the fused
// decode step (norm / GELU in the GEMVs with PDL, KV append in the attention) matches the step with separate ops;
// the threshold rule (TEAL's calibrated thresholds, norm fused in the GEMV on both models) gives the CPU's tokens,
// logits and kept fractions, and all-zero thresholds give the dense tokens.
#include <doctest/doctest.h>

#include <common/cuda_test_util.cuh>
#include <common/test_util.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "larosa.hpp"
#include "thresholds.hpp"

namespace {

using namespace gpt2;

config cuda_config() {  // head_dim 64 (the CUDA attention supports 64, 80, 96, 128)
  config c;
  c.name = "test";
  c.n_layer = 3, c.n_head = 4, c.n_embd = 256, c.vocab_size = 3001, c.n_ctx = 128;  // odd V: padded LM head
  return c;
}

std::vector<std::int32_t> prompt(int n, int seed, int V) {
  std::vector<std::int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = static_cast<std::int32_t>(detail::splitmix64(seed * 1000 + i) % V);
  return p;
}

template <class Tag, class T>
std::vector<std::vector<std::int32_t>> run(typename backend<Tag>::context& c, const device_model<Tag, T>& m, attn_kind a,
                                           const std::vector<std::vector<std::int32_t>>& prompts, int n_new,
                                           sampling s = {}, int page = 16) {
  session_options o;
  o.attn = a;
  o.max_batch = static_cast<int>(prompts.size());
  o.max_seq = 100;
  o.page_size = page;
  o.sample = s;
  session<Tag, T> sess(c, m, o);
  sess.start(prompts);
  sess.decode(n_new - 1);
  return sess.generated();
}

template <class Tag, class T>
std::vector<float> forced_logits(typename backend<Tag>::context& c, const device_model<Tag, T>& m, attn_kind a,
                                 const std::vector<std::int32_t>& text, int prompt_len, float p = 0.f,
                                 bool fused = true, int decode_splits = -1, bool plan_follows = true,
                                 int attn_splits = 0, std::vector<int>* bounds = nullptr) {
  session_options o;
  o.attn = a;
  o.max_seq = static_cast<int>(text.size()) + 2;
  o.p = p;
  o.fused = fused;
  o.decode_splits = decode_splits;
  o.attn_plan_follows = plan_follows;
  o.attn_splits = attn_splits;
  session<Tag, T> s(c, m, o);
  const std::vector<std::vector<std::int32_t>> pr = {std::vector<std::int32_t>(text.begin(), text.begin() + prompt_len)};
  const std::vector<std::vector<std::int32_t>> f = {std::vector<std::int32_t>(text.begin() + prompt_len, text.end())};
  if (a == attn_kind::nocache) {
    s.start({text});
  } else {
    s.start(pr, &f);
    s.decode(static_cast<int>(text.size()) - prompt_len);
  }
  if (bounds) *bounds = s.captured_bounds();
  return s.logits();
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) num += double(a[i] - b[i]) * (a[i] - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / den);
}

}  // namespace

// FRUGAL_TEST_SMALL (compute-sanitizer runs): bf16 cases skipped (f32 and f16 run the same kernels), shorter
// decodes, and the fused-step comparison without the LaRoSA-folded model (its calibration is minutes of eigh under
// racecheck). FRUGAL_TEST_SMALL=2 (racecheck): shorter still — every decode step replays the same kernels, so a few
// steps (prefill, the captured first step, replays) cover them.
TEST_CASE_TEMPLATE("gpt2 cuda: no cache, contiguous and paged KV give identical greedy tokens (graph replay)", T,
                   float, frugal::half, frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  const bool small = frugal_test::small_tests();
  if (small && std::is_same_v<T, frugal::bfloat16>) return;
  const int n = frugal_test::tiny_tests() ? 4 : small ? 12 : 40;
  backend<frugal::cuda_t>::context c;
  auto m = upload_model<frugal::cuda_t, T>(c, random_weights(cuda_config(), 11));
  const auto p = prompt(13, 1, m.cfg.vocab_size);
  const auto a = run<frugal::cuda_t, T>(c, m, attn_kind::nocache, {p}, n);
  const auto b = run<frugal::cuda_t, T>(c, m, attn_kind::contiguous, {p}, n);
  const auto d = run<frugal::cuda_t, T>(c, m, attn_kind::paged, {p}, n);
  const auto e = run<frugal::cuda_t, T>(c, m, attn_kind::paged, {p}, n, {}, 5);
  CHECK(a[0] == b[0]);
  CHECK(b[0] == d[0]);
  CHECK(b[0] == e[0]);
}

TEST_CASE_TEMPLATE("gpt2 cuda: logits match the CPU engine (every mode, teacher forced)", T, float, frugal::half,
                   frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  if (frugal_test::small_tests() && std::is_same_v<T, frugal::bfloat16>) return;
  const double tol = std::is_same_v<T, float> ? 1e-4 : std::is_same_v<T, frugal::half> ? 2e-2 : 6e-2;
  backend<frugal::cuda_t>::context c;
  backend<frugal::cpu_t>::context h;
  auto mg = upload_model<frugal::cuda_t, T>(c, random_weights(cuda_config(), 4));
  auto mc = upload_model<frugal::cpu_t, float>(h, random_weights(cuda_config(), 4));
  const auto text = prompt(frugal_test::tiny_tests() ? 22 : 40, 3, mg.cfg.vocab_size);
  const auto ref = forced_logits<frugal::cpu_t, float>(h, mc, attn_kind::contiguous, text, 17);
  for (attn_kind a : {attn_kind::nocache, attn_kind::contiguous, attn_kind::paged}) {
    CAPTURE(attn_name(a));
    CHECK(rel_err(forced_logits<frugal::cuda_t, T>(c, mg, a, text, 17), ref) < tol);
  }
  // sparse decode: the CUDA and CPU fused top-k GEMVs keep the same channels up to ties
  const auto sref = forced_logits<frugal::cpu_t, float>(h, mc, attn_kind::contiguous, text, 17, 0.5f);
  if (std::is_same_v<T, float>) CHECK(rel_err(forced_logits<frugal::cuda_t, T>(c, mg, attn_kind::paged, text, 17, 0.5f), sref) < tol);
}

TEST_CASE("gpt2 cuda: batched decode equals one sequence at a time; sampling equals the CPU's") {
  FRUGAL_REQUIRE_GPU();
  backend<frugal::cuda_t>::context c;
  backend<frugal::cpu_t>::context h;
  auto m = upload_model<frugal::cuda_t, float>(c, random_weights(cuda_config(), 5));
  auto mc = upload_model<frugal::cpu_t, float>(h, random_weights(cuda_config(), 5));
  const int V = m.cfg.vocab_size;
  const std::vector<std::vector<std::int32_t>> ps = {prompt(7, 2, V), prompt(1, 3, V), prompt(20, 4, V), prompt(16, 5, V)};
  const int n = frugal_test::tiny_tests() ? 5 : 20;
  for (attn_kind a : {attn_kind::contiguous, attn_kind::paged}) {
    CAPTURE(attn_name(a));
    const auto batch = run<frugal::cuda_t, float>(c, m, a, ps, n);
    for (std::size_t r = 0; r < ps.size(); ++r) CHECK(batch[r] == run<frugal::cuda_t, float>(c, m, attn_kind::nocache, {ps[r]}, n)[0]);
  }
  sampling s;
  s.temperature = 1.5f, s.top_k = 40, s.top_p = 0.9f, s.seed = 77;
  const auto g = run<frugal::cuda_t, float>(c, m, attn_kind::paged, {ps[2]}, n, s);
  const auto r = run<frugal::cpu_t, float>(h, mc, attn_kind::contiguous, {ps[2]}, n, s);
  // same noise, same rule; the f32 logits differ by rounding only, far from any knife edge of the draw
  CHECK(g == r);
}

TEST_CASE_TEMPLATE("gpt2 cuda: the fused decode step (norm / GELU inside the GEMVs) matches separate ops", T, float,
                   frugal::half) {
  FRUGAL_REQUIRE_GPU();
  // f16: the fused step does not round the normalised input / the pre-GELU value to T; sparse decode can then keep a
  // different channel at a near-tie of the top-k (CPU f16: 4e-4 dense, 6e-3 at p = 0.5)
  const bool f32 = std::is_same_v<T, float>;
  backend<frugal::cuda_t>::context c;
  auto w = random_weights(cuda_config(), 8);
  for (auto& l : w.layers) {  // non-trivial LayerNorm affines, folded at upload
    detail::fill_normal(l.ln1_g, 8, 101, 0.2f), detail::fill_normal(l.ln1_b, 8, 102, 0.1f);
    for (auto& g : l.ln1_g) g += 1.f;
  }
  detail::fill_normal(w.lnf_b, 8, 110, 0.1f);
  auto wr = w;
  auto dense = upload_model<frugal::cuda_t, T>(c, std::move(w));
  const auto text = prompt(frugal_test::tiny_tests() ? 22 : 40, 6, dense.cfg.vocab_size);
  std::vector<const decltype(dense)*> models = {&dense};
  std::optional<decltype(dense)> folded;
  if (!frugal_test::small_tests()) {
    const auto rot = larosa_calibrate(c, dense, prompt(64, 9, dense.cfg.vocab_size), larosa_options{});
    folded.emplace(upload_model<frugal::cuda_t, T>(c, larosa_apply<frugal::cuda_t>(c, std::move(wr), rot)));
    models.push_back(&*folded);
  }
  for (const auto* m : models)
    for (float p : {0.f, 0.5f})
      for (attn_kind a : {attn_kind::contiguous, attn_kind::paged}) {
        CAPTURE(m->rms);
        CAPTURE(p);
        CAPTURE(attn_name(a));
        const auto f = forced_logits<frugal::cuda_t, T>(c, *m, a, text, 17, p, true);
        const auto u = forced_logits<frugal::cuda_t, T>(c, *m, a, text, 17, p, false);
        // f16 sparse: H100 measured 0.061 and 0.099 (2026-11-23) — f16 GELU outputs tie exactly and often, and the
        // unrounded pre-GELU value of the fused epilogue moves channels across the k-th magnitude; a wrong kernel
        // gives ~1. f32 and dense f16 stay tight.
        CHECK(rel_err(f, u) < (p > 0 ? (f32 ? 1e-3 : 0.2) : (f32 ? 1e-5 : 2e-2)));
      }
  // greedy tokens of the fused step equal the no-cache recompute (which never runs the decode GEMVs)
  const auto pr = prompt(13, 2, dense.cfg.vocab_size);
  const int n = frugal_test::tiny_tests() ? 6 : 30;
  CHECK(run<frugal::cuda_t, T>(c, dense, attn_kind::contiguous, {pr}, n)[0] ==
        run<frugal::cuda_t, T>(c, dense, attn_kind::nocache, {pr}, n)[0]);
}

TEST_CASE_TEMPLATE("gpt2 cuda: the layer GEMVs' K splits (decode_splits auto / library / 2) give the same step", T,
                   float, frugal::half) {
  FRUGAL_REQUIRE_GPU();
  backend<frugal::cuda_t>::context c;
  auto dense = upload_model<frugal::cuda_t, T>(c, random_weights(cuda_config(), 14));
  const auto text = prompt(frugal_test::tiny_tests() ? 22 : 40, 8, dense.cfg.vocab_size);
  const auto a = forced_logits<frugal::cuda_t, T>(c, dense, attn_kind::contiguous, text, 17, 0.f, true, -1);
  for (int sp : {0, 2}) {
    CAPTURE(sp);
    const auto b = forced_logits<frugal::cuda_t, T>(c, dense, attn_kind::contiguous, text, 17, 0.f, true, sp);
    CHECK(rel_err(a, b) < (std::is_same_v<T, float> ? 1e-5 : 2e-2));  // other summation orders only
  }
}

// The attention's split-K bound follows the longest sequence (one graph per bound) or stays at max_seq: the same
// logits up to the split boundaries' summation order, with the library's plan and with pinned splits, contiguous
// and paged; the session captured one graph per bound it crossed.
TEST_CASE_TEMPLATE("gpt2 cuda: the attention plan following the sequence length gives the same step", T, float,
                   frugal::half) {
  FRUGAL_REQUIRE_GPU();
  backend<frugal::cuda_t>::context c;
  auto dense = upload_model<frugal::cuda_t, T>(c, random_weights(cuda_config(), 15));
  const bool tiny = frugal_test::tiny_tests();
  const auto text = prompt(tiny ? 70 : 100, 9, dense.cfg.vocab_size);  // prompt 58: decode crosses the bound 64
  const double tol = std::is_same_v<T, float> ? 1e-5 : 2e-2;
  for (attn_kind a : {attn_kind::contiguous, attn_kind::paged})
    for (int splits : {0, 3}) {
      CAPTURE(attn_name(a));
      CAPTURE(splits);
      std::vector<int> bf, bx;
      const auto follow = forced_logits<frugal::cuda_t, T>(c, dense, a, text, 58, 0.f, true, -1, true, splits, &bf);
      const auto fixed = forced_logits<frugal::cuda_t, T>(c, dense, a, text, 58, 0.f, true, -1, false, splits, &bx);
      CHECK(rel_err(follow, fixed) < tol);
      CHECK(bf == std::vector<int>{64, static_cast<int>(text.size()) + 2});  // 128 capped at max_seq
      CHECK(bx == std::vector<int>{static_cast<int>(text.size()) + 2});
    }
}

namespace {
//! Teacher-forced logits of the last step with the threshold rule (CUDA: graph replay, or op by op with count_kept);
//! the kept fraction per (layer, site) in *kept when given.
template <class Tag, class T>
std::vector<float> threshold_logits(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                    const std::vector<std::int32_t>& text, int prompt_len, const std::vector<float>& thr,
                                    std::vector<double>* kept = nullptr) {
  session_options o;
  o.attn = attn_kind::paged;
  o.page_size = 5;
  o.max_seq = static_cast<int>(text.size()) + 2;
  o.thresholds = thr;
  o.count_kept = kept != nullptr;
  session<Tag, T> s(c, m, o);
  const std::vector<std::vector<std::int32_t>> pr = {std::vector<std::int32_t>(text.begin(), text.begin() + prompt_len)};
  const std::vector<std::vector<std::int32_t>> f = {std::vector<std::int32_t>(text.begin() + prompt_len, text.end())};
  s.start(pr, &f);
  s.decode(static_cast<int>(text.size()) - prompt_len);
  if (kept) *kept = s.kept_fraction();
  return s.logits();
}

template <class Tag, class T>
std::vector<std::int32_t> threshold_greedy(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                           const std::vector<std::int32_t>& pr, int n_new, const std::vector<float>& thr) {
  session_options o;
  o.max_seq = 100;
  o.thresholds = thr;
  session<Tag, T> s(c, m, o);
  s.start({pr});
  s.decode(n_new - 1);
  return s.generated()[0];
}
}  // namespace

TEST_CASE_TEMPLATE("gpt2 cuda: the threshold rule (TEAL) matches the CPU engine; zero thresholds are dense", T, float,
                   frugal::half) {
  FRUGAL_REQUIRE_GPU();
  // One table, calibrated on the CPU f32 model at p = 0.5, drives both engines (this compares the rule, not the
  // calibration). f32: a channel moves across t only at a near-tie of |x̂| with t (CUDA's fused norm: f32 Welford,
  // the CPU's: f64), so the logits agree to the tolerance of the dense and top-k cases. f16: the decode values
  // themselves are rounded differently, channels near t flip; bounded loosely as the f16 sparse fused-vs-unfused case.
  const bool f32 = std::is_same_v<T, float>;
  const double tol = f32 ? 1e-4 : 0.3;
  backend<frugal::cuda_t>::context c;
  backend<frugal::cpu_t>::context h;
  auto w = random_weights(cuda_config(), 12);
  for (auto& l : w.layers) {  // non-trivial LayerNorm affines, folded at upload
    detail::fill_normal(l.ln1_g, 12, 101, 0.2f), detail::fill_normal(l.ln1_b, 12, 102, 0.1f);
    for (auto& g : l.ln1_g) g += 1.f;
  }
  const int V = w.cfg.vocab_size;
  const auto cal = prompt(64, 13, V);
  const auto text = prompt(frugal_test::tiny_tests() ? 22 : 40, 14, V);
  auto wf = w;
  auto mc = upload_model<frugal::cpu_t, float>(h, weights(w));
  auto mg = upload_model<frugal::cuda_t, T>(c, std::move(w));
  struct pair_t {
    const device_model<frugal::cpu_t, float>* cpu;
    const device_model<frugal::cuda_t, T>* gpu;
  };
  std::vector<pair_t> models = {{&mc, &mg}};
  std::optional<device_model<frugal::cpu_t, float>> fc;
  std::optional<device_model<frugal::cuda_t, T>> fg;
  if (!frugal_test::small_tests()) {  // the rotation-folded model (rmsnorm in the GEMV), rotations from the CPU
    const auto rot = larosa_calibrate(h, mc, cal, larosa_options{});
    auto folded = larosa_apply<frugal::cpu_t>(h, std::move(wf), rot);
    fc.emplace(upload_model<frugal::cpu_t, float>(h, weights(folded)));
    fg.emplace(upload_model<frugal::cuda_t, T>(c, std::move(folded)));
    models.push_back({&*fc, &*fg});
  }
  for (const auto& [cm, gm] : models) {
    CAPTURE(cm->rms);
    const auto thr = calibrate_thresholds(h, *cm, cal, 0.5f);
    const auto ref = threshold_logits<frugal::cpu_t, float>(h, *cm, text, 17, thr);
    CHECK(rel_err(threshold_logits<frugal::cuda_t, T>(c, *gm, text, 17, thr), ref) < tol);  // graph replay
    std::vector<double> kc, kg;
    threshold_logits<frugal::cpu_t, float>(h, *cm, text, 17, thr, &kc);
    const auto lg = threshold_logits<frugal::cuda_t, T>(c, *gm, text, 17, thr, &kg);  // op by op, counting
    CHECK(rel_err(lg, ref) < tol);
    REQUIRE(kc.size() == kg.size());
    for (std::size_t i = 0; i < kc.size(); ++i) {
      CAPTURE(i);
      CHECK(std::abs(kc[i] - kg[i]) < (f32 ? 0.01 : 0.05));
      // held-out tokens keep about 1 - p on the LayerNorm model (CPU: 0.47..0.51). Not on the folded one: its
      // rotation was calibrated on the same 64 tokens (< C = 256 dimensions), whose rotated x̂ are concentrated in
      // few channels, so held-out text keeps ~0.8 at qkv / fc (CPU, measured).
      if (!cm->rms) CHECK(std::abs(kc[i] - 0.5) < 0.1);
    }
    const auto pr = prompt(13, 15, V);
    const int n = frugal_test::tiny_tests() ? 6 : 24;
    if (f32) CHECK(threshold_greedy<frugal::cuda_t, T>(c, *gm, pr, n, thr) == threshold_greedy<frugal::cpu_t, float>(h, *cm, pr, n, thr));
    // all-zero thresholds keep every channel: the dense logits (f16: same products, another summation order) and,
    // in f32, the dense greedy tokens
    const std::vector<float> zeros(thr.size(), 0.f);
    CHECK(rel_err(threshold_logits<frugal::cuda_t, T>(c, *gm, text, 17, zeros),
                  threshold_logits<frugal::cuda_t, T>(c, *gm, text, 17, {})) < (f32 ? 1e-5 : 2e-2));
    if (f32) CHECK(threshold_greedy<frugal::cuda_t, T>(c, *gm, pr, n, zeros) == threshold_greedy<frugal::cuda_t, T>(c, *gm, pr, n, {}));
  }
}

// ---- the one-kernel decode step (session_options::mega, mega_cuda.cuh) ----------------------------------------------
namespace {
template <class T>
session_options mega_options(int max_seq, bool mega) {
  session_options o;
  o.attn = attn_kind::contiguous;
  o.max_seq = max_seq;
  o.mega = mega;
  return o;
}
}  // namespace

TEST_CASE_TEMPLATE("gpt2 cuda: the one-kernel decode step (mega) matches the component step", T, float, frugal::half,
                   frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  const bool small = frugal_test::small_tests();
  if (small && std::is_same_v<T, frugal::bfloat16>) return;
  // Same rounding points as the component step, another summation order: f32 within rounding, f16 / bf16 within
  // their storage precision accumulated over the layers.
  const double tol = std::is_same_v<T, float> ? 1e-5 : std::is_same_v<T, frugal::half> ? 2e-2 : 6e-2;
  backend<frugal::cuda_t>::context c;
  config cfg = cuda_config();
  cfg.n_ctx = small ? 128 : 700;  // > 512 keys: the attention's key loop wraps around the block
  auto w = random_weights(cfg, 12);
  for (auto& l : w.layers) {  // LayerNorm affines (folded into biases at upload): every bias pointer is non-null
    detail::fill_normal(l.ln1_g, 8, 201, 0.2f), detail::fill_normal(l.ln1_b, 8, 202, 0.1f);
    for (auto& g : l.ln1_g) g += 1.f;
  }
  detail::fill_normal(w.lnf_b, 8, 210, 0.1f);
  auto m = upload_model<frugal::cuda_t, T>(c, std::move(w));
  const int V = m.cfg.vocab_size;

  // teacher-forced logits after every step of a text (the KV cache written by the kernel is read back by it)
  const auto text = prompt(frugal_test::tiny_tests() ? 20 : 40, 7, V);
  auto forced = [&](bool mega) {
    session<frugal::cuda_t, T> s(c, m, mega_options<T>(static_cast<int>(text.size()) + 2, mega));
    const std::vector<std::vector<std::int32_t>> pr = {std::vector<std::int32_t>(text.begin(), text.begin() + 13)};
    const std::vector<std::vector<std::int32_t>> f = {std::vector<std::int32_t>(text.begin() + 13, text.end())};
    s.start(pr, &f);
    s.decode(static_cast<int>(text.size()) - 13);
    return s.logits();
  };
  CHECK(rel_err(forced(true), forced(false)) < tol);

  // greedy decode (graph replays of the cooperative kernel): the component step's tokens; long enough to pass 512
  // keys when not small
  const int n = frugal_test::tiny_tests() ? 5 : small ? 30 : 600;
  const auto pr = prompt(13, 3, V);
  auto greedy = [&](bool mega) {
    session<frugal::cuda_t, T> s(c, m, mega_options<T>(13 + n + 1, mega));
    s.start({pr});
    s.decode(n - 1);
    return s.generated()[0];
  };
  const auto gm = greedy(true), gk = greedy(false);
  REQUIRE(gm.size() == gk.size());
  if (std::is_same_v<T, float>) {
    CHECK(gm == gk);
  } else {  // f16 / bf16: the other summation order may flip a near-tie late in a long decode; the start agrees
    const std::size_t agree = std::mismatch(gm.begin(), gm.end(), gk.begin()).first - gm.begin();
    CHECK(agree >= std::min<std::size_t>(gm.size(), 10));
  }

  // what the kernel does not run is refused before anything is allocated
  auto bad = [&](auto edit) {
    auto o = mega_options<T>(40, true);
    edit(o);
    CHECK_THROWS_AS((session<frugal::cuda_t, T>(c, m, o)), frugal::error);
  };
  bad([](session_options& o) { o.max_batch = 2; });
  bad([](session_options& o) { o.attn = attn_kind::paged; });
  bad([](session_options& o) { o.p = 0.5f; });
}
