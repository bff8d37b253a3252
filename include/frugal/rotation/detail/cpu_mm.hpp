// frugal/rotation/detail/cpu_mm.hpp — the small dense matrix product the rotation component runs on the CPU
// (Jacobi tile updates, covariance tiles, weight folding): out (+)= L · R with a register-blocked micro-kernel,
// compiled for AVX-512 / AVX2+FMA / baseline and chosen at run time on x86-64 (GCC/Clang), plain C++ elsewhere.
// Private: used by the rotation headers.
#pragma once

#include <cstdint>

#include "../../core/config.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

//! out[i][j] (+)= sum_{k < kk} L(i, k) * r[k * ldr + j] for i < mi, j < nc, with L(i, k) = l[i * ls_i + k * ls_k].
//! Accumulators are T. Scalar reference form (used for edges, and for whole products where the vector form below
//! is not compiled).
template <bool Accumulate, class T>
FRUGAL_FORCEINLINE void cpu_mm_scalar(const T* __restrict l, std::int64_t ls_i, std::int64_t ls_k,
                                      const T* __restrict r, std::int64_t ldr, T* __restrict out, std::int64_t ldo,
                                      int i0, int mi, int j0, int nc, int kk) {
  for (int i = i0; i < mi; ++i)
    for (int j = j0; j < nc; ++j) {
      T acc = Accumulate ? out[i * ldo + j] : T(0);
      for (int k = 0; k < kk; ++k) acc += l[i * ls_i + k * ls_k] * r[k * ldr + j];
      out[i * ldo + j] = acc;
    }
}

#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define FRUGAL_CPU_MM_VECTOR 1
//! GNU vector of Bytes bytes of T. Bytes must be the width of one register of the target the function using it is
//! compiled for (64: AVX-512 zmm, 32: AVX2 ymm, 16: SSE2 xmm): wider vectors are split into several registers,
//! and the 4 x 2 accumulator block below then needs more registers than the target has (64-byte vectors under
//! AVX2 took all 16 ymm for the accumulators alone and spilled: ~20x slower on an AVX2-only EPYC).
template <class T, int Bytes>
struct cpu_vec {
  typedef T type __attribute__((vector_size(Bytes)));
  static constexpr int lanes = static_cast<int>(Bytes / sizeof(T));
};
#endif

//! The register-blocked form: 4 rows x 2 vectors of accumulators (8 registers), L(i, k) broadcast, r rows loaded
//! as vectors of VecBytes bytes (the register width of the target it is compiled for).
template <bool Accumulate, int VecBytes, class T>
FRUGAL_FORCEINLINE void cpu_mm_body(const T* __restrict l, std::int64_t ls_i, std::int64_t ls_k, const T* __restrict r,
                                    std::int64_t ldr, T* __restrict out, std::int64_t ldo, int mi, int nc, int kk) {
#if defined(FRUGAL_CPU_MM_VECTOR)
  using V = typename cpu_vec<T, VecBytes>::type;
  constexpr int VL = cpu_vec<T, VecBytes>::lanes, R = 4, W = 2 * VL;
  const int mi4 = mi / R * R, ncw = nc / W * W;
  for (int i0 = 0; i0 < mi4; i0 += R) {
    for (int j0 = 0; j0 < ncw; j0 += W) {
      V acc[R][2];
      for (int ii = 0; ii < R; ++ii)
        for (int h = 0; h < 2; ++h) {
          if (Accumulate)
            __builtin_memcpy(&acc[ii][h], out + (i0 + ii) * ldo + j0 + h * VL, sizeof(V));
          else
            acc[ii][h] = V{};
        }
      for (int k = 0; k < kk; ++k) {
        V r0, r1;
        __builtin_memcpy(&r0, r + k * ldr + j0, sizeof(V));
        __builtin_memcpy(&r1, r + k * ldr + j0 + VL, sizeof(V));
        for (int ii = 0; ii < R; ++ii) {
          const T a = l[(i0 + ii) * ls_i + k * ls_k];
          acc[ii][0] += a * r0;
          acc[ii][1] += a * r1;
        }
      }
      for (int ii = 0; ii < R; ++ii)
        for (int h = 0; h < 2; ++h) __builtin_memcpy(out + (i0 + ii) * ldo + j0 + h * VL, &acc[ii][h], sizeof(V));
    }
    cpu_mm_scalar<Accumulate>(l, ls_i, ls_k, r, ldr, out, ldo, i0, i0 + R, ncw, nc, kk);
  }
  cpu_mm_scalar<Accumulate>(l, ls_i, ls_k, r, ldr, out, ldo, mi4, mi, 0, nc, kk);
#else
  cpu_mm_scalar<Accumulate>(l, ls_i, ls_k, r, ldr, out, ldo, 0, mi, 0, nc, kk);
#endif
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define FRUGAL_CPU_MM_X86_DISPATCH 1
template <bool Accumulate, class T>
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void cpu_mm_avx512(const T* l, std::int64_t ls_i,
                                                                        std::int64_t ls_k, const T* r, std::int64_t ldr,
                                                                        T* out, std::int64_t ldo, int mi, int nc,
                                                                        int kk) {
  cpu_mm_body<Accumulate, 64>(l, ls_i, ls_k, r, ldr, out, ldo, mi, nc, kk);
}
template <bool Accumulate, class T>
__attribute__((target("avx2,fma"))) void cpu_mm_avx2(const T* l, std::int64_t ls_i, std::int64_t ls_k, const T* r,
                                                     std::int64_t ldr, T* out, std::int64_t ldo, int mi, int nc,
                                                     int kk) {
  cpu_mm_body<Accumulate, 32>(l, ls_i, ls_k, r, ldr, out, ldo, mi, nc, kk);
}
//! 2: AVX-512F/VL + FMA, 1: AVX2 + FMA, 0: baseline.
inline int cpu_mm_level() {
  static const int level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
      return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
  }();
  return level;
}
#endif

template <bool Accumulate, class T>
void cpu_mm(const T* l, std::int64_t ls_i, std::int64_t ls_k, const T* r, std::int64_t ldr, T* out, std::int64_t ldo,
            int mi, int nc, int kk) {
#if defined(FRUGAL_CPU_MM_X86_DISPATCH)
  switch (cpu_mm_level()) {
    case 2:
      return cpu_mm_avx512<Accumulate>(l, ls_i, ls_k, r, ldr, out, ldo, mi, nc, kk);
    case 1:
      return cpu_mm_avx2<Accumulate>(l, ls_i, ls_k, r, ldr, out, ldo, mi, nc, kk);
    default:
      break;
  }
#endif
  cpu_mm_body<Accumulate, 16>(l, ls_i, ls_k, r, ldr, out, ldo, mi, nc, kk);
}

}  // namespace detail
FRUGAL_NAMESPACE_END
