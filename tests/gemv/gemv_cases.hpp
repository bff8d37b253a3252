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
    case form::dense: return "dense";
    case form::masked: return "masked";
    case form::threshold_all: return "threshold_all";
    case form::threshold_rows: return "threshold_rows";
    case form::list_sorted: return "list_sorted";
    case form::list_shuffled: return "list_shuffled";
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
};

inline std::string describe(const spec& s) {
  return std::string(form_name(s.f)) + " b=" + std::to_string(s.b) + " K=" + std::to_string(s.K) +
         " N=" + std::to_string(s.N) + (s.bias ? " bias" : "") + (s.accumulate ? " accumulate" : "") +
         (s.integer ? " integer" : " continuous") + " keep=" + std::to_string(s.keep);
}

template <class T>
struct host_case {
  spec s;
  std::int64_t ldx = 0, ldw = 0, ldy = 0;
  std::vector<T> x, w, bias, y0;  // x [b, ldx], w [K, ldw], bias [N], y0 [b, ldy] (padding: sentinel 7)
  std::vector<std::int32_t> idx, nnz;
  std::vector<T> val;             // lists [b, cap]
  std::int64_t cap = 0;
  std::vector<float> t_rows;
  float t_all = 0.f;
  std::vector<double> ref, bound;  // [b, N]
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

  // The masked input each form means: xm[r, k] (0 where dropped).
  std::vector<double> xm(static_cast<std::size_t>(s.b * s.K), 0.0);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  const bool is_list = s.f == form::list_sorted || s.f == form::list_shuffled;
  if (s.f == form::masked) {
    for (std::int64_t r = 0; r < s.b; ++r)
      for (std::int64_t k = 0; k < s.K; ++k)
        if (u01(rng) >= s.keep) c.x[r * c.ldx + k] = T{};
  }
  if (s.f == form::threshold_all || s.f == form::threshold_rows) {
    if (s.integer) {
      c.t_all = 1.5f;  // keeps |x| >= 2
      for (std::int64_t r = 0; r < s.b; ++r) c.t_rows.push_back(0.5f + static_cast<float>(r % 4));  // 0.5 .. 3.5
    } else {
      // the (1 - keep) quantile of |x| per row (midway between neighbours: no value sits on the threshold)
      for (std::int64_t r = 0; r < s.b; ++r) {
        std::vector<float> a;
        for (std::int64_t k = 0; k < s.K; ++k) a.push_back(std::fabs(static_cast<float>(as_double(c.x[r * c.ldx + k]))));
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
        const double v = as_double(c.x[r * c.ldx + k]);
        bool keep = true;
        if (s.f == form::threshold_all) keep = std::isnan(v) || std::fabs(static_cast<float>(v)) >= c.t_all;
        if (s.f == form::threshold_rows) keep = std::isnan(v) || std::fabs(static_cast<float>(v)) >= c.t_rows[r];
        xm[r * s.K + k] = keep ? v : 0.0;
      }
  }

  c.ref.assign(static_cast<std::size_t>(s.b * s.N), 0.0);
  c.bound.assign(static_cast<std::size_t>(s.b * s.N), 0.0);
  for (std::int64_t r = 0; r < s.b; ++r)
    for (std::int64_t n = 0; n < s.N; ++n) {
      double acc = 0, bnd = 0;
      for (std::int64_t k = 0; k < s.K; ++k) {
        const double p = xm[r * s.K + k] * as_double(c.w[k * c.ldw + n]);
        acc += p;
        bnd += std::fabs(p);
      }
      if (s.bias) acc += as_double(c.bias[n]), bnd += std::fabs(as_double(c.bias[n]));
      if (s.accumulate) acc += as_double(c.y0[r * c.ldy + n]), bnd += std::fabs(as_double(c.y0[r * c.ldy + n]));
      c.ref[r * s.N + n] = acc;
      c.bound[r * s.N + n] = bnd;
    }
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
  using acc_t = typename frugal::dtype_traits<T>::accum_t;
  const double uT = frugal_test::unit_roundoff<T>();
  const double uA = frugal_test::unit_roundoff<acc_t>();
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
        const double tol = 1.01 * uT * std::fabs(ref) + 0.51 * min_subnormal<T>() +
                           16 * std::sqrt(static_cast<double>(c.s.K) + 2) * uA * c.bound[r * c.s.N + n];
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
  switch (s.f) {
    case form::dense: frugal::gemv(tag, xv, wv, bp, yv, opt, ws); break;
    case form::masked: frugal::sparse_gemv_masked(tag, xv, wv, bp, yv, opt, ws); break;
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

}  // namespace gemv_test
