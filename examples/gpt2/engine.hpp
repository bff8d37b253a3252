// examples/gpt2/engine.hpp — the GPT-2 forward pass, written once for frugal::cpu and frugal::cuda.
//
// device_model<Tag, T>   the weights in T on the device (linears channel-major [in, out] for frugal::gemv; the LM
//                        head as its own channel-major [C, V] copy of the tied embedding). Every LayerNorm's γ/β is
//                        folded into the linear that reads it at upload (W <- diag(γ)·W, b <- b + β·W: exact), so the
//                        norms left are affine-free: LayerNorm (x - mean)·rstd, or x·rstd on a rotation-folded model.
// session<Tag, T>        one decoding run: a batch of sequences, a KV store (none / contiguous / paged), scratch,
//                        and the decode step. Decode reads tokens, positions and lengths from device memory and
//                        writes the chosen token there, so on CUDA the whole step is captured once in a CUDA Graph and
//                        replayed with no host synchronisation per token.
//
// Per block (pre-LayerNorm GPT-2, affine folded):
//   qkv = norm(x)·Wqkv + b; append k, v; a = attention(q, cache); x += a·Wo + b
//   f = gelu(norm(x)·Wfc + b); x += f·Wproj + b;  [x = x·A  (layer-level LaRoSA adapter)]
// then logits = norm(x)·Wlm (+ b).
//
// Sparse decode: the four block inputs — site 0 qkv (x̂ = norm(x)), site 1 o_proj (the attention output a),
// site 2 fc (x̂), site 3 down (the GELU output f) — can each keep only part of their channels, with one of two
// selection rules (session_options):
//   top-k      (p > 0, thresholds empty): every token keeps the k = round((1 - p)·K) largest |v| of each input
//              (frugal::sparse_gemv_topk; a per-token selection). TEAL-style on an unrotated model, LaRoSA on a
//              rotation-folded one (larosa.hpp).
//   threshold  (thresholds set: n_layer·4 floats, index 4·layer + site): keeps |v| >= t_{layer,site}
//              (frugal::sparse_gemv_threshold, one scalar t per GEMV; TEAL's own rule). The thresholds are calibrated
//              offline as the p-quantile of |v| over calibration tokens (thresholds.hpp: calibrate_thresholds), so
//              about 1 - p of the channels are kept on text like the calibration text — the realised fraction varies
//              per token and is measured (session_options::count_kept), not nominal. t = 0 keeps every channel.
//   Both rules see the input as the GEMV sees it: at sites 0 and 2 the normalised x̂ (affine-free LayerNorm on the
//   unrotated model, rmsnorm on a rotation-folded one); at sites 1 and 3 the raw values. The LM head is dense.
// Decode step on CUDA (session_options::fused, the default): the norm runs inside the GEMV that reads it
// (gemv_options::norm: layernorm, or rmsnorm on a rotation-folded model; also with top-k on rmsnorm and with the
// threshold rule on either norm: the threshold compares |x̂|) and GELU in the fc GEMV's epilogue (gemv_options::act).
// Only TEAL's top-k on an unrotated model cannot take a LayerNorm prologue (top-k of the centred input is not the
// top-k of x), so it keeps a separate affine-free LayerNorm op before those two GEMVs; the threshold rule needs none.
// The KV append is fused into the attention launch (frugal::append_decode_attention). One op embeds the tokens and
// computes the KV slots, one selects the next tokens and advances the counters: per step
// 2 + n_layer * (4 GEMVs + attention) launches (+ the attention's split-K merge, the top-k selections of sparse
// decode, and the LayerNorms of TEAL top-k; fused = false: the step with separate LayerNorm, GELU and KV-append ops).
// The thresholds are kernel arguments (host scalars): the captured graph holds them, and set_thresholds() drops the
// graphs so that the next step captures the new values. So is the attention's split-K bound (max_seq_len): it follows
// the longest sequence in powers of two (kv_store::plan_bound), one captured graph per bound.
// session_options::mega (CUDA, batch 1, contiguous KV, dense): the whole decode step — every layer and the LM head —
// is one persistent kernel instead (mega_cuda.cuh, on row-major weight copies the session builds), then select +
// advance: two launches per token.
// Prefill runs one sequence at a time, batched over its tokens (frugal::gemv's batched path on the CPU, cuBLAS on
// CUDA), and is always dense. Its hooks (on_residual, on_block_input) expose the activations for calibration.
#pragma once

#include <frugal/gemv/gemv.hpp>
#include <frugal/rotation/larosa.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backend.hpp"
#include "model.hpp"
#include "ops_cpu.hpp"
#if defined(__CUDACC__)
#include "backend_cuda.cuh"
#include "mega_cuda.cuh"
#include "ops_cuda.cuh"
#endif
#include "kv.hpp"

namespace gpt2 {

//! How many channels of each block input the decode GEMVs keep (0 = all: dense).
struct sparsity {
  float p = 0.f;  //!< fraction dropped at each of the four block inputs
  static int keep(int K, float p) {
    if (p <= 0.f) return 0;
    return std::clamp(static_cast<int>(std::lround((1.0 - double(p)) * K)), 1, K);
  }
};

//! The four sparsified block inputs (sites), in the order of session_options::thresholds within a layer.
enum class site : int { qkv = 0, o_proj = 1, fc = 2, down = 3 };
inline constexpr int n_sites = 4;
inline const char* site_name(int s) {
  static constexpr const char* names[n_sites] = {"qkv", "o_proj", "fc", "down"};
  return s >= 0 && s < n_sites ? names[s] : "?";
}

//! Checks a threshold table for a model of n_layer layers: empty (top-k / dense), or n_layer·4 values, each >= 0
//! and not NaN (+inf allowed: keeps no channel). Throws frugal::error naming `op` and the offending value.
inline void check_thresholds(const char* op, const std::vector<float>& t, int n_layer) {
  if (t.empty()) return;
  if (t.size() != static_cast<std::size_t>(n_layer) * n_sites)
    fail(op, "thresholds has ", t.size(), " values; expected n_layer * 4 = ", n_layer, " * 4 = ", n_layer * n_sites,
         " (index 4 * layer + site; empty for per-token top-k)");
  for (std::size_t i = 0; i < t.size(); ++i)
    if (!(t[i] >= 0.f))  // NaN fails too
      fail(op, "thresholds[", i, "] (layer ", i / n_sites, ", site ", site_name(static_cast<int>(i % n_sites)),
           ") = ", t[i], " must be >= 0 and not NaN");
}

template <class Tag, class T>
struct device_model {
  using B = buffer<Tag, T>;
  config cfg;
  bool rms = false;   // norms without centring (rotation-folded model); else affine-free LayerNorm
  B wte;              // [V, C] input embedding
  B wpe;              // [n_ctx, C]
  B lm_w;             // [C, lm_ld] LM head (ln_f folded in), channel-major; rows padded to a multiple of 8 (16-byte
                      // GEMV vectors)
  std::int64_t lm_ld = 0;
  B lm_b;             // [V] or empty (ln_f's β·W when β != 0)
  struct layer {
    B qkv_w, qkv_b, proj_w, proj_b, fc_w, fc_b, fcproj_w, fcproj_b, adapter;  // ln_1 in qkv, ln_2 in fc
  };
  std::vector<layer> layers;

  //! Bytes of weights one decode token reads at batch 1 with `keep` channels kept per block input (0 = dense).
  double weight_bytes_per_token(float p) const {
    const double C = cfg.n_embd, V = cfg.vocab_size, e = sizeof(T);
    auto kept = [&](double K) { const int k = sparsity::keep(int(K), p); return k ? double(k) : K; };
    double n = 0;
    for (const auto& l : layers) {
      n += kept(C) * 3 * C + 3 * C + kept(C) * C + C + kept(C) * 4 * C + 4 * C + kept(4 * C) * C + C;
      n += double(l.adapter.size());
    }
    n += C * V + double(lm_b.size()) + 2 * C;
    return n * e;
  }
  std::size_t bytes() const {
    std::size_t s = wte.bytes() + wpe.bytes() + lm_w.bytes() + lm_b.bytes();
    for (const auto& l : layers)
      for (const B* b :
           {&l.qkv_w, &l.qkv_b, &l.proj_w, &l.proj_b, &l.fc_w, &l.fc_b, &l.fcproj_w, &l.fcproj_b, &l.adapter})
        s += b->bytes();
    return s;
  }
};

namespace detail {
//! W [K, N] <- diag(g)·W, bias <- bias + beta·W (frugal::fold_layernorm, f64 sums); the bias is created when beta has
//! a nonzero and the linear has none. g, beta are released.
inline void fold_norm_affine(std::vector<float>& g, std::vector<float>& beta, std::vector<float>& w, std::int64_t K,
                             std::int64_t N, std::vector<float>& bias) {
  if (g.empty() && beta.empty()) return;
  if (g.empty()) g.assign(static_cast<std::size_t>(K), 1.f);
  const bool shift = std::any_of(beta.begin(), beta.end(), [](float v) { return v != 0.f; });
  if (shift && bias.empty()) bias.assign(static_cast<std::size_t>(N), 0.f);
  frugal::fold_layernorm(frugal::cpu, g.data(), shift ? beta.data() : static_cast<const float*>(nullptr),
                         frugal::matrix_view<float>(w.data(), K, N), shift ? bias.data() : static_cast<float*>(nullptr),
                         frugal::weight_layout::in_out);
  std::vector<float>().swap(g);
  std::vector<float>().swap(beta);
}
}  // namespace detail

//! Moves host weights onto the device in T (the host arrays are released as they go, to keep peak memory low).
//! LayerNorm affines are folded into their readers first (ln_1 -> c_attn, ln_2 -> c_fc, ln_f -> the LM head).
template <class Tag, class T>
device_model<Tag, T> upload_model(typename backend<Tag>::context& c, weights&& w) {
  device_model<Tag, T> m;
  m.cfg = w.cfg;
  m.rms = w.rms_norm;
  const std::int64_t C = w.cfg.n_embd, V = w.cfg.vocab_size;
  if (w.lm_w.empty()) {  // tied head: channel-major copy of wte
    w.lm_w.resize(static_cast<std::size_t>(C * V));
    frugal::to_channel_major<float>(frugal::matrix_view<const float>(w.wte.data(), V, C),
                                    frugal::matrix_view<float>(w.lm_w.data(), C, V));
  }
  detail::fold_norm_affine(w.lnf_g, w.lnf_b, w.lm_w, C, V, w.lm_b);
  for (auto& l : w.layers) {
    detail::fold_norm_affine(l.ln1_g, l.ln1_b, l.qkv_w, C, 3 * C, l.qkv_b);
    detail::fold_norm_affine(l.ln2_g, l.ln2_b, l.fc_w, C, 4 * C, l.fc_b);
  }
  // Pad the LM head's rows to a multiple of 8 elements (V = 50257 is odd): the CUDA GEMV reads 16-byte vectors.
  m.lm_ld = (V + 7) / 8 * 8;
  if (m.lm_ld != V) {
    std::vector<float> padded(static_cast<std::size_t>(C * m.lm_ld), 0.f);
    for (std::int64_t k = 0; k < C; ++k)
      std::copy_n(w.lm_w.begin() + k * V, V, padded.begin() + k * m.lm_ld);
    w.lm_w = std::move(padded);
  }
  m.lm_w = upload<Tag, T>(c, std::move(w.lm_w));
  m.lm_b = upload<Tag, T>(c, std::move(w.lm_b));
  m.wte = upload<Tag, T>(c, std::move(w.wte_in.empty() ? w.wte : w.wte_in));
  m.wpe = upload<Tag, T>(c, std::move(w.wpe));
  for (auto& l : w.layers) {
    typename device_model<Tag, T>::layer d;
    d.qkv_w = upload<Tag, T>(c, std::move(l.qkv_w));
    d.qkv_b = upload<Tag, T>(c, std::move(l.qkv_b));
    d.proj_w = upload<Tag, T>(c, std::move(l.proj_w));
    d.proj_b = upload<Tag, T>(c, std::move(l.proj_b));
    d.fc_w = upload<Tag, T>(c, std::move(l.fc_w));
    d.fc_b = upload<Tag, T>(c, std::move(l.fc_b));
    d.fcproj_w = upload<Tag, T>(c, std::move(l.fcproj_w));
    d.fcproj_b = upload<Tag, T>(c, std::move(l.fcproj_b));
    d.adapter = upload<Tag, T>(c, std::move(l.adapter));
    m.layers.push_back(std::move(d));
  }
  w.layers.clear();
  return m;
}

struct session_options {
  attn_kind attn = attn_kind::contiguous;
  int max_batch = 1;
  int max_seq = 1024;   //!< tokens per sequence: prompt + generated
  int reserve = 0;      //!< contiguous KV: tokens reserved per sequence (0: max_seq; servers reserve n_ctx)
  int page_size = 16;   //!< paged KV
  float p = 0.f;        //!< decode sparsity at each block input (0: dense); the top-k rule when thresholds is empty
  //! Threshold rule (TEAL): empty = per-token top-k at p (or dense); else n_layer * 4 values, thresholds[4 * l + s]
  //! for layer l and site s (qkv, o_proj, fc, down: enum site); a GEMV keeps the channels with |v| >= t (v = x̂ at
  //! qkv and fc). From calibrate_thresholds (thresholds.hpp). Checked by the session (check_thresholds).
  std::vector<float> thresholds;
  //! Measurement: decode runs op by op (no CUDA Graph), downloads every sparsified block input and counts the
  //! channels its GEMV keeps (session::kept_fraction). Slow (a host synchronisation per GEMV): for benchmarks/tests.
  bool count_kept = false;
  sampling sample;      //!< greedy by default
  //! Decode GEMVs normalise their input and apply GELU themselves (gemv_options::norm / act); false: separate
  //! LayerNorm and GELU ops (the reference path, and the step as it was before the fused options).
  bool fused = true;
  //! CUDA, batch 1, contiguous KV, dense: the whole decode step as one persistent kernel (mega_cuda.cuh) on row-major
  //! copies of the weights (built by the session: the model's weight bytes once more), then select + advance.
  bool mega = false;
  //! CUDA: gemv_options::weights_ahead of the dense decode GEMVs (-1 automatic: on, as they launch with pdl; 0: the
  //! other dense kernel, for A/B runs).
  int weights_ahead = -1;
  //! CUDA: attention_params::kv_ahead for the fused append + attention: its cache copies go out before the qkv GEMV
  //! has finished (lengths, tables and earlier tokens' K/V are written before a step begins). false: for A/B runs.
  bool kv_ahead = true;
  //! CUDA, batch 1: gemv_options::splits of the dense layer GEMVs (qkv, o_proj, fc, down; not the LM head). -1
  //! (automatic): 1 when all four run unsplit in one wave with each block's whole tile in shared memory ahead of
  //! the PDL wait (frugal::gemv_tile_ahead: GPT-2 124M yes, XL no), so no GEMV of the step reduces across blocks;
  //! else the library's choice. 0: the library's choice; > 0: pinned (the weights-ahead kernel stays on).
  int decode_splits = -1;
  //! CUDA decode attention: the split-K plan follows the longest sequence of the step (kv_store::plan_bound: a
  //! power of two >= 64, one captured graph per bound) instead of max_seq. false: planned for max_seq (A/B runs).
  bool attn_plan_follows = true;
  //! attention_params::num_splits of the decode attention (0: the library's plan; > 0 pinned, for A/B runs).
  int attn_splits = 0;
  //! attention_params::cluster_merge (sm_90, 2..8 splits merged through a thread-block cluster); false: A/B runs.
  bool attn_cluster_merge = true;
};

template <class Tag, class T>
class session {
  using be = backend<Tag>;
  using ctx_t = typename be::context;
  template <class U>
  using mv = frugal::matrix_view<U>;
  template <class U>
  using cmv = frugal::matrix_view<const U>;

 public:
  session(ctx_t& c, const device_model<Tag, T>& m, session_options o)
      : c_(c), m_(m), o_(o), kv_(c, m.cfg, o.attn, o.attn == attn_kind::nocache ? 1 : o.max_batch, o.max_seq,
                                  o.page_size, o.attn == attn_kind::contiguous ? o.reserve : 0, o.attn_splits,
                                  o.attn_cluster_merge) {
    const auto& cfg = m.cfg;
    check_thresholds("session", o.thresholds, cfg.n_layer);
    if (o.mega) {
      if (!be::is_cuda) fail("session", "mega (the one-kernel decode step) needs --device cuda");
      if (o.max_batch != 1 || o.attn != attn_kind::contiguous || o.p != 0.f || !o.thresholds.empty() || o.count_kept)
        fail("session", "mega runs batch 1 on the contiguous KV cache, dense; got max_batch=", o.max_batch, ", attn=",
             attn_name(o.attn), ", p=", o.p, ", thresholds=", o.thresholds.size(), ", count_kept=", o.count_kept);
      if (cfg.head_dim() != 64 || cfg.n_embd % 8 != 0)
        fail("session", "mega needs head_dim 64 and n_embd a multiple of 8; got head_dim=", cfg.head_dim(),
             ", n_embd=", cfg.n_embd);
      for (const auto& L : m.layers)
        if (!L.adapter.empty()) fail("session", "mega does not run layer-level rotation adapters");
    }
    if (o.max_seq > cfg.n_ctx) fail("session", "max_seq (=", o.max_seq, ") exceeds the model context n_ctx=", cfg.n_ctx);
    if (o.attn == attn_kind::nocache && o.max_batch != 1)
      fail("session", "the no-KV-cache mode runs one sequence (batch 1), got max_batch=", o.max_batch);
    C_ = cfg.n_embd, V_ = cfg.vocab_size;
    const std::size_t Bn = o.max_batch, R = o.max_seq, C = C_;
    x_ = buffer<Tag, T>(c, Bn * C), h_ = buffer<Tag, T>(c, Bn * C), t_ = buffer<Tag, T>(c, Bn * C);
    qkv_ = buffer<Tag, T>(c, Bn * 3 * C), att_ = buffer<Tag, T>(c, Bn * C), f_ = buffer<Tag, T>(c, Bn * 4 * C);
    logits_ = buffer<Tag, T>(c, Bn * V_);
    X_ = buffer<Tag, T>(c, R * C), H_ = buffer<Tag, T>(c, R * C), Q_ = buffer<Tag, T>(c, R * 3 * C);
    A_ = buffer<Tag, T>(c, R * C), F_ = buffer<Tag, T>(c, R * 4 * C);
    ints_ = buffer<Tag, std::int32_t>(c, 3 * Bn + 1 + (R + 1) + R + Bn * (R + 1) + 1);
    tokens_ = ints_.data(), pos_ = tokens_ + Bn, lens_ = pos_ + Bn;
    step_ = lens_ + Bn, ptok_ = step_ + 1, ppos_ = ptok_ + R + 1, history_ = ppos_ + R;
    hist_ld_ = o.max_seq + 1;
    counter_ = reinterpret_cast<std::uint32_t*>(history_ + Bn * hist_ld_);
    // every int defined (counter 0; results() downloads whole history rows, of which a run fills only a prefix)
    be::zero(c, ints_.data(), ints_.bytes());
    std::vector<std::int32_t> p(R);
    for (std::size_t i = 0; i < R; ++i) p[i] = static_cast<std::int32_t>(i);
    be::to_device(c, ppos_, p.data(), R * sizeof(std::int32_t));
    const int k4 = sparsity::keep(4 * C_, o.p), k1 = sparsity::keep(C_, o.p);
    std::size_t ws = 0;
    for (auto [K, N, k] : std::initializer_list<std::tuple<int, int, int>>{
             {C_, 3 * C_, k1}, {C_, C_, k1}, {C_, 4 * C_, k1}, {4 * C_, C_, k4}, {C_, V_, 0}, {C_, C_, 0}})
      ws = std::max({ws, frugal::gemv_workspace_bytes<T>(c.tag, o.max_batch, K, N, k),
                     frugal::gemv_workspace_bytes<T>(c.tag, o.max_batch, K, N, 0)});  // top-k; dense / threshold
    ws_ = buffer<Tag, std::byte>(c, ws);
    splits_ = o.decode_splits;
#if defined(__CUDACC__)
    if constexpr (be::is_cuda)
      if (splits_ < 0) {  // automatic: one split when every layer GEMV holds its whole unsplit tile ahead
        bool all = true;
        for (auto [K, N] : {std::pair{C_, 3 * C_}, std::pair{C_, C_}, std::pair{C_, 4 * C_}, std::pair{4 * C_, C_}})
          all = all && frugal::gemv_tile_ahead<T>(c.tag, K, N, 1);
        splits_ = all ? 1 : 0;
      }
#endif
    if (splits_ < 0) splits_ = 0;
    kept_.assign(static_cast<std::size_t>(cfg.n_layer) * n_sites, 0.0);
    seen_.assign(kept_.size(), 0.0);
#if defined(__CUDACC__)
    if constexpr (be::is_cuda)
      if (o.mega) mega_ = std::make_shared<mega::weights_rm<T>>(c, m);  // before any capture: it allocates
#endif
    be::sync(c);
  }

  const session_options& options() const { return o_; }

  //! Switches the selection rule between decode steps: thresholds as session_options::thresholds (empty: top-k at
  //! options().p). Checked first (frugal::error, the session unchanged); on CUDA the captured step is dropped and the
  //! next decode captures the new thresholds.
  void set_thresholds(std::vector<float> t) {
    check_thresholds("session::set_thresholds", t, m_.cfg.n_layer);
    o_.thresholds = std::move(t);
    drop_graphs();
  }

  //! With session_options::count_kept: per layer and site (index 4 * layer + site, as thresholds), the fraction of
  //! the input channels its decode GEMV kept, over all rows and decode steps so far (1 where the GEMV is dense; 0
  //! before the first step).
  std::vector<double> kept_fraction() const {
    std::vector<double> f(kept_.size(), 0.0);
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = seen_[i] > 0 ? kept_[i] / seen_[i] : 0.0;
    return f;
  }

  //! Calibration hook: called in prefill with each block's residual stream before its two norms (which = 0: before
  //! LN1, 1: before LN2) and before the final norm (layer = n_layer, which = 0). X is [rows, C] in device memory.
  std::function<void(int layer, int which, const T* X, int rows)> on_residual;
  //! Calibration hook: called in prefill with each block's four GEMV inputs as the dense prefill computes them
  //! (rounded to T), site = 0: norm(x) before qkv, 1: the attention output, 2: norm(x) before fc, 3: the GELU output.
  //! X is [rows, cols] in device memory (cols = C, or 4C at site 3).
  std::function<void(int layer, int site, const T* X, int rows, int cols)> on_block_input;
  kv_store<Tag, T>& kv() { return kv_; }

  //! Starts the batch: prefills every prompt (dense), selects each first new token. Prompts of any lengths >= 1.
  //! `forced` (optional, per row): tokens to feed at the decode steps instead of the selected ones (teacher forcing).
  void start(const std::vector<std::vector<std::int32_t>>& prompts,
             const std::vector<std::vector<std::int32_t>>* forced = nullptr) {
    const int b = static_cast<int>(prompts.size());
    if (b < 1 || b > o_.max_batch) fail("session::start", "batch of ", b, " prompts; this session holds 1..", o_.max_batch);
    b_ = b;
    kv_.reset(c_);
    lens_h_.assign(b, 0);
    std::vector<std::int32_t> pos(b), lens(b);
    for (int r = 0; r < b; ++r) {
      const int n = static_cast<int>(prompts[r].size());
      if (n < 1 || n >= o_.max_seq)
        fail("session::start", "prompt ", r, " has ", n, " tokens; allowed 1..", o_.max_seq - 1, " (max_seq)");
      for (auto t : prompts[r])
        if (t < 0 || t >= V_) fail("session::start", "token id ", t, " out of range [0, ", V_, ")");
      pos[r] = n, lens[r] = n + 1;
      lens_h_[r] = n;
    }
    be::to_device(c_, pos_, pos.data(), b * sizeof(std::int32_t));
    be::to_device(c_, lens_, lens.data(), b * sizeof(std::int32_t));
    const std::int32_t minus1 = -1;
    be::to_device(c_, step_, &minus1, sizeof minus1);
    forced_ = false;
    if (forced) {
      if (static_cast<int>(forced->size()) != b) fail("session::start", "forced tokens for ", forced->size(), " rows, batch ", b);
      forced_ = true;
      std::vector<std::int32_t> fh(static_cast<std::size_t>(b) * hist_ld_, 0);
      for (int r = 0; r < b; ++r)
        for (std::size_t j = 0; j < (*forced)[r].size() && j < std::size_t(hist_ld_); ++j) fh[r * hist_ld_ + j] = (*forced)[r][j];
      be::to_device(c_, history_, fh.data(), fh.size() * sizeof(std::int32_t));
    }
    steps_ = 0;
    if (o_.attn == attn_kind::nocache) {
      prompt_len_ = static_cast<int>(prompts[0].size());
      be::to_device(c_, ptok_, prompts[0].data(), prompts[0].size() * sizeof(std::int32_t));
      forward_nocache(prompt_len_);
    } else {
      for (int r = 0; r < b; ++r) {
        kv_.reserve(c_, r, static_cast<int>(prompts[r].size()));
        be::to_device(c_, ptok_, prompts[r].data(), prompts[r].size() * sizeof(std::int32_t));
        prefill(r, static_cast<int>(prompts[r].size()));
      }
      head(b);
    }
    if (forced_) set_forced_tokens();
    be::sync(c_);
  }

  //! n decode steps (each feeds the current token of every row and selects the next).
  void decode(int n) {
    for (int i = 0; i < n; ++i) {
      if (o_.attn == attn_kind::nocache) {
        const int len = prompt_len_ + steps_ + 1;
        if (len > o_.max_seq) fail("session::decode", "sequence reached max_seq=", o_.max_seq);
        forward_nocache(len);
      } else {
        for (int r = 0; r < b_; ++r) {
          if (lens_h_[r] + 1 > o_.max_seq) fail("session::decode", "sequence ", r, " reached max_seq=", o_.max_seq);
          kv_.reserve(c_, r, lens_h_[r] + 1);
          lens_h_[r] += 1;
        }
        set_attention_plan();
        if constexpr (be::is_cuda) {
          if (o_.count_kept) {  // downloads inside the step: no capture
            decode_step();
          } else {
            be::launch(c_, step_graph());
          }
        } else {
          decode_step();
        }
      }
      ++steps_;
    }
  }

  void sync() { be::sync(c_); }
  int steps() const { return steps_; }
  //! CUDA: the attention plan bounds of the decode steps captured so far, one graph each, in capture order.
  std::vector<int> captured_bounds() const {
    std::vector<int> b;
    for (const auto& g : graphs_) b.push_back(g.first);
    return b;
  }

  //! Tokens chosen so far per row: the first from prefill, then one per decode step.
  std::vector<std::vector<std::int32_t>> generated() {
    std::vector<std::vector<std::int32_t>> out(b_);
    if (o_.attn == attn_kind::nocache) {
      auto h = download<Tag, std::int32_t>(c_, ptok_ + prompt_len_, steps_ + 1);
      out[0] = h;
      return out;
    }
    auto h = download<Tag, std::int32_t>(c_, history_, static_cast<std::size_t>(b_) * hist_ld_);
    for (int r = 0; r < b_; ++r) out[r].assign(h.begin() + r * hist_ld_, h.begin() + r * hist_ld_ + steps_ + 1);
    return out;
  }

  //! Logits of the last forward pass, [b, V] as floats.
  std::vector<float> logits() {
    auto h = download<Tag, T>(c_, logits_.data(), static_cast<std::size_t>(b_) * V_);
    std::vector<float> f(h.size());
    for (std::size_t i = 0; i < h.size(); ++i) f[i] = frugal::to_float(h[i]);
    return f;
  }

  ~session() { drop_graphs(); }

 private:
  void drop_graphs() {
    if constexpr (be::is_cuda)
      for (auto& g : graphs_) be::destroy(g.second);
    graphs_.clear();
  }
  //! The decode step's CUDA Graph for the current attention plan bound. Where it is missing, captures one graph per
  //! bound from this one up to max_seq (as a server captures its shapes at start-up: no capture later in the run).
  typename be::graph_t step_graph() {
    const int now = kv_.plan_bound_now();
    auto find = [&](int b) {
      return std::find_if(graphs_.begin(), graphs_.end(), [&](const auto& g) { return g.first == b; });
    };
    if (find(now) == graphs_.end()) {
      try {
        for (int b = now;; b = kv_.plan_bound(b + 1)) {
          if (find(b) == graphs_.end()) {
            kv_.set_plan_bound(b);
            graphs_.reserve(graphs_.size() + 1);  // no throw between the capture and owning its graph
            graphs_.push_back({b, be::capture(c_, [&] { decode_step(); })});
          }
          if (b >= o_.max_seq || !o_.attn_plan_follows) break;
        }
      } catch (...) {
        kv_.set_plan_bound(now);  // the graphs captured so far stay valid
        throw;
      }
      kv_.set_plan_bound(now);
    }
    return find(now)->second;
  }
  //! The attention's split-K bound for the next step: the longest sequence it will hold (session_options::
  //! attn_plan_follows), or max_seq.
  void set_attention_plan() {
    int longest = 1;
    for (int l : lens_h_) longest = std::max(longest, l);
    kv_.set_plan_bound(o_.attn_plan_follows ? kv_.plan_bound(longest) : o_.max_seq);
  }

#if defined(__CUDACC__)
  //! session_options::mega: one step_kernel launch (every layer and the LM head), then select + advance.
  void mega_step() {
    const auto& w = *static_cast<const mega::weights_rm<T>*>(mega_.get());
    using C = frugal::detail::cuda_type_t<T>;
    using frugal::detail::as_cuda;
    const auto kv0 = kv_.contiguous_layer(0);
    mega::step_args<C> a;
    a.layers = w.layers();
    a.wte = as_cuda(static_cast<const T*>(m_.wte.data())), a.wpe = as_cuda(static_cast<const T*>(m_.wpe.data()));
    a.lm = w.lm(), a.lm_b = as_cuda(nz(m_.lm_b));
    a.x = as_cuda(x_.data()), a.qkv = as_cuda(qkv_.data()), a.att = as_cuda(att_.data()), a.f = as_cuda(f_.data());
    a.logits = as_cuda(logits_.data());
    a.kv = as_cuda(kv0.k);
    a.kv_layer = m_.cfg.n_layer > 1 ? kv_.contiguous_layer(1).k - kv0.k : 0;
    a.kv_v = kv0.v - kv0.k;
    a.tokens = tokens_, a.pos = pos_, a.lens = lens_;
    a.bar = w.barrier();
    a.L = m_.cfg.n_layer, a.E = C_, a.H = m_.cfg.n_head, a.V = V_;
    a.rms = m_.rms;
    mega::launch(c_.tag.stream, a, o_.max_seq);
    mark("mega step");
    ops::select_advance(c_.tag, logits_.data(), b_, V_, o_.sample, !forced_, step_, tokens_, history_, hist_ld_, pos_,
                        lens_, forced_ ? history_ : nullptr, hist_ld_, counter_);
    mark("select + advance");
  }
#endif

  // ---- one decode step for rows 0..b-1 (everything read from device memory) --------------------------------------
  void decode_step() {
#if defined(__CUDACC__)
    if constexpr (be::is_cuda)
      if (o_.mega) return mega_step();
#endif
    const auto& cfg = m_.cfg;
    const int b = b_, C = C_;
    auto tag = c_.tag;
    T *x = x_.data(), *tmp = t_.data();
    // each row's KV slot (the unfused append reads it; the fused attention appends at lens - 1 itself)
    ops::embed(tag, m_.wte.data(), m_.wpe.data(), tokens_, pos_, b, C, x, kv_.slot_args());
    mark("embed + kv slots");
    for (int l = 0; l < cfg.n_layer; ++l) {
      const auto& L = m_.layers[l];
      norm_linear(x, rule(l, site::qkv, C), cmv<T>(L.qkv_w.data(), C, 3 * C), nz(L.qkv_b), mv<T>(qkv_.data(), b, 3 * C),
                  frugal::gemv_act::none, "gemv qkv");
      kv_.decode(c_, l, b, lens_, cmv<T>(qkv_.data(), b, C, 3 * C), cmv<T>(qkv_.data() + C, b, C, 3 * C),
                 cmv<T>(qkv_.data() + 2 * C, b, C, 3 * C), mv<T>(att_.data(), b, C), o_.fused, o_.kv_ahead);
      mark("kv append + attention");
      linear(cmv<T>(att_.data(), b, C), rule(l, site::o_proj, C), L.proj_w, C, L.proj_b, mv<T>(x, b, C), true);
      mark("gemv o_proj");
      norm_linear(x, rule(l, site::fc, C), cmv<T>(L.fc_w.data(), C, 4 * C), nz(L.fc_b), mv<T>(f_.data(), b, 4 * C),
                  frugal::gemv_act::gelu_tanh, "gemv fc");
      linear(cmv<T>(f_.data(), b, 4 * C), rule(l, site::down, 4 * C), L.fcproj_w, C, L.fcproj_b, mv<T>(x, b, C),
             true);
      mark("gemv down");
      if (!L.adapter.empty()) {
        frugal::gemv(tag, cmv<T>(x, b, C), cmv<T>(L.adapter.data(), C, C), static_cast<const T*>(nullptr),
                     mv<T>(tmp, b, C), {}, ws());
        std::swap(x, tmp);
        mark("gemv adapter");
      }
    }
    norm_linear(x, {}, lm_head(), nz(m_.lm_b), mv<T>(logits_.data(), b, V_), frugal::gemv_act::none, "gemv lm_head");
    ops::select_advance(tag, logits_.data(), b, V_, o_.sample, !forced_, step_, tokens_, history_, hist_ld_, pos_,
                        lens_, forced_ ? history_ : nullptr, hist_ld_, counter_);
    mark("select + advance");
  }

  void mark(const char* name) {
    if (prof_) prof_->mark(c_, name);
  }

 public:
  //! Runs n decode steps op by op (no CUDA Graph), timing every op; returns seconds per step for each op name
  //! (summed over the layers), in first-seen order.
  std::vector<std::pair<std::string, double>> profile(int n) {
    if (o_.attn == attn_kind::nocache) fail("session::profile", "profiles the KV-cache modes");
    typename be::profiler prof;
    prof_ = &prof;
    std::vector<std::pair<std::string, double>> acc;
    for (int i = 0; i < n; ++i) {
      for (int r = 0; r < b_; ++r) kv_.reserve(c_, r, ++lens_h_[r]);
      set_attention_plan();
      prof.begin(c_);
      decode_step();
      for (const auto& [name, sec] : prof.end(c_)) {
        auto it = std::find_if(acc.begin(), acc.end(), [&](const auto& e) { return e.first == name; });
        if (it == acc.end()) acc.push_back({name, sec / n});
        else it->second += sec / n;
      }
      ++steps_;
    }
    prof_ = nullptr;
    return acc;
  }

 private:
  //! The selection of one decode GEMV: dense, top-k (k of K channels) or threshold (keep |v| >= t).
  struct select_rule {
    enum kind_t { dense, topk, threshold } kind = dense;
    int k = 0;
    float t = 0.f;
    int layer = -1, site = -1;  // for count_kept (-1: the LM head)
  };
  //! The rule of block input `s` of layer l (K channels): thresholds when set, else top-k at p (dense at p = 0).
  select_rule rule(int l, site s, int K) const {
    select_rule r;
    r.layer = l, r.site = static_cast<int>(s);
    if (!o_.thresholds.empty()) {
      r.kind = select_rule::threshold;
      r.t = o_.thresholds[static_cast<std::size_t>(l) * n_sites + r.site];
    } else {
      r.k = sparsity::keep(K, o_.p);
      if (r.k > 0 && r.k < K) r.kind = select_rule::topk;
    }
    return r;
  }

  //! count_kept: downloads the b rows of the GEMV input [b, K] (normalised on the host when the GEMV normalises
  //! it itself) and adds the channels the rule keeps to the counters of (layer, site).
  void count(const T* in, int K, frugal::gemv_norm norm, const select_rule& r) {
    if (!o_.count_kept || r.site < 0) return;
    const int b = b_;
    const auto h = download<Tag, T>(c_, in, static_cast<std::size_t>(b) * K);
    std::vector<double> v(static_cast<std::size_t>(K));
    std::vector<double> a(static_cast<std::size_t>(K));
    double kept = 0;
    for (int row = 0; row < b; ++row) {
      for (int i = 0; i < K; ++i) v[i] = frugal::to_float(h[std::size_t(row) * K + i]);
      if (norm != frugal::gemv_norm::none) {  // as the GEMV's prologue: affine-free, eps 1e-5, biased variance
        double mean = 0, ss = 0;
        if (norm == frugal::gemv_norm::layernorm) {
          for (double e : v) mean += e;
          mean /= K;
        }
        for (double e : v) ss += (e - mean) * (e - mean);
        const double rs = 1.0 / std::sqrt(ss / K + double(frugal::gemv_options{}.eps));
        for (auto& e : v) e = (e - mean) * rs;
      }
      for (int i = 0; i < K; ++i) a[i] = std::abs(v[i]);
      double t = 0;
      if (r.kind == select_rule::threshold) {
        t = r.t;
      } else if (r.kind == select_rule::topk) {  // the k-th largest |v| (ties at it are kept too)
        std::vector<double> s = a;
        std::nth_element(s.begin(), s.begin() + (r.k - 1), s.end(), std::greater<double>());
        t = s[r.k - 1];
      }
      for (int i = 0; i < K; ++i) kept += (r.kind == select_rule::dense || std::isnan(a[i]) || a[i] >= t) ? 1 : 0;
    }
    const std::size_t i = static_cast<std::size_t>(r.layer) * n_sites + r.site;
    kept_[i] += kept;
    seen_[i] += double(b) * K;
  }

  //! y (+)= act(norm(x)·W + bias) for the b rows of x [b, W.rows] (contiguous), with rule r on the K normalised
  //! channels. Fused: the norm is the GEMV's prologue (dense, threshold, and top-k on rmsnorm), except for top-k on a
  //! LayerNorm (TEAL top-k), which runs a separate affine-free LayerNorm into h_ first; unfused: separate LayerNorm
  //! and GELU ops.
  void norm_linear(const T* x, const select_rule& r, cmv<T> W, const T* bias, mv<T> y, frugal::gemv_act act,
                   const char* name) {
    const int b = b_, K = static_cast<int>(W.rows);
    frugal::gemv_options o;
    o.pdl = true;  // programmatic dependent launch: weights are never written while a step runs
    o.weights_ahead = o_.weights_ahead;
    pin_splits(o, r);
    const T* in = x;
    if (o_.fused && (r.kind != select_rule::topk || m_.rms)) {
      o.norm = m_.rms ? frugal::gemv_norm::rmsnorm : frugal::gemv_norm::layernorm;
    } else {
      ops::layernorm(c_.tag, x, K, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), b, K, !m_.rms,
                     h_.data());
      mark("layernorm");
      in = h_.data();
    }
    if (o_.fused) o.act = act;
    count(in, K, o.norm, r);
    gemv_with(r, cmv<T>(in, b, K), W, bias, y, o);
    mark(name);
    if (!o_.fused && act == frugal::gemv_act::gelu_tanh) {
      ops::gelu(c_.tag, y.data, std::int64_t(b) * y.cols);
      mark("gelu");
    }
  }

  //! session_options::decode_splits for a dense layer GEMV at batch 1: pin the K splits, keeping the weights-ahead
  //! kernel on (pinned splits would otherwise switch its automatic choice off).
  void pin_splits(frugal::gemv_options& o, const select_rule& r) const {
    if (splits_ <= 0 || b_ != 1 || r.kind != select_rule::dense || r.site < 0 || o.weights_ahead == 0) return;
    o.splits = splits_;
    if (o.weights_ahead < 0) o.weights_ahead = 1;
  }

  //! Decode GEMV of a block input (no norm): dense, fused top-k or threshold.
  void linear(cmv<T> x, const select_rule& r, const buffer<Tag, T>& w, int N, const buffer<Tag, T>& bias, mv<T> y,
              bool acc) {
    const cmv<T> W(w.data(), x.cols, N);
    frugal::gemv_options o;
    o.accumulate = acc, o.pdl = true, o.weights_ahead = o_.weights_ahead;
    pin_splits(o, r);
    count(x.data, static_cast<int>(x.cols), frugal::gemv_norm::none, r);
    gemv_with(r, x, W, nz(bias), y, o);
  }

  //! y (+)= x·W + bias through the frugal call of rule r: gemv, sparse_gemv_topk or sparse_gemv_threshold.
  void gemv_with(const select_rule& r, cmv<T> x, cmv<T> W, const T* bias, mv<T> y, const frugal::gemv_options& o) {
    if (r.kind == select_rule::topk) frugal::sparse_gemv_topk(c_.tag, x, r.k, W, bias, y, o, ws());
    else if (r.kind == select_rule::threshold) frugal::sparse_gemv_threshold(c_.tag, x, {nullptr, r.t}, W, bias, y, o, ws());
    else frugal::gemv(c_.tag, x, W, bias, y, o, ws());
  }

  // ---- prefill of sequence r: tokens in ptok_[0..n), positions 0..n-1 --------------------------------------------
  void prefill(int r, int n) {
    blocks(n, [&](int l, T* Xq, T* A, int rows) {
      kv_.prefill(c_, l, r, rows, cmv<T>(Xq, rows, C_, 3 * C_), cmv<T>(Xq + C_, rows, C_, 3 * C_),
                  cmv<T>(Xq + 2 * C_, rows, C_, 3 * C_), mv<T>(A, rows, C_));
    });
    // final norm of the last row into h[r]
    ops::layernorm(c_.tag, X_.data() + std::int64_t(n - 1) * C_, C_, static_cast<const T*>(nullptr),
                   static_cast<const T*>(nullptr), 1, C_, !m_.rms, h_.data() + std::int64_t(r) * C_);
  }

  //! LM head + selection for rows 0..b-1 after their prefill (h holds the normalised last rows).
  void head(int b) {
    frugal::gemv(c_.tag, cmv<T>(h_.data(), b, C_), lm_head(), nz(m_.lm_b), mv<T>(logits_.data(), b, V_), {}, ws());
    // step -1 -> 0 (positions already set)
    ops::select_advance(c_.tag, logits_.data(), b, V_, o_.sample, !forced_, step_, tokens_, history_, hist_ld_,
                        static_cast<std::int32_t*>(nullptr), static_cast<std::int32_t*>(nullptr),
                        static_cast<const std::int32_t*>(nullptr), 0, counter_);
  }

  //! The no-cache forward: all `len` tokens of ptok_ from scratch, then the next token goes to ptok_[len].
  void forward_nocache(int len) {
    kv_.reset(c_);
    kv_.reserve(c_, 0, len);
    blocks(len, [&](int l, T* Xq, T* A, int rows) {
      kv_.prefill(c_, l, 0, rows, cmv<T>(Xq, rows, C_, 3 * C_), cmv<T>(Xq + C_, rows, C_, 3 * C_),
                  cmv<T>(Xq + 2 * C_, rows, C_, 3 * C_), mv<T>(A, rows, C_));
    });
    ops::layernorm(c_.tag, X_.data() + std::int64_t(len - 1) * C_, C_, static_cast<const T*>(nullptr),
                   static_cast<const T*>(nullptr), 1, C_, !m_.rms, h_.data());
    frugal::gemv(c_.tag, cmv<T>(h_.data(), 1, C_), lm_head(), nz(m_.lm_b), mv<T>(logits_.data(), 1, V_), {}, ws());
    // the chosen token is written straight after the sequence (history = ptok_ + prompt_len, index = step + 1)
    ops::select_advance(c_.tag, logits_.data(), 1, V_, o_.sample, true, step_, tokens_, ptok_ + prompt_len_, 0,
                        static_cast<std::int32_t*>(nullptr), static_cast<std::int32_t*>(nullptr),
                        static_cast<const std::int32_t*>(nullptr), 0, counter_);
  }

  //! The blocks over `rows` prompt rows (X_ = embeddings of ptok_), with `attend(l, QKV, out, rows)` for attention.
  template <class Attend>
  void blocks(int rows, Attend&& attend) {
    const int C = C_;
    auto tag = c_.tag;
    T *X = X_.data(), *H = H_.data(), *QKV = Q_.data(), *A = A_.data(), *F = F_.data();
    ops::embed(tag, m_.wte.data(), m_.wpe.data(), ptok_, ppos_, rows, C, X);
    for (int l = 0; l < m_.cfg.n_layer; ++l) {
      const auto& L = m_.layers[l];
      if (on_residual) on_residual(l, 0, X, rows);
      ops::layernorm(tag, X, C, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), rows, C, !m_.rms, H);
      if (on_block_input) on_block_input(l, 0, H, rows, C);
      be::gemm(c_, cmv<T>(H, rows, C), cmv<T>(L.qkv_w.data(), C, 3 * C), nz(L.qkv_b), mv<T>(QKV, rows, 3 * C), false);
      attend(l, QKV, A, rows);
      if (on_block_input) on_block_input(l, 1, A, rows, C);
      be::gemm(c_, cmv<T>(A, rows, C), cmv<T>(L.proj_w.data(), C, C), nz(L.proj_b), mv<T>(X, rows, C), true);
      if (on_residual) on_residual(l, 1, X, rows);
      ops::layernorm(tag, X, C, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), rows, C, !m_.rms, H);
      if (on_block_input) on_block_input(l, 2, H, rows, C);
      be::gemm(c_, cmv<T>(H, rows, C), cmv<T>(L.fc_w.data(), C, 4 * C), nz(L.fc_b), mv<T>(F, rows, 4 * C), false);
      ops::gelu(tag, F, std::int64_t(rows) * 4 * C);
      if (on_block_input) on_block_input(l, 3, F, rows, 4 * C);
      be::gemm(c_, cmv<T>(F, rows, 4 * C), cmv<T>(L.fcproj_w.data(), 4 * C, C), nz(L.fcproj_b), mv<T>(X, rows, C),
               true);
      if (!L.adapter.empty()) {
        be::gemm(c_, cmv<T>(X, rows, C), cmv<T>(L.adapter.data(), C, C), static_cast<const T*>(nullptr),
                 mv<T>(A, rows, C), false);
        be::copy(c_, X, A, std::size_t(rows) * C * sizeof(T));
      }
    }
    if (on_residual) on_residual(m_.cfg.n_layer, 0, X, rows);
  }

  void set_forced_tokens() {
    // tokens = forced[:, 0] (the advance op copies forced[r, step + 1] after each step; step is 0 now)
    ops::copy_column(c_.tag, history_, hist_ld_, b_, tokens_);
  }

  static const T* nz(const buffer<Tag, T>& b) { return b.empty() ? nullptr : b.data(); }
  cmv<T> lm_head() const { return cmv<T>(m_.lm_w.data(), C_, V_, m_.lm_ld); }
  frugal::workspace ws() const { return frugal::workspace{ws_.data(), ws_.bytes()}; }

  ctx_t& c_;
  const device_model<Tag, T>& m_;
  session_options o_;
  kv_store<Tag, T> kv_;
  int C_ = 0, V_ = 0, b_ = 0, steps_ = 0, prompt_len_ = 0, hist_ld_ = 0;
  bool forced_ = false;
  std::vector<double> kept_, seen_;  // count_kept: channels kept / seen per (layer, site)
  std::vector<int> lens_h_;  // host mirror of lengths (tokens stored per row), for the paged reservations
  buffer<Tag, T> x_, h_, t_, qkv_, att_, f_, logits_, X_, H_, Q_, A_, F_;
  buffer<Tag, std::int32_t> ints_;
  std::int32_t *tokens_ = nullptr, *pos_ = nullptr, *lens_ = nullptr, *step_ = nullptr, *ptok_ = nullptr,
               *ppos_ = nullptr, *history_ = nullptr;
  std::uint32_t* counter_ = nullptr;  // select_advance's completion counter (CUDA)
  buffer<Tag, std::byte> ws_;
  int splits_ = 0;  // session_options::decode_splits resolved (0: the library's choice)
  std::vector<std::pair<int, typename be::graph_t>> graphs_;  // captured decode steps by attention plan bound
  typename be::profiler* prof_ = nullptr;
  std::shared_ptr<void> mega_;  // mega::weights_rm<T> (CUDA translation units only; void keeps the layout common)
};

//! Calibration text: token sequences, each run through the model as its own dense prefill (positions from 0), so
//! each holds at most n_ctx - 1 tokens; a calibration accumulates over all of them (calibration.hpp cuts the
//! training text into such sequences).
using token_sequences = std::vector<std::vector<std::int32_t>>;

//! Total tokens of a set of sequences.
inline std::size_t total_tokens(const token_sequences& s) {
  std::size_t n = 0;
  for (const auto& q : s) n += q.size();
  return n;
}

//! Runs every sequence of `seqs` through m as its own dense prefill (contiguous KV, positions from 0, in order; one
//! session sized for the longest) with the session's calibration hooks (on_residual, on_block_input) set by
//! `hooks(session&)`: the calibration pass of LaRoSA (larosa_accumulate) and of the TEAL thresholds
//! (calibrate_thresholds). Each hook sees every layer once per sequence, all of that sequence's tokens in one call.
template <class Tag, class T, class Hooks>
void calibration_prefill(typename backend<Tag>::context& c, const device_model<Tag, T>& m, const token_sequences& seqs,
                         Hooks&& hooks) {
  if (seqs.empty()) fail("calibration_prefill", "no calibration sequences");
  std::size_t longest = 0;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].empty() || seqs[i].size() >= static_cast<std::size_t>(m.cfg.n_ctx))
      fail("calibration_prefill", "sequence ", i, " has ", seqs[i].size(), " tokens; allowed 1..", m.cfg.n_ctx - 1,
           " (n_ctx - 1)");
    longest = std::max(longest, seqs[i].size());
  }
  session_options so;
  so.attn = attn_kind::contiguous;
  so.max_seq = static_cast<int>(longest) + 1;
  session<Tag, T> s(c, m, so);
  hooks(s);
  for (const auto& t : seqs) s.start({t});
}

//! The same for one sequence.
template <class Tag, class T, class Hooks>
void calibration_prefill(typename backend<Tag>::context& c, const device_model<Tag, T>& m,
                         const std::vector<std::int32_t>& tokens, Hooks&& hooks) {
  calibration_prefill(c, m, token_sequences{tokens}, std::forward<Hooks>(hooks));
}

}  // namespace gpt2
