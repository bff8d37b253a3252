// frugal/sparsify/topk.hpp — per-row top-k by magnitude (LaRoSA's Top-K) and magnitude thresholds (TEAL).
//
// For a batch x[rows, n] (row-major, row stride ld >= n), each row keeps the k entries of largest |x|:
//   topk            -> indices[rows, k] (int32) and values[rows, k], per row in ascending index order
//   topk_mask       -> y[rows, n] = x where kept, +0 elsewhere (in place when y.data == x.data)
//   topk_select     -> kth_abs[rows] = the k-th largest |x| of each row (what a fused sparse GEMV needs)
//   threshold_mask  -> y = x where |x| >= t, +0 elsewhere, with per-row counts (TEAL: one t per row or for all)
//
// Ranking (identical on CPU and CUDA, all dtypes): by magnitude, NaN above everything.
//   +0 == -0 < denormals < normals < +Inf == -Inf < NaN (every NaN ranks the same, whatever its sign or payload).
// Ties are broken by index: of equal magnitudes the lower index ranks first. The kept set is therefore unique
// and deterministic: exactly k entries, the first k in the order (|x| descending, index ascending).
// Outputs: topk writes the kept entries in ascending index order (cheap on GPU, and the order a sparse GEMV wants
// to gather weight columns in); values are bit copies of x (NaN payloads and the sign of zero survive).
//
// The rule a consumer of topk_select applies: keep x_i  <=>  isnan(x_i) || |x_i| >= kth_abs   (compare in float;
// in double for f64). For f32/f16/bf16 kth_abs is exactly |x| of the k-th ranked entry, so this keeps the top-k
// set plus every later entry that ties with the k-th magnitude: at least k entries, more when there are ties at
// the cut (e.g. a row of zeros keeps everything). kth_abs is NaN when the row holds k or more NaNs (then the rule
// keeps exactly the NaNs). For f64 kth_abs is |x_k| rounded toward zero to float (the rule still keeps >= k).
// Use topk / topk_mask when exactly k must be kept.
//
// threshold_mask keeps x_i <=> isnan(x_i) || |x_i| >= t. t <= 0 keeps everything; t = +Inf keeps ±Inf and NaN;
// a NaN t is an error (host-side thresholds are checked; device-side per-row thresholds cannot be checked
// without a synchronisation: a NaN there keeps only NaN entries).
//
// Algorithm: most-significant-digit radix select on the magnitude bits, 11 bits per pass (AIR Top-K, Zhang et al.,
// SC'23, one block per row as in RAFT's radix select_k), then one ordered compaction pass. CPU: O(n) per row, no
// sort, no allocation, threads over rows (detail/topk_cpu.hpp). CUDA: one kernel launch, one thread block per row,
// the row staged in shared memory when it fits (n <= 16384 for f32, 32768 for f16/bf16; larger rows are re-read
// from L2), warp-aggregated shared-memory histograms, CUB block scans (detail/topk_cuda.cuh). No workspace, no
// allocation, no synchronisation: safe inside CUDA Graph capture. Work is asynchronous on the tag's stream.
//
// dtypes: float, frugal::half, frugal::bfloat16 (CPU and CUDA), double (CPU). With frugal::cuda every pointer is
// device memory. The CUDA overloads must be called from a translation unit compiled by nvcc.
//
// Errors (frugal::error, thrown before anything is written): k outside [1, n], null pointers with non-zero sizes,
// output shapes that do not match, outputs overlapping the input (except the exact in-place mask), a NaN threshold.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/view.hpp"
#include "../core/workspace.hpp"
#include "detail/topk_cpu.hpp"
#include "detail/topk_keys.hpp"

#if defined(__CUDACC__)
#include "detail/topk_cuda.cuh"
#endif

FRUGAL_NAMESPACE_BEGIN

//! Magnitude threshold(s) for threshold_mask: `per_row` ([rows], device memory with frugal::cuda) when non-null,
//! else `all` for every row.
struct threshold {
  const float* per_row = nullptr;  // [rows] or null
  float all = 0.f;
};

namespace detail {

template <class T>
inline constexpr bool topk_dtype_ok_v = std::is_same_v<T, float> || std::is_same_v<T, double> ||
                                        std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

//! Byte ranges of two views intersect (empty views intersect nothing).
template <class A, class B>
bool topk_views_overlap(const matrix_view<A>& a, const matrix_view<B>& b) {
  if (a.empty() || b.empty()) return false;
  const auto lo_a = reinterpret_cast<std::uintptr_t>(a.data);
  const auto hi_a = lo_a + static_cast<std::uintptr_t>(((a.rows - 1) * a.ld + a.cols) * sizeof(A));
  const auto lo_b = reinterpret_cast<std::uintptr_t>(b.data);
  const auto hi_b = lo_b + static_cast<std::uintptr_t>(((b.rows - 1) * b.ld + b.cols) * sizeof(B));
  return lo_a < hi_b && lo_b < hi_a;
}

template <class T>
void topk_check_input(const char* op, const matrix_view<const T>& x, int k) {
  static_assert(topk_dtype_ok_v<T>, "frugal top-k supports float, double (CPU), frugal::half, frugal::bfloat16");
  check_matrix(op, "x", x);
  FRUGAL_CHECK(x.cols <= std::numeric_limits<std::int32_t>::max(), op, "n (=", x.cols,
               ") must fit in int32 (indices are int32)");
  FRUGAL_CHECK(x.rows <= std::numeric_limits<std::int32_t>::max(), op, "rows (=", x.rows, ") must be < 2^31");
  FRUGAL_CHECK(k >= 1 && k <= x.cols, op, "k (=", k, ") must be in [1, n=", x.cols, "]");
}

template <class T, class U>
void topk_check_output(const char* op, const char* name, const matrix_view<const T>& x, const matrix_view<U>& out,
                       std::int64_t cols) {
  check_matrix(op, name, out);
  FRUGAL_CHECK(out.rows == x.rows && out.cols == cols, op, name, " has shape [", out.rows, ", ", out.cols,
               "] but must be [rows, ", cols == x.cols ? "n" : "k", "] = [", x.rows, ", ", cols, "]");
  FRUGAL_CHECK(!topk_views_overlap(x, out), op, name, " overlaps x");
}

template <class T>
void topk_check_mask_output(const char* op, const matrix_view<const T>& x, const matrix_view<T>& y) {
  check_matrix(op, "y", y);
  FRUGAL_CHECK(y.rows == x.rows && y.cols == x.cols, op, "y has shape [", y.rows, ", ", y.cols,
               "] but must be [rows, n] = [", x.rows, ", ", x.cols, "]");
  if (static_cast<const void*>(y.data) == static_cast<const void*>(x.data) && !x.empty()) {
    FRUGAL_CHECK(y.ld == x.ld, op, "in place (y.data == x.data) needs y.ld (=", y.ld, ") == x.ld (=", x.ld, ")");
  } else {
    FRUGAL_CHECK(!topk_views_overlap(x, y), op, "y overlaps x without being x (in place needs y.data == x.data)");
  }
}

template <class T>
void topk_check_select(const char* op, const matrix_view<const T>& x, int k, const float* kth_abs) {
  topk_check_input(op, x, k);
  FRUGAL_CHECK(kth_abs != nullptr || x.rows == 0, op, "kth_abs is null but x has ", x.rows, " rows");
}

template <class T>
void threshold_check(const char* op, const matrix_view<const T>& x, threshold t, const matrix_view<T>& y) {
  static_assert(topk_dtype_ok_v<T>, "frugal threshold_mask supports float, double (CPU), frugal::half, frugal::bfloat16");
  check_matrix(op, "x", x);
  topk_check_mask_output(op, x, y);
  if (!t.per_row) FRUGAL_CHECK(!std::isnan(t.all), op, "threshold.all (=", t.all, ") must not be NaN");
}

}  // namespace detail

// ------------------------------------------------------------------------------------------------------------------
// Workspace: none is needed today on either device (the functions take `ws` so that this can change without an API
// break); query it anyway and pass it along.

template <class T>
std::size_t topk_workspace_bytes(cpu_t, std::int64_t /*rows*/, std::int64_t /*n*/, int /*k*/) {
  return 0;
}
template <class T>
std::size_t topk_workspace_bytes(cuda_t, std::int64_t /*rows*/, std::int64_t /*n*/, int /*k*/) {
  return 0;
}

// ------------------------------------------------------------------------------------------------------------------
// topk: the k entries of largest magnitude of each row, in ascending index order.

template <class T>
void topk(cpu_t tag, matrix_view<const std::type_identity_t<T>> x,  // [rows, n], ld >= n
          int k,
          matrix_view<std::int32_t> indices,  // [rows, k] out: column of each kept entry, ascending per row
          matrix_view<T> values,              // [rows, k] out: x[r, indices[r, j]]
          workspace ws = {}) {
  (void)ws;
  detail::topk_check_input("topk", x, k);
  detail::topk_check_output("topk", "indices", x, indices, k);
  detail::topk_check_output("topk", "values", x, values, k);
  detail::topk_cpu(tag, x, k, indices, values);
}

template <class T>
void topk(cuda_t tag, matrix_view<const std::type_identity_t<T>> x,  // [rows, n] device
          int k,
          matrix_view<std::int32_t> indices,  // [rows, k] device out
          matrix_view<T> values,              // [rows, k] device out
          workspace ws = {}) {
  (void)ws;
  FRUGAL_REQUIRE_NVCC(T, "topk");
#if defined(__CUDACC__)
  static_assert(dtype_traits<T>::cuda_ok, "frugal::topk(frugal::cuda, ...): f64 is CPU-only");
  detail::topk_check_input("topk", x, k);
  detail::topk_check_output("topk", "indices", x, indices, k);
  detail::topk_check_output("topk", "values", x, values, k);
  detail::topk_cuda(tag, x, k, indices, values);
#else
  (void)tag, (void)x, (void)k, (void)indices, (void)values;
#endif
}

// ------------------------------------------------------------------------------------------------------------------
// topk_mask: y = x on the top-k entries of each row, +0 elsewhere. y may be x itself (same data and ld).

template <class T>
void topk_mask(cpu_t tag, matrix_view<const std::type_identity_t<T>> x,  // [rows, n]
               int k,
               matrix_view<T> y,  // [rows, n] out; may alias x exactly (in place)
               workspace ws = {}) {
  (void)ws;
  detail::topk_check_input("topk_mask", x, k);
  detail::topk_check_mask_output("topk_mask", x, y);
  detail::topk_mask_cpu(tag, x, k, y);
}

template <class T>
void topk_mask(cuda_t tag, matrix_view<const std::type_identity_t<T>> x,  // [rows, n] device
               int k,
               matrix_view<T> y,  // [rows, n] device out; may alias x exactly (in place)
               workspace ws = {}) {
  (void)ws;
  FRUGAL_REQUIRE_NVCC(T, "topk_mask");
#if defined(__CUDACC__)
  static_assert(dtype_traits<T>::cuda_ok, "frugal::topk_mask(frugal::cuda, ...): f64 is CPU-only");
  detail::topk_check_input("topk_mask", x, k);
  detail::topk_check_mask_output("topk_mask", x, y);
  detail::topk_mask_cuda(tag, x, k, y);
#else
  (void)tag, (void)x, (void)k, (void)y;
#endif
}

// ------------------------------------------------------------------------------------------------------------------
// topk_select: kth_abs[r] = the k-th largest |x| of row r (NaN when the row holds >= k NaNs). See the rule above.

template <class T>
void topk_select(cpu_t tag, matrix_view<const T> x,  // [rows, n]
                 int k,
                 float* kth_abs,  // [rows] out
                 workspace ws = {}) {
  (void)ws;
  detail::topk_check_select("topk_select", x, k, kth_abs);
  detail::topk_select_cpu(tag, x, k, kth_abs);
}

template <class T>
void topk_select(cuda_t tag, matrix_view<const T> x,  // [rows, n] device
                 int k,
                 float* kth_abs,  // [rows] device out
                 workspace ws = {}) {
  (void)ws;
  FRUGAL_REQUIRE_NVCC(T, "topk_select");
#if defined(__CUDACC__)
  static_assert(dtype_traits<T>::cuda_ok, "frugal::topk_select(frugal::cuda, ...): f64 is CPU-only");
  detail::topk_check_select("topk_select", x, k, kth_abs);
  detail::topk_select_cuda(tag, x, k, kth_abs);
#else
  (void)tag, (void)x, (void)k, (void)kth_abs;
#endif
}

//! Accepts a mutable view too (deduction cannot see through the const conversion).
template <class Tag, class T>
  requires(is_device_tag_v<Tag> && !std::is_const_v<T>)
void topk_select(Tag tag, matrix_view<T> x, int k, float* kth_abs, workspace ws = {}) {
  topk_select<T>(tag, matrix_view<const T>(x), k, kth_abs, ws);
}

// ------------------------------------------------------------------------------------------------------------------
// threshold_mask: y = x where isnan(x) || |x| >= t (t per row or for all), +0 elsewhere; counts[r] = kept in row r.

template <class T>
void threshold_mask(cpu_t tag, matrix_view<const std::type_identity_t<T>> x,  // [rows, n]
                    threshold t,                                              // per_row: [rows] host, or null
                    matrix_view<T> y,        // [rows, n] out; may alias x exactly (in place)
                    std::int32_t* counts) {  // [rows] out, or null
  detail::threshold_check("threshold_mask", x, t, y);
  if (t.per_row)
    for (std::int64_t r = 0; r < x.rows; ++r)
      FRUGAL_CHECK(!std::isnan(t.per_row[r]), "threshold_mask", "threshold.per_row[", r, "] (=", t.per_row[r],
                   ") must not be NaN");
  detail::threshold_mask_cpu(tag, x, t.per_row, t.all, y, counts);
}

template <class T>
void threshold_mask(cuda_t tag, matrix_view<const std::type_identity_t<T>> x,  // [rows, n] device
                    threshold t,                                               // per_row: [rows] device, or null
                    matrix_view<T> y,        // [rows, n] device out; may alias x exactly (in place)
                    std::int32_t* counts) {  // [rows] device out, or null
  FRUGAL_REQUIRE_NVCC(T, "threshold_mask");
#if defined(__CUDACC__)
  static_assert(dtype_traits<T>::cuda_ok, "frugal::threshold_mask(frugal::cuda, ...): f64 is CPU-only");
  detail::threshold_check("threshold_mask", x, t, y);
  detail::threshold_mask_cuda(tag, x, t.per_row, t.all, y, counts);
#else
  (void)tag, (void)x, (void)t, (void)y, (void)counts;
#endif
}

FRUGAL_NAMESPACE_END
