// frugal/gemv/gemv.hpp — dense and input-sparse GEMV over channel-major weights, with selection fused in.
//
// Computes   y[b, N] = x[b, K] · W[K, N] + bias[N]        (gemv_options::accumulate: y += x · W + bias)
// for decode-time batches b (1 is the fast path). At batch 1 a GEMV is bound by reading W, so an input x with
// zeros needs only the weights of its kept channels: with W stored channel-major (each input channel's N weights
// contiguous), skipping channel k skips one contiguous row of W ("selective weight loading", Deja Vu / TEAL /
// LaRoSA). Time then falls in proportion to the kept fraction 1 - s, up to the bound 1/(1 - s).
//
// Layout. `w` is a row-major matrix_view with rows = K (input channels) and cols = N (outputs): element (k, n) is
// w.data[k * w.ld + n]. This is HF GPT-2's Conv1D layout [in, out]; nn.Linear / llm.c weights [N, K] are
// converted once with to_channel_major. Several projections that share one input (q/k/v, gate/up) are one
// launch: lay their weights side by side as [K, N_q + N_k + N_v] (to_channel_major into column slices of one
// buffer), concatenate the biases, and read the outputs as column slices of y (a view with ld).
//
// Input forms (each gives y exactly as a dense GEMV on the input with the dropped entries set to zero):
//   gemv                    dense x.
//   sparse_gemv             per row an explicit list: indices[r, 0..nnz[r]) with values (sparse_rows).
//   sparse_gemv_masked      dense x whose zeros are skipped.
//   sparse_gemv_threshold   dense x; keeps isnan(x) || |x[r, k]| >= t (one t, or one per row: TEAL's rule).
//   sparse_gemv_topk        dense x; keeps per row the k largest |x| (LaRoSA's rule): the threshold form with
//                           t_r = the k-th largest |x[r, :]| — the value frugal::topk_select reports (keep
//                           isnan(x) || |x| >= t_r; ties at the k-th magnitude are all kept, so a row keeps >= k
//                           channels; k = 0 keeps none). CUDA, b = 1, K <= 8192: one launch, every block of the
//                           GEMV finds t itself from x (radix select, detail::gemv_topk_in_kernel); otherwise
//                           topk_select runs first as its own kernel. Both give bitwise the same y.
// Fused prologue / epilogue (gemv_options::norm, eps, act; GPT-2's ln -> GEMV -> GELU in one kernel):
//   y (+)= act(x̂ · W + bias), x̂ = each row of x normalised over ALL its K channels, without affine part
//   (layernorm: (x - mean) · rstd, rstd = 1/sqrt(var + eps), biased variance; rmsnorm: x · rstd,
//   rstd = 1/sqrt(mean(x²) + eps); fold gamma into W's rows and beta·W into the bias). Selection sees x̂: threshold
//   keeps |x̂| >= t; masked keeps x̂ != 0 and top-k the k largest |x̂| — both rmsnorm only (rstd > 0 keeps the
//   set of the raw x: top-k ranks raw |x| and multiplies the kept values by rstd). act = gelu_tanh
//   is applied in f32 (accurate tanhf) after + bias and before + y (accumulate). Not allowed (frugal::error):
//   any norm with explicit lists, layernorm with masked or top-k, eps not finite or <= 0 (checked only with a
//   norm), norm/act values outside their enums.
//   Statistics: CPU in f64 (two passes), rounded to the accumulation type. CUDA: every block recomputes its rows'
//   statistics from x over all of K (x is KBs, L2-resident; a block streams only its K split of W). Batch 1 with
//   K <= 2048: x held in registers (8 values per thread), two f32 block sums — the mean, then the squared
//   deviations from it; otherwise one pass of per-thread Welford (f32) then Chan merges in a fixed order (warp
//   shuffles, then the 8 warps). Either way no cancellation from a large mean or an outlier channel, identical in
//   every block of the grid; rmsnorm: f32 sum of squares.
//   The prologue costs one extra read of x's rows per block plus a block reduction (measured in docs/gemv.md).
// Batches (b > 1): the result is always per row (row r uses only its own kept channels). What is read differs:
//   the dense-x forms load the UNION of the rows' kept channels once per tile of up to 4 rows (values of rows
//   that dropped a channel count as 0), so correlated masks cost little and independent masks at b = 16 read
//   almost all of W; the explicit-list form loads each row's channels separately (traffic = sum of nnz).
//
// Algorithm (CUDA, sm_90): a grid of (batch tiles of <= 4 rows) x (splits of K) x (tiles of N columns). A warp
// row covers a contiguous weight-row segment of 128, 256 or 512 bytes (16 bytes per thread); 256 threads per block
// process 8..32 channels side by side. Dense input issues its first weight loads at kernel start (ids implicit)
// and copies x into shared memory meanwhile. Sparse forms first stage up to 1024 candidate channels of the
// block's K slice: read x, evaluate the keep rule, compact the kept channel ids and their values into shared
// memory (block prefix scan). Weight rows are then streamed with 16-byte loads, software-pipelined in two
// register halves (up to 16 loads in flight per thread), accumulating in f32 registers. The K splits of one
// column tile form a thread-block cluster; their f32 partials are summed through distributed shared memory in a
// fixed order (deterministic, no atomics), and bias / activation / accumulate are applied in f32 before one
// rounding to T. The launch shape (segment width, power-of-two splits of >= 64 channels) aims at 1..1.75 blocks
// per SM in one wave (H100 tuning, docs/gemv.md). gemv_options::pdl launches with programmatic dependent launch
// (see gemv_types.hpp for what it requires of the caller). Batch-1 dense calls with pdl run a second kernel,
// gemv_ahead_kernel (gemv_options::weights_ahead): each block's weight tile goes into shared memory (cp.async) and
// registers before griddepcontrol.wait, so in a decode step a GEMV's weights stream while the kernels before it
// finish; tiles larger than that stream through a 4-stage shared-memory ring (used automatically for N >= 16 K).
// Without clusters (pre-sm_90) the partials go through the workspace and a second small kernel sums them.
// CPU: threads over column ranges of N; per column block (up to 8192 columns / batch rows: long row streams),
// kept channels are staged 256 at a time and accumulated 8 (f32, f64) or 4 (16-bit) weight rows per pass (axpy;
// auto-vectorised f32/f64 loops; f16/bf16 rows converted to f32 512 at a time, branch-free).
//
// Precision: products and sums in f32 (f64 for double), output rounded once to T. Summation order differs between
// CPU and CUDA, so results agree to a few units of T's rounding (plus f32 summation error over K).
//
// Checks (frugal::error, before anything is written): shapes (x [b, K], w [K, N], y [b, N], sparse rows/cap),
// y overlapping x, w, bias or the sparse values, NaN thresholds (where the host can read them), CUDA vector path:
// w.data 16-byte aligned and w.ld * sizeof(T) a multiple of 16 bytes. Explicit lists: on the CPU, nnz in [0, min(cap,
// K)] and indices in [0, K) are always checked (O(sum nnz)); duplicate indices only with gemv_options::checked (one
// bitmap of K bits per call). On CUDA nnz lives in device memory: unchecked calls clamp nnz to [0, cap] and skip
// indices outside [0, K) (memory-safe, no error); `checked` runs a validation kernel first and synchronises the stream
// to read its verdict (one extra kernel and a device-to-host copy; not benchmarked; not allowed inside CUDA Graph
// capture).
//
// Workspace: gemv_workspace_bytes covers every form and both reductions. On sm_90 the unchecked forms take none
// (workspace{} is fine), top-k included when it selects inside the kernel (b = 1, K <= 8192); two-kernel top-k
// (b > 1 or larger K) takes b floats plus topk_workspace_bytes; `checked` takes 32 bytes; the pre-sm_90 reduction
// takes splits * b * N floats (given no workspace at all, it runs with one split instead).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/view.hpp"
#include "../core/workspace.hpp"
#include "../sparsify/topk.hpp"
#include "gemv_types.hpp"

FRUGAL_NAMESPACE_BEGIN

namespace detail {

template <class A, class B>
bool gemv_overlaps(const matrix_view<A>& a, const B* p, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  if (a.empty() || rows == 0 || cols == 0 || p == nullptr) return false;
  const auto a0 = reinterpret_cast<std::uintptr_t>(a.data);
  const auto a1 = a0 + static_cast<std::uintptr_t>(((a.rows - 1) * a.ld + a.cols) * sizeof(A));
  const auto b0 = reinterpret_cast<std::uintptr_t>(p);
  const auto b1 = b0 + static_cast<std::uintptr_t>(((rows - 1) * ld + cols) * sizeof(B));
  return a0 < b1 && b0 < a1;
}

//! Shape and aliasing checks shared by every form; `b_in`/`K_in` are the input's extents.
template <class T>
void gemv_check_common(const char* op, std::int64_t b_in, std::int64_t K_in, const matrix_view<const T>& w,
                       const T* bias, const matrix_view<T>& y) {
  check_matrix(op, "w", w);
  check_matrix(op, "y", y);
  FRUGAL_CHECK(K_in == w.rows, op, "x has K=", K_in, " input channels but w has ", w.rows,
               " rows (w must be channel-major [K, N]; convert [N, K] weights with to_channel_major)");
  FRUGAL_CHECK(y.rows == b_in, op, "y has ", y.rows, " rows but the input has b=", b_in);
  FRUGAL_CHECK(y.cols == w.cols, op, "y has ", y.cols, " columns but w has N=", w.cols);
  FRUGAL_CHECK(!gemv_overlaps(y, w.data, w.rows, w.cols, w.ld), op, "y overlaps w");
  FRUGAL_CHECK(!gemv_overlaps(y, bias, 1, w.cols, w.cols), op, "y overlaps bias");
}

inline const char* gemv_norm_name(gemv_norm n) {
  switch (n) {
    case gemv_norm::none:
      return "none";
    case gemv_norm::layernorm:
      return "layernorm";
    case gemv_norm::rmsnorm:
      return "rmsnorm";
  }
  return "?";
}

//! Which fused norms an input form takes: any (dense, threshold), rmsnorm only (masked, top-k), none (lists).
enum class gemv_fuse { any, rms_only, none };

//! Checks the norm prologue / activation epilogue options against the form (before anything is launched).
inline void gemv_check_fused(const char* op, const gemv_options& opt, gemv_fuse allowed, const char* form) {
  const int nv = static_cast<int>(opt.norm), av = static_cast<int>(opt.act);
  FRUGAL_CHECK(nv >= 0 && nv <= 2, op, "options.norm (=", nv, ") is not a gemv_norm value");
  FRUGAL_CHECK(av >= 0 && av <= 1, op, "options.act (=", av, ") is not a gemv_act value");
  FRUGAL_CHECK(opt.weights_ahead >= -1 && opt.weights_ahead <= 1, op, "options.weights_ahead (=", opt.weights_ahead,
               ") must be -1 (automatic), 0 or 1");
  if (opt.norm == gemv_norm::none) return;
  FRUGAL_CHECK(allowed != gemv_fuse::none, op, "options.norm = ", gemv_norm_name(opt.norm), " is not supported for ",
               form, " (normalise x before building the lists)");
  FRUGAL_CHECK(allowed != gemv_fuse::rms_only || opt.norm == gemv_norm::rmsnorm, op,
               "options.norm = ", gemv_norm_name(opt.norm), " is not supported for ", form,
               " (only rmsnorm, whose kept set equals the raw input's; use the threshold form with layernorm)");
  FRUGAL_CHECK(std::isfinite(opt.eps) && opt.eps > 0.f, op, "options.eps (=", opt.eps,
               ") must be finite and > 0 with options.norm = ", gemv_norm_name(opt.norm));
}

template <class T>
gemv_problem<T> gemv_dense_problem(const char* op, gemv_input mode, const matrix_view<const T>& x,
                                   const matrix_view<const T>& w, const T* bias, const matrix_view<T>& y,
                                   gemv_options opt, bool topk = false) {
  gemv_check_fused(op, opt, topk || mode == gemv_input::masked ? gemv_fuse::rms_only : gemv_fuse::any,
                   topk                         ? "top-k selection"
                   : mode == gemv_input::masked ? "the masked form"
                                                : "this form");
  check_matrix(op, "x", x);
  gemv_check_common(op, x.rows, x.cols, w, bias, y);
  FRUGAL_CHECK(!gemv_overlaps(y, x.data, x.rows, x.cols, x.ld), op, "y overlaps x");
  gemv_problem<T> p;
  p.mode = mode;
  p.x = x;
  p.w = w;
  p.bias = bias;
  p.y = y;
  p.opt = opt;
  p.b = x.rows;
  p.K = x.cols;
  p.N = w.cols;
  return p;
}

template <class T>
gemv_problem<T> gemv_list_problem(const char* op, const sparse_rows<T>& x, const matrix_view<const T>& w, const T* bias,
                                  const matrix_view<T>& y, gemv_options opt) {
  gemv_check_fused(op, opt, gemv_fuse::none, "explicit lists");
  FRUGAL_CHECK(x.rows >= 0 && x.cap >= 0, op, "sparse x has negative extents [rows=", x.rows, ", cap=", x.cap, "]");
  FRUGAL_CHECK(x.ld >= x.cap, op, "sparse x row stride (=", x.ld, ") must be >= cap (=", x.cap, ")");
  FRUGAL_CHECK(x.rows == 0 || x.nnz != nullptr, op, "sparse x has ", x.rows, " rows but nnz is null");
  FRUGAL_CHECK(x.rows == 0 || x.cap == 0 || (x.indices != nullptr && x.values != nullptr), op, "sparse x has shape [",
               x.rows, ", cap=", x.cap, "] but indices or values is null");
  gemv_check_common(op, x.rows, w.rows, w, bias, y);
  FRUGAL_CHECK(!gemv_overlaps(y, x.values, x.rows, x.cap, x.ld), op, "y overlaps the sparse values");
  gemv_problem<T> p;
  p.mode = gemv_input::list;
  p.list = x;
  p.w = w;
  p.bias = bias;
  p.y = y;
  p.opt = opt;
  p.b = x.rows;
  p.K = w.rows;
  p.N = w.cols;
  return p;
}

template <class T>
void gemv_check_topk(const char* op, int k, std::int64_t K) {
  FRUGAL_CHECK(k >= 0 && k <= K, op, "k (=", k, ") must be in [0, K=", K, "]");
}

//! The same call with no input channels at all (top-k with k = 0): y = bias, or y + bias.
template <class T>
gemv_problem<T> gemv_keep_nothing(gemv_problem<T> p) {
  p.mode = gemv_input::dense;
  p.x = matrix_view<const T>(p.x.data, p.b, 0, p.x.ld);
  p.w = matrix_view<const T>(p.w.data, 0, p.N, p.w.ld);
  p.K = 0;
  return p;
}

//! CUDA fused top-k: at batch 1 and K <= gemv_topk_in_kernel_max_K every block of the GEMV finds the row's k-th
//! magnitude itself (topk_block_kth_key: 2 radix passes for f16/bf16, 3 for f32; the row read once into registers
//! up to K = 8192 / 4096 f32, re-read through L1/L2 per pass above) — one launch, no workspace for the select.
//! Otherwise topk_select runs first as its own kernel (one block per row, all rows in parallel; b floats of
//! workspace) and the GEMV follows as its programmatic dependent. Why these limits (H100, bf16/f16, docs/gemv.md,
//! fourth session): every block selects over the whole row, so the in-kernel select's latency grows with K. At
//! K <= 4096 a single call was at most 0.3 µs slower and up to 2.7 µs faster than the two kernels; at K = 6400
//! 0.6-1.5 µs slower (bf16; f16 -0.1..+1.3); at K = 11008 1-2.4 µs slower; in PDL decode chains (GPT-2 124M / XL,
//! K up to 3072 / 6400) 1.5 µs per GEMV faster. At b = 2 one block selecting its rows one after the other was
//! 3.7-4.9 µs slower than topk_select's one block per row (and 4-row tiles have no register room for the select).
inline constexpr std::int64_t gemv_topk_in_kernel_max_K = 8192;

//! Whether the CUDA fused top-k of b rows of K channels selects inside the GEMV (see above).
inline bool gemv_topk_in_kernel(std::int64_t b, std::int64_t K) {
  return b == 1 && K <= gemv_topk_in_kernel_max_K;
}

//! Workspace of the CUDA forms; `two_kernel`: the top-k form as topk_select + GEMV (k_or_0 > 0).
template <class T>
std::size_t gemv_cuda_workspace_bytes(std::int64_t b, std::int64_t K, std::int64_t N, int k_or_0, bool two_kernel) {
  workspace_carver c;
  if (k_or_0 > 0 && two_kernel) {
    c.take<float>(static_cast<std::size_t>(b));
    c.take<std::byte>(topk_workspace_bytes<T>(cuda_t{}, b, K, k_or_0));
  }
  c.take<unsigned long long>(4);  // checked-mode verdict
  c.take<float>(
      static_cast<std::size_t>(8 * std::max<std::int64_t>(b, 0) * std::max<std::int64_t>(N, 0)));  // pre-sm_90 partials
  return c.bytes();
}

//! Host-side threshold checks (device per-row thresholds cannot be read without a synchronisation).
inline void gemv_check_threshold(const char* op, const float* per_row, float all, std::int64_t b, bool host) {
  if (!per_row) {
    FRUGAL_CHECK(!(all != all), op, "threshold.all (=", all, ") must not be NaN");
  } else if (host) {
    for (std::int64_t r = 0; r < b; ++r)
      FRUGAL_CHECK(!(per_row[r] != per_row[r]), op, "threshold.per_row[", r, "] (=", per_row[r], ") must not be NaN");
  }
}

}  // namespace detail

FRUGAL_NAMESPACE_END

#include "detail/gemv_cpu.hpp"
#if defined(__CUDACC__)
#include "detail/gemv_cuda.cuh"
#endif

FRUGAL_NAMESPACE_BEGIN

//! CUDA: whether a batch-1 dense GEMV of K inputs and N outputs, with gemv_options::splits = `splits` (1..8) and the
//! weights-ahead kernel, runs one block per SM in one wave with each block's whole weight tile in its shared memory,
//! requested before its PDL wait, on the current device. Engines can use it to pin splits = 1 for a model whose
//! decode GEMVs all qualify: one split needs no reduction across blocks, whose DSMEM exchange costs ~1.1 us per GEMV
//! in a PDL chain on the H100 (bench_pdl_chain); GPT-2 124M's step gained 2.5% / 0.6% / 0 at 32 / 100 / 300 decode
//! steps (docs/gemv.md). XL's GEMVs do not all qualify, and unsplit they were slower (its whole step 16%, its
//! 1600 x 1600 projections alone 4%).
//! False without a usable sm_90 device.
template <class T>
bool gemv_tile_ahead(cuda_t tag, std::int64_t K, std::int64_t N, int splits) {
  FRUGAL_REQUIRE_NVCC(T, "gemv_tile_ahead");
  FRUGAL_CHECK(K > 0 && N > 0 && splits >= 1 && splits <= 8, "gemv_tile_ahead", "needs K > 0 (", K, "), N > 0 (",
               N, ") and splits in [1, 8] (", splits, ")");
#if defined(__CUDACC__)
  (void)tag;
  using C = detail::cuda_type_t<T>;
  int dev = 0, major = 0, sms = 0;
  FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), "gemv_tile_ahead");
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "gemv_tile_ahead");
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "gemv_tile_ahead");
  if (major < 9 || !detail::gemv_ahead_available<C>(dev)) return false;
  const auto sh = detail::gemv_ahead_pick(N, K, 16 / static_cast<int>(sizeof(C)), sizeof(C), sms, splits);
  const std::int64_t chunk = (K + splits - 1) / splits;
  return sh.ok && sh.all_ahead && sh.rows >= chunk && sh.tiles * sh.splits <= sms;
#else
  (void)tag;
  return false;
#endif
}

// ----------------------------------------------------------------------------------------------------------------
// Workspace
// ----------------------------------------------------------------------------------------------------------------

//! Bytes of scratch any gemv form needs for b rows, K inputs, N outputs (k_or_0 > 0: the top-k form with that k).
template <class T>
std::size_t gemv_workspace_bytes(cpu_t tag, std::int64_t b, std::int64_t K, std::int64_t N, int k_or_0 = 0) {
  (void)N;
  detail::workspace_carver c;
  if (k_or_0 > 0) {
    c.take<float>(static_cast<std::size_t>(b));  // kth_abs
    c.take<std::byte>(topk_workspace_bytes<T>(tag, b, K, k_or_0));
  }
  return c.bytes();
}

template <class T>
std::size_t gemv_workspace_bytes(cuda_t tag, std::int64_t b, std::int64_t K, std::int64_t N, int k_or_0 = 0) {
  (void)tag;
  return detail::gemv_cuda_workspace_bytes<T>(b, K, N, k_or_0, !detail::gemv_topk_in_kernel(b, K));
}

// ----------------------------------------------------------------------------------------------------------------
// Dense
// ----------------------------------------------------------------------------------------------------------------

//! y = x · w + bias (dense).
template <class T>
void gemv(cpu_t tag, std::type_identity_t<matrix_view<const T>> x,  // [b, K]
          std::type_identity_t<matrix_view<const T>> w,             // [K, N] channel-major
          std::type_identity_t<const T*> bias,                      // [N] or null
          matrix_view<T> y,                                         // [b, N]
          gemv_options opt = {}, workspace ws = {}) {
  (void)ws;
  detail::gemv_cpu(tag, detail::gemv_dense_problem("gemv", detail::gemv_input::dense, x, w, bias, y, opt));
}

template <class T>
void gemv(cuda_t tag, std::type_identity_t<matrix_view<const T>> x,  // [b, K]
          std::type_identity_t<matrix_view<const T>> w,              // [K, N] channel-major
          std::type_identity_t<const T*> bias,                       // [N] or null
          matrix_view<T> y,                                          // [b, N]
          gemv_options opt = {}, workspace ws = {}) {
  FRUGAL_REQUIRE_NVCC(T, "gemv");
#if defined(__CUDACC__)
  detail::gemv_cuda(tag, "gemv", detail::gemv_dense_problem("gemv", detail::gemv_input::dense, x, w, bias, y, opt), ws);
#else
  (void)tag, (void)x, (void)w, (void)bias, (void)y, (void)opt, (void)ws;
#endif
}

// ----------------------------------------------------------------------------------------------------------------
// Explicit sparse rows
// ----------------------------------------------------------------------------------------------------------------

//! y = sparse(x) · w + bias, with per-row (index, value) lists.
template <class T>
void sparse_gemv(cpu_t tag, sparse_rows<T> x,                   // [b, cap] entries
                 std::type_identity_t<matrix_view<const T>> w,  // [K, N] channel-major
                 std::type_identity_t<const T*> bias,           // [N] or null
                 matrix_view<T> y,                              // [b, N]
                 gemv_options opt = {}, workspace ws = {}) {
  (void)ws;
  auto p = detail::gemv_list_problem("sparse_gemv", x, w, bias, y, opt);
  detail::gemv_cpu_check_list("sparse_gemv", p);
  detail::gemv_cpu(tag, p);
}

template <class T>
void sparse_gemv(cuda_t tag, sparse_rows<T> x,                  // [b, cap] entries (device memory)
                 std::type_identity_t<matrix_view<const T>> w,  // [K, N] channel-major
                 std::type_identity_t<const T*> bias,           // [N] or null
                 matrix_view<T> y,                              // [b, N]
                 gemv_options opt = {}, workspace ws = {}) {
  FRUGAL_REQUIRE_NVCC(T, "sparse_gemv");
#if defined(__CUDACC__)
  detail::gemv_cuda(tag, "sparse_gemv", detail::gemv_list_problem("sparse_gemv", x, w, bias, y, opt), ws);
#else
  (void)tag, (void)x, (void)w, (void)bias, (void)y, (void)opt, (void)ws;
#endif
}

// ----------------------------------------------------------------------------------------------------------------
// Dense x with zeros
// ----------------------------------------------------------------------------------------------------------------

//! y = x · w + bias, reading only the weight rows of channels where some row of x is non-zero.
template <class T>
void sparse_gemv_masked(cpu_t tag, std::type_identity_t<matrix_view<const T>> x,  // [b, K] with zeros
                        std::type_identity_t<matrix_view<const T>> w,             // [K, N] channel-major
                        std::type_identity_t<const T*> bias,                      // [N] or null
                        matrix_view<T> y,                                         // [b, N]
                        gemv_options opt = {}, workspace ws = {}) {
  (void)ws;
  detail::gemv_cpu(tag,
                   detail::gemv_dense_problem("sparse_gemv_masked", detail::gemv_input::masked, x, w, bias, y, opt));
}

template <class T>
void sparse_gemv_masked(cuda_t tag, std::type_identity_t<matrix_view<const T>> x,  // [b, K] with zeros
                        std::type_identity_t<matrix_view<const T>> w,              // [K, N] channel-major
                        std::type_identity_t<const T*> bias,                       // [N] or null
                        matrix_view<T> y,                                          // [b, N]
                        gemv_options opt = {}, workspace ws = {}) {
  FRUGAL_REQUIRE_NVCC(T, "sparse_gemv_masked");
#if defined(__CUDACC__)
  detail::gemv_cuda(tag, "sparse_gemv_masked",
                    detail::gemv_dense_problem("sparse_gemv_masked", detail::gemv_input::masked, x, w, bias, y, opt),
                    ws);
#else
  (void)tag, (void)x, (void)w, (void)bias, (void)y, (void)opt, (void)ws;
#endif
}

// ----------------------------------------------------------------------------------------------------------------
// Threshold (TEAL)
// ----------------------------------------------------------------------------------------------------------------

//! y = (x with |x[r, k]| < t_r set to 0) · w + bias; t_r = t.per_row[r] (memory on the tag's device) or t.all.
//! Keep rule (as frugal::threshold_mask): isnan(x) || |x| >= t, compared in f32 (f64 for double). A NaN threshold
//! is an error where the host can see it (t.all; per_row on the CPU); a NaN device threshold keeps only NaNs.
template <class T>
void sparse_gemv_threshold(cpu_t tag, std::type_identity_t<matrix_view<const T>> x,  // [b, K]
                           threshold t,                                              // per_row: [b] or null
                           std::type_identity_t<matrix_view<const T>> w,             // [K, N] channel-major
                           std::type_identity_t<const T*> bias,                      // [N] or null
                           matrix_view<T> y,                                         // [b, N]
                           gemv_options opt = {}, workspace ws = {}) {
  (void)ws;
  auto p = detail::gemv_dense_problem("sparse_gemv_threshold", detail::gemv_input::threshold, x, w, bias, y, opt);
  detail::gemv_check_threshold("sparse_gemv_threshold", t.per_row, t.all, p.b, true);
  p.t_rows = t.per_row;
  p.t_all = t.all;
  detail::gemv_cpu(tag, p);
}

template <class T>
void sparse_gemv_threshold(cuda_t tag, std::type_identity_t<matrix_view<const T>> x,  // [b, K]
                           threshold t,                                               // per_row: [b] or null
                           std::type_identity_t<matrix_view<const T>> w,              // [K, N] channel-major
                           std::type_identity_t<const T*> bias,                       // [N] or null
                           matrix_view<T> y,                                          // [b, N]
                           gemv_options opt = {}, workspace ws = {}) {
  FRUGAL_REQUIRE_NVCC(T, "sparse_gemv_threshold");
#if defined(__CUDACC__)
  auto p = detail::gemv_dense_problem("sparse_gemv_threshold", detail::gemv_input::threshold, x, w, bias, y, opt);
  detail::gemv_check_threshold("sparse_gemv_threshold", t.per_row, t.all, p.b, false);
  p.t_rows = t.per_row;
  p.t_all = t.all;
  detail::gemv_cuda(tag, "sparse_gemv_threshold", p, ws);
#else
  (void)tag, (void)x, (void)t, (void)w, (void)bias, (void)y, (void)opt, (void)ws;
#endif
}

// ----------------------------------------------------------------------------------------------------------------
// Fused top-k (LaRoSA)
// ----------------------------------------------------------------------------------------------------------------

#if defined(__CUDACC__)
namespace detail {
//! The CUDA top-k form. two_kernel = false (needs b = 1): one GEMV launch whose blocks select the row's k-th
//! magnitude themselves (no workspace for it; any K, see gemv_topk_in_kernel); true: topk_select into b floats,
//! then the threshold GEMV as its programmatic dependent. Both keep the same set and sum in the same order.
template <class T>
void gemv_topk_cuda(cuda_t tag, const matrix_view<const T>& x, int k, const matrix_view<const T>& w, const T* bias,
                    const matrix_view<T>& y, gemv_options opt, workspace ws, bool two_kernel) {
  auto p = gemv_dense_problem("sparse_gemv_topk", gemv_input::threshold, x, w, bias, y, opt, true);
  p.select_raw = true;  // rmsnorm: rank raw |x| (the same set, as rstd > 0), multiply the kept values by rstd
  gemv_check_topk<T>("sparse_gemv_topk", k, p.K);
  if (k == 0 || p.b == 0) {
    p = gemv_keep_nothing(p);  // y = bias (+ y)
    gemv_cuda(tag, "sparse_gemv_topk", p, ws);
    return;
  }
  if (!two_kernel) {
    p.topk_k = k;  // every block selects its rows' k-th magnitude (t_rows unused)
    gemv_cuda(tag, "sparse_gemv_topk", p, ws);
    return;
  }
  workspace_carver c(ws);
  float* kth = c.take<float>(static_cast<std::size_t>(p.b));  // [b]
  const std::size_t tb = topk_workspace_bytes<T>(tag, p.b, p.K, k);
  void* tws = c.take<std::byte>(tb);
  p.t_rows = kth;
  c.check("sparse_gemv_topk");
  const std::size_t used = c.bytes();
  const workspace rest{ws.data && ws.bytes > used ? static_cast<std::byte*>(ws.data) + used : nullptr,
                       ws.bytes > used ? ws.bytes - used : 0};
  auto plan = gemv_cuda_prepare("sparse_gemv_topk", p, rest);  // all checks before any launch
  // The GEMV follows our own topk_select, which writes only kth: it may always launch as its programmatic
  // dependent (blocks start while the select drains; it reads kth, x, bias, y only after griddepcontrol.wait).
  plan.pdl = plan.sm90;
  topk_select(tag, x, k, kth, workspace{tws, tb});
  gemv_cuda_launch(tag, "sparse_gemv_topk", p, plan);
}
}  // namespace detail
#endif

//! y = topk_k(x) · w + bias: per row keeps the k largest |x| (ties at the k-th magnitude all kept). k in [0, K].
template <class T>
void sparse_gemv_topk(cpu_t tag, std::type_identity_t<matrix_view<const T>> x,  // [b, K]
                      int k,
                      std::type_identity_t<matrix_view<const T>> w,  // [K, N] channel-major
                      std::type_identity_t<const T*> bias,           // [N] or null
                      matrix_view<T> y,                              // [b, N]
                      gemv_options opt = {}, workspace ws = {}) {
  auto p = detail::gemv_dense_problem("sparse_gemv_topk", detail::gemv_input::threshold, x, w, bias, y, opt, true);
  p.select_raw = true;  // rmsnorm: rank raw |x| (the same set, as rstd > 0), multiply the kept values by rstd
  detail::gemv_check_topk<T>("sparse_gemv_topk", k, p.K);
  if (k == 0 || p.b == 0) {  // keeps nothing: y = bias (+ y)
    detail::gemv_cpu(tag, detail::gemv_keep_nothing(p));
    return;
  }
  detail::workspace_carver c(ws);
  float* kth = c.take<float>(static_cast<std::size_t>(p.b));  // [b]
  const std::size_t tb = topk_workspace_bytes<T>(tag, p.b, p.K, k);
  void* tws = c.take<std::byte>(tb);
  c.check("sparse_gemv_topk");
  topk_select(tag, x, k, kth, workspace{tws, tb});
  p.t_rows = kth;
  detail::gemv_cpu(tag, p);
}

template <class T>
void sparse_gemv_topk(cuda_t tag, std::type_identity_t<matrix_view<const T>> x,  // [b, K]
                      int k,
                      std::type_identity_t<matrix_view<const T>> w,  // [K, N] channel-major
                      std::type_identity_t<const T*> bias,           // [N] or null
                      matrix_view<T> y,                              // [b, N]
                      gemv_options opt = {}, workspace ws = {}) {
  FRUGAL_REQUIRE_NVCC(T, "sparse_gemv_topk");
#if defined(__CUDACC__)
  detail::gemv_topk_cuda(tag, x, k, w, bias, y, opt, ws, !detail::gemv_topk_in_kernel(x.rows, x.cols));
#else
  (void)tag, (void)x, (void)k, (void)w, (void)bias, (void)y, (void)opt, (void)ws;
#endif
}

// ----------------------------------------------------------------------------------------------------------------
// Layout conversion
// ----------------------------------------------------------------------------------------------------------------

//! out[k, n] = w[n, k]: converts row-major nn.Linear / llm.c weights [N, K] into channel-major [K, N] (host memory).
//! `out` may be a column slice of a wider buffer (ld > N), to lay several projections side by side.
template <class T>
void to_channel_major(std::type_identity_t<matrix_view<const T>> w_row_major,  // [N, K]
                      matrix_view<T> out) {                                    // [K, N]
  detail::check_matrix("to_channel_major", "w_row_major", w_row_major);
  detail::check_matrix("to_channel_major", "out", out);
  FRUGAL_CHECK(out.rows == w_row_major.cols && out.cols == w_row_major.rows, "to_channel_major", "out has shape [",
               out.rows, ", ", out.cols, "] but w_row_major [N, K] = [", w_row_major.rows, ", ", w_row_major.cols,
               "] needs [K, N] = [", w_row_major.cols, ", ", w_row_major.rows, "]");
  FRUGAL_CHECK(!detail::gemv_overlaps(out, w_row_major.data, w_row_major.rows, w_row_major.cols, w_row_major.ld),
               "to_channel_major", "out overlaps w_row_major (the conversion is not in place)");
  constexpr std::int64_t tile = 32;
  for (std::int64_t n0 = 0; n0 < w_row_major.rows; n0 += tile)
    for (std::int64_t k0 = 0; k0 < w_row_major.cols; k0 += tile) {
      const std::int64_t n1 = std::min(n0 + tile, w_row_major.rows), k1 = std::min(k0 + tile, w_row_major.cols);
      for (std::int64_t k = k0; k < k1; ++k)
        for (std::int64_t n = n0; n < n1; ++n) out(k, n) = w_row_major(n, k);
    }
}

FRUGAL_NAMESPACE_END
