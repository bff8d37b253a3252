// frugal/sparsify/detail/topk_keys.hpp — the order in which top-k ranks elements, as unsigned integer keys.
//
// Ranking by magnitude is an unsigned comparison of the element's bits with the sign bit cleared (IEEE 754 orders
// non-negative values like their bit patterns), with every NaN mapped to the largest key. So, for all dtypes:
//   +0 == -0  <  denormals  <  normals  <  +Inf == -Inf  <  NaN (all NaNs equal, whatever their sign or payload)
// Elements are ranked by descending key, ties by ascending index. Both the CPU and the CUDA code use these keys,
// so the two agree bit for bit. Host and device code (no CUDA headers needed).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../../core/config.hpp"
#include "../../core/dtype.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

//! Per-dtype bit facts. `bits_t`: the storage bits; `key_bits`: significant key bits (sign removed);
//! `inf`: the key of ±Inf (larger keys are NaN); `nan_key`: the canonical key every NaN maps to.
template <class T>
struct topk_key_traits;

template <>
struct topk_key_traits<float> {
  using bits_t = std::uint32_t;
  static constexpr int key_bits = 31;
  static constexpr bits_t inf = 0x7f800000u;
  static constexpr bits_t nan_key = 0x7fffffffu;
};
template <>
struct topk_key_traits<double> {
  using bits_t = std::uint64_t;
  static constexpr int key_bits = 63;
  static constexpr bits_t inf = 0x7ff0000000000000ull;
  static constexpr bits_t nan_key = 0x7fffffffffffffffull;
};
template <>
struct topk_key_traits<half> {
  using bits_t = std::uint16_t;
  static constexpr int key_bits = 15;
  static constexpr bits_t inf = 0x7c00u;
  static constexpr bits_t nan_key = 0x7fffu;
};
template <>
struct topk_key_traits<bfloat16> {
  using bits_t = std::uint16_t;
  static constexpr int key_bits = 15;
  static constexpr bits_t inf = 0x7f80u;
  static constexpr bits_t nan_key = 0x7fffu;
};

template <class T>
using topk_bits_t = typename topk_key_traits<T>::bits_t;

//! The magnitude key of an element given its storage bits.
template <class T>
FRUGAL_HOST_DEVICE FRUGAL_FORCEINLINE topk_bits_t<T> topk_key(topk_bits_t<T> u) {
  using K = topk_bits_t<T>;
  const K a = static_cast<K>(u & topk_key_traits<T>::nan_key);  // nan_key is also the "all but sign" mask
  return a > topk_key_traits<T>::inf ? topk_key_traits<T>::nan_key : a;
}

//! Storage bits of a host element.
template <class T>
inline topk_bits_t<T> topk_bits(const T& v) {
  topk_bits_t<T> u;
  std::memcpy(&u, &v, sizeof(u));
  return u;
}

//! Radix digit width of the selection (CPU and CUDA): 2048 buckets per pass.
inline constexpr int topk_radix_bits = 11;

//! The magnitude |x| that a key stands for, as float (what topk_select reports). NaN keys give a quiet NaN.
//! f32/f16/bf16 (host and device): exact.
template <class T>
FRUGAL_HOST_DEVICE inline float topk_key_to_float(topk_bits_t<T> key) {
  static_assert(!std::is_same_v<T, double>, "use topk_key_to_float_host for f64");
  if (key == topk_key_traits<T>::nan_key) return bits_float(0x7fc00000u);
  if constexpr (std::is_same_v<T, float>) {
    return bits_float(key);
  } else if constexpr (std::is_same_v<T, half>) {
    return half_bits_to_float(key);
  } else {
    return bf16_bits_to_float(key);
  }
}

//! Host version for every dtype. f64: rounded toward zero, so `|x| >= kth_abs` (compared in double) keeps >= k.
template <class T>
inline float topk_key_to_float_host(topk_bits_t<T> key) {
  if constexpr (std::is_same_v<T, double>) {
    if (key == topk_key_traits<T>::nan_key) return std::numeric_limits<float>::quiet_NaN();
    double d;
    std::memcpy(&d, &key, 8);
    float f = static_cast<float>(d);
    if (static_cast<double>(f) > d) f = std::nextafter(f, 0.f);
    return f;
  } else {
    return topk_key_to_float<T>(key);
  }
}

//! The threshold rule `keep x  <=>  isnan(x) || |x| >= t` as a key comparison `topk_key(x) >= key`: returns the
//! smallest key whose magnitude is >= t. t <= 0 gives 0 (keep everything); t = +Inf keeps only ±Inf and NaN;
//! a NaN t (only reachable through unchecked device-side per-row thresholds) keeps only NaN.
template <class T>
FRUGAL_HOST_DEVICE inline topk_bits_t<T> topk_threshold_key(float t) {
  using K = topk_bits_t<T>;
  if (t != t) return topk_key_traits<T>::nan_key;
  if (!(t > 0.f)) return 0;
  if constexpr (std::is_same_v<T, float>) {
    return float_bits(t);
  } else if constexpr (std::is_same_v<T, double>) {
    const double d = t;
    K u;
    std::memcpy(&u, &d, 8);
    return u;
  } else {
    K lo = 0, hi = topk_key_traits<T>::inf;  // value(hi) = Inf >= t always; find the first key with value >= t
    while (lo < hi) {
      const K mid = static_cast<K>(lo + (hi - lo) / 2);
      const float v = std::is_same_v<T, half> ? half_bits_to_float(mid) : bf16_bits_to_float(mid);
      if (v >= t) hi = mid;
      else lo = static_cast<K>(mid + 1);
    }
    return lo;
  }
}

}  // namespace detail
FRUGAL_NAMESPACE_END
