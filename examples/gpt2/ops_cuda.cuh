// examples/gpt2/ops_cuda.cuh — GPT-2's model-specific operations as CUDA kernels (same contracts as ops_cpu.hpp).
//
// Every launch goes to tag.stream and reads its per-step values (tokens, positions, step counter) from device
// memory, so a whole decode step can be captured once in a CUDA Graph and replayed with no host work per token.
#pragma once

#include <frugal/core/detail/cuda_common.cuh>

#include <cfloat>
#include <cstdint>

#include "ops_cpu.hpp"
#include "sampling.hpp"

namespace gpt2::ops {

using frugal::cuda_t;
using frugal::detail::as_cuda;
using frugal::detail::load_f;
using frugal::detail::store_f;

namespace kernels {

template <class T>
__global__ void embed_kernel(const T* __restrict__ wte, const T* __restrict__ wpe,
                             const std::int32_t* __restrict__ tokens, const std::int32_t* __restrict__ pos, int C,
                             T* __restrict__ out, gpt2::ops::slot_args sa) {
  // The decode step's first GEMV is launched with PDL: its blocks may start now and put their weights on the way
  // (they read `out` only after their griddepcontrol.wait, i.e. after this grid has completed).
  frugal::detail::trigger_dependents();
  const int r = blockIdx.x;
  if (sa.slots && threadIdx.x == 0) sa.slots[r] = gpt2::ops::slot_of(sa, r, pos[r]);
  const T* a = wte + std::int64_t(tokens[r]) * C;
  const T* p = wpe + std::int64_t(pos[r]) * C;
  for (int i = threadIdx.x; i < C; i += blockDim.x) out[std::int64_t(r) * C + i] = store_f<T>(load_f(a[i]) + load_f(p[i]));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

//! Block-wide sum (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* shm /*[32]*/) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) shm[w] = v;
  __syncthreads();
  v = lane < nw ? shm[lane] : 0.f;
  return warp_sum(v);
}

// One block per row; the row is kept in registers (C <= 8 * blockDim.x).
template <class T, int PerThread>
__global__ void layernorm_kernel(const T* __restrict__ x, std::int64_t x_ld, const T* __restrict__ g,
                                 const T* __restrict__ b, int C, bool center, float eps, T* __restrict__ out) {
  __shared__ float shm[32];
  const T* xr = x + std::int64_t(blockIdx.x) * x_ld;
  float v[PerThread];
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < PerThread; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    v[j] = i < C ? load_f(xr[i]) : 0.f;
    s += v[j];
  }
  const float mean = center ? block_sum(s, shm) / float(C) : 0.f;
  float q = 0.f;
#pragma unroll
  for (int j = 0; j < PerThread; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    const float d = i < C ? v[j] - mean : 0.f;
    q += d * d;
  }
  const float rs = rsqrtf(block_sum(q, shm) / float(C) + eps);
  T* o = out + std::int64_t(blockIdx.x) * C;
#pragma unroll
  for (int j = 0; j < PerThread; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < C) {
      float y = (v[j] - mean) * rs;
      if (g) y *= load_f(g[i]);
      if (b) y += load_f(b[i]);
      o[i] = store_f<T>(y);
    }
  }
}

__device__ __forceinline__ float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;
  return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
}

template <class T>
__global__ void gelu_kernel(T* __restrict__ x, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    x[i] = store_f<T>(gelu_tanh(load_f(x[i])));
}

template <class T>
__global__ void add_kernel(T* __restrict__ y, const T* __restrict__ x, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = store_f<T>(load_f(y[i]) + load_f(x[i]));
}

// Order-preserving float -> uint32 key (larger float, larger key).
__device__ __forceinline__ std::uint32_t fkey(float f) {
  const std::uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float kfloat(std::uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

struct arg_best {
  float v;
  int i;
};
__device__ __forceinline__ arg_best better(arg_best a, arg_best b) {
  return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}
__device__ __forceinline__ arg_best block_argmax(arg_best a, arg_best* shm /*[32]*/) {
  for (int o = 16; o > 0; o >>= 1) {
    arg_best b{__shfl_xor_sync(0xffffffffu, a.v, o), __shfl_xor_sync(0xffffffffu, a.i, o)};
    a = better(a, b);
  }
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) shm[w] = a;
  __syncthreads();
  a = lane < nw ? shm[lane] : arg_best{-FLT_MAX, 0x7fffffff};
  for (int o = 16; o > 0; o >>= 1) {
    arg_best b{__shfl_xor_sync(0xffffffffu, a.v, o), __shfl_xor_sync(0xffffffffu, a.i, o)};
    a = better(a, b);
  }
  return a;
}

__device__ __forceinline__ unsigned block_count(unsigned c, float* shm) {
  return static_cast<unsigned>(block_sum(static_cast<float>(c), shm) + 0.5f);
}

// One block per row. Greedy: argmax. Otherwise: thresholds by bisection on the float order, then Gumbel-max.
// Returns (in every thread) the chosen token of row blockIdx.x for decode step `at`.
template <class T>
__device__ int select_row(const T* __restrict__ logits, int V, const gpt2::sampling& s, std::int64_t at) {
  __shared__ float shm[32];
  __shared__ arg_best sbest[32];
  const int r = blockIdx.x;
  const T* l = logits + std::int64_t(r) * V;
  const std::uint64_t st = static_cast<std::uint64_t>(at);
  arg_best best{-FLT_MAX, 0x7fffffff};
  if (s.greedy()) {
    // 16-byte loads, several in flight per thread (a scalar load per iteration left each thread waiting ~49 L2
    // round trips for V = 50257): the elements before the row's first 16-byte boundary, the vectors, the tail.
    // `better` is a total order (value, then lower index), so the result does not depend on the visiting order.
    constexpr int E = 16 / static_cast<int>(sizeof(T));
    const auto addr = reinterpret_cast<std::uintptr_t>(l);
    const int head = addr % sizeof(T) ? V : min(V, static_cast<int>(((16 - addr % 16) % 16) / sizeof(T)));
    for (int i = threadIdx.x; i < head; i += blockDim.x) best = better(best, arg_best{load_f(l[i]), i});
    const int nvec = (V - head) / E;
    const uint4* vp = reinterpret_cast<const uint4*>(l + head);
#pragma unroll 4
    for (int j = threadIdx.x; j < nvec; j += blockDim.x) {
      const uint4 raw = vp[j];
      T e[E];
      memcpy(e, &raw, 16);
#pragma unroll
      for (int k = 0; k < E; ++k) best = better(best, arg_best{load_f(e[k]), head + j * E + k});
    }
    for (int i = head + nvec * E + threadIdx.x; i < V; i += blockDim.x) best = better(best, arg_best{load_f(l[i]), i});
  } else {
    const float invt = 1.f / s.temperature;
    std::uint32_t cut = 0;  // keep keys >= cut
    if (s.top_k > 0 && s.top_k < V) {  // largest key with count(>= key) >= k
      std::uint32_t lo = 0, hi = 0xffffffffu;
      while (lo < hi) {
        const std::uint32_t mid = static_cast<std::uint32_t>((std::uint64_t(lo) + hi + 1) / 2);  // no wrap at 2^32
        unsigned c = 0;
        for (int i = threadIdx.x; i < V; i += blockDim.x) c += fkey(load_f(l[i]) * invt) >= mid;
        if (block_count(c, shm) >= static_cast<unsigned>(s.top_k)) lo = mid; else hi = mid - 1;
      }
      cut = lo;
    }
    if (s.top_p < 1.f) {
      arg_best m{-FLT_MAX, 0};
      for (int i = threadIdx.x; i < V; i += blockDim.x) m = better(m, arg_best{load_f(l[i]) * invt, i});
      const float mx = block_argmax(m, sbest).v;
      float tot = 0.f;
      for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float z = load_f(l[i]) * invt;
        if (fkey(z) >= cut) tot += __expf(z - mx);
      }
      tot = block_sum(tot, shm);
      std::uint32_t lo = cut, hi = 0xffffffffu;  // largest key with mass(>= key) >= top_p
      while (lo < hi) {
        const std::uint32_t mid = static_cast<std::uint32_t>((std::uint64_t(lo) + hi + 1) / 2);
        float m = 0.f;
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
          const float z = load_f(l[i]) * invt;
          if (fkey(z) >= mid) m += __expf(z - mx);
        }
        if (block_sum(m, shm) >= s.top_p * tot) lo = mid; else hi = mid - 1;
      }
      cut = lo;
    }
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const float z = load_f(l[i]) * invt;
      if (fkey(z) >= cut)
        best = better(best, arg_best{z + gpt2::gumbel_noise(s.seed, st, static_cast<std::uint64_t>(r),
                                                            static_cast<std::uint64_t>(i)), i});
    }
  }
  best = block_argmax(best, sbest);
  return best.i < V ? best.i : 0;
}

// `step` is read from device memory (graph replay); the chosen token goes to tokens[r] and, when history is given,
// to history[r * hist_ld + *step + 1].
template <class T>
__global__ void select_kernel(const T* __restrict__ logits, int V, gpt2::sampling s,
                              const std::int32_t* __restrict__ step, std::int32_t* __restrict__ tokens,
                              std::int32_t* __restrict__ history, int hist_ld) {
  const std::int64_t at = std::int64_t(*step) + 1;  // this selection is the token of step *step + 1
  const int tok = select_row(logits, V, s, at);
  if (threadIdx.x == 0) {
    tokens[blockIdx.x] = tok;
    if (history) history[std::int64_t(blockIdx.x) * hist_ld + at] = tok;
  }
}

// The end of a decode step in one launch (one block per row): select (optional), then advance the row's position
// and length (optional) and, with teacher forcing, load its next forced token. The step counter is read by every
// block first; the last block to finish (a completion counter in device memory, reset by that block, so graph
// replays see it at 0) writes step + 1.
template <class T>
__global__ void select_advance_kernel(const T* __restrict__ logits, int V, gpt2::sampling s, bool select,
                                      std::int32_t* step, std::int32_t* tokens, std::int32_t* history, int hist_ld,
                                      std::int32_t* pos, std::int32_t* lens, const std::int32_t* forced, int forced_ld,
                                      unsigned* counter) {
  frugal::detail::grid_dependency_wait();  // launched with PDL after the LM head: its logits complete
  const int r = blockIdx.x;
  const std::int32_t s0 = *step;
  const std::int64_t at = std::int64_t(s0) + 1;
  int tok = 0;
  if (select) tok = select_row(logits, V, s, at);
  __syncthreads();  // every thread of this block has read *step
  if (threadIdx.x == 0) {
    if (select) {
      tokens[r] = tok;
      if (history) history[std::int64_t(r) * hist_ld + at] = tok;
    }
    if (pos) pos[r] += 1;
    if (lens) lens[r] += 1;
    if (forced) tokens[r] = forced[std::int64_t(r) * forced_ld + at];
    __threadfence();
    if (atomicAdd(counter, 1u) == gridDim.x - 1) {  // the last block: every block has read *step
      *counter = 0;
      *step = static_cast<std::int32_t>(at);
    }
  }
}

// After a decode step: the step counter and every position advance by one (on the device, inside the graph); with
// teacher forcing the next input token is forced[r * ld + step].
template <int = 0>  // a template: defined in several translation units without clashing
__global__ void advance_kernel(std::int32_t* pos, std::int32_t* lens, int rows, std::int32_t* step,
                               const std::int32_t* forced, int ld, std::int32_t* tokens) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  const std::int32_t s = *step + 1;
  __syncthreads();  // every thread has read the old counter before thread 0 writes it (one block)
  if (r < rows) {
    pos[r] += 1;
    if (lens) lens[r] += 1;
    if (forced) tokens[r] = forced[std::int64_t(r) * ld + s];
  }
  if (r == 0) *step = s;
}

template <int = 0>  // a template: defined in several translation units without clashing
__global__ void copy_column_kernel(const std::int32_t* m, int ld, int rows, std::int32_t* tokens) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < rows) tokens[r] = m[std::int64_t(r) * ld];
}

}  // namespace kernels

template <class T>
void embed(cuda_t tag, const T* wte, const T* wpe, const std::int32_t* tokens, const std::int32_t* pos, int rows, int C,
           T* out, const slot_args& sa = {}) {
  if (rows == 0) return;
  kernels::embed_kernel<<<rows, 256, 0, tag.stream>>>(as_cuda(wte), as_cuda(wpe), tokens, pos, C, as_cuda(out), sa);
  frugal::detail::check_launch("gpt2::embed", "embed_kernel");
}

template <class T>
void layernorm(cuda_t tag, const T* x, std::int64_t x_ld, const T* g, const T* b, int rows, int C, bool center, T* out,
               float eps = 1e-5f) {
  if (rows == 0) return;
  if (C > 8 * 1024) gpt2::fail("layernorm", "C (=", C, ") > 8192 is not supported by the CUDA kernel");
  const int threads = C <= 1024 ? ((C + 31) / 32) * 32 : 1024;
  if (C <= threads)
    kernels::layernorm_kernel<frugal::detail::cuda_type_t<T>, 1><<<rows, threads, 0, tag.stream>>>(
        as_cuda(x), x_ld, as_cuda(g), as_cuda(b), C, center, eps, as_cuda(out));
  else if (C <= 2 * threads)
    kernels::layernorm_kernel<frugal::detail::cuda_type_t<T>, 2><<<rows, threads, 0, tag.stream>>>(
        as_cuda(x), x_ld, as_cuda(g), as_cuda(b), C, center, eps, as_cuda(out));
  else
    kernels::layernorm_kernel<frugal::detail::cuda_type_t<T>, 8><<<rows, 1024, 0, tag.stream>>>(
        as_cuda(x), x_ld, as_cuda(g), as_cuda(b), C, center, eps, as_cuda(out));
  frugal::detail::check_launch("gpt2::layernorm", "layernorm_kernel");
}

template <class T>
void gelu(cuda_t tag, T* x, std::int64_t n) {
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<std::int64_t>((n + 255) / 256, 4096));
  kernels::gelu_kernel<<<blocks, 256, 0, tag.stream>>>(as_cuda(x), n);
  frugal::detail::check_launch("gpt2::gelu", "gelu_kernel");
}

template <class T>
void add(cuda_t tag, T* y, const T* x, std::int64_t n) {
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<std::int64_t>((n + 255) / 256, 4096));
  kernels::add_kernel<<<blocks, 256, 0, tag.stream>>>(as_cuda(y), as_cuda(x), n);
  frugal::detail::check_launch("gpt2::add", "add_kernel");
}

//! Device version of select_next: `step` lives in device memory; history (optional) gets the token at [r, *step].
template <class T>
void select_next(cuda_t tag, const T* logits, int rows, int V, const sampling& s, const std::int32_t* step,
                 std::int32_t* tokens, std::int32_t* history = nullptr, int hist_ld = 0) {
  if (rows == 0) return;
  kernels::select_kernel<<<rows, 1024, 0, tag.stream>>>(as_cuda(logits), V, s, step, tokens, history, hist_ld);
  frugal::detail::check_launch("gpt2::select_next", "select_kernel");
}

//! Device version of ops_cpu.hpp's select_advance (one launch; `counter` a zeroed device word the kernel owns).
template <class T>
void select_advance(cuda_t tag, const T* logits, int rows, int V, const sampling& s, bool select, std::int32_t* step,
                    std::int32_t* tokens, std::int32_t* history, int hist_ld, std::int32_t* pos, std::int32_t* lens,
                    const std::int32_t* forced, int forced_ld, std::uint32_t* counter) {
  if (rows < 1) gpt2::fail("select_advance", "rows (=", rows, ") must be >= 1");
  // Programmatic dependent launch (sm_90): the blocks get scheduled while the LM head GEMV still runs and wait for it
  // in the kernel (griddepcontrol.wait), so the launch latency is off the step's critical path.
  frugal::detail::launch_pdl("gpt2::select_advance", kernels::select_advance_kernel<frugal::detail::cuda_type_t<T>>,
                             dim3(static_cast<unsigned>(rows)), dim3(select ? 1024 : 32), 0, tag.stream, as_cuda(logits),
                             V, s, select, step, tokens, history, hist_ld, pos, lens, forced, forced_ld, counter);
  frugal::detail::check_launch("gpt2::select_advance", "select_advance_kernel");
}

inline void advance(cuda_t tag, std::int32_t* pos, std::int32_t* lens, int rows, std::int32_t* step,
                    const std::int32_t* forced, int ld, std::int32_t* tokens) {
  if (rows > 1024) gpt2::fail("advance", "more than 1024 rows");
  kernels::advance_kernel<><<<1, rows > 0 ? (rows + 31) / 32 * 32 : 32, 0, tag.stream>>>(pos, lens, rows, step, forced,
                                                                                      ld, tokens);
  frugal::detail::check_launch("gpt2::advance", "advance_kernel");
}

inline void copy_column(cuda_t tag, const std::int32_t* m, int ld, int rows, std::int32_t* tokens) {
  kernels::copy_column_kernel<><<<(rows + 127) / 128, 128, 0, tag.stream>>>(m, ld, rows, tokens);
  frugal::detail::check_launch("gpt2::copy_column", "copy_column_kernel");
}

}  // namespace gpt2::ops
