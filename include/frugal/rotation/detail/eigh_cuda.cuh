// frugal/rotation/detail/eigh_cuda.cuh — CUDA two-sided block Jacobi eigensolver (nvcc only).
// Private: include <frugal/rotation/eigh.hpp> from a .cu file. Same algorithm, ordering, thresholds and precision
// as detail/eigh_cpu.hpp (the reference); see rotation/eigh.hpp for the description.
//
// Kernels, per solve:
//   eigh_scan_kernel / eigh_scan_final_kernel   input checks and ||A||_F (deterministic two-level reduction)
//   eigh_init_kernel                            working copy (A + Aᵀ)/2, zero padded; Vᵀ = I
//   per step of a sweep:
//     eigh_pair_kernel<B2>    one block per pair P: one scalar Jacobi sweep (f64, shared memory) on A[P, P] —
//                             per round: the B2/2 angles, a barrier, S <- Rᵀ S R by 2 x 2 blocks and J <- J R, a
//                             barrier — one Newton–Schulz re-orthogonalisation of J_P, writes A[P, P] and J_P (in T)
//     eigh_update_kernel<B2>  one block per upper tile A[P, Q] (P < Q): J_Pᵀ A[P, Q] J_Q, mirrored into A[Q, P];
//                             and one block per tile of Vᵀ: Vᵀ[P, cols] <- J_Pᵀ Vᵀ[P, cols]
//   eigh_rank_kernel, eigh_gather_kernel         sort descending, write w and the columns of q
#pragma once

#if !defined(__CUDACC__)
#error "eigh_cuda.cuh is CUDA code: include <frugal/rotation/eigh.hpp> from a .cu file compiled by nvcc."
#endif

#include <cuda_runtime.h>

#include <cstdint>

#include "../../core/detail/cuda_common.cuh"
#include "../../core/dtype.hpp"
#include "../../core/error.hpp"
#include "../../core/view.hpp"
#include "../../core/workspace.hpp"
#include "jacobi_common.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

inline constexpr int eigh_threads = 256;

// ------------------------------------------------------------------------------------------------ input scan

__device__ inline void eigh_scan_merge(eigh_scan_device& r, const eigh_scan_device& s) {
  r.fro2 += s.fro2;
  r.max_abs = fmax(r.max_abs, s.max_abs);
  if (s.max_asym > r.max_asym || (s.max_asym == r.max_asym && s.asym_at < r.asym_at)) {
    r.max_asym = s.max_asym;
    r.asym_at = s.asym_at;
  }
  if (s.nonfinite_at < r.nonfinite_at) {
    r.nonfinite_at = s.nonfinite_at;
    r.bad_value = s.bad_value;
  }
}

__device__ inline void eigh_scan_block_reduce(eigh_scan_device mine, eigh_scan_device* out) {
  __shared__ eigh_scan_device red[eigh_threads];
  red[threadIdx.x] = mine;
  __syncthreads();
  for (int stride = eigh_threads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) eigh_scan_merge(red[threadIdx.x], red[threadIdx.x + stride]);
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = red[0];
}

template <class T>
__global__ void eigh_scan_kernel(const T* __restrict a, std::int64_t lda, std::int64_t n,
                                 eigh_scan_device* __restrict part) {
  constexpr int rows = eigh_cuda_buffers<T>::scan_rows;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * rows;
  const std::int64_t r1 = r0 + rows < n ? r0 + rows : n;
  eigh_scan_device s{0.0, 0.0, 0.0, n * n, n * n, 0.0};
  for (std::int64_t e = threadIdx.x; e < (r1 - r0) * n; e += eigh_threads) {
    const std::int64_t i = r0 + e / n, j = e % n;
    const double x = static_cast<double>(a[i * lda + j]);
    if (!isfinite(x)) {
      if (i * n + j < s.nonfinite_at) {
        s.nonfinite_at = i * n + j;
        s.bad_value = x;
      }
      continue;
    }
    const double y = static_cast<double>(a[j * lda + i]);
    s.max_abs = fmax(s.max_abs, fabs(x));
    const double d = fabs(x - y);
    if (d > s.max_asym) {
      s.max_asym = d;
      s.asym_at = i * n + j;
    }
    const double h = 0.5 * (x + y);
    s.fro2 += h * h;
  }
  eigh_scan_block_reduce(s, part + blockIdx.x);
}

static __global__ void eigh_scan_final_kernel(eigh_scan_device* __restrict part, std::int64_t blocks, std::int64_t n) {
  eigh_scan_device s{0.0, 0.0, 0.0, n * n, n * n, 0.0};
  for (std::int64_t b = threadIdx.x; b < blocks; b += eigh_threads) eigh_scan_merge(s, part[b]);
  eigh_scan_block_reduce(s, part + blocks);
}

// ------------------------------------------------------------------------------------------------ set-up

template <class T>
__global__ void eigh_init_kernel(const T* __restrict a, std::int64_t lda, std::int64_t n, std::int64_t np,
                                 T* __restrict aw, T* __restrict vt) {
  const std::int64_t total = np * np;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = e / np, j = e % np;
    T v = T(0);
    if (i < n && j < n)
      v = static_cast<T>(0.5 * (static_cast<double>(a[i * lda + j]) + static_cast<double>(a[j * lda + i])));
    aw[e] = v;
    vt[e] = i == j ? T(1) : T(0);
  }
}

// ------------------------------------------------------------------------------------------------ one step

//! Dynamic shared memory of eigh_pair_kernel<B2>: three [B2, B2 + 1] f64 matrices.
template <int B2>
constexpr std::size_t eigh_pair_smem() {
  return 3 * static_cast<std::size_t>(B2) * (B2 + 1) * sizeof(double);
}

template <class T, int B2>
__global__ void __launch_bounds__(eigh_threads)
    eigh_pair_kernel(T* __restrict aw, std::int64_t np, T* __restrict jt, int* __restrict rot,
                     unsigned long long* __restrict count, int m, int step, double tol, double floor_, int max_inner) {
  constexpr int LD = B2 + 1, H = B2 / 2, b = B2 / 2;
  extern __shared__ double smem_pair[];
  double* S = smem_pair;    // [B2][LD] subproblem
  double* J = S + B2 * LD;  // [B2][LD] accumulated rotation
  double* E = J + B2 * LD;  // [B2][LD] scratch (re-orthogonalisation)
  __shared__ double cs[H], sn[H], dp[H], dq[H];
  __shared__ int pp[H], qq[H], on[H];
  __shared__ std::int64_t gidx[B2];

  const int pair = blockIdx.x, tid = threadIdx.x;
  int lo, hi;
  round_robin_pair(m, step, pair, lo, hi);
  if (tid < B2) gidx[tid] = jacobi_index(lo, hi, b, tid);
  __syncthreads();
  for (int e = tid; e < B2 * B2; e += eigh_threads) {
    const int i = e / B2, j = e % B2;
    S[i * LD + j] = static_cast<double>(aw[gidx[i] * np + gidx[j]]);
    J[i * LD + j] = i == j ? 1.0 : 0.0;
  }
  __syncthreads();

  int total = 0;
  for (int sweep = 0; sweep < max_inner; ++sweep) {
    int in_sweep = 0;
    for (int r = 0; r < B2 - 1; ++r) {
      bool mine = false;
      if (tid < H) {
        int p, q;
        round_robin_pair(B2, r, tid, p, q);
        pp[tid] = p;
        qq[tid] = q;
        const double app = S[p * LD + p], aqq = S[q * LD + q], apq = S[p * LD + q];
        mine = jacobi_needs_rotation(app, aqq, apq, tol, floor_);
        on[tid] = mine ? 1 : 0;
        if (mine) {
          double c, s;
          const double t = jacobi_rotation(app, aqq, apq, c, s);
          cs[tid] = c;
          sn[tid] = s;
          dp[tid] = app - t * apq;
          dq[tid] = aqq + t * apq;
        }
      }
      const int n_on = __syncthreads_count(mine);
      in_sweep += n_on;
      if (n_on == 0) continue;
      // S <- Rᵀ S R by 2 x 2 blocks (rows of pair k1, columns of pair k2), J <- J R by column pairs: one phase
      for (int e = tid; e < H * H + B2 * H; e += eigh_threads) {
        if (e < H * H) {
          const int k1 = e / H, k2 = e % H;
          if (!on[k1] && !on[k2]) continue;
          if (k1 == k2) {
            const int p = pp[k1], q = qq[k1];
            S[p * LD + p] = dp[k1];
            S[q * LD + q] = dq[k1];
            S[p * LD + q] = 0.0;
            S[q * LD + p] = 0.0;
            continue;
          }
          jacobi_block_update(S, LD, pp[k1], qq[k1], pp[k2], qq[k2], on[k1] != 0, cs[k1], sn[k1], on[k2] != 0, cs[k2],
                              sn[k2]);
        } else {
          const int e2 = e - H * H, k = e2 / B2, i = e2 % B2;
          if (!on[k]) continue;
          const int p = pp[k], q = qq[k];
          const double c = cs[k], s = sn[k];
          double* ji = J + i * LD;
          const double u = ji[p], v = ji[q];
          ji[p] = c * u - s * v;
          ji[q] = s * u + c * v;
        }
      }
      __syncthreads();
    }
    total += in_sweep;
    if (in_sweep == 0) break;
  }
  if (tid == 0) {
    rot[pair] = total;
    if (total) atomicAdd(count, static_cast<unsigned long long>(total));
  }
  if (total == 0) return;  // uniform across the block: A[P, P] and J_P = I stay as they are

  // A[P, P] <- S; E = JᵀJ - I; J <- J - J E / 2 (into S), stored as J_P in T.
  for (int e = tid; e < B2 * B2; e += eigh_threads) {
    const int i = e / B2, j = e % B2;
    aw[gidx[i] * np + gidx[j]] = static_cast<T>(S[i * LD + j]);
    double acc = i == j ? -1.0 : 0.0;
    for (int k = 0; k < B2; ++k) acc += J[k * LD + i] * J[k * LD + j];
    E[i * LD + j] = acc;
  }
  __syncthreads();
  T* jout = jt + static_cast<std::int64_t>(pair) * B2 * B2;
  for (int e = tid; e < B2 * B2; e += eigh_threads) {
    const int i = e / B2, j = e % B2;
    double acc = 0.0;
    for (int k = 0; k < B2; ++k) acc += J[i * LD + k] * E[k * LD + j];
    jout[e] = static_cast<T>(J[i * LD + j] - 0.5 * acc);
  }
}

//! Dynamic shared memory of eigh_update_kernel<T, B2>: three [B2, B2 + 1] matrices of T.
template <class T, int B2>
constexpr std::size_t eigh_update_smem() {
  return 3 * static_cast<std::size_t>(B2) * (B2 + 1) * sizeof(T);
}

//! out = L * R over [B2, B2] shared tiles, L(i, k) = l[i * li + k * lk], R(k, j) = r[k * LD + j]; 16 x 16 threads,
//! each owning the outputs (ty + 16u, tx + 16v).
template <class T, int B2>
__device__ inline void eigh_tile_mm(const T* l, int li, int lk, const T* r, T* out) {
  constexpr int LD = B2 + 1, U = B2 / 16;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  T acc[U][U];
#pragma unroll
  for (int u = 0; u < U; ++u)
#pragma unroll
    for (int v = 0; v < U; ++v) acc[u][v] = T(0);
#pragma unroll 4
  for (int k = 0; k < B2; ++k) {
    T lv[U], rv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) lv[u] = l[(ty + 16 * u) * li + k * lk];
#pragma unroll
    for (int v = 0; v < U; ++v) rv[v] = r[k * LD + tx + 16 * v];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int v = 0; v < U; ++v) acc[u][v] = fma(lv[u], rv[v], acc[u][v]);
  }
#pragma unroll
  for (int u = 0; u < U; ++u)
#pragma unroll
    for (int v = 0; v < U; ++v) out[(ty + 16 * u) * LD + tx + 16 * v] = acc[u][v];
}

template <class T, int B2>
__global__ void __launch_bounds__(eigh_threads)
    eigh_update_kernel(T* __restrict aw, T* __restrict vt, std::int64_t np, const T* __restrict jt,
                       const int* __restrict rot, int m, int step) {
  constexpr int LD = B2 + 1, b = B2 / 2;
  extern __shared__ __align__(16) unsigned char smem_update[];
  T* X = reinterpret_cast<T*>(smem_update);  // [B2][LD]
  T* Jb = X + B2 * LD;                       // [B2][LD]
  T* Y = Jb + B2 * LD;                       // [B2][LD]
  __shared__ std::int64_t gp[B2], gq[B2];

  const int pairs = m / 2, tid = threadIdx.x;
  const std::int64_t id = blockIdx.x;
  const std::int64_t a_tiles = static_cast<std::int64_t>(pairs) * pairs;
  int P, Q = -1;
  std::int64_t c0 = 0;
  if (id < a_tiles) {
    P = static_cast<int>(id / pairs);
    Q = static_cast<int>(id % pairs);
    if (P >= Q || (!rot[P] && !rot[Q])) return;
  } else {
    const std::int64_t v = id - a_tiles, chunks = np / B2;
    P = static_cast<int>(v / chunks);
    c0 = (v % chunks) * B2;
    if (!rot[P]) return;
  }
  int lp, hp;
  round_robin_pair(m, step, P, lp, hp);
  if (tid < B2) gp[tid] = jacobi_index(lp, hp, b, tid);
  if (Q >= 0) {
    int lq, hq;
    round_robin_pair(m, step, Q, lq, hq);
    if (tid < B2) gq[tid] = jacobi_index(lq, hq, b, tid);
  } else if (tid < B2) {
    gq[tid] = c0 + tid;
  }
  __syncthreads();
  T* base = Q >= 0 ? aw : vt;
  for (int e = tid; e < B2 * B2; e += eigh_threads) {
    const int i = e / B2, j = e % B2;
    X[i * LD + j] = base[gp[i] * np + gq[j]];
  }
  const T* cur = X;
  if (rot[P]) {
    const T* jp = jt + static_cast<std::int64_t>(P) * B2 * B2;
    for (int e = tid; e < B2 * B2; e += eigh_threads) Jb[(e / B2) * LD + e % B2] = jp[e];
    __syncthreads();
    eigh_tile_mm<T, B2>(Jb, 1, LD, X, Y);  // Y = J_Pᵀ X
    cur = Y;
    __syncthreads();
  }
  if (Q >= 0 && rot[Q]) {
    const T* jq = jt + static_cast<std::int64_t>(Q) * B2 * B2;
    for (int e = tid; e < B2 * B2; e += eigh_threads) Jb[(e / B2) * LD + e % B2] = jq[e];
    __syncthreads();
    T* dst = cur == X ? Y : X;
    eigh_tile_mm<T, B2>(cur, LD, 1, Jb, dst);  // dst = cur J_Q
    cur = dst;
  }
  __syncthreads();
  for (int e = tid; e < B2 * B2; e += eigh_threads) {
    const int i = e / B2, j = e % B2;
    base[gp[i] * np + gq[j]] = cur[i * LD + j];
  }
  if (Q >= 0)
    for (int e = tid; e < B2 * B2; e += eigh_threads) {
      const int i = e / B2, j = e % B2;  // A[Q, P](i, j) = tile(j, i)
      aw[gq[i] * np + gp[j]] = cur[j * LD + i];
    }
}

// ------------------------------------------------------------------------------------------------ output

template <class T>
__global__ void eigh_rank_kernel(const T* __restrict aw, std::int64_t np, std::int64_t n, T* __restrict w,
                                 int* __restrict rank) {
  __shared__ T lam[eigh_threads];
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(eigh_threads) + threadIdx.x;
  const T li = i < n ? aw[i * np + i] : T(0);
  std::int64_t r = 0;
  for (std::int64_t j0 = 0; j0 < n; j0 += eigh_threads) {
    __syncthreads();
    if (j0 + threadIdx.x < n) lam[threadIdx.x] = aw[(j0 + threadIdx.x) * np + j0 + threadIdx.x];
    __syncthreads();
    const std::int64_t cnt = n - j0 < eigh_threads ? n - j0 : eigh_threads;
    for (std::int64_t jj = 0; jj < cnt; ++jj) {
      const T lj = lam[jj];
      r += (lj > li || (lj == li && j0 + jj < i)) ? 1 : 0;
    }
  }
  if (i < n) {
    w[r] = li;
    rank[i] = static_cast<int>(r);
  }
}

template <class T>
__global__ void eigh_gather_kernel(const T* __restrict vt, std::int64_t np, std::int64_t n, const int* __restrict rank,
                                   T* __restrict q, std::int64_t ldq) {
  __shared__ T tile[32][33];
  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.y) * 32, r0 = static_cast<std::int64_t>(blockIdx.x) * 32;
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;  // 32 x 8 threads
  for (int k = ty; k < 32; k += 8)
    if (i0 + k < n && r0 + tx < n) tile[k][tx] = vt[(i0 + k) * np + r0 + tx];  // eigenvector i0+k, entry r0+tx
  __syncthreads();
  for (int k = ty; k < 32; k += 8)
    if (r0 + k < n && i0 + tx < n) q[(r0 + k) * ldq + rank[i0 + tx]] = tile[tx][k];
}

// ------------------------------------------------------------------------------------------------ driver

template <class T>
std::size_t eigh_cuda_workspace_bytes(cuda_t, std::int64_t n, const eigh_options& options) {
  return eigh_cuda_workspace_bytes_host<T>(n, options);
}

template <class T, int B2>
eigh_info eigh_cuda_sweeps(cudaStream_t st, const jacobi_shape& sh, const eigh_cuda_buffers<T>& buf, double tol,
                           double floor_, const eigh_options& options) {
  const std::size_t pair_smem = eigh_pair_smem<B2>(), upd_smem = eigh_update_smem<T, B2>();
  if (pair_smem > 48 * 1024)
    FRUGAL_CUDA_CHECK(cudaFuncSetAttribute(eigh_pair_kernel<T, B2>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(pair_smem)),
                      "eigh");
  if (upd_smem > 48 * 1024)
    FRUGAL_CUDA_CHECK(cudaFuncSetAttribute(eigh_update_kernel<T, B2>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(upd_smem)),
                      "eigh");
  const std::int64_t upd_blocks =
      static_cast<std::int64_t>(sh.pairs) * sh.pairs + static_cast<std::int64_t>(sh.pairs) * (sh.n_pad / B2);
  eigh_info info{};
  unsigned long long last = 0;
  for (int sweep = 1; sweep <= options.max_sweeps; ++sweep) {
    FRUGAL_CUDA_CHECK(cudaMemsetAsync(buf.count, 0, sizeof(unsigned long long), st), "eigh");
    for (int step = 0; step < sh.m - 1; ++step) {
      eigh_pair_kernel<T, B2><<<sh.pairs, eigh_threads, pair_smem, st>>>(
          buf.a, sh.n_pad, buf.jt, buf.rot, buf.count, sh.m, step, tol, floor_, options.max_inner_sweeps);
      check_launch("eigh", "eigh_pair_kernel");
      eigh_update_kernel<T, B2><<<static_cast<unsigned>(upd_blocks), eigh_threads, upd_smem, st>>>(
          buf.a, buf.vt, sh.n_pad, buf.jt, buf.rot, sh.m, step);
      check_launch("eigh", "eigh_update_kernel");
    }
    FRUGAL_CUDA_CHECK(cudaMemcpyAsync(&last, buf.count, sizeof(last), cudaMemcpyDeviceToHost, st), "eigh");
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "eigh");
    info.sweeps = sweep;
    info.rotations += static_cast<std::int64_t>(last);
    if (last == 0) return info;
  }
  fail("eigh", "Jacobi did not converge in max_sweeps (=", options.max_sweeps, ") sweeps for n=", sh.n,
       "; the last sweep still applied ", last, " rotations");
}

template <class T>
eigh_info eigh_cuda(cuda_t tag, matrix_view<const T> a, T* w, matrix_view<T> q, workspace ws,
                    const eigh_options& options) {
  const std::int64_t n = a.rows;
  if (n == 0) return {};
  cudaStream_t st = tag.stream;
  const auto sh = make_jacobi_shape(n, eigh_cuda_block_size(n, options.block_size));
  workspace_carver carver(ws);
  const auto buf = eigh_cuda_buffers<T>::carve(carver, sh);
  carver.check("eigh");

  // 1. input checks (before anything is written to w or q)
  const std::int64_t nb = eigh_cuda_buffers<T>::scan_blocks(n);
  eigh_scan_kernel<T><<<static_cast<unsigned>(nb), eigh_threads, 0, st>>>(a.data, a.ld, n, buf.scan);
  check_launch("eigh", "eigh_scan_kernel");
  eigh_scan_final_kernel<<<1, eigh_threads, 0, st>>>(buf.scan, nb, n);
  check_launch("eigh", "eigh_scan_final_kernel");
  eigh_scan_device sc{};
  FRUGAL_CUDA_CHECK(cudaMemcpyAsync(&sc, buf.scan + nb, sizeof(sc), cudaMemcpyDeviceToHost, st), "eigh");
  FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "eigh");
  eigh_scan hs;
  hs.fro = std::sqrt(sc.fro2);
  hs.max_abs = sc.max_abs;
  hs.max_asym = sc.max_asym;
  hs.asym_at = sc.asym_at;
  hs.nonfinite_at = sc.nonfinite_at < n * n ? sc.nonfinite_at : -1;
  eigh_check_values<T>(hs, n, eigh_symmetry_tolerance<T>(options), sc.bad_value);

  // 2. working copy, sweeps
  const std::int64_t total = sh.n_pad * sh.n_pad;
  const unsigned init_blocks = static_cast<unsigned>(std::min<std::int64_t>((total + 255) / 256, 4096));
  eigh_init_kernel<T><<<init_blocks, 256, 0, st>>>(a.data, a.ld, n, sh.n_pad, buf.a, buf.vt);
  check_launch("eigh", "eigh_init_kernel");
  const double eps = dtype_traits<T>::eps;
  const double tol = eps, floor_ = eps * hs.fro / static_cast<double>(n);
  const eigh_info info = sh.b2 == 32 ? eigh_cuda_sweeps<T, 32>(st, sh, buf, tol, floor_, options)
                                     : eigh_cuda_sweeps<T, 64>(st, sh, buf, tol, floor_, options);

  // 3. eigenvalues descending, eigenvectors as columns of q
  eigh_rank_kernel<T><<<static_cast<unsigned>((n + eigh_threads - 1) / eigh_threads), eigh_threads, 0, st>>>(
      buf.a, sh.n_pad, n, w, buf.rank);
  check_launch("eigh", "eigh_rank_kernel");
  const dim3 grid(static_cast<unsigned>((n + 31) / 32), static_cast<unsigned>((n + 31) / 32));
  eigh_gather_kernel<T><<<grid, 256, 0, st>>>(buf.vt, sh.n_pad, n, buf.rank, q.data, q.ld);
  check_launch("eigh", "eigh_gather_kernel");
  return info;
}

}  // namespace detail
FRUGAL_NAMESPACE_END
