// frugal/kv/detail/decode_attention_cuda.cuh — CUDA kernels of decode/prefill attention over paged or contiguous KV
// (nvcc only). See decode_attention.hpp for the algorithm; the configuration arithmetic is in attn_cfg.
#pragma once

#if !defined(__CUDACC__)
#error \
    "frugal/kv/detail/decode_attention_cuda.cuh is CUDA code: include it only from a translation unit compiled by nvcc."
#endif

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../../core/detail/cuda_common.cuh"
#include "../../core/view.hpp"
#include "../../core/workspace.hpp"
#include "decode_attention_cpu.hpp"
#include "kv_common.hpp"

FRUGAL_NAMESPACE_BEGIN

// Tuning knobs (compile-time, the same for every instantiation): cp.async pipeline depth and bytes of K+V per tile.
// Shared memory per CTA = STAGES * TILE_BYTES; above 48 KB the kernels opt in to more dynamic shared memory.
// 3 stages; 2 (one tile in flight per CTA) measured 0.4-3.5 % faster at B = 32 and B = 1, T = 32768 but 1-5 %
// slower at B = 1, T = 8192 with its 32 splits of ~2 CTAs per SM on H100 (docs/kv.md, seventh session).
#ifndef FRUGAL_KV_ATTN_STAGES
#define FRUGAL_KV_ATTN_STAGES 3
#endif
#ifndef FRUGAL_KV_ATTN_TILE_BYTES
#define FRUGAL_KV_ATTN_TILE_BYTES 16384
#endif
// Split-K: keys per split (auto plan): at least MIN_KEYS, and PREF_KEYS while the grid keeps >= 1.5 CTAs per SM.
#ifndef FRUGAL_KV_ATTN_SPLIT_MIN_KEYS
#define FRUGAL_KV_ATTN_SPLIT_MIN_KEYS 128
#endif
// f16/bf16: the dot products and the P.V products on tensor cores (mma.sync, f32 accumulation); 0: CUDA cores.
#ifndef FRUGAL_KV_ATTN_MMA
#define FRUGAL_KV_ATTN_MMA 1
#endif
// Split-K merge: 0 = separate merge kernel, 1 = in the attention kernel's last CTA per (row, head), counters zeroed
// by a memset before each call, 2 = in-kernel, counters zeroed once by the caller and reset by the kernel.
#ifndef FRUGAL_KV_ATTN_MERGE
#define FRUGAL_KV_ATTN_MERGE 2
#endif
#ifndef FRUGAL_KV_ATTN_SPLIT_PREF_KEYS
#define FRUGAL_KV_ATTN_SPLIT_PREF_KEYS 256
#endif
// ... as long as the grid then has at least PREF_OCC / 100 CTAs per SM (150: 256 CTAs on H100's 132 SMs qualify,
// e.g. B = 1, T = 8192, 8 kv heads: 32 splits of 256 keys instead of 64 of 128, measured 7-11 % faster).
#ifndef FRUGAL_KV_ATTN_SPLIT_PREF_OCC
#define FRUGAL_KV_ATTN_SPLIT_PREF_OCC 150
#endif

// Debug timeline (benchmarks only, never in a library build): every attention CTA's thread 0 writes %globaltimer
// stamps (ns, 32 ns steps on H100) of its phases into attn_tl (attn_tl_slots u64 per CTA, by linear block id), so a
// benchmark can see where the fixed cost of a launch goes (bench_kv_decode_attention_tl; docs/kv.md, fourth
// session). Slots: attn_tl_slot. Off (0): the stamps compile to nothing.
#ifndef FRUGAL_KV_ATTN_TIMELINE
#define FRUGAL_KV_ATTN_TIMELINE 0
#endif

namespace detail {

#if FRUGAL_KV_ATTN_TIMELINE
inline constexpr int attn_tl_slots = 16, attn_tl_max_ctas = 8192;
// entry, after griddepcontrol.wait, first copies issued (the prologue's loads of seq_lens, q and block ids returned),
// tiles 0..3 landed (after their wait + __syncthreads), loop end, partial written (after the warps' combine),
// arrival counted, merge end (last CTA only), %smid, tiles, clock64 at entry and at loop end
enum attn_tl_slot {
  TL_ENTRY,
  TL_WAITED,
  TL_ISSUED,
  TL_TILE0,
  TL_LOOP = TL_TILE0 + 4,
  TL_PART,
  TL_ARRIVED,
  TL_MERGED,
  TL_SMID,
  TL_NTILES,
  TL_CLK0,
  TL_CLK1
};
__device__ unsigned long long attn_tl[attn_tl_max_ctas * attn_tl_slots];
__device__ __forceinline__ unsigned long long attn_gtime() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned long long* attn_tl_row() {
  const unsigned long long b = blockIdx.x + static_cast<unsigned long long>(gridDim.x) *
                                                (blockIdx.y + static_cast<unsigned long long>(gridDim.y) * blockIdx.z);
  return b < attn_tl_max_ctas && threadIdx.x == 0 ? attn_tl + b * attn_tl_slots : nullptr;
}
#define FRUGAL_KV_TL(slot, value)                                     \
  do {                                                                \
    if (unsigned long long* tl_ = attn_tl_row()) tl_[slot] = (value); \
  } while (0)
#else
#define FRUGAL_KV_TL(slot, value) \
  do {                            \
  } while (0)
#endif

constexpr int attn_pow2ceil(int x) {
  int p = 1;
  while (p < x) p *= 2;
  return p;
}

//! Compile-time shape of one attention CTA for element type T, head_dim D and up to GMAX query heads per CTA.
template <class T, int D, int GMAX>
struct attn_cfg {
  static constexpr int NT = 128;                                // threads
  static constexpr int NW = NT / 32;                            // warps
  static constexpr int EPC = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte chunk
  static constexpr int NCHUNK = D / EPC;                        // chunks per key row (one head)
  // elements per lane: q and acc take 2 * GMAX * VEC registers. 16 for 1-2 heads (fewer shuffles per score), 8 for
  // 3-8 heads (<= 128 registers for 3-4 heads: 4 CTAs per SM, enough loads in flight to hide block-table latency)
  static constexpr int VEC = GMAX <= 2 ? 16 : 8;
  static constexpr int MIN_CTAS = GMAX <= 4 || (FRUGAL_KV_ATTN_MMA && sizeof(T) == 2) ? 4 : 2;  // __launch_bounds__
  static constexpr int CPL = VEC / EPC;                                                         // chunks per lane
  static constexpr int ACTIVE = NCHUNK / CPL;        // lanes of a row group that hold data
  static constexpr int LPR = attn_pow2ceil(ACTIVE);  // lanes per row group (power of two)
  static constexpr int RGW = 32 / LPR;               // row groups per warp
  static constexpr int NRG = NW * RGW;               // row groups per CTA
  // MMA (f16/bf16): each warp takes key slabs of 8 rows; shared rows padded by 16 bytes (conflict-free ldmatrix)
  static constexpr bool MMA = FRUGAL_KV_ATTN_MMA && sizeof(T) == 2;
  static constexpr int DP = MMA ? D + 8 : D;  // elements between key rows in shared memory
  static constexpr int TILE_RAW = FRUGAL_KV_ATTN_TILE_BYTES / (2 * D * static_cast<int>(sizeof(T)));
  static constexpr int TQ = MMA ? NW * 8 : NRG;                                   // tile quantum
  static constexpr int TILE = TILE_RAW / TQ * TQ < TQ ? TQ : TILE_RAW / TQ * TQ;  // keys per tile
  static constexpr int R = TILE / NRG;           // rows per row group per tile (CUDA cores)
  static constexpr int SLABS = TILE / (NW * 8);  // 8-key slabs per warp per tile (MMA)
  static constexpr int STAGES = FRUGAL_KV_ATTN_STAGES;
  static constexpr int STAGE_ELEMS = 2 * TILE * DP;  // K tile then V tile
  static constexpr int SMEM = STAGES * STAGE_ELEMS * static_cast<int>(sizeof(T));
  static constexpr int LOADS = (TILE * NCHUNK + NT - 1) / NT;  // 16-byte copies per thread per tile, for K (and V)
  static constexpr int MERGE_BYTES = (NW * GMAX * D + 2 * NW * GMAX) * 4;
  static_assert(NCHUNK % CPL == 0 && LPR <= 32 && R >= 1 && NCHUNK * EPC == D && STAGES >= 2);
  static constexpr int CLUSTER_PART_BYTES = (GMAX * D + GMAX) * 4;  // attn_merge_cluster's partial, after the scratch
  static_assert(SMEM <= 200 * 1024 && MERGE_BYTES + CLUSTER_PART_BYTES <= SMEM,
                "attention stages do not fit shared memory");
};

template <class T, class Source>
struct attn_args {
  const T* q;  // [rows, q_ld]
  std::int64_t q_ld;
  T* out;  // [rows, out_ld]
  std::int64_t out_ld;
  Source src;
  const std::int32_t* lens;      // [batch]
  const std::int32_t* q_indptr;  // [batch + 1] or null (decode)
  std::int32_t batch;
  std::int32_t rows;
  std::int32_t q_heads;
  std::int32_t group;    // q_heads / kv_heads
  std::int32_t hchunks;  // ceil(group / GMAX)
  float scale_log2;      // scale * log2(e)
  std::int32_t num_splits;
  std::int32_t chunk;  // keys per split
  bool causal;
  // attention_params::kv_ahead (decode only): the prologue's cache copies (and seq_lens, block ids) go out before
  // griddepcontrol.wait; q and the fused append's new rows are read after it
  bool ahead;
  float* part_o;    // [num_splits, rows, q_heads, D] (num_splits > 1)
  float* part_lse;  // [num_splits, rows, q_heads] log2-sum-exp2 of the scaled scores
  // [rows, kv_heads * hchunks] arrival counters of the in-kernel merge (zero between calls); null: merge kernel
  unsigned* counters;
  // sm_90, 2..8 splits: the splits of a (row, kv head, head chunk) form one thread-block cluster and merge through
  // distributed shared memory (attn_merge_cluster): no partials in global memory, no counters, no merge kernel
  bool cluster;
  // Fused append (decode only; new_k null otherwise): row b's new token, at position lens[b] - 1, is read from
  // new_k/new_v [rows, new_ld] instead of the cache and written into the cache (cache_k/cache_v = src.k/src.v).
  const T* new_k;
  const T* new_v;
  std::int64_t new_k_ld, new_v_ld;
  T* cache_k;
  T* cache_v;
};

__device__ __forceinline__ void attn_cp_async16(void* smem, const void* gmem, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void attn_cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void attn_cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

//! 16 bytes of T -> 16 / sizeof(T) floats.
template <class CT>
__device__ __forceinline__ void attn_chunk_to_float(const uint4& raw, float* f) {
  if constexpr (std::is_same_v<CT, float>) {
    f[0] = __uint_as_float(raw.x);
    f[1] = __uint_as_float(raw.y);
    f[2] = __uint_as_float(raw.z);
    f[3] = __uint_as_float(raw.w);
  } else {
    const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<CT, __half>) {
        __half2 h;
        std::memcpy(&h, &w[i], 4);
        const float2 v = __half22float2(h);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
      } else {
        __nv_bfloat162 h;
        std::memcpy(&h, &w[i], 4);
        const float2 v = __bfloat1622float2(h);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
      }
    }
  }
}

// Tensor-core helpers (sm_80+ instructions; the kernels are built for sm_90).
__device__ __forceinline__ void attn_ldsm_x4(unsigned (&r)[4], const void* p) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
}
__device__ __forceinline__ void attn_ldsm_x2(unsigned (&r)[4], const void* p) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(a)
               : "memory");
}
__device__ __forceinline__ void attn_ldsm_x4_t(unsigned (&r)[4], const void* p) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
}
__device__ __forceinline__ void attn_ldsm_x2_t(unsigned (&r)[4], const void* p) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(a)
               : "memory");
}
__device__ __forceinline__ unsigned attn_movmatrix_t(unsigned x) {
  unsigned y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}
//! c += A (16x16, row) B (16x8, col), f32 accumulation.
template <class CT>
__device__ __forceinline__ void attn_mma16(float (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                           unsigned b0, unsigned b1) {
  if constexpr (std::is_same_v<CT, __half>)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
//! c += A (16x8, row) B (8x8, col), f32 accumulation.
template <class CT>
__device__ __forceinline__ void attn_mma8(float (&c)[4], unsigned a0, unsigned a1, unsigned b0) {
  if constexpr (std::is_same_v<CT, __half>)
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0));
  else
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0));
}
//! Two floats rounded to CT, packed (lo in the low half).
template <class CT>
__device__ __forceinline__ unsigned attn_pack2(float lo, float hi) {
  unsigned u;
  if constexpr (std::is_same_v<CT, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    std::memcpy(&u, &h, 4);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    std::memcpy(&u, &h, 4);
  }
  return u;
}
template <class CT>
__device__ __forceinline__ void attn_unpack2(unsigned u, float& lo, float& hi) {
  if constexpr (std::is_same_v<CT, __half>) {
    __half2 h;
    std::memcpy(&h, &u, 4);
    const float2 f = __half22float2(h);
    lo = f.x, hi = f.y;
  } else {
    __nv_bfloat162 h;
    std::memcpy(&h, &u, 4);
    const float2 f = __bfloat1622float2(h);
    lo = f.x, hi = f.y;
  }
}
template <class CT>
__device__ __forceinline__ unsigned attn_bits16(CT x) {
  unsigned short u;
  std::memcpy(&u, &x, 2);
  return u;
}

//! Shared memory of the in-kernel merge: weights [gmax][splits] (rounded to 16 bytes), 8 sums, NT float4.
FRUGAL_HOST_DEVICE constexpr int attn_merge_wfloats(int gmax, int splits) {
  return (gmax * splits + 3) / 4 * 4;
}
FRUGAL_HOST_DEVICE constexpr std::int64_t attn_merge_smem(int gmax, int splits) {
  return (static_cast<std::int64_t>(attn_merge_wfloats(gmax, splits)) + 8) * 4 + 128 * 16;
}

//! Split-K merge inside the attention kernel: the last CTA of each (row, kv head, head chunk) to finish its partial
//! (an atomic counter per such triple in the workspace; the last CTA sets it back to 0) combines the partials of all
//! splits: out[row, qh, :] = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M). Deterministic whatever CTA is last:
//! warp w takes heads w, w + NW, ... (max and weight sum over splits by a fixed lane-strided order and shuffle
//! tree), then threads stream the partial rows as float4 columns (splits s = grp, grp + groups, ... ascending per
//! group of threads) and the groups are summed in a fixed order. Shared memory: the (now free) stage buffers.
template <class CT, int D, int GMAX, class Source>
__device__ __forceinline__ void attn_merge_last(const attn_args<CT, Source>& a, std::int32_t row, std::int32_t qh0,
                                                std::int32_t ng, CT* smem_base) {
  using C = attn_cfg<CT, D, GMAX>;
  constexpr int NT = C::NT, NW = C::NW, Q4 = D / 4;
  constexpr float NEG_INF = -__builtin_huge_valf();
  __shared__ unsigned s_last;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  __threadfence();  // this CTA's partials are visible device-wide before its arrival is counted
  __syncthreads();
  if (tid == 0) {
    unsigned* cnt = a.counters + static_cast<std::int64_t>(row) * gridDim.y + blockIdx.y;
    const unsigned old = atomicAdd(cnt, 1u);
    const unsigned last = old == static_cast<unsigned>(a.num_splits - 1) ? 1u : 0u;
    if (last) *cnt = 0u;  // every split has arrived: reset for the next call on this workspace
    s_last = last;
  }
  __syncthreads();
  FRUGAL_KV_TL(TL_ARRIVED, attn_gtime());
  if (s_last == 0u) return;
  __threadfence();  // acquire: the other CTAs' partials (read through L2 below)
  const std::int32_t S = a.num_splits;
  float* s_w = reinterpret_cast<float*>(smem_base);                           // [GMAX][S] weights
  float* s_L = s_w + attn_merge_wfloats(GMAX, S);                             // [GMAX]
  float4* s_acc = reinterpret_cast<float4*>(s_L + 8);                         // [NT]
  const std::int64_t stride = static_cast<std::int64_t>(a.rows) * a.q_heads;  // between splits
  for (int g = warp; g < ng; g += NW) {
    const std::int64_t w = static_cast<std::int64_t>(row) * a.q_heads + qh0 + g;
    float mx = NEG_INF;
    for (int s = lane; s < S; s += 32) {
      const float v = __ldcg(a.part_lse + s * stride + w);
      s_w[g * S + s] = v;
      mx = fmaxf(mx, v);
    }
#pragma unroll
    for (int off = 16; off >= 1; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    float L = 0.f;
    for (int s = lane; s < S; s += 32) {
      const float v = s_w[g * S + s];
      const float c = mx != NEG_INF && v != NEG_INF ? exp2f(v - mx) : 0.f;
      s_w[g * S + s] = c;
      L += c;
    }
#pragma unroll
    for (int off = 16; off >= 1; off /= 2) L += __shfl_xor_sync(0xffffffffu, L, off);
    if (lane == 0) s_L[g] = L;
  }
  __syncthreads();
  // float4 columns (g, c) of the ng heads; `groups` threads per column when they are fewer than the threads
  const int cols = ng * Q4;
  const int groups = max(1, NT / cols);
  for (int base = 0; base < cols; base += NT) {
    const int grp = tid / cols, col = base + tid - grp * cols;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (grp < groups && col < cols) {
      const int g = col / Q4, c4 = col - g * Q4;
      const std::int64_t w = static_cast<std::int64_t>(row) * a.q_heads + qh0 + g;
      const float4* po = reinterpret_cast<const float4*>(a.part_o + w * D) + c4;
      const std::int64_t sstride = stride * Q4;  // float4s between splits
      const float* wg = s_w + g * S;
#pragma unroll 8
      for (int s = grp; s < S; s += groups) {
        const float c = wg[s];
        const float4 v = __ldcg(po + s * sstride);
        acc.x = fmaf(c, v.x, acc.x);
        acc.y = fmaf(c, v.y, acc.y);
        acc.z = fmaf(c, v.z, acc.z);
        acc.w = fmaf(c, v.w, acc.w);
      }
    }
    s_acc[tid] = acc;
    __syncthreads();
    if (tid < cols - base && tid < NT) {
      const int colx = base + tid;
      float4 o = s_acc[tid];
      for (int q = 1; q < groups; ++q) {
        const float4 v = s_acc[q * cols + tid];
        o.x += v.x, o.y += v.y, o.z += v.z, o.w += v.w;
      }
      const int g = colx / Q4, c4 = colx - g * Q4;
      const float L = s_L[g];
      CT* dst = a.out + static_cast<std::int64_t>(row) * a.out_ld + static_cast<std::int64_t>(qh0 + g) * D + c4 * 4;
      dst[0] = store_f<CT>(L > 0.f ? o.x / L : 0.f);
      dst[1] = store_f<CT>(L > 0.f ? o.y / L : 0.f);
      dst[2] = store_f<CT>(L > 0.f ? o.z / L : 0.f);
      dst[3] = store_f<CT>(L > 0.f ? o.w / L : 0.f);
    }
    __syncthreads();  // s_acc reused by the next round
  }
  FRUGAL_KV_TL(TL_MERGED, attn_gtime());
}

//! Split-K merge through the thread-block cluster (a.cluster: the num_splits CTAs of one (row, kv head, head chunk)
//! are one cluster, rank = split): every CTA has left its partial (o normalised by its own sum, and the log2-sum-exp2)
//! in its own shared memory at s_po / s_plse; after one cluster barrier, rank r combines output columns r, r + S, ...
//! reading all S partials through DSMEM in split order (deterministic), and a second barrier keeps every CTA's shared
//! memory alive until the others have read it. Costs two cluster barriers and a few DSMEM loads instead of the
//! global-memory partials, fence, arrival counter and L2 round trips of attn_merge_last.
template <class CT, int D, int GMAX, class Source>
__device__ __forceinline__ void attn_merge_cluster(const attn_args<CT, Source>& a, std::int32_t row,
                                                   std::int32_t qh0, std::int32_t ng, float* s_po, float* s_plse) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  constexpr int NT = attn_cfg<CT, D, GMAX>::NT;
  constexpr float NEG_INF = -__builtin_huge_valf();
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every split's partial is in its shared memory (release / acquire across the cluster)
  const int S = a.num_splits, rank = static_cast<int>(cluster.block_rank());
  for (int idx = rank + S * static_cast<int>(threadIdx.x); idx < ng * D; idx += S * NT) {
    const int g = idx / D, d = idx - g * D;
    float lse[8], o[8];
    float mx = NEG_INF;
#pragma unroll
    for (int s = 0; s < 8; ++s) {
      if (s < S) {
        lse[s] = cluster.map_shared_rank(s_plse, s)[g];
        o[s] = cluster.map_shared_rank(s_po, s)[idx];
        mx = fmaxf(mx, lse[s]);
      }
    }
    float L = 0.f, O = 0.f;
    if (mx != NEG_INF) {
#pragma unroll
      for (int s = 0; s < 8; ++s) {
        if (s < S) {
          const float c = lse[s] != NEG_INF ? exp2f(lse[s] - mx) : 0.f;
          L += c;
          O = fmaf(c, o[s], O);
        }
      }
    }
    a.out[static_cast<std::int64_t>(row) * a.out_ld + static_cast<std::int64_t>(qh0 + g) * D + d] =
        store_f<CT>(L > 0.f ? O / L : 0.f);
  }
  cluster.sync();  // nobody leaves while another CTA may still read its shared memory
#else
  (void)a, (void)row, (void)qh0, (void)ng, (void)s_po, (void)s_plse;
  __trap();  // the host never asks for clusters from code compiled for < sm_90
#endif
}

//! APPEND: the fused append of decode (a.new_k set); a separate instantiation so that plain decode pays nothing.
template <class CT, int D, int GMAX, class Source, bool APPEND = false>
__global__ void __launch_bounds__(128, attn_cfg<CT, D, GMAX>::MIN_CTAS)
    attention_kernel(const attn_args<CT, Source> a) {
  using C = attn_cfg<CT, D, GMAX>;
  constexpr int EPC = C::EPC, VEC = C::VEC, CPL = C::CPL, ACTIVE = C::ACTIVE, LPR = C::LPR, NRG = C::NRG;
  constexpr int TILE = C::TILE, R = C::R, STAGES = C::STAGES, NT = C::NT, DP = C::DP;
  constexpr float NEG_INF = -__builtin_huge_valf();
  extern __shared__ __align__(16) unsigned char attn_smem[];
  CT* smem = reinterpret_cast<CT*>(attn_smem);

  FRUGAL_KV_TL(TL_ENTRY, attn_gtime());
  FRUGAL_KV_TL(TL_CLK0, clock64());
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Programmatic dependent launch on both sides (sm_90): let the next kernel (the merge, or the consumer of `out`,
  // e.g. a PDL-launched GEMV, whose blocks then wait in its own griddepcontrol.wait) get scheduled now; then wait
  // until the kernel before this one has completed — nothing above reads memory, so from here on this launch
  // behaves as a plain one.
  // With kv_ahead the wait comes after the prologue's cache copies are issued (below).
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (!a.ahead) asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  FRUGAL_KV_TL(TL_WAITED, attn_gtime());
#if FRUGAL_KV_ATTN_TIMELINE
  {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    FRUGAL_KV_TL(TL_SMID, smid);
  }
#endif

  const std::int32_t row = static_cast<std::int32_t>(blockIdx.x);
  const std::int32_t h = static_cast<std::int32_t>(blockIdx.y) / a.hchunks;
  const std::int32_t g0 = (static_cast<std::int32_t>(blockIdx.y) % a.hchunks) * GMAX;
  const std::int32_t ng = min(GMAX, a.group - g0);
  const std::int32_t qh0 = h * a.group + g0;
  const std::int32_t split = static_cast<std::int32_t>(blockIdx.z);

  std::int32_t seq = 0, len = 0;
  attn_row_info(row, a.q_indptr, a.batch, a.lens, a.causal, seq, len);
  // fused append: position of the new token (-1: none; a length above the capacity is clamped and writes nothing)
  const std::int32_t tnew = APPEND && len >= 1 && len <= a.src.capacity() ? len - 1 : -1;
  len = max(0, min(len, a.src.capacity()));
  const std::int32_t start = split * a.chunk;
  const std::int32_t end = split == a.num_splits - 1 ? len : min(len, start + a.chunk);
  const std::int32_t ntiles = end > start ? (end - start + TILE - 1) / TILE : 0;

  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int li = lane & (LPR - 1);
  const int rg = warp * C::RGW + lane / LPR;
  const bool act = li < ACTIVE;
  const std::int64_t head_off = static_cast<std::int64_t>(h) * D;

  // q (scaled by scale * log2 e) -> registers. MMA: S^T (8 keys x 8 heads) = K Q^T with m16n8k16 (the A rows 8..15
  // repeat the 8 keys), O^T (D x 8 heads) += V^T P^T with m16n8k8. Lane: group gi = lane / 4 (key row of S^T, head of
  // the Q and P fragments), qd = lane % 4 (heads 2 qd, 2 qd + 1 of S^T and O^T). Q unscaled in CT (exact), the scale
  // applied to the f32 scores. q is written by the previous kernel: loaded after griddepcontrol.wait (kv_ahead: after
  // the prologue).
  constexpr int KS = D / 16, MT = D / 16;  // k-steps of Q.K, m-tiles of O^T
  const int gi = lane >> 2, qd = lane & 3;
  float q[GMAX][VEC];
  unsigned qb[C::MMA ? KS : 1][2];
  auto load_q = [&]() {
    if constexpr (!C::MMA) {
#pragma unroll
      for (int g = 0; g < GMAX; ++g)
#pragma unroll
        for (int j = 0; j < CPL; ++j)
#pragma unroll
          for (int e = 0; e < EPC; ++e) {
            float v = 0.f;
            if (act && g < ng)
              v = load_f(a.q[static_cast<std::int64_t>(row) * a.q_ld + static_cast<std::int64_t>(qh0 + g) * D +
                             (li + j * ACTIVE) * EPC + e]) *
                  a.scale_log2;
            q[g][j * EPC + e] = v;
          }
    } else {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          unsigned w = 0;
          if (gi < ng) {
            const CT* qp = a.q + static_cast<std::int64_t>(row) * a.q_ld + static_cast<std::int64_t>(qh0 + gi) * D +
                           ks * 16 + hf * 8 + 2 * qd;
            w = attn_bits16(qp[0]) | (attn_bits16(qp[1]) << 16);
          }
          qb[ks][hf] = w;
        }
    }
  };
  if (!a.ahead) load_q();
  float mm[2], ll[2], oacc[C::MMA ? MT : 1][4];
  if constexpr (C::MMA) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mm[h] = NEG_INF;
      ll[h] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int x = 0; x < 4; ++x) oacc[i][x] = 0.f;
  }
  float m[GMAX], l[GMAX], acc[GMAX][VEC];
#pragma unroll
  for (int g = 0; g < GMAX; ++g) {
    m[g] = NEG_INF;
    l[g] = 0.f;
#pragma unroll
    for (int x = 0; x < VEC; ++x) acc[g][x] = 0.f;
  }

  // Tile loader, in two steps so that the block-table loads of a tile are in flight one iteration before its copies
  // are issued: lookup() reads the chunk (block) of every row this thread copies, issue() starts the cp.async of
  // TILE key rows (K and V, head h) of positions t0.. into stage `st`; rows >= end are zero-filled.
  // lookup() does not depend on the length: for decode (seq = row) the block ids of the first tiles are loaded
  // together with seq_lens (positions below the split's host-side bound and the capacity: inside the table), and the
  // length masks the copies in issue().
  const std::int32_t bound = min(split == a.num_splits - 1 ? a.src.capacity() : start + a.chunk, a.src.capacity());
  auto lookup = [&](std::int32_t tile, std::int32_t(&chunk)[C::LOADS]) {
    const std::int32_t t0 = start + tile * TILE;
#pragma unroll
    for (int i = 0; i < C::LOADS; ++i) {
      const int idx = tid + i * NT;
      const int r = idx / C::NCHUNK;
      chunk[i] = -1;
      if (idx < TILE * C::NCHUNK && t0 + r < bound) chunk[i] = a.src.chunk_of(seq, t0 + r);
    }
  };
  // with_new: the fused append's new token is copied from new_k/new_v (after the wait only; kv_ahead's prologue
  // leaves its row for the stores after the wait).
  auto issue = [&](std::int32_t tile, int st, const std::int32_t(&chunk)[C::LOADS], bool with_new) {
    const std::int32_t t0 = start + tile * TILE;
    CT* sk = smem + st * C::STAGE_ELEMS;
    CT* sv = sk + TILE * DP;
#pragma unroll
    for (int i = 0; i < C::LOADS; ++i) {
      const int idx = tid + i * NT;
      if (idx < TILE * C::NCHUNK) {
        const int r = idx / C::NCHUNK, ch = idx % C::NCHUNK;
        const bool ok = chunk[i] >= 0 && t0 + r < end;
        const std::int64_t o = ok ? a.src.offset_in(chunk[i], t0 + r) + head_off + ch * EPC : 0;
        if (!APPEND || t0 + r != tnew || t0 + r >= end) {  // the fused append's new token is copied below
          attn_cp_async16(sk + r * DP + ch * EPC, a.src.k + o, ok ? 16 : 0);
          attn_cp_async16(sv + r * DP + ch * EPC, a.src.v + o, ok ? 16 : 0);
        }
      }
    }
    // fused append: the new token's K/V rows come from the input, not the cache (in the same cp.async group)
    if (APPEND && with_new && static_cast<std::uint32_t>(tnew - t0) < static_cast<std::uint32_t>(TILE) &&
        tnew < end && tid < C::NCHUNK) {
      const int r = tnew - t0;
      attn_cp_async16(sk + r * DP + tid * EPC,
                      a.new_k + static_cast<std::int64_t>(row) * a.new_k_ld + head_off + tid * EPC, 16);
      attn_cp_async16(sv + r * DP + tid * EPC,
                      a.new_v + static_cast<std::int64_t>(row) * a.new_v_ld + head_off + tid * EPC, 16);
    }
  };

  // Prologue: the block ids of the first STAGES tiles are loaded together (one round trip), then STAGES - 1 tiles
  // of copies are issued; the ids of tile STAGES - 1 stay in `chunk` for the first copies of the loop.
  std::int32_t chunk[C::LOADS];
  {
    std::int32_t pre[STAGES - 1][C::LOADS];
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) lookup(s, pre[s]);
    lookup(STAGES - 1, chunk);
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < ntiles) issue(s, s, pre[s], !a.ahead);
      attn_cp_async_commit();
    }
  }
  if (a.ahead) {  // kv_ahead: the cache copies are out; now wait for the previous kernel, then what it wrote
    grid_dependency_wait();
    FRUGAL_KV_TL(TL_WAITED, attn_gtime());
    load_q();
    // the new token's K/V rows of a prologue tile (later tiles: issue() in the loop), stored before the loop's
    // first barrier; no copy targets that row (issue() skips position tnew)
    if (APPEND && tnew >= start && tnew < end && (tnew - start) / TILE < STAGES - 1 && tid < 2 * C::NCHUNK) {
      const bool isv = tid >= C::NCHUNK;
      const int ch = isv ? tid - C::NCHUNK : tid;
      const int it = (tnew - start) / TILE, r = tnew - start - it * TILE;
      CT* dst = smem + it * C::STAGE_ELEMS + (isv ? TILE * DP : 0) + r * DP + ch * EPC;
      const CT* from = (isv ? a.new_v + static_cast<std::int64_t>(row) * a.new_v_ld
                            : a.new_k + static_cast<std::int64_t>(row) * a.new_k_ld) +
                       head_off + ch * EPC;
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(from);
    }
  }
  // Fused append: the CTA that owns the new token's position (first head chunk of kv head h) writes its K/V row
  // (head h) into the cache. Readers of that position take it from the input, so the order does not matter.
  if (APPEND && tnew >= start && tnew < end && g0 == 0) {
    constexpr int NCH = C::NCHUNK;
    if (tid < 2 * NCH) {
      const std::int32_t blk = a.src.chunk_of(seq, tnew);
      if (blk >= 0) {
        const bool isv = tid >= NCH;
        const int ch = isv ? tid - NCH : tid;
        const std::int64_t o = a.src.offset_in(blk, tnew) + head_off + ch * EPC;
        const CT* from = (isv ? a.new_v + static_cast<std::int64_t>(row) * a.new_v_ld
                              : a.new_k + static_cast<std::int64_t>(row) * a.new_k_ld) +
                         head_off + ch * EPC;
        *reinterpret_cast<uint4*>((isv ? a.cache_v : a.cache_k) + o) = *reinterpret_cast<const uint4*>(from);
      }
    }
  }

  FRUGAL_KV_TL(TL_ISSUED, attn_gtime());
  FRUGAL_KV_TL(TL_NTILES, static_cast<unsigned long long>(ntiles));
  for (std::int32_t it = 0; it < ntiles; ++it) {
    attn_cp_async_wait<STAGES - 2>();
    __syncthreads();  // tile `it` visible to all; stage (it-1) % STAGES free for reuse
#if FRUGAL_KV_ATTN_TIMELINE
    if (it < 4) FRUGAL_KV_TL(TL_TILE0 + it, attn_gtime());
#endif
    if (it + STAGES - 1 < ntiles) issue(it + STAGES - 1, (it + STAGES - 1) % STAGES, chunk, true);
    attn_cp_async_commit();
    lookup(it + STAGES, chunk);  // block ids of the next copies: in flight during this tile's math

    const CT* sk = smem + (it % STAGES) * C::STAGE_ELEMS;
    const CT* sv = sk + TILE * DP;
    const std::int32_t t0 = start + it * TILE;

    if constexpr (C::MMA) {
#pragma unroll
      for (int sl = 0; sl < C::SLABS; ++sl) {
        const int kr0 = (sl * C::NW + warp) * 8;                     // first key row of this warp's slab
        const int lrow = (kr0 + (lane & 7)) * DP + (lane >> 3) * 8;  // ldmatrix row address of this lane
        float c0[4] = {0.f, 0.f, 0.f, 0.f}, c1[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int kp = 0; kp < KS / 2; ++kp) {
          unsigned r[4];
          attn_ldsm_x4(r, sk + lrow + kp * 32);
          attn_mma16<CT>(c0, r[0], r[0], r[1], r[1], qb[2 * kp][0], qb[2 * kp][1]);
          attn_mma16<CT>(c1, r[2], r[2], r[3], r[3], qb[2 * kp + 1][0], qb[2 * kp + 1][1]);
        }
        if constexpr (KS % 2 != 0) {
          unsigned r[4];
          attn_ldsm_x2(r, sk + lrow + (KS / 2) * 32);
          attn_mma16<CT>(c0, r[0], r[0], r[1], r[1], qb[KS - 1][0], qb[KS - 1][1]);
        }
        const bool valid = t0 + kr0 + gi < end;
        float sc[2], mn[2];
        bool grow = false;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          sc[h] = __fmul_rn(__fadd_rn(c0[h], c1[h]), a.scale_log2);
          float mt = valid ? sc[h] : NEG_INF;
#pragma unroll
          for (int off = 4; off < 32; off *= 2) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, off));
          mn[h] = fmaxf(mm[h], mt);
          grow = grow || mn[h] != mm[h];
        }
        if (__any_sync(0xffffffffu, grow)) {  // a running max grew (otherwise every correction would be exactly 1)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const float corr = mn[h] != NEG_INF ? exp2f(mm[h] - mn[h]) : 1.f;
            ll[h] = __fmul_rn(ll[h], corr);
#pragma unroll
            for (int i = 0; i < MT; ++i) {
              oacc[i][h] = __fmul_rn(oacc[i][h], corr);
              oacc[i][h + 2] = __fmul_rn(oacc[i][h + 2], corr);
            }
            mm[h] = mn[h];
          }
        }
        float pr[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          pr[h] = valid && mm[h] != NEG_INF ? exp2f(sc[h] - mm[h]) : 0.f;
          ll[h] = __fadd_rn(ll[h], pr[h]);
        }
        // P^T fragments (keys x heads): P = hi + lo, both rounded to CT, so that P.V keeps ~f32 precision
        const unsigned phi = attn_pack2<CT>(pr[0], pr[1]);
        float hi0, hi1;
        attn_unpack2<CT>(phi, hi0, hi1);
        const unsigned pb = attn_movmatrix_t(phi);
        const unsigned pl = attn_movmatrix_t(attn_pack2<CT>(pr[0] - hi0, pr[1] - hi1));
#pragma unroll
        for (int ip = 0; ip < MT / 2; ++ip) {
          unsigned r[4];
          attn_ldsm_x4_t(r, sv + lrow + ip * 32);
          attn_mma8<CT>(oacc[2 * ip], r[0], r[1], pl);
          attn_mma8<CT>(oacc[2 * ip + 1], r[2], r[3], pl);
          attn_mma8<CT>(oacc[2 * ip], r[0], r[1], pb);
          attn_mma8<CT>(oacc[2 * ip + 1], r[2], r[3], pb);
        }
        if constexpr (MT % 2 != 0) {
          unsigned r[4];
          attn_ldsm_x2_t(r, sv + lrow + (MT / 2) * 32);
          attn_mma8<CT>(oacc[MT - 1], r[0], r[1], pl);
          attn_mma8<CT>(oacc[MT - 1], r[0], r[1], pb);
        }
      }
    } else {
      float s[GMAX][R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int rr = rg + r * NRG;
        float kf[VEC];
#pragma unroll
        for (int j = 0; j < CPL; ++j) {
          uint4 raw = make_uint4(0, 0, 0, 0);
          if (act) raw = *reinterpret_cast<const uint4*>(sk + rr * D + (li + j * ACTIVE) * EPC);
          attn_chunk_to_float<CT>(raw, kf + j * EPC);
        }
#pragma unroll
        for (int g = 0; g < GMAX; ++g) {
          float d = 0.f;
#pragma unroll
          for (int x = 0; x < VEC; ++x) d = fmaf(q[g][x], kf[x], d);
          s[g][r] = d;
        }
      }
#pragma unroll
      for (int off = LPR / 2; off >= 1; off /= 2)
#pragma unroll
        for (int g = 0; g < GMAX; ++g)
#pragma unroll
          for (int r = 0; r < R; ++r) s[g][r] += __shfl_xor_sync(0xffffffffu, s[g][r], off);

      bool valid[R];
#pragma unroll
      for (int r = 0; r < R; ++r) valid[r] = t0 + rg + r * NRG < end;
#pragma unroll
      for (int g = 0; g < GMAX; ++g) {
        float mt = NEG_INF;
#pragma unroll
        for (int r = 0; r < R; ++r) mt = valid[r] ? fmaxf(mt, s[g][r]) : mt;
        const float mn = fmaxf(m[g], mt);
        const bool any = mn != NEG_INF;
        const float corr = any ? exp2f(m[g] - mn) : 1.f;
        l[g] = __fmul_rn(l[g], corr);  // explicit roundings (no FMA contraction): every instantiation (paged,
                                       // contiguous, fused) computes the same bits
#pragma unroll
        for (int x = 0; x < VEC; ++x) acc[g][x] = __fmul_rn(acc[g][x], corr);
        m[g] = mn;
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float p = (valid[r] && any) ? exp2f(s[g][r] - mn) : 0.f;
          s[g][r] = p;
          l[g] = __fadd_rn(l[g], p);
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int rr = rg + r * NRG;
        float vf[VEC];
#pragma unroll
        for (int j = 0; j < CPL; ++j) {
          uint4 raw = make_uint4(0, 0, 0, 0);
          if (act) raw = *reinterpret_cast<const uint4*>(sv + rr * D + (li + j * ACTIVE) * EPC);
          attn_chunk_to_float<CT>(raw, vf + j * EPC);
        }
#pragma unroll
        for (int g = 0; g < GMAX; ++g)
#pragma unroll
          for (int x = 0; x < VEC; ++x) acc[g][x] = fmaf(s[g][r], vf[x], acc[g][x]);
      }
    }  // CUDA cores
  }

  FRUGAL_KV_TL(TL_LOOP, attn_gtime());
  FRUGAL_KV_TL(TL_CLK1, clock64());
  // Combine the row groups of a warp (shuffles), then the warps (shared memory).
  if constexpr (C::MMA) {
#pragma unroll
    for (int off = 4; off < 32; off *= 2)
#pragma unroll
      for (int h = 0; h < 2; ++h) ll[h] = __fadd_rn(ll[h], __shfl_xor_sync(0xffffffffu, ll[h], off));
  } else {
#pragma unroll
    for (int off = LPR; off < 32; off *= 2) {
#pragma unroll
      for (int g = 0; g < GMAX; ++g) {
        const float mo = __shfl_xor_sync(0xffffffffu, m[g], off);
        const float lo = __shfl_xor_sync(0xffffffffu, l[g], off);
        const float mn = fmaxf(m[g], mo);
        const bool any = mn != NEG_INF;
        const float ca = any ? exp2f(m[g] - mn) : 0.f, cb = any ? exp2f(mo - mn) : 0.f;
        l[g] = fmaf(l[g], ca, __fmul_rn(lo, cb));
#pragma unroll
        for (int x = 0; x < VEC; ++x) {
          const float ao = __shfl_xor_sync(0xffffffffu, acc[g][x], off);
          acc[g][x] = fmaf(acc[g][x], ca, __fmul_rn(ao, cb));
        }
        m[g] = mn;
      }
    }
  }
  attn_cp_async_wait<0>();
  __syncthreads();                                     // all tiles consumed: the stage buffers become merge scratch
  float* s_acc = reinterpret_cast<float*>(attn_smem);  // [NW][GMAX][D]
  float* s_m = s_acc + C::NW * GMAX * D;               // [NW][GMAX]
  float* s_l = s_m + C::NW * GMAX;                     // [NW][GMAX]
  if constexpr (C::MMA) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int g = 2 * qd + h;
      if (g < GMAX) {
#pragma unroll
        for (int i = 0; i < MT; ++i) {
          s_acc[(warp * GMAX + g) * D + 16 * i + gi] = oacc[i][h];
          s_acc[(warp * GMAX + g) * D + 16 * i + gi + 8] = oacc[i][h + 2];
        }
        if (gi == 0) {
          s_m[warp * GMAX + g] = mm[h];
          s_l[warp * GMAX + g] = ll[h];
        }
      }
    }
  } else {
    if (lane < LPR && act) {
#pragma unroll
      for (int g = 0; g < GMAX; ++g)
#pragma unroll
        for (int j = 0; j < CPL; ++j)
#pragma unroll
          for (int e = 0; e < EPC; ++e)
            s_acc[(warp * GMAX + g) * D + (li + j * ACTIVE) * EPC + e] = acc[g][j * EPC + e];
    }
    if (lane == 0) {
#pragma unroll
      for (int g = 0; g < GMAX; ++g) {
        s_m[warp * GMAX + g] = m[g];
        s_l[warp * GMAX + g] = l[g];
      }
    }
  }
  __syncthreads();
  // cluster merge: this CTA's partial stays in shared memory, after the per-warp scratch
  float* s_po = s_l + C::NW * GMAX;  // [GMAX][D]
  float* s_plse = s_po + GMAX * D;   // [GMAX]
  for (int idx = tid; idx < ng * D; idx += NT) {
    const int g = idx / D, d = idx % D;
    float mx = NEG_INF;
#pragma unroll
    for (int w = 0; w < C::NW; ++w) mx = fmaxf(mx, s_m[w * GMAX + g]);
    float L = 0.f, O = 0.f;
    if (mx != NEG_INF) {
#pragma unroll
      for (int w = 0; w < C::NW; ++w) {
        const float c = exp2f(s_m[w * GMAX + g] - mx);
        L = fmaf(s_l[w * GMAX + g], c, L);
        O = fmaf(s_acc[(w * GMAX + g) * D + d], c, O);
      }
    }
    const float o = L > 0.f ? O / L : 0.f;
    const std::int32_t qh = qh0 + g;
    if (a.num_splits == 1) {
      a.out[static_cast<std::int64_t>(row) * a.out_ld + static_cast<std::int64_t>(qh) * D + d] = store_f<CT>(o);
    } else if (a.cluster) {
      s_po[idx] = o;
      if (d == 0) s_plse[g] = L > 0.f ? mx + log2f(L) : NEG_INF;
    } else {
      const std::int64_t pr = (static_cast<std::int64_t>(split) * a.rows + row) * a.q_heads + qh;
      a.part_o[pr * D + d] = o;
      if (d == 0) a.part_lse[pr] = L > 0.f ? mx + log2f(L) : NEG_INF;
    }
  }
#if FRUGAL_KV_ATTN_TIMELINE
  __syncthreads();
  FRUGAL_KV_TL(TL_PART, attn_gtime());
#endif
  if (a.num_splits > 1 && a.cluster) attn_merge_cluster<CT, D, GMAX>(a, row, qh0, ng, s_po, s_plse);
  else if (a.num_splits > 1 && a.counters != nullptr) attn_merge_last<CT, D, GMAX>(a, row, qh0, ng, smem);
}

//! out[row, qh, :] = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M), one CTA of 128 threads per (row, query head),
//! parallel over the splits: the log-sum-exps go to shared memory in one pass (max and weights by block reductions),
//! then groups of head_dim / 4 threads stream the partial rows as float4 (split s to group s % groups, ascending),
//! and the groups are summed in a fixed order: deterministic, a few L2 round trips whatever the split count.
template <class CT>
__global__ void __launch_bounds__(128)
    attention_merge_kernel(const float* __restrict__ part_o, const float* __restrict__ part_lse, CT* out,
                           std::int64_t out_ld, std::int32_t rows, std::int32_t q_heads, std::int32_t head_dim,
                           std::int32_t splits) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");  // the consumer of `out` may get scheduled
  asm volatile("griddepcontrol.wait;" ::: "memory");               // the partials of the attention kernel are complete
#endif
  constexpr float NEG_INF = -__builtin_huge_valf();
  constexpr int NT = 128, MAXS = 1024;
  __shared__ float s_w[MAXS];
  __shared__ float s_red[NT / 32];
  __shared__ float4 s_acc[NT];
  const std::int64_t w = blockIdx.x;  // row * q_heads + qh
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const std::int32_t row = static_cast<std::int32_t>(w / q_heads), qh = static_cast<std::int32_t>(w % q_heads);
  const std::int64_t stride = static_cast<std::int64_t>(rows) * q_heads;  // between splits

  float mx = NEG_INF;
  for (int s = tid; s < splits; s += NT) {
    const float v = part_lse[s * stride + w];
    s_w[s] = v;
    mx = fmaxf(mx, v);
  }
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  if (lane == 0) s_red[warp] = mx;
  __syncthreads();
  mx = fmaxf(fmaxf(s_red[0], s_red[1]), fmaxf(s_red[2], s_red[3]));
  __syncthreads();  // s_red reused below
  float L = 0.f;
  for (int s = tid; s < splits; s += NT) {
    const float v = s_w[s];
    const float c = mx != NEG_INF && v != NEG_INF ? exp2f(v - mx) : 0.f;
    s_w[s] = c;
    L += c;
  }
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) L += __shfl_xor_sync(0xffffffffu, L, off);
  if (lane == 0) s_red[warp] = L;
  __syncthreads();  // weights and partial sums visible
  L = (s_red[0] + s_red[1]) + (s_red[2] + s_red[3]);

  const int q4 = head_dim / 4;  // float4 columns of a row (16..32)
  const int groups = NT / q4;
  const int grp = tid / q4, col = tid - grp * q4;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  if (grp < groups) {
    const float4* po = reinterpret_cast<const float4*>(part_o + w * head_dim) + col;
    const std::int64_t sstride = stride * q4;  // float4s between splits
    int s = grp;
#pragma unroll 4
    for (; s < splits; s += groups) {
      const float c = s_w[s];
      const float4 v = po[s * sstride];
      acc.x = fmaf(c, v.x, acc.x);
      acc.y = fmaf(c, v.y, acc.y);
      acc.z = fmaf(c, v.z, acc.z);
      acc.w = fmaf(c, v.w, acc.w);
    }
  }
  s_acc[tid] = acc;
  __syncthreads();
  if (tid < q4) {
    float4 o = s_acc[tid];
    for (int g = 1; g < groups; ++g) {
      const float4 v = s_acc[g * q4 + tid];
      o.x += v.x, o.y += v.y, o.z += v.z, o.w += v.w;
    }
    CT* dst = out + static_cast<std::int64_t>(row) * out_ld + static_cast<std::int64_t>(qh) * head_dim + tid * 4;
    dst[0] = store_f<CT>(L > 0.f ? o.x / L : 0.f);
    dst[1] = store_f<CT>(L > 0.f ? o.y / L : 0.f);
    dst[2] = store_f<CT>(L > 0.f ? o.z / L : 0.f);
    dst[3] = store_f<CT>(L > 0.f ? o.w / L : 0.f);
  }
}

struct attn_plan {
  std::int32_t splits = 1;
  std::int32_t chunk = 1;  // keys per split
  std::int32_t sms = 0;    // SMs of the device it was made for (attn_plan_cuda)
};

//! Split-K plan. Decode is memory-bound and every CTA of a launch streams the same number of keys. Auto: at most one
//! wave, splits <= floor(resident CTAs / (rows * kv_heads * head chunks)); each split streams at least min_keys keys,
//! and pref_keys (longer CTAs amortize their prologue, epilogue and the merge better) as long as the grid still has
//! >= pref_occ / 100 CTAs per SM (otherwise short contexts would leave SMs idle); chunks are rounded up to multiples
//! of 64 keys.
//! Measured on H100 (docs/kv.md, split sweep): B = 1, T = 8192: 32-64 splits best; T = 1024: 8 splits.
//! `requested` > 0 forces ceil(max_len / ceil(max_len / requested)) splits. Deterministic in its arguments.
inline attn_plan attn_make_plan(std::int32_t rows, std::int32_t kv_heads, std::int32_t group, std::int32_t max_len,
                                std::int64_t resident_ctas, std::int32_t requested, std::int32_t sms = 132,
                                std::int32_t min_keys = FRUGAL_KV_ATTN_SPLIT_MIN_KEYS,
                                std::int32_t pref_keys = FRUGAL_KV_ATTN_SPLIT_PREF_KEYS,
                                std::int32_t pref_occ = FRUGAL_KV_ATTN_SPLIT_PREF_OCC) {
  attn_plan p;
  if (max_len <= 0 || rows <= 0) return p;
  const std::int64_t hchunks = (group + 7) / 8;
  const std::int64_t base = static_cast<std::int64_t>(rows) * kv_heads * hchunks;
  std::int64_t s;
  if (requested > 0) {
    s = requested;
  } else {
    s = std::max<std::int64_t>(1, resident_ctas / base);
    const std::int64_t s_pref = (max_len + pref_keys - 1) / std::max<std::int32_t>(pref_keys, 1);
    const std::int64_t s_min = (max_len + min_keys - 1) / std::max<std::int32_t>(min_keys, 1);
    s = std::min<std::int64_t>(s, base * s_pref * 100 >= std::int64_t{pref_occ} * sms ? s_pref : s_min);
  }
  s = std::max<std::int64_t>(1, std::min<std::int64_t>({s, 1024, max_len}));
  std::int64_t chunk = (max_len + s - 1) / s;
  if (requested <= 0) chunk = (chunk + 63) / 64 * 64;
  p.chunk = static_cast<std::int32_t>(chunk);
  p.splits = static_cast<std::int32_t>((max_len + chunk - 1) / chunk);
  return p;
}

//! CTAs of the (paged) attention kernel for this shape that fit on the current device at once.
//! Kernels whose stages exceed 48 KB of shared memory opt in to more (per device; cheap, idempotent).
template <class K>
void attn_smem_optin(K kernel, int smem) {
  if (smem >= 48 * 1024 - 1024)  // the in-kernel merge adds static shared memory
    FRUGAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
                      "decode_attention");
}

template <class CT, int D>
std::int64_t attn_resident_ctas(std::int32_t group, int sms) {
  int occ = 1;
  auto query = [&](auto kernel, int smem) {
    attn_smem_optin(kernel, smem);
    FRUGAL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kernel, 128, smem), "decode_attention");
  };
  if (group == 1)
    query(attention_kernel<CT, D, 1, kv_paged_source<CT>>, attn_cfg<CT, D, 1>::SMEM);
  else if (group == 2)
    query(attention_kernel<CT, D, 2, kv_paged_source<CT>>, attn_cfg<CT, D, 2>::SMEM);
  else if (group <= 4)
    query(attention_kernel<CT, D, 4, kv_paged_source<CT>>, attn_cfg<CT, D, 4>::SMEM);
  else
    query(attention_kernel<CT, D, 8, kv_paged_source<CT>>, attn_cfg<CT, D, 8>::SMEM);
  return static_cast<std::int64_t>(std::max(occ, 1)) * sms;
}

template <class T>
attn_plan attn_plan_cuda(std::int32_t rows, std::int32_t kv_heads, std::int32_t group, std::int32_t head_dim,
                         std::int32_t max_len, std::int32_t requested) {
  using CT = cuda_type_t<T>;
  int dev = 0, sms = 1;
  FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), "decode_attention");
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "decode_attention");
  std::int64_t resident = 4ll * sms;
  if (requested <= 0 && max_len > 0 && rows > 0) {
    switch (head_dim) {
      case 64:
        resident = attn_resident_ctas<CT, 64>(group, sms);
        break;
      case 80:
        resident = attn_resident_ctas<CT, 80>(group, sms);
        break;
      case 96:
        resident = attn_resident_ctas<CT, 96>(group, sms);
        break;
      case 128:
        resident = attn_resident_ctas<CT, 128>(group, sms);
        break;
      default:
        fail("decode_attention", "head_dim (=", head_dim, ") is not supported on CUDA; supported: 64, 80, 96, 128");
    }
  }
  attn_plan plan = attn_make_plan(rows, kv_heads, group, max_len, resident, requested, sms);
  plan.sms = sms;
  return plan;
}

//! Arrival counters of the in-kernel split-K merge: one per (row, kv head, head chunk), at the start of every split-K
//! workspace whatever the shape, so that calls of different shapes can share a workspace. Launches with more
//! (row, kv head, head chunk) triples use the merge kernel.
inline constexpr std::int64_t attn_max_counters = 4096;

inline std::size_t attn_workspace_bytes(const attn_plan& p, std::int32_t rows, std::int32_t q_heads,
                                        std::int32_t head_dim) {
  if (p.splits <= 1) return 0;
  workspace_carver c;
  c.take<unsigned>(attn_max_counters);  // merge counters: first, a fixed size (the same place for every shape)
  c.take<float>(static_cast<std::size_t>(p.splits) * rows * q_heads * head_dim);
  c.take<float>(static_cast<std::size_t>(p.splits) * rows * q_heads);
  return c.bytes();
}

//! Launches the attention kernel; returns whether it merges the splits itself (otherwise the caller launches the
//! merge kernel): through the cluster (a.cluster), or with counters when the merge's shared memory fits the stage buffers.
template <class CT, int D, int GMAX, class Source, bool APPEND>
bool attn_launch_k(const char* op, attn_args<CT, Source> a, std::int32_t kv_heads, cudaStream_t stream) {
  using C = attn_cfg<CT, D, GMAX>;
  if (a.num_splits <= 1 || attn_merge_smem(GMAX, a.num_splits) > C::SMEM) a.counters = nullptr;
  if (a.cluster) {  // sm_90 code (checked once per instantiation) on an sm_90 device (checked per call)
    static const bool sm90_code = [] {
      cudaFuncAttributes fa{};
      return cudaFuncGetAttributes(&fa, attention_kernel<CT, D, GMAX, Source, APPEND>) == cudaSuccess &&
             fa.ptxVersion >= 90;
    }();
    int dev = 0, major = 0;
    FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), op);
    FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), op);
    a.cluster = sm90_code && major >= 9;
  }
  if (a.cluster) a.counters = nullptr;
#if FRUGAL_KV_ATTN_MERGE == 1
  if (a.counters)
    FRUGAL_CUDA_CHECK(
        cudaMemsetAsync(a.counters, 0, static_cast<std::size_t>(a.rows) * kv_heads * a.hchunks * sizeof(unsigned),
                        stream),
        op);
#endif
  const dim3 grid(static_cast<unsigned>(a.rows), static_cast<unsigned>(kv_heads * a.hchunks),
                  static_cast<unsigned>(a.num_splits));
  attn_smem_optin(attention_kernel<CT, D, GMAX, Source, APPEND>, C::SMEM);
  // sm_90: programmatic dependent launch, so the blocks are resident when the previous kernel finishes (the kernel
  // waits for it first thing: griddepcontrol.wait; with kv_ahead after its first cache copies).
  if (a.cluster)
    launch_pdl_cluster(op, attention_kernel<CT, D, GMAX, Source, APPEND>, grid, dim3(C::NT), C::SMEM, stream,
                       dim3(1, 1, static_cast<unsigned>(a.num_splits)), a);
  else
    launch_pdl(op, attention_kernel<CT, D, GMAX, Source, APPEND>, grid, dim3(C::NT), C::SMEM, stream, a);
  check_launch(op, "attention_kernel");
  return a.counters != nullptr || a.cluster;
}

template <class CT, int D, int GMAX, class Source>
bool attn_launch(const char* op, const attn_args<CT, Source>& a, std::int32_t kv_heads, cudaStream_t stream) {
  if (a.new_k != nullptr) return attn_launch_k<CT, D, GMAX, Source, true>(op, a, kv_heads, stream);
  return attn_launch_k<CT, D, GMAX, Source, false>(op, a, kv_heads, stream);
}

template <class CT, int D, class Source>
bool attn_dispatch_group(const char* op, attn_args<CT, Source>& a, std::int32_t kv_heads, cudaStream_t stream) {
  if (a.group == 1) {
    a.hchunks = 1;
    return attn_launch<CT, D, 1>(op, a, kv_heads, stream);
  } else if (a.group == 2) {
    a.hchunks = 1;
    return attn_launch<CT, D, 2>(op, a, kv_heads, stream);
  } else if (a.group <= 4) {
    a.hchunks = 1;
    return attn_launch<CT, D, 4>(op, a, kv_heads, stream);
  }
  a.hchunks = (a.group + 7) / 8;
  return attn_launch<CT, D, 8>(op, a, kv_heads, stream);
}

//! The fused append of decode: new K/V rows [rows, kv_heads * head_dim] and the writable cache base (k, v).
template <class T>
struct attn_append_in {
  matrix_view<const T> k, v;
  T* cache_k = nullptr;
  T* cache_v = nullptr;
};

template <class T, class Source>
void attention_cuda(cuda_t tag, const char* op, matrix_view<const T> q, matrix_view<T> out, const Source& src,
                    const std::int32_t* lens, const std::int32_t* q_indptr, std::int32_t batch,
                    const attention_params& p, std::int32_t kv_heads, std::int32_t head_dim, std::int32_t max_len,
                    std::int32_t num_splits, workspace ws, const attn_append_in<T>* app = nullptr) {
  using CT = cuda_type_t<T>;
  const std::int32_t rows = static_cast<std::int32_t>(q.rows);
  if (rows == 0) return;
  FRUGAL_CHECK(lens != nullptr, op, "seq_lens is null");
  FRUGAL_CHECK(src.k != nullptr && src.v != nullptr, op, "cache data is null");
  FRUGAL_CHECK(reinterpret_cast<std::uintptr_t>(src.k) % 16 == 0 && reinterpret_cast<std::uintptr_t>(src.v) % 16 == 0,
               op, "cache data must be 16-byte aligned");
  if constexpr (!Source::paged)
    FRUGAL_CHECK(src.seq_stride % (16 / static_cast<std::int64_t>(sizeof(T))) == 0, op,
                 "seq_stride must be a multiple of 16 bytes");
  const std::int32_t group = p.q_heads / kv_heads;
  FRUGAL_CHECK(static_cast<std::int64_t>(kv_heads) * ((group + 7) / 8) <= 65535, op, "too many heads");
  const attn_plan plan = attn_plan_cuda<T>(rows, kv_heads, group, head_dim, max_len, num_splits);

  using SCT = std::conditional_t<Source::paged, kv_paged_source<CT>, kv_contiguous_source<CT>>;
  attn_args<CT, SCT> a{};
  a.q = as_cuda(q.data);
  a.q_ld = q.ld;
  a.out = as_cuda(out.data);
  a.out_ld = out.ld;
  // the kernel reads K/V as the CUDA element type: same fields, reinterpreted pointers
  static_assert(sizeof(SCT) == sizeof(Source));
  std::memcpy(static_cast<void*>(&a.src), static_cast<const void*>(&src), sizeof(SCT));
  a.lens = lens;
  a.q_indptr = q_indptr;
  a.batch = batch;
  a.rows = rows;
  a.q_heads = p.q_heads;
  a.group = group;
  a.scale_log2 = attn_scale(p, head_dim) * 1.4426950408889634f;
  a.num_splits = plan.splits;
  a.chunk = plan.chunk;
  a.causal = p.causal;
  a.ahead = p.kv_ahead && q_indptr == nullptr;  // decode only (prefill's K/V are appended by the kernel before)
  a.part_o = nullptr;
  a.part_lse = nullptr;
  a.counters = nullptr;
  // Cluster merge only for a grid of at most one CTA per SM: there the merge's latency is what the launch waits for,
  // and clusters place without queueing. Larger grids keep the counter merge: the seventh session measured clusters
  // of a 4-CTA-per-SM kernel not fitting at once (a second wave: B = 8, T = 1024, 8 splits +18 %; B = 32, group 7,
  // 4 splits +16 %; docs/kv.md).
  a.cluster = p.cluster_merge && plan.splits >= 2 && plan.splits <= 8 && q_indptr == nullptr &&
              static_cast<std::int64_t>(rows) * kv_heads * ((group + 7) / 8) * plan.splits <= plan.sms;
  a.new_k = a.new_v = nullptr;
  a.new_k_ld = a.new_v_ld = 0;
  a.cache_k = a.cache_v = nullptr;
  if (app) {
    a.new_k = as_cuda(app->k.data);
    a.new_v = as_cuda(app->v.data);
    a.new_k_ld = app->k.ld;
    a.new_v_ld = app->v.ld;
    a.cache_k = as_cuda(app->cache_k);
    a.cache_v = as_cuda(app->cache_v);
  }
  if (plan.splits > 1) {
    workspace_carver c(ws);
    a.counters = c.take<unsigned>(attn_max_counters);
    a.part_o = c.take<float>(static_cast<std::size_t>(plan.splits) * rows * p.q_heads * head_dim);
    a.part_lse = c.take<float>(static_cast<std::size_t>(plan.splits) * rows * p.q_heads);
    if (FRUGAL_KV_ATTN_MERGE == 0 || static_cast<std::int64_t>(rows) * kv_heads * ((group + 7) / 8) > attn_max_counters)
      a.counters = nullptr;
    c.check(op);
    FRUGAL_CHECK(reinterpret_cast<std::uintptr_t>(ws.data) % 16 == 0, op, "workspace must be 16-byte aligned");
  }

  bool merged = false;
  switch (head_dim) {
    case 64:
      merged = attn_dispatch_group<CT, 64>(op, a, kv_heads, tag.stream);
      break;
    case 80:
      merged = attn_dispatch_group<CT, 80>(op, a, kv_heads, tag.stream);
      break;
    case 96:
      merged = attn_dispatch_group<CT, 96>(op, a, kv_heads, tag.stream);
      break;
    case 128:
      merged = attn_dispatch_group<CT, 128>(op, a, kv_heads, tag.stream);
      break;
    default:
      fail(op, "head_dim (=", head_dim, ") is not supported on CUDA; supported: 64, 80, 96, 128");
  }

  if (plan.splits > 1 && !merged)
    launch_pdl(op, attention_merge_kernel<CT>, dim3(static_cast<unsigned>(static_cast<std::int64_t>(rows) * p.q_heads)),
               dim3(128), 0, tag.stream, static_cast<const float*>(a.part_o), static_cast<const float*>(a.part_lse),
               a.out, a.out_ld, rows, p.q_heads, head_dim, plan.splits);
}

}  // namespace detail
FRUGAL_NAMESPACE_END
