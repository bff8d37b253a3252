// Top-k test oracle and input generators, shared by the CPU and CUDA tests of frugal/sparsify/topk.hpp.
//
// The oracle is deliberately obvious: rank every entry of a row by (is NaN, |x| as double) descending, then index
// ascending, with a full std::sort, and take the first k. It shares no code with the implementation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <frugal/core/dtype.hpp>

namespace frugal_test {

template <class T>
double magnitude(T v) {
  if constexpr (std::is_same_v<T, double>) return std::fabs(v);
  else return std::fabs(static_cast<double>(frugal::to_float(v)));
}
template <class T>
bool is_nan(T v) {
  if constexpr (std::is_same_v<T, double>) return std::isnan(v);
  else return std::isnan(frugal::to_float(v));
}

//! Indices of the k top entries of row[0..n), ascending.
template <class T>
std::vector<std::int32_t> oracle_topk(const T* row, std::int64_t n, int k) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    const bool na = is_nan(row[a]), nb = is_nan(row[b]);
    if (na != nb) return na;
    if (!na) {
      const double ma = magnitude(row[a]), mb = magnitude(row[b]);
      if (ma != mb) return ma > mb;
    }
    return a < b;
  });
  order.resize(static_cast<std::size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

//! |x| of the k-th ranked entry as the library reports it (NaN when it is a NaN).
template <class T>
float oracle_kth(const T* row, std::int64_t n, int k) {
  std::vector<double> m;
  std::int64_t nans = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (is_nan(row[i])) ++nans;
    else m.push_back(magnitude(row[i]));
  }
  if (nans >= k) return std::numeric_limits<float>::quiet_NaN();
  std::sort(m.begin(), m.end(), std::greater<>());
  const double v = m[static_cast<std::size_t>(k - nans - 1)];
  float f = static_cast<float>(v);
  if (static_cast<double>(f) > v) f = std::nextafter(f, 0.f);  // f64: toward zero (exact for the other dtypes)
  return f;
}

template <class T>
std::uint64_t bits_of(T v) {
  std::uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}

template <class T>
T make(double v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else return frugal::from_float<T>(static_cast<float>(v));
}

//! Input classes that stress the selection: name and generator (row-major [rows, ld]).
enum class input_kind { random, all_equal, many_ties, one_huge, denormals, specials, zeros, uniform_bits };
inline const char* kind_name(input_kind k) {
  switch (k) {
    case input_kind::random: return "random";
    case input_kind::all_equal: return "all_equal";
    case input_kind::many_ties: return "many_ties";
    case input_kind::one_huge: return "one_huge";
    case input_kind::denormals: return "denormals";
    case input_kind::specials: return "nan_inf_zero";
    case input_kind::zeros: return "signed_zeros";
    case input_kind::uniform_bits: return "uniform_bits";
  }
  return "?";
}
inline constexpr input_kind all_kinds[] = {input_kind::random,    input_kind::all_equal, input_kind::many_ties,
                                           input_kind::one_huge,  input_kind::denormals, input_kind::specials,
                                           input_kind::zeros,     input_kind::uniform_bits};

template <class T>
T smallest_denormal() {
  if constexpr (std::is_same_v<T, float>) return std::numeric_limits<float>::denorm_min();
  else if constexpr (std::is_same_v<T, double>) return std::numeric_limits<double>::denorm_min();
  else return T::from_bits(1);
}

template <class T>
std::vector<T> make_input(input_kind kind, std::int64_t rows, std::int64_t n, std::int64_t ld, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int> small(-3, 3);
  std::uniform_int_distribution<int> pick(0, 9);
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<T> v(static_cast<std::size_t>(std::max<std::int64_t>(rows * ld, 1)), make<T>(-7.0));  // -7: padding
  for (std::int64_t r = 0; r < rows; ++r) {
    T* row = v.data() + r * ld;
    for (std::int64_t i = 0; i < n; ++i) {
      switch (kind) {
        case input_kind::random: row[i] = make<T>(normal(rng)); break;
        case input_kind::all_equal: row[i] = make<T>((i & 1) ? 1.5 : -1.5); break;
        case input_kind::many_ties: row[i] = make<T>(0.5 * small(rng)); break;
        case input_kind::one_huge: row[i] = make<T>(i == n / 2 ? 6.0e4 : 1e-3 * normal(rng)); break;
        case input_kind::denormals: {
          const std::uint64_t m = 1 + static_cast<std::uint64_t>(pick(rng));  // a few denormal magnitudes + zeros
          T d = smallest_denormal<T>();
          std::uint64_t b = bits_of(d) * m;
          if (pick(rng) < 2) b = 0;
          if (pick(rng) < 5) b |= std::uint64_t{1} << (8 * sizeof(T) - 1);  // negative
          std::memcpy(static_cast<void*>(&row[i]), &b, sizeof(T));
          break;
        }
        case input_kind::specials: {
          const int c = pick(rng);
          const double vals[] = {nan, -nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, 2.0, normal(rng)};
          row[i] = make<T>(vals[c]);
          if (c == 1) {  // a NaN with another payload and the sign set
            std::uint64_t b = bits_of(row[i]) | (std::uint64_t{1} << (8 * sizeof(T) - 1)) | 1u;
            std::memcpy(static_cast<void*>(&row[i]), &b, sizeof(T));
          }
          break;
        }
        case input_kind::zeros: row[i] = make<T>(pick(rng) < 5 ? 0.0 : -0.0); break;
        case input_kind::uniform_bits: {  // any bit pattern (NaNs with payloads, denormals, huge values)
          std::uint64_t b = rng();
          std::memcpy(static_cast<void*>(&row[i]), &b, sizeof(T));
          break;
        }
      }
    }
  }
  return v;
}

}  // namespace frugal_test
