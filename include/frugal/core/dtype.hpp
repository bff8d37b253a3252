// frugal/core/dtype.hpp — element types, their traits, and the one runtime dtype dispatcher.
//
// frugal::half and frugal::bfloat16 are 16-bit storage types, bit-compatible with CUDA's __half and
// __nv_bfloat16 (same size, alignment and bit layout), usable on machines without the CUDA Toolkit. Device code
// reinterprets them as the CUDA types (see core/detail/cuda_types.cuh) to use the hardware conversions.
// Arithmetic on them always goes through float: `dtype_traits<T>::accum_t` is float for 16-bit types.
// Conversions round to nearest even; NaN stays NaN, overflow goes to ±Inf, as the CUDA intrinsics do.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "config.hpp"
#include "error.hpp"

FRUGAL_NAMESPACE_BEGIN

namespace detail {
FRUGAL_HOST_DEVICE inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
FRUGAL_HOST_DEVICE inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

FRUGAL_HOST_DEVICE inline std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u)  // Inf or NaN (keep a quiet NaN)
    return static_cast<std::uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  if (absx >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: Inf
  if (absx < 0x38800000u) {  // result is subnormal (or zero): value / 2^-24, rounded to nearest even
    if (absx < 0x33000000u) return static_cast<std::uint16_t>(sign);  // < 2^-25: rounds to zero
    const std::uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(absx >> 23);  // 14..24 extra bits to drop
    const std::uint32_t r = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    return static_cast<std::uint16_t>(sign | (r + ((rem > half || (rem == half && (r & 1u))) ? 1u : 0u)));
  }
  // normal: rebias exponent 127 -> 15 and round the 13 dropped mantissa bits to nearest even
  const std::uint32_t r = ((absx - 0x38000000u) >> 13);
  const std::uint32_t rem = absx & 0x1fffu;
  return static_cast<std::uint16_t>(sign | (r + ((rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ? 1u : 0u)));
}

FRUGAL_HOST_DEVICE inline float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {  // zero or subnormal: mant * 2^-24
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

FRUGAL_HOST_DEVICE inline std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}
FRUGAL_HOST_DEVICE inline float bf16_bits_to_float(std::uint16_t b) {
  return bits_float(static_cast<std::uint32_t>(b) << 16);
}
}  // namespace detail

//! IEEE binary16, bit-compatible with CUDA's __half.
struct alignas(2) half {
  std::uint16_t bits = 0;
  half() = default;
  FRUGAL_HOST_DEVICE explicit half(float f) : bits(detail::float_to_half_bits(f)) {}
  FRUGAL_HOST_DEVICE explicit operator float() const { return detail::half_bits_to_float(bits); }
  FRUGAL_HOST_DEVICE static half from_bits(std::uint16_t b) {
    half h;
    h.bits = b;
    return h;
  }
};

//! bfloat16 (8-bit exponent, 7-bit mantissa), bit-compatible with CUDA's __nv_bfloat16.
struct alignas(2) bfloat16 {
  std::uint16_t bits = 0;
  bfloat16() = default;
  FRUGAL_HOST_DEVICE explicit bfloat16(float f) : bits(detail::float_to_bf16_bits(f)) {}
  FRUGAL_HOST_DEVICE explicit operator float() const { return detail::bf16_bits_to_float(bits); }
  FRUGAL_HOST_DEVICE static bfloat16 from_bits(std::uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
};

static_assert(sizeof(half) == 2 && alignof(half) == 2 && std::is_trivially_copyable_v<half>);
static_assert(sizeof(bfloat16) == 2 && alignof(bfloat16) == 2 && std::is_trivially_copyable_v<bfloat16>);

//! Runtime element type, for APIs that choose the dtype at run time (files, CLIs).
enum class dtype { f32, f64, f16, bf16 };

//! Per-type facts. `accum_t`: what sums are kept in. `vec_width`: elements per 16-byte load.
//! `cuda_ok`: whether CUDA kernels are instantiated for it (f64 is CPU-only).
template <class T>
struct dtype_traits;

template <>
struct dtype_traits<float> {
  using accum_t = float;
  static constexpr dtype id = dtype::f32;
  static constexpr const char* name = "f32";
  static constexpr int vec_width = 4;
  static constexpr bool cuda_ok = true;
  static constexpr double eps = 1.1920928955078125e-07;
  FRUGAL_HOST_DEVICE static float to_float(float v) { return v; }
  FRUGAL_HOST_DEVICE static float from_float(float v) { return v; }
};
template <>
struct dtype_traits<double> {
  using accum_t = double;
  static constexpr dtype id = dtype::f64;
  static constexpr const char* name = "f64";
  static constexpr int vec_width = 2;
  static constexpr bool cuda_ok = false;
  static constexpr double eps = 2.220446049250313e-16;
  FRUGAL_HOST_DEVICE static float to_float(double v) { return static_cast<float>(v); }
  FRUGAL_HOST_DEVICE static double from_float(float v) { return v; }
};
template <>
struct dtype_traits<half> {
  using accum_t = float;
  static constexpr dtype id = dtype::f16;
  static constexpr const char* name = "f16";
  static constexpr int vec_width = 8;
  static constexpr bool cuda_ok = true;
  static constexpr double eps = 9.765625e-04;
  FRUGAL_HOST_DEVICE static float to_float(half v) { return static_cast<float>(v); }
  FRUGAL_HOST_DEVICE static half from_float(float v) { return half(v); }
};
template <>
struct dtype_traits<bfloat16> {
  using accum_t = float;
  static constexpr dtype id = dtype::bf16;
  static constexpr const char* name = "bf16";
  static constexpr int vec_width = 8;
  static constexpr bool cuda_ok = true;
  static constexpr double eps = 7.8125e-03;
  FRUGAL_HOST_DEVICE static float to_float(bfloat16 v) { return static_cast<float>(v); }
  FRUGAL_HOST_DEVICE static bfloat16 from_float(float v) { return bfloat16(v); }
};

template <class T>
concept element = requires { dtype_traits<std::remove_cv_t<T>>::name; };

//! Converts any frugal element type to float / from float.
template <class T>
FRUGAL_HOST_DEVICE inline float to_float(T v) {
  return dtype_traits<T>::to_float(v);
}
template <class T>
FRUGAL_HOST_DEVICE inline T from_float(float v) {
  return dtype_traits<T>::from_float(v);
}

inline constexpr std::string_view dtype_name(dtype d) {
  switch (d) {
    case dtype::f32: return "f32";
    case dtype::f64: return "f64";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
  }
  return "?";
}

inline std::size_t dtype_size(dtype d) { return d == dtype::f64 ? 8 : d == dtype::f32 ? 4 : 2; }

//! Parses "f32", "f64", "f16", "bf16" (also "float32", "float16", "half", "bfloat16", "float", "double").
inline dtype parse_dtype(std::string_view s) {
  if (s == "f32" || s == "float32" || s == "float" || s == "fp32") return dtype::f32;
  if (s == "f64" || s == "float64" || s == "double" || s == "fp64") return dtype::f64;
  if (s == "f16" || s == "float16" || s == "half" || s == "fp16") return dtype::f16;
  if (s == "bf16" || s == "bfloat16") return dtype::bf16;
  detail::fail("parse_dtype", "unknown dtype '", std::string(s), "'; supported: f32, f64, f16, bf16");
}

template <class T>
struct type_tag {
  using type = T;
};

//! Calls f(type_tag<T>{}) with T the C++ type of `d`. Throws for an unknown value, naming it and the list.
template <class F>
decltype(auto) dispatch_dtype(dtype d, F&& f) {
  switch (d) {
    case dtype::f32: return f(type_tag<float>{});
    case dtype::f64: return f(type_tag<double>{});
    case dtype::f16: return f(type_tag<half>{});
    case dtype::bf16: return f(type_tag<bfloat16>{});
  }
  detail::fail("dispatch_dtype", "unsupported dtype value ", static_cast<int>(d), "; supported: f32, f64, f16, bf16");
}

FRUGAL_NAMESPACE_END
