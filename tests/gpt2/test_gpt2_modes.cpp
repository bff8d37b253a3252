// Tests of the GPT-2 example's decoding modes on the CPU: no KV cache, contiguous KV and paged KV give the same
// greedy tokens (batch 1 and batches of different prompt lengths), seeded sampling is reproducible, and teacher
// forcing sees the same logits as a full recompute.
#include <doctest/doctest.h>

#include <common/test_util.hpp>

#include <cmath>
#include <vector>

#include "engine.hpp"

namespace {

using namespace gpt2;

config small_config() {
  config c;
  c.name = "test";
  c.n_layer = 3, c.n_head = 4, c.n_embd = 128, c.vocab_size = 1001, c.n_ctx = 96;  // odd V: padded LM head
  return c;
}

std::vector<std::int32_t> prompt(int n, int seed, int V) {
  std::vector<std::int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = static_cast<std::int32_t>(detail::splitmix64(seed * 1000 + i) % V);
  return p;
}

template <class T>
std::vector<std::vector<std::int32_t>> run(backend<frugal::cpu_t>::context& c, const device_model<frugal::cpu_t, T>& m,
                                           attn_kind a, const std::vector<std::vector<std::int32_t>>& prompts, int n_new,
                                           sampling s = {}, int page = 16) {
  session_options o;
  o.attn = a;
  o.max_batch = static_cast<int>(prompts.size());
  o.max_seq = 80;
  o.page_size = page;
  o.sample = s;
  session<frugal::cpu_t, T> sess(c, m, o);
  sess.start(prompts);
  sess.decode(n_new - 1);
  return sess.generated();
}

//! A naive GPT-2 forward (plain loops, double accumulation), independent of the engine: logits of the last position.
std::vector<double> reference_logits(const weights& w, const std::vector<std::int32_t>& toks) {
  const int C = w.cfg.n_embd, H = w.cfg.n_head, D = C / H, V = w.cfg.vocab_size, n = static_cast<int>(toks.size());
  std::vector<std::vector<double>> x(n, std::vector<double>(C));
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < C; ++i) x[t][i] = double(w.wte[toks[t] * C + i]) + w.wpe[t * C + i];
  auto ln = [&](const std::vector<double>& v, const std::vector<float>& g, const std::vector<float>& b) {
    double mu = 0, var = 0;
    for (double e : v) mu += e;
    mu /= C;
    for (double e : v) var += (e - mu) * (e - mu);
    var /= C;
    std::vector<double> o(C);
    for (int i = 0; i < C; ++i) o[i] = (v[i] - mu) / std::sqrt(var + 1e-5) * g[i] + b[i];
    return o;
  };
  auto lin = [&](const std::vector<double>& v, const std::vector<float>& W, const std::vector<float>& b, int N) {
    std::vector<double> o(b.begin(), b.end());
    for (std::size_t k = 0; k < v.size(); ++k)
      for (int j = 0; j < N; ++j) o[j] += v[k] * W[k * N + j];
    return o;
  };
  for (const auto& L : w.layers) {
    std::vector<std::vector<double>> qkv(n);
    for (int t = 0; t < n; ++t) qkv[t] = lin(ln(x[t], L.ln1_g, L.ln1_b), L.qkv_w, L.qkv_b, 3 * C);
    for (int t = 0; t < n; ++t) {
      std::vector<double> a(C, 0.0);
      for (int h = 0; h < H; ++h) {
        std::vector<double> s(t + 1);
        double mx = -1e300, z = 0;
        for (int u = 0; u <= t; ++u) {
          double d = 0;
          for (int e = 0; e < D; ++e) d += qkv[t][h * D + e] * qkv[u][C + h * D + e];
          s[u] = d / std::sqrt(double(D));
          mx = std::max(mx, s[u]);
        }
        for (int u = 0; u <= t; ++u) z += (s[u] = std::exp(s[u] - mx));
        for (int u = 0; u <= t; ++u)
          for (int e = 0; e < D; ++e) a[h * D + e] += s[u] / z * qkv[u][2 * C + h * D + e];
      }
      const auto o = lin(a, L.proj_w, L.proj_b, C);
      for (int i = 0; i < C; ++i) x[t][i] += o[i];
    }
    for (int t = 0; t < n; ++t) {
      auto f = lin(ln(x[t], L.ln2_g, L.ln2_b), L.fc_w, L.fc_b, 4 * C);
      for (auto& e : f) e = 0.5 * e * (1 + std::tanh(std::sqrt(2 / M_PI) * (e + 0.044715 * e * e * e)));
      const auto o = lin(f, L.fcproj_w, L.fcproj_b, C);
      for (int i = 0; i < C; ++i) x[t][i] += o[i];
    }
  }
  const auto h = ln(x[n - 1], w.lnf_g, w.lnf_b);
  std::vector<double> logits(V, 0.0);
  for (int v = 0; v < V; ++v)
    for (int i = 0; i < C; ++i) logits[v] += h[i] * w.wte[v * C + i];
  return logits;
}

}  // namespace

TEST_CASE("gpt2 cpu: the engine computes GPT-2 (naive reference forward, non-trivial LayerNorm and biases)") {
  auto w = random_weights(small_config(), 21);
  for (auto& l : w.layers) {  // GPT-2's init leaves these at 1 / 0: make them matter
    detail::fill_normal(l.ln1_g, 2, 1, 0.3f), detail::fill_normal(l.ln1_b, 2, 2, 0.1f);
    detail::fill_normal(l.ln2_g, 2, 3, 0.3f), detail::fill_normal(l.ln2_b, 2, 4, 0.1f);
    detail::fill_normal(l.qkv_b, 2, 5, 0.1f), detail::fill_normal(l.proj_b, 2, 6, 0.1f);
    detail::fill_normal(l.fc_b, 2, 7, 0.1f), detail::fill_normal(l.fcproj_b, 2, 8, 0.1f);
    for (auto& g : l.ln1_g) g += 1.f;
    for (auto& g : l.ln2_g) g += 1.f;
  }
  detail::fill_normal(w.lnf_b, 2, 9, 0.1f);
  const auto toks = prompt(17, 4, w.cfg.vocab_size);
  const auto ref = reference_logits(w, toks);
  backend<frugal::cpu_t>::context c;
  auto m = upload_model<frugal::cpu_t, float>(c, std::move(w));
  for (attn_kind a : {attn_kind::nocache, attn_kind::contiguous, attn_kind::paged}) {
    CAPTURE(attn_name(a));
    session_options o;
    o.attn = a;
    o.max_seq = 32;
    o.page_size = 4;
    session<frugal::cpu_t, float> s(c, m, o);
    // prefill 12 tokens, then feed the other 5 one by one (teacher forcing), compare the last logits
    const std::vector<std::int32_t> p(toks.begin(), toks.begin() + 12);
    const std::vector<std::vector<std::int32_t>> forced = {std::vector<std::int32_t>(toks.begin() + 12, toks.end())};
    if (a == attn_kind::nocache) {
      s.start({toks});
    } else {
      s.start({p}, &forced);
      s.decode(5);
    }
    const auto l = s.logits();
    double num = 0, den = 0;
    for (std::size_t i = 0; i < l.size(); ++i) num += (l[i] - ref[i]) * (l[i] - ref[i]), den += ref[i] * ref[i];
    CHECK(std::sqrt(num / den) < 1e-5);
  }
}

TEST_CASE_TEMPLATE("gpt2 cpu: no cache, contiguous KV and paged KV give identical greedy tokens", T, float,
                   frugal::half, frugal::bfloat16) {
  backend<frugal::cpu_t>::context c;
  auto w = random_weights(small_config(), 11);
  auto m = upload_model<frugal::cpu_t, T>(c, std::move(w));
  const int V = m.cfg.vocab_size;
  const auto p = prompt(13, 1, V);
  const auto a = run<T>(c, m, attn_kind::nocache, {p}, 24);
  const auto b = run<T>(c, m, attn_kind::contiguous, {p}, 24);
  const auto d = run<T>(c, m, attn_kind::paged, {p}, 24);
  const auto e = run<T>(c, m, attn_kind::paged, {p}, 24, {}, 5);  // page size that does not divide the lengths
  REQUIRE(a.size() == 1);
  CHECK(a[0].size() == 24);
  CHECK(a[0] == b[0]);
  CHECK(a[0] == d[0]);
  CHECK(a[0] == e[0]);
  // not degenerate: random weights still give more than one distinct token
  std::vector<std::int32_t> u = a[0];
  std::sort(u.begin(), u.end());
  CHECK(std::unique(u.begin(), u.end()) - u.begin() > 1);
}

TEST_CASE("gpt2 cpu: batched decode equals one sequence at a time (contiguous and paged)") {
  backend<frugal::cpu_t>::context c;
  auto m = upload_model<frugal::cpu_t, float>(c, random_weights(small_config(), 5));
  const int V = m.cfg.vocab_size;
  const std::vector<std::vector<std::int32_t>> ps = {prompt(7, 2, V), prompt(1, 3, V), prompt(20, 4, V), prompt(16, 5, V)};
  for (attn_kind a : {attn_kind::contiguous, attn_kind::paged}) {
    CAPTURE(attn_name(a));
    const auto batch = run<float>(c, m, a, ps, 12);
    for (std::size_t r = 0; r < ps.size(); ++r) {
      const auto one = run<float>(c, m, attn_kind::nocache, {ps[r]}, 12);
      CHECK(batch[r] == one[0]);
    }
  }
}

TEST_CASE("gpt2 cpu: seeded sampling is reproducible and the same in every mode") {
  backend<frugal::cpu_t>::context c;
  auto m = upload_model<frugal::cpu_t, float>(c, random_weights(small_config(), 9));
  const auto p = prompt(9, 7, m.cfg.vocab_size);
  sampling s;
  s.temperature = 1.5f, s.top_k = 40, s.top_p = 0.9f, s.seed = 1234;
  const auto a = run<float>(c, m, attn_kind::contiguous, {p}, 20, s);
  const auto b = run<float>(c, m, attn_kind::paged, {p}, 20, s);
  const auto n = run<float>(c, m, attn_kind::nocache, {p}, 20, s);
  CHECK(a == b);
  CHECK(a == n);
  s.seed = 99;
  CHECK(run<float>(c, m, attn_kind::contiguous, {p}, 20, s) != a);
  const auto g = run<float>(c, m, attn_kind::contiguous, {p}, 20);
  CHECK(g != a);  // sampling at temperature 1.5 does not reproduce greedy
}

TEST_CASE("gpt2 sampling rules: greedy, top-k 1, top-p cut") {
  std::vector<float> z = {0.f, 3.f, 1.f, 3.f, -2.f};
  sampling g;
  CHECK(select_token(z.data(), 5, g, 0, 0) == 1);  // lowest index on ties
  sampling k1;
  k1.temperature = 1.f, k1.top_k = 1;
  CHECK(select_token(z.data(), 5, k1, 0, 0) == 1);
  sampling tp;
  tp.temperature = 1.f, tp.top_p = 0.5f;  // tokens 1 and 3 hold ~0.87 of the mass, each ~0.44: both needed
  for (int step = 0; step < 50; ++step) {
    const int t = select_token(z.data(), 5, tp, step, 0);
    CHECK((t == 1 || t == 3));
  }
  sampling tk;
  tk.temperature = 100.f, tk.top_k = 3;  // nearly uniform over the top 3 (1, 3, 2)
  int seen[5] = {};
  for (int step = 0; step < 300; ++step) seen[select_token(z.data(), 5, tk, step, 0)]++;
  CHECK(seen[0] == 0);
  CHECK(seen[4] == 0);
  CHECK(seen[1] > 50);
  CHECK(seen[2] > 50);
  CHECK(seen[3] > 50);
}

TEST_CASE("gpt2 cpu: teacher-forced decode sees the logits of a full recompute") {
  backend<frugal::cpu_t>::context c;
  auto m = upload_model<frugal::cpu_t, float>(c, random_weights(small_config(), 3));
  const int V = m.cfg.vocab_size;
  const auto text = prompt(30, 8, V);
  const std::vector<std::int32_t> p(text.begin(), text.begin() + 10), rest(text.begin() + 10, text.end());
  session_options o;
  o.max_seq = 40;
  session<frugal::cpu_t, float> s(c, m, o);
  const std::vector<std::vector<std::int32_t>> forced = {rest};
  s.start({p}, &forced);
  for (int i = 0; i < 5; ++i) s.decode(1);
  const auto l = s.logits();  // logits after feeding rest[0..4]: position 14
  session_options on;
  on.attn = attn_kind::nocache;
  on.max_seq = 40;
  session<frugal::cpu_t, float> r(c, m, on);
  std::vector<std::int32_t> full(text.begin(), text.begin() + 15);
  r.start({full});
  const auto ref = r.logits();
  REQUIRE(l.size() == ref.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < l.size(); ++i) num += (l[i] - ref[i]) * (l[i] - ref[i]), den += ref[i] * ref[i];
  CHECK(std::sqrt(num / den) < 1e-5);
}

TEST_CASE("gpt2 session: bad input") {
  backend<frugal::cpu_t>::context c;
  auto m = upload_model<frugal::cpu_t, float>(c, random_weights(small_config(), 1));
  session_options o;
  o.max_seq = 200;
  FRUGAL_CHECK_THROWS_WITH((session<frugal::cpu_t, float>(c, m, o)), "exceeds the model context");
  o.max_seq = 16;
  session<frugal::cpu_t, float> s(c, m, o);
  FRUGAL_CHECK_THROWS_WITH(s.start({{1, 2, 5000}}), "token id 5000 out of range");
  FRUGAL_CHECK_THROWS_WITH(s.start({{}}), "prompt 0 has 0 tokens");
  FRUGAL_CHECK_THROWS_WITH(s.start({{1}, {2}}), "batch of 2 prompts");
  s.start({{1, 2, 3}});
  FRUGAL_CHECK_THROWS_WITH(s.decode(20), "reached max_seq=16");
  o.attn_splits = -1;
  FRUGAL_CHECK_THROWS_WITH((session<frugal::cpu_t, float>(c, m, o)), "attn_splits (=-1) must be >= 0");
  o.attn_splits = 0;
  o.mega = true;  // the one-kernel decode step is CUDA code
  FRUGAL_CHECK_THROWS_WITH((session<frugal::cpu_t, float>(c, m, o)), "mega (the one-kernel decode step) needs --device cuda");
}

TEST_CASE("gpt2 kv_store: the attention plan bound follows the longest sequence in powers of two, capped at max_seq") {
  backend<frugal::cpu_t>::context c;
  const auto cfg = small_config();
  kv_store<frugal::cpu_t, float> kv(c, cfg, attn_kind::contiguous, 2, 90, 16);
  CHECK(kv.plan_bound_now() == 90);  // before any step: planned for max_seq
  CHECK(kv.plan_bound(1) == 64);
  CHECK(kv.plan_bound(64) == 64);
  CHECK(kv.plan_bound(65) == 90);  // 128 capped at max_seq
  CHECK(kv.plan_bound(90) == 90);
  kv_store<frugal::cpu_t, float> small(c, cfg, attn_kind::paged, 1, 40, 16);
  CHECK(small.plan_bound(1) == 40);  // max_seq below the smallest bound
  kv.set_plan_bound(64);
  CHECK(kv.plan_bound_now() == 64);
  FRUGAL_CHECK_THROWS_WITH(kv.set_plan_bound(0), "kv_store::set_plan_bound: bound 0 outside 1..90");
  FRUGAL_CHECK_THROWS_WITH(kv.set_plan_bound(91), "bound 91 outside 1..90 (max_seq)");
  CHECK(kv.plan_bound_now() == 64);  // unchanged by the failed calls
}

TEST_CASE("gpt2 cpu: the attention plan bound changes nothing on the CPU (same greedy tokens, no graphs)") {
  backend<frugal::cpu_t>::context c;
  auto m = upload_model<frugal::cpu_t, float>(c, random_weights(small_config(), 3));
  std::vector<std::vector<std::int32_t>> out;
  for (bool follows : {true, false}) {
    session_options o;
    o.max_seq = 90;
    o.attn_plan_follows = follows;
    session<frugal::cpu_t, float> s(c, m, o);
    s.start({{5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
              32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
              58, 59, 60}});
    s.decode(20);  // crosses the bound 64
    CHECK(s.captured_bounds().empty());
    out.push_back(s.generated()[0]);
  }
  CHECK(out[0] == out[1]);
}
