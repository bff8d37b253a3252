// frugal/rotation/larosa.hpp — LaRoSA rotations folded into the weights, and the folding that makes a LayerNorm
// model (GPT-2) rotation-invariant.
//
// LaRoSA (Liu et al., "La RoSA: Enhancing LLM Efficiency via Layerwise Rotated Sparse Activation", ICML 2025)
// rotates a layer input u into the PCA basis of its calibration covariance, ũ = u·Q, where magnitude top-k drops
// far less energy, and folds Q into the weights so that inference pays nothing:
//     topk(u·Q) · (Qᵀ·W)  ==  u·W   when nothing is dropped          (Q orthogonal)
// Rotating a layer input is only free if the residual stream itself is carried in the rotated basis, and that
// only commutes with RMS-style normalisation. GPT-2 uses LayerNorm, so first the SliceGPT transform (Ashkboos et
// al., ICLR 2024) is applied: LayerNorm's γ/β go into the following linear layers, and every writer of the
// residual stream is made to write zero-mean vectors, after which LayerNorm(x) == RMSNorm(x) without gain and
// x -> x·Q commutes with the norm.
//
// Weight layouts (`weight_layout`): a linear layer y = u·W + b with K inputs and N outputs is stored either
//   in_out  [K, N]: element (k, n) at w[k*ld + n] — HF GPT-2 Conv1D and frugal's sparse-GEMV layout (each input
//                   channel's N weights contiguous), also embeddings [vocab, d] seen as writers (one-hot input)
//   out_in  [N, K]: element (n, k) at w[n*ld + k] — nn.Linear / llm.c, and a (tied) LM head [vocab, d] as reader
// All functions here run on the CPU (weights are folded once, offline), compute in f64 and round once to T
// (f32, f64, f16 or bf16); Q is f32 or f64. They allocate temporary host memory (offline, not a hot path).
//
//   fold_layernorm(cpu, γ[K], β[K] or null, w, bias[N] or null, layout)   W <- diag(γ)·W, b <- b + β·W
//   center_output (cpu, w, bias[N] or null, layout)                        W <- W - rowmean_N(W), b <- b - mean(b)
//   rotate_input  (cpu, q[K, K], w, layout)                                W <- Qᵀ·W         (a reader of ũ = u·Q)
//   rotate_output (cpu, w, bias[N] or null, q[N, N], layout)               W <- W·Q, b <- b·Q (a writer into x̃ = x·Q)
//   rotation_adapter(cpu, q_from, q_to, out)                               A = Q_fromᵀ·Q_to (x̃_to = x̃_from·A)
//   larosa_rotation(tag, covariance_state, q, eigenvalues, ...)            Q = eigenvectors of the damped covariance
//   larosa_calibration                                                      per-site accumulators -> Q per site
//
// ---------------------------------------------------------------------------------------------------------------
// Recipe: rotating a pre-LN GPT-2 (d = n_embd; per layer l: ln_1, attn.c_attn [d, 3d], attn.c_proj [d, d], ln_2,
// mlp.c_fc [d, 4d], mlp.c_proj [4d, d]; then ln_f and the LM head tied to wte [V, d]):
//   0. Untie the LM head: lm_head = copy of wte ([V, d], out_in) with a new zero bias lm_bias [V].
//   1. Fold every LayerNorm into its readers:
//        fold_layernorm(ln_1.γ, ln_1.β, c_attn.W, c_attn.b, in_out);  fold_layernorm(ln_2.γ, ln_2.β, c_fc.W, c_fc.b,
//        in_out);  fold_layernorm(ln_f.γ, ln_f.β, lm_head, lm_bias, out_in).
//   2. Centre every writer of the residual stream:
//        center_output(wte, null, in_out); center_output(wpe, null, in_out);
//        center_output(attn.c_proj.W, attn.c_proj.b, in_out); center_output(mlp.c_proj.W, mlp.c_proj.b, in_out).
//      The residual stream is now zero-mean for every token; replace each LayerNorm by
//      y = x / sqrt(mean(x²) + ε) (RMSNorm, no gain, same ε). The model computes the same logits (up to rounding).
//   3. Calibrate: run the folded model on calibration text and feed, per layer l, the normalised attention input
//      u = rmsnorm(x) (the tensor that is top-k'ed at inference) to site l of a larosa_calibration
//      (LaRoSA uses this layer's attention-input Q for the MLP input as well; feeding the MLP input
//      rmsnorm(h) to the same site is the alternative). Q_l = calibration.rotation(cpu, l, q) (damping 1%).
//   4a. Model-level rotation (one site, Q for all layers; zero inference cost):
//        rotate_output(wte, null, Q, in_out); rotate_output(wpe, null, Q, in_out);
//        per layer: rotate_input(Q, c_attn.W, in_out); rotate_input(Q, c_fc.W, in_out);
//                   rotate_output(attn.c_proj.W, attn.c_proj.b, Q, in_out); rotate_output(mlp.c_proj.W, mlp.c_proj.b,
//                   Q, in_out);
//        rotate_input(Q, lm_head, out_in).
//   4b. Layer-level rotation (Q_l per layer): as 4a with Q_0 for the embeddings, Q_l for layer l's readers and
//        writers and Q_{L-1} for the LM head, plus the residual adapter A_l = rotation_adapter(Q_l, Q_{l+1}) applied
//        to the residual stream between layers l and l+1: x̃ <- x̃·A_l. Cost per token and adapter: one dense d x d
//        GEMV (d² MACs, d² weights: 2.36 MB in f32 for d = 768, +8% over a GPT-2 layer's 12·d² linear weights),
//        which activation sparsity cannot shrink; model-level rotation has no such cost but one Q must serve all
//        layers.
//   5. Inference: ũ = rmsnorm(x̃); qkv = topk(ũ)·c_attn.W' + b (sparse GEMV over the rotated weights); the o_proj
//      input (attention output) and the mlp.c_proj input (GELU output) are not rotated by LaRoSA: plain top-k.
// ---------------------------------------------------------------------------------------------------------------
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/view.hpp"
#include "../core/workspace.hpp"
#include "covariance.hpp"
#include "detail/cpu_mm.hpp"
#include "eigh.hpp"

FRUGAL_NAMESPACE_BEGIN

enum class weight_layout {
  in_out,  //!< [K, N]: w(k, n) = w[k*ld + n] (Conv1D, channel-major, frugal sparse GEMV)
  out_in   //!< [N, K]: w(n, k) = w[n*ld + k] (nn.Linear)
};

namespace detail {

template <class T>
inline constexpr bool fold_weight_ok =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;
template <class Q>
inline constexpr bool fold_rotation_ok = std::is_same_v<Q, float> || std::is_same_v<Q, double>;

template <class T>
inline double fold_load(T v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else
    return static_cast<double>(to_float(v));
}
template <class T>
inline T fold_store(double v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else if constexpr (std::is_same_v<T, float>)
    return static_cast<float>(v);
  else
    return from_float<T>(static_cast<float>(v));
}

template <class T>
std::int64_t inputs_of(const matrix_view<T>& w, weight_layout l) {
  return l == weight_layout::in_out ? w.rows : w.cols;
}
template <class T>
std::int64_t outputs_of(const matrix_view<T>& w, weight_layout l) {
  return l == weight_layout::in_out ? w.cols : w.rows;
}

template <class Q>
std::vector<double> rotation_to_f64(const char* op, const matrix_view<const Q>& q, std::int64_t n) {
  check_matrix(op, "q", q);
  FRUGAL_CHECK(q.rows == n && q.cols == n, op, "q has shape [", q.rows, ", ", q.cols, "] but must be [", n, ", ", n,
               "]");
  std::vector<double> r(static_cast<std::size_t>(n * n));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      const double v = static_cast<double>(q(i, j));
      FRUGAL_CHECK(std::isfinite(v), op, "q has a non-finite value at (", i, ", ", j, ")");
      r[static_cast<std::size_t>(i * n + j)] = v;
    }
  return r;
}

//! w [R, C] <- w · m (m: [C, C] f64), rows in parallel chunks.
template <class T>
void fold_right_multiply(cpu_t tag, matrix_view<T> w, const std::vector<double>& m) {
  const std::int64_t R = w.rows, C = w.cols;
  constexpr std::int64_t chunk = 32;
  parallel_for(tag, (R + chunk - 1) / chunk, 1, [&](std::int64_t c0, std::int64_t c1) {
    std::vector<double> x(static_cast<std::size_t>(chunk * C)), y(static_cast<std::size_t>(chunk * C));
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t r0 = c * chunk, rn = std::min(chunk, R - r0);
      for (std::int64_t r = 0; r < rn; ++r)
        for (std::int64_t j = 0; j < C; ++j) x[static_cast<std::size_t>(r * C + j)] = fold_load(w(r0 + r, j));
      cpu_mm<false>(x.data(), C, 1, m.data(), C, y.data(), C, static_cast<int>(rn), static_cast<int>(C),
                    static_cast<int>(C));
      for (std::int64_t r = 0; r < rn; ++r)
        for (std::int64_t j = 0; j < C; ++j) w(r0 + r, j) = fold_store<T>(y[static_cast<std::size_t>(r * C + j)]);
    }
  });
}

//! w [R, C] <- mᵀ · w (m: [R, R] f64), columns in parallel chunks.
template <class T>
void fold_left_multiply_t(cpu_t tag, matrix_view<T> w, const std::vector<double>& m) {
  const std::int64_t R = w.rows, C = w.cols;
  constexpr std::int64_t chunk = 64;
  parallel_for(tag, (C + chunk - 1) / chunk, 1, [&](std::int64_t c0, std::int64_t c1) {
    std::vector<double> x(static_cast<std::size_t>(R * chunk)), y(static_cast<std::size_t>(R * chunk));
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t j0 = c * chunk, cn = std::min(chunk, C - j0);
      for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t j = 0; j < cn; ++j) x[static_cast<std::size_t>(r * chunk + j)] = fold_load(w(r, j0 + j));
      // y[i][:] = sum_k m[k][i] x[k][:]
      cpu_mm<false>(m.data(), 1, R, x.data(), chunk, y.data(), chunk, static_cast<int>(R), static_cast<int>(cn),
                    static_cast<int>(R));
      for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t j = 0; j < cn; ++j) w(r, j0 + j) = fold_store<T>(y[static_cast<std::size_t>(r * chunk + j)]);
    }
  });
}

}  // namespace detail

//! LayerNorm(γ, β) followed by this linear layer == plain normalisation followed by the folded layer:
//! W <- diag(γ)·W (input channel k scaled by γ_k) and b <- b + β·W (with the original W). gamma: [K];
//! beta: [K] or null (no shift); bias: [N], required when beta is given. Afterwards the norm has γ = 1, β = 0.
template <class T, class G>
void fold_layernorm(cpu_t tag, const G* gamma, const G* beta, matrix_view<T> w, T* bias, weight_layout layout) {
  static_assert(detail::fold_weight_ok<T> && detail::fold_weight_ok<G>, "fold_layernorm: f32, f64, f16 or bf16");
  detail::check_matrix("fold_layernorm", "w", w);
  FRUGAL_CHECK(gamma != nullptr, "fold_layernorm", "gamma is null");
  FRUGAL_CHECK(beta == nullptr || bias != nullptr, "fold_layernorm",
               "beta is given but bias is null: the shift beta·W needs a bias to go to");
  const std::int64_t K = detail::inputs_of(w, layout), N = detail::outputs_of(w, layout);
  const bool io = layout == weight_layout::in_out;
  if (beta) {
    std::vector<double> add(static_cast<std::size_t>(N), 0.0);
    detail::parallel_for(tag, N, 64, [&](std::int64_t n0, std::int64_t n1) {
      for (std::int64_t n = n0; n < n1; ++n) {
        double acc = 0;
        for (std::int64_t k = 0; k < K; ++k)
          acc += detail::fold_load(beta[k]) * detail::fold_load(io ? w(k, n) : w(n, k));
        add[static_cast<std::size_t>(n)] = acc;
      }
    });
    for (std::int64_t n = 0; n < N; ++n)
      bias[n] = detail::fold_store<T>(detail::fold_load(bias[n]) + add[static_cast<std::size_t>(n)]);
  }
  detail::parallel_for(tag, w.rows, 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t c = 0; c < w.cols; ++c) {
        const double g = detail::fold_load(gamma[io ? r : c]);
        w(r, c) = detail::fold_store<T>(detail::fold_load(w(r, c)) * g);
      }
  });
}

//! Makes a writer of the residual stream write zero-mean vectors: every output vector y = u·W + b gets its mean
//! over the N outputs removed, for any input u. in_out [K, N]: each row of W loses its mean; out_in [N, K]: each
//! column loses its mean; bias [N] (or null) loses its mean. For embeddings ([vocab, d], in_out, bias null) this
//! centres every row.
template <class T>
void center_output(cpu_t tag, matrix_view<T> w, T* bias, weight_layout layout) {
  static_assert(detail::fold_weight_ok<T>, "center_output: f32, f64, f16 or bf16");
  detail::check_matrix("center_output", "w", w);
  const std::int64_t N = detail::outputs_of(w, layout);
  if (layout == weight_layout::in_out) {
    detail::parallel_for(tag, w.rows, 64, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        double m = 0;
        for (std::int64_t c = 0; c < w.cols; ++c) m += detail::fold_load(w(r, c));
        m /= static_cast<double>(w.cols);
        for (std::int64_t c = 0; c < w.cols; ++c) w(r, c) = detail::fold_store<T>(detail::fold_load(w(r, c)) - m);
      }
    });
  } else {
    std::vector<double> mean(static_cast<std::size_t>(w.cols), 0.0);
    for (std::int64_t r = 0; r < w.rows; ++r)
      for (std::int64_t c = 0; c < w.cols; ++c) mean[static_cast<std::size_t>(c)] += detail::fold_load(w(r, c));
    for (auto& m : mean) m /= static_cast<double>(w.rows);
    detail::parallel_for(tag, w.rows, 64, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r)
        for (std::int64_t c = 0; c < w.cols; ++c)
          w(r, c) = detail::fold_store<T>(detail::fold_load(w(r, c)) - mean[static_cast<std::size_t>(c)]);
    });
  }
  if (bias && N > 0) {
    double m = 0;
    for (std::int64_t n = 0; n < N; ++n) m += detail::fold_load(bias[n]);
    m /= static_cast<double>(N);
    for (std::int64_t n = 0; n < N; ++n) bias[n] = detail::fold_store<T>(detail::fold_load(bias[n]) - m);
  }
}

//! A reader of the rotated input ũ = u·Q: W <- Qᵀ·W, so that ũ·W' = u·W. q: [K, K] orthogonal.
template <class T, class Q>
void rotate_input(cpu_t tag, matrix_view<const std::type_identity_t<Q>> q, matrix_view<T> w, weight_layout layout) {
  static_assert(detail::fold_weight_ok<T>, "rotate_input: weights must be f32, f64, f16 or bf16");
  static_assert(detail::fold_rotation_ok<Q>, "rotate_input: q must be f32 or f64");
  detail::check_matrix("rotate_input", "w", w);
  const auto m = detail::rotation_to_f64("rotate_input", q, detail::inputs_of(w, layout));
  if (layout == weight_layout::in_out)
    detail::fold_left_multiply_t(tag, w, m);  // [K, N] <- Qᵀ W
  else
    detail::fold_right_multiply(tag, w, m);  // [N, K] <- W Q  (= (Qᵀ Wᵀ)ᵀ)
}

//! A writer into the rotated residual stream x̃ = x·Q: W <- W·Q and b <- b·Q, so that u·W' + b' = (u·W + b)·Q.
//! q: [N, N] orthogonal; bias: [N] or null. Embeddings: w = [vocab, d] in_out, bias null.
template <class T, class Q>
void rotate_output(cpu_t tag, matrix_view<T> w, T* bias, matrix_view<const std::type_identity_t<Q>> q,
                   weight_layout layout) {
  static_assert(detail::fold_weight_ok<T>, "rotate_output: weights must be f32, f64, f16 or bf16");
  static_assert(detail::fold_rotation_ok<Q>, "rotate_output: q must be f32 or f64");
  detail::check_matrix("rotate_output", "w", w);
  const std::int64_t N = detail::outputs_of(w, layout);
  const auto m = detail::rotation_to_f64("rotate_output", q, N);
  if (layout == weight_layout::in_out)
    detail::fold_right_multiply(tag, w, m);  // [K, N] <- W Q
  else
    detail::fold_left_multiply_t(tag, w, m);  // [N, K] <- Qᵀ W
  if (bias) detail::fold_right_multiply(tag, matrix_view<T>(bias, 1, N), m);
}

//! Residual adapter between two rotated segments of the residual stream: A = Q_fromᵀ·Q_to, so that
//! x·Q_to = (x·Q_from)·A. All [d, d]; out may be f32 or f64.
template <class Q, class U>
void rotation_adapter(cpu_t tag, matrix_view<const std::type_identity_t<Q>> q_from,
                      matrix_view<const std::type_identity_t<Q>> q_to, matrix_view<U> out) {
  static_assert(detail::fold_rotation_ok<Q> && detail::fold_rotation_ok<U>, "rotation_adapter: f32 or f64");
  detail::check_matrix("rotation_adapter", "out", out);
  const std::int64_t d = q_from.rows;
  const auto a = detail::rotation_to_f64("rotation_adapter", q_from, d);
  const auto b = detail::rotation_to_f64("rotation_adapter", q_to, d);
  FRUGAL_CHECK(out.rows == d && out.cols == d, "rotation_adapter", "out has shape [", out.rows, ", ", out.cols,
               "] but must be [", d, ", ", d, "]");
  std::vector<double> r(static_cast<std::size_t>(d * d));
  detail::parallel_for(tag, d, 16, [&](std::int64_t i0, std::int64_t i1) {
    detail::cpu_mm<false>(a.data() + i0, 1, d, b.data(), d, r.data() + i0 * d, d, static_cast<int>(i1 - i0),
                          static_cast<int>(d), static_cast<int>(d));
  });
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j) out(i, j) = static_cast<U>(r[static_cast<std::size_t>(i * d + j)]);
}

// ------------------------------------------------------------------------------------------------ calibration

struct larosa_options {
  double damping = 0.01;  //!< fraction of the mean diagonal added before the eigendecomposition (LaRoSA: 1%)
  bool centered = false;  //!< PCA of the centred covariance (LaRoSA: uncentred second moment)
  eigh_options eigh{};    //!< solver options
};

//! Q [d, d] (columns = eigenvectors of the damped covariance, eigenvalues descending) from finished sums; the
//! eigenvalues [d] are written too when non-null. Computes in f64 when T = double, else in f32 (T = float).
template <class T>
eigh_info larosa_rotation(cpu_t tag, const covariance_state& s, matrix_view<T> q, T* eigenvalues,
                          const larosa_options& o = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "larosa_rotation: f32 or f64");
  const std::int64_t d = s.dim;
  std::vector<T> cov(static_cast<std::size_t>(d > 0 ? d * d : 0)), lam(static_cast<std::size_t>(d > 0 ? d : 0));
  covariance_finalize(tag, s, matrix_view<T>(cov.data(), d, d), covariance_options{o.centered, o.damping});
  return eigh<T>(tag, matrix_view<const T>(cov.data(), d, d), eigenvalues ? eigenvalues : lam.data(), q, o.eigh);
}

//! Device workspace of larosa_rotation(frugal::cuda, ...): the covariance, the eigenvalues and eigh's workspace.
template <class T>
std::size_t larosa_rotation_workspace_bytes(cuda_t tag, std::int64_t d, const larosa_options& o = {}) {
  detail::workspace_carver c;
  c.take<T>(static_cast<std::size_t>(d * d));
  c.take<T>(static_cast<std::size_t>(d));
  c.take<std::byte>(eigh_workspace_bytes<T>(tag, d, o.eigh));
  return c.bytes();
}

//! The same on the GPU: s is a device state, q and eigenvalues (or null) device memory.
template <class T>
eigh_info larosa_rotation(cuda_t tag, const covariance_state& s, matrix_view<T> q, T* eigenvalues, workspace ws,
                          const larosa_options& o = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "larosa_rotation: f32 or f64");
  const std::int64_t d = s.dim;
  detail::workspace_carver c(ws);
  T* cov = c.take<T>(static_cast<std::size_t>(d * d));
  T* lam = c.take<T>(static_cast<std::size_t>(d));
  const std::size_t eb = eigh_workspace_bytes<T>(tag, d, o.eigh);
  void* ew = c.take<std::byte>(eb);
  c.check("larosa_rotation");
  covariance_finalize(tag, s, matrix_view<T>(cov, d, d), covariance_options{o.centered, o.damping});
  return eigh<T>(tag, matrix_view<const T>(cov, d, d), eigenvalues ? eigenvalues : lam, q, workspace{ew, eb}, o.eigh);
}

//! Per-site calibration on the CPU: one covariance accumulator per rotation site (a segment of the residual
//! stream: one site for model-level rotation, one per layer for layer-level rotation).
class larosa_calibration {
 public:
  larosa_calibration(int sites, std::int64_t dim, const larosa_options& o = {}) : opts_(o) {
    FRUGAL_CHECK(sites >= 1, "larosa_calibration", "sites (=", sites, ") must be >= 1");
    acc_.reserve(static_cast<std::size_t>(sites));
    for (int s = 0; s < sites; ++s) acc_.emplace_back(dim, o.centered);
  }
  int sites() const { return static_cast<int>(acc_.size()); }
  std::int64_t dim() const { return acc_.front().dim(); }

  //! Adds activations x [tokens, dim] seen at `site` (the normalised input that will be top-k'ed).
  template <class T>
  void add(cpu_t tag, int site, matrix_view<const std::type_identity_t<T>> x) {
    at(site).template add<T>(tag, x);
  }
  template <class T>
  void add(cpu_t tag, int site, matrix_view<T> x) {
    at(site).add(tag, x);
  }
  //! The accumulator of a site (e.g. to merge sums accumulated on a GPU and copied to the host).
  covariance_accumulator& accumulator(int site) { return at(site); }

  //! Q of a site into q [dim, dim] (f32 or f64), eigenvalues (descending) into lam [dim] when non-null.
  template <class T>
  eigh_info rotation(cpu_t tag, int site, matrix_view<T> q, T* lam = nullptr) const {
    return larosa_rotation<T>(tag, at(site).state(), q, lam, opts_);
  }

 private:
  covariance_accumulator& at(int site) {
    FRUGAL_CHECK(site >= 0 && site < sites(), "larosa_calibration", "site (=", site, ") must be in [0, ", sites(), ")");
    return acc_[static_cast<std::size_t>(site)];
  }
  const covariance_accumulator& at(int site) const {
    FRUGAL_CHECK(site >= 0 && site < sites(), "larosa_calibration", "site (=", site, ") must be in [0, ", sites(), ")");
    return acc_[static_cast<std::size_t>(site)];
  }
  larosa_options opts_;
  std::vector<covariance_accumulator> acc_;
};

FRUGAL_NAMESPACE_END
