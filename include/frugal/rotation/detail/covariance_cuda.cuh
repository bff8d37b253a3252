// frugal/rotation/detail/covariance_cuda.cuh — CUDA accumulation of Σ xᵀx in f64 (nvcc only; see covariance.hpp).
//
// covariance_accumulate_kernel: one 256-thread block per upper 64 x 64 tile (ti <= tj) of H. The block walks all
// tokens 32 at a time, staging the two 32 x 64 column panels of x in shared memory as f64, each thread keeping a
// 4 x 4 block of f64 accumulators, and finally adds them into its tile of `xtx` (the tile is owned by one block:
// no atomics, deterministic). Diagonal-tile blocks also add the column sums when the mean is tracked.
#pragma once

#if !defined(__CUDACC__)
#error "covariance_cuda.cuh is CUDA code: include <frugal/rotation/covariance.hpp> from a .cu file compiled by nvcc."
#endif

#include <cuda_runtime.h>

#include <cstdint>

#include "../../core/detail/cuda_common.cuh"
#include "../../core/view.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

__device__ __forceinline__ double cov_load(double v) {
  return v;
}
__device__ __forceinline__ double cov_load(float v) {
  return static_cast<double>(v);
}
__device__ __forceinline__ double cov_load(__half v) {
  return static_cast<double>(__half2float(v));
}
__device__ __forceinline__ double cov_load(__nv_bfloat16 v) {
  return static_cast<double>(__bfloat162float(v));
}

template <class C>
__global__ void __launch_bounds__(256)
    covariance_accumulate_kernel(const C* __restrict x, std::int64_t ldx, std::int64_t tokens, std::int64_t d, int nt,
                                 double* __restrict xtx, double* __restrict sum) {
  constexpr int TILE = 64, CT = 32;
  __shared__ double xi[CT][TILE + 1], xj[CT][TILE + 1];
  // upper tile number blockIdx.x -> (ti, tj), row by row
  int ti = 0, rem = static_cast<int>(blockIdx.x);
  while (rem >= nt - ti) {
    rem -= nt - ti;
    ++ti;
  }
  const int tj = ti + rem;
  const std::int64_t i0 = static_cast<std::int64_t>(ti) * TILE, j0 = static_cast<std::int64_t>(tj) * TILE;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;  // outputs (ty + 16u, tx + 16v)
  const bool diag = ti == tj;
  double acc[4][4] = {};
  double colsum = 0.0;  // thread t < 64 of a diagonal block: column i0 + t
  for (std::int64_t t0 = 0; t0 < tokens; t0 += CT) {
    for (int e = threadIdx.x; e < CT * TILE; e += 256) {
      const int r = e / TILE, c = e % TILE;
      const std::int64_t t = t0 + r;
      const bool tok = t < tokens;
      xi[r][c] = tok && i0 + c < d ? cov_load(x[t * ldx + i0 + c]) : 0.0;
      xj[r][c] = tok && j0 + c < d ? cov_load(x[t * ldx + j0 + c]) : 0.0;
    }
    __syncthreads();
    if (diag && sum != nullptr && threadIdx.x < TILE)
      for (int r = 0; r < CT; ++r) colsum += xi[r][threadIdx.x];
#pragma unroll 4
    for (int r = 0; r < CT; ++r) {
      double a[4], b[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) a[u] = xi[r][ty + 16 * u];
#pragma unroll
      for (int v = 0; v < 4; ++v) b[v] = xj[r][tx + 16 * v];
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] = fma(a[u], b[v], acc[u][v]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int u = 0; u < 4; ++u)
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const std::int64_t i = i0 + ty + 16 * u, j = j0 + tx + 16 * v;
      if (i < d && j < d) xtx[i * d + j] += acc[u][v];
    }
  if (diag && sum != nullptr && threadIdx.x < TILE && i0 + threadIdx.x < d) sum[i0 + threadIdx.x] += colsum;
}

static __global__ void covariance_merge_kernel(double* __restrict into, const double* __restrict from, std::int64_t d) {
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < d * d;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    if (e / d <= e % d) into[e] += from[e];
}

static __global__ void covariance_add_kernel(double* __restrict into, const double* __restrict from, std::int64_t n) {
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    into[e] += from[e];
}

//! Each block recomputes the (cheap, d-term) trace itself, then writes rows blockIdx.x, blockIdx.x + gridDim.x, ...
template <class U>
__global__ void covariance_finalize_kernel(const double* __restrict xtx, const double* __restrict sum, std::int64_t d,
                                           double inv, bool centered, double damping, U* __restrict cov,
                                           std::int64_t ldc) {
  __shared__ double red[256];
  double tr = 0.0;
  for (std::int64_t i = threadIdx.x; i < d; i += 256) {
    double h = xtx[i * d + i];
    if (centered) h -= sum[i] * sum[i] * inv;
    tr += h * inv;
  }
  red[threadIdx.x] = tr;
  __syncthreads();
  for (int s = 128; s > 0; s /= 2) {
    if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const double damp = damping * red[0] / static_cast<double>(d);
  for (std::int64_t i = blockIdx.x; i < d; i += gridDim.x)
    for (std::int64_t j = threadIdx.x; j < d; j += 256) {
      const std::int64_t lo = i < j ? i : j, hi = i < j ? j : i;
      double h = xtx[lo * d + hi];
      if (centered) h -= sum[i] * sum[j] * inv;
      h *= inv;
      if (i == j) h += damp;
      cov[i * ldc + j] = static_cast<U>(h);
    }
}

template <class State>
void covariance_reset_cuda(cuda_t tag, State& s) {
  FRUGAL_CUDA_CHECK(cudaMemsetAsync(s.xtx, 0, static_cast<std::size_t>(s.dim * s.dim) * sizeof(double), tag.stream),
                    "covariance_reset");
  if (s.sum)
    FRUGAL_CUDA_CHECK(cudaMemsetAsync(s.sum, 0, static_cast<std::size_t>(s.dim) * sizeof(double), tag.stream),
                      "covariance_reset");
  s.count = 0;
}

template <class T, class State>
void covariance_accumulate_cuda(cuda_t tag, const matrix_view<const T>& x, State& s) {
  if (x.rows == 0) return;
  const int nt = static_cast<int>((s.dim + 63) / 64);
  const unsigned blocks = static_cast<unsigned>(static_cast<std::int64_t>(nt) * (nt + 1) / 2);
  covariance_accumulate_kernel<cuda_type_t<T>>
      <<<blocks, 256, 0, tag.stream>>>(as_cuda(x.data), x.ld, x.rows, s.dim, nt, s.xtx, s.sum);
  check_launch("covariance_accumulate", "covariance_accumulate_kernel");
}

template <class State>
void covariance_merge_cuda(cuda_t tag, State& into, const State& from) {
  const std::int64_t d = into.dim;
  const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>((d * d + 255) / 256, 4096));
  covariance_merge_kernel<<<blocks, 256, 0, tag.stream>>>(into.xtx, from.xtx, d);
  check_launch("covariance_merge", "covariance_merge_kernel");
  if (into.sum) {
    covariance_add_kernel<<<static_cast<unsigned>((d + 255) / 256), 256, 0, tag.stream>>>(into.sum, from.sum, d);
    check_launch("covariance_merge", "covariance_add_kernel");
  }
}

template <class U, class State>
void covariance_finalize_cuda(cuda_t tag, const State& s, const matrix_view<U>& cov, bool centered, double damping) {
  const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>(s.dim, 1024));
  covariance_finalize_kernel<U><<<blocks, 256, 0, tag.stream>>>(s.xtx, s.sum, s.dim, 1.0 / static_cast<double>(s.count),
                                                                centered, damping, cov.data, cov.ld);
  check_launch("covariance_finalize", "covariance_finalize_kernel");
}

}  // namespace detail
FRUGAL_NAMESPACE_END
