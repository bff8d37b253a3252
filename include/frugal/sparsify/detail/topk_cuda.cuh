// frugal/sparsify/detail/topk_cuda.cuh — CUDA top-k by magnitude: one-pass radix select, one block per row.
//
// topk_kernel (one launch, grid = rows, 512 threads per row):
//  1. The row is read once with 16-byte loads, kept in shared memory when it fits (staged; otherwise later passes
//     re-read it from L1/L2), and the top 11-bit digit of every magnitude key (topk_keys.hpp) is counted into a
//     shared histogram with warp-aggregated atomics (__match_any_sync: one atomic per distinct digit per warp, so
//     ties and clustered exponents do not serialise).
//  2. A CUB block scan over the 2048 buckets, from the top, finds the bucket of the k-th largest key. If that bucket
//     is taken whole, or all key bits are resolved, the cut is known; else the next 11 bits of the keys inside that
//     bucket are counted (f32: at most 3 histogram passes, f16/bf16: 2; random f32 data usually stop after 2).
//  3. Output. select: the k-th key (the resolved prefix, or a block min over the bucket). mask without a tie to
//     break: one elementwise pass. Otherwise an ordered compaction: each warp owns a contiguous slice, counts the
//     keys above / equal to the cut with ballots, the warps exchange counts through shared memory, and a second
//     ballot pass writes the kept entries at their rank, so the output is in ascending index order and ties are
//     kept lowest index first, exactly as on the CPU.
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

//! Adds one digit per lane to a shared histogram; lanes with d < 0 add nothing. All 32 lanes must call it.
__device__ __forceinline__ void topk_hist_add(int* hist, int d) {
  const unsigned peers = __match_any_sync(0xffffffffu, d);
  if (d >= 0 && static_cast<int>(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(hist + d, __popc(peers));
}

template <class T, int Block>
__global__ void __launch_bounds__(Block) topk_kernel(topk_cuda_params<topk_bits_t<T>> p) {
  using K = topk_bits_t<T>;
  constexpr int key_bits = topk_key_traits<T>::key_bits;
  constexpr int nbins = 1 << topk_radix_bits;
  constexpr int warps = Block / 32;
  constexpr int bins_per_thread = nbins / Block;
  constexpr int vec = 16 / sizeof(K);
  static_assert(nbins % Block == 0 && Block % 32 == 0, "block size must divide 2048");
  using scan_t = cub::BlockScan<int, Block>;

  __shared__ int hist[2][nbins];
  __shared__ typename scan_t::TempStorage scan_tmp;
  __shared__ int s_bucket, s_needed, s_count;
  __shared__ int s_warp_gt[warps], s_warp_eq[warps];
  __shared__ unsigned s_warp_min[warps];
  extern __shared__ __align__(16) unsigned char topk_smem[];
  K* sx = reinterpret_cast<K*>(topk_smem);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n = p.n;
  const bool staged = p.staged;
  const K* xrow = p.x + static_cast<std::int64_t>(blockIdx.x) * p.ldx;
  auto load = [&](int i) -> K { return staged ? sx[i] : xrow[i]; };

  for (int j = tid; j < 2 * nbins; j += Block) (&hist[0][0])[j] = 0;
  __syncthreads();

  // ---- pass 1: read the row (stage it) and count the top digit ---------------------------------------------------
  int shift = key_bits > topk_radix_bits ? key_bits - topk_radix_bits : 0;
  {
    int done = 0;
    if ((reinterpret_cast<std::uintptr_t>(xrow) & 15) == 0) {
      const int nvec = n / vec;
      const uint4* xv = reinterpret_cast<const uint4*>(xrow);
      for (int base = 0; base < nvec; base += Block) {
        const int v = base + tid;
        const bool valid = v < nvec;
        const uint4 q = valid ? xv[v] : make_uint4(0, 0, 0, 0);
        if (valid && staged) reinterpret_cast<uint4*>(sx)[v] = q;
        K e[vec];
        std::memcpy(e, &q, 16);
#pragma unroll
        for (int j = 0; j < vec; ++j) topk_hist_add(hist[0], valid ? static_cast<int>(topk_key<T>(e[j]) >> shift) : -1);
      }
      done = nvec * vec;
    }
    for (int base = done; base < n; base += Block) {
      const int i = base + tid;
      const bool valid = i < n;
      const K u = valid ? xrow[i] : K(0);
      if (valid && staged) sx[i] = u;
      topk_hist_add(hist[0], valid ? static_cast<int>(topk_key<T>(u) >> shift) : -1);
    }
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
    for (int base = 0; base < n; base += Block) {
      const int i = base + tid;
      int d = -1;
      if (i < n) {
        const K key = topk_key<T>(load(i));
        if (static_cast<K>(key >> prev) == prefix) d = static_cast<int>(key >> shift) & dmask;
      }
      if (__any_sync(0xffffffffu, d >= 0)) topk_hist_add(hist[cur], d);
    }
    __syncthreads();
  }
  // Cut: keep (key >> shift) > prefix, and the first `needed` (lowest index) with (key >> shift) == prefix.
  const int quota = needed;
  const std::int64_t row = blockIdx.x;

  if (p.mode == topk_cuda_mode::select) {
    unsigned kth = prefix;
    if (shift != 0) {  // bucket taken whole before all bits were resolved: its smallest key is the k-th
      unsigned m = topk_key_traits<T>::nan_key;
      for (int i = tid; i < n; i += Block) {
        const K key = topk_key<T>(load(i));
        if (static_cast<K>(key >> shift) == prefix) m = min(m, static_cast<unsigned>(key));
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

  if (p.mode == topk_cuda_mode::mask && quota == count) {  // every key at the cut is kept: elementwise
    K* yrow = p.y + row * p.ldy;
    for (int i = tid; i < n; i += Block) {
      const K u = load(i);
      yrow[i] = static_cast<K>(topk_key<T>(u) >> shift) >= prefix ? u : K(0);
    }
    return;
  }

  // ---- ordered compaction: warp w owns [w*slice, (w+1)*slice) --------------------------------------------------
  const int slice = ((n + warps - 1) / warps + 31) / 32 * 32;
  const int beg = warp * slice;
  const int end = min(n, beg + slice);
  int n_gt = 0, n_eq = 0;
  for (int i0 = beg; i0 < end; i0 += 32) {
    const int i = i0 + lane;
    const bool valid = i < end;
    const K s = valid ? static_cast<K>(topk_key<T>(load(i)) >> shift) : K(0);
    n_gt += __popc(__ballot_sync(0xffffffffu, valid && s > prefix));
    n_eq += __popc(__ballot_sync(0xffffffffu, valid && s == prefix));
  }
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
  const unsigned lt_mask = (1u << lane) - 1u;
  std::int32_t* irow = p.idx + row * p.ldi;
  K* vrow = p.val + row * p.ldv;
  K* yrow = p.y + row * p.ldy;
  const bool want_indices = p.mode == topk_cuda_mode::indices;
  for (int i0 = beg; i0 < end; i0 += 32) {
    const int i = i0 + lane;
    const bool valid = i < end;
    const K u = valid ? load(i) : K(0);
    const K s = static_cast<K>(topk_key<T>(u) >> shift);
    const bool eq = valid && s == prefix;
    const unsigned eq_ballot = __ballot_sync(0xffffffffu, eq);
    const bool keep = valid && (s > prefix || (eq && eq_before + __popc(eq_ballot & lt_mask) < quota));
    const unsigned keep_ballot = __ballot_sync(0xffffffffu, keep);
    if (want_indices) {
      if (keep) {
        const int pos = kept + __popc(keep_ballot & lt_mask);
        irow[pos] = i;
        vrow[pos] = u;
      }
    } else if (valid) {
      yrow[i] = keep ? u : K(0);
    }
    eq_before += __popc(eq_ballot);
    kept += __popc(keep_ballot);
  }
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
      uint4 q = reinterpret_cast<const uint4*>(xrow)[v];
      K e[vec];
      std::memcpy(e, &q, 16);
#pragma unroll
      for (int j = 0; j < vec; ++j) {
        const bool keep = topk_key<T>(e[j]) >= tk;
        c += keep;
        e[j] = keep ? e[j] : K(0);
      }
      std::memcpy(&q, e, 16);
      reinterpret_cast<uint4*>(yrow)[v] = q;
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
  std::size_t dyn = (static_cast<std::size_t>(x.cols) * sizeof(K) + 15) / 16 * 16;
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
