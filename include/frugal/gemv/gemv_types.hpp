// frugal/gemv/gemv_types.hpp — the option and sparse-input types of frugal/gemv/gemv.hpp (see there for the docs).
#pragma once

#include <cstdint>

#include "../core/config.hpp"
#include "../core/view.hpp"

FRUGAL_NAMESPACE_BEGIN

//! Normalisation of each row of x applied inside the GEMV (the "norm prologue"), before selection and product.
//! No affine part: fold LayerNorm's gamma into the rows of W and beta·W into the bias (rotation/larosa.hpp's
//! fold_layernorm does this), which is exact.
//!   layernorm: x̂ = (x − mean(x)) · rstd,  rstd = 1 / sqrt(var(x) + eps)   (biased variance over the K channels)
//!   rmsnorm:   x̂ = x · rstd,              rstd = 1 / sqrt(mean(x²) + eps)
//! Selection rules see x̂: threshold keeps |x̂| >= t; top-k keeps the k largest |x̂| (allowed with rmsnorm only,
//! where it is the same set as for x); masked keeps x̂ != 0 (rmsnorm only). Explicit lists take no norm.
enum class gemv_norm { none, layernorm, rmsnorm };

//! Activation applied to x·W + bias before it is stored (or added, with accumulate): y (+)= act(x̂·W + bias).
enum class gemv_act { none, gelu_tanh };  //!< gelu_tanh: GPT-2's 0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³)))

struct gemv_options {
  bool accumulate = false;  //!< y += x·W (+ bias) instead of y = x·W (+ bias)
  bool checked = false;     //!< explicit lists: also reject duplicate indices (CPU); validate on the GPU (syncs)
  int splits = 0;           //!< CUDA tuning: K splits per column tile (1..8, the cluster size); 0 = automatic
  int segment_bytes = 0;    //!< CUDA tuning: contiguous bytes of a weight row read per step (128/256/512); 0 = auto
  gemv_norm norm = gemv_norm::none;  //!< fused row normalisation of x (see gemv_norm)
  float eps = 1e-5f;                 //!< the norm's epsilon (finite, > 0)
  gemv_act act = gemv_act::none;     //!< fused activation of the output (see gemv_act)
  //! CUDA (sm_90): launch with programmatic dependent launch, so that in a stream / CUDA Graph of back-to-back
  //! kernels this GEMV's blocks start while the previous kernel drains (every read of x, lists, thresholds, bias,
  //! y, and every write, waits for it: griddepcontrol.wait). Requirement: nothing still running before this call may
  //! write `w` — the weights-ahead kernel (below) reads w before the wait.
  bool pdl = false;
  //! CUDA (sm_90), dense input, batch 1: the "weights ahead" kernel. Each block copies its weight tile into shared
  //! memory (cp.async, up to ~96 KB) and issues its first 16 register loads per thread BEFORE griddepcontrol.wait,
  //! and lets the next kernel launch at once: in a PDL chain a GEMV's weights stream while the kernels before it
  //! finish, and the work after the wait is x, the products out of shared memory, the rest of the tile and the
  //! cluster reduction. -1: automatic (on with pdl, unless splits / segment_bytes pin the other kernel's shape);
  //! 0: off; 1: on whenever the call qualifies (splits, if set, is its cluster size). Deterministic, but not
  //! bitwise equal to the other kernel (another summation order).
  int weights_ahead = -1;
};

//! Per row r: entries indices[r * ld + j], values[r * ld + j] for j < nnz[r] (nnz in device memory for CUDA).
template <class T>
struct sparse_rows {
  const std::int32_t* indices = nullptr;  // [rows, ld] kept channel ids in [0, K), any order
  const T* values = nullptr;              // [rows, ld]
  const std::int32_t* nnz = nullptr;      // [rows] entries used per row, <= cap
  std::int64_t rows = 0;
  std::int64_t cap = 0;  // entries allocated per row
  std::int64_t ld = 0;   // row stride of indices/values in elements (>= cap)
};

namespace detail {

enum class gemv_input { dense, masked, threshold, list };

//! One validated call, as the CPU and CUDA implementations receive it.
template <class T>
struct gemv_problem {
  gemv_input mode = gemv_input::dense;
  matrix_view<const T> x;         // [b, K] (dense, masked, threshold)
  sparse_rows<T> list;            // (list)
  const float* t_rows = nullptr;  // [b] per-row thresholds (threshold), host or device memory like x
  float t_all = 0.f;
  matrix_view<const T> w;   // [K, N]
  const T* bias = nullptr;  // [N] or null
  matrix_view<T> y;         // [b, N]
  gemv_options opt;
  std::int64_t b = 0, K = 0, N = 0;
  bool select_raw = false;  // top-k + rmsnorm: the keep rule compares raw |x| (t = k-th raw magnitude), values are x̂
  int topk_k = 0;  // CUDA top-k (threshold mode, t_rows unused): each block finds t_r = the k-th raw |x| itself
};

}  // namespace detail

FRUGAL_NAMESPACE_END
