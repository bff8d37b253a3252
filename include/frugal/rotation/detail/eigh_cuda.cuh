// frugal/rotation/detail/eigh_cuda.cuh — CUDA two-sided block Jacobi eigensolver (nvcc only).
// Private: include <frugal/rotation/eigh.hpp> from a .cu file. Same algorithm, ordering, thresholds and precision
// as detail/eigh_cpu.hpp (the reference); see rotation/eigh.hpp for the description.
//
// Kernels, per solve:
//   eigh_scan_kernel / eigh_scan_final_kernel   input checks and ||A||_F (deterministic two-level reduction)
//   eigh_init_kernel                            working copy (A + Aᵀ)/2, zero padded; Vᵀ = I
//   per step of a sweep (b = 32; b = 16 runs one eigh_step32_kernel per step, programmatic dependent launches):
//     eigh_pair_kernel<B2>    one block per pair P: one scalar Jacobi sweep (f64, shared memory) on A[P, P] (all its
//                             pairs at a sweep's step 0, the pairs across its two blocks at the other steps) —
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
#include <cstdlib>
#include <type_traits>

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
                     unsigned long long* __restrict count, int m, int step, double tol, double floor_, int max_inner,
                     bool cross) {
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
    // cross: only the pairs across the two blocks (cross_pair)
    for (int r = 0; r < (cross ? H : B2 - 1); ++r) {
      bool mine = false;
      if (tid < H) {
        int p, q;
        if (cross)
          cross_pair(H, r, tid, p, q);
        else
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

// ------------------------------------------------------------------------------------------------ one step, b = 16

// The 32 x 32 subproblems (b = 16, max_inner_sweeps = 1) are solved by eigh_step32_kernel: 8 warps, one lane per
// column, instead of eigh_pair_kernel's 256 threads over 2 x 2 blocks with two block barriers per round (measured on
// the H100 at n = 768 f32: eigh_pair_kernel took 52 of a step's 67 us under ncu). To keep every register index
// static, the warps work in *position* order: in round r, positions 2k and 2k+1 hold pair k of the round-robin
// schedule (the same pairs, in the same rounds, as round_robin_pair(32, r, k)), so the row rotation of a column pairs
// fixed registers; between rounds the players move by a fixed permutation (sigma, the circle method's rotation),
// applied when a thread stores its part of the new column (and of J_P's rows) for the next round.

//! Player (local index 0..31) at position j in round r: pair k of round r is positions (2k, 2k+1).
FRUGAL_HOST_DEVICE constexpr int eigh32_player(int r, int j) {
  const int k = j / 2;
  if (j % 2 == 0) return (k + r) % 31;
  return k == 0 ? 31 : (r - k + 31) % 31;
}
//! Position of player x in round 0 (the inverse of eigh32_player(0, .)).
FRUGAL_HOST_DEVICE constexpr int eigh32_pos0(int x) {
  return x == 31 ? 1 : x < 16 ? 2 * x : 2 * (31 - x) + 1;
}
//! Position in round r of the player that is at position j in round r + 1.
FRUGAL_HOST_DEVICE constexpr int eigh32_sigma(int j) {
  return j == 1 ? 1 : j == 30 ? 31 : j % 2 == 0 ? j + 2 : j == 3 ? 0 : j - 2;
}
//! Inverse of eigh32_sigma: position in round r + 1 of the player at position j in round r.
FRUGAL_HOST_DEVICE constexpr int eigh32_sigma_inv(int j) {
  return j == 1 ? 1 : j == 31 ? 30 : j == 0 ? 3 : j % 2 == 0 ? j - 2 : j + 2;
}
constexpr bool eigh32_layout_ok() {
  for (int r = 0; r <= 31; ++r)
    for (int j = 0; j < 32; ++j) {
      if (eigh32_sigma(eigh32_sigma_inv(j)) != j) return false;
      if (eigh32_player(r + 1, j) != eigh32_player(r, eigh32_sigma(j))) return false;
      if (j % 2 == 0 && r < 31) {
        int lo = 0, hi = 0;
        const int k = j / 2, a = eigh32_player(r, j), b = eigh32_player(r, j + 1);
        if (k == 0) {
          lo = r, hi = 31;
        } else {
          lo = (r + k) % 31, hi = (r - k + 31) % 31;
        }
        if ((a != lo || b != hi) && (a != hi || b != lo)) return false;
      }
    }
  for (int j = 0; j < 32; ++j) {
    if (eigh32_player(31, j) != eigh32_player(0, j)) return false;  // a sweep returns every player to its place
    if (eigh32_pos0(eigh32_player(0, j)) != j) return false;
  }
  return true;
}
static_assert(eigh32_layout_ok(), "eigh32 position layout must follow round_robin_pair(32, r, k)");

// The two orderings of a step's subproblem solve (eigh_step32_kernel's template parameter Cross):
// - full (step 0 of every sweep): one cyclic sweep over all 496 pairs of the 32 players, 31 rounds (the layout above);
// - cross (the other steps): only the 256 pairs (i, j), i in block lo (players 0..15), j in block hi (16..31), in 16
//   rounds: pair k of round r is (k, 16 + (k + r) mod 16), at positions 2k (fixed) and 2k + 1 (moving one pair down
//   per round). The pairs inside a block are rotated by step 0, where every block is in a pair, so a sweep still
//   visits every pair (p, q) of the matrix exactly once — a cyclic Jacobi sweep in a parallel order — instead of
//   revisiting the pairs inside each block in each of its m − 1 steps; the step's chain of dependent rounds falls
//   from 31 to 16.
template <bool Cross>
struct eigh32_order {
  static constexpr int rounds = 31;
  FRUGAL_HOST_DEVICE static constexpr int player0(int j) { return eigh32_player(0, j); }
  FRUGAL_HOST_DEVICE static constexpr int pos0(int x) { return eigh32_pos0(x); }
  //! Position in round r + 1 of the player at position j in round r.
  FRUGAL_HOST_DEVICE static constexpr int next(int j) { return eigh32_sigma_inv(j); }
};
template <>
struct eigh32_order<true> {
  static constexpr int rounds = 16;
  FRUGAL_HOST_DEVICE static constexpr int player(int r, int j) {  // cross_pair(16, r, j / 2) at positions j, j + 1
    return j % 2 == 0 ? j / 2 : 16 + (j / 2 + r) % 16;
  }
  FRUGAL_HOST_DEVICE static constexpr int player0(int j) { return player(0, j); }
  FRUGAL_HOST_DEVICE static constexpr int pos0(int x) { return x < 16 ? 2 * x : 2 * (x - 16) + 1; }
  FRUGAL_HOST_DEVICE static constexpr int next(int j) { return j % 2 == 0 ? j : j == 1 ? 31 : j - 2; }
};
constexpr bool eigh32_cross_layout_ok() {
  using O = eigh32_order<true>;
  bool met[16][16] = {};
  for (int r = 0; r < O::rounds; ++r)
    for (int j = 0; j < 32; ++j) {
      if (O::player(r + 1, O::next(j)) != O::player(r, j)) return false;
      if (j % 2 == 0) {
        const int a = O::player(r, j), b = O::player(r, j + 1);
        if (a >= 16 || b < 16 || met[a][b - 16]) return false;
        met[a][b - 16] = true;
      }
    }
  for (int j = 0; j < 32; ++j) {
    if (O::player(O::rounds, j) != O::player0(j)) return false;  // the last round's store returns every player
    if (O::pos0(O::player0(j)) != j) return false;
  }
  return true;  // (met: 16 rounds x 16 distinct pairs, so all 256 cross pairs)
}
static_assert(eigh32_cross_layout_ok(), "eigh32 cross layout must visit every (lo, hi) pair once");

//! Threads of eigh_step32_kernel: 8 warps, each solving 4 rows of every column of a subproblem.
inline constexpr int eigh_step32_threads = 256;
//! [32, 32] products by eigh_step32_threads threads: thread (ty, tx) = (tid / eigh32_tx, tid % eigh32_tx) owns the
//! outputs (ty + 16u, tx + eigh32_tx·v), u < 2, v < eigh32_vn (v < eigh32_vh in a [16, 16] product).
inline constexpr int eigh32_tx = eigh_step32_threads / 16;
inline constexpr int eigh32_vn = 32 / eigh32_tx;
inline constexpr int eigh32_vh = 16 / eigh32_tx;

//! Column chunks of Vᵀ (32 columns each) that one eigh_step32_kernel block updates (n = 768: 144 blocks, so that
//! the 24 solves, 300 A tiles and the Vᵀ blocks fit one wave at 4 blocks per SM).
inline constexpr int eigh_v_chunks_per_block = 4;

//! Blocks of eigh_step32_kernel that update Vᵀ: per pair, ceil(chunks / eigh_v_chunks_per_block).
inline std::int64_t eigh_v_blocks32(const jacobi_shape& sh) {
  const std::int64_t chunks = sh.n_pad / 32;
  return sh.pairs * ((chunks + eigh_v_chunks_per_block - 1) / eigh_v_chunks_per_block);
}

//! acc(u, v) += Σ_k L(ty + 16u, k) R(k, tx + eigh32_tx·v) over [32, 32] shared tiles, L(i, k) = l[i * li + k * lk],
//! R(k, j) = r[k * 33 + j]; eigh_step32_threads threads (see eigh32_tx).
template <class T>
__device__ inline void eigh_mm32(const T* l, int li, int lk, const T* r, T (&acc)[2][eigh32_vn]) {
  const int tx = threadIdx.x % eigh32_tx, ty = threadIdx.x / eigh32_tx;
#pragma unroll 4
  for (int k = 0; k < 32; ++k) {
    T lv[2], rv[eigh32_vn];
#pragma unroll
    for (int u = 0; u < 2; ++u) lv[u] = l[(ty + 16 * u) * li + k * lk];
#pragma unroll
    for (int v = 0; v < eigh32_vn; ++v) rv[v] = r[k * 33 + tx + eigh32_tx * v];
#pragma unroll
    for (int u = 0; u < 2; ++u)
#pragma unroll
      for (int v = 0; v < eigh32_vn; ++v) acc[u][v] = fma(lv[u], rv[v], acc[u][v]);
  }
}

//! Vᵀ[P, cols] <- J_Pᵀ Vᵀ[P, cols] for block `g` of the Vᵀ update of a b = 16 step (pair P, up to
//! eigh_v_chunks_per_block chunks of 32 columns), by the threads of an eigh_step32_kernel block; smem holds two
//! [32, 33] tiles of T.
template <class T>
__device__ inline void eigh_v_tiles32(T* __restrict vt, std::int64_t np, const T* __restrict jt,
                                      const int* __restrict rot, int m, int step, std::int64_t g, T* smem) {
  constexpr int B2 = 32, LD = 33, b = 16;
  const std::int64_t chunks = np / B2, per_pair = (chunks + eigh_v_chunks_per_block - 1) / eigh_v_chunks_per_block;
  const int P = static_cast<int>(g / per_pair);
  const std::int64_t ch0 = (g % per_pair) * eigh_v_chunks_per_block;
  if (step < 0 || !rot[P]) return;
  int lp, hp;
  round_robin_pair(m, step, P, lp, hp);
  T* X = smem;          // [32][LD] rows of Vᵀ
  T* JP = X + B2 * LD;  // [32][LD]
  const T* jp = jt + static_cast<std::int64_t>(P) * B2 * B2;
  const int tid = threadIdx.x, tx = tid % eigh32_tx, ty = tid / eigh32_tx;  // outputs (ty + 16u, tx + eigh32_tx·v)
  for (int e = tid; e < B2 * B2; e += eigh_step32_threads) JP[(e / B2) * LD + e % B2] = jp[e];
  for (std::int64_t ch = ch0; ch < ch0 + eigh_v_chunks_per_block && ch < chunks; ++ch) {
    const std::int64_t c0 = ch * B2;
    for (int e = tid; e < B2 * B2; e += eigh_step32_threads) {
      const int i = e / B2, j = e % B2;
      X[i * LD + j] = vt[jacobi_index(lp, hp, b, i) * np + c0 + j];
    }
    __syncthreads();
    T acc[2][eigh32_vn] = {};
    eigh_mm32(JP, 1, LD, X, acc);  // J_Pᵀ X
#pragma unroll
    for (int u = 0; u < 2; ++u)
#pragma unroll
      for (int v = 0; v < eigh32_vn; ++v)
        vt[jacobi_index(lp, hp, b, ty + 16 * u) * np + c0 + tx + eigh32_tx * v] = acc[u][v];
    __syncthreads();  // X is reloaded for the next chunk
  }
}

//! Pair index k and local offset (0: block `lo` of the pair, b: block `hi`) of block x in round r of the
//! round-robin schedule of m blocks (the inverse of round_robin_pair).
FRUGAL_HOST_DEVICE inline void round_robin_find(int m, int r, int x, int b, int& k, int& base) {
  const int mm = m - 1;
  if (x == mm || x == r % mm) {
    k = 0;
  } else {
    const int d = ((x - r) % mm + mm) % mm;  // x = (r + k) mod (m - 1) or (r - k) mod (m - 1)
    k = d <= (m - 2) / 2 ? d : mm - d;
  }
  int lo, hi;
  round_robin_pair(m, r, k, lo, hi);
  base = x == lo ? 0 : b;
}

//! Loads J_P of pair P (identity when the pair did not rotate: its jt entry is stale) into a [32, 33] tile.
template <class T>
__device__ inline void eigh_load_j32(const T* __restrict jt, const int* __restrict rot, int P, T* dst) {
  const T* j = jt + static_cast<std::int64_t>(P) * 32 * 32;
  const bool r = rot != nullptr && rot[P] != 0;
  for (int e = threadIdx.x; e < 32 * 32; e += eigh_step32_threads)
    dst[(e / 32) * 33 + e % 32] = r ? j[e] : (e / 32 == e % 32 ? T(1) : T(0));
}

//! Tile (P, Q), P <= Q, of the previous step's pairing of X_g = J_prevᵀ X_{g-1} J_prev into `out`: diagonal tiles
//! are the previous solves' results (or X_{g-1}[P, P] where the pair did not rotate), the others J_Pᵀ X J_Q and
//! their transposes. With prev_step < 0 (the first step) `out` becomes a copy of `in`. smem: four [32, 33] tiles.
template <class T>
__device__ inline void eigh_a_tile32(const T* __restrict in, T* __restrict out, std::int64_t np, const T* __restrict jt,
                                     const int* __restrict rot, const T* __restrict sp, int m, int prev_step,
                                     std::int64_t tile, T* smem) {
  constexpr int B2 = 32, LD = 33, b = 16;
  const int pairs = m / 2, tid = threadIdx.x, tx = tid % eigh32_tx, ty = tid / eigh32_tx;
  int P = 0;
  while (tile >= pairs - P) tile -= pairs - P++;  // row P of the upper triangle (with the diagonal): pairs - P tiles
  const int Q = P + static_cast<int>(tile);
  const int r = prev_step < 0 ? 0 : prev_step;
  if (prev_step < 0) rot = nullptr;
  int lp, hp, lq, hq;
  round_robin_pair(m, r, P, lp, hp);
  round_robin_pair(m, r, Q, lq, hq);
  if (P == Q) {
    const bool from_solve = rot != nullptr && rot[P] != 0;
    const T* spp = sp + static_cast<std::int64_t>(P) * B2 * B2;
    for (int e = tid; e < B2 * B2; e += eigh_step32_threads) {
      const std::int64_t at = jacobi_index(lp, hp, b, e / B2) * np + jacobi_index(lp, hp, b, e % B2);
      out[at] = from_solve ? spp[e] : in[at];
    }
    return;
  }
  if (rot == nullptr || (!rot[P] && !rot[Q])) {  // J_P = J_Q = I: the product would be a copy
    for (int e = tid; e < B2 * B2; e += eigh_step32_threads) {
      const std::int64_t gi = jacobi_index(lp, hp, b, e / B2), gj = jacobi_index(lq, hq, b, e % B2);
      const T x = in[gi * np + gj];
      out[gi * np + gj] = x;
      out[gj * np + gi] = x;
    }
    return;
  }
  T* X = smem;
  T* JP = X + B2 * LD;
  T* JQ = JP + B2 * LD;
  T* Y = JQ + B2 * LD;
  for (int e = tid; e < B2 * B2; e += eigh_step32_threads) {
    const int i = e / B2, j = e % B2;
    X[i * LD + j] = in[jacobi_index(lp, hp, b, i) * np + jacobi_index(lq, hq, b, j)];
  }
  eigh_load_j32(jt, rot, P, JP);
  eigh_load_j32(jt, rot, Q, JQ);
  __syncthreads();
  T acc[2][eigh32_vn] = {};
  eigh_mm32(JP, 1, LD, X, acc);  // Y = J_Pᵀ X
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int v = 0; v < eigh32_vn; ++v) Y[(ty + 16 * u) * LD + tx + eigh32_tx * v] = acc[u][v];
  __syncthreads();
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int v = 0; v < eigh32_vn; ++v) acc[u][v] = T(0);
  eigh_mm32(Y, LD, 1, JQ, acc);  // Y J_Q
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int v = 0; v < eigh32_vn; ++v) {
      const std::int64_t gi = jacobi_index(lp, hp, b, ty + 16 * u), gj = jacobi_index(lq, hq, b, tx + eigh32_tx * v);
      out[gi * np + gj] = acc[u][v];
      out[gj * np + gi] = acc[u][v];
    }
}

//! Blocks of eigh_step32_kernel: the solves, the tiles of A (upper, with the diagonal), the Vᵀ chunks.
inline std::int64_t eigh_a_blocks32(const jacobi_shape& sh) {
  return static_cast<std::int64_t>(sh.pairs) * (sh.pairs + 1) / 2;
}

// One launch per step g (pairing `step`) of the b = 16 path: blocks [0, pairs) solve the step's subproblems, the next
// eigh_a_blocks32 blocks materialise X_g = J_{g-1}ᵀ X_{g-1} J_{g-1} (the previous step's update of A) from `in`
// into `out`, the rest update Vᵀ by J_{g-1}. A solve does not wait for X_g: it forms its subproblem X_g[P, P] itself
// from X_{g-1}, J_{g-1} and the previous solves' results. So a step costs one launch, and the update of A and Vᵀ
// runs beside the solves. step < 0: no solves (the flush after the last step); prev_step < 0: no previous step
// (`out` becomes a copy of `in`; the solves read `in`).
template <class T, class W, bool Cross>
__global__ void __launch_bounds__(eigh_step32_threads)
    eigh_step32_kernel(const T* __restrict in, T* __restrict out, T* __restrict vt, std::int64_t np, T* __restrict jt,
                       int* __restrict rot, T* __restrict sp, const T* __restrict jt_prev,
                       const int* __restrict rot_prev, const T* __restrict sp_prev,
                       unsigned long long* __restrict count, int m, int step, int prev_step, double tol,
                       double floor_) {
  // W: the subproblem's precision (see eigh_f64_subproblems). LD = 33: a warp's accesses to one element of 32
  // different slots are free of bank conflicts for 32- and 64-bit words.
  using O = eigh32_order<Cross>;
  constexpr int B2 = 32, b = 16, LD = 33, R = O::rounds;
  __shared__ W tiles[4][B2 * LD];
  W(*S)[B2 * LD] = tiles;       // S[buf][slot j * LD + k] = S(position k, position j) of the current round
  W(*Jb)[B2 * LD] = tiles + 2;  // Jb[buf][i * LD + j] = J_P(player i, player at position j) of the current round
  __shared__ int total_sh;
  static_assert(sizeof(W) >= sizeof(T), "the A and Vᵀ tiles' scratch (four [32, 33] tiles of T) lives in `tiles`");

  const int pairs = m / 2, tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const std::int64_t a_blocks = static_cast<std::int64_t>(pairs) * (pairs + 1) / 2;
  T* scratch = reinterpret_cast<T*>(&tiles[0][0]);
  // Launched as a programmatic dependent of the previous step (sm_90): the next step's blocks may be scheduled as
  // soon as every block of this one has started; every block waits here until the previous step has completed and
  // its writes (A, J, solves, rotation counts) are visible. Nothing is read or written in global memory before.
  trigger_dependents();
  grid_dependency_wait();
  if (blockIdx.x >= pairs + a_blocks) {
    eigh_v_tiles32(vt, np, jt_prev, rot_prev, m, prev_step, blockIdx.x - pairs - a_blocks, scratch);
    return;
  }
  if (blockIdx.x >= pairs) {
    eigh_a_tile32(in, out, np, jt_prev, rot_prev, sp_prev, m, prev_step, blockIdx.x - pairs, scratch);
    return;
  }
  if (step < 0) return;
  const int pair = blockIdx.x;
  int lo, hi;
  round_robin_pair(m, step, pair, lo, hi);
  if (prev_step < 0) {
    for (int e = tid; e < B2 * B2; e += eigh_step32_threads) {
      const int k = e / B2, j = e % B2;  // a warp reads one row: row of position k, columns of positions j
      S[0][j * LD + k] =
          static_cast<W>(in[jacobi_index(lo, hi, b, O::player0(k)) * np + jacobi_index(lo, hi, b, O::player0(j))]);
    }
  } else {
    // X_g[P, P] by 16 x 16 blocks (x, y) of its block rows lo / hi: from the previous solve of the pair that held
    // both (only x == y, except when m = 2), else (J_{P1}ᵀ X_{g-1}[P1, P2] J_{P2}) restricted to their halves.
    T* X = reinterpret_cast<T*>(&S[1][0]);
    T* J1 = reinterpret_cast<T*>(&Jb[0][0]);
    T* J2 = reinterpret_cast<T*>(&Jb[1][0]);
    T* T1 = reinterpret_cast<T*>(&S[0][0]);  // [16, 33], before S[0] is written
    const int tx = tid % eigh32_tx, ty = tid / eigh32_tx;
    for (int blk = 0; blk < 3; ++blk) {
      // (lo, hi) first: its product uses S[0] as scratch before any block is stored there; then (lo, lo), (hi, hi)
      const int bx = blk == 2 ? 1 : 0, by = blk == 1 ? 0 : 1;
      int k1, o1, k2, o2;
      round_robin_find(m, prev_step, bx ? hi : lo, b, k1, o1);
      round_robin_find(m, prev_step, by ? hi : lo, b, k2, o2);
      int l1, h1, l2, h2;
      round_robin_pair(m, prev_step, k1, l1, h1);
      round_robin_pair(m, prev_step, k2, l2, h2);
      if (k1 == k2) {
        const bool solved = rot_prev[k1] != 0;
        const T* spp = sp_prev + static_cast<std::int64_t>(k1) * B2 * B2;
        for (int e = tid; e < b * b; e += eigh_step32_threads) {
          const int r = e / b, c = e % b;
          const T val = solved ? spp[(o1 + r) * B2 + o2 + c]
                               : in[jacobi_index(l1, h1, b, o1 + r) * np + jacobi_index(l2, h2, b, o2 + c)];
          S[0][O::pos0(b * by + c) * LD + O::pos0(b * bx + r)] = static_cast<W>(val);
          if (bx != by) S[0][O::pos0(b * bx + r) * LD + O::pos0(b * by + c)] = static_cast<W>(val);
        }
        __syncthreads();
        continue;
      }
      for (int e = tid; e < B2 * B2; e += eigh_step32_threads) {
        const int i = e / B2, j = e % B2;
        X[i * LD + j] = in[jacobi_index(l1, h1, b, i) * np + jacobi_index(l2, h2, b, j)];
      }
      eigh_load_j32(jt_prev, rot_prev, k1, J1);
      eigh_load_j32(jt_prev, rot_prev, k2, J2);
      __syncthreads();
      {  // T1 = J1[:, o1 : o1 + 16]ᵀ X  ([16, 32]: rows ty, columns tx + eigh32_tx·v)
        T acc[eigh32_vn] = {};
#pragma unroll 4
        for (int k = 0; k < B2; ++k) {
          const T l = J1[k * LD + o1 + ty];
#pragma unroll
          for (int v = 0; v < eigh32_vn; ++v) acc[v] = fma(l, X[k * LD + tx + eigh32_tx * v], acc[v]);
        }
#pragma unroll
        for (int v = 0; v < eigh32_vn; ++v) T1[ty * LD + tx + eigh32_tx * v] = acc[v];
      }
      __syncthreads();
      T acc[eigh32_vh] = {};  // T1 J2[:, o2 : o2 + 16]  ([16, 16]: rows ty, columns tx + eigh32_tx·v)
#pragma unroll 4
      for (int k = 0; k < B2; ++k) {
        const T l = T1[ty * LD + k];
#pragma unroll
        for (int v = 0; v < eigh32_vh; ++v) acc[v] = fma(l, J2[k * LD + o2 + tx + eigh32_tx * v], acc[v]);
      }
      __syncthreads();  // T1 (in S[0]) read by everyone before S[0] is written
#pragma unroll
      for (int v = 0; v < eigh32_vh; ++v) {
        const int pi = O::pos0(b * bx + ty), pj = O::pos0(b * by + tx + eigh32_tx * v);
        S[0][pj * LD + pi] = static_cast<W>(acc[v]);
        S[0][pi * LD + pj] = static_cast<W>(acc[v]);
      }
      __syncthreads();
    }
  }
  for (int e = tid; e < B2 * B2; e += eigh_step32_threads) {
    const int k = e / B2, j = e % B2;
    Jb[0][k * LD + j] = O::player0(j) == k ? W(1) : W(0);
  }
  __syncthreads();
  const W wtol = static_cast<W>(tol), wfloor = static_cast<W>(floor_);
  {  // No pair of this ordering passes the threshold test: no round would rotate (each would find the same values,
     // moved), so the solve is skipped with the same result (rot[pair] = 0: A[P, P] and J_P = I stay). This makes
     // the last sweep, and most pairs of the one before it, cheap. Both S(x, y) and S(y, x) are tested: a round
     // reads one of them.
    bool any = false;
    for (int e = tid; e < B2 * B2; e += eigh_step32_threads) {
      const int x = e / B2, y = e % B2;  // players
      if (Cross ? x < b && y >= b : x < y) {
        const int px = O::pos0(x), py = O::pos0(y);
        const W axx = S[0][px * LD + px], ayy = S[0][py * LD + py];
        any = any || jacobi_needs_rotation(axx, ayy, S[0][py * LD + px], wtol, wfloor) ||
              jacobi_needs_rotation(axx, ayy, S[0][px * LD + py], wtol, wfloor);
      }
    }
    if (!__syncthreads_or(any)) {
      if (tid == 0) rot[pair] = 0;
      return;
    }
  }

  // Thread (warp w, lane): column `lane` (a position) of S, rows RW·w .. RW·w + RW − 1 (positions); row `lane`
  // (a player) of J_P, the same columns (positions). Per round: every warp computes the angles of all 16 pairs (lanes
  // 2k and 2k + 1 the same one), its part of the new column c·col_p − s·col_q / s·col_p + c·col_q, the row rotations of
  // its RW / 2 pairs and the column rotations of J_P, and stores both permuted for round r + 1; one block barrier per
  // round.
  constexpr int RW = B2 / (eigh_step32_threads / 32);  // rows (of S) / columns (of J_P) per warp
  const int p = lane & ~1, q = p + 1, dst = O::next(lane), dst_partner = O::next(lane ^ 1);
  const int r0 = warp * RW;
  const bool is_p = lane == p, fixes = lane / RW == warp;  // this thread stores its column's rows lane, lane ^ 1
  int to[RW];                                              // round r + 1's position of this thread's rows / columns
#pragma unroll
  for (int k = 0; k < RW; ++k) to[k] = O::next(r0 + k);
  int rotations = 0;
  for (int r = 0; r < R; ++r) {
    const W* cur = S[r & 1];
    W* nxt = S[(r + 1) & 1];
    const W* jcur = Jb[r & 1];
    W* jnxt = Jb[(r + 1) & 1];
    const W app = cur[p * LD + p], aqq = cur[q * LD + q], apq = cur[q * LD + p];
    W u[RW], v[RW], jr[RW];
#pragma unroll
    for (int k = 0; k < RW; ++k) {
      u[k] = cur[lane * LD + r0 + k];
      v[k] = cur[(lane ^ 1) * LD + r0 + k];
      jr[k] = jcur[lane * LD + r0 + k];
    }
    // the rotation is computed whether or not the threshold keeps it, so both run side by side
    W c, s;
    const W t = jacobi_rotation(app, aqq, apq, c, s);
    const bool on = jacobi_needs_rotation(app, aqq, apq, wtol, wfloor);
    const W d = is_p ? app - t * apq : aqq + t * apq;
    if (!on) c = 1, s = 0;
    if (warp == 0) rotations += __popc(__ballot_sync(0xffffffffu, on && is_p));
    const W sc = is_p ? -s : s;  // own column: c·own + sc·partner
#pragma unroll
    for (int k = 0; k < RW / 2; ++k) {
      const int src = r0 + 2 * k;  // pair (r0 + 2k, r0 + 2k + 1) = pair (r0 / 2 + k): its angle is at lane src
      const W gc = __shfl_sync(0xffffffffu, c, src), gs = __shfl_sync(0xffffffffu, s, src);
      // S: columns (own pair), then rows (pair r0 / 2 + k)
      const W w0 = c * u[2 * k] + sc * v[2 * k], w1 = c * u[2 * k + 1] + sc * v[2 * k + 1];
      u[2 * k] = gc * w0 - gs * w1;
      u[2 * k + 1] = gs * w0 + gc * w1;
      // J_P: columns (the same pair)
      const W x = jr[2 * k], y = jr[2 * k + 1];
      jr[2 * k] = gc * x - gs * y;
      jr[2 * k + 1] = gs * x + gc * y;
    }
    W* out = nxt + dst * LD;
#pragma unroll
    for (int k = 0; k < RW; ++k) {
      out[to[k]] = u[k];
      jnxt[lane * LD + to[k]] = jr[k];
    }
    if (on && fixes) {  // the rotated pair's 2 x 2 block exactly: diagonal d, off-diagonal 0 (rows of this thread)
      out[dst] = d;
      out[dst_partner] = W(0);
    }
    __syncthreads();
  }
  if (tid == 0) total_sh = rotations;
  W* Jsh = Jb[R & 1];  // J_P(player i, player at round-0 position j)
  __syncthreads();
  const int total = total_sh;
  if (tid == 0) {
    rot[pair] = total;
    if (total) atomicAdd(count, static_cast<unsigned long long>(total));
  }
  if (total == 0) return;  // uniform across the block: A[P, P] and J_P = I stay as they are
  // the solved subproblem (in S[R & 1], written by the last round; players in index order; after R rounds every
  // player is back at its round-0 position)
  T* spo = sp + static_cast<std::int64_t>(pair) * B2 * B2;
  for (int e = tid; e < B2 * B2; e += eigh_step32_threads)
    spo[e] = static_cast<T>(S[R & 1][O::pos0(e % B2) * LD + O::pos0(e / B2)]);
  T* jout = jt + static_cast<std::int64_t>(pair) * B2 * B2;
  // Jsh(i, x) = J_P(player i, player at round-0 position x), i.e. J_P with permuted columns: one Newton–Schulz step
  // J <- J − J (JᵀJ − I) / 2 in that order (E = JᵀJ − I), then J_P(i, j) = Jsh(i, pos0(j)). Thread
  // (ty, tx) computes the outputs (ty + 16u, tx + eigh32_tx·v). E goes to the S buffer the last round read.
  W* E = S[(R + 1) & 1];
  const int tx = tid % eigh32_tx, ty = tid / eigh32_tx;
  W acc[2][eigh32_vn];
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int v = 0; v < eigh32_vn; ++v) acc[u][v] = ty + 16 * u == tx + eigh32_tx * v ? W(-1) : W(0);
  eigh_mm32(Jsh, 1, LD, Jsh, acc);  // JᵀJ − I
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int v = 0; v < eigh32_vn; ++v) E[(ty + 16 * u) * LD + tx + eigh32_tx * v] = acc[u][v];
  __syncthreads();
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int v = 0; v < eigh32_vn; ++v) acc[u][v] = W(0);
  eigh_mm32(Jsh, LD, 1, E, acc);  // J E
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int v = 0; v < eigh32_vn; ++v) {
      const int i = ty + 16 * u, x = tx + eigh32_tx * v;
      jout[i * B2 + O::player0(x)] = static_cast<T>(Jsh[i * LD + x] - W(0.5) * acc[u][v]);
    }
}

//! eigh_update_kernel<T, B2> loads J_Q together with the tile and J_P (one load phase) when the four tiles take
//! little shared memory (B2 = 32), else after the first product, into J_P's place (occupancy at B2 = 64).
template <int B2>
inline constexpr bool eigh_update_one_load_phase = B2 <= 32;

//! Dynamic shared memory of eigh_update_kernel<T, B2>: four (or three) [B2, B2 + 1] matrices of T.
template <class T, int B2>
constexpr std::size_t eigh_update_smem() {
  return (eigh_update_one_load_phase<B2> ? 4 : 3) * static_cast<std::size_t>(B2) * (B2 + 1) * sizeof(T);
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

//! Blocks of eigh_update_kernel: one per upper tile A[P, Q] (P < Q) and one per [B2, B2] tile of Vᵀ.
inline std::int64_t eigh_update_blocks(const jacobi_shape& sh) {
  return static_cast<std::int64_t>(sh.pairs) * (sh.pairs - 1) / 2 +
         static_cast<std::int64_t>(sh.pairs) * (sh.n_pad / sh.b2);
}

template <class T, int B2>
__global__ void __launch_bounds__(eigh_threads)
    eigh_update_kernel(T* __restrict aw, T* __restrict vt, std::int64_t np, const T* __restrict jt,
                       const int* __restrict rot, int m, int step) {
  constexpr int LD = B2 + 1, b = B2 / 2;
  extern __shared__ __align__(16) unsigned char smem_update[];
  T* X = reinterpret_cast<T*>(smem_update);                   // [B2][LD] the tile
  T* JP = X + B2 * LD;                                        // [B2][LD] J_P
  T* Y = JP + B2 * LD;                                        // [B2][LD]
  T* JQ = eigh_update_one_load_phase<B2> ? Y + B2 * LD : JP;  // [B2][LD] J_Q
  __shared__ std::int64_t gp[B2], gq[B2];

  const int pairs = m / 2, tid = threadIdx.x;
  const std::int64_t a_tiles = static_cast<std::int64_t>(pairs) * (pairs - 1) / 2;
  std::int64_t id = blockIdx.x;
  int P = 0, Q = -1;
  std::int64_t c0 = 0;
  if (id < a_tiles) {
    while (id >= pairs - 1 - P) id -= pairs - 1 - P++;  // row P of the upper triangle has pairs - 1 - P tiles
    Q = P + 1 + static_cast<int>(id);
  } else {
    const std::int64_t v = id - a_tiles, chunks = np / B2;
    P = static_cast<int>(v / chunks);
    c0 = (v % chunks) * B2;
  }
  const bool rp = rot[P] != 0, rq = Q >= 0 && rot[Q] != 0;
  if (!rp && !rq) return;
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
  const T* jp = jt + static_cast<std::int64_t>(P) * B2 * B2;
  const T* jq = jt + static_cast<std::int64_t>(Q < 0 ? 0 : Q) * B2 * B2;
  for (int e = tid; e < B2 * B2; e += eigh_threads) {  // every load of the block issued before the first barrier
    const int i = e / B2, j = e % B2;
    X[i * LD + j] = base[gp[i] * np + gq[j]];
    if (rp) JP[i * LD + j] = jp[e];
    if (eigh_update_one_load_phase<B2> && rq) JQ[i * LD + j] = jq[e];
  }
  __syncthreads();
  const T* cur = X;
  if (rp) {
    eigh_tile_mm<T, B2>(JP, 1, LD, X, Y);  // Y = J_Pᵀ X
    cur = Y;
    __syncthreads();
  }
  if (rq) {
    if (!eigh_update_one_load_phase<B2>) {
      for (int e = tid; e < B2 * B2; e += eigh_threads) JQ[(e / B2) * LD + e % B2] = jq[e];
      __syncthreads();
    }
    T* dst = cur == X ? Y : X;
    eigh_tile_mm<T, B2>(cur, LD, 1, JQ, dst);  // dst = cur J_Q
    cur = dst;
    __syncthreads();
  }
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

//! Precision of the b = 16 subproblem solves (eigh_step32_kernel): f32 for T = f32 — f32 rotations on one SM
//! sub-partition run at 4x the f64 rate with a shorter dependency chain per round, and J_P, rounded to T anyway, is
//! re-orthogonalised in f32 — and f64 otherwise, or when FRUGAL_EIGH_F64_SUBPROBLEMS=1 (for comparisons).
template <class T>
inline bool eigh_f64_subproblems() {
  if (!std::is_same_v<T, float>) return true;
  const char* e = std::getenv("FRUGAL_EIGH_F64_SUBPROBLEMS");
  return e != nullptr && e[0] == '1';
}

//! FRUGAL_EIGH_NO_PDL=1: launch the steps without programmatic dependent launch (A/B measurements).
inline bool eigh_no_pdl() {
  const char* e = std::getenv("FRUGAL_EIGH_NO_PDL");
  return e != nullptr && e[0] == '1';
}

//! The b = 16 path (max_inner_sweeps = 1): one eigh_step32_kernel launch per step, A alternating between buf.a and
//! buf.a2; `final_a` receives the buffer that holds the last A. Step 0 of a sweep solves with the full ordering,
//! the others with the cross ordering (see eigh32_order).
template <class T, class W>
eigh_info eigh_cuda_sweeps32(cudaStream_t st, const jacobi_shape& sh, const eigh_cuda_buffers<T>& buf, double tol,
                             double floor_, const eigh_options& options, const T*& final_a) {
  constexpr int B2 = 32;
  T* const abuf[2] = {buf.a2,
                      buf.a};  // step g reads abuf[(g + 1) & 1] (g = 0: the working copy) and writes abuf[g & 1]
  const std::int64_t jsz = static_cast<std::int64_t>(sh.pairs) * B2 * B2, blocks_a = eigh_a_blocks32(sh),
                     blocks_v = eigh_v_blocks32(sh);
  std::int64_t g = 0;
  int prev_step = -1;
  const bool full_steps = eigh_full_steps();
  int dev = 0, major = 0;
  FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), "eigh");
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "eigh");
  cudaLaunchAttribute pdl{};  // consecutive steps overlap their launch (see eigh_step32_kernel)
  pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl.val.programmaticStreamSerializationAllowed = 1;
  const auto launch = [&](int step) {  // step < 0: the last step's updates of A and Vᵀ only
    const std::int64_t c = g & 1, pv = 1 - c;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>(sh.pairs + blocks_a + (prev_step >= 0 ? blocks_v : 0)));
    cfg.blockDim = dim3(eigh_step32_threads);
    cfg.stream = st;
    cfg.attrs = &pdl;
    cfg.numAttrs = major >= 9 && !eigh_no_pdl() ? 1 : 0;
    auto* kernel = step > 0 && !full_steps ? eigh_step32_kernel<T, W, true> : eigh_step32_kernel<T, W, false>;
    cuda_check(cudaLaunchKernelEx(
                   &cfg, kernel, static_cast<const T*>(abuf[(g + 1) & 1]), abuf[g & 1], buf.vt, sh.n_pad,
                   buf.jt + c * jsz, buf.rot + c * sh.pairs, buf.sp + c * jsz, static_cast<const T*>(buf.jt + pv * jsz),
                   static_cast<const int*>(buf.rot + pv * sh.pairs), static_cast<const T*>(buf.sp + pv * jsz),
                   buf.count, static_cast<int>(sh.m), step, prev_step, tol, floor_),
               "eigh", "launching eigh_step32_kernel");
    final_a = abuf[g & 1];
    prev_step = step;
    ++g;
  };
  eigh_info info{};
  unsigned long long last = 0;
  for (int sweep = 1; sweep <= options.max_sweeps; ++sweep) {
    FRUGAL_CUDA_CHECK(cudaMemsetAsync(buf.count, 0, sizeof(unsigned long long), st), "eigh");
    for (int step = 0; step < sh.m - 1; ++step) launch(step);
    FRUGAL_CUDA_CHECK(cudaMemcpyAsync(&last, buf.count, sizeof(last), cudaMemcpyDeviceToHost, st), "eigh");
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "eigh");
    info.sweeps = sweep;
    info.rotations += static_cast<std::int64_t>(last);
    if (last == 0) {
      launch(-1);
      return info;
    }
  }
  fail("eigh", "Jacobi did not converge in max_sweeps (=", options.max_sweeps, ") sweeps for n=", sh.n,
       "; the last sweep still applied ", last, " rotations");
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
  const std::int64_t upd_blocks = eigh_update_blocks(sh);
  const bool full_steps = eigh_full_steps();
  eigh_info info{};
  unsigned long long last = 0;
  for (int sweep = 1; sweep <= options.max_sweeps; ++sweep) {
    FRUGAL_CUDA_CHECK(cudaMemsetAsync(buf.count, 0, sizeof(unsigned long long), st), "eigh");
    for (int step = 0; step < sh.m - 1; ++step) {
      eigh_pair_kernel<T, B2>
          <<<sh.pairs, eigh_threads, pair_smem, st>>>(buf.a, sh.n_pad, buf.jt, buf.rot, buf.count, sh.m, step, tol,
                                                      floor_, options.max_inner_sweeps, step > 0 && !full_steps);
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
  eigh_info info;
  const T* final_a = buf.a;
  if (sh.b2 != 32) {
    info = eigh_cuda_sweeps<T, 64>(st, sh, buf, tol, floor_, options);
  } else if (options.max_inner_sweeps != 1) {
    info = eigh_cuda_sweeps<T, 32>(st, sh, buf, tol, floor_, options);
  } else if constexpr (std::is_same_v<T, float>) {
    info = eigh_f64_subproblems<T>() ? eigh_cuda_sweeps32<T, double>(st, sh, buf, tol, floor_, options, final_a)
                                     : eigh_cuda_sweeps32<T, float>(st, sh, buf, tol, floor_, options, final_a);
  } else {
    info = eigh_cuda_sweeps32<T, double>(st, sh, buf, tol, floor_, options, final_a);
  }

  // 3. eigenvalues descending, eigenvectors as columns of q
  eigh_rank_kernel<T><<<static_cast<unsigned>((n + eigh_threads - 1) / eigh_threads), eigh_threads, 0, st>>>(
      final_a, sh.n_pad, n, w, buf.rank);
  check_launch("eigh", "eigh_rank_kernel");
  const dim3 grid(static_cast<unsigned>((n + 31) / 32), static_cast<unsigned>((n + 31) / 32));
  eigh_gather_kernel<T><<<grid, 256, 0, st>>>(buf.vt, sh.n_pad, n, buf.rank, q.data, q.ld);
  check_launch("eigh", "eigh_gather_kernel");
  return info;
}

}  // namespace detail
FRUGAL_NAMESPACE_END
