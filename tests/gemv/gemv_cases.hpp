// Test cases for frugal/gemv shared by the CPU and CUDA tests: generated inputs in every input form, the dense
// double-precision reference on the masked input, and the comparison rules.
//
// Two kinds of data:
//  - integer (x, w, bias, y0 in [-3, 3]): every product and partial sum is an exact small integer in f32, so any
//    summation order gives the exact result and the output must equal the reference rounded once to T, bit for bit.
//    A missing, duplicated or misplaced channel cannot hide inside a tolerance.
//  - continuous (N(0, 1)): checked against the reference with the error bound
//      |y - ref| <= 1.01 u_T |ref| + 16 sqrt(K + 2) u_acc B,   B = sum_k |x_k w_kn| + |bias_n| + |y0_n|
//    (output rounding + a statistical f32 summation bound; u = unit roundoff).
//    With the norm prologue, x is x̂ = (x - mean) · rstd (reference in f64) and B also counts
//    sum_k |w_kn| (|x_k| + |mean|) rstd (the rounding of x - mean and of the f32 statistics); with gelu the
//    pre-activation bound is scaled by max |gelu'| < 1.13 and 8 u_acc |v| covers tanh and the activation's own
//    rounding. Thresholds on x̂ sit in gaps >= 2e-4 wide of the sorted |x̂| (f32 vs f64 x̂ cannot flip a choice).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <frugal/gemv/gemv.hpp>

#include "common/test_util.hpp"

namespace gemv_test {

enum class form { dense, masked, threshold_all, threshold_rows, list_sorted, list_shuffled };

inline const char* form_name(form f) {
  switch (f) {
    case form::dense:
      return "dense";
    case form::masked:
      return "masked";
    case form::threshold_all:
      return "threshold_all";
    case form::threshold_rows:
      return "threshold_rows";
    case form::list_sorted:
      return "list_sorted";
    case form::list_shuffled:
      return "list_shuffled";
  }
  return "?";
}

inline constexpr form all_forms[] = {form::dense,          form::masked,      form::threshold_all,
                                     form::threshold_rows, form::list_sorted, form::list_shuffled};

struct spec {
  std::int64_t b = 1, K = 1, N = 1;
  form f = form::dense;
  bool bias = false;
  bool accumulate = false;
  bool integer = true;
  double keep = 0.5;  // kept fraction (masked / list forms); -1: list nnz per row cycles 0, 1, K, random
  std::uint64_t seed = 1;
  std::int64_t pad = 0;  // extra elements per row of x, y (w gets its own padding: ldw rounded up to 8)
  frugal::gemv_norm norm = frugal::gemv_norm::none;  // fused prologue (continuous data only)
  frugal::gemv_act act = frugal::gemv_act::none;     // fused epilogue (continuous data only)
  float eps = 1e-5f;
};

inline const char* norm_name(frugal::gemv_norm n) {
  return n == frugal::gemv_norm::layernorm ? "layernorm" : n == frugal::gemv_norm::rmsnorm ? "rmsnorm" : "";
}

//! GPT-2's tanh GELU in f64 (the reference).
inline double gelu_ref(double v) {
  return 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
}

//! A threshold near t0 in a gap of the sorted values v that is >= 2e-4 · max(1, t) wide (robust to f32 vs f64).
inline float safe_threshold(const std::vector<double>& v, double t0) {
  if (v.empty()) return static_cast<float>(t0);
  const auto at = static_cast<std::ptrdiff_t>(std::lower_bound(v.begin(), v.end(), t0) - v.begin());
  const auto n = static_cast<std::ptrdiff_t>(v.size());
  auto gap_ok = [&](std::ptrdiff_t i, double& t) {  // gap between v[i - 1] and v[i] (i = 0: below, i = n: above)
    if (i <= 0) {
      t = v[0] / 2;
      return v[0] > 4e-4;
    }
    if (i >= n) {
      t = v[n - 1] * 2 + 1;
      return true;
    }
    t = (v[i - 1] + v[i]) / 2;
    return v[i] - v[i - 1] > 2e-4 * std::max(1.0, t);
  };
  for (std::ptrdiff_t d = 0; d <= n; ++d) {
    double t;
    if (gap_ok(at + d, t)) return static_cast<float>(t);
    if (gap_ok(at - d, t)) return static_cast<float>(t);
  }
  return static_cast<float>(v[n - 1] * 2 + 1);
}

inline std::string describe(const spec& s) {
  return std::string(form_name(s.f)) + " b=" + std::to_string(s.b) + " K=" + std::to_string(s.K) +
         " N=" + std::to_string(s.N) + (s.bias ? " bias" : "") + (s.accumulate ? " accumulate" : "") +
         (s.integer ? " integer" : " continuous") + " keep=" + std::to_string(s.keep) +
         (s.norm != frugal::gemv_norm::none ? std::string(" ") + norm_name(s.norm) : std::string()) +
         (s.act == frugal::gemv_act::gelu_tanh ? " gelu" : "");
}

template <class T>
struct host_case {
  spec s;
  std::int64_t ldx = 0, ldw = 0, ldy = 0;
  std::vector<T> x, w, bias, y0;  // x [b, ldx], w [K, ldw], bias [N], y0 [b, ldy] (padding: sentinel 7)
  std::vector<std::int32_t> idx, nnz;
  std::vector<T> val;  // lists [b, cap]
  std::int64_t cap = 0;
  std::vector<float> t_rows;
  float t_all = 0.f;
  std::vector<double> ref, bound;  // [b, N]; bound: absolute error allowed besides the output rounding
  std::vector<double> mean, rstd;  // [b] (norm prologue; reference statistics in f64)
};

template <class T>
T sample(std::mt19937_64& rng, bool integer) {
  if (integer) return frugal::from_float<T>(static_cast<float>(static_cast<int>(rng() % 7) - 3));
  std::normal_distribution<float> d(0.f, 1.f);
  return frugal::from_float<T>(d(rng));
}

template <class T>
double as_double(T v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else
    return static_cast<double>(frugal::to_float(v));
}

//! Reference y (f64) and its error allowance from the masked, normalised input xm [b, K].
template <class T>
void set_reference(host_case<T>& c, const std::vector<double>& xm) {
  const auto& s = c.s;
  const bool normed = s.norm != frugal::gemv_norm::none;
  using acc_t = typename frugal::dtype_traits<T>::accum_t;
  const double uA = frugal_test::unit_roundoff<acc_t>();
  const double sum_tol = 16 * std::sqrt(static_cast<double>(s.K) + 2) * uA;
  c.ref.assign(static_cast<std::size_t>(s.b * s.N), 0.0);
  c.bound.assign(static_cast<std::size_t>(s.b * s.N), 0.0);
  for (std::int64_t r = 0; r < s.b; ++r)
    for (std::int64_t n = 0; n < s.N; ++n) {
      double acc = 0, bnd = 0;
      for (std::int64_t k = 0; k < s.K; ++k) {
        const double wk = as_double(c.w[k * c.ldw + n]);
        const double p = xm[r * s.K + k] * wk;
        acc += p;
        bnd += std::fabs(p);
        if (normed && xm[r * s.K + k] != 0.0)
          bnd += std::fabs(wk) * (std::fabs(as_double(c.x[r * c.ldx + k])) + std::fabs(c.mean[r])) * c.rstd[r];
      }
      if (s.bias) acc += as_double(c.bias[n]), bnd += std::fabs(as_double(c.bias[n]));
      double tol = sum_tol * bnd;
      if (s.act == frugal::gemv_act::gelu_tanh) {
        tol = 1.13 * tol + 8 * uA * std::fabs(acc);
        acc = gelu_ref(acc);
      }
      if (s.accumulate) {
        const double y0 = as_double(c.y0[r * c.ldy + n]);
        acc += y0;
        tol += sum_tol * std::fabs(y0);
      }
      c.ref[r * s.N + n] = acc;
      c.bound[r * s.N + n] = tol;
    }
}

template <class T>
host_case<T> make_case(const spec& s) {
  host_case<T> c;
  c.s = s;
  std::mt19937_64 rng(s.seed * 7919 + static_cast<std::uint64_t>(s.f) * 31 + static_cast<std::uint64_t>(s.K));
  c.ldx = s.K + s.pad;
  c.ldw = (s.N + 7) / 8 * 8 + (s.pad ? 8 : 0);
  c.ldy = s.N + s.pad;
  const T sentinel = frugal::from_float<T>(7.f);
  c.x.assign(static_cast<std::size_t>(s.b * c.ldx), sentinel);
  c.w.assign(static_cast<std::size_t>(std::max<std::int64_t>(1, s.K * c.ldw)), sentinel);
  c.y0.assign(static_cast<std::size_t>(s.b * c.ldy), sentinel);
  c.bias.assign(static_cast<std::size_t>(s.N), T{});
  for (std::int64_t k = 0; k < s.K; ++k)
    for (std::int64_t n = 0; n < s.N; ++n) c.w[k * c.ldw + n] = sample<T>(rng, s.integer);
  for (auto& v : c.bias) v = sample<T>(rng, s.integer);
  for (std::int64_t r = 0; r < s.b; ++r)
    for (std::int64_t n = 0; n < s.N; ++n) c.y0[r * c.ldy + n] = sample<T>(rng, s.integer);
  for (std::int64_t r = 0; r < s.b; ++r)
    for (std::int64_t k = 0; k < s.K; ++k) c.x[r * c.ldx + k] = sample<T>(rng, s.integer);
  if (s.norm == frugal::gemv_norm::layernorm)  // an offset the layernorm must remove (mean ~ 2.5, std ~ 1)
    for (std::int64_t r = 0; r < s.b; ++r)
      for (std::int64_t k = 0; k < s.K; ++k)
        c.x[r * c.ldx + k] = frugal::from_float<T>(static_cast<float>(as_double(c.x[r * c.ldx + k]) + 2.5));

  // The masked input each form means: xm[r, k] (0 where dropped).
  std::vector<double> xm(static_cast<std::size_t>(s.b * s.K), 0.0);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  const bool is_list = s.f == form::list_sorted || s.f == form::list_shuffled;
  if (s.f == form::masked) {
    for (std::int64_t r = 0; r < s.b; ++r)
      for (std::int64_t k = 0; k < s.K; ++k)
        if (u01(rng) >= s.keep) c.x[r * c.ldx + k] = T{};
  }
  // Norm prologue: x̂ (f64) and the rows' statistics; xh = x without a norm.
  const bool normed = s.norm != frugal::gemv_norm::none;
  c.mean.assign(static_cast<std::size_t>(s.b), 0.0);
  c.rstd.assign(static_cast<std::size_t>(s.b), 1.0);
  std::vector<double> xh(static_cast<std::size_t>(s.b * s.K), 0.0);
  for (std::int64_t r = 0; r < s.b; ++r) {
    double m = 0, q = 0;
    if (normed) {
      if (s.norm == frugal::gemv_norm::layernorm && s.K > 0) {
        for (std::int64_t k = 0; k < s.K; ++k) m += as_double(c.x[r * c.ldx + k]);
        m /= static_cast<double>(s.K);
      }
      for (std::int64_t k = 0; k < s.K; ++k)
        q += (as_double(c.x[r * c.ldx + k]) - m) * (as_double(c.x[r * c.ldx + k]) - m);
      c.mean[r] = m;
      c.rstd[r] = 1.0 / std::sqrt((s.K > 0 ? q / static_cast<double>(s.K) : 0.0) + static_cast<double>(s.eps));
    }
    for (std::int64_t k = 0; k < s.K; ++k)
      xh[r * s.K + k] =
          normed ? (as_double(c.x[r * c.ldx + k]) - c.mean[r]) * c.rstd[r] : as_double(c.x[r * c.ldx + k]);
  }
  if (s.f == form::threshold_all || s.f == form::threshold_rows) {
    if (normed) {
      std::vector<double> all;
      for (std::int64_t r = 0; r < s.b; ++r) {
        std::vector<double> a;
        for (std::int64_t k = 0; k < s.K; ++k) a.push_back(std::fabs(xh[r * s.K + k]));
        all.insert(all.end(), a.begin(), a.end());
        std::sort(a.begin(), a.end());
        const auto drop = static_cast<std::size_t>(std::llround((1.0 - s.keep) * static_cast<double>(s.K)));
        const double t0 = a.empty()          ? 0.0
                          : drop == 0        ? a[0] / 2
                          : drop >= a.size() ? a.back() * 2 + 1
                                             : (a[drop - 1] + a[drop]) / 2;
        c.t_rows.push_back(safe_threshold(a, t0));
      }
      std::sort(all.begin(), all.end());
      c.t_all = c.t_rows.empty() ? 0.f : safe_threshold(all, c.t_rows[0]);
    } else if (s.integer) {
      c.t_all = 1.5f;                                                                               // keeps |x| >= 2
      for (std::int64_t r = 0; r < s.b; ++r) c.t_rows.push_back(0.5f + static_cast<float>(r % 4));  // 0.5 .. 3.5
    } else {
      // the (1 - keep) quantile of |x| per row (midway between neighbours: no value sits on the threshold)
      for (std::int64_t r = 0; r < s.b; ++r) {
        std::vector<float> a;
        for (std::int64_t k = 0; k < s.K; ++k)
          a.push_back(std::fabs(static_cast<float>(as_double(c.x[r * c.ldx + k]))));
        std::sort(a.begin(), a.end());
        const auto drop = static_cast<std::size_t>(std::llround((1.0 - s.keep) * static_cast<double>(s.K)));
        float t = drop == 0 ? 0.f : drop >= a.size() ? a.back() * 2 + 1 : (a[drop - 1] + a[drop]) / 2;
        c.t_rows.push_back(t);
      }
      c.t_all = c.t_rows.empty() ? 0.f : c.t_rows[0];
    }
  }
  if (is_list) {
    c.cap = std::max<std::int64_t>(1, s.K);
    c.idx.assign(static_cast<std::size_t>(s.b * c.cap), -1);
    c.val.assign(static_cast<std::size_t>(s.b * c.cap), sentinel);
    for (std::int64_t r = 0; r < s.b; ++r) {
      std::vector<std::int32_t> perm(static_cast<std::size_t>(s.K));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      std::int64_t n;
      if (s.keep < 0) {
        const std::int64_t cyc[4] = {0, 1, s.K, static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(s.K + 1))};
        n = cyc[r % 4];
      } else {
        n = std::llround(s.keep * static_cast<double>(s.K));
      }
      perm.resize(static_cast<std::size_t>(n));
      if (s.f == form::list_sorted) std::sort(perm.begin(), perm.end());
      c.nnz.push_back(static_cast<std::int32_t>(n));
      for (std::int64_t j = 0; j < n; ++j) {
        c.idx[r * c.cap + j] = perm[j];
        c.val[r * c.cap + j] = c.x[r * c.ldx + perm[j]];
        xm[r * s.K + perm[j]] = as_double(c.x[r * c.ldx + perm[j]]);
      }
    }
  } else {
    for (std::int64_t r = 0; r < s.b; ++r)
      for (std::int64_t k = 0; k < s.K; ++k) {
        const double v = xh[r * s.K + k];
        const double a = normed ? std::fabs(v) : std::fabs(static_cast<float>(v));
        bool keep = true;
        if (s.f == form::masked) keep = v != 0.0;
        if (s.f == form::threshold_all) keep = std::isnan(v) || a >= c.t_all;
        if (s.f == form::threshold_rows) keep = std::isnan(v) || a >= c.t_rows[r];
        xm[r * s.K + k] = keep ? v : 0.0;
      }
  }

  set_reference(c, xm);
  return c;
}

//! Fused top-k with the rmsnorm prologue (s.norm) and s.act: per row K distinct magnitudes (consecutive bf16
//! numbers from 2^-11, random signs, exact in every dtype: no ties), kept = the k largest |x| (ranked on raw x),
//! products on x̂ = x · rstd.
template <class T>
host_case<T> make_topk_case(spec s, int k) {
  s.f = form::dense;
  auto c = make_case<T>(s);
  std::mt19937_64 rng(s.seed * 13 + 7);
  std::vector<double> xm(static_cast<std::size_t>(s.b * s.K), 0.0);
  for (std::int64_t r = 0; r < s.b; ++r) {
    std::vector<int> order(static_cast<std::size_t>(s.K));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    double q = 0;
    for (std::int64_t j = 0; j < s.K; ++j) {
      const float mag = static_cast<float>(frugal::bfloat16::from_bits(static_cast<std::uint16_t>(0x3a00 + j)));
      c.x[r * c.ldx + order[j]] = frugal::from_float<T>((rng() & 1) ? mag : -mag);
      q += static_cast<double>(mag) * mag;
    }
    c.mean[r] = 0;
    c.rstd[r] = s.norm == frugal::gemv_norm::rmsnorm ? 1.0 / std::sqrt(q / static_cast<double>(s.K) + s.eps) : 1.0;
    for (std::int64_t j = s.K - k; j < s.K; ++j) {  // magnitude rank j: the k largest are the last k
      const std::int64_t ch = order[j];
      xm[r * s.K + ch] = as_double(c.x[r * c.ldx + ch]) * c.rstd[r];
    }
  }
  set_reference(c, xm);
  return c;
}

//! Spacing of T's numbers at 0 (the absolute rounding error of results in the subnormal range is half of it).
template <class T>
double min_subnormal() {
  if constexpr (std::is_same_v<T, double>) return 4.9406564584124654e-324;
  if constexpr (std::is_same_v<T, float>) return 1.401298464324817e-45;
  if constexpr (std::is_same_v<T, frugal::half>) return 5.9604644775390625e-08;
  return 9.183549615799121e-41;  // bfloat16
}

//! Compares y [b, ldy] with the reference; padding must still hold y0's sentinel. Returns the failure count.
template <class T>
int compare(const host_case<T>& c, const std::vector<T>& y, const char* who) {
  const double uT = frugal_test::unit_roundoff<T>();
  int bad = 0;
  for (std::int64_t r = 0; r < c.s.b; ++r) {
    for (std::int64_t n = 0; n < c.s.N; ++n) {
      const double got = as_double(y[r * c.ldy + n]), ref = c.ref[r * c.s.N + n];
      bool ok;
      double expect = ref;
      if (c.s.integer) {
        expect = as_double(frugal::from_float<T>(static_cast<float>(ref)));
        if constexpr (std::is_same_v<T, double>) expect = ref;
        ok = got == expect;
      } else {
        const double tol = 1.01 * uT * std::fabs(ref) + 0.51 * min_subnormal<T>() + c.bound[r * c.s.N + n];
        ok = std::fabs(got - ref) <= tol;
      }
      if (!ok && ++bad <= 3)
        FAIL_CHECK(std::string(who), ": ", describe(c.s), " y[", r, ", ", n, "] = ", got, ", expected ", expect);
    }
    for (std::int64_t n = c.s.N; n < c.ldy; ++n)
      if (as_double(y[r * c.ldy + n]) != 7.0 && ++bad <= 3)
        FAIL_CHECK(std::string(who), ": ", describe(c.s), " wrote into y's padding at [", r, ", ", n, "]");
  }
  return bad;
}

//! Calls the form's API on `tag` with views over the given (host or device) pointers.
template <class Tag, class T>
void run_form(Tag tag, const host_case<T>& c, const T* x, const T* w, const T* bias, T* y, const std::int32_t* idx,
              const T* val, const std::int32_t* nnz, const float* t_rows, frugal::gemv_options opt = {},
              frugal::workspace ws = {}) {
  const auto& s = c.s;
  frugal::matrix_view<const T> xv(x, s.b, s.K, c.ldx), wv(w, s.K, s.N, c.ldw);
  frugal::matrix_view<T> yv(y, s.b, s.N, c.ldy);
  const T* bp = s.bias ? bias : nullptr;
  opt.accumulate = s.accumulate;
  opt.norm = s.norm;
  opt.act = s.act;
  opt.eps = s.eps;
  switch (s.f) {
    case form::dense:
      frugal::gemv(tag, xv, wv, bp, yv, opt, ws);
      break;
    case form::masked:
      frugal::sparse_gemv_masked(tag, xv, wv, bp, yv, opt, ws);
      break;
    case form::threshold_all:
      frugal::sparse_gemv_threshold(tag, xv, frugal::threshold{nullptr, c.t_all}, wv, bp, yv, opt, ws);
      break;
    case form::threshold_rows:
      frugal::sparse_gemv_threshold(tag, xv, frugal::threshold{t_rows, 0.f}, wv, bp, yv, opt, ws);
      break;
    case form::list_sorted:
    case form::list_shuffled: {
      frugal::sparse_rows<T> sr{idx, val, nnz, s.b, c.cap, c.cap};
      frugal::sparse_gemv(tag, sr, wv, bp, yv, opt, ws);
      break;
    }
  }
}

//! The shape grid every dtype runs: edges (1, not multiples of the vector width, batch 1..17, nnz 0/1/K).
inline std::vector<spec> shape_grid(bool integer) {
  std::vector<spec> out;
  const std::int64_t Ks[] = {1, 7, 64, 300, 1029};
  const std::int64_t Ns[] = {1, 5, 64, 515, 1100};
  const std::int64_t bs[] = {1, 2, 3, 5, 8, 9, 16, 17};
  std::uint64_t seed = 1;
  for (form f : all_forms)
    for (std::int64_t K : Ks)
      for (std::int64_t N : Ns) {
        spec s;
        s.f = f;
        s.K = K;
        s.N = N;
        s.b = bs[seed % 8];
        s.bias = seed % 2 == 0;
        s.accumulate = seed % 3 == 0;
        s.pad = seed % 5 == 0 ? 3 : 0;
        s.integer = integer;
        s.keep = (f == form::list_sorted || f == form::list_shuffled) && seed % 2 ? -1.0 : 0.5;
        s.seed = seed++;
        out.push_back(s);
      }
  return out;
}

//! Norm x activation x form combinations (continuous data): every allowed pairing on edge shapes, batch 1..17.
inline std::vector<spec> fused_grid() {
  using frugal::gemv_act;
  using frugal::gemv_norm;
  std::vector<spec> out;
  const std::int64_t Ks[] = {1, 7, 300, 1029, 2500};
  const std::int64_t Ns[] = {5, 515};
  const std::int64_t bs[] = {1, 2, 3, 4, 5, 8, 9, 16, 17};
  std::uint64_t seed = 100;
  for (form f : {form::dense, form::masked, form::threshold_all, form::threshold_rows})
    for (gemv_norm nm : {gemv_norm::none, gemv_norm::layernorm, gemv_norm::rmsnorm})
      for (gemv_act act : {gemv_act::none, gemv_act::gelu_tanh}) {
        if (nm == gemv_norm::none && act == gemv_act::none) continue;   // the plain grid covers it
        if (f == form::masked && nm == gemv_norm::layernorm) continue;  // rejected (tested as an error)
        for (std::int64_t K : Ks)
          for (std::int64_t N : Ns) {
            spec s;
            s.f = f;
            s.K = K;
            s.N = N;
            s.b = bs[seed % 9];
            s.bias = seed % 2 == 0;
            s.accumulate = seed % 3 == 0;
            s.pad = seed % 5 == 0 ? 3 : 0;
            s.integer = false;
            s.keep = 0.5;
            s.norm = nm;
            s.act = act;
            s.eps = seed % 4 == 0 ? 1e-2f : 1e-5f;
            s.seed = seed++;
            out.push_back(s);
          }
      }
  return out;
}

}  // namespace gemv_test
