// frugal/rotation/covariance.hpp — streaming second moment / covariance of activations, on the CPU and on CUDA.
//
// Calibration for LaRoSA (Liu et al., ICML 2025) needs, per rotated layer input, the d x d matrix
//     H = Σ_batches Xᵀ X        (X: [tokens, d] activations of one batch)
// and, for a centred covariance, the column sums Σ x. The running sums live in a `covariance_state`:
//     xtx   [d, d] f64   Σ xᵀx — only the upper triangle (i <= j) is maintained; the strictly lower part is
//                         left as it was (zero after covariance_reset)
//     sum   [d]    f64   Σ x (optional: null when the mean is not tracked)
//     count              tokens seen (host-side integer)
// Its memory is the caller's (host memory for frugal::cpu, device memory for frugal::cuda):
// covariance_state_bytes(d, track_mean) bytes, laid out by covariance_state_on(ptr, d, track_mean).
//
//   covariance_reset(tag, state)                        zero the sums
//   covariance_accumulate(tag, x [tokens, d], state, ws)  add one batch; x: f32, f16, bf16 or f64
//   covariance_merge(tag, into, from)                   into += from (partial accumulators, e.g. per GPU/thread)
//   covariance_finalize(tag, state, cov [d, d], opts)   cov = H / count (uncentred second moment, LaRoSA), or
//                                                       (H - s sᵀ / count) / count (centred, opts.centered),
//                                                       then cov_ii += opts.damping · mean_i(cov_ii); full
//                                                       symmetric output in f32 or f64
//
// Precision: every product x_i·x_j is formed from the input converted to f64 (exact for f32/f16/bf16 inputs) and
// accumulated in f64, on both devices; the CPU and CUDA sums differ only by f64 summation order.
// CPU: tokens are taken 256 at a time, converted to f64 (workspace: covariance_workspace_bytes(cpu, d)), and the
// 64 x 64 upper tiles of H are updated in parallel (detail::parallel_for) with a vectorised micro-kernel.
// CUDA: one thread block per upper 64 x 64 tile of H runs over all tokens of the batch (32 at a time, staged in
// shared memory as f64) and adds its tile into `xtx` — no atomics, so results are deterministic, and no cuBLAS
// (no handle to manage; the f64 FMA rate of an H100 makes this ~1 ms for d = 768 and 32k tokens). No workspace.
// All CUDA calls are asynchronous on tag.stream. LaRoSA's own code uses H unnormalised with damping 0.01 and no
// centring; eigenvectors do not depend on the 1/count scale.
#pragma once

#include <algorithm>
#include <cstddef>
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
#include "detail/covariance_cpu.hpp"

FRUGAL_NAMESPACE_BEGIN

//! Running sums of one calibration stream (see the header comment). Non-owning.
struct covariance_state {
  double* xtx = nullptr;  // [dim, dim], upper triangle
  double* sum = nullptr;  // [dim] or null
  std::int64_t dim = 0;
  std::int64_t count = 0;  // tokens accumulated
};

struct covariance_options {
  bool centered = false;  //!< subtract the mean (needs a state that tracks it)
  double damping = 0.0;   //!< add damping * mean(diag) to the diagonal (LaRoSA: 0.01)
};

//! Bytes of memory a covariance_state of dimension `dim` needs.
inline std::size_t covariance_state_bytes(std::int64_t dim, bool track_mean) {
  FRUGAL_CHECK(dim >= 1, "covariance_state_bytes", "dim (=", dim, ") must be >= 1");
  detail::workspace_carver c;
  c.take<double>(static_cast<std::size_t>(dim * dim));
  if (track_mean) c.take<double>(static_cast<std::size_t>(dim));
  return c.bytes();
}

//! Lays a covariance_state out in `memory` (covariance_state_bytes(dim, track_mean) bytes, 256-byte aligned).
//! The sums are not cleared: call covariance_reset before the first batch.
inline covariance_state covariance_state_on(void* memory, std::size_t bytes, std::int64_t dim, bool track_mean) {
  const std::size_t need = covariance_state_bytes(dim, track_mean);
  FRUGAL_CHECK(memory != nullptr, "covariance_state_on", "memory is null");
  FRUGAL_CHECK(bytes >= need, "covariance_state_on", "memory too small: ", bytes, " bytes given, ", need, " needed");
  detail::workspace_carver c(workspace{memory, bytes});
  covariance_state s;
  s.dim = dim;
  s.xtx = c.take<double>(static_cast<std::size_t>(dim * dim));
  if (track_mean) s.sum = c.take<double>(static_cast<std::size_t>(dim));
  return s;
}

namespace detail {
inline void check_covariance_state(const char* op, const covariance_state& s) {
  FRUGAL_CHECK(s.dim >= 1, op, "state dim (=", s.dim, ") must be >= 1");
  FRUGAL_CHECK(s.xtx != nullptr, op, "state xtx is null");
  FRUGAL_CHECK(s.count >= 0, op, "state count (=", s.count, ") must be >= 0");
}
template <class T>
inline constexpr bool covariance_input_ok =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

template <class T>
void check_covariance_accumulate(const matrix_view<const T>& x, const covariance_state& s) {
  check_covariance_state("covariance_accumulate", s);
  check_matrix("covariance_accumulate", "x", x);
  FRUGAL_CHECK(x.cols == s.dim, "covariance_accumulate", "x has ", x.cols, " columns but the state has dim=", s.dim);
}
template <class U>
void check_covariance_finalize(const covariance_state& s, const matrix_view<U>& cov, const covariance_options& o) {
  check_covariance_state("covariance_finalize", s);
  check_matrix("covariance_finalize", "cov", cov);
  FRUGAL_CHECK(cov.rows == s.dim && cov.cols == s.dim, "covariance_finalize", "cov has shape [", cov.rows, ", ",
               cov.cols, "] but must be [", s.dim, ", ", s.dim, "]");
  FRUGAL_CHECK(s.count >= 1, "covariance_finalize", "no tokens accumulated (count=", s.count, ")");
  FRUGAL_CHECK(!o.centered || s.sum != nullptr, "covariance_finalize",
               "centered=true needs a state that tracks the mean (sum is null)");
  FRUGAL_CHECK(o.damping >= 0, "covariance_finalize", "damping (=", o.damping, ") must be >= 0");
}
inline void check_covariance_merge(const covariance_state& into, const covariance_state& from) {
  check_covariance_state("covariance_merge", into);
  check_covariance_state("covariance_merge", from);
  FRUGAL_CHECK(into.dim == from.dim, "covariance_merge", "dims differ: ", into.dim, " vs ", from.dim);
  FRUGAL_CHECK((into.sum == nullptr) == (from.sum == nullptr), "covariance_merge",
               "one state tracks the mean and the other does not");
}
}  // namespace detail

// ------------------------------------------------------------------------------------------------ CPU

//! Host workspace of covariance_accumulate(frugal::cpu, ...) for dimension `dim`.
inline std::size_t covariance_workspace_bytes(cpu_t, std::int64_t dim) {
  FRUGAL_CHECK(dim >= 1, "covariance_workspace_bytes", "dim (=", dim, ") must be >= 1");
  return static_cast<std::size_t>(detail::covariance_chunk) * static_cast<std::size_t>(dim) * sizeof(double);
}

inline void covariance_reset(cpu_t, covariance_state& s) {
  detail::check_covariance_state("covariance_reset", s);
  std::fill(s.xtx, s.xtx + s.dim * s.dim, 0.0);
  if (s.sum) std::fill(s.sum, s.sum + s.dim, 0.0);
  s.count = 0;
}

template <class T>
void covariance_accumulate(cpu_t tag, matrix_view<const std::type_identity_t<T>> x, covariance_state& s, workspace ws) {
  static_assert(detail::covariance_input_ok<T>, "frugal::covariance_accumulate: x must be f32, f64, f16 or bf16");
  detail::check_covariance_accumulate<T>(x, s);
  const std::size_t need = covariance_workspace_bytes(tag, s.dim);
  FRUGAL_CHECK(ws.data != nullptr && ws.bytes >= need, "covariance_accumulate", "workspace too small: ", ws.bytes,
               " bytes given, ", need, " needed");
  detail::covariance_accumulate_cpu<T>(tag, x, s, static_cast<double*>(ws.data));
  s.count += x.rows;
}

inline void covariance_merge(cpu_t tag, covariance_state& into, const covariance_state& from) {
  detail::check_covariance_merge(into, from);
  const std::int64_t d = into.dim;
  detail::parallel_for(tag, d, 64, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t i = r0; i < r1; ++i)
      for (std::int64_t j = i; j < d; ++j) into.xtx[i * d + j] += from.xtx[i * d + j];
  });
  if (into.sum)
    for (std::int64_t i = 0; i < d; ++i) into.sum[i] += from.sum[i];
  into.count += from.count;
}

template <class U>
void covariance_finalize(cpu_t tag, const covariance_state& s, matrix_view<U> cov, const covariance_options& o = {}) {
  static_assert(std::is_same_v<U, float> || std::is_same_v<U, double>, "covariance_finalize writes f32 or f64");
  detail::check_covariance_finalize(s, cov, o);
  const std::int64_t d = s.dim;
  const double inv = 1.0 / static_cast<double>(s.count);
  double trace = 0;
  for (std::int64_t i = 0; i < d; ++i) trace += detail::covariance_entry(s, i, i, o.centered, inv);
  const double damp = o.damping * trace / static_cast<double>(d);
  detail::parallel_for(tag, d, 32, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t i = r0; i < r1; ++i)
      for (std::int64_t j = 0; j < d; ++j)
        cov(i, j) = static_cast<U>(detail::covariance_entry(s, i, j, o.centered, inv) + (i == j ? damp : 0.0));
  });
}

//! A host-owned covariance accumulator (state + workspace in std::vectors): the simple way on the CPU.
class covariance_accumulator {
 public:
  explicit covariance_accumulator(std::int64_t dim, bool track_mean = false)
      : xtx_(static_cast<std::size_t>(dim >= 1 ? dim * dim : 0), 0.0),
        sum_(track_mean ? static_cast<std::size_t>(dim) : 0, 0.0),
        ws_(static_cast<std::size_t>(dim >= 1 ? detail::covariance_chunk * dim : 0)) {
    FRUGAL_CHECK(dim >= 1, "covariance_accumulator", "dim (=", dim, ") must be >= 1");
    state_.xtx = xtx_.data();
    state_.sum = track_mean ? sum_.data() : nullptr;
    state_.dim = dim;
  }
  covariance_accumulator(const covariance_accumulator& o)
      : covariance_accumulator(o.state_.dim, o.state_.sum != nullptr) {
    xtx_ = o.xtx_;
    sum_ = o.sum_;
    state_.xtx = xtx_.data();
    state_.sum = o.state_.sum ? sum_.data() : nullptr;
    state_.count = o.state_.count;
  }
  covariance_accumulator& operator=(const covariance_accumulator&) = delete;

  template <class T>
  void add(cpu_t tag, matrix_view<const std::type_identity_t<T>> x) {
    covariance_accumulate<T>(tag, x, state_, workspace{ws_.data(), ws_.size() * sizeof(double)});
  }
  template <class T>
  void add(cpu_t tag, matrix_view<T> x) {
    add<std::remove_const_t<T>>(tag, matrix_view<const std::remove_const_t<T>>(x));
  }
  void merge(cpu_t tag, const covariance_accumulator& o) { covariance_merge(tag, state_, o.state_); }
  //! Adds sums produced elsewhere (e.g. a device state copied to the host).
  void merge(cpu_t tag, const covariance_state& o) { covariance_merge(tag, state_, o); }
  template <class U>
  void finalize(cpu_t tag, matrix_view<U> cov, const covariance_options& o = {}) const {
    covariance_finalize(tag, state_, cov, o);
  }
  void reset(cpu_t tag) { covariance_reset(tag, state_); }
  const covariance_state& state() const { return state_; }
  covariance_state& state() { return state_; }
  std::int64_t dim() const { return state_.dim; }
  std::int64_t count() const { return state_.count; }

 private:
  std::vector<double> xtx_, sum_, ws_;
  covariance_state state_;
};

FRUGAL_NAMESPACE_END

// ------------------------------------------------------------------------------------------------ CUDA

#if defined(__CUDACC__)
#include "detail/covariance_cuda.cuh"
#endif

FRUGAL_NAMESPACE_BEGIN

inline std::size_t covariance_workspace_bytes(cuda_t, std::int64_t dim) {
  FRUGAL_CHECK(dim >= 1, "covariance_workspace_bytes", "dim (=", dim, ") must be >= 1");
  return 0;
}

//! Zeroes a device state (cudaMemsetAsync on tag.stream).
template <class Tag>
requires std::is_same_v<Tag, cuda_t>
void covariance_reset(Tag tag, covariance_state& s) {
  detail::check_covariance_state("covariance_reset", s);
#if defined(__CUDACC__)
  detail::covariance_reset_cuda(tag, s);
#else
  FRUGAL_REQUIRE_NVCC(Tag, "covariance_reset");
  (void)tag;
#endif
}

//! Adds the batch x [tokens, dim] (device memory) to a device state. No workspace (ws may be empty).
template <class T>
void covariance_accumulate(cuda_t tag, matrix_view<const std::type_identity_t<T>> x, covariance_state& s,
                           workspace ws = {}) {
  static_assert(detail::covariance_input_ok<T>, "frugal::covariance_accumulate: x must be f32, f64, f16 or bf16");
  detail::check_covariance_accumulate<T>(x, s);
  (void)ws;
#if defined(__CUDACC__)
  detail::covariance_accumulate_cuda<T>(tag, x, s);
  s.count += x.rows;
#else
  FRUGAL_REQUIRE_NVCC(T, "covariance_accumulate");
  (void)tag;
#endif
}

//! into += from, both device states.
template <class Tag>
requires std::is_same_v<Tag, cuda_t>
void covariance_merge(Tag tag, covariance_state& into, const covariance_state& from) {
  detail::check_covariance_merge(into, from);
#if defined(__CUDACC__)
  detail::covariance_merge_cuda(tag, into, from);
  into.count += from.count;
#else
  FRUGAL_REQUIRE_NVCC(Tag, "covariance_merge");
  (void)tag;
#endif
}

//! cov [dim, dim] (device memory, f32 or f64) from a device state.
template <class U>
void covariance_finalize(cuda_t tag, const covariance_state& s, matrix_view<U> cov, const covariance_options& o = {}) {
  static_assert(std::is_same_v<U, float> || std::is_same_v<U, double>, "covariance_finalize writes f32 or f64");
  detail::check_covariance_finalize(s, cov, o);
#if defined(__CUDACC__)
  detail::covariance_finalize_cuda<U>(tag, s, cov, o.centered, o.damping);
#else
  FRUGAL_REQUIRE_NVCC(U, "covariance_finalize");
  (void)tag;
#endif
}

FRUGAL_NAMESPACE_END
