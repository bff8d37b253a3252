// examples/gpt2/larosa.hpp — LaRoSA for GPT-2 with frugal/rotation: calibrate rotations on corpus text run through
// the model, fold them into the weights (the recipe of frugal/rotation/larosa.hpp).
//
//   1. LayerNorm folding (SliceGPT): γ/β of ln_1, ln_2, ln_f go into c_attn, c_fc and the (untied) LM head; every
//      writer of the residual stream (wte, wpe, attn.c_proj, mlp.c_proj) is centred, so the stream is zero-mean and
//      each LayerNorm becomes x / rms(x), which commutes with a rotation.
//   2. Calibration: the dense model runs the calibration sequences (one prefill each, at most n_ctx - 1 tokens); at
//      every block the normalised inputs of both sparsified layers, u = (x - mean) / std (= rmsnorm of the centred
//      stream), of every token of every sequence go into the covariance of the block's rotation site: one site for
//      the whole model ("model" rotation) or one per layer ("layer" rotation).
//   3. Q = eigenvectors of the damped (1%) second moment (frugal::larosa_calibration, Jacobi eigh).
//   4. Fold Q: writers W <- W·Q, readers of the rotated norm output W <- Qᵀ·W (c_attn, c_fc, LM head); with layer
//      rotations a residual adapter A_l = Q_lᵀ·Q_{l+1} after each block (one dense C×C GEMV per token and layer).
// At inference the four block inputs are top-k'ed (sparse_gemv_topk): the qkv and fc inputs in the rotated basis,
// the o_proj and MLP-down inputs in their own basis (LaRoSA rotates only h1 and h3). With p = 0 the folded model
// computes the dense logits up to rounding (tests/gpt2). The folded model also takes the threshold rule instead of
// top-k (thresholds.hpp: calibrate_thresholds on the folded model, session_options::thresholds).
#pragma once

#include <frugal/gemv/gemv.hpp>
#include <frugal/rotation/larosa.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "engine.hpp"

namespace gpt2 {

namespace detail {
// The rotations of step 4 are big products (124M: ~125 G multiply-adds; XL: ~2.6 T). frugal::rotate_input /
// rotate_output compute them in f64 with a portable kernel, which takes minutes on two cores; backend<Tag>::rotate
// runs the same products as an f32 GEMM instead (OpenBLAS sgemm on the CPU when the build has it, else the frugal
// functions; cuBLAS on CUDA). Rounding differs by a few f32 ulps; the p = 0 tests bound the end-to-end effect.
//   rotate_in:  W [K, N] <- Qᵀ·W (a reader of the rotated input)
//   rotate_out: W [R, N] <- W·Q, b <- b·Q (a writer into the rotated stream)
template <class Tag>
void rotate_in(typename backend<Tag>::context& c, frugal::matrix_view<const float> q, std::vector<float>& w,
               std::int64_t K, std::int64_t N) {
  backend<Tag>::rotate(c, true, w.data(), K, N, q.data);
}
template <class Tag>
void rotate_out(typename backend<Tag>::context& c, std::vector<float>& w, float* bias, std::int64_t R, std::int64_t N,
                frugal::matrix_view<const float> q) {
  backend<Tag>::rotate(c, false, w.data(), R, N, q.data);
  if (bias) {
    std::vector<double> b(static_cast<std::size_t>(N), 0.0);
    for (std::int64_t k = 0; k < N; ++k)
      for (std::int64_t n = 0; n < N; ++n) b[n] += double(bias[k]) * q(k, n);
    for (std::int64_t n = 0; n < N; ++n) bias[n] = static_cast<float>(b[n]);
  }
}
}  // namespace detail

struct larosa_options {
  bool layerwise = false;  //!< one rotation per layer (+ residual adapters) instead of one for the residual stream
  double damping = 0.01;   //!< LaRoSA's 1% of the mean diagonal
};

struct larosa_rotations {
  int dim = 0;
  std::vector<std::vector<float>> q;  // [sites][C * C]; site = 0 (model) or layer
  std::vector<std::vector<float>> eigenvalues;
};

//! Step 1: the rotation-invariant form of `w` (same logits, RMS norms, untied LM head with a bias).
inline weights fold_layernorms(weights&& w) {
  using frugal::weight_layout;
  if (w.rms_norm) return std::move(w);
  const auto tag = frugal::cpu;
  const std::int64_t C = w.cfg.n_embd, V = w.cfg.vocab_size, T = w.cfg.n_ctx;
  if (w.lm_w.empty()) {
    w.lm_w.resize(static_cast<std::size_t>(C * V));
    frugal::to_channel_major<float>(frugal::matrix_view<const float>(w.wte.data(), V, C),
                                    frugal::matrix_view<float>(w.lm_w.data(), C, V));
  }
  if (w.lm_b.empty()) w.lm_b.assign(static_cast<std::size_t>(V), 0.f);
  if (w.wte_in.empty()) w.wte_in = std::move(w.wte);
  std::vector<float>().swap(w.wte);
  frugal::fold_layernorm(tag, w.lnf_g.data(), w.lnf_b.data(), frugal::matrix_view<float>(w.lm_w.data(), C, V),
                         w.lm_b.data(), weight_layout::in_out);
  frugal::center_output(tag, frugal::matrix_view<float>(w.wte_in.data(), V, C), static_cast<float*>(nullptr),
                        weight_layout::in_out);
  frugal::center_output(tag, frugal::matrix_view<float>(w.wpe.data(), T, C), static_cast<float*>(nullptr),
                        weight_layout::in_out);
  for (auto& l : w.layers) {
    frugal::fold_layernorm(tag, l.ln1_g.data(), l.ln1_b.data(), frugal::matrix_view<float>(l.qkv_w.data(), C, 3 * C),
                           l.qkv_b.data(), weight_layout::in_out);
    frugal::fold_layernorm(tag, l.ln2_g.data(), l.ln2_b.data(), frugal::matrix_view<float>(l.fc_w.data(), C, 4 * C),
                           l.fc_b.data(), weight_layout::in_out);
    frugal::center_output(tag, frugal::matrix_view<float>(l.proj_w.data(), C, C), l.proj_b.data(),
                          weight_layout::in_out);
    frugal::center_output(tag, frugal::matrix_view<float>(l.fcproj_w.data(), 4 * C, C), l.fcproj_b.data(),
                          weight_layout::in_out);
    for (auto* v : {&l.ln1_g, &l.ln1_b, &l.ln2_g, &l.ln2_b}) std::vector<float>().swap(*v);
  }
  std::vector<float>().swap(w.lnf_g);
  std::vector<float>().swap(w.lnf_b);
  w.rms_norm = true;
  return std::move(w);
}

//! The accumulators of step 2 for a model of config `cfg`: one site (model rotation) or one per layer.
inline frugal::larosa_calibration larosa_accumulators(const config& cfg, const larosa_options& o) {
  frugal::larosa_options lo;
  lo.damping = o.damping;
  return frugal::larosa_calibration(o.layerwise ? cfg.n_layer : 1, cfg.n_embd, lo);
}

//! Step 2: runs every sequence of `seqs` through the (unfolded, dense) model `m` (one prefill each,
//! calibration_prefill) and adds, per token, block and norm, the normalised residual input to `cal` (from
//! larosa_accumulators(m.cfg, o)). Calling it per sequence adds the same rows as calling it once on all of them.
template <class Tag, class T>
void larosa_accumulate(typename backend<Tag>::context& c, const device_model<Tag, T>& m, const token_sequences& seqs,
                       const larosa_options& o, frugal::larosa_calibration& cal) {
  if (m.rms) fail("larosa_calibrate", "calibrate on the unfolded model");
  const int C = m.cfg.n_embd, L = m.cfg.n_layer;
  if (cal.dim() != C || cal.sites() != (o.layerwise ? L : 1))
    fail("larosa_calibrate", "accumulators of ", cal.sites(), " sites x dim ", cal.dim(), " for a model of n_embd ", C,
         " with ", o.layerwise ? L : 1, " rotation sites");
  std::vector<T> h;
  std::vector<float> u;
  auto hook = [&](int layer, int, const T* X, int rows) {
    if (layer >= L) return;
    h.resize(static_cast<std::size_t>(rows) * C);
    backend<Tag>::to_host(c, h.data(), X, h.size() * sizeof(T));
    u.resize(h.size());
    for (int r = 0; r < rows; ++r) {  // u = (x - mean) / sqrt(var + eps): the normalised input the GEMVs see
      double mean = 0, var = 0;
      for (int i = 0; i < C; ++i) mean += frugal::to_float(h[std::size_t(r) * C + i]);
      mean /= C;
      for (int i = 0; i < C; ++i) {
        const double d = frugal::to_float(h[std::size_t(r) * C + i]) - mean;
        var += d * d;
      }
      const double rs = 1.0 / std::sqrt(var / C + 1e-5);
      for (int i = 0; i < C; ++i)
        u[std::size_t(r) * C + i] = float((frugal::to_float(h[std::size_t(r) * C + i]) - mean) * rs);
    }
    cal.add<float>(frugal::cpu, o.layerwise ? layer : 0, frugal::matrix_view<const float>(u.data(), rows, C));
  };
  calibration_prefill(c, m, seqs, [&](session<Tag, T>& s) { s.on_residual = hook; });
}

//! Step 3: the rotation of every site of `cal` (eigenvectors of its damped second moment, eigenvalues descending).
inline larosa_rotations larosa_solve(const frugal::larosa_calibration& cal) {
  const int C = static_cast<int>(cal.dim());
  larosa_rotations r;
  r.dim = C;
  for (int site = 0; site < cal.sites(); ++site) {
    r.q.emplace_back(static_cast<std::size_t>(C) * C);
    r.eigenvalues.emplace_back(static_cast<std::size_t>(C));
    cal.rotation<float>(frugal::cpu, site, frugal::matrix_view<float>(r.q.back().data(), C, C),
                        r.eigenvalues.back().data());
  }
  return r;
}

//! Steps 2-3: runs the calibration sequences `seqs` (each at most n_ctx - 1 tokens) through the (unfolded, dense)
//! model `m` and returns the rotation of each site, fitted on the rows of all sequences together (one covariance per
//! site). Several sequences give the covariance more tokens than one context holds: a site with fewer rows than
//! n_embd (a per-layer rotation gets 2 per token, the model rotation 2·n_layer) leaves directions without
//! calibration variance, and more text fits the rotation less closely to it (calibration.hpp).
template <class Tag, class T>
larosa_rotations larosa_calibrate(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                  const token_sequences& seqs, larosa_options o) {
  if (m.rms) fail("larosa_calibrate", "calibrate on the unfolded model");
  const std::size_t n = total_tokens(seqs);
  if (n < 2) fail("larosa_calibrate", "needs calibration tokens (got ", n, " in ", seqs.size(), " sequences)");
  auto cal = larosa_accumulators(m.cfg, o);
  larosa_accumulate(c, m, seqs, o, cal);
  return larosa_solve(cal);
}

//! The same on one sequence.
template <class Tag, class T>
larosa_rotations larosa_calibrate(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                                  const std::vector<std::int32_t>& tokens, larosa_options o) {
  return larosa_calibrate(c, m, token_sequences{tokens}, o);
}

//! Step 4: folds the rotations into `w` (LayerNorm folding first when not done yet); the big products run on Tag's
//! device (see detail::rotate_in).
template <class Tag>
weights larosa_apply(typename backend<Tag>::context& c, weights&& win, const larosa_rotations& r) {
  using frugal::weight_layout;
  weights w = fold_layernorms(std::move(win));
  const auto tag = frugal::cpu;
  const std::int64_t C = w.cfg.n_embd, V = w.cfg.vocab_size, T = w.cfg.n_ctx;
  const int L = w.cfg.n_layer;
  if (r.dim != C || r.q.empty()) fail("larosa_apply", "rotations for dim ", r.dim, ", model has n_embd ", C);
  const bool layerwise = r.q.size() > 1;
  if (layerwise && static_cast<int>(r.q.size()) != L) fail("larosa_apply", r.q.size(), " rotations for ", L, " layers");
  auto Q = [&](int l) { return frugal::matrix_view<const float>(r.q[layerwise ? l : 0].data(), C, C); };
  detail::rotate_out<Tag>(c, w.wte_in, nullptr, V, C, Q(0));
  detail::rotate_out<Tag>(c, w.wpe, nullptr, T, C, Q(0));
  for (int l = 0; l < L; ++l) {
    auto& y = w.layers[l];
    detail::rotate_in<Tag>(c, Q(l), y.qkv_w, C, 3 * C);
    detail::rotate_in<Tag>(c, Q(l), y.fc_w, C, 4 * C);
    detail::rotate_out<Tag>(c, y.proj_w, y.proj_b.data(), C, C, Q(l));
    detail::rotate_out<Tag>(c, y.fcproj_w, y.fcproj_b.data(), 4 * C, C, Q(l));
    if (layerwise && l + 1 < L) {
      y.adapter.resize(static_cast<std::size_t>(C * C));
      frugal::rotation_adapter<float, float>(tag, Q(l), Q(l + 1), frugal::matrix_view<float>(y.adapter.data(), C, C));
    }
  }
  detail::rotate_in<Tag>(c, Q(L - 1), w.lm_w, C, V);
  return w;
}

}  // namespace gpt2
