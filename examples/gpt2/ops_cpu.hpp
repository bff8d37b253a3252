// examples/gpt2/ops_cpu.hpp — GPT-2's model-specific operations on the CPU (the reference for the CUDA ones).
//
// embedding lookup, LayerNorm (optionally without centring/affine: the RMS form a rotation-folded model uses),
// GELU (tanh approximation), and next-token selection: greedy argmax or seeded sampling with temperature, top-k and
// top-p. Sampling uses the Gumbel-max trick with a counter-based hash of (seed, step, row, token), so the CPU and
// the CUDA kernels draw the same noise and no sort is needed on the GPU. Arithmetic in float.
#pragma once

#include <frugal/core/device.hpp>
#include <frugal/core/dtype.hpp>
#include <frugal/core/parallel.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "sampling.hpp"

namespace gpt2::ops {

using frugal::cpu_t;

//! Where the KV of each row's current position goes (computed with the embedding, one op per decode step):
//! contiguous (table null) slots[r] = r * max_len + pos[r];
//! paged table[r * max_blocks + pos / page] * page + pos % page.
struct slot_args {
  const std::int32_t* table = nullptr;
  int max_blocks = 0, page = 1, max_len = 0;
  std::int32_t* slots = nullptr;  // null: no slots wanted (prefill)
};

FRUGAL_HOST_DEVICE inline std::int32_t slot_of(const slot_args& s, int r, int p) {
  return s.table ? s.table[std::int64_t(r) * s.max_blocks + p / s.page] * s.page + p % s.page : r * s.max_len + p;
}

//! out[r, :] = wte[tokens[r], :] + wpe[pos[r], :]; with sa.slots, also sa.slots[r] = the KV slot of pos[r].
template <class T>
void embed(cpu_t tag, const T* wte /*[V, C]*/, const T* wpe /*[n_ctx, C]*/, const std::int32_t* tokens /*[rows]*/,
           const std::int32_t* pos /*[rows]*/, int rows, int C, T* out /*[rows, C]*/, const slot_args& sa = {}) {
  if (sa.slots)
    for (int r = 0; r < rows; ++r) sa.slots[r] = slot_of(sa, r, pos[r]);
  frugal::detail::parallel_for(tag, rows, 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const T* a = wte + std::int64_t(tokens[r]) * C;
      const T* p = wpe + std::int64_t(pos[r]) * C;
      T* o = out + r * C;
      for (int i = 0; i < C; ++i) o[i] = frugal::from_float<T>(frugal::to_float(a[i]) + frugal::to_float(p[i]));
    }
  });
}

//! out = (x - mean) / sqrt(var + eps) * g + b per row; with center = false, out = x / sqrt(mean(x^2) + eps) * g + b
//! (the normalisation of a model whose mean-centring was folded into the residual writers). g, b may be null.
template <class T>
void layernorm(cpu_t tag, const T* x /*[rows, x_ld]*/, std::int64_t x_ld, const T* g /*[C] or null*/,
               const T* bias /*[C] or null*/, int rows, int C, bool center, T* out /*[rows, C]*/, float eps = 1e-5f) {
  frugal::detail::parallel_for(tag, rows, 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const T* xr = x + r * x_ld;
      float mean = 0.f;
      if (center) {
        for (int i = 0; i < C; ++i) mean += frugal::to_float(xr[i]);
        mean /= float(C);
      }
      float var = 0.f;
      for (int i = 0; i < C; ++i) {
        const float d = frugal::to_float(xr[i]) - mean;
        var += d * d;
      }
      const float rs = 1.f / std::sqrt(var / float(C) + eps);
      T* o = out + r * C;
      for (int i = 0; i < C; ++i) {
        float v = (frugal::to_float(xr[i]) - mean) * rs;
        if (g) v *= frugal::to_float(g[i]);
        if (bias) v += frugal::to_float(bias[i]);
        o[i] = frugal::from_float<T>(v);
      }
    }
  });
}

inline float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.f + std::tanh(k * (x + 0.044715f * x * x * x)));
}

//! x = gelu(x), in place.
template <class T>
void gelu(cpu_t tag, T* x /*[n]*/, std::int64_t n) {
  frugal::detail::parallel_for(tag, n, 1 << 14, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) x[i] = frugal::from_float<T>(gelu_tanh(frugal::to_float(x[i])));
  });
}

//! y += x
template <class T>
void add(cpu_t tag, T* y /*[n]*/, const T* x /*[n]*/, std::int64_t n) {
  frugal::detail::parallel_for(tag, n, 1 << 14, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) y[i] = frugal::from_float<T>(frugal::to_float(y[i]) + frugal::to_float(x[i]));
  });
}

//! Picks the next token of each row: argmax when greedy, else a seeded sample (see sampling.hpp). The decode step
//! counter lives in memory (*step); the token of step *step + 1 goes to tokens[r] and, when history is given, to
//! history[r * hist_ld + *step + 1].
template <class T>
void select_next(cpu_t tag, const T* logits /*[rows, V]*/, int rows, int V, const sampling& s,
                 const std::int32_t* step /*[1]*/, std::int32_t* tokens /*[rows]*/,
                 std::int32_t* history /*[rows, hist_ld] or null*/, int hist_ld) {
  const std::int64_t at = std::int64_t(*step) + 1;
  frugal::detail::parallel_for(tag, rows, 1, [&](std::int64_t b, std::int64_t e) {
    std::vector<float> z(V);
    for (std::int64_t r = b; r < e; ++r) {
      const T* l = logits + r * V;
      for (int i = 0; i < V; ++i) z[i] = frugal::to_float(l[i]);
      const std::int32_t t = select_token(z.data(), V, s, static_cast<std::uint64_t>(at), static_cast<std::uint64_t>(r));
      tokens[r] = t;
      if (history) history[r * hist_ld + at] = t;
    }
  });
}

//! After a step: *step += 1; pos[r] += 1 and lens[r] += 1 (lens may be null) for r < rows; with teacher forcing
//! (forced non-null) the next input token is tokens[r] = forced[r * ld + *step].
inline void advance(cpu_t, std::int32_t* pos, std::int32_t* lens, int rows, std::int32_t* step,
                    const std::int32_t* forced, int ld, std::int32_t* tokens) {
  *step += 1;
  for (int r = 0; r < rows; ++r) {
    pos[r] += 1;
    if (lens) lens[r] += 1;
    if (forced) tokens[r] = forced[std::int64_t(r) * ld + *step];
  }
}

//! The end of a step in one op: when `select`, select_next over `rows` rows; then advance (pos/lens null: only the
//! step counter moves, as after a prefill). `counter` is the CUDA kernel's completion counter (unused here).
template <class T>
void select_advance(cpu_t tag, const T* logits, int rows, int V, const sampling& s, bool select, std::int32_t* step,
                    std::int32_t* tokens, std::int32_t* history, int hist_ld, std::int32_t* pos, std::int32_t* lens,
                    const std::int32_t* forced, int forced_ld, std::uint32_t* /*counter*/) {
  if (select) select_next(tag, logits, rows, V, s, step, tokens, history, hist_ld);
  advance(tag, pos, lens, pos ? rows : 0, step, forced, forced_ld, tokens);
}

//! tokens[r] = m[r * ld] (column 0 of a [rows, ld] int matrix).
inline void copy_column(cpu_t, const std::int32_t* m, int ld, int rows, std::int32_t* tokens) {
  for (int r = 0; r < rows; ++r) tokens[r] = m[std::int64_t(r) * ld];
}

}  // namespace gpt2::ops
