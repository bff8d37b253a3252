// frugal/sparsify/detail/topk_cuda.cuh — CUDA top-k by magnitude: one-pass radix select, one block per row.
//
// topk_kernel (one launch, grid = rows, 512 threads per row). Every thread works on whole 16-byte vectors (4 f32 or
// 8 f16/bf16 keys), so each pass is a few wide loads and independent instructions per thread, not a chain of
// per-element latencies.
//  1. The row is read once (16-byte loads when aligned), kept in shared memory when it fits (staged; otherwise later
//     passes re-read it through L1/L2), and the top 11-bit digit of every magnitude key (topk_keys.hpp) is counted
//     into a shared histogram with fire-and-forget shared atomics (equal neighbouring digits of a thread's vector are
//     merged into one atomic, which keeps runs of ties, e.g. ReLU zeros, from serialising).
//  2. A CUB block scan over the 2048 buckets, from the top, finds the bucket of the k-th largest key. If that bucket
//     is taken whole, or all key bits are resolved, the cut is known; else the next 11 bits of the keys inside that
//     bucket are counted (f32: at most 3 histogram passes, f16/bf16: 2; random f32 rows usually stop after 2).
//  3. Output. select: the k-th key (the resolved prefix, or a block min over the bucket). mask without a tie to
//     break: one elementwise pass. Otherwise an ordered compaction: each warp owns a contiguous slice of vectors,
//     counts the keys above / equal to the cut, the warps exchange counts through shared memory, and a second pass
//     ranks each lane's kept keys with warp shuffles and writes them at their rank, so the output is in ascending
//     index order and ties are kept lowest index first, exactly as on the CPU.
// No workspace, no allocation, no host synchronisation (works under CUDA Graph capture). The kernel moves raw bits
// (it never does arithmetic on values), so NaN payloads and signed zeros are copied exactly.
//
// threshold_mask_kernel: one block per row, 16-byte loads/stores when aligned, the threshold turned into a key
// (topk_threshold_key), and a CUB block reduction for the count.
#pragma once

#if !defined(__CUDACC__)
#error "frugal/sparsify/detail/topk_cuda.cuh is CUDA code: include <frugal/sparsify/topk.hpp> from a .cu file."
#endif

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <cstdint>
#include <cstring>

#include "../../core/detail/cuda_common.cuh"
#include "../../core/view.hpp"
#include "topk_keys.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

enum class topk_cuda_mode : int { indices = 0, mask = 1, select = 2 };

template <class K>
struct topk_cuda_params {
  const K* x;          // [rows, ldx] raw bits
  std::int64_t ldx;
  int n, k;
  topk_cuda_mode mode;
  bool staged;         // row kept in dynamic shared memory
  std::int32_t* idx;   // [rows, ldi]   (mode indices)
  std::int64_t ldi;
  K* val;              // [rows, ldv]   (mode indices)
  std::int64_t ldv;
  K* y;                // [rows, ldy]   (mode mask)
  std::int64_t ldy;
  float* kth;          // [rows]        (mode select)
};

inline constexpr int topk_block = 512;                                 // threads per row
inline constexpr std::size_t topk_staged_max_bytes = 64 * 1024;        // rows up to this size live in shared memory
inline constexpr std::size_t topk_dyn_smem_default_max = 24 * 1024;    // above: opt in to more dynamic smem

//! Counts the digits of one thread's vector of V keys (d < 0: nothing to count). Equal neighbouring digits are
//! merged into one atomic, so runs of ties (zeros after a ReLU, all-equal rows) cost V times fewer conflicting
//! shared-memory atomics. The atomics' results are unused, so they issue back to back.
template <int V>
__device__ __forceinline__ void topk_count(int* hist, const int (&d)[V]) {
  int run_d = d[0], run_c = 1;
#pragma unroll
  for (int j = 1; j < V; ++j) {
    if (d[j] == run_d) {
      ++run_c;
    } else {
      if (run_d >= 0) atomicAdd(hist + run_d, run_c);
      run_d = d[j];
      run_c = 1;
    }
  }
  if (run_d >= 0) atomicAdd(hist + run_d, run_c);
}

__device__ __forceinline__ int topk_warp_sum(int v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_add_sync(0xffffffffu, v);
#else
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
#endif
}

//! A 16-byte vector <-> its 4 (32-bit) or 8 (16-bit) elements, with register moves only (memcpy of a 16-bit array
//! would go through local memory).
template <class K>
__device__ __forceinline__ void topk_unpack(const uint4& r, K (&e)[16 / sizeof(K)]) {
  const unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(K) == 4) {
      e[i] = w[i];
    } else {
      e[2 * i] = static_cast<K>(w[i] & 0xffffu);
      e[2 * i + 1] = static_cast<K>(w[i] >> 16);
    }
  }
}
template <class K>
__device__ __forceinline__ uint4 topk_pack(const K (&e)[16 / sizeof(K)]) {
  unsigned w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(K) == 4) {
      w[i] = e[i];
    } else {
      w[i] = static_cast<unsigned>(e[2 * i]) | (static_cast<unsigned>(e[2 * i + 1]) << 16);
    }
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

//! Exclusive prefix sum over the 32 lanes of a warp; `total` gets the warp's sum.
__device__ __forceinline__ int topk_warp_exclusive_sum(int v, int& total) {
  const int lane = threadIdx.x & 31;
  int inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += t;
  }
  total = __shfl_sync(0xffffffffu, inc, 31);
  return inc - v;
}

template <class T, int Block>
__global__ void __launch_bounds__(Block) topk_kernel(topk_cuda_params<topk_bits_t<T>> p) {
  using K = topk_bits_t<T>;
  constexpr int key_bits = topk_key_traits<T>::key_bits;
  constexpr int nbins = 1 << topk_radix_bits;
  constexpr int warps = Block / 32;
  constexpr int bins_per_thread = nbins / Block;
  constexpr int V = 16 / sizeof(K);  // elements per 16-byte vector: 4 (f32), 8 (f16, bf16)
  static_assert(nbins % Block == 0 && Block % 32 == 0, "block size must divide 2048");
  using scan_t = cub::BlockScan<int, Block>;

  __shared__ int hist[2][nbins];
  __shared__ typename scan_t::TempStorage scan_tmp;
  __shared__ int s_bucket, s_needed, s_count;
  __shared__ int s_warp_gt[warps], s_warp_eq[warps];
  __shared__ unsigned s_warp_min[warps];
  extern __shared__ __align__(16) unsigned char topk_smem[];
  uint4* sxv = reinterpret_cast<uint4*>(topk_smem);  // the staged row, in 16-byte vectors

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n = p.n;
  const int nvec = (n + V - 1) / V;
  const bool staged = p.staged;
  const std::int64_t row = blockIdx.x;
  const K* xrow = p.x + row * p.ldx;
  const bool x_aligned = (reinterpret_cast<std::uintptr_t>(xrow) & 15) == 0;

  // Vector q holds elements [q*V, q*V + V); elements at or past n read as 0 and are never counted.
  auto load_global = [&](int q) -> uint4 {
    if (x_aligned && (q + 1) * V <= n) return reinterpret_cast<const uint4*>(xrow)[q];
    K e[V];
#pragma unroll
    for (int j = 0; j < V; ++j) e[j] = q * V + j < n ? xrow[q * V + j] : K(0);
    return topk_pack<K>(e);
  };
  auto load = [&](int q) -> uint4 { return staged ? sxv[q] : load_global(q); };
  auto unpack = [](const uint4& r, K (&e)[V]) { topk_unpack<K>(r, e); };

  for (int j = tid; j < 2 * nbins; j += Block) (&hist[0][0])[j] = 0;
  __syncthreads();

  // ---- pass 1: read the row (stage it) and count the top digit ---------------------------------------------------
  int shift = key_bits > topk_radix_bits ? key_bits - topk_radix_bits : 0;
#pragma unroll(V == 4 ? 2 : 1)
  for (int q = tid; q < nvec; q += Block) {
    const uint4 r = load_global(q);
    if (staged) sxv[q] = r;
    K e[V];
    unpack(r, e);
    int d[V];
#pragma unroll
    for (int j = 0; j < V; ++j) d[j] = q * V + j < n ? static_cast<int>(topk_key<T>(e[j]) >> shift) : -1;
    topk_count<V>(hist[0], d);
  }
  __syncthreads();

  // ---- select the bucket of the k-th key; refine with the next digit until the cut is known ----------------------
  int needed = p.k, count = 0, cur = 0, prev = key_bits;
  K prefix = 0;
  for (;;) {
    int local[bins_per_thread];
    int sum = 0;
#pragma unroll
    for (int j = 0; j < bins_per_thread; ++j) {  // thread 0 holds the top bins
      local[j] = hist[cur][nbins - 1 - (tid * bins_per_thread + j)];
      sum += local[j];
    }
    int above = 0;
    scan_t(scan_tmp).ExclusiveSum(sum, above);
    if (above < needed && needed <= above + sum) {
#pragma unroll
      for (int j = 0; j < bins_per_thread; ++j) {
        if (above + local[j] >= needed) {
          s_bucket = nbins - 1 - (tid * bins_per_thread + j);
          s_needed = needed - above;
          s_count = local[j];
          break;
        }
        above += local[j];
      }
    }
    for (int j = tid; j < nbins; j += Block) hist[cur ^ 1][j] = 0;  // last read one pass ago
    __syncthreads();
    const int dbits = prev - shift;
    prefix = static_cast<K>(static_cast<K>(prefix << dbits) | static_cast<K>(s_bucket));
    needed = s_needed;
    count = s_count;
    if (count == needed || shift == 0) break;

    prev = shift;
    shift = shift > topk_radix_bits ? shift - topk_radix_bits : 0;
    cur ^= 1;
    const int dmask = (1 << (prev - shift)) - 1;
#pragma unroll(V == 4 ? 2 : 1)
    for (int q = tid; q < nvec; q += Block) {
      K e[V];
      unpack(load(q), e);
      int d[V];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const K key = topk_key<T>(e[j]);
        d[j] = q * V + j < n && static_cast<K>(key >> prev) == prefix ? static_cast<int>(key >> shift) & dmask : -1;
      }
      topk_count<V>(hist[cur], d);
    }
    __syncthreads();
  }
  // Cut: keep (key >> shift) > prefix, and the first `needed` (lowest index) with (key >> shift) == prefix.
  const int quota = needed;

  if (p.mode == topk_cuda_mode::select) {
    unsigned kth = prefix;
    if (shift != 0) {  // bucket taken whole before all bits were resolved: its smallest key is the k-th
      unsigned m = topk_key_traits<T>::nan_key;
      for (int q = tid; q < nvec; q += Block) {
        K e[V];
        unpack(load(q), e);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const K key = topk_key<T>(e[j]);
          if (q * V + j < n && static_cast<K>(key >> shift) == prefix) m = min(m, static_cast<unsigned>(key));
        }
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) m = min(m, __shfl_xor_sync(0xffffffffu, m, o));
      if (lane == 0) s_warp_min[warp] = m;
      __syncthreads();
      if (tid == 0) {
        for (int w = 0; w < warps; ++w) m = min(m, s_warp_min[w]);
        kth = m;
      }
    }
    if (tid == 0) p.kth[row] = topk_key_to_float<T>(static_cast<K>(kth));
    return;
  }

  K* yrow = p.y + row * p.ldy;
  const bool y_aligned = (reinterpret_cast<std::uintptr_t>(yrow) & 15) == 0;
  auto store_y = [&](int q, const K (&out)[V]) {
    if (y_aligned && (q + 1) * V <= n) {
      reinterpret_cast<uint4*>(yrow)[q] = topk_pack<K>(out);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j)
        if (q * V + j < n) yrow[q * V + j] = out[j];
    }
  };

  if (p.mode == topk_cuda_mode::mask && quota == count) {  // every key at the cut is kept: elementwise
    for (int q = tid; q < nvec; q += Block) {
      K e[V], out[V];
      unpack(load(q), e);
#pragma unroll
      for (int j = 0; j < V; ++j) out[j] = static_cast<K>(topk_key<T>(e[j]) >> shift) >= prefix ? e[j] : K(0);
      store_y(q, out);
    }
    return;
  }

  // ---- ordered compaction: warp w owns vectors [w*slice, (w+1)*slice), lane l takes vector q0 + l per step -----
  const int slice = ((nvec + warps - 1) / warps + 31) / 32 * 32;
  const int qbeg = warp * slice;
  const int qend = min(nvec, qbeg + slice);
  int n_gt = 0, n_eq = 0;
  for (int q = qbeg + lane; q < qend; q += 32) {
    K e[V];
    unpack(load(q), e);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const K s = static_cast<K>(topk_key<T>(e[j]) >> shift);
      const bool valid = q * V + j < n;
      n_gt += valid && s > prefix;
      n_eq += valid && s == prefix;
    }
  }
  n_gt = topk_warp_sum(n_gt);
  n_eq = topk_warp_sum(n_eq);
  if (lane == 0) {
    s_warp_gt[warp] = n_gt;
    s_warp_eq[warp] = n_eq;
  }
  __syncthreads();
  int gt_before = 0, eq_before = 0;
  for (int w = 0; w < warp; ++w) {
    gt_before += s_warp_gt[w];
    eq_before += s_warp_eq[w];
  }
  int kept = gt_before + min(eq_before, quota);
  const bool all_ties_kept = quota == count;  // then no rank among equal keys is needed
  std::int32_t* irow = p.idx + row * p.ldi;
  K* vrow = p.val + row * p.ldv;
  const bool want_indices = p.mode == topk_cuda_mode::indices;
  for (int q0 = qbeg; q0 < qend; q0 += 32) {
    const int q = q0 + lane;
    K e[V] = {};
    unsigned gt_bits = 0, eq_bits = 0;
    if (q < qend) {
      unpack(load(q), e);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const K s = static_cast<K>(topk_key<T>(e[j]) >> shift);
        const bool valid = q * V + j < n;
        gt_bits |= static_cast<unsigned>(valid && s > prefix) << j;
        eq_bits |= static_cast<unsigned>(valid && s == prefix) << j;
      }
    }
    unsigned keep_bits = gt_bits | eq_bits;
    if (!all_ties_kept) {  // the first `quota` equal keys (in index order) are kept
      int eq_total = 0;
      int r = eq_before + topk_warp_exclusive_sum(__popc(eq_bits), eq_total);
      keep_bits = gt_bits;
#pragma unroll
      for (int j = 0; j < V; ++j)
        if ((eq_bits >> j) & 1u) {
          if (r < quota) keep_bits |= 1u << j;
          ++r;
        }
      eq_before += eq_total;
    }
    int keep_total = 0;
    int pos = kept + topk_warp_exclusive_sum(__popc(keep_bits), keep_total);
    if (q < qend) {
      if (want_indices) {
#pragma unroll
        for (int j = 0; j < V; ++j)
          if ((keep_bits >> j) & 1u) {
            irow[pos] = q * V + j;
            vrow[pos] = e[j];
            ++pos;
          }
      } else {
        K out[V];
#pragma unroll
        for (int j = 0; j < V; ++j) out[j] = ((keep_bits >> j) & 1u) ? e[j] : K(0);
        store_y(q, out);
      }
    }
    kept += keep_total;
  }
}

//! Block-level radix select for kernels that need a row's cut themselves (the fused top-k GEMV, gemv_cuda.cuh):
//! returns, in every thread, the k-th largest magnitude key (topk_keys.hpp order, NaN largest) of the n elements at
//! xrow, 1 <= k <= n — the key whose value topk_select reports. All Block threads must call it (it has barriers).
//! MSB-first with topk_kernel's 11-bit digits (16-bit keys: 11 + 4 bits, two passes; f32: 11 + 11 + 9, three): each
//! pass counts the digit of every key that matches the resolved prefix into `hist` with topk_count's run-merged
//! shared atomics, and a block scan from the top bin picks the bucket that holds the k-th key. The row is read with
//! 16-byte loads when xrow is 16-byte aligned, up to 4 in flight per thread; rows of up to 4 * Block vectors (Block
//! = 256: 8192 f16/bf16, 4096 f32 elements) are read once and kept in registers for all passes, longer rows are
//! re-read every pass (through L1/L2). Nothing is staged in shared memory, so n is not limited by it.
//! Shared memory: hist [2048] ints, 16-byte aligned, all zero on entry and left zero on exit (each bin is cleared by
//! the thread that scans it); scan_tmp (reused after a barrier); sel [2] ints.
template <class T, int Block>
__device__ topk_bits_t<T> topk_block_kth_key(const topk_bits_t<T>* xrow, int n, int k, int* hist,
                                             typename cub::BlockScan<int, Block>::TempStorage& scan_tmp, int* sel) {
  using K = topk_bits_t<T>;
  constexpr int key_bits = topk_key_traits<T>::key_bits;
  constexpr int nbins = 1 << topk_radix_bits;
  constexpr int per = nbins / Block;  // bins per thread in the scan (thread 0 holds the top bins)
  constexpr int V = 16 / sizeof(K);
  constexpr int U = 4;  // vectors in flight per thread
  static_assert(nbins % Block == 0 && Block % 32 == 0 && per % 4 == 0, "block size must divide 512");
  const int tid = threadIdx.x;
  const int nvec = (n + V - 1) / V;
  const bool aligned = (reinterpret_cast<std::uintptr_t>(xrow) & 15) == 0;
  auto load = [&](int q) -> uint4 {  // elements at or past n read as 0 (never counted)
    if (aligned && (q + 1) * V <= n) return reinterpret_cast<const uint4*>(xrow)[q];
    K e[V];
#pragma unroll
    for (int j = 0; j < V; ++j) e[j] = q * V + j < n ? xrow[q * V + j] : K(0);
    return topk_pack<K>(e);
  };
  int needed = k, prev = key_bits, shift = key_bits - topk_radix_bits;
  K prefix = 0;
  // A row of up to U * Block vectors is read once and stays in registers for every pass; longer rows are re-read.
  const bool resident = nvec <= U * Block;
  uint4 r[U] = {};
  if (resident) {
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (tid + u * Block < nvec) r[u] = load(tid + u * Block);
  }
  for (;;) {
    const int dmask = (1 << (prev - shift)) - 1;
    for (int q0 = tid; q0 < nvec; q0 += U * Block) {
      if (!resident) {
#pragma unroll
        for (int u = 0; u < U; ++u)
          if (q0 + u * Block < nvec) r[u] = load(q0 + u * Block);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int q = q0 + u * Block;
        if (q < nvec) {
          K e[V];
          topk_unpack<K>(r[u], e);
          int d[V];
#pragma unroll
          for (int j = 0; j < V; ++j) {
            const K key = topk_key<T>(e[j]);
            d[j] = q * V + j < n && static_cast<K>(key >> prev) == prefix ? static_cast<int>(key >> shift) & dmask : -1;
          }
          topk_count<V>(hist, d);
        }
      }
    }
    __syncthreads();
    int local[per];  // local[j] = bin nbins - 1 - (tid * per + j): a contiguous, 16-byte aligned run of bins
    int sum = 0;
    int* run = hist + (nbins - (tid + 1) * per);
#pragma unroll
    for (int j = 0; j < per; j += 4) {
      const int4 v = *reinterpret_cast<const int4*>(run + j);
      local[per - 1 - j] = v.x, local[per - 2 - j] = v.y, local[per - 3 - j] = v.z, local[per - 4 - j] = v.w;
      *reinterpret_cast<int4*>(run + j) = make_int4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < per; ++j) sum += local[j];
    int above = 0;
    cub::BlockScan<int, Block>(scan_tmp).ExclusiveSum(sum, above);
    if (above < needed && needed <= above + sum) {  // exactly one thread: 1 <= needed <= the matching keys
#pragma unroll
      for (int j = 0; j < per; ++j) {
        if (above + local[j] >= needed) {
          sel[0] = nbins - 1 - (tid * per + j);
          sel[1] = needed - above;
          break;
        }
        above += local[j];
      }
    }
    __syncthreads();
    prefix = static_cast<K>(static_cast<K>(prefix << (prev - shift)) | static_cast<K>(sel[0]));
    needed = sel[1];
    if (shift == 0) break;
    prev = shift;
    shift = shift > topk_radix_bits ? shift - topk_radix_bits : 0;
  }
  return prefix;
}

template <class T, int Block>
__global__ void __launch_bounds__(Block)
    threshold_mask_kernel(const topk_bits_t<T>* x, std::int64_t ldx,  // [rows, n]
                          int n, const float* per_row, float all,     // per_row: [rows] or null
                          topk_bits_t<T>* y, std::int64_t ldy,        // [rows, n]
                          std::int32_t* counts) {                     // [rows] or null
  using K = topk_bits_t<T>;
  constexpr int vec = 16 / sizeof(K);
  using reduce_t = cub::BlockReduce<int, Block>;
  __shared__ typename reduce_t::TempStorage tmp;
  const std::int64_t row = blockIdx.x;
  const K* xrow = x + row * ldx;
  K* yrow = y + row * ldy;
  const K tk = topk_threshold_key<T>(per_row ? per_row[row] : all);
  int c = 0;
  int done = 0;
  if (((reinterpret_cast<std::uintptr_t>(xrow) | reinterpret_cast<std::uintptr_t>(yrow)) & 15) == 0) {
    const int nvec = n / vec;
    for (int v = threadIdx.x; v < nvec; v += Block) {
      K e[vec];
      topk_unpack<K>(reinterpret_cast<const uint4*>(xrow)[v], e);
#pragma unroll
      for (int j = 0; j < vec; ++j) {
        const bool keep = topk_key<T>(e[j]) >= tk;
        c += keep;
        e[j] = keep ? e[j] : K(0);
      }
      reinterpret_cast<uint4*>(yrow)[v] = topk_pack<K>(e);
    }
    done = nvec * vec;
  }
  for (int i = done + threadIdx.x; i < n; i += Block) {
    const K u = xrow[i];
    const bool keep = topk_key<T>(u) >= tk;
    c += keep;
    yrow[i] = keep ? u : K(0);
  }
  if (counts) {
    c = reduce_t(tmp).Sum(c);
    if (threadIdx.x == 0) counts[row] = c;
  }
}

//! Launches topk_kernel for a validated input. Block is a tuning knob (256, 512, 1024); force_streaming re-reads the
//! row from global memory instead of staging it (tests use it to cover the large-n path with small rows).
template <class T, int Block = topk_block>
void topk_cuda_launch(cuda_t tag, matrix_view<const T> x, int k, topk_cuda_mode mode, matrix_view<std::int32_t> idx,
                      matrix_view<T> val, matrix_view<T> y, float* kth, bool force_streaming = false) {
  using K = topk_bits_t<T>;
  if (x.rows == 0) return;
  topk_cuda_params<K> p{};
  p.x = reinterpret_cast<const K*>(x.data);
  p.ldx = x.ld;
  p.n = static_cast<int>(x.cols);
  p.k = k;
  p.mode = mode;
  p.idx = idx.data;
  p.ldi = idx.ld;
  p.val = reinterpret_cast<K*>(val.data);
  p.ldv = val.ld;
  p.y = reinterpret_cast<K*>(y.data);
  p.ldy = y.ld;
  p.kth = kth;
  std::size_t dyn = (static_cast<std::size_t>(x.cols) * sizeof(K) + 15) / 16 * 16;  // whole 16-byte vectors
  p.staged = !force_streaming && dyn <= topk_staged_max_bytes;
  if (!p.staged) dyn = 0;
  const char* op = mode == topk_cuda_mode::indices ? "topk" : mode == topk_cuda_mode::mask ? "topk_mask" : "topk_select";
  auto kernel = topk_kernel<T, Block>;
  if (dyn > topk_dyn_smem_default_max)
    FRUGAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(dyn)),
                      op);
  kernel<<<static_cast<unsigned>(x.rows), Block, dyn, tag.stream>>>(p);
  check_launch(op, "topk_kernel");
}

template <class T>
void topk_cuda(cuda_t tag, matrix_view<const T> x, int k, matrix_view<std::int32_t> indices, matrix_view<T> values) {
  topk_cuda_launch<T>(tag, x, k, topk_cuda_mode::indices, indices, values, {}, nullptr);
}
template <class T>
void topk_mask_cuda(cuda_t tag, matrix_view<const T> x, int k, matrix_view<T> y) {
  topk_cuda_launch<T>(tag, x, k, topk_cuda_mode::mask, {}, {}, y, nullptr);
}
template <class T>
void topk_select_cuda(cuda_t tag, matrix_view<const T> x, int k, float* kth_abs) {
  topk_cuda_launch<T>(tag, x, k, topk_cuda_mode::select, {}, {}, {}, kth_abs);
}

template <class T>
void threshold_mask_cuda(cuda_t tag, matrix_view<const T> x, const float* per_row, float all, matrix_view<T> y,
                         std::int32_t* counts) {
  using K = topk_bits_t<T>;
  if (x.rows == 0) return;
  constexpr int block = 256;
  threshold_mask_kernel<T, block><<<static_cast<unsigned>(x.rows), block, 0, tag.stream>>>(
      reinterpret_cast<const K*>(x.data), x.ld, static_cast<int>(x.cols), per_row, all, reinterpret_cast<K*>(y.data),
      y.ld, counts);
  check_launch("threshold_mask", "threshold_mask_kernel");
}

}  // namespace detail
FRUGAL_NAMESPACE_END
