// LaRoSA folding on the CPU: each folding identity for both weight layouts, a toy pre-LN GPT-2 (embeddings,
// LayerNorm, causal attention, MLP, tied LM head) whose folded + rotated version (model-level and layer-level
// with residual adapters) computes the same logits as the original, and the energy top-k keeps with and without
// the PCA rotation on correlated activations.
#include <frugal/rotation/larosa.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "common/test_util.hpp"
#include "rotation_test_util.hpp"

namespace {

using vec = std::vector<double>;

vec randn(std::size_t n, std::uint64_t seed, double scale = 1.0, double mean = 0.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(mean, scale);
  vec v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

//! y [T, N] = x [T, K] · w (+ b), w in either layout.
vec linear(const vec& x, int T, int K, int N, const vec& w, const vec* b, frugal::weight_layout l) {
  vec y(static_cast<std::size_t>(T) * N, 0.0);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) {
      double acc = b ? (*b)[static_cast<std::size_t>(n)] : 0.0;
      for (int k = 0; k < K; ++k)
        acc += x[static_cast<std::size_t>(t) * K + k] * (l == frugal::weight_layout::in_out
                                                             ? w[static_cast<std::size_t>(k) * N + n]
                                                             : w[static_cast<std::size_t>(n) * K + k]);
      y[static_cast<std::size_t>(t) * N + n] = acc;
    }
  return y;
}

//! Magnitude top-k per row (reference; ties: lower index first), others set to 0.
vec topk_rows(const vec& x, int T, int d, int k) {
  vec y(x.size(), 0.0);
  std::vector<int> idx(static_cast<std::size_t>(d));
  for (int t = 0; t < T; ++t) {
    std::iota(idx.begin(), idx.end(), 0);
    const double* r = x.data() + static_cast<std::size_t>(t) * d;
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return std::fabs(r[a]) > std::fabs(r[b]); });
    for (int i = 0; i < k; ++i)
      y[static_cast<std::size_t>(t) * d + idx[static_cast<std::size_t>(i)]] = r[idx[static_cast<std::size_t>(i)]];
  }
  return y;
}

// ------------------------------------------------------------------------------------------------ toy GPT-2

struct layer {
  vec ln1g, ln1b, attn_w, attn_b, proj_w, proj_b, ln2g, ln2b, fc_w, fc_b, mproj_w, mproj_b;
};
struct model {
  int V = 13, d = 16, H = 2, L = 2, maxT = 8;
  vec wte, wpe, lnfg, lnfb;
  std::vector<layer> layers;
  // folded form only
  bool folded = false;
  vec lm_w, lm_b;             // [V, d] out_in, [V]
  std::vector<vec> adapters;  // [L-1] of [d, d] (empty: none)
  int topk = 0;               // top-k on the attention and MLP inputs (0: off)
};

model make_model(std::uint64_t seed) {
  model m;
  const int d = m.d;
  m.wte = randn(static_cast<std::size_t>(m.V) * d, seed + 1, 0.5, 0.3);  // non-zero mean on purpose
  m.wpe = randn(static_cast<std::size_t>(m.maxT) * d, seed + 2, 0.2, -0.1);
  m.lnfg = randn(d, seed + 3, 0.2, 1.0);
  m.lnfb = randn(d, seed + 4, 0.1);
  for (int l = 0; l < m.L; ++l) {
    const std::uint64_t s = seed + 100 * (l + 1);
    layer y;
    y.ln1g = randn(d, s + 1, 0.2, 1.0);
    y.ln1b = randn(d, s + 2, 0.1);
    y.attn_w = randn(static_cast<std::size_t>(d) * 3 * d, s + 3, 0.3);
    y.attn_b = randn(3 * d, s + 4, 0.1);
    y.proj_w = randn(static_cast<std::size_t>(d) * d, s + 5, 0.3);
    y.proj_b = randn(d, s + 6, 0.1, 0.05);
    y.ln2g = randn(d, s + 7, 0.2, 1.0);
    y.ln2b = randn(d, s + 8, 0.1);
    y.fc_w = randn(static_cast<std::size_t>(d) * 4 * d, s + 9, 0.3);
    y.fc_b = randn(4 * d, s + 10, 0.1);
    y.mproj_w = randn(static_cast<std::size_t>(4) * d * d, s + 11, 0.2);
    y.mproj_b = randn(d, s + 12, 0.1, 0.05);
    m.layers.push_back(y);
  }
  return m;
}

vec norm_rows(const vec& x, int T, int d, bool layernorm, const vec* g, const vec* b) {
  const double eps = 1e-5;
  vec y(x.size());
  for (int t = 0; t < T; ++t) {
    const double* r = x.data() + static_cast<std::size_t>(t) * d;
    double mu = 0, var = 0;
    if (layernorm) {
      for (int i = 0; i < d; ++i) mu += r[i];
      mu /= d;
    }
    for (int i = 0; i < d; ++i) var += (r[i] - mu) * (r[i] - mu);
    var /= d;
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int i = 0; i < d; ++i) {
      double v = (r[i] - mu) * inv;
      if (g) v = v * (*g)[static_cast<std::size_t>(i)] + (*b)[static_cast<std::size_t>(i)];
      y[static_cast<std::size_t>(t) * d + i] = v;
    }
  }
  return y;
}

double gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

//! Logits [T, V]. Original: LayerNorm with γ/β, tied head. Folded: RMS norm, no gain, untied head, adapters.
//! `inputs` collects the normalised attention inputs per layer when non-null.
vec forward(const model& m, const std::vector<int>& tok, std::vector<vec>* inputs = nullptr) {
  const int T = static_cast<int>(tok.size()), d = m.d, hd = d / m.H;
  const auto io = frugal::weight_layout::in_out;
  vec x(static_cast<std::size_t>(T) * d);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < d; ++i)
      x[static_cast<std::size_t>(t) * d + i] =
          m.wte[static_cast<std::size_t>(tok[static_cast<std::size_t>(t)]) * d + i] +
          m.wpe[static_cast<std::size_t>(t) * d + i];
  for (int l = 0; l < m.L; ++l) {
    const layer& y = m.layers[static_cast<std::size_t>(l)];
    vec u = m.folded ? norm_rows(x, T, d, false, nullptr, nullptr) : norm_rows(x, T, d, true, &y.ln1g, &y.ln1b);
    if (inputs) inputs->push_back(u);
    if (m.topk) u = topk_rows(u, T, d, m.topk);
    const vec qkv = linear(u, T, d, 3 * d, y.attn_w, &y.attn_b, io);
    vec att(static_cast<std::size_t>(T) * d, 0.0);
    for (int h = 0; h < m.H; ++h)
      for (int t = 0; t < T; ++t) {
        std::vector<double> s(static_cast<std::size_t>(t + 1));
        double mx = -1e300;
        for (int j = 0; j <= t; ++j) {
          double acc = 0;
          for (int c = 0; c < hd; ++c)
            acc += qkv[static_cast<std::size_t>(t) * 3 * d + h * hd + c] *
                   qkv[static_cast<std::size_t>(j) * 3 * d + d + h * hd + c];
          s[static_cast<std::size_t>(j)] = acc / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, s[static_cast<std::size_t>(j)]);
        }
        double z = 0;
        for (auto& v : s) z += (v = std::exp(v - mx));
        for (int j = 0; j <= t; ++j)
          for (int c = 0; c < hd; ++c)
            att[static_cast<std::size_t>(t) * d + h * hd + c] +=
                s[static_cast<std::size_t>(j)] / z * qkv[static_cast<std::size_t>(j) * 3 * d + 2 * d + h * hd + c];
      }
    const vec o = linear(att, T, d, d, y.proj_w, &y.proj_b, io);
    for (std::size_t e = 0; e < x.size(); ++e) x[e] += o[e];
    vec u2 = m.folded ? norm_rows(x, T, d, false, nullptr, nullptr) : norm_rows(x, T, d, true, &y.ln2g, &y.ln2b);
    if (m.topk) u2 = topk_rows(u2, T, d, m.topk);
    vec hdn = linear(u2, T, d, 4 * d, y.fc_w, &y.fc_b, io);
    for (auto& v : hdn) v = gelu(v);
    const vec mo = linear(hdn, T, 4 * d, d, y.mproj_w, &y.mproj_b, io);
    for (std::size_t e = 0; e < x.size(); ++e) x[e] += mo[e];
    if (!m.adapters.empty() && l + 1 < m.L)
      x = linear(x, T, d, d, m.adapters[static_cast<std::size_t>(l)], nullptr, io);
  }
  if (!m.folded) {
    const vec u = norm_rows(x, T, d, true, &m.lnfg, &m.lnfb);
    return linear(u, T, d, m.V, m.wte, nullptr, frugal::weight_layout::out_in);  // tied head
  }
  const vec u = norm_rows(x, T, d, false, nullptr, nullptr);
  return linear(u, T, d, m.V, m.lm_w, &m.lm_b, frugal::weight_layout::out_in);
}

template <class T>
frugal::matrix_view<T> view(std::vector<T>& v, std::int64_t r, std::int64_t c) {
  return frugal::matrix_view<T>(v.data(), r, c);
}

//! Steps 0-2 of the recipe in larosa.hpp: untie, fold LayerNorms, centre the writers.
model fold_layernorms(model m) {
  const auto io = frugal::weight_layout::in_out, oi = frugal::weight_layout::out_in;
  const int d = m.d;
  m.lm_w = m.wte;
  m.lm_b.assign(static_cast<std::size_t>(m.V), 0.0);
  for (auto& y : m.layers) {
    frugal::fold_layernorm(frugal::cpu, y.ln1g.data(), y.ln1b.data(), view(y.attn_w, d, 3 * d), y.attn_b.data(), io);
    frugal::fold_layernorm(frugal::cpu, y.ln2g.data(), y.ln2b.data(), view(y.fc_w, d, 4 * d), y.fc_b.data(), io);
    frugal::center_output(frugal::cpu, view(y.proj_w, d, d), y.proj_b.data(), io);
    frugal::center_output(frugal::cpu, view(y.mproj_w, 4 * d, d), y.mproj_b.data(), io);
  }
  frugal::fold_layernorm(frugal::cpu, m.lnfg.data(), m.lnfb.data(), view(m.lm_w, m.V, d), m.lm_b.data(), oi);
  frugal::center_output<double>(frugal::cpu, view(m.wte, m.V, d), nullptr, io);
  frugal::center_output<double>(frugal::cpu, view(m.wpe, m.maxT, d), nullptr, io);
  m.folded = true;
  return m;
}

//! Step 4: rotate with Q_l per layer (all equal: model-level), adapters between different consecutive Q.
model rotate(model m, const std::vector<vec>& q) {
  const auto io = frugal::weight_layout::in_out, oi = frugal::weight_layout::out_in;
  const int d = m.d;
  auto qv = [&](int l) { return frugal::matrix_view<const double>(q[static_cast<std::size_t>(l)].data(), d, d); };
  frugal::rotate_output<double, double>(frugal::cpu, view(m.wte, m.V, d), nullptr, qv(0), io);
  frugal::rotate_output<double, double>(frugal::cpu, view(m.wpe, m.maxT, d), nullptr, qv(0), io);
  for (int l = 0; l < m.L; ++l) {
    auto& y = m.layers[static_cast<std::size_t>(l)];
    frugal::rotate_input<double, double>(frugal::cpu, qv(l), view(y.attn_w, d, 3 * d), io);
    frugal::rotate_input<double, double>(frugal::cpu, qv(l), view(y.fc_w, d, 4 * d), io);
    frugal::rotate_output<double, double>(frugal::cpu, view(y.proj_w, d, d), y.proj_b.data(), qv(l), io);
    frugal::rotate_output<double, double>(frugal::cpu, view(y.mproj_w, 4 * d, d), y.mproj_b.data(), qv(l), io);
    if (l + 1 < m.L && q[static_cast<std::size_t>(l)] != q[static_cast<std::size_t>(l + 1)]) {
      m.adapters.resize(static_cast<std::size_t>(m.L - 1));
      m.adapters[static_cast<std::size_t>(l)].resize(static_cast<std::size_t>(d) * d);
      frugal::rotation_adapter<double>(frugal::cpu, qv(l), qv(l + 1),
                                       view(m.adapters[static_cast<std::size_t>(l)], d, d));
    }
  }
  frugal::rotate_input<double, double>(frugal::cpu, qv(m.L - 1), view(m.lm_w, m.V, d), oi);
  return m;
}

double max_rel_diff(const vec& a, const vec& b) {
  double m = 0, s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(a[i] - b[i]));
    s = std::max(s, std::fabs(a[i]));
  }
  return m / s;
}

}  // namespace

TEST_CASE("larosa: each folding identity, both layouts") {
  const int K = 12, N = 7, T = 5;
  const auto u = randn(static_cast<std::size_t>(T) * K, 1);
  const auto qk = rotation_test::random_orthogonal(K, 2), qn = rotation_test::random_orthogonal(N, 3);
  for (auto layout : {frugal::weight_layout::in_out, frugal::weight_layout::out_in}) {
    const bool io = layout == frugal::weight_layout::in_out;
    const auto w = randn(static_cast<std::size_t>(K) * N, 4);
    const auto b = randn(N, 5);
    const auto y = linear(u, T, K, N, w, &b, layout);
    auto wv = [&](vec& x) { return io ? view(x, K, N) : view(x, N, K); };
    // rotate_input: (u Q) W' == u W
    {
      auto w2 = w;
      frugal::rotate_input<double, double>(frugal::cpu, frugal::matrix_view<const double>(qk.data(), K, K), wv(w2),
                                           layout);
      const auto uq = linear(u, T, K, K, qk, nullptr, frugal::weight_layout::in_out);
      CHECK(max_rel_diff(y, linear(uq, T, K, N, w2, &b, layout)) < 1e-13);
    }
    // rotate_output: u W' + b' == (u W + b) Q
    {
      auto w2 = w, b2 = b;
      frugal::rotate_output<double, double>(frugal::cpu, wv(w2), b2.data(),
                                            frugal::matrix_view<const double>(qn.data(), N, N), layout);
      CHECK(max_rel_diff(linear(y, T, N, N, qn, nullptr, frugal::weight_layout::in_out),
                         linear(u, T, K, N, w2, &b2, layout)) < 1e-13);
    }
    // center_output: every output row has zero mean, and differs from y by its mean only
    {
      auto w2 = w, b2 = b;
      frugal::center_output(frugal::cpu, wv(w2), b2.data(), layout);
      const auto y2 = linear(u, T, K, N, w2, &b2, layout);
      for (int t = 0; t < T; ++t) {
        double mean = 0, mean2 = 0;
        for (int n = 0; n < N; ++n) {
          mean += y[static_cast<std::size_t>(t) * N + n] / N;
          mean2 += y2[static_cast<std::size_t>(t) * N + n] / N;
        }
        CHECK(std::fabs(mean2) < 1e-13);
        for (int n = 0; n < N; ++n)
          CHECK(y2[static_cast<std::size_t>(t) * N + n] ==
                doctest::Approx(y[static_cast<std::size_t>(t) * N + n] - mean).epsilon(1e-12));
      }
    }
    // fold_layernorm: (γ⊙x̂ + β) W + b == x̂ W' + b'
    {
      auto w2 = w, b2 = b;
      const auto g = randn(K, 6, 0.3, 1.0), be = randn(K, 7, 0.2);
      frugal::fold_layernorm(frugal::cpu, g.data(), be.data(), wv(w2), b2.data(), layout);
      vec ln = u;
      for (int t = 0; t < T; ++t)
        for (int k = 0; k < K; ++k)
          ln[static_cast<std::size_t>(t) * K + k] =
              u[static_cast<std::size_t>(t) * K + k] * g[static_cast<std::size_t>(k)] + be[static_cast<std::size_t>(k)];
      CHECK(max_rel_diff(linear(ln, T, K, N, w, &b, layout), linear(u, T, K, N, w2, &b2, layout)) < 1e-13);
    }
  }
  // adapters: (x Qa) A == x Qb
  const auto qa = rotation_test::random_orthogonal(K, 8), qb = rotation_test::random_orthogonal(K, 9);
  vec a(static_cast<std::size_t>(K) * K);
  frugal::rotation_adapter<double>(frugal::cpu, frugal::matrix_view<const double>(qa.data(), K, K),
                                   frugal::matrix_view<const double>(qb.data(), K, K), view(a, K, K));
  const auto io = frugal::weight_layout::in_out;
  CHECK(max_rel_diff(linear(u, T, K, K, qb, nullptr, io),
                     linear(linear(u, T, K, K, qa, nullptr, io), T, K, K, a, nullptr, io)) < 1e-13);
}

TEST_CASE("larosa: 16-bit and f32 weights fold within their precision") {
  const int K = 32, N = 24;
  const auto q = rotation_test::random_orthogonal(K, 11);
  const std::vector<float> qf(q.begin(), q.end());
  const auto w = randn(static_cast<std::size_t>(K) * N, 12);
  vec ref = w;
  frugal::rotate_input<double, double>(frugal::cpu, frugal::matrix_view<const double>(q.data(), K, K), view(ref, K, N),
                                       frugal::weight_layout::in_out);
  std::vector<frugal::bfloat16> wb(w.size());
  std::vector<frugal::half> wh(w.size());
  std::vector<float> wf(w.begin(), w.end());
  for (std::size_t i = 0; i < w.size(); ++i) {
    wb[i] = frugal::bfloat16(static_cast<float>(w[i]));
    wh[i] = frugal::half(static_cast<float>(w[i]));
  }
  frugal::rotate_input<frugal::bfloat16, float>(frugal::cpu, frugal::matrix_view<const float>(qf.data(), K, K),
                                                view(wb, K, N), frugal::weight_layout::in_out);
  frugal::rotate_input<frugal::half, double>(frugal::cpu, frugal::matrix_view<const double>(q.data(), K, K),
                                             view(wh, K, N), frugal::weight_layout::in_out);
  frugal::rotate_input<float, float>(frugal::cpu, frugal::matrix_view<const float>(qf.data(), K, K), view(wf, K, N),
                                     frugal::weight_layout::in_out);
  double eb = 0, eh = 0, ef = 0, s = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    eb = std::max(eb, std::fabs(static_cast<float>(wb[i]) - ref[i]));
    eh = std::max(eh, std::fabs(static_cast<float>(wh[i]) - ref[i]));
    ef = std::max(ef, std::fabs(wf[i] - ref[i]));
    s = std::max(s, std::fabs(ref[i]));
  }
  CHECK(eb / s < 3e-2);  // bf16: input and output rounding, ~2^-8 each
  CHECK(eh / s < 4e-3);
  CHECK(ef / s < 1e-5);
}

TEST_CASE("larosa: folded + rotated toy GPT-2 computes the same logits at sparsity 0") {
  const model orig = make_model(42);
  const std::vector<int> tok = {3, 1, 4, 1, 5, 9, 2};
  const int T = static_cast<int>(tok.size()), d = orig.d;
  const vec ref = forward(orig, tok);

  // LayerNorm folding alone (RMS norm, untied head)
  const model folded = fold_layernorms(orig);
  CHECK(max_rel_diff(ref, forward(folded, tok)) < 1e-11);

  // calibration on the folded model: one site per layer, also a single site (model-level)
  frugal::larosa_calibration per_layer(orig.L, d), single(1, d);
  for (std::uint64_t s = 0; s < 6; ++s) {
    std::vector<int> cal(8);
    std::mt19937_64 rng(s);
    for (auto& t : cal) t = static_cast<int>(rng() % static_cast<std::uint64_t>(orig.V));
    std::vector<vec> inputs;
    forward(folded, cal, &inputs);
    for (int l = 0; l < orig.L; ++l) {
      per_layer.add<double>(frugal::cpu, l,
                            frugal::matrix_view<const double>(inputs[static_cast<std::size_t>(l)].data(), 8, d));
      single.add<double>(frugal::cpu, 0,
                         frugal::matrix_view<const double>(inputs[static_cast<std::size_t>(l)].data(), 8, d));
    }
  }
  std::vector<vec> q_layer(static_cast<std::size_t>(orig.L), vec(static_cast<std::size_t>(d) * d));
  vec lam(static_cast<std::size_t>(d));
  for (int l = 0; l < orig.L; ++l) {
    per_layer.rotation(frugal::cpu, l, view(q_layer[static_cast<std::size_t>(l)], d, d), lam.data());
    for (int i = 1; i < d; ++i) CHECK(lam[static_cast<std::size_t>(i - 1)] >= lam[static_cast<std::size_t>(i)]);
    CHECK(lam[static_cast<std::size_t>(d - 1)] > 0);  // damped
  }
  CHECK(q_layer[0] != q_layer[1]);
  vec q_model(static_cast<std::size_t>(d) * d);
  single.rotation(frugal::cpu, 0, view(q_model, d, d));

  const model rot_model = rotate(folded, std::vector<vec>(static_cast<std::size_t>(orig.L), q_model));
  CHECK(rot_model.adapters.empty());
  CHECK(max_rel_diff(ref, forward(rot_model, tok)) < 1e-11);
  const model rot_layer = rotate(folded, q_layer);
  CHECK(rot_layer.adapters.size() == static_cast<std::size_t>(orig.L - 1));
  CHECK(max_rel_diff(ref, forward(rot_layer, tok)) < 1e-11);

  // the same in f32 (weights folded in f32 by the same functions): f32 tolerance
  {
    std::vector<float> w(orig.layers[0].attn_w.begin(), orig.layers[0].attn_w.end()),
        b(orig.layers[0].attn_b.begin(), orig.layers[0].attn_b.end());
    std::vector<float> g(orig.layers[0].ln1g.begin(), orig.layers[0].ln1g.end()),
        be(orig.layers[0].ln1b.begin(), orig.layers[0].ln1b.end());
    std::vector<float> qf(q_layer[0].begin(), q_layer[0].end());
    frugal::fold_layernorm(frugal::cpu, g.data(), be.data(), view(w, d, 3 * d), b.data(),
                           frugal::weight_layout::in_out);
    frugal::rotate_input<float, float>(frugal::cpu, frugal::matrix_view<const float>(qf.data(), d, d),
                                       view(w, d, 3 * d), frugal::weight_layout::in_out);
    vec w64 = folded.layers[0].attn_w;
    frugal::rotate_input<double, double>(frugal::cpu, frugal::matrix_view<const double>(q_layer[0].data(), d, d),
                                         view(w64, d, 3 * d), frugal::weight_layout::in_out);
    double e = 0, s = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      e = std::max(e, std::fabs(w[i] - w64[i]));
      s = std::max(s, std::fabs(w64[i]));
    }
    CHECK(e / s < 1e-5);
    for (std::size_t i = 0; i < b.size(); ++i) CHECK(b[i] == doctest::Approx(folded.layers[0].attn_b[i]).epsilon(1e-5));
  }
  (void)T;
}

TEST_CASE("larosa: rotated top-k keeps more energy than top-k on correlated activations") {
  const int d = 64, T = 2000;
  // x = z · M: independent coordinates with decaying scale, mixed by a random rotation M
  const auto mix = rotation_test::random_orthogonal(d, 21);
  auto make = [&](std::uint64_t seed) {
    auto z = randn(static_cast<std::size_t>(T) * d, seed);
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < d; ++i) z[static_cast<std::size_t>(t) * d + i] *= std::exp(-i / 6.0) + 0.02;
    return linear(z, T, d, d, mix, nullptr, frugal::weight_layout::in_out);
  };
  const auto calib = make(1), test = make(2);
  frugal::larosa_calibration cal(1, d);
  cal.add<double>(frugal::cpu, 0, frugal::matrix_view<const double>(calib.data(), T, d));
  vec q(static_cast<std::size_t>(d) * d);
  cal.rotation(frugal::cpu, 0, view(q, d, d));
  const auto rotated = linear(test, T, d, d, q, nullptr, frugal::weight_layout::in_out);
  auto energy = [&](const vec& x, int k) {
    const auto kept = topk_rows(x, T, d, k);
    double a = 0, b = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      a += kept[i] * kept[i];
      b += x[i] * x[i];
    }
    return a / b;
  };
  for (double p : {0.25, 0.5, 0.75, 0.9}) {
    const int k = static_cast<int>(std::lround((1.0 - p) * d));
    const double plain = energy(test, k), rot = energy(rotated, k);
    MESSAGE("sparsity ", p, ": kept energy plain ", plain, ", rotated ", rot);
    CHECK(rot > plain);
    if (p <= 0.5) CHECK(rot > 0.97);
  }
  // with nothing dropped the rotated input times the rotated weights is exact
  CHECK(energy(rotated, d) == doctest::Approx(1.0));
}

TEST_CASE("larosa: errors") {
  const int K = 4, N = 3;
  vec w(static_cast<std::size_t>(K) * N, 1.0), b(N, 0.0), q(9, 0.0), g(K, 1.0);
  FRUGAL_CHECK_THROWS_WITH(
      (frugal::rotate_input<double, double>(frugal::cpu, frugal::matrix_view<const double>(q.data(), 3, 3),
                                            view(w, K, N), frugal::weight_layout::in_out)),
      "frugal::rotate_input: q has shape [3, 3] but must be [4, 4]");
  FRUGAL_CHECK_THROWS_WITH((frugal::rotate_output<double, double>(frugal::cpu, view(w, N, K), b.data(),
                                                                  frugal::matrix_view<const double>(q.data(), 2, 2),
                                                                  frugal::weight_layout::out_in)),
                           "frugal::rotate_output: q has shape [2, 2] but must be [3, 3]");
  q[4] = std::nan("");
  FRUGAL_CHECK_THROWS_WITH((frugal::rotate_output<double, double>(frugal::cpu, view(w, K, N), b.data(),
                                                                  frugal::matrix_view<const double>(q.data(), 3, 3),
                                                                  frugal::weight_layout::in_out)),
                           "q has a non-finite value at (1, 1)");
  FRUGAL_CHECK_THROWS_WITH(frugal::fold_layernorm(frugal::cpu, g.data(), g.data(), view(w, K, N),
                                                  static_cast<double*>(nullptr), frugal::weight_layout::in_out),
                           "frugal::fold_layernorm: beta is given but bias is null");
  FRUGAL_CHECK_THROWS_WITH(frugal::larosa_calibration(0, 8), "sites (=0) must be >= 1");
  frugal::larosa_calibration cal(2, 8);
  vec x(16, 1.0);
  FRUGAL_CHECK_THROWS_WITH(cal.add<double>(frugal::cpu, 2, frugal::matrix_view<const double>(x.data(), 2, 8)),
                           "site (=2) must be in [0, 2)");
  vec qq(64);
  FRUGAL_CHECK_THROWS_WITH(cal.rotation(frugal::cpu, 0, view(qq, 8, 8)), "no tokens accumulated");
}
