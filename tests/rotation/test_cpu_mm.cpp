// The rotation component's small CPU matrix product (detail/cpu_mm.hpp): every instruction-set version this CPU can
// run (baseline 16-byte vectors, AVX2 + FMA, AVX-512) against the scalar form, on shapes that are not multiples of
// the 4-row x 2-vector register block, with strided / transposed left operands and both accumulate modes. Each
// version is called directly, so an AVX-512 machine also checks the AVX2 and baseline code it would not dispatch to.
#include <frugal/rotation/detail/cpu_mm.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/test_util.hpp"

namespace {

template <class T>
using mm_fn = void (*)(const T*, std::int64_t, std::int64_t, const T*, std::int64_t, T*, std::int64_t, int, int, int);

template <bool Acc, class T>
void baseline(const T* l, std::int64_t ls_i, std::int64_t ls_k, const T* r, std::int64_t ldr, T* out, std::int64_t ldo,
              int mi, int nc, int kk) {
  frugal::detail::cpu_mm_body<Acc, 16>(l, ls_i, ls_k, r, ldr, out, ldo, mi, nc, kk);
}

template <bool Acc, class T>
std::vector<std::pair<const char*, mm_fn<T>>> versions() {
  std::vector<std::pair<const char*, mm_fn<T>>> v{{"baseline", &baseline<Acc, T>},
                                                  {"dispatch", &frugal::detail::cpu_mm<Acc, T>}};
#if defined(FRUGAL_CPU_MM_X86_DISPATCH)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    v.push_back({"avx2", &frugal::detail::cpu_mm_avx2<Acc, T>});
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
    v.push_back({"avx512", &frugal::detail::cpu_mm_avx512<Acc, T>});
#endif
  return v;
}

template <bool Acc, class T>
void check_all(int mi, int nc, int kk, bool transposed_l, std::mt19937& rng) {
  std::normal_distribution<double> nd;
  const std::int64_t ldl = transposed_l ? mi + 3 : kk + 5, ldr = nc + 7, ldo = nc + 2;
  const std::int64_t ls_i = transposed_l ? 1 : ldl, ls_k = transposed_l ? ldl : 1;
  std::vector<T> l(static_cast<std::size_t>((transposed_l ? kk : mi) * ldl + 8)),
      r(static_cast<std::size_t>(kk * ldr + 8)), out0(static_cast<std::size_t>(mi * ldo + 8));
  for (auto& e : l) e = static_cast<T>(nd(rng));
  for (auto& e : r) e = static_cast<T>(nd(rng));
  for (auto& e : out0) e = static_cast<T>(nd(rng));
  // f64 reference over the same operands; the bound covers any summation order of kk + 1 terms in T
  std::vector<double> ref(out0.size()), mag(out0.size());
  for (int i = 0; i < mi; ++i)
    for (int j = 0; j < nc; ++j) {
      double s = Acc ? static_cast<double>(out0[i * ldo + j]) : 0.0, m = std::fabs(s);
      for (int k = 0; k < kk; ++k) {
        const double p = static_cast<double>(l[i * ls_i + k * ls_k]) * static_cast<double>(r[k * ldr + j]);
        s += p;
        m += std::fabs(p);
      }
      ref[static_cast<std::size_t>(i * ldo + j)] = s;
      mag[static_cast<std::size_t>(i * ldo + j)] = m;
    }
  const double eps = std::is_same_v<T, float> ? 6e-8 : 1.2e-16;
  for (const auto& [name, fn] : versions<Acc, T>()) {
    std::vector<T> out = out0;
    fn(l.data(), ls_i, ls_k, r.data(), ldr, out.data(), ldo, mi, nc, kk);
    int bad = 0;
    for (std::size_t e = 0; e < out.size(); ++e) {
      const std::int64_t i = static_cast<std::int64_t>(e) / ldo, j = static_cast<std::int64_t>(e) % ldo;
      const bool inside = i < mi && j < nc;
      if (!inside) {
        bad += out[e] != out0[e];  // untouched outside [mi, nc)
        continue;
      }
      bad += !(std::fabs(static_cast<double>(out[e]) - ref[e]) <= 2.0 * (kk + 2) * eps * mag[e] + 1e-300);
    }
    INFO(name, " mi=", mi, " nc=", nc, " kk=", kk, " transposed=", transposed_l, " accumulate=", Acc);
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("cpu_mm: every instruction-set version equals the f64 reference (edges, strides, accumulate)", T,
                   float, double) {
  std::mt19937 rng(7);
  for (int mi : {1, 3, 4, 5, 9, 17})
    for (int nc : {1, 7, 8, 15, 16, 17, 33, 65})
      for (int kk : {0, 1, 2, 13, 64})
        for (bool tr : {false, true}) {
          check_all<false, T>(mi, nc, kk, tr, rng);
          check_all<true, T>(mi, nc, kk, tr, rng);
        }
}
