// frugal/gemv/detail/gemv_cuda.cuh — CUDA implementation of every gemv form (nvcc only).
//
// One kernel, gemv_kernel<C, BT>, for all input forms (dense, masked, threshold/top-k, explicit lists), batch tiles
// of BT in {1, 2, 4} rows. Grid (batch tiles, K splits, column tiles); 256 threads per block.
//  1. Staging (every form; dense input keeps every channel): the block's slice of K (or of the tile's concatenated entry
//     lists) is walked `stage` = 1024 candidates at a time. Each thread evaluates 4 consecutive candidates for all
//     BT rows (keep rule, values as f32); a block exclusive scan (cub::BlockScan) compacts the kept ones into
//     shared memory: channel ids and a [BT, stage] value table (0 where a row dropped the channel).
//  2. Streaming: thread (g = tid / tpr, t = tid % tpr) owns 16 bytes of the tile's columns; tpr = 8, 16 or 32
//     threads cover a 128/256/512-byte segment of a weight row, 256/tpr channels go side by side. Each thread
//     issues 16 (BT = 1) or 8 independent 16-byte L1-bypassing loads of kept rows before consuming them and
//     accumulates BT x (16 / sizeof(T)) f32 sums.
//  3. Reduction: warp shuffles (groups of a warp that share columns), a fixed tree over the 8 warps in shared
//     memory, then across the K splits of the tile — on sm_90 the splits are one thread-block cluster and block
//     `rank` sums slice `rank` of the tile over all splits' shared memory (DSMEM) in split order; before sm_90 the
//     partials go to the workspace and gemv_reduce_kernel sums them. Fixed order everywhere: bitwise reproducible.
//  4. Epilogue in f32: + bias, + y (accumulate), one rounding to the output type.
// No allocation, no synchronisation (except the documented `checked` validation), graph-capturable.
#pragma once

#if !defined(__CUDACC__)
#error "frugal/gemv/detail/gemv_cuda.cuh is CUDA code: include frugal/gemv/gemv.hpp from a .cu file."
#endif

#include <cooperative_groups.h>

#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../../core/detail/cuda_common.cuh"
#include "../../core/workspace.hpp"
#include "../gemv_types.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

namespace gemv_cuda_cfg {
inline constexpr int threads = 256;
inline constexpr int stage = 1024;                 // candidates staged per round
inline constexpr int per_thread = stage / threads;
inline constexpr int max_splits = 8;               // portable cluster size
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
  int tpr = 8;  // threads per weight-row segment (8, 16, 32: 128, 256, 512 bytes)
  bool accumulate = false;
  bool cluster = false;
};

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

template <class C, int BT>
__global__ void __launch_bounds__(gemv_cuda_cfg::threads, 2) gemv_kernel(const gemv_args<C> a) {
  namespace cfg = gemv_cuda_cfg;
  constexpr int unroll = BT == 1 ? 16 : 8;  // independent 16-byte weight loads in flight per thread
  constexpr int vec = 16 / sizeof(C);
  constexpr int max_tn = 32 * vec;  // widest tile: one warp per row segment (512 bytes)
  static_assert(4 * BT * max_tn <= BT * cfg::stage, "reduction scratch must fit in the value table");
  using scan_t = cub::BlockScan<int, cfg::threads>;

  __shared__ std::int32_t s_ids[cfg::stage];
  __shared__ float s_vals[BT * cfg::stage];  // [BT, stage]; later [4, BT, tn] reduction scratch
  __shared__ float s_part[BT * max_tn];      // this block's partial tile [BT, tn]
  __shared__ typename scan_t::TempStorage s_scan;
  __shared__ long long s_pref[BT + 1];       // list mode: prefix sums of the tile rows' nnz

  const int tid = threadIdx.x;
  const int tpr = a.tpr;                // threads per row segment: 8, 16 or 32
  const int groups = cfg::threads / tpr;  // channels processed side by side
  const int tn = tpr * vec;             // columns per tile
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * BT;
  const int nr = static_cast<int>(gemv_min<std::int64_t>(BT, a.b - r0));
  const int split = blockIdx.y;
  const std::int64_t n_tile = static_cast<std::int64_t>(blockIdx.z) * tn;
  const bool list = a.mode == static_cast<int>(gemv_input::list);
  const bool dense = a.mode == static_cast<int>(gemv_input::dense);

  // This split's range: channels [begin, end) of K, or entries [begin, end) of the tile's concatenated lists.
  std::int64_t begin, end;
  if (list) {
    if (tid == 0) {
      long long acc = 0;
      s_pref[0] = 0;
      for (int r = 0; r < BT; ++r) {
        long long n = 0;
        if (r < nr) n = gemv_min<long long>(gemv_max<long long>(a.nnz[r0 + r], 0), a.cap);  // clamped: memory-safe
        acc += n;
        s_pref[r + 1] = acc;
      }
    }
    __syncthreads();
    const long long total = s_pref[BT];
    begin = total * split / a.splits;
    end = total * (split + 1) / a.splits;
  } else {
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

  // Streams the `cnt` staged channels: 16 (BT = 1) or 8 weight-row loads in flight per thread, then the FMAs.
  auto stream = [&](int cnt) {
    if (nvalid == 0) return;
    for (int i = g; i < cnt; i += groups * unroll) {
      uint4 wv[unroll];
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        const int ii = i + u * groups;
        if (ii < cnt) wv[u] = gemv_load_w(wcol + static_cast<std::int64_t>(s_ids[ii]) * a.ldw, nvalid);
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

  // Every form goes through staging (dense input keeps every channel): measured on H100, this beats loading x
  // next to the weights in the streaming loop for 14 of 16 dense shapes (docs/gemv.md).
  {
    float thr[BT];  // threshold mode: per-row keep bounds
#pragma unroll
    for (int r = 0; r < BT; ++r) thr[r] = (a.t_rows && r < nr) ? a.t_rows[r0 + r] : a.t_all;
    const bool masked = a.mode == static_cast<int>(gemv_input::masked);
    for (std::int64_t s0 = begin; s0 < end; s0 += cfg::stage) {
      const int slen = static_cast<int>(gemv_min<std::int64_t>(cfg::stage, end - s0));
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
            keep[j] = dense;
#pragma unroll
            for (int r = 0; r < BT; ++r) {
              if (r < nr) {
                const float xv = load_f(a.x[(r0 + r) * a.ldx + c]);
                const bool k = dense || (masked ? xv != 0.f : (isnan(xv) || fabsf(xv) >= thr[r]));
                v[j][r] = k ? xv : 0.f;
                keep[j] |= k;
              }
            }
          }
        }
        kept += keep[j] ? 1 : 0;
      }
      int off, cnt;
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
      stream(cnt);
      __syncthreads();
    }
  }

  // Reduce: the groups of a warp that share columns (shuffles), then the 8 warps as a fixed tree in shared memory.
  for (int off = tpr; off < 32; off *= 2)
#pragma unroll
    for (int r = 0; r < BT; ++r)
#pragma unroll
      for (int q = 0; q < vec; ++q) acc[r][q] += __shfl_xor_sync(0xffffffffu, acc[r][q], off);
  const int lane = tid % 32, warp = tid / 32;
  float* red = s_vals;  // [4, BT, tn]
  __syncthreads();
  for (int h = cfg::threads / 64; h >= 1; h /= 2) {
    if (warp >= h && warp < 2 * h && lane < tpr) {
#pragma unroll
      for (int r = 0; r < BT; ++r)
#pragma unroll
        for (int q = 0; q < vec; ++q) red[((warp - h) * BT + r) * tn + lane * vec + q] = acc[r][q];
    }
    __syncthreads();
    if (warp < h && lane < tpr) {
#pragma unroll
      for (int r = 0; r < BT; ++r)
#pragma unroll
        for (int q = 0; q < vec; ++q) acc[r][q] += red[(warp * BT + r) * tn + lane * vec + q];
    }
    __syncthreads();
  }
  if (warp == 0 && lane < tpr) {
#pragma unroll
    for (int r = 0; r < BT; ++r)
#pragma unroll
      for (int q = 0; q < vec; ++q) s_part[r * tn + lane * vec + q] = acc[r][q];
  }

  auto finish = [&](int o, float s) {  // o = r * tn + column in tile
    const int r = o / tn;
    const std::int64_t n = n_tile + o % tn;
    if (r >= nr || n >= a.N) return;
    C* yp = a.y + (r0 + r) * a.ldy + n;
    if (a.bias) s += load_f(a.bias[n]);
    if (a.accumulate) s += load_f(*yp);
    *yp = store_f<C>(s);
  };

  if (a.splits == 1) {
    __syncthreads();
    for (int o = tid; o < BT * tn; o += cfg::threads) finish(o, s_part[o]);
  } else if (a.cluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();
    const int rank = static_cast<int>(cluster.block_rank());
    const int per = (BT * tn + a.splits - 1) / a.splits;
    const int o0 = rank * per, o1 = min(BT * tn, o0 + per);
    for (int o = o0 + tid; o < o1; o += cfg::threads) {
      float s = 0.f;
      for (int c = 0; c < a.splits; ++c) s += cluster.map_shared_rank(s_part, c)[o];
      finish(o, s);
    }
    cluster.sync();  // keep this block's shared memory alive until every rank has read it
#else
    __trap();  // the host never asks for clusters from code compiled for < sm_90
#endif
  } else {
    __syncthreads();
    for (int o = tid; o < BT * tn; o += cfg::threads) {
      const int r = o / tn;
      const std::int64_t n = n_tile + o % tn;
      if (r < nr && n < a.N) a.partials[(split * a.b + r0 + r) * a.N + n] = s_part[o];
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
  if (a.accumulate) s += load_f(*yp);
  *yp = store_f<C>(s);
}

//! Checked mode for explicit lists: one block per row; the first error found is recorded in status[0..3] as
//! (code, row, entry, value): 1 = nnz outside [0, min(cap, K)], 2 = index outside [0, K), 3 = duplicate index.
template <class I>
__global__ void gemv_validate_kernel(const I* idx, const std::int32_t* nnz, std::int64_t cap,
                                     std::int64_t ld, std::int64_t K, unsigned long long* status) {
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
  unsigned long long* status = nullptr;  // checked mode
};

//! Facts about gemv_kernel<C, BT> that do not change while the process runs: whether its code was compiled for
//! sm_90+ (thread-block clusters available) and how many of its blocks fit on one SM (queried once, then cached).
struct gemv_kernel_info {
  bool clusters = false;
  int blocks_per_sm = 1;
};
template <class C, int BT>
gemv_kernel_info gemv_kernel_facts() {
  static const gemv_kernel_info info = [] {
    gemv_kernel_info i;
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, gemv_kernel<C, BT>) == cudaSuccess) i.clusters = fa.ptxVersion >= 90;
    int nb = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, gemv_kernel<C, BT>, gemv_cuda_cfg::threads, 0) ==
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
//! still give >= 0.75 blocks per SM. Each split keeps >= 128 channels of K. `want_*` (non-zero) pin either choice.
inline void gemv_pick_shape(std::int64_t N, std::int64_t K, std::int64_t btiles, int vec, int sms, int resident,
                            int want_tpr, int want_splits, int& tpr_out, int& splits_out) {
  const std::int64_t target = std::min<std::int64_t>(7 * static_cast<std::int64_t>(sms) / 4, resident);
  const std::int64_t max_sp = std::clamp<std::int64_t>(K / 128, 1, gemv_cuda_cfg::max_splits);
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
    if (want_tpr || tiles * sp >= 3 * static_cast<std::int64_t>(sms) / 4) return;
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
                 op, "the CUDA path reads weights in 16-byte vectors: w.data (=",
                 reinterpret_cast<const void*>(p.w.data), ") must be 16-byte aligned and w.ld (=", p.w.ld,
                 ") a multiple of ", vec, " elements (pad the rows, e.g. to_channel_major into a wider buffer)");
  }
  FRUGAL_CHECK((p.N + 8 * vec - 1) / (8 * vec) <= 65535, op, "N (=", p.N, ") exceeds the supported ",
               65535 * 8 * vec, " outputs");
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
  const std::int64_t btiles = (p.b + plan.bt - 1) / plan.bt;
  FRUGAL_CHECK(btiles <= std::numeric_limits<std::int32_t>::max(), op, "b (=", p.b, ") is too large");

  int dev = 0, major = 0, sms = 0;
  FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), op);
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), op);
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), op);

  const gemv_kernel_info info = plan.bt == 1   ? gemv_kernel_facts<C, 1>()
                                : plan.bt == 2 ? gemv_kernel_facts<C, 2>()
                                               : gemv_kernel_facts<C, 4>();
  int tpr = 8, splits = 1;
  gemv_pick_shape(p.N, p.K, btiles, vec, sms, info.blocks_per_sm * sms, p.opt.segment_bytes / 16, p.opt.splits,
                  tpr, splits);
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
  a.accumulate = p.opt.accumulate;
  a.cluster = cluster;
  plan.grid = dim3(static_cast<unsigned>(btiles), static_cast<unsigned>(splits), static_cast<unsigned>(col_tiles));
  return plan;
}

template <class C, int BT>
void gemv_cuda_launch_bt(cudaStream_t stream, const char* op, const gemv_args<C>& a, dim3 grid) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(gemv_cuda_cfg::threads);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  if (a.cluster) {
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = static_cast<unsigned>(a.splits);
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  cuda_check(cudaLaunchKernelEx(&cfg, gemv_kernel<C, BT>, a), op, "launching gemv_kernel");
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
      FRUGAL_CUDA_CHECK(cudaFuncSetAttribute(gemv_validate_kernel<std::int32_t>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(smem)),
                        op);
    gemv_validate_kernel<std::int32_t><<<static_cast<unsigned>(p.b), 256, smem, s>>>(p.list.indices, p.list.nnz, p.list.cap,
                                                                       p.list.ld, p.K, plan.status);
    check_launch(op, "gemv_validate_kernel");
    unsigned long long st[4] = {0, 0, 0, 0};
    FRUGAL_CUDA_CHECK(cudaMemcpyAsync(st, plan.status, sizeof(st), cudaMemcpyDeviceToHost, s), op);
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(s), op);
    const auto row = static_cast<long long>(st[1]), pos = static_cast<long long>(st[2]);
    const auto val = static_cast<long long>(st[3]);
    FRUGAL_CHECK(st[0] != 1, op, "nnz[", row, "] (=", val, ") must be in [0, min(cap=", p.list.cap, ", K=", p.K,
                 ")]");
    FRUGAL_CHECK(st[0] != 2, op, "index ", val, " at row ", row, ", entry ", pos, " is outside [0, K=", p.K, ")");
    FRUGAL_CHECK(st[0] != 3, op, "index ", val, " appears twice in row ", row, " (entry ", pos, ")");
  }
  const auto& a = plan.args;
  switch (plan.bt) {
    case 1: gemv_cuda_launch_bt<C, 1>(s, op, a, plan.grid); break;
    case 2: gemv_cuda_launch_bt<C, 2>(s, op, a, plan.grid); break;
    default: gemv_cuda_launch_bt<C, 4>(s, op, a, plan.grid); break;
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
