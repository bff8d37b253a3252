// gemv on the CPU: every input form against the dense reference on the masked input, for f32, f64, f16, bf16;
// fused top-k against explicit top-k + sparse_gemv; threads; conversions; layout helper; every documented error.
#include <cstring>
#include <limits>

#include <frugal/gemv/gemv.hpp>

#include "common/test_util.hpp"
#include "gemv/gemv_cases.hpp"

using frugal::bfloat16;
using frugal::half;
using namespace gemv_test;

namespace {

template <class T>
int run_cpu(const spec& s, frugal::cpu_t tag = frugal::cpu) {
  const auto c = make_case<T>(s);
  std::vector<T> y = c.y0;
  run_form(tag, c, c.x.data(), c.w.data(), c.bias.data(), y.data(), c.idx.data(), c.val.data(), c.nnz.data(),
           c.t_rows.data());
  return compare(c, y, "cpu");
}

template <class T>
void grid_test(bool integer) {
  int bad = 0;
  for (const spec& s : shape_grid(integer)) bad += run_cpu<T>(s);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("gemv cpu: every form, exact on integer data (edge shapes, batch 1..17, bias, accumulate)", T, float,
                   double, half, bfloat16) {
  grid_test<T>(true);
}

TEST_CASE_TEMPLATE("gemv cpu: every form, continuous data within the error bound", T, float, double, half, bfloat16) {
  grid_test<T>(false);
}

// Batch 1 with few columns per thread takes the channel-split path (the kept channels are cut into equal counts,
// each thread sums its share into its own partial, added in thread order): exact on integer data for 1, 2 and 3
// threads, every form, with bias, accumulate and the fused prologue / epilogue; kept counts of 0, about 1, fewer than
// the threads, and all K (lists: 0, 1, 2 and K entries).
TEST_CASE_TEMPLATE("gemv cpu: batch 1, channel split across threads (kept channels), exact and equal for 1-3 threads",
                   T, float, double, half, bfloat16) {
  for (form f : all_forms) {
    spec s{.b = 1, .K = 1300, .N = 1000, .f = f, .bias = true, .accumulate = true, .integer = true, .seed = 21};
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      CHECK(run_cpu<T>(s, frugal::cpu.with_threads(threads)) == 0);
    }
  }
  for (double keep : {0.0, 0.0008, 0.0016, 1.0}) {
    for (form f : {form::masked, form::list_sorted}) {
      spec s{.b = 1, .K = 1300, .N = 1000, .f = f, .bias = true, .accumulate = true, .integer = true, .keep = keep,
             .seed = 23};
      for (int threads : {2, 3}) {
        CAPTURE(threads);
        CHECK(run_cpu<T>(s, frugal::cpu.with_threads(threads)) == 0);
      }
    }
  }
  for (form f : {form::dense, form::threshold_rows}) {
    spec s{.b = 1, .K = 1300, .N = 1000, .f = f, .bias = true, .integer = false, .seed = 22,
           .norm = frugal::gemv_norm::layernorm, .act = frugal::gemv_act::gelu_tanh};
    for (int threads : {1, 3}) {
      CAPTURE(threads);
      CHECK(run_cpu<T>(s, frugal::cpu.with_threads(threads)) == 0);
    }
  }
}

TEST_CASE_TEMPLATE("gemv cpu: nnz = 0, 1, K and all-zero / all-kept inputs", T, float, half, bfloat16) {
  for (std::int64_t K : {1, 9, 260}) {
    for (form f : {form::list_sorted, form::list_shuffled}) {
      spec s{.b = 8, .K = K, .N = 37, .f = f, .bias = true, .accumulate = false, .integer = true, .keep = -1.0};
      CHECK(run_cpu<T>(s) == 0);
    }
    for (double keep : {0.0, 1.0}) {
      spec s{
          .b = 3, .K = K, .N = 70, .f = form::masked, .bias = true, .accumulate = true, .integer = true, .keep = keep};
      CHECK(run_cpu<T>(s) == 0);
      s.f = form::list_sorted;
      CHECK(run_cpu<T>(s) == 0);
    }
  }
  // K = 0: y = bias (or y + bias).
  spec s{.b = 2, .K = 0, .N = 9, .f = form::dense, .bias = true, .accumulate = true, .integer = true};
  CHECK(run_cpu<T>(s) == 0);
  s.f = form::masked;
  CHECK(run_cpu<T>(s) == 0);
}

TEST_CASE_TEMPLATE("gemv cpu: results do not depend on the thread count", T, float, bfloat16) {
  spec s{.b = 3, .K = 700, .N = 3000, .f = form::threshold_rows, .bias = true, .integer = false};
  const auto c = make_case<T>(s);
  std::vector<std::vector<T>> ys;
  for (int threads : {1, 2, 3, 7}) {
    std::vector<T> y = c.y0;
    run_form<frugal::cpu_t, T>(frugal::cpu.with_threads(threads), c, c.x.data(), c.w.data(), c.bias.data(), y.data(),
                               nullptr, nullptr, nullptr, c.t_rows.data());
    CHECK(compare(c, y, "threads") == 0);
    ys.push_back(y);
  }
  for (auto& y : ys) CHECK(std::memcmp(y.data(), ys[0].data(), y.size() * sizeof(T)) == 0);
}

TEST_CASE_TEMPLATE("gemv cpu: 16-bit weight conversion is exact for every bit pattern", T, half, bfloat16) {
  // y = 1 · w for K = 1: each output must equal its weight (NaN stays NaN).
  const std::int64_t N = 65536;
  std::vector<T> w(N), y(N);
  for (std::int64_t n = 0; n < N; ++n) w[n] = T::from_bits(static_cast<std::uint16_t>(n));
  const T one = frugal::from_float<T>(1.f);
  frugal::gemv(frugal::cpu, frugal::matrix_view<const T>(&one, 1, 1), frugal::matrix_view<const T>(w.data(), 1, N),
               nullptr, frugal::matrix_view<T>(y.data(), 1, N));
  int bad = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    const float a = frugal::to_float(w[n]), b = frugal::to_float(y[n]);
    if (std::isnan(a) ? !std::isnan(b) : (y[n].bits != w[n].bits && !(a == 0 && b == 0))) ++bad;
  }
  CHECK(bad == 0);
}

TEST_CASE_TEMPLATE("gemv cpu: fused top-k equals explicit top-k + sparse_gemv", T, float, double, half, bfloat16) {
  for (std::int64_t b : {1, 4, 17}) {
    for (int k : {1, 37, 500, 1000}) {
      const std::int64_t K = 1000, N = 131;
      spec s{.b = b, .K = K, .N = N, .f = form::dense, .bias = true, .integer = false, .seed = 5};
      auto c = make_case<T>(s);
      // Continuous inputs without ties in any dtype: per row a random permutation of K distinct magnitudes, the
      // consecutive bf16 numbers from 2^-7 up (exact in f16, f32, f64 too), with random signs.
      std::mt19937_64 rng(11 + b);
      for (std::int64_t r = 0; r < b; ++r) {
        std::vector<int> order(K);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
        for (std::int64_t j = 0; j < K; ++j) {
          const float mag = static_cast<float>(bfloat16::from_bits(static_cast<std::uint16_t>(0x3c00 + j)));
          c.x[r * c.ldx + order[j]] = frugal::from_float<T>((rng() & 1) ? mag : -mag);
        }
      }
      // Explicit top-k: the k largest |x| per row.
      std::vector<std::int32_t> idx(b * K), nnz(b);
      std::vector<T> val(b * K);
      bool tie = false;
      for (std::int64_t r = 0; r < b; ++r) {
        std::vector<std::int32_t> ord(K);
        std::iota(ord.begin(), ord.end(), 0);
        auto mag = [&](std::int32_t i) { return std::fabs(static_cast<float>(as_double(c.x[r * c.ldx + i]))); };
        std::sort(ord.begin(), ord.end(), [&](auto p, auto q) { return mag(p) > mag(q); });
        if (k < K && mag(ord[k - 1]) == mag(ord[k])) tie = true;
        nnz[r] = k;
        for (int j = 0; j < k; ++j) {
          idx[r * K + j] = ord[j];
          val[r * K + j] = c.x[r * c.ldx + ord[j]];
        }
      }
      REQUIRE(!tie);
      const frugal::matrix_view<const T> xv(c.x.data(), b, K, c.ldx), wv(c.w.data(), K, N, c.ldw);
      std::vector<T> y1(b * N), y2(b * N);
      std::vector<std::byte> ws(frugal::gemv_workspace_bytes<T>(frugal::cpu, b, K, N, k));
      frugal::sparse_gemv_topk(frugal::cpu, xv, k, wv, c.bias.data(), frugal::matrix_view<T>(y1.data(), b, N), {},
                               frugal::workspace{ws.data(), ws.size()});
      frugal::sparse_gemv(frugal::cpu, frugal::sparse_rows<T>{idx.data(), val.data(), nnz.data(), b, K, K}, wv,
                          c.bias.data(), frugal::matrix_view<T>(y2.data(), b, N));
      const double uT = frugal_test::unit_roundoff<T>();
      int bad = 0;
      for (std::int64_t i = 0; i < b * N; ++i) {
        const double a = as_double(y1[i]), e = as_double(y2[i]);
        if (std::fabs(a - e) > 2.02 * uT * std::fabs(e) + 64 * 1.2e-7 * 50 + 1e-30) ++bad;
      }
      INFO("b=", b, " k=", k);
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("gemv cpu: top-k with k = 0 gives the bias, k = K the dense product") {
  spec s{.b = 2, .K = 33, .N = 17, .f = form::dense, .bias = true, .integer = true};
  const auto c = make_case<float>(s);
  const frugal::matrix_view<const float> xv(c.x.data(), 2, 33, c.ldx), wv(c.w.data(), 33, 17, c.ldw);
  std::vector<float> y(2 * 17), yd(2 * 17);
  std::vector<std::byte> ws(frugal::gemv_workspace_bytes<float>(frugal::cpu, 2, 33, 17, 33));
  frugal::sparse_gemv_topk(frugal::cpu, xv, 0, wv, c.bias.data(), frugal::matrix_view<float>(y.data(), 2, 17));
  for (int r = 0; r < 2; ++r)
    for (int n = 0; n < 17; ++n) CHECK(y[r * 17 + n] == c.bias[n]);
  frugal::sparse_gemv_topk(frugal::cpu, xv, 33, wv, c.bias.data(), frugal::matrix_view<float>(y.data(), 2, 17), {},
                           frugal::workspace{ws.data(), ws.size()});
  frugal::gemv(frugal::cpu, xv, wv, c.bias.data(), frugal::matrix_view<float>(yd.data(), 2, 17));
  CHECK(y == yd);
}

TEST_CASE_TEMPLATE("to_channel_major: transposes [N, K] into [K, N], also into column slices", T, float, bfloat16) {
  const std::int64_t N = 37, K = 45;
  auto w = frugal_test::random_vector<T>(N * K, 3);
  std::vector<T> out(K * (N + 10), frugal::from_float<T>(9.f));
  frugal::to_channel_major(frugal::matrix_view<const T>(w.data(), N, K),
                           frugal::matrix_view<T>(out.data() + 5, K, N, N + 10));
  for (std::int64_t k = 0; k < K; ++k) {
    for (std::int64_t n = 0; n < N; ++n) CHECK(std::memcmp(&out[k * (N + 10) + 5 + n], &w[n * K + k], sizeof(T)) == 0);
    CHECK(frugal::to_float(out[k * (N + 10)]) == 9.f);
  }
  FRUGAL_CHECK_THROWS_WITH(
      frugal::to_channel_major(frugal::matrix_view<const T>(w.data(), N, K), frugal::matrix_view<T>(out.data(), N, K)),
      "frugal::to_channel_major: out has shape [37, 45] but w_row_major [N, K] = [37, 45] "
      "needs [K, N] = [45, 37]");
}

TEST_CASE("gemv cpu: bad input throws frugal::error naming the values, before writing") {
  const std::int64_t b = 2, K = 8, N = 5;
  std::vector<float> x(b * K, 1.f), w(K * N, 1.f), y(b * N, 42.f), bias(N, 0.f);
  const frugal::matrix_view<const float> xv(x.data(), b, K), wv(w.data(), K, N);
  const frugal::matrix_view<float> yv(y.data(), b, N);
  using frugal::matrix_view;
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cpu, matrix_view<const float>(x.data(), b, K - 1), wv, nullptr, yv),
                           "frugal::gemv: x has K=7 input channels but w has 8 rows");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cpu, xv, wv, nullptr, matrix_view<float>(y.data(), b - 1, N)),
                           "frugal::gemv: y has 1 rows but the input has b=2");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cpu, xv, wv, nullptr, matrix_view<float>(y.data(), b, N - 1)),
                           "frugal::gemv: y has 4 columns but w has N=5");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cpu, xv, matrix_view<const float>(w.data(), K, N, N - 1), nullptr, yv),
                           "frugal::gemv: w row stride (=4) must be >= cols (=5)");
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv_masked(frugal::cpu, xv, wv, nullptr, matrix_view<float>(x.data(), b, N)),
                           "frugal::sparse_gemv_masked: y overlaps x");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cpu, xv, wv, nullptr, matrix_view<float>(w.data() + 3, b, N)),
                           "frugal::gemv: y overlaps w");
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv_topk(frugal::cpu, xv, 9, wv, nullptr, yv),
                           "frugal::sparse_gemv_topk: k (=9) must be in [0, K=8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv_topk(frugal::cpu, xv, 3, wv, nullptr, yv),
                           "frugal::sparse_gemv_topk: workspace is null but");
  std::vector<std::int32_t> idx = {0, 3, 5, 1, 2, 2}, nnz = {3, 3};
  std::vector<float> val(6, 1.f);
  auto rows = [&] { return frugal::sparse_rows<float>{idx.data(), val.data(), nnz.data(), b, 3, 3}; };
  frugal::sparse_gemv(frugal::cpu, rows(), wv, nullptr, yv);  // duplicates are summed when unchecked
  CHECK(y[N] == 3.f);
  std::fill(y.begin(), y.end(), 42.f);
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv(frugal::cpu, rows(), wv, nullptr, yv, {.checked = true}),
                           "frugal::sparse_gemv: index 2 appears twice in row 1 (entry 2)");
  idx[4] = 8;
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv(frugal::cpu, rows(), wv, nullptr, yv),
                           "frugal::sparse_gemv: index 8 at row 1, entry 1 is outside [0, K=8)");
  idx[4] = -1;
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv(frugal::cpu, rows(), wv, nullptr, yv),
                           "frugal::sparse_gemv: index -1 at row 1, entry 1 is outside [0, K=8)");
  idx[4] = 4;
  nnz[0] = 4;
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv(frugal::cpu, rows(), wv, nullptr, yv),
                           "frugal::sparse_gemv: nnz[0] (=4) must be in [0, min(cap=3, K=8)]");
  nnz[0] = -1;
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv(frugal::cpu, rows(), wv, nullptr, yv),
                           "frugal::sparse_gemv: nnz[0] (=-1) must be in [0, min(cap=3, K=8)]");
  std::vector<std::int32_t> big_idx(2 * 10, 0), big_nnz = {9, 0};
  std::vector<float> big_val(20, 1.f);
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv(frugal::cpu,
                          frugal::sparse_rows<float>{big_idx.data(), big_val.data(), big_nnz.data(), b, 10, 10}, wv,
                          nullptr, yv),
      "frugal::sparse_gemv: nnz[0] (=9) must be in [0, min(cap=10, K=8)]");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv(frugal::cpu, frugal::sparse_rows<float>{idx.data(), val.data(), nullptr, b, 3, 3}, wv,
                          nullptr, yv),
      "frugal::sparse_gemv: sparse x has 2 rows but nnz is null");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv(frugal::cpu, frugal::sparse_rows<float>{idx.data(), val.data(), nnz.data(), b, 3, 2}, wv,
                          nullptr, yv),
      "frugal::sparse_gemv: sparse x row stride (=2) must be >= cap (=3)");
  for (float v : y) CHECK(v == 42.f);  // nothing written by any failed call
}

TEST_CASE("gemv cpu: NaN inputs follow the sparsify keep rule; NaN thresholds are errors") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {0.1f, nan, -3.f, 0.f}, w(4 * 2, 1.f), y(2, 0.f);
  const frugal::matrix_view<const float> xv(x.data(), 1, 4), wv(w.data(), 4, 2);
  const frugal::matrix_view<float> yv(y.data(), 1, 2);
  frugal::sparse_gemv_threshold(frugal::cpu, xv, frugal::threshold{nullptr, 1.f}, wv, nullptr, yv);
  CHECK(std::isnan(y[0]));  // NaN kept (as frugal::threshold_mask keeps it)
  std::vector<float> x2 = {0.1f, 2.f, -3.f, 0.f};
  frugal::sparse_gemv_threshold(frugal::cpu, frugal::matrix_view<const float>(x2.data(), 1, 4),
                                frugal::threshold{nullptr, 1.f}, wv, nullptr, yv);
  CHECK(y[0] == -1.f);
  frugal::sparse_gemv_masked(frugal::cpu, xv, wv, nullptr, yv);
  CHECK(std::isnan(y[1]));
  std::vector<std::byte> ws(frugal::gemv_workspace_bytes<float>(frugal::cpu, 1, 4, 2, 1));
  frugal::sparse_gemv_topk(frugal::cpu, xv, 1, wv, nullptr, yv, {}, frugal::workspace{ws.data(), ws.size()});
  CHECK(std::isnan(y[0]));  // NaN ranks above everything
  y = {5.f, 5.f};
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv_threshold(frugal::cpu, xv, frugal::threshold{nullptr, nan}, wv, nullptr, yv),
      "frugal::sparse_gemv_threshold: threshold.all (=nan) must not be NaN");
  const float rows[1] = {nan};
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv_threshold(frugal::cpu, xv, frugal::threshold{rows, 0.f}, wv, nullptr, yv),
      "frugal::sparse_gemv_threshold: threshold.per_row[0] (=nan) must not be NaN");
  CHECK(y[0] == 5.f);
}

// ---------------------------------------------------------------------------------------------------------------
// Fused norm prologue (layernorm / rmsnorm over the K channels of each row) and activation epilogue (tanh GELU).
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("gemv cpu: fused norm x activation x form against the f64 reference (batch 1..17)", T, float, double,
                   half, bfloat16) {
  int bad = 0;
  for (const spec& s : fused_grid()) bad += run_cpu<T>(s);
  CHECK(bad == 0);
}

TEST_CASE_TEMPLATE("gemv cpu: fused top-k with the rmsnorm prologue ranks raw |x| and multiplies by rstd", T, float,
                   double, half, bfloat16) {
  for (std::int64_t b : {1, 3, 17})
    for (int k : {0, 1, 250, 1000})
      for (auto act : {frugal::gemv_act::none, frugal::gemv_act::gelu_tanh})
        for (auto nm : {frugal::gemv_norm::none, frugal::gemv_norm::rmsnorm}) {
          spec s{.b = b,
                 .K = 1000,
                 .N = 77,
                 .bias = true,
                 .accumulate = b == 3,
                 .integer = false,
                 .seed = 41,
                 .norm = nm,
                 .act = act};
          const auto c = make_topk_case<T>(s, k);
          std::vector<T> y = c.y0;
          std::vector<std::byte> ws(frugal::gemv_workspace_bytes<T>(frugal::cpu, b, s.K, s.N, k));
          frugal::gemv_options o{.accumulate = s.accumulate, .norm = nm, .act = act};
          frugal::sparse_gemv_topk(frugal::cpu, frugal::matrix_view<const T>(c.x.data(), b, s.K, c.ldx), k,
                                   frugal::matrix_view<const T>(c.w.data(), s.K, s.N, c.ldw), c.bias.data(),
                                   frugal::matrix_view<T>(y.data(), b, s.N, c.ldy), o,
                                   frugal::workspace{ws.data(), ws.size()});
          INFO("k=", k);
          CHECK(compare(c, y, "cpu topk fused") == 0);
        }
}

TEST_CASE("gemv cpu: fused layernorm + gelu on a GPT-2-like row with a large mean and an outlier channel") {
  // One 768-wide row: mean 40, a few channels at +-2000 (GPT-2's residual stream has such outliers).
  const std::int64_t K = 768, N = 64;
  spec s{.b = 1,
         .K = K,
         .N = N,
         .f = form::dense,
         .bias = true,
         .integer = false,
         .seed = 77,
         .norm = frugal::gemv_norm::layernorm,
         .act = frugal::gemv_act::gelu_tanh};
  auto c = make_case<float>(s);
  std::mt19937_64 rng(5);
  std::normal_distribution<float> d(40.f, 1.f);
  for (std::int64_t k = 0; k < K; ++k) c.x[k] = d(rng);
  c.x[3] = 2000.f, c.x[447] = -1800.f;
  double m = 0, q = 0;
  for (std::int64_t k = 0; k < K; ++k) m += c.x[k];
  m /= K;
  for (std::int64_t k = 0; k < K; ++k) q += (c.x[k] - m) * (c.x[k] - m);
  c.mean[0] = m;
  c.rstd[0] = 1 / std::sqrt(q / K + 1e-5);
  std::vector<double> xm(K);
  for (std::int64_t k = 0; k < K; ++k) xm[k] = (c.x[k] - m) * c.rstd[0];
  set_reference(c, xm);
  std::vector<float> y = c.y0;
  run_form<frugal::cpu_t, float>(frugal::cpu, c, c.x.data(), c.w.data(), c.bias.data(), y.data(), nullptr, nullptr,
                                 nullptr, nullptr);
  CHECK(compare(c, y, "cpu outlier row") == 0);
}

TEST_CASE("gemv cpu: fused options that do not fit the form throw frugal::error, before writing") {
  const std::int64_t b = 2, K = 8, N = 5;
  std::vector<float> x(b * K, 1.f), w(K * N, 1.f), y(b * N, 42.f);
  const frugal::matrix_view<const float> xv(x.data(), b, K), wv(w.data(), K, N);
  const frugal::matrix_view<float> yv(y.data(), b, N);
  using frugal::gemv_act;
  using frugal::gemv_norm;
  std::vector<std::int32_t> idx = {0, 3, 5, 1, 2, 4}, nnz = {3, 3};
  std::vector<float> val(6, 1.f);
  const frugal::sparse_rows<float> rows{idx.data(), val.data(), nnz.data(), b, 3, 3};
  std::vector<std::byte> ws(frugal::gemv_workspace_bytes<float>(frugal::cpu, b, K, N, 3));
  const frugal::workspace wsp{ws.data(), ws.size()};
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv(frugal::cpu, rows, wv, nullptr, yv, {.norm = gemv_norm::rmsnorm}),
                           "frugal::sparse_gemv: options.norm = rmsnorm is not supported for explicit lists");
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv(frugal::cpu, rows, wv, nullptr, yv, {.norm = gemv_norm::layernorm}),
                           "frugal::sparse_gemv: options.norm = layernorm is not supported for explicit lists");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv_topk(frugal::cpu, xv, 3, wv, nullptr, yv, {.norm = gemv_norm::layernorm}, wsp),
      "frugal::sparse_gemv_topk: options.norm = layernorm is not supported for top-k selection (only rmsnorm");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv_masked(frugal::cpu, xv, wv, nullptr, yv, {.norm = gemv_norm::layernorm}),
      "frugal::sparse_gemv_masked: options.norm = layernorm is not supported for the masked form (only rmsnorm");
  for (float eps : {0.f, -1e-5f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    const std::string what = "frugal::gemv: options.eps (=" + frugal::detail::concat(eps) +
                             ") must be finite and > 0 with options.norm = layernorm";
    FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cpu, xv, wv, nullptr, yv, {.norm = gemv_norm::layernorm, .eps = eps}),
                             what.c_str());
  }
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv_threshold(frugal::cpu, xv, frugal::threshold{nullptr, 1.f}, wv, nullptr, yv,
                                    {.norm = gemv_norm::rmsnorm, .eps = 0.f}),
      "frugal::sparse_gemv_threshold: options.eps (=0) must be finite and > 0 with options.norm = rmsnorm");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cpu, xv, wv, nullptr, yv, {.norm = static_cast<gemv_norm>(3)}),
                           "frugal::gemv: options.norm (=3) is not a gemv_norm value");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cpu, xv, wv, nullptr, yv, {.act = static_cast<gemv_act>(-1)}),
                           "frugal::gemv: options.act (=-1) is not a gemv_act value");
  FRUGAL_CHECK_THROWS_WITH(frugal::sparse_gemv(frugal::cpu, rows, wv, nullptr, yv, {.act = static_cast<gemv_act>(2)}),
                           "frugal::sparse_gemv: options.act (=2) is not a gemv_act value");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cpu, xv, wv, nullptr, yv, {.weights_ahead = 2}),
                           "frugal::gemv: options.weights_ahead (=2) must be -1 (automatic), 0 or 1");
  for (float v : y) CHECK(v == 42.f);  // nothing written by any failed call
  // Allowed: lists with the activation; eps is not looked at without a norm.
  frugal::sparse_gemv(frugal::cpu, rows, wv, nullptr, yv, {.act = gemv_act::gelu_tanh});
  CHECK(y[0] == doctest::Approx(gelu_ref(3.0)).epsilon(1e-6));
  frugal::gemv(frugal::cpu, xv, wv, nullptr, yv, {.eps = -1.f});
  CHECK(y[0] == 8.f);
}

TEST_CASE("gemv cpu: top-k with k = 0 and the fused epilogue gives act(bias), also with rmsnorm") {
  std::vector<float> x = {1.f, -2.f, 3.f}, w(3 * 4, 1.f), bias = {-1.f, 0.f, 0.5f, 2.f}, y(4, 9.f);
  frugal::sparse_gemv_topk(frugal::cpu, frugal::matrix_view<const float>(x.data(), 1, 3), 0,
                           frugal::matrix_view<const float>(w.data(), 3, 4), bias.data(),
                           frugal::matrix_view<float>(y.data(), 1, 4),
                           {.norm = frugal::gemv_norm::rmsnorm, .act = frugal::gemv_act::gelu_tanh});
  for (int n = 0; n < 4; ++n) CHECK(y[n] == doctest::Approx(gelu_ref(bias[n])).epsilon(1e-6));
}
