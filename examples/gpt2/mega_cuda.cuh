// examples/gpt2/mega_cuda.cuh — the whole batch-1 decode step of GPT-2 as one persistent CUDA kernel
// (session_options::mega, `gpt2 --mega`).
//
// Why: the component step (engine.hpp) launches 2 + 6 · n_layer kernels per token, and on the H100 every launch
// carries a fixed cost of drain, launch and ramp-up (docs/results.md: the 124M step takes 430 µs for 82 µs of weight
// bytes; the 48-GEMV chain alone 225 µs, 4.7 µs per GEMV of 1-5 MB). Here one kernel runs every layer; the
// dependencies between its phases are grid-wide barriers (a counter in device memory), and before each barrier every
// warp asks L2 for the weight rows of a later phase (cp.async.bulk.prefetch.L2), so DRAM keeps streaming while the
// grid waits.
//
// Layout: the linears are row-major copies [out][in] of the channel-major weights (built once by weights_rm),
// so a warp computes one output as a dot product over a contiguous row: no split-K reduction between blocks, and
// every output is summed in a fixed order (deterministic). The tied LM head is the same: [V][C].
//
// One kernel, grid = one 512-thread block per SM (a cooperative launch: all blocks are resident), per layer:
//   A  every block: norm of x (f32, shared memory; layer 0: x = wte[token] + wpe[pos]) ; qkv rows      | barrier
//   B  block b takes heads b, b + grid, ...: append k_h, v_h at lens - 1; attention over lens keys -> att | barrier
//   C  o_proj rows: x[n] += att·Wo[n] + b                                                               | barrier
//   D  norm of x; fc rows: f[n] = gelu(x̂·Wfc[n] + b)                                                    | barrier
//   E  down rows: x[n] += f·Wd[n] + b                                                                    | barrier
// then norm of x and the LM head rows -> logits (gpt2::ops::select_advance picks the token, as in the other modes).
// Rounding points are those of the component step (x, qkv, att, f, logits stored in T; f32 inside), the summation
// order is not: logits agree within f32 rounding, greedy tokens are compared in tests/gpt2/test_gpt2_cuda.cu.
// Limits (checked by the session): CUDA, batch 1, contiguous KV cache, dense (p = 0, no adapters), head_dim 64,
// n_embd a multiple of 8.
#pragma once

#if !defined(__CUDACC__)
#error "examples/gpt2/mega_cuda.cuh is CUDA code"
#endif

#include <cuda_runtime.h>

#include <frugal/core/detail/cuda_common.cuh>
#include <frugal/gemv/gemv.hpp>  // (under nvcc: detail::gemv_unpack)

#include <cstdint>
#include <vector>

#include "backend.hpp"
#include "model.hpp"

namespace gpt2::mega {

using frugal::detail::load_f;
using frugal::detail::store_f;

inline constexpr int threads = 512;
inline constexpr int warps = threads / 32;
inline constexpr int head_dim = 64;

//! One layer's weights in the kernel's layout: row-major [out][in]; biases [out] or null.
template <class C>
struct layer_ptrs {
  const C *qkv, *qkv_b, *proj, *proj_b, *fc, *fc_b, *down, *down_b;
};

template <class C>
struct step_args {
  const layer_ptrs<C>* layers = nullptr;  // [L], device memory
  const C* wte = nullptr;                 // [V, C]
  const C* wpe = nullptr;                 // [n_ctx, C]
  const C* lm = nullptr;                  // [V, C] LM head (final norm's affine folded in)
  const C* lm_b = nullptr;                // [V] or null
  C *x = nullptr, *qkv = nullptr, *att = nullptr, *f = nullptr, *logits = nullptr;
  C* kv = nullptr;                 // layer l: K rows at kv + l * kv_layer, V rows at + kv_v; row t at t * n_embd
  std::int64_t kv_layer = 0, kv_v = 0;
  const std::int32_t *tokens = nullptr, *pos = nullptr, *lens = nullptr;
  unsigned* bar = nullptr;  // [2]: arrivals, exits (zero between launches; the last block out resets them)
  int L = 0, E = 0, H = 0, V = 0;
  bool rms = false;  // x · rstd (rotation-folded model) instead of LayerNorm's (x − mean) · rstd
  float eps = 1e-5f;
  bool prefetch = true;
};

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
//! Block-wide sum / max in a fixed order; every thread gets the result. red: [warps + 1] floats of shared memory.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* red) {
  v = MAX ? warp_max(v) : warp_sum(v);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) red[w] = v;
  __syncthreads();
  if (w == 0) {
    float s = lane < warps ? red[lane] : (MAX ? -__builtin_huge_valf() : 0.f);
    s = MAX ? warp_max(s) : warp_sum(s);
    if (lane == 0) red[warps] = s;
  }
  __syncthreads();
  const float r = red[warps];
  __syncthreads();  // red is reused by the next reduction
  return r;
}

//! Grid-wide barrier number k (1, 2, ...) of this launch: the block's writes before it are visible to every block
//! after it. The block's threads meet (bar.sync), thread 0 arrives with a release reduction and spins on an acquire
//! load until every block has arrived, the block meets again (the pattern of CUTLASS's generic barrier).
__device__ __forceinline__ void grid_barrier(unsigned* ctr, unsigned k) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned target = k * gridDim.x;
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(ctr) : "memory");
    unsigned v;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(ctr) : "memory");
    } while (v < target);
  }
  __syncthreads();
}

//! Values another block wrote during this launch: read at L2 (ld.global.cg), never from a stale L1 line.
template <class C>
__device__ __forceinline__ float ld_shared_f(const C* p) {
  return load_f(__ldcg(p));
}

//! Pulls the rows this warp will compute in a later phase into L2 (at most `cap` rows per warp).
template <class C>
__device__ __forceinline__ void prefetch_rows(const step_args<C>& a, const C* W, int K, int N, int cap) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (!a.prefetch) return;
  const int lane = threadIdx.x & 31, nw = gridDim.x * warps, gw = blockIdx.x * warps + (threadIdx.x >> 5);
  const unsigned bytes = static_cast<unsigned>(K) * sizeof(C);  // K % 8 == 0: a multiple of 16
  for (int i = lane; i < cap; i += 32) {
    const std::int64_t n = gw + static_cast<std::int64_t>(i) * nw;
    if (n >= N) break;
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(W + n * K), "r"(bytes) : "memory");
  }
#else
  (void)a, (void)W, (void)K, (void)N, (void)cap;
#endif
}

// 16 bytes of weights -> f32 (4 floats or 8 halves / bfloat16s): the GEMV's own unpacking.
using frugal::detail::gemv_unpack;

//! out[n] for the rows n of W [N, K] (row-major) this warp owns (n = global warp + i · warps in the grid), four rows
//! at a time (for GPT-2's shapes every row a warp owns is in flight together): acc = Σ_k W[n, k] · xs[k] (xs: f32 in
//! shared memory), lanes over 16-byte vectors of the row, then a warp sum; epi(n, acc) stores.
template <class C, class Epi>
__device__ __forceinline__ void rows_gemv(const C* __restrict__ W, int K, int N, const float* xs, Epi epi) {
  constexpr int VEC = 16 / sizeof(C);
  constexpr int U = 4;
  const int lane = threadIdx.x & 31;
  const int nw = gridDim.x * warps, gw = blockIdx.x * warps + (threadIdx.x >> 5);
  const int nv = K / VEC;
  for (int n0 = gw; n0 < N; n0 += U * nw) {
    float acc[U] = {0.f, 0.f, 0.f, 0.f};
    const C* row[U];
    bool ok[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      ok[u] = n0 + u * nw < N;
      row[u] = W + static_cast<std::int64_t>(ok[u] ? n0 + u * nw : n0) * K;
    }
#pragma unroll 4
    for (int j = lane; j < nv; j += 32) {
      uint4 w[U];
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (ok[u]) w[u] = __ldg(reinterpret_cast<const uint4*>(row[u] + j * VEC));
      float xv[VEC];
#pragma unroll
      for (int q = 0; q < VEC; q += 4) {
        const float4 t = *reinterpret_cast<const float4*>(xs + j * VEC + q);
        xv[q] = t.x, xv[q + 1] = t.y, xv[q + 2] = t.z, xv[q + 3] = t.w;
      }
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (ok[u]) {
          float wf[VEC];
          gemv_unpack(w[u], wf, static_cast<const C*>(nullptr));
#pragma unroll
          for (int q = 0; q < VEC; ++q) acc[u] = fmaf(wf[q], xv[q], acc[u]);
        }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) acc[u] = warp_sum(acc[u]);
    if (lane == 0)
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (ok[u]) epi(n0 + u * nw, acc[u]);
  }
}

//! xs <- norm(v) for v = the E values x (f32 in xs already): LayerNorm without affine, or rms.
__device__ __forceinline__ void norm_inplace(float* xs, int E, bool rms, float eps, float* red) {
  float s = 0.f;
  if (!rms) {
    for (int i = threadIdx.x; i < E; i += threads) s += xs[i];
    s = block_reduce<false>(s, red);
  }
  const float mean = rms ? 0.f : s / E;
  float q = 0.f;
  for (int i = threadIdx.x; i < E; i += threads) {
    const float d = xs[i] - mean;
    q = fmaf(d, d, q);
  }
  q = block_reduce<false>(q, red);
  const float rs = rsqrtf(q / E + eps);
  for (int i = threadIdx.x; i < E; i += threads) xs[i] = (xs[i] - mean) * rs;
  __syncthreads();
}

template <class C>
__device__ __forceinline__ void load_vec(float* xs, const C* src, int n) {
  for (int i = threadIdx.x; i < n; i += threads) xs[i] = ld_shared_f(src + i);
  __syncthreads();
}

__device__ __forceinline__ float gelu_tanh(float v) {
  return 0.5f * v * (1.f + tanhf(0.7978845608028654f * fmaf(0.044715f * v, v * v, v)));
}

//! Phase B for head h: append the new K/V row at t = lens - 1, then softmax(q·Kᵀ / 8)·V over lens keys.
//! Shared memory: q, kn, vn [64] each, scores [lens], part [threads].
template <class C>
__device__ void attend_head(const step_args<C>& a, int l, int h, float* sm, float* red) {
  constexpr int D = head_dim;
  const int E = a.E, T = a.lens[0], t = T - 1, tid = threadIdx.x;
  float *q = sm, *kn = sm + D, *vn = sm + 2 * D, *part = sm + 3 * D, *sc = part + threads;
  C* K = a.kv + l * a.kv_layer;
  C* Vv = K + a.kv_v;
  if (tid < D) {
    const int c = h * D + tid;
    const C kq = __ldcg(a.qkv + E + c), vq = __ldcg(a.qkv + 2 * E + c);
    q[tid] = ld_shared_f(a.qkv + c) * 0.125f;  // 1 / sqrt(64)
    kn[tid] = load_f(kq), vn[tid] = load_f(vq);
    K[static_cast<std::int64_t>(t) * E + c] = kq;
    Vv[static_cast<std::int64_t>(t) * E + c] = vq;
  }
  __syncthreads();
  constexpr int VEC = 16 / sizeof(C);
  float mx = -__builtin_huge_valf();
  for (int j = tid; j < T; j += threads) {
    float s = 0.f;
    if (j == t) {
#pragma unroll 8
      for (int d = 0; d < D; ++d) s = fmaf(q[d], kn[d], s);
    } else {
      const C* kr = K + static_cast<std::int64_t>(j) * E + h * D;
#pragma unroll
      for (int d0 = 0; d0 < D; d0 += VEC) {
        const uint4 w = *reinterpret_cast<const uint4*>(kr + d0);
        float wf[VEC];
        gemv_unpack(w, wf, static_cast<const C*>(nullptr));
#pragma unroll
        for (int q2 = 0; q2 < VEC; ++q2) s = fmaf(q[d0 + q2], wf[q2], s);
      }
    }
    sc[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = block_reduce<true>(mx, red);
  float sum = 0.f;
  for (int j = tid; j < T; j += threads) {
    const float p = __expf(sc[j] - mx);
    sc[j] = p;
    sum += p;
  }
  sum = block_reduce<false>(sum, red);  // (its barriers also publish sc)
  const int d = tid % D, g = tid / D, G = threads / D;
  float o = 0.f;
  constexpr int B = 8;  // V rows loaded together (independent loads in flight), then consumed in order
  const C* vcol = Vv + h * D + d;
  for (int j0 = g; j0 < t; j0 += B * G) {
    C vb[B];
#pragma unroll
    for (int i = 0; i < B; ++i) {
      const int j = j0 + i * G;
      if (j < t) vb[i] = vcol[static_cast<std::int64_t>(j) * E];
    }
#pragma unroll
    for (int i = 0; i < B; ++i) {
      const int j = j0 + i * G;
      if (j < t) o = fmaf(sc[j], load_f(vb[i]), o);
    }
  }
  if (t % G == g) o = fmaf(sc[t], vn[d], o);  // the new row, last in this group's order
  part[tid] = o;
  __syncthreads();
  if (tid < D) {
    float s = 0.f;
    for (int gg = 0; gg < G; ++gg) s += part[gg * D + tid];
    a.att[h * D + tid] = store_f<C>(s / sum);
  }
}

template <class C>
__global__ void __launch_bounds__(threads, 1) step_kernel(const step_args<C> a) {
  extern __shared__ __align__(16) float sm[];
  __shared__ float red[warps + 1];
  const int E = a.E, E4 = 4 * E, tid = threadIdx.x;
  float* xs = sm;  // [4E]: the GEMV input (f32); attention scratch after it
  unsigned bar = 0;
  for (int l = 0; l < a.L; ++l) {
    const layer_ptrs<C> w = a.layers[l];
    // A: x (layer 0: the embedding, which block 0 also stores), its norm, the qkv rows
    if (l == 0) {
      const std::int64_t tok = a.tokens[0], p = a.pos[0];
      for (int i = tid; i < E; i += threads) {
        const C e = store_f<C>(load_f(a.wte[tok * E + i]) + load_f(a.wpe[p * E + i]));
        xs[i] = load_f(e);
        if (blockIdx.x == 0) a.x[i] = e;
      }
      __syncthreads();
    } else {
      load_vec(xs, a.x, E);
    }
    norm_inplace(xs, E, a.rms, a.eps, red);
    rows_gemv(w.qkv, E, 3 * E, xs,
              [&](int n, float s) { a.qkv[n] = store_f<C>(s + (w.qkv_b ? load_f(w.qkv_b[n]) : 0.f)); });
    prefetch_rows(a, w.proj, E, E, 4);
    grid_barrier(a.bar, ++bar);
    // B: attention, one block per head (heads beyond the grid: the blocks take several in turn)
    for (int h = static_cast<int>(blockIdx.x); h < a.H; h += static_cast<int>(gridDim.x)) {
      attend_head(a, l, h, sm + E4, red);
      __syncthreads();  // the scratch is reused by the next head
    }
    prefetch_rows(a, w.fc, E, E4, 4);
    grid_barrier(a.bar, ++bar);
    // C: x += att · Wo + b
    load_vec(xs, a.att, E);
    rows_gemv(w.proj, E, E, xs, [&](int n, float s) {
      a.x[n] = store_f<C>(ld_shared_f(a.x + n) + s + (w.proj_b ? load_f(w.proj_b[n]) : 0.f));
    });
    prefetch_rows(a, w.down, E4, E, 4);
    grid_barrier(a.bar, ++bar);
    // D: f = gelu(norm(x) · Wfc + b)
    load_vec(xs, a.x, E);
    norm_inplace(xs, E, a.rms, a.eps, red);
    rows_gemv(w.fc, E, E4, xs,
              [&](int n, float s) { a.f[n] = store_f<C>(gelu_tanh(s + (w.fc_b ? load_f(w.fc_b[n]) : 0.f))); });
    if (l + 1 < a.L) prefetch_rows(a, a.layers[l + 1].qkv, E, 3 * E, 4);
    else prefetch_rows(a, a.lm, E, a.V, 4);
    grid_barrier(a.bar, ++bar);
    // E: x += f · Wd + b
    load_vec(xs, a.f, E4);
    rows_gemv(w.down, E4, E, xs, [&](int n, float s) {
      a.x[n] = store_f<C>(ld_shared_f(a.x + n) + s + (w.down_b ? load_f(w.down_b[n]) : 0.f));
    });
    grid_barrier(a.bar, ++bar);
  }
  // LM head
  load_vec(xs, a.x, E);
  norm_inplace(xs, E, a.rms, a.eps, red);
  rows_gemv(a.lm, E, a.V, xs,
            [&](int n, float s) { a.logits[n] = store_f<C>(s + (a.lm_b ? load_f(a.lm_b[n]) : 0.f)); });
  // Every block has passed its last barrier: the last one out resets the counters for the next launch.
  __syncthreads();
  if (tid == 0) {
    const unsigned out = atomicAdd(a.bar + 1, 1u);
    if (out == gridDim.x - 1) {
      a.bar[0] = 0;
      a.bar[1] = 0;
      __threadfence();
    }
  }
}

//! [K, ld] channel-major (first N columns) -> [N, K] row-major.
template <class C>
__global__ void transpose_kernel(const C* __restrict__ in, std::int64_t K, std::int64_t N, std::int64_t ld,
                                 C* __restrict__ out) {
  __shared__ C tile[32][33];
  const std::int64_t k0 = static_cast<std::int64_t>(blockIdx.y) * 32, n0 = static_cast<std::int64_t>(blockIdx.x) * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const std::int64_t k = k0 + i, n = n0 + threadIdx.x;
    if (k < K && n < N) tile[i][threadIdx.x] = in[k * ld + n];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const std::int64_t n = n0 + i, k = k0 + threadIdx.x;
    if (k < K && n < N) out[n * K + k] = tile[threadIdx.x][i];
  }
}

//! Dynamic shared memory of step_kernel for n_embd E and max_seq S (xs [4E], then q/kn/vn, part, scores [S]).
inline std::size_t smem_bytes(int E, int S) {
  return sizeof(float) * (static_cast<std::size_t>(4) * E + 3 * head_dim + threads + static_cast<std::size_t>(S));
}

//! The row-major copies of a device_model's weights, and the per-layer pointer table, for step_kernel.
template <class T>
class weights_rm {
  using C = frugal::detail::cuda_type_t<T>;
  using be = backend<frugal::cuda_t>;

 public:
  weights_rm() = default;
  //! Channel-major matrices [K, ld] -> row-major [N, K]; biases and the embeddings are used in place.
  template <class Model>
  weights_rm(be::context& c, const Model& m) {
    const std::int64_t E = m.cfg.n_embd, V = m.cfg.vocab_size;
    const std::int64_t per_layer = 3 * E * E + E * E + 4 * E * E + 4 * E * E;
    w_ = buffer<frugal::cuda_t, T>(c, static_cast<std::size_t>(per_layer * m.cfg.n_layer + V * E));
    std::vector<layer_ptrs<C>> table;
    C* o = frugal::detail::as_cuda(w_.data());
    auto put = [&](const T* src, std::int64_t K, std::int64_t N, std::int64_t ld) {
      const dim3 grid(static_cast<unsigned>((N + 31) / 32), static_cast<unsigned>((K + 31) / 32));
      transpose_kernel<C><<<grid, dim3(32, 8), 0, c.tag.stream>>>(frugal::detail::as_cuda(src), K, N, ld, o);
      frugal::detail::check_launch("gpt2 mega weights", "transpose_kernel");
      const C* r = o;
      o += N * K;
      return r;
    };
    auto bias = [](const auto& b) { return b.size() ? frugal::detail::as_cuda(static_cast<const T*>(b.data())) : nullptr; };
    for (const auto& L : m.layers) {
      layer_ptrs<C> p{};
      p.qkv = put(L.qkv_w.data(), E, 3 * E, 3 * E), p.qkv_b = bias(L.qkv_b);
      p.proj = put(L.proj_w.data(), E, E, E), p.proj_b = bias(L.proj_b);
      p.fc = put(L.fc_w.data(), E, 4 * E, 4 * E), p.fc_b = bias(L.fc_b);
      p.down = put(L.fcproj_w.data(), 4 * E, E, E), p.down_b = bias(L.fcproj_b);
      table.push_back(p);
    }
    lm_ = put(m.lm_w.data(), E, V, m.lm_ld);
    table_ = buffer<frugal::cuda_t, std::byte>(c, sizeof(layer_ptrs<C>) * table.size());
    be::to_device(c, table_.data(), table.data(), sizeof(layer_ptrs<C>) * table.size());
    bar_ = buffer<frugal::cuda_t, unsigned>(c, 2);
    be::zero(c, bar_.data(), 2 * sizeof(unsigned));
    be::sync(c);
  }
  const layer_ptrs<C>* layers() const { return reinterpret_cast<const layer_ptrs<C>*>(table_.data()); }
  const C* lm() const { return lm_; }
  unsigned* barrier() const { return bar_.data(); }

 private:
  buffer<frugal::cuda_t, T> w_;
  buffer<frugal::cuda_t, std::byte> table_;
  buffer<frugal::cuda_t, unsigned> bar_;
  const C* lm_ = nullptr;
};

//! Launches one decode step (cooperative: every block resident, or a clear error).
template <class C>
void launch(cudaStream_t s, const step_args<C>& a, int max_seq) {
  static int sms = [] {
    int dev = 0, n = 0;
    FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), "gpt2 mega");
    FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "gpt2 mega");
    return n;
  }();
  const std::size_t smem = smem_bytes(a.E, max_seq);
  FRUGAL_CUDA_CHECK(cudaFuncSetAttribute(step_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem)),
                    "gpt2 mega");
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(sms));
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  FRUGAL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, step_kernel<C>, a), "gpt2 mega (cooperative launch of step_kernel)");
}

}  // namespace gpt2::mega
