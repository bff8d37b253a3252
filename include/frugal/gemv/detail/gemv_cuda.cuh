// frugal/gemv/detail/gemv_cuda.cuh — CUDA implementation of every gemv form (nvcc only).
//
// One kernel, gemv_kernel<C, BT, DX>, for all input forms (dense, masked, threshold/top-k, explicit lists), batch
// tiles of BT in {1, 2, 4} rows (and, for batch-1 dense calls in PDL chains, gemv_ahead_kernel further below). Grid
// (batch tiles, K splits, column tiles); 256 threads per block. DX = true is the batch-1 dense instantiation: no
// staging (step 1) — each weight batch loads its x values (L2) next to it, in the staged loop's channel order, so its
// sums are bitwise those of the staged path (H100, bf16: 4-15% faster).
//  0. With gemv_options::pdl, griddepcontrol.wait before anything reads x / lists / thresholds / bias / y.
//     Fused top-k at batch 1 (gemv_args::topk_k > 0): the block first finds t = the row's k-th largest raw |x| over
//     all of K (topk_block_kth_key, sparsify/detail/topk_cuda.cuh; histogram in the staging tables' shared memory),
//     then runs as the threshold form with it.
//  1. Staging, `stage` = 1024 candidates at a time. Dense: x (normalised with the norm prologue) is copied into
//     the [BT, stage] value table, no scan. Other forms: each thread evaluates 4 consecutive candidates for all BT
//     rows (keep rule on x̂, values as f32); a block exclusive scan (cub::BlockScan) compacts the kept ones into
//     shared memory: channel ids and the value table (0 where a row dropped the channel).
//  2. Streaming: thread (g = tid / tpr, t = tid % tpr) owns 16 bytes of the tile's columns; tpr = 8, 16 or 32
//     threads cover a 128/256/512-byte segment of a weight row, 256/tpr channels go side by side. Loads are
//     L1-bypassing 16-byte vectors issued in batches (16 per thread for BT = 1, 8 otherwise) before their FMAs;
//     BT x (16 / sizeof(T)) f32 sums per thread.
//  3. Reduction: warp shuffles (groups of a warp that share columns), the 8 warps through shared memory in a fixed
//     order (2 barriers), then across the K splits of the tile — on sm_90 the splits are one thread-block cluster
//     and every block stores its partial of slice c into block c's shared memory (DSMEM), one cluster barrier, then
//     block c sums slice c from its own shared memory in split order (one cluster barrier instead of two); before
//     sm_90 the partials go to the workspace and gemv_reduce_kernel sums them. Fixed order everywhere: bitwise
//     reproducible.
//  4. Epilogue in f32: + bias, activation, + y (accumulate), one rounding to the output type.
// No allocation, no synchronisation (except the documented `checked` validation), graph-capturable.
#pragma once

#if !defined(__CUDACC__)
#error "frugal/gemv/detail/gemv_cuda.cuh is CUDA code: include frugal/gemv/gemv.hpp from a .cu file."
#endif

#include <cooperative_groups.h>

#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../../core/detail/cuda_common.cuh"
#include "../../core/workspace.hpp"
#include "../../sparsify/detail/topk_cuda.cuh"
#include "../gemv_types.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

namespace gemv_cuda_cfg {
inline constexpr int threads = 256;
inline constexpr int stage = 1024;  // candidates staged per round
inline constexpr int per_thread = stage / threads;
inline constexpr int max_splits = 8;  // portable cluster size
}  // namespace gemv_cuda_cfg

template <class C>
struct gemv_args {
  int mode = 0;  // gemv_input
  const C* x = nullptr;
  std::int64_t ldx = 0;
  const std::int32_t* idx = nullptr;
  const C* val = nullptr;
  const std::int32_t* nnz = nullptr;
  std::int64_t cap = 0, ldl = 0;
  const float* t_rows = nullptr;
  float t_all = 0.f;
  const C* w = nullptr;
  std::int64_t ldw = 0;
  const C* bias = nullptr;
  C* y = nullptr;
  std::int64_t ldy = 0;
  float* partials = nullptr;  // [splits, b, N] without clusters
  std::int64_t b = 0, K = 0, N = 0;
  int splits = 1;
  int tpr = 8;   // threads per weight-row segment (8, 16, 32: 128, 256, 512 bytes)
  int norm = 0;  // gemv_norm: 0 none, 1 layernorm, 2 rmsnorm (row statistics computed in every block)
  float eps = 1e-5f;
  int act = 0;              // gemv_act: 0 none, 1 gelu_tanh
  bool select_raw = false;  // top-k + rmsnorm: the keep rule sees raw x, the products x̂
  int topk_k = 0;           // threshold mode, > 0: t_r = the k-th largest raw |x[r, :]|, selected in the kernel
  bool accumulate = false;
  bool cluster = false;
  int ahead_tn = 0;         // weights-ahead kernel: columns per tile (a multiple of 16 / sizeof(C))
  int ahead_rows = 0;       // weights-ahead kernel: rows (channels) of shared memory for each block's tile
  bool ahead_ring = false;  // ... used as a ring of gemv_ahead_cfg::stages stages (else one stage)
  int ahead_x_off = 0;      // weights-ahead kernel: byte offset of x̂ in the dynamic shared memory (after the rows)
};

//! The fused activation, in f32 (tanhf: the accurate libdevice tanh, not tanh.approx).
__device__ __forceinline__ float gemv_act_f(int act, float v) {
  if (act == 1) return 0.5f * v * (1.f + tanhf(0.7978845608028654f * fmaf(0.044715f * v, v * v, v)));
  return v;
}

//! Chan et al.'s merge of two (count, mean, sum of squared deviations) summaries, in a fixed operand order.
__device__ __forceinline__ void gemv_welford_merge(float& n, float& m, float& q, float nb, float mb, float qb) {
  if (nb == 0.f) return;
  if (n == 0.f) {
    n = nb, m = mb, q = qb;
    return;
  }
  const float t = n + nb, d = mb - m, f = nb / t;
  m = fmaf(d, f, m);
  q = q + qb + d * d * (n * f);
  n = t;
}

//! Sum of v over the block (256 threads), the same in every thread and every block: the warps' sums (shuffles)
//! through red[0..8), added in warp order. One barrier; `red` must not be reused before the next barrier.
__device__ __forceinline__ float gemv_block_sum(float v, float* red) {
  for (int off = 16; off >= 1; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0.f;
#pragma unroll
  for (int w = 0; w < gemv_cuda_cfg::threads / 32; ++w) s += red[w];
  return s;
}

//! Batch-1 norm statistics for K <= gemv_stats_regs_max from registers: thread t holds x[t + j * 256] (j < 8, 0
//! past K) in xv, then two block sums — the mean (layernorm; 0 for rmsnorm), then the squared deviations from it
//! (exact two-pass variance, no cancellation from a large mean). Identical in every block. red: >= 16 floats, not
//! touched by other threads during the call (two barriers inside).
inline constexpr int gemv_stats_regs_max = gemv_cuda_cfg::threads * 8;
template <class C>
__device__ __forceinline__ void gemv_stats_regs(const C* x, std::int64_t K, bool ln, float eps, float (&xv)[8],
                                                float& mu, float& rs, float* red) {
  constexpr int T = gemv_cuda_cfg::threads;
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const std::int64_t i = threadIdx.x + static_cast<std::int64_t>(j) * T;
    xv[j] = i < K ? load_f(x[i]) : 0.f;
    sum += xv[j];
  }
  const float n = static_cast<float>(K);
  mu = ln ? gemv_block_sum(sum, red) / n : 0.f;
  float q = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float d = threadIdx.x + static_cast<std::int64_t>(j) * T < K ? xv[j] - mu : 0.f;
    q = fmaf(d, d, q);
  }
  rs = 1.f / sqrtf(fmaxf(gemv_block_sum(q, red + T / 32) / n, 0.f) + eps);
}

//! Norm prologue statistics of rows [r0, r0 + nr) over all K channels of x (x is small and L2-resident: every
//! block of the grid recomputes them for its rows, identically). layernorm: per-thread Welford over a strided
//! subset, then Chan merges (warp shuffles, then the 8 warps in order) — one pass, no cancellation from a large
//! mean; rmsnorm: sum of squares. f32 throughout. mu = mean (0 for rmsnorm), rs = 1 / sqrt(var + eps).
//! One row with K <= gemv_stats_regs_max (decode: GPT-2's 768 / 1600): gemv_stats_regs instead (one read of x, no
//! division per element; in a PDL chain the Welford pass cost ~1.5 us per fused GEMV, docs/gemv.md).
template <class C, int BT>
__device__ void gemv_row_stats(const gemv_args<C>& a, std::int64_t r0, int nr, float (&mu)[BT], float (&rs)[BT],
                               float* red /* >= 3 * BT * warps floats of shared memory */) {
  constexpr int T = gemv_cuda_cfg::threads, W = T / 32, U = 8;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const bool ln = a.norm == 1;
  if constexpr (BT == 1) {
    if (nr == 1 && a.K <= gemv_stats_regs_max) {
      float xv[8];
      __syncthreads();  // `red` may still be in use by the caller
      gemv_stats_regs(a.x + r0 * a.ldx, a.K, ln, a.eps, xv, mu[0], rs[0], red);
      __syncthreads();  // before `red` is reused
      return;
    }
  }
  float cn = 0.f, m[BT], q[BT];
#pragma unroll
  for (int r = 0; r < BT; ++r) m[r] = 0.f, q[r] = 0.f;
  for (std::int64_t c0 = tid; c0 < a.K; c0 += static_cast<std::int64_t>(T) * U) {
    float xv[U][BT];
#pragma unroll
    for (int u = 0; u < U; ++u) {  // U independent loads per row before any use
      const std::int64_t c = c0 + static_cast<std::int64_t>(u) * T;
#pragma unroll
      for (int r = 0; r < BT; ++r) xv[u][r] = (c < a.K && r < nr) ? load_f(a.x[(r0 + r) * a.ldx + c]) : 0.f;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + static_cast<std::int64_t>(u) * T < a.K) {
        cn += 1.f;
        const float inv = 1.f / cn;
#pragma unroll
        for (int r = 0; r < BT; ++r) {
          if (ln) {
            const float d = xv[u][r] - m[r];
            m[r] = fmaf(d, inv, m[r]);
            q[r] = fmaf(d, xv[u][r] - m[r], q[r]);
          } else {
            q[r] = fmaf(xv[u][r], xv[u][r], q[r]);
          }
        }
      }
    }
  }
  for (int off = 16; off >= 1; off /= 2) {
    const float nb = __shfl_down_sync(0xffffffffu, cn, off);
#pragma unroll
    for (int r = 0; r < BT; ++r) {
      const float mb = __shfl_down_sync(0xffffffffu, m[r], off);
      const float qb = __shfl_down_sync(0xffffffffu, q[r], off);
      if (ln) {
        float n = cn;
        gemv_welford_merge(n, m[r], q[r], nb, mb, qb);
      } else {
        q[r] += qb;
      }
    }
    cn += nb;
  }
  __syncthreads();  // `red` may still be in use by the caller
  if (lane == 0) {
    red[warp] = cn;
#pragma unroll
    for (int r = 0; r < BT; ++r) red[W + (warp * BT + r) * 2] = m[r], red[W + (warp * BT + r) * 2 + 1] = q[r];
  }
  __syncthreads();
  const float K = static_cast<float>(a.K);
#pragma unroll
  for (int r = 0; r < BT; ++r) {
    float n = 0.f, mm = 0.f, qq = 0.f;
    for (int w = 0; w < W; ++w) {  // every thread merges the warps' summaries in the same order
      const float nb = red[w], mb = red[W + (w * BT + r) * 2], qb = red[W + (w * BT + r) * 2 + 1];
      if (ln) {
        gemv_welford_merge(n, mm, qq, nb, mb, qb);
      } else {
        qq += qb;
      }
    }
    const float var = a.K > 0 ? fmaxf(qq / K, 0.f) : 0.f;
    mu[r] = ln ? mm : 0.f;
    rs[r] = 1.f / sqrtf(var + a.eps);
  }
  __syncthreads();  // before `red` is reused
}

template <class I>
__device__ __forceinline__ I gemv_min(I a, I b) {
  return a < b ? a : b;
}
template <class I>
__device__ __forceinline__ I gemv_max(I a, I b) {
  return a < b ? b : a;
}

// 16 bytes of weights -> f32.
__device__ __forceinline__ void gemv_unpack(const uint4& v, float (&f)[4], const float*) {
  f[0] = __uint_as_float(v.x);
  f[1] = __uint_as_float(v.y);
  f[2] = __uint_as_float(v.z);
  f[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ void gemv_unpack(const uint4& v, float (&f)[8], const __nv_bfloat16*) {
  const unsigned u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(u[i] << 16);
    f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void gemv_unpack(const uint4& v, float (&f)[8], const __half*) {
  const unsigned u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __half2 h;
    static_assert(sizeof(h) == 4);
    memcpy(&h, &u[i], 4);
    const float2 p = __half22float2(h);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

//! 16 bytes of weights at p, or the first `nvalid` elements of them (rest 0) at the ragged end of N.
template <class C>
__device__ __forceinline__ uint4 gemv_load_w(const C* p, int nvalid) {
  constexpr int vec = 16 / sizeof(C);
  uint4 r;
  if (nvalid == vec) {
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
  } else {
    C e[vec];
#pragma unroll
    for (int i = 0; i < vec; ++i) e[i] = i < nvalid ? p[i] : C{};
    memcpy(&r, e, 16);
  }
  return r;
}

//! Reduction of a column tile's K splits, which form one thread-block cluster (sm_90): every block stores its
//! partial (block_sum(o)) of rank c's slice of the `cols` outputs into rank c's s_part[split * per + j] (DSMEM), one
//! cluster barrier, then every rank sums its slice from its own shared memory in split order and calls finish(o, s).
//! Nothing reads another block's shared memory after the barrier, so no second barrier before exiting. The caller
//! arrived on cluster barrier phase 0 at kernel start; waiting for it here means every block of the cluster has
//! started before another writes into its shared memory.
template <class Sum, class Finish>
__device__ __forceinline__ void gemv_cluster_reduce(int cols, int splits, int split, float* s_part, Sum&& block_sum,
                                                    Finish&& finish) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  constexpr int T = gemv_cuda_cfg::threads;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank()), tid = static_cast<int>(threadIdx.x);
  const int per = (cols + splits - 1) / splits;
  asm volatile("barrier.cluster.wait.aligned;" ::: "memory");  // phase 0
  for (int o = tid; o < cols; o += T) {
    const int c = o / per;
    cluster.map_shared_rank(s_part, c)[split * per + (o - c * per)] = block_sum(o);
  }
  cluster.sync();
  const int o0 = rank * per, o1 = min(cols, o0 + per);
  for (int o = o0 + tid; o < o1; o += T) {
    float s = 0.f;
    for (int c = 0; c < splits; ++c) s += s_part[c * per + (o - o0)];
    finish(o, s);
  }
#else
  (void)cols, (void)splits, (void)split, (void)s_part, (void)block_sum, (void)finish;
  __trap();  // the host never asks for clusters from code compiled for < sm_90
#endif
}

//! DX (batch 1, dense input only): no staging, see the dense loop below.
template <class C, int BT, bool DX = false>
__global__ void __launch_bounds__(gemv_cuda_cfg::threads, 2) gemv_kernel(const gemv_args<C> a) {
  namespace cfg = gemv_cuda_cfg;
  constexpr int unroll = BT == 1 ? 16 : 8;  // independent 16-byte weight loads in flight per thread
  constexpr int vec = 16 / sizeof(C);
  constexpr int max_tn = 32 * vec;  // widest tile: one warp per row segment (512 bytes)
  static_assert(4 * BT * max_tn <= BT * cfg::stage, "reduction scratch must fit in the value table");
  using scan_t = cub::BlockScan<int, cfg::threads>;

  // The staging tables; the in-kernel top-k select's histogram overlays them (it finishes before staging starts).
  // (DX never stages nor selects: one id slot keeps its shared memory as small as before.)
  __shared__ union alignas(16) {
    struct {
      std::int32_t ids[DX ? 1 : cfg::stage];
      float vals[BT * cfg::stage];  // [BT, stage]; later [4, BT, tn] reduction scratch
    } st;
    int hist[DX ? 1 : 1 << topk_radix_bits];  // top-k select (topk_block_kth_key)
  } s_u;
  static_assert(sizeof(s_u.st) >= sizeof(s_u.hist) && alignof(decltype(s_u)) >= 16,
                "the select histogram (16-byte aligned) must fit in the staging tables");
  auto& s_ids = s_u.st.ids;
  auto& s_vals = s_u.st.vals;
  __shared__ float s_part[BT * max_tn + cfg::max_splits];  // cluster: the splits' partials of this rank's slice
  __shared__ typename scan_t::TempStorage s_scan;
  __shared__ long long s_pref[BT + 1];  // list mode: prefix sums of the tile rows' nnz
  __shared__ int s_sel[2];              // top-k select: bucket, rank inside it
  __shared__ float s_thr[BT];           // top-k select: the rows' k-th magnitudes

  const int tid = threadIdx.x;
  const int tpr = a.tpr;                  // threads per row segment: 8, 16 or 32
  const int groups = cfg::threads / tpr;  // channels processed side by side
  const int tn = tpr * vec;               // columns per tile
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * BT;
  const int nr = static_cast<int>(gemv_min<std::int64_t>(BT, a.b - r0));
  const int split = blockIdx.y;
  const std::int64_t n_tile = static_cast<std::int64_t>(blockIdx.z) * tn;
  const bool list = a.mode == static_cast<int>(gemv_input::list);
  const bool dense = a.mode == static_cast<int>(gemv_input::dense);

  // This split's range: channels [begin, end) of K, or entries [begin, end) of the tile's concatenated lists.
  std::int64_t begin = 0, end = 0;
  if (!list) {
    const std::int64_t chunk = (a.K + a.splits - 1) / a.splits;
    begin = gemv_min<std::int64_t>(a.K, chunk * split);
    end = gemv_min<std::int64_t>(a.K, begin + chunk);
  }

  const int tc = tid % tpr, g = tid / tpr;
  const std::int64_t col = n_tile + tc * vec;
  const int nvalid = static_cast<int>(gemv_max<std::int64_t>(0, gemv_min<std::int64_t>(vec, a.N - col)));
  const C* wcol = a.w + col;

  float acc[BT][vec];
#pragma unroll
  for (int r = 0; r < BT; ++r)
#pragma unroll
    for (int v = 0; v < vec; ++v) acc[r][v] = 0.f;

  // Weight streaming in batches: each thread issues `unroll` (16 for BT = 1, else 8) independent 16-byte loads of
  // staged channels s_ids[ii], then consumes them; the batch lives in registers of this loop body only. Measured on
  // the H100 (docs/gemv.md), both of these were 1.3-1.7x slower for the large shapes: a register double-buffered
  // loop (refill one half while consuming the other), and keeping the batch live across the staging phase so dense
  // input could issue its first loads before reading x (ptxas spilled, and the loads no longer went out together).
  auto stream = [&](int cnt) {
    if (nvalid == 0) return;
    for (int i = g; i < cnt; i += groups * unroll) {
      uint4 wv[unroll];
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        const int ii = i + u * groups;
        if (ii < cnt) {
          const std::int64_t k = static_cast<std::int64_t>(s_ids[ii]);
          wv[u] = gemv_load_w(wcol + k * a.ldw, nvalid);
        }
      }
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        const int ii = i + u * groups;
        if (ii < cnt) {
          float wf[vec];
          gemv_unpack(wv[u], wf, static_cast<const C*>(nullptr));
#pragma unroll
          for (int r = 0; r < BT; ++r) {
            const float xv = s_vals[r * cfg::stage + ii];
#pragma unroll
            for (int q = 0; q < vec; ++q) acc[r][q] = fmaf(xv, wf[q], acc[r][q]);
          }
        }
      }
    }
  };
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Cluster barrier phase 0: arrive now (it costs nothing), wait before the first DSMEM store, so that every block
  // of the cluster has started before another writes into its shared memory.
  if (a.cluster) asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
  grid_dependency_wait();  // everything below may read what earlier kernels wrote (x, lists, bias, y, t)

  if (list) {
    if (tid == 0) {
      long long sum = 0;
      s_pref[0] = 0;
      for (int r = 0; r < BT; ++r) {
        long long n = 0;
        if (r < nr) n = gemv_min<long long>(gemv_max<long long>(a.nnz[r0 + r], 0), a.cap);  // clamped: memory-safe
        sum += n;
        s_pref[r + 1] = sum;
      }
    }
    __syncthreads();
    const long long total = s_pref[BT];
    begin = total * split / a.splits;
    end = total * (split + 1) / a.splits;
  }

  // Norm prologue: this block's rows' mean / rstd over all of K (not only this split's slice).
  float mu[BT], rs[BT];
#pragma unroll
  for (int r = 0; r < BT; ++r) mu[r] = 0.f, rs[r] = 1.f;
  const bool normed = a.norm != 0 && !list;
  if (normed) gemv_row_stats<C, BT>(a, r0, nr, mu, rs, s_vals);

  float thr[BT];  // threshold mode: per-row keep bounds
#pragma unroll
  for (int r = 0; r < BT; ++r) thr[r] = (a.t_rows && r < nr) ? a.t_rows[r0 + r] : a.t_all;
  if constexpr (!DX && BT == 1) {  // (batches: the host runs topk_select first, see gemv_topk_in_kernel)
    if (a.topk_k > 0) {
      // Fused top-k: t_r = the k-th largest raw |x| of row r over all of K, found by this block itself (every block
      // of the grid gets the same value; x is L2-resident, re-reads hit L1) — the value topk_select would report.
      using TF = frugal_type_t<C>;
      using KB = topk_bits_t<TF>;
      for (int j = tid; j < (1 << topk_radix_bits); j += cfg::threads) s_u.hist[j] = 0;
      __syncthreads();
#pragma unroll 1
      for (int r = 0; r < nr; ++r) {
        const KB key = topk_block_kth_key<TF, cfg::threads>(reinterpret_cast<const KB*>(a.x + (r0 + r) * a.ldx),
                                                            static_cast<int>(a.K), a.topk_k, s_u.hist, s_scan, s_sel);
        if (tid == 0) s_thr[r] = topk_key_to_float<TF>(key);
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < BT; ++r) thr[r] = r < nr ? s_thr[r] : 0.f;
    }
  }
  const bool masked = a.mode == static_cast<int>(gemv_input::masked);
  if constexpr (DX) {
    static_assert(BT == 1, "the unstaged dense loop is for batch 1");
    {
      // Batch 1, dense: no staging. Each batch loads its x values (L2) next to its weight rows; the channels and the
      // accumulation order are those of the staged loop below (stages of `stage` channels, ii = g + u * groups), so
      // the sums are bitwise the same; what goes away is the x round trip and the barriers before the first loads.
      const C* xr = a.x + r0 * a.ldx;
      if (nvalid > 0)
        for (std::int64_t s0 = begin; s0 < end; s0 += cfg::stage) {
          const int cnt = static_cast<int>(gemv_min<std::int64_t>(cfg::stage, end - s0));
          const int nbat = (cnt + groups * unroll - 1) / (groups * unroll);
          for (int jb = 0; jb < nbat; ++jb) {
            const int i = g + jb * groups * unroll;
            uint4 wv[unroll];
            C xs[unroll];
#pragma unroll
            for (int u = 0; u < unroll; ++u) {
              const int ii = i + u * groups;
              if (ii < cnt) {
                const std::int64_t k = s0 + ii;
                wv[u] = gemv_load_w(wcol + k * a.ldw, nvalid);
                xs[u] = xr[k];
              }
            }
#pragma unroll
            for (int u = 0; u < unroll; ++u) {
              const int ii = i + u * groups;
              if (ii < cnt) {
                float wf[vec];
                gemv_unpack(wv[u], wf, static_cast<const C*>(nullptr));
                const float raw = load_f(xs[u]);
                const float xv = normed ? (raw - mu[0]) * rs[0] : raw;
#pragma unroll
                for (int q = 0; q < vec; ++q) acc[0][q] = fmaf(xv, wf[q], acc[0][q]);
              }
            }
          }
        }
    }
  } else {
    for (std::int64_t s0 = begin; s0 < end; s0 += cfg::stage) {
      const int slen = static_cast<int>(gemv_min<std::int64_t>(cfg::stage, end - s0));
      int cnt;
      if (dense) {
        // Every channel is kept: x (normalised) goes straight into the value table, the ids are s0 + slot, no scan.
        float xv[cfg::per_thread][BT];  // all loads first (independent, L2), then the stores
#pragma unroll
        for (int j = 0; j < cfg::per_thread; ++j)
#pragma unroll
          for (int r = 0; r < BT; ++r) {
            const int li = j * cfg::threads + tid;
            xv[j][r] = (li < slen && r < nr) ? load_f(a.x[(r0 + r) * a.ldx + s0 + li]) : 0.f;
          }
#pragma unroll
        for (int j = 0; j < cfg::per_thread; ++j) {
          const int li = j * cfg::threads + tid;
          if (li < slen) {
            s_ids[li] = static_cast<std::int32_t>(s0 + li);
#pragma unroll
            for (int r = 0; r < BT; ++r)
              s_vals[r * cfg::stage + li] = normed && r < nr ? (xv[j][r] - mu[r]) * rs[r] : xv[j][r];
          }
        }
        cnt = slen;
        __syncthreads();
      } else {
        // Staging: evaluate the keep rule for 4 consecutive candidates per thread, compact the kept ones (block scan).
        bool keep[cfg::per_thread];
        std::int32_t id[cfg::per_thread];
        float v[cfg::per_thread][BT];
        int kept = 0;
#pragma unroll
        for (int j = 0; j < cfg::per_thread; ++j) {
          const int li = tid * cfg::per_thread + j;
          keep[j] = false;
          id[j] = 0;
#pragma unroll
          for (int r = 0; r < BT; ++r) v[j][r] = 0.f;
          if (li < slen) {
            if (list) {
              const long long e = s0 + li;
              int rr = 0;
#pragma unroll
              for (int r = 1; r < BT; ++r) rr += e >= s_pref[r] ? 1 : 0;
              const long long p = e - s_pref[rr];
              const std::int32_t k = a.idx[(r0 + rr) * a.ldl + p];
              if (k >= 0 && k < a.K) {  // out-of-range entries are skipped (checked mode reports them)
                keep[j] = true;
                id[j] = k;
                const float val = load_f(a.val[(r0 + rr) * a.ldl + p]);
#pragma unroll
                for (int r = 0; r < BT; ++r) v[j][r] = r == rr ? val : 0.f;
              }
            } else {
              const std::int64_t c = s0 + li;
              id[j] = static_cast<std::int32_t>(c);
#pragma unroll
              for (int r = 0; r < BT; ++r) {
                if (r < nr) {
                  const float raw = load_f(a.x[(r0 + r) * a.ldx + c]);
                  const float xv = normed ? (raw - mu[r]) * rs[r] : raw;  // x̂
                  const float sel = a.select_raw ? raw : xv;
                  const bool k = masked ? sel != 0.f : (isnan(sel) || fabsf(sel) >= thr[r]);
                  v[j][r] = k ? xv : 0.f;
                  keep[j] |= k;
                }
              }
            }
          }
          kept += keep[j] ? 1 : 0;
        }
        int off;
        scan_t(s_scan).ExclusiveSum(kept, off, cnt);
#pragma unroll
        for (int j = 0; j < cfg::per_thread; ++j) {
          if (keep[j]) {
            s_ids[off] = id[j];
#pragma unroll
            for (int r = 0; r < BT; ++r) s_vals[r * cfg::stage + off] = v[j][r];
            ++off;
          }
        }
        __syncthreads();
      }
      stream(cnt);
      __syncthreads();
    }
  }
  trigger_dependents();  // the rest only reduces and stores: a dependent kernel may start its prologue

  // Reduce: the groups of a warp that share columns (shuffles), then the 8 warps in shared memory: warps 4..7
  // store, warps 0..3 add theirs and store back, and each output sums the 4 slots in order (2 barriers).
  for (int off = tpr; off < 32; off *= 2)
#pragma unroll
    for (int r = 0; r < BT; ++r)
#pragma unroll
      for (int q = 0; q < vec; ++q) acc[r][q] += __shfl_xor_sync(0xffffffffu, acc[r][q], off);
  const int lane = tid % 32, warp = tid / 32;
  float* red = s_vals;  // [4, BT, tn]
  const int slot = BT * tn;
  if (warp >= 4 && lane < tpr) {
#pragma unroll
    for (int r = 0; r < BT; ++r)
#pragma unroll
      for (int q = 0; q < vec; ++q) red[(warp - 4) * slot + r * tn + lane * vec + q] = acc[r][q];
  }
  __syncthreads();
  if (warp < 4 && lane < tpr) {
#pragma unroll
    for (int r = 0; r < BT; ++r)
#pragma unroll
      for (int q = 0; q < vec; ++q) {
        const int o = warp * slot + r * tn + lane * vec + q;
        red[o] = acc[r][q] + red[o];
      }
  }
  __syncthreads();
  auto block_sum = [&](int o) { return ((red[o] + red[slot + o]) + red[2 * slot + o]) + red[3 * slot + o]; };

  auto finish = [&](int o, float s) {  // o = r * tn + column in tile
    const int r = o / tn;
    const std::int64_t n = n_tile + o % tn;
    if (r >= nr || n >= a.N) return;
    C* yp = a.y + (r0 + r) * a.ldy + n;
    if (a.bias) s += load_f(a.bias[n]);
    s = gemv_act_f(a.act, s);
    if (a.accumulate) s += load_f(*yp);
    *yp = store_f<C>(s);
  };

  if (a.splits == 1) {
    for (int o = tid; o < BT * tn; o += cfg::threads) finish(o, block_sum(o));
  } else if (a.cluster) {
    gemv_cluster_reduce(BT * tn, a.splits, split, s_part, block_sum, finish);
  } else {
    for (int o = tid; o < BT * tn; o += cfg::threads) {
      const int r = o / tn;
      const std::int64_t n = n_tile + o % tn;
      if (r < nr && n < a.N) a.partials[(split * a.b + r0 + r) * a.N + n] = block_sum(o);
    }
  }
}

//! Without clusters: y[r, n] = sum over splits of partials[split, r, n] (+ bias, + y), in split order.
template <class C>
__global__ void gemv_reduce_kernel(const gemv_args<C> a) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= a.b * a.N) return;
  const std::int64_t r = i / a.N, n = i % a.N;
  float s = 0.f;
  for (int c = 0; c < a.splits; ++c) s += a.partials[c * a.b * a.N + i];
  C* yp = a.y + r * a.ldy + n;
  if (a.bias) s += load_f(a.bias[n]);
  s = gemv_act_f(a.act, s);
  if (a.accumulate) s += load_f(*yp);
  *yp = store_f<C>(s);
}

namespace gemv_ahead_cfg {
inline constexpr int threads = 256;
inline constexpr int unroll = 16;                      // register loads per thread issued before the wait
inline constexpr int stages = 4;                       // the shared-memory rows: a ring of 4 stages
inline constexpr int max_cluster_cols = 1024;          // s_part: a cluster's column tile
inline constexpr std::size_t smem_bytes = 100 * 1024;  // dynamic shared memory per block: two blocks fit one SM
static_assert(threads == gemv_cuda_cfg::threads, "launched and reduced like gemv_kernel's blocks");
}  // namespace gemv_ahead_cfg

__device__ __forceinline__ void gemv_cp_async16(void* dst, const void* src, int bytes) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(bytes) : "memory");
}

//! The weights-ahead kernel (gemv_options::weights_ahead): batch 1, dense input, sm_90. Grid (1, splits, column
//! tiles of tn columns), clusters of `splits` blocks along y, 256 threads, one block per tile and K split; thread
//! (g, c) owns 16 bytes of columns (c) and the channels g, g + groups, ... of every part of the tile. A block's
//! channels (relative to its split) go in three parts: [0, kp) through shared memory (rows of tn contiguous weights,
//! 16-byte cp.async, zero-filled past N), [kp, kp + groups * 16) through registers (one 16-byte load per thread and
//! channel), and — only when the tile is larger than both (ahead_ring) — the rest through the shared memory again,
//! used as a ring of 4 stages, each refilled as soon as it is consumed. Before griddepcontrol.wait — while the
//! previous kernel of a PDL chain still runs — the block issues the shared-memory part and the register batch and
//! lets the next kernel launch (griddepcontrol.launch_dependents: its blocks may take the SM's other half). After the
//! wait: the norm statistics over all of K (as gemv_kernel's: gemv_stats_regs for K <= 2048, x̂ of the split then
//! written from the same registers), x̂ into shared memory, the register batch, then the shared-memory rows.
//! Reduction in a fixed order: the groups through shared memory, the splits through DSMEM (gemv_cluster_reduce, as
//! gemv_kernel). Deterministic; the summation order differs from gemv_kernel's.
template <class C>
__global__ void __launch_bounds__(gemv_ahead_cfg::threads, 2) gemv_ahead_kernel(const gemv_args<C> a) {
  namespace cfg = gemv_ahead_cfg;
  constexpr int T = cfg::threads, U = cfg::unroll, NS = cfg::stages, vec = 16 / sizeof(C);
  extern __shared__ uint4 gemv_ahead_smem[];
  __shared__ float s_part[cfg::max_cluster_cols + 8];  // cluster: the splits' partials of this rank's columns
  __shared__ float s_red[3 * (T / 32)];                // norm statistics scratch

  const int tid = threadIdx.x;
  const int tn = a.ahead_tn, tr = tn / vec, groups = T / tr;
  const int g = tid / tr, tc = tid % tr;
  const int split = blockIdx.y;
  const std::int64_t n0 = static_cast<std::int64_t>(blockIdx.z) * tn;
  const std::int64_t chunk = (a.K + a.splits - 1) / a.splits;
  const std::int64_t k0 = gemv_min<std::int64_t>(a.K, chunk * split);
  const int kc = static_cast<int>(gemv_min<std::int64_t>(a.K, k0 + chunk) - k0);  // this split's channels
  const bool ring = a.ahead_ring;
  const int rs = ring ? a.ahead_rows / NS : a.ahead_rows;  // rows per stage
  const int kp = gemv_min(kc, ring ? NS * rs : rs);        // first pass through shared memory
  C* s_w = reinterpret_cast<C*>(gemv_ahead_smem);          // [a.ahead_rows, tn]; later the groups' partial sums
  float* s_x = reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(gemv_ahead_smem) + a.ahead_x_off);

  // Channels [r0, r1) of the split into ring stage st (16-byte copies, zero-filled past N), as one commit group.
  auto fill = [&](int st, int r0, int r1) {
    C* dst = s_w + static_cast<std::int64_t>(st) * rs * tn;
    for (int i = tid; i < (r1 - r0) * tr; i += T) {
      const int r = i / tr, c = i % tr;
      const std::int64_t col = n0 + static_cast<std::int64_t>(c) * vec;
      const int bytes = static_cast<int>(gemv_max<std::int64_t>(0, gemv_min<std::int64_t>(vec, a.N - col))) * sizeof(C);
      gemv_cp_async16(dst + r * tn + c * vec, bytes ? a.w + (k0 + r0 + r) * a.ldw + col : a.w, bytes);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  };

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (a.cluster) asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");  // phase 0, as gemv_kernel
#endif
  // 1. The shared-memory part: one stage, or the whole ring stage by stage (NS commit groups, empty ones included).
  if (!ring) {
    fill(0, 0, kp);
  } else {
#pragma unroll
    for (int st = 0; st < NS; ++st) fill(st, gemv_min(kp, st * rs), gemv_min(kp, (st + 1) * rs));
  }

  // 2. The register batch: channels kp + g + m * groups, m < mine.
  const std::int64_t col = n0 + static_cast<std::int64_t>(tc) * vec;
  const int nvalid =
      g < groups ? static_cast<int>(gemv_max<std::int64_t>(0, gemv_min<std::int64_t>(vec, a.N - col))) : 0;
  const int nreg = gemv_min(kc - kp, groups * U);  // channels of the register part
  const int mine = nvalid > 0 && g < nreg ? (nreg - g + groups - 1) / groups : 0;
  uint4 wv[U];
  {
    const C* wg = a.w + (k0 + kp + g) * a.ldw + col;
    const std::int64_t step = static_cast<std::int64_t>(groups) * a.ldw;
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (u < mine) wv[u] = gemv_load_w(wg + u * step, nvalid);
  }

  // 3. Let the next kernel launch, then wait for the previous one (x, bias and y may be its outputs).
  trigger_dependents();
  grid_dependency_wait();

  if (a.norm != 0 && a.K <= gemv_stats_regs_max) {
    // Statistics from registers (x read once), x̂ of the split straight from them.
    float xv[8], mu, rstd;
    gemv_stats_regs(a.x, a.K, a.norm == 1, a.eps, xv, mu, rstd, s_red);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const std::int64_t i = tid + static_cast<std::int64_t>(j) * T;
      if (i >= k0 && i < k0 + kc) s_x[i - k0] = (xv[j] - mu) * rstd;
    }
  } else {
    float mu = 0.f, rstd = 1.f;
    if (a.norm != 0) {
      float m1[1], r1[1];
      gemv_row_stats<C, 1>(a, 0, 1, m1, r1, s_red);
      mu = m1[0], rstd = r1[0];
    }
    for (int i = tid; i < kc; i += T) {
      const float v = load_f(a.x[k0 + i]);
      s_x[i] = a.norm != 0 ? (v - mu) * rstd : v;
    }
  }

  float acc[vec];
#pragma unroll
  for (int q = 0; q < vec; ++q) acc[q] = 0.f;
  if (!ring) asm volatile("cp.async.wait_all;" ::: "memory");
  __syncthreads();  // x̂ (and without the ring this thread block's shared-memory rows) is visible
  // 4. The register batch (in flight since before the wait).
#pragma unroll
  for (int u = 0; u < U; ++u)
    if (u < mine) {
      float wf[vec];
      gemv_unpack(wv[u], wf, static_cast<const C*>(nullptr));
      const float xv = s_x[kp + g + u * groups];
#pragma unroll
      for (int q = 0; q < vec; ++q) acc[q] = fmaf(xv, wf[q], acc[q]);
    }
  // 5. The shared-memory part: one stage (the whole tile fits), or the ring: at step it, stage it % NS holds channels
  //    [lo, hi): the first pass for it < NS, then the part after the registers. Waiting for group `it` leaves the
  //    NS - 1 groups committed after it in flight.
  auto rows_from_smem = [&](const C* stage, int lo, int hi) {
    if (nvalid == 0) return;
    const C* sw = stage + tc * vec;
#pragma unroll 4
    for (int r = g; r < hi - lo; r += groups) {
      const uint4 v = *reinterpret_cast<const uint4*>(sw + r * tn);
      float wf[vec];
      gemv_unpack(v, wf, static_cast<const C*>(nullptr));
      const float xv = s_x[lo + r];
#pragma unroll
      for (int q = 0; q < vec; ++q) acc[q] = fmaf(xv, wf[q], acc[q]);
    }
  };
  if (!ring) rows_from_smem(s_w, 0, kp);
  const int tail = kp + nreg;  // first channel of the ring's second pass
  for (int it = 0; ring; ++it) {
    const int lo = it < NS ? gemv_min(kp, it * rs) : tail + (it - NS) * rs;
    const int hi = it < NS ? gemv_min(kp, (it + 1) * rs) : gemv_min(kc, lo + rs);
    if (lo >= hi) break;
    asm volatile("cp.async.wait_group %0;" ::"n"(NS - 1) : "memory");
    __syncthreads();  // every thread's copies of stage it % NS are visible
    rows_from_smem(s_w + static_cast<std::int64_t>(it % NS) * rs * tn, lo, hi);
    const int nlo = tail + it * rs;  // refill this stage with the second pass's chunk it (consumed at it + NS)
    if (nlo < kc) __syncthreads();   // every thread is done with the stage
    fill(it % NS, gemv_min(kc, nlo), gemv_min(kc, nlo + rs));
  }

  // Reduction over the groups (channels side by side): [groups, tn] f32 over the weight buffer, summed in order.
  asm volatile("cp.async.wait_all;" ::: "memory");  // (only empty groups can be left)
  __syncthreads();                                  // every thread is done with s_w
  float* red = reinterpret_cast<float*>(gemv_ahead_smem);
  if (g < groups) {
#pragma unroll
    for (int q = 0; q < vec; ++q) red[g * tn + tc * vec + q] = acc[q];
  }
  __syncthreads();
  auto block_sum = [&](int o) {
    float s = 0.f;
#pragma unroll 8
    for (int gg = 0; gg < groups; ++gg) s += red[gg * tn + o];
    return s;
  };
  auto finish = [&](int o, float s) {
    const std::int64_t n = n0 + o;
    if (n >= a.N) return;
    if (a.bias) s += load_f(a.bias[n]);
    s = gemv_act_f(a.act, s);
    if (a.accumulate) s += load_f(a.y[n]);
    a.y[n] = store_f<C>(s);
  };
  if (!a.cluster) {
    for (int o = tid; o < tn; o += T) finish(o, block_sum(o));
  } else {
    gemv_cluster_reduce(tn, a.splits, split, s_part, block_sum, finish);
  }
}

//! Launch shape of gemv_ahead_kernel: column tiles of tn (a multiple of vec, <= 256 vectors) and K splits (cluster
//! size; power of two unless pinned, >= 64 channels each) so that tiles x splits fill one wave of one (or, if the
//! tiles only fit then, two) blocks per SM with as many busy threads as possible (ties: more splits); then how many
//! channels of a tile fit the shared memory next to x̂ of the split (rows = 4 stages of the ring). ok = false when x̂
//! of one split and 4 rows would not fit (K beyond ~24k per split).
struct gemv_ahead_shape {
  bool ok = false;
  bool all_ahead = false;  // the whole tile is requested before the wait (shared memory + the first register batch)
  int tn = 0, splits = 1, rows = 0;
  std::int64_t tiles = 0;
  std::size_t x_off = 0;  // x̂ after the weight rows (or the groups' partial sums, whichever is larger), 16-aligned
  std::size_t smem = 0;
};
inline gemv_ahead_shape gemv_ahead_pick(std::int64_t N, std::int64_t K, int vec, int elem, int sms, int want_splits) {
  namespace cfg = gemv_ahead_cfg;
  gemv_ahead_shape best;
  double best_score = -1;
  int best_key = -1;
  for (int per_sm : {1, 2})
    for (int sp : {8, 7, 6, 5, 4, 3, 2, 1}) {  // ties: more splits (wider column tiles, longer contiguous rows)
      if (want_splits ? sp != want_splits : (sp & (sp - 1)) != 0 || (sp > 1 && K / sp < 64)) continue;
      const std::int64_t slots = static_cast<std::int64_t>(per_sm) * sms;
      const std::int64_t target = std::max<std::int64_t>(1, slots / sp);
      std::int64_t tn = ((N + target - 1) / target + vec - 1) / vec * vec;
      tn = std::clamp<std::int64_t>(tn, vec, static_cast<std::int64_t>(cfg::threads) * vec);
      if (sp > 1) tn = std::min<std::int64_t>(tn, cfg::max_cluster_cols / vec * vec);
      const std::int64_t tiles = (N + tn - 1) / tn, blocks = tiles * sp;
      const int tr = static_cast<int>(tn / vec), active = cfg::threads / tr * tr;
      const std::int64_t waves = (blocks + slots - 1) / slots;
      const double score = static_cast<double>(blocks) / static_cast<double>(waves * slots) * active / cfg::threads;
      const std::int64_t chunk = (K + sp - 1) / sp;
      const std::size_t xbytes = static_cast<std::size_t>(chunk) * 4;
      const std::size_t red = sizeof(float) * cfg::threads * vec;
      if (xbytes + red + 16 > cfg::smem_bytes) continue;
      const std::size_t avail = cfg::smem_bytes - 16 - xbytes;
      const auto fit = static_cast<std::int64_t>(avail / (static_cast<std::size_t>(tn) * elem));  // rows that fit
      const std::int64_t nreg = static_cast<std::int64_t>(cfg::threads / tr) * cfg::unroll;
      const bool all = chunk <= fit + nreg;  // one stage of shared memory + the register batch hold the tile
      const std::int64_t rows = all ? std::min(chunk, fit) : fit / cfg::stages * cfg::stages;
      if (rows < (all ? 1 : cfg::stages)) continue;
      const std::size_t wbytes = std::max<std::size_t>(static_cast<std::size_t>(rows * tn * elem), red);
      // Order: the whole tile ahead with one block per SM (room for the next kernel's blocks), then with two,
      // then the best partial fit; inside a class the fuller wave.
      const int key = (all ? 2 : 0) + (per_sm == 1 ? 1 : 0);
      if (key < best_key || (key == best_key && score <= best_score)) continue;
      const std::size_t x_off = (wbytes + 15) / 16 * 16;
      best = {true, all, static_cast<int>(tn), sp, static_cast<int>(rows), tiles, x_off, x_off + xbytes};
      best_key = key;
      best_score = score;
    }
  return best;
}

//! Whether gemv_ahead_kernel<C> can run on device `dev`: compiled for sm_90+ (griddepcontrol, clusters; checked once),
//! and its shared-memory limit and carve-out set on that device (function attributes are per device: once each).
template <class C>
bool gemv_ahead_available(int dev) {
  static const bool compiled = [] {
    cudaFuncAttributes fa{};
    const bool ok = cudaFuncGetAttributes(&fa, gemv_ahead_kernel<C>) == cudaSuccess && fa.ptxVersion >= 90;
    (void)cudaGetLastError();
    return ok;
  }();
  static std::atomic<std::uint64_t> ready{0};  // bit d: attributes set on device d (devices 0..63)
  if (!compiled || dev < 0 || dev >= 64) return false;
  const std::uint64_t bit = std::uint64_t{1} << dev;
  if (ready.load(std::memory_order_acquire) & bit) return true;
  // As much of the unified L1 as shared memory as possible: two blocks (of two kernels) per SM.
  const bool ok = cudaFuncSetAttribute(gemv_ahead_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(gemv_ahead_cfg::smem_bytes)) == cudaSuccess &&
                  cudaFuncSetAttribute(gemv_ahead_kernel<C>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                       cudaSharedmemCarveoutMaxShared) == cudaSuccess;
  (void)cudaGetLastError();
  if (ok) ready.fetch_or(bit, std::memory_order_acq_rel);
  return ok;
}

//! Checked mode for explicit lists: one block per row; the first error found is recorded in status[0..3] as
//! (code, row, entry, value): 1 = nnz outside [0, min(cap, K)], 2 = index outside [0, K), 3 = duplicate index.
template <class I>
__global__ void gemv_validate_kernel(const I* idx, const std::int32_t* nnz, std::int64_t cap, std::int64_t ld,
                                     std::int64_t K, unsigned long long* status) {
  extern __shared__ unsigned gemv_bits[];
  const std::int64_t r = blockIdx.x;
  auto report = [&](unsigned long long code, long long pos, long long value) {
    if (atomicCAS(status, 0ull, code) == 0ull) {
      status[1] = static_cast<unsigned long long>(r);
      status[2] = static_cast<unsigned long long>(pos);
      status[3] = static_cast<unsigned long long>(value);
    }
  };
  const long long n = nnz[r];
  if (n < 0 || n > cap || n > K) {
    if (threadIdx.x == 0) report(1, 0, n);
    return;
  }
  const std::int64_t words = (K + 31) / 32;
  for (std::int64_t i = threadIdx.x; i < words; i += blockDim.x) gemv_bits[i] = 0u;
  __syncthreads();
  for (long long p = threadIdx.x; p < n; p += blockDim.x) {
    const I k = idx[r * ld + p];
    if (k < 0 || k >= K) {
      report(2, p, k);
    } else {
      const unsigned bit = 1u << (k % 32);
      if (atomicOr(&gemv_bits[k / 32], bit) & bit) report(3, p, k);
    }
  }
}

template <class T>
struct gemv_cuda_plan {
  gemv_args<cuda_type_t<T>> args;
  dim3 grid;
  int bt = 1;
  bool empty = false;
  bool pdl = false;    // launch with programmatic stream serialization
  bool sm90 = false;   // the device could (griddepcontrol, clusters)
  bool ahead = false;  // gemv_ahead_kernel (dense, b = 1) with `smem` bytes of shared memory
  std::size_t smem = 0;
  unsigned long long* status = nullptr;  // checked mode
};

//! Facts about gemv_kernel<C, BT> that do not change while the process runs: whether its code was compiled for
//! sm_90+ (thread-block clusters available) and how many of its blocks fit on one SM (queried once, then cached).
struct gemv_kernel_info {
  bool clusters = false;
  int blocks_per_sm = 1;
};
template <class C, int BT, bool DX = false>
gemv_kernel_info gemv_kernel_facts() {
  static const gemv_kernel_info info = [] {
    gemv_kernel_info i;
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, gemv_kernel<C, BT, DX>) == cudaSuccess) i.clusters = fa.ptxVersion >= 90;
    int nb = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, gemv_kernel<C, BT, DX>, gemv_cuda_cfg::threads, 0) ==
            cudaSuccess &&
        nb > 0)
      i.blocks_per_sm = nb;
    (void)cudaGetLastError();
    return i;
  }();
  return info;
}

//! Launch shape: threads per row segment (tile width) and K splits (cluster size). From the H100 tuning runs
//! (docs/gemv.md): 1 to 1.75 blocks per SM in one wave is best; power-of-two cluster sizes pack into the GPCs
//! (clusters of 5 left a partial second wave); wider segments (longer DRAM bursts) are preferred as long as they
//! still give >= 0.9 blocks per SM (at 0.79, 1600x6400 ran 1.6x slower with 256-byte segments than with 128-byte
//! ones at 1.5 blocks per SM, in two sessions' tuning runs). Each split keeps >= 64 channels of K (K = 768 gets 8
//! splits). `want_*` (non-zero) pin either choice.
inline void gemv_pick_shape(std::int64_t N, std::int64_t K, std::int64_t btiles, int vec, int sms, int resident,
                            int want_tpr, int want_splits, int& tpr_out, int& splits_out) {
  const std::int64_t target = std::min<std::int64_t>(7 * static_cast<std::int64_t>(sms) / 4, resident);
  const std::int64_t max_sp = std::clamp<std::int64_t>(K / 64, 1, gemv_cuda_cfg::max_splits);
  for (int tpr : {32, 16, 8}) {
    if (want_tpr && tpr != want_tpr) continue;
    const std::int64_t tiles = btiles * ((N + tpr * vec - 1) / (tpr * vec));
    int sp = 1;
    if (want_splits) {
      sp = want_splits;
    } else {
      while (sp * 2 <= max_sp && tiles * sp * 2 <= target) sp *= 2;
    }
    tpr_out = tpr;
    splits_out = sp;
    if (want_tpr || tiles * sp >= 9 * static_cast<std::int64_t>(sms) / 10) return;
  }
}

//! Validates what only the CUDA path needs, picks the launch shape and carves the workspace (no launch yet).
template <class T>
gemv_cuda_plan<T> gemv_cuda_prepare(const char* op, const gemv_problem<T>& p, workspace ws) {
  static_assert(dtype_traits<T>::cuda_ok, "frugal::gemv on CUDA supports float, frugal::half, frugal::bfloat16");
  namespace cfg = gemv_cuda_cfg;
  using C = cuda_type_t<T>;
  constexpr int vec = 16 / sizeof(T);
  gemv_cuda_plan<T> plan;
  if (p.b == 0 || p.N == 0) {
    plan.empty = true;
    return plan;
  }
  if (p.K > 0) {
    FRUGAL_CHECK(reinterpret_cast<std::uintptr_t>(p.w.data) % 16 == 0 &&
                     (p.w.ld * static_cast<std::int64_t>(sizeof(T))) % 16 == 0,
                 op,
                 "the CUDA path reads weights in 16-byte vectors: w.data (=", reinterpret_cast<const void*>(p.w.data),
                 ") must be 16-byte aligned and w.ld (=", p.w.ld, ") a multiple of ", vec,
                 " elements (pad the rows, e.g. to_channel_major into a wider buffer)");
  }
  FRUGAL_CHECK((p.N + 8 * vec - 1) / (8 * vec) <= 65535, op, "N (=", p.N, ") exceeds the supported ", 65535 * 8 * vec,
               " outputs");
  FRUGAL_CHECK(p.K <= std::numeric_limits<std::int32_t>::max(), op, "K (=", p.K, ") exceeds 2^31 - 1");
  FRUGAL_CHECK(p.opt.splits >= 0 && p.opt.splits <= cfg::max_splits, op, "options.splits (=", p.opt.splits,
               ") must be in [0, ", cfg::max_splits, "]");
  FRUGAL_CHECK(p.opt.segment_bytes == 0 || p.opt.segment_bytes == 128 || p.opt.segment_bytes == 256 ||
                   p.opt.segment_bytes == 512,
               op, "options.segment_bytes (=", p.opt.segment_bytes, ") must be 0, 128, 256 or 512");

  // Batch tiles of up to 4 rows: wider tiles need BT x 8 accumulator registers per thread and fall to one block
  // per SM; several 4-row tiles of the same weights run side by side (batch tile = fastest grid index), so the
  // repeated weight reads are mostly served by L2.
  plan.bt = p.b <= 1 ? 1 : p.b <= 2 ? 2 : 4;
  FRUGAL_CHECK(p.topk_k == 0 || (plan.bt == 1 && p.mode == gemv_input::threshold), op,
               "internal: the in-kernel top-k select needs the threshold form with b = 1 (b=", p.b, ")");
  const std::int64_t btiles = (p.b + plan.bt - 1) / plan.bt;
  FRUGAL_CHECK(btiles <= std::numeric_limits<std::int32_t>::max(), op, "b (=", p.b, ") is too large");

  int dev = 0, major = 0, sms = 0;
  FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), op);
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), op);
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), op);

  const bool dx = plan.bt == 1 && p.mode == gemv_input::dense;
  const gemv_kernel_info info = dx             ? gemv_kernel_facts<C, 1, true>()
                                : plan.bt == 1 ? gemv_kernel_facts<C, 1>()
                                : plan.bt == 2 ? gemv_kernel_facts<C, 2>()
                                               : gemv_kernel_facts<C, 4>();
  int tpr = 8, splits = 1;
  gemv_pick_shape(p.N, p.K, btiles, vec, sms, info.blocks_per_sm * sms, p.opt.segment_bytes / 16, p.opt.splits, tpr,
                  splits);
  const std::int64_t col_tiles = (p.N + tpr * vec - 1) / (tpr * vec);
  const bool cluster = splits > 1 && major >= 9 && info.clusters;

  workspace_carver carver(ws);
  if (p.mode == gemv_input::list && p.opt.checked) plan.status = carver.take<unsigned long long>(4);
  float* partials = nullptr;
  if (splits > 1 && !cluster) {
    if (ws.data == nullptr) {
      splits = 1;  // no workspace given: one split per tile (slower for small N, still correct)
    } else {
      partials = carver.take<float>(static_cast<std::size_t>(splits * p.b * p.N));
    }
  }
  carver.check(op);

  auto& a = plan.args;
  a.mode = static_cast<int>(p.mode);
  a.x = as_cuda(p.x.data);
  a.ldx = p.x.ld;
  a.idx = p.list.indices;
  a.val = as_cuda(p.list.values);
  a.nnz = p.list.nnz;
  a.cap = p.list.cap;
  a.ldl = p.list.ld;
  a.t_rows = p.t_rows;
  a.t_all = p.t_all;
  a.w = as_cuda(p.w.data);
  a.ldw = p.w.ld;
  a.bias = as_cuda(p.bias);
  a.y = as_cuda(p.y.data);
  a.ldy = p.y.ld;
  a.partials = partials;
  a.b = p.b;
  a.K = p.K;
  a.N = p.N;
  a.splits = splits;
  a.tpr = tpr;
  a.norm = p.mode == gemv_input::list ? 0 : static_cast<int>(p.opt.norm);
  a.eps = p.opt.eps;
  a.act = static_cast<int>(p.opt.act);
  a.select_raw = p.select_raw;
  a.topk_k = p.mode == gemv_input::threshold ? p.topk_k : 0;
  a.accumulate = p.opt.accumulate;
  a.cluster = cluster;
  plan.grid = dim3(static_cast<unsigned>(btiles), static_cast<unsigned>(splits), static_cast<unsigned>(col_tiles));
  plan.sm90 = major >= 9;
  plan.pdl = p.opt.pdl && plan.sm90;

  // Batch-1 dense on sm_90: the weights-ahead kernel when asked for (or automatically in PDL chains).
  const bool want_ahead = p.opt.weights_ahead == 1 ||
                          (p.opt.weights_ahead < 0 && p.opt.pdl && p.opt.splits == 0 && p.opt.segment_bytes == 0);
  if (dx && want_ahead && plan.sm90 && p.K > 0 && gemv_ahead_available<C>(dev)) {
    const gemv_ahead_shape sh = gemv_ahead_pick(p.N, p.K, vec, sizeof(T), sms, p.opt.splits);
    // Automatic: when the whole tile goes out before the wait, or for wide, short matrices (LM heads: N >= 16 K),
    // where the ring streams better than gemv_kernel's one-split tiles (H100, f16, 50257x768: 45 vs 71 us). For
    // LLaMA-like shapes the ring (~75 KB in flight per SM) is slower than gemv_kernel's two blocks per SM
    // (4096x11008 f16: 53.5 vs 41.7 us), docs/gemv.md.
    const bool wide = p.N >= 16 * p.K;
    if (sh.ok && (sh.all_ahead || wide || p.opt.weights_ahead == 1)) {
      a.splits = sh.splits;
      a.cluster = sh.splits > 1;
      a.partials = nullptr;
      a.ahead_tn = sh.tn;
      a.ahead_rows = sh.rows;
      a.ahead_ring = !sh.all_ahead;
      a.ahead_x_off = static_cast<int>(sh.x_off);
      plan.grid = dim3(1, static_cast<unsigned>(sh.splits), static_cast<unsigned>(sh.tiles));
      plan.ahead = true;
      plan.smem = sh.smem;
    }
  }
  return plan;
}

//! Launches gemv_kernel<C, BT, DX>, or gemv_ahead_kernel<C> with `smem` bytes of dynamic shared memory.
template <class C, int BT, bool DX = false>
void gemv_cuda_launch_bt(cudaStream_t stream, const char* op, const gemv_args<C>& a, dim3 grid, bool pdl,
                         bool ahead = false, std::size_t smem = 0) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(gemv_cuda_cfg::threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (a.cluster) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = 1;
    attr[n].val.clusterDim.y = static_cast<unsigned>(a.splits);
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  if (pdl) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cfg.attrs = n ? attr : nullptr;
  cfg.numAttrs = n;
  if (ahead)
    cuda_check(cudaLaunchKernelEx(&cfg, gemv_ahead_kernel<C>, a), op, "launching gemv_ahead_kernel");
  else
    cuda_check(cudaLaunchKernelEx(&cfg, gemv_kernel<C, BT, DX>, a), op, "launching gemv_kernel");
}

template <class T>
void gemv_cuda_launch(cuda_t tag, const char* op, const gemv_problem<T>& p, const gemv_cuda_plan<T>& plan) {
  using C = cuda_type_t<T>;
  if (plan.empty) return;
  const cudaStream_t s = tag.stream;
  if (plan.status) {  // checked: validate the lists, wait for the verdict, throw before anything is written
    FRUGAL_CUDA_CHECK(cudaMemsetAsync(plan.status, 0, 4 * sizeof(unsigned long long), s), op);
    const std::size_t smem = static_cast<std::size_t>((p.K + 31) / 32) * 4;
    FRUGAL_CHECK(smem <= 227 * 1024, op, "checked mode supports K up to ", 227 * 1024 * 8, " (K=", p.K, ")");
    if (smem > 48 * 1024)
      FRUGAL_CUDA_CHECK(cudaFuncSetAttribute(gemv_validate_kernel<std::int32_t>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                        op);
    gemv_validate_kernel<std::int32_t><<<static_cast<unsigned>(p.b), 256, smem, s>>>(
        p.list.indices, p.list.nnz, p.list.cap, p.list.ld, p.K, plan.status);
    check_launch(op, "gemv_validate_kernel");
    unsigned long long st[4] = {0, 0, 0, 0};
    FRUGAL_CUDA_CHECK(cudaMemcpyAsync(st, plan.status, sizeof(st), cudaMemcpyDeviceToHost, s), op);
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(s), op);
    const auto row = static_cast<long long>(st[1]), pos = static_cast<long long>(st[2]);
    const auto val = static_cast<long long>(st[3]);
    FRUGAL_CHECK(st[0] != 1, op, "nnz[", row, "] (=", val, ") must be in [0, min(cap=", p.list.cap, ", K=", p.K, ")]");
    FRUGAL_CHECK(st[0] != 2, op, "index ", val, " at row ", row, ", entry ", pos, " is outside [0, K=", p.K, ")");
    FRUGAL_CHECK(st[0] != 3, op, "index ", val, " appears twice in row ", row, " (entry ", pos, ")");
  }
  const auto& a = plan.args;
  switch (plan.bt) {
    case 1:
      if (a.mode == static_cast<int>(gemv_input::dense))
        gemv_cuda_launch_bt<C, 1, true>(s, op, a, plan.grid, plan.pdl, plan.ahead, plan.smem);
      else
        gemv_cuda_launch_bt<C, 1>(s, op, a, plan.grid, plan.pdl);
      break;
    case 2:
      gemv_cuda_launch_bt<C, 2>(s, op, a, plan.grid, plan.pdl);
      break;
    default:
      gemv_cuda_launch_bt<C, 4>(s, op, a, plan.grid, plan.pdl);
      break;
  }
  if (a.splits > 1 && !a.cluster) {
    const std::int64_t n = a.b * a.N;
    gemv_reduce_kernel<C><<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(a);
    check_launch(op, "gemv_reduce_kernel");
  }
}

template <class T>
void gemv_cuda(cuda_t tag, const char* op, const gemv_problem<T>& p, workspace ws) {
  gemv_cuda_launch(tag, op, p, gemv_cuda_prepare(op, p, ws));
}

}  // namespace detail
FRUGAL_NAMESPACE_END
