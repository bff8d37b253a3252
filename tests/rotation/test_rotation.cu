// Rotation on CUDA: eigh (f32, f64) against the accuracy bounds and the CPU eigenvalues for every prescribed spectrum
// at n = 1, 2, 3, 33, 64, 768, 1600 and at n = 4096 (random SPD, graded); strided views, a stream, bad input;
// covariance sums/merge/finalize against the CPU for every input dtype; larosa_rotation against the CPU.
#include <frugal/rotation/covariance.hpp>
#include <frugal/rotation/eigh.hpp>
#include <frugal/rotation/larosa.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "common/cuda_test_util.cuh"
#include "common/test_util.hpp"
#include "rotation_test_util.hpp"

using frugal_test::device_buffer;

namespace {

template <class T>
struct gpu_result {
  std::vector<double> w, q;
  frugal::eigh_info info;
};

//! eigh on the GPU with a (ld = n + pad) strided input and output, on a non-default stream.
template <class T>
gpu_result<T> solve_gpu(const std::vector<T>& a, int n, int pad = 0, frugal::eigh_options o = {}) {
  const int ld = n + pad;
  std::vector<T> ah(static_cast<std::size_t>(n) * ld, T(0));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) ah[static_cast<std::size_t>(i) * ld + j] = a[static_cast<std::size_t>(i) * n + j];
  // q's padding columns hold a sentinel that eigh must leave alone (and every downloaded byte is defined)
  const T sentinel = T(7);
  device_buffer<T> da(ah), dw(static_cast<std::size_t>(n)),
      dq(std::vector<T>(static_cast<std::size_t>(n) * ld, sentinel));
  device_buffer<std::byte> ws(frugal::eigh_workspace_bytes<T>(frugal::cuda, n, o));
  cudaStream_t st;
  FRUGAL_CUDA_CHECK(cudaStreamCreate(&st), "test");
  gpu_result<T> r;
  r.info = frugal::eigh<T>(frugal::cuda.on(st), frugal::matrix_view<const T>(da.data(), n, n, ld), dw.data(),
                           frugal::matrix_view<T>(dq.data(), n, n, ld), frugal::workspace{ws.data(), ws.size()}, o);
  FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "test");
  FRUGAL_CUDA_CHECK(cudaStreamDestroy(st), "test");
  const auto w = dw.download(), q = dq.download();
  r.w.assign(w.begin(), w.end());
  r.q.resize(static_cast<std::size_t>(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) r.q[static_cast<std::size_t>(i) * n + j] = q[static_cast<std::size_t>(i) * ld + j];
  int touched = 0;
  for (int i = 0; i < n; ++i)
    for (int j = n; j < ld; ++j) touched += q[static_cast<std::size_t>(i) * ld + j] != sentinel ? 1 : 0;
  CHECK(touched == 0);
  return r;
}

template <class T>
void check_gpu_case(const std::vector<double>& a64, int n, const char* name, int pad = 0) {
  const std::vector<T> a(a64.begin(), a64.end());
  const std::vector<double> at(a.begin(), a.end());
  const auto g = solve_gpu<T>(a, n, pad);
  const auto acc = rotation_test::measure(at, g.w, g.q, n);
  const double eps = frugal::dtype_traits<T>::eps, bound = 10.0 * n * eps;
  const std::string line = std::string("cuda ") + frugal::dtype_traits<T>::name + " n=" + std::to_string(n) + " " +
                           name + ": orth=" + std::to_string(acc.orth) + " residual=" + std::to_string(acc.residual) +
                           " bound=" + std::to_string(bound) + " sweeps=" + std::to_string(g.info.sweeps);
  MESSAGE(line);
  CHECK(acc.orth <= bound);
  CHECK(acc.residual <= bound);
  for (int i = 1; i < n; ++i) CHECK(g.w[static_cast<std::size_t>(i - 1)] >= g.w[static_cast<std::size_t>(i)]);
  if (n <= 768) {  // eigenvalues against the CPU solver (both backward stable: |dλ| <= bound · ||A||)
    std::vector<T> wc(static_cast<std::size_t>(n)), qc(static_cast<std::size_t>(n) * n);
    frugal::eigh<T>(frugal::cpu, frugal::matrix_view<const T>(a.data(), n, n), wc.data(),
                    frugal::matrix_view<T>(qc.data(), n, n));
    double fro = 0, err = 0;
    for (double v : at) fro += v * v;
    for (int i = 0; i < n; ++i)
      err = std::max(
          err, std::fabs(g.w[static_cast<std::size_t>(i)] - static_cast<double>(wc[static_cast<std::size_t>(i)])));
    CHECK(err <= bound * std::sqrt(fro));
  }
}

//! Every prescribed spectrum (or those whose index is in `only`).
template <class T>
void check_gpu_spectra(int n, int pad = 0, std::vector<int> only = {}) {
  std::uint64_t seed = 500 + n;
  int idx = 0;
  for (const auto& c : rotation_test::spectra(n)) {
    const bool run = only.empty() || std::find(only.begin(), only.end(), idx) != only.end();
    ++idx;
    ++seed;
    if (!run) continue;
    const auto a = c.lam.empty() ? rotation_test::random_spd(n, seed) : rotation_test::with_spectrum(c.lam, seed);
    check_gpu_case<T>(a, n, c.name.c_str(), pad);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("cuda eigh: n = 1, 2, 3, 33, 64 (strided), all spectra", T, float, double) {
  FRUGAL_REQUIRE_GPU();
  for (int n : {1, 2, 3, 33, 64})
    if (n < 64 || !frugal_test::small_tests()) check_gpu_spectra<T>(n, n == 33 ? 5 : 0);
}

// Skipped with FRUGAL_TEST_SMALL (compute-sanitizer runs): the n = 1..300 cases cover the same kernels.
TEST_CASE_TEMPLATE("cuda eigh: n = 768, all spectra; n = 1600, random SPD, repeated, graded" *
                       doctest::skip(frugal_test::small_tests()),
                   T, float, double) {
  FRUGAL_REQUIRE_GPU();
  check_gpu_spectra<T>(768);
  check_gpu_spectra<T>(1600, 0, {0, 2, 3});
}

// Runs only with FRUGAL_SLOW_TESTS set (minutes of host-side f64 work for the test matrices and the checks):
//   FRUGAL_SLOW_TESTS=1 test_rotation_cuda -tc='*4096*'
TEST_CASE_TEMPLATE("cuda eigh: n = 4096, random SPD (and graded spectrum in f32)" *
                       doctest::skip(std::getenv("FRUGAL_SLOW_TESTS") == nullptr),
                   T, float, double) {
  FRUGAL_REQUIRE_GPU();
  const int n = 4096;
  check_gpu_case<T>(rotation_test::random_spd(n, 77), n, "random SPD");
  if (std::is_same_v<T, float>)
    check_gpu_case<T>(rotation_test::with_spectrum(rotation_test::spectra(n)[3].lam, 78), n, "graded 1e-8..1");
}

TEST_CASE("cuda eigh: explicit block sizes and inner sweeps; a zero matrix") {
  FRUGAL_REQUIRE_GPU();
  // 80 still spans several blocks of 16 and 32; racecheck (FRUGAL_TEST_SMALL=2): 64 = 4 blocks of 16, 2 of 32
  const int n = frugal_test::tiny_tests() ? 64 : frugal_test::small_tests() ? 80 : 300;
  const auto a64 = rotation_test::random_spd(n, 3);
  const std::vector<double> a(a64);
  for (int b : {16, 32}) {
    frugal::eigh_options o;
    o.block_size = b;
    o.max_inner_sweeps = b == 16 ? 3 : 1;
    // the two-kernel step (eigh_pair_kernel) with cross steps (the default) and with full steps
    std::int64_t rotations[2] = {};
    for (int full = 0; full < 2; ++full) {
      if (full) setenv("FRUGAL_EIGH_FULL_STEPS", "1", 1);
      const auto g = solve_gpu<double>(a, n, 0, o);
      if (full) unsetenv("FRUGAL_EIGH_FULL_STEPS");
      const auto acc = rotation_test::measure(a64, g.w, g.q, n);
      CHECK(acc.orth <= 10.0 * n * frugal::dtype_traits<double>::eps);
      CHECK(acc.residual <= 10.0 * n * frugal::dtype_traits<double>::eps);
      rotations[full] = g.info.rotations;
    }
    const int blocks = (n + 2 * b - 1) / (2 * b) * 2;  // m: cross steps exist from m = 4 on
    if (blocks > 2) CHECK(rotations[1] > rotations[0]);
  }
  const std::vector<float> z(static_cast<std::size_t>(n) * n, 0.f);
  const auto g = solve_gpu<float>(z, n);
  CHECK(g.info.rotations == 0);
  CHECK(g.info.sweeps == 1);
  for (int i = 0; i < n; ++i) CHECK(g.q[static_cast<std::size_t>(i) * n + i] == 1.0);
}

// f32 inputs of the b = 16 path solve their subproblems in f32 unless FRUGAL_EIGH_F64_SUBPROBLEMS=1, and every step
// but a sweep's first rotates only the pairs across its two blocks unless FRUGAL_EIGH_FULL_STEPS=1 (comparison
// switches): every variant must meet the bound and give the same spectrum to f32 accuracy; the first launch of the
// one-kernel step reads the input, later ones the previous step's A, J and solves (several sweeps at n = 97: m = 8
// blocks). The full ordering rotates the pairs inside the blocks again in every step, so it applies more rotations.
TEST_CASE("cuda eigh: f32 with f32 and f64 subproblems, cross and full steps (b = 16)") {
  FRUGAL_REQUIRE_GPU();
  const int n = frugal_test::tiny_tests() ? 40 : 97;
  const auto a64 = rotation_test::random_spd(n, 11);
  const std::vector<float> a(a64.begin(), a64.end());
  const double bound = 10.0 * n * frugal::dtype_traits<float>::eps;
  const auto solve_with = [&](const char* env) {
    if (env) setenv(env, "1", 1);
    auto g = solve_gpu<float>(a, n);
    if (env) unsetenv(env);
    return g;
  };
  const auto g32 = solve_with(nullptr), g64 = solve_with("FRUGAL_EIGH_F64_SUBPROBLEMS"),
             gfull = solve_with("FRUGAL_EIGH_FULL_STEPS");
  for (const auto* g : {&g32, &g64, &gfull}) {
    const auto acc = rotation_test::measure(a64, g->w, g->q, n);
    CHECK(acc.orth <= bound);
    CHECK(acc.residual <= bound);
    CHECK(g->info.sweeps >= 3);
  }
  CHECK(gfull.info.rotations > g32.info.rotations + g32.info.rotations / 4);
  double wmax = 0;
  for (int i = 0; i < n; ++i) wmax = std::max(wmax, std::abs(static_cast<double>(g64.w[static_cast<std::size_t>(i)])));
  for (const auto* g : {&g32, &gfull})
    for (int i = 0; i < n; ++i)
      CHECK(std::abs(static_cast<double>(g->w[static_cast<std::size_t>(i)]) -
                     static_cast<double>(g64.w[static_cast<std::size_t>(i)])) <= bound * wmax);
}

// A matrix whose off-diagonal entries all lie inside the blocks of 16: the steps after a sweep's first (pairs across
// two blocks only) find nothing to rotate, so the sweep's first step must diagonalise every block.
TEST_CASE_TEMPLATE("cuda eigh: block-diagonal input (b = 16, every entry inside one block)", T, float, double) {
  FRUGAL_REQUIRE_GPU();
  const int n = 96, b = 16;
  std::vector<double> a64(static_cast<std::size_t>(n) * n, 0.0);
  for (int blk = 0; blk < n / b; ++blk) {
    const auto s = rotation_test::random_spd(b, 40 + static_cast<std::uint64_t>(blk));
    for (int i = 0; i < b; ++i)
      for (int j = 0; j < b; ++j)
        a64[static_cast<std::size_t>(blk * b + i) * n + blk * b + j] = s[static_cast<std::size_t>(i) * b + j];
  }
  const std::vector<T> a(a64.begin(), a64.end());
  const std::vector<double> at(a.begin(), a.end());
  const auto g = solve_gpu<T>(a, n);
  const auto acc = rotation_test::measure(at, g.w, g.q, n);
  const double bound = 10.0 * n * frugal::dtype_traits<T>::eps;
  CHECK(acc.orth <= bound);
  CHECK(acc.residual <= bound);
  CHECK(g.info.rotations > 0);
}

TEST_CASE("cuda eigh: bad input throws before writing, with the values") {
  FRUGAL_REQUIRE_GPU();
  const int n = 40;
  auto a = rotation_test::random_spd(n, 5);
  std::vector<float> af(a.begin(), a.end());
  af[static_cast<std::size_t>(7) * n + 9] = std::numeric_limits<float>::quiet_NaN();
  af[static_cast<std::size_t>(20) * n + 3] = std::numeric_limits<float>::infinity();
  device_buffer<float> da(af), dw(n), dq(static_cast<std::size_t>(n) * n);
  dw.zero();
  dq.zero();
  device_buffer<std::byte> ws(frugal::eigh_workspace_bytes<float>(frugal::cuda, n));
  const frugal::workspace w{ws.data(), ws.size()};
  FRUGAL_CHECK_THROWS_WITH(frugal::eigh<float>(frugal::cuda, frugal::matrix_view<const float>(da.data(), n, n),
                                               dw.data(), frugal::matrix_view<float>(dq.data(), n, n), w),
                           "frugal::eigh: a has a non-finite value (nan) at (7, 9)");
  af[static_cast<std::size_t>(7) * n + 9] = af[static_cast<std::size_t>(9) * n + 7];
  da.upload(af);
  FRUGAL_CHECK_THROWS_WITH(frugal::eigh<float>(frugal::cuda, frugal::matrix_view<const float>(da.data(), n, n),
                                               dw.data(), frugal::matrix_view<float>(dq.data(), n, n), w),
                           "a has a non-finite value (inf) at (20, 3)");
  af[static_cast<std::size_t>(20) * n + 3] = 0.5f;
  af[static_cast<std::size_t>(3) * n + 20] = 0.25f;
  da.upload(af);
  FRUGAL_CHECK_THROWS_WITH(frugal::eigh<float>(frugal::cuda, frugal::matrix_view<const float>(da.data(), n, n),
                                               dw.data(), frugal::matrix_view<float>(dq.data(), n, n), w),
                           "a is not symmetric: |a_ij - a_ji| = 0.25 at (i, j) = (3, 20)");
  for (float v : dw.download()) CHECK(v == 0.f);
  for (float v : dq.download()) CHECK(v == 0.f);
  FRUGAL_CHECK_THROWS_WITH(frugal::eigh<float>(frugal::cuda, frugal::matrix_view<const float>(da.data(), n, n - 1),
                                               dw.data(), frugal::matrix_view<float>(dq.data(), n, n), w),
                           "a must be square, got shape [40, 39]");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::eigh<float>(frugal::cuda, frugal::matrix_view<const float>(da.data(), n, n), dw.data(),
                          frugal::matrix_view<float>(dq.data(), n, n), frugal::workspace{ws.data(), 1000}),
      "workspace too small: 1000 bytes given");
  af[static_cast<std::size_t>(20) * n + 3] = 0.25f;
  da.upload(af);
  frugal::eigh_options o;
  o.max_sweeps = 1;
  FRUGAL_CHECK_THROWS_WITH(frugal::eigh<float>(frugal::cuda, frugal::matrix_view<const float>(da.data(), n, n),
                                               dw.data(), frugal::matrix_view<float>(dq.data(), n, n), w, o),
                           "Jacobi did not converge in max_sweeps (=1) sweeps for n=40");
}

TEST_CASE_TEMPLATE("cuda covariance: sums, merge and finalize equal the CPU", T, float, double, frugal::half,
                   frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  const std::vector<std::int64_t> dims =
      frugal_test::small_tests() ? std::vector<std::int64_t>{1, 65, 130} : std::vector<std::int64_t>{1, 65, 130, 768};
  for (std::int64_t d : dims) {
    for (std::int64_t tokens : {0, 1, 33, 1000}) {
      const auto x = frugal_test::random_vector<T>(static_cast<std::size_t>(std::max<std::int64_t>(tokens, 1) * d),
                                                   7 + d + tokens);
      device_buffer<T> dx(x);
      device_buffer<std::byte> m1(frugal::covariance_state_bytes(d, true)), m2(frugal::covariance_state_bytes(d, true));
      auto s1 = frugal::covariance_state_on(m1.data(), m1.size(), d, true);
      auto s2 = frugal::covariance_state_on(m2.data(), m2.size(), d, true);
      frugal::covariance_reset(frugal::cuda, s1);
      frugal::covariance_reset(frugal::cuda, s2);
      const std::int64_t cut = tokens / 3;
      frugal::covariance_accumulate<T>(frugal::cuda, frugal::matrix_view<const T>(dx.data(), cut, d), s1);
      frugal::covariance_accumulate<T>(frugal::cuda, frugal::matrix_view<const T>(dx.data() + cut * d, tokens - cut, d),
                                       s2);
      frugal::covariance_merge(frugal::cuda, s1, s2);
      CHECK(s1.count == tokens);
      frugal::covariance_accumulator ref(d, true);
      ref.add<T>(frugal::cpu, frugal::matrix_view<const T>(x.data(), tokens, d));
      // raw sums (upper triangle)
      std::vector<double> h(static_cast<std::size_t>(d * d)), s(static_cast<std::size_t>(d));
      FRUGAL_CUDA_CHECK(cudaMemcpy(h.data(), s1.xtx, h.size() * sizeof(double), cudaMemcpyDeviceToHost), "test");
      FRUGAL_CUDA_CHECK(cudaMemcpy(s.data(), s1.sum, s.size() * sizeof(double), cudaMemcpyDeviceToHost), "test");
      for (std::int64_t i = 0; i < d; ++i) {
        CHECK(s[static_cast<std::size_t>(i)] == doctest::Approx(ref.state().sum[i]).epsilon(1e-12));
        for (std::int64_t j = i; j < d; ++j)
          REQUIRE(h[static_cast<std::size_t>(i * d + j)] == doctest::Approx(ref.state().xtx[i * d + j]).epsilon(1e-12));
      }
      if (tokens == 0) continue;
      for (bool centered : {false, true}) {
        const frugal::covariance_options o{centered, 0.01};
        device_buffer<double> dc(static_cast<std::size_t>(d * d));
        device_buffer<float> df(static_cast<std::size_t>(d * d));
        frugal::covariance_finalize(frugal::cuda, s1, frugal::matrix_view<double>(dc.data(), d, d), o);
        frugal::covariance_finalize(frugal::cuda, s1, frugal::matrix_view<float>(df.data(), d, d), o);
        std::vector<double> rc(static_cast<std::size_t>(d * d));
        ref.finalize(frugal::cpu, frugal::matrix_view<double>(rc.data(), d, d), o);
        const auto gc = dc.download();
        const auto gf = df.download();
        for (std::size_t e = 0; e < rc.size(); ++e) {
          REQUIRE(gc[e] == doctest::Approx(rc[e]).epsilon(1e-10));
          REQUIRE(gf[e] == doctest::Approx(rc[e]).epsilon(1e-6));
        }
      }
    }
  }
}

TEST_CASE("cuda covariance: errors") {
  FRUGAL_REQUIRE_GPU();
  device_buffer<std::byte> m(frugal::covariance_state_bytes(8, false));
  auto s = frugal::covariance_state_on(m.data(), m.size(), 8, false);
  frugal::covariance_reset(frugal::cuda, s);
  device_buffer<float> x(64), c(64);
  FRUGAL_CHECK_THROWS_WITH(
      frugal::covariance_accumulate<float>(frugal::cuda, frugal::matrix_view<const float>(x.data(), 8, 7), s),
      "x has 7 columns but the state has dim=8");
  FRUGAL_CHECK_THROWS_WITH(frugal::covariance_finalize(frugal::cuda, s, frugal::matrix_view<float>(c.data(), 8, 8)),
                           "no tokens accumulated (count=0)");
}

TEST_CASE_TEMPLATE("cuda larosa_rotation: same eigenvalues and leading eigenvectors as the CPU", T, float, double) {
  FRUGAL_REQUIRE_GPU();
  const std::int64_t d = 96, tokens = 3000;
  // correlated activations with a decaying spectrum
  const auto mix = rotation_test::random_orthogonal(static_cast<int>(d), 4);
  auto z = frugal_test::random_vector<double>(static_cast<std::size_t>(tokens * d), 6);
  std::vector<T> x(static_cast<std::size_t>(tokens * d));
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t j = 0; j < d; ++j) {
      double acc = 0;
      for (std::int64_t k = 0; k < d; ++k)
        acc += z[static_cast<std::size_t>(t * d + k)] * std::exp(-k / 8.0) * mix[static_cast<std::size_t>(k * d + j)];
      x[static_cast<std::size_t>(t * d + j)] = static_cast<T>(acc);
    }
  frugal::larosa_calibration cal(1, d);
  cal.add<T>(frugal::cpu, 0, frugal::matrix_view<const T>(x.data(), tokens, d));
  std::vector<T> qc(static_cast<std::size_t>(d * d)), lc(static_cast<std::size_t>(d));
  cal.rotation(frugal::cpu, 0, frugal::matrix_view<T>(qc.data(), d, d), lc.data());

  device_buffer<T> dx(x), dq(static_cast<std::size_t>(d * d)), dl(static_cast<std::size_t>(d));
  device_buffer<std::byte> m(frugal::covariance_state_bytes(d, false));
  auto s = frugal::covariance_state_on(m.data(), m.size(), d, false);
  frugal::covariance_reset(frugal::cuda, s);
  frugal::covariance_accumulate<T>(frugal::cuda, frugal::matrix_view<const T>(dx.data(), tokens, d), s);
  device_buffer<std::byte> ws(frugal::larosa_rotation_workspace_bytes<T>(frugal::cuda, d));
  frugal::larosa_rotation<T>(frugal::cuda, s, frugal::matrix_view<T>(dq.data(), d, d), dl.data(),
                             frugal::workspace{ws.data(), ws.size()});
  const auto qg = dq.download();
  const auto lg = dl.download();
  const double tol = 100 * d * frugal::dtype_traits<T>::eps;
  for (std::int64_t i = 0; i < d; ++i)
    CHECK(static_cast<double>(lg[static_cast<std::size_t>(i)]) ==
          doctest::Approx(static_cast<double>(lc[static_cast<std::size_t>(i)])).epsilon(tol));
  for (std::int64_t k = 0; k < 8; ++k) {  // well separated leading eigenvalues: same vector up to sign
    double dot = 0;
    for (std::int64_t r = 0; r < d; ++r)
      dot += static_cast<double>(qg[static_cast<std::size_t>(r * d + k)]) *
             static_cast<double>(qc[static_cast<std::size_t>(r * d + k)]);
    CHECK(std::fabs(dot) == doctest::Approx(1.0).epsilon(1e-3));
  }
}
