// CPU top-k (frugal/sparsify/topk.hpp): the reference implementation against a full-sort oracle, every dtype,
// adversarial inputs, strided rows, threads, and every documented error.
#include <frugal/sparsify/topk.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/test_util.hpp"
#include "sparsify/topk_oracle.hpp"

using frugal::matrix_view;
using namespace frugal_test;

namespace {

struct shape {
  std::int64_t rows, n, ld;
};

// Shapes: n = 1, odd sizes, one digit's worth, the LLM widths, a row larger than 2^15.
const shape shapes[] = {{1, 1, 1},     {3, 7, 9},      {2, 33, 33},   {4, 100, 128},
                        {2, 768, 768}, {3, 4097, 4100}, {1, 40000, 40000}};

std::vector<int> ks_for(std::int64_t n) {
  std::vector<int> ks = {1, static_cast<int>(n)};
  if (n > 2) ks.push_back(static_cast<int>(n / 2));
  if (n > 7) ks.push_back(static_cast<int>(n - 3));
  if (n > 40) ks.push_back(static_cast<int>(n / 10));
  return ks;
}

template <class T>
void check_all_ops(const std::vector<T>& x, const shape& s, int k, frugal::cpu_t tag, const char* what) {
  INFO(what, " rows=", s.rows, " n=", s.n, " ld=", s.ld, " k=", k, " dtype=", frugal::dtype_traits<T>::name);
  matrix_view<const T> xv(x.data(), s.rows, s.n, s.ld);
  // topk
  const std::int64_t kld = k + 2;  // strided outputs too
  std::vector<std::int32_t> idx(static_cast<std::size_t>(s.rows * kld), -1);
  std::vector<T> val(static_cast<std::size_t>(s.rows * kld));
  frugal::topk(tag, xv, k, matrix_view<std::int32_t>(idx.data(), s.rows, k, kld),
               matrix_view<T>(val.data(), s.rows, k, kld));
  // mask, out of place and in place
  std::vector<T> y(x.size(), make<T>(5.0)), yin = x;
  frugal::topk_mask(tag, xv, k, matrix_view<T>(y.data(), s.rows, s.n, s.ld));
  frugal::topk_mask(tag, matrix_view<const T>(yin.data(), s.rows, s.n, s.ld), k,
                    matrix_view<T>(yin.data(), s.rows, s.n, s.ld));
  // select
  std::vector<float> kth(static_cast<std::size_t>(s.rows));
  frugal::topk_select(tag, xv, k, kth.data());

  for (std::int64_t r = 0; r < s.rows; ++r) {
    const T* row = x.data() + r * s.ld;
    const auto want = oracle_topk(row, s.n, k);
    std::vector<char> kept(static_cast<std::size_t>(s.n), 0);
    for (int j = 0; j < k; ++j) {
      const std::int32_t i = idx[static_cast<std::size_t>(r * kld + j)];
      REQUIRE(i == want[static_cast<std::size_t>(j)]);
      REQUIRE(bits_of(val[static_cast<std::size_t>(r * kld + j)]) == bits_of(row[i]));
      kept[static_cast<std::size_t>(i)] = 1;
    }
    for (std::int64_t i = 0; i < s.n; ++i) {
      const auto expect = kept[static_cast<std::size_t>(i)] ? bits_of(row[i]) : std::uint64_t{0};
      REQUIRE(bits_of(y[static_cast<std::size_t>(r * s.ld + i)]) == expect);
      REQUIRE(bits_of(yin[static_cast<std::size_t>(r * s.ld + i)]) == expect);
    }
    for (std::int64_t i = s.n; i < s.ld; ++i)  // padding untouched
      REQUIRE(bits_of(y[static_cast<std::size_t>(r * s.ld + i)]) == bits_of(make<T>(5.0)));
    const float want_kth = oracle_kth(row, s.n, k);
    const float got = kth[static_cast<std::size_t>(r)];
    if (std::isnan(want_kth)) {
      REQUIRE(std::isnan(got));
    } else {
      REQUIRE(got == want_kth);
      // The documented consumer rule keeps the top-k set (and possibly more ties).
      std::int64_t ge = 0;
      for (std::int64_t i = 0; i < s.n; ++i) {
        const bool rule = is_nan(row[i]) || magnitude(row[i]) >= static_cast<double>(got);
        if (kept[static_cast<std::size_t>(i)]) REQUIRE(rule);
        ge += rule;
      }
      REQUIRE(ge >= k);
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE("topk cpu: matches the full-sort oracle on every input class and shape", T, float, double,
                   frugal::half, frugal::bfloat16) {
  std::uint64_t seed = 1;
  for (const auto& s : shapes) {
    for (const auto kind : all_kinds) {
      if (s.n > 5000 && kind != input_kind::random && kind != input_kind::many_ties) continue;  // keep it quick
      const auto x = make_input<T>(kind, s.rows, s.n, s.ld, seed++);
      for (int k : ks_for(s.n)) check_all_ops(x, s, k, frugal::cpu, kind_name(kind));
    }
  }
}

TEST_CASE_TEMPLATE("topk cpu: many rows over several threads equal one thread", T, float, frugal::half) {
  const shape s{300, 1500, 1501};
  const auto x = make_input<T>(input_kind::random, s.rows, s.n, s.ld, 99);
  const int k = 700;
  matrix_view<const T> xv(x.data(), s.rows, s.n, s.ld);
  std::vector<std::int32_t> i1(s.rows * k), i4(s.rows * k);
  std::vector<T> v1(s.rows * k), v4(s.rows * k);
  frugal::topk(frugal::cpu.with_threads(1), xv, k, matrix_view<std::int32_t>(i1.data(), s.rows, k),
               matrix_view<T>(v1.data(), s.rows, k));
  frugal::topk(frugal::cpu.with_threads(4), xv, k, matrix_view<std::int32_t>(i4.data(), s.rows, k),
               matrix_view<T>(v4.data(), s.rows, k));
  CHECK(i1 == i4);
  check_all_ops(x, s, k, frugal::cpu.with_threads(3), "threads");
}

TEST_CASE("topk cpu: documented tie, NaN, Inf and signed-zero rules") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {-0.f, 2.f, -inf, nan, 2.f, -2.f, inf, 0.f, -nan, 1.f};
  matrix_view<const float> xv(x.data(), 1, 10);
  std::vector<std::int32_t> idx(6);
  std::vector<float> val(6);
  // NaN (3, 8) > Inf (2, 6) > 2 (1, 4, 5: the lower indices win the last seat)
  frugal::topk(frugal::cpu, xv, 6, matrix_view<std::int32_t>(idx.data(), 1, 6), matrix_view<float>(val.data(), 1, 6));
  CHECK(idx == std::vector<std::int32_t>{1, 2, 3, 4, 6, 8});
  CHECK(std::signbit(val[1]));  // -Inf copied as is
  float kth = 0;
  frugal::topk_select(frugal::cpu, xv, 6, &kth);
  CHECK(kth == 2.f);
  frugal::topk_select(frugal::cpu, xv, 2, &kth);
  CHECK(std::isnan(kth));
  frugal::topk_select(frugal::cpu, xv, 10, &kth);
  CHECK(kth == 0.f);  // -0 and +0 rank equal; the k-th is a zero
  // Mask writes +0 (not -0) where it drops.
  std::vector<float> y(10);
  frugal::topk_mask(frugal::cpu, xv, 8, matrix_view<float>(y.data(), 1, 10));  // drops the two zeros
  CHECK(frugal_test::bits_of(y[0]) == 0u);
  CHECK(frugal_test::bits_of(y[7]) == 0u);
  CHECK(y[9] == 1.f);
  frugal::topk_mask(frugal::cpu, xv, 9, matrix_view<float>(y.data(), 1, 10));  // keeps -0 (index 0), drops +0
  CHECK(frugal_test::bits_of(y[0]) == frugal_test::bits_of(-0.f));
  CHECK(frugal_test::bits_of(y[7]) == 0u);
}

TEST_CASE_TEMPLATE("threshold_mask cpu: keeps isnan(x) || |x| >= t, per row or for all, with counts", T, float,
                   double, frugal::half, frugal::bfloat16) {
  const shape s{5, 300, 301};
  for (const auto kind : all_kinds) {
    const auto x = make_input<T>(kind, s.rows, s.n, s.ld, 7);
    const std::vector<float> per = {0.f, 0.5f, 1.f, std::numeric_limits<float>::infinity(), -1.f};
    for (int mode = 0; mode < 3; ++mode) {
      INFO("kind=", kind_name(kind), " mode=", mode);
      frugal::threshold t;
      if (mode == 0) t.per_row = per.data();
      else t.all = mode == 1 ? 0.75f : 1e-40f;
      std::vector<T> y(x.size(), make<T>(3.0)), yin = x;
      std::vector<std::int32_t> counts(s.rows, -1);
      matrix_view<const T> xv(x.data(), s.rows, s.n, s.ld);
      frugal::threshold_mask(frugal::cpu, xv, t, matrix_view<T>(y.data(), s.rows, s.n, s.ld), counts.data());
      frugal::threshold_mask(frugal::cpu, matrix_view<const T>(yin.data(), s.rows, s.n, s.ld), t,
                             matrix_view<T>(yin.data(), s.rows, s.n, s.ld), nullptr);
      for (std::int64_t r = 0; r < s.rows; ++r) {
        const double th = t.per_row ? t.per_row[r] : t.all;
        std::int32_t c = 0;
        for (std::int64_t i = 0; i < s.n; ++i) {
          const T v = x[static_cast<std::size_t>(r * s.ld + i)];
          const bool keep = is_nan(v) || magnitude(v) >= th;
          c += keep;
          const auto expect = keep ? bits_of(v) : std::uint64_t{0};
          REQUIRE(bits_of(y[static_cast<std::size_t>(r * s.ld + i)]) == expect);
          REQUIRE(bits_of(yin[static_cast<std::size_t>(r * s.ld + i)]) == expect);
        }
        REQUIRE(counts[static_cast<std::size_t>(r)] == c);
      }
    }
  }
}

TEST_CASE("topk cpu: mutable views, explicit dtype and the workspace query") {
  std::vector<float> x = {3.f, -1.f, 4.f, -1.5f};
  matrix_view<float> xv(x.data(), 1, 4);  // not const: converts
  float kth = 0;
  frugal::topk_select(frugal::cpu, xv, 2, &kth);
  CHECK(kth == 3.f);
  frugal::topk_select<float>(frugal::cpu, xv, 1, &kth);
  CHECK(kth == 4.f);
  std::vector<std::int32_t> idx(2);
  std::vector<float> val(2);
  frugal::topk(frugal::cpu, xv, 2, matrix_view<std::int32_t>(idx.data(), 1, 2), matrix_view<float>(val.data(), 1, 2));
  CHECK(idx == std::vector<std::int32_t>{0, 2});
  frugal::topk_mask(frugal::cpu, xv, 2, xv);  // in place
  CHECK(x == std::vector<float>{3.f, 0.f, 4.f, 0.f});
  CHECK(frugal::topk_workspace_bytes<float>(frugal::cpu, 256, 4096, 2048) == 0);
  CHECK(frugal::topk_workspace_bytes<frugal::half>(frugal::cuda, 256, 4096, 2048) == 0);
  // rows == 0 is a no-op
  frugal::topk(frugal::cpu, matrix_view<const float>(nullptr, 0, 4), 2, matrix_view<std::int32_t>(nullptr, 0, 2),
               matrix_view<float>(nullptr, 0, 2));
}

TEST_CASE("topk cpu: bad input throws frugal::error naming the values, and writes nothing") {
  std::vector<float> x(4 * 8, 1.f), y(4 * 8, 9.f), val(4 * 3, 9.f);
  std::vector<std::int32_t> idx(4 * 3, 9);
  matrix_view<const float> xv(x.data(), 4, 8);
  matrix_view<std::int32_t> iv(idx.data(), 4, 3);
  matrix_view<float> vv(val.data(), 4, 3), yv(y.data(), 4, 8);
  float kth[4] = {9, 9, 9, 9};
  const auto cpu = frugal::cpu;

  FRUGAL_CHECK_THROWS_WITH(frugal::topk(cpu, xv, 0, iv, vv), "frugal::topk: k (=0) must be in [1, n=8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(cpu, xv, 9, iv, vv), "k (=9) must be in [1, n=8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk_mask(cpu, xv, -1, yv), "frugal::topk_mask: k (=-1) must be in [1, n=8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk_select(cpu, xv, 5000, kth), "frugal::topk_select: k (=5000) must be in [1, n=8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(cpu, matrix_view<const float>(nullptr, 4, 8), 3, iv, vv),
                           "x is null but has shape [4, 8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(cpu, xv, 3, matrix_view<std::int32_t>(nullptr, 4, 3), vv),
                           "indices is null but has shape [4, 3]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk_select(cpu, xv, 3, nullptr), "kth_abs is null but x has 4 rows");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(cpu, xv, 2, iv, vv),
                           "indices has shape [4, 3] but must be [rows, k] = [4, 2]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(cpu, xv, 3, iv, matrix_view<float>(val.data(), 3, 3)),
                           "values has shape [3, 3] but must be [rows, k] = [4, 3]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk_mask(cpu, xv, 3, matrix_view<float>(y.data(), 4, 7)),
                           "y has shape [4, 7] but must be [rows, n] = [4, 8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(cpu, matrix_view<const float>(x.data(), 4, 8, 6), 3, iv, vv),
                           "x row stride (=6) must be >= cols (=8)");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk_mask(cpu, xv, 3, matrix_view<float>(x.data() + 1, 4, 8)),
                           "y overlaps x without being x");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk_mask(cpu, matrix_view<const float>(x.data(), 2, 8, 16), 3,
                                             matrix_view<float>(x.data(), 2, 8, 8)),
                           "in place (y.data == x.data) needs y.ld (=8) == x.ld (=16)");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(cpu, xv, 3, iv, matrix_view<float>(x.data(), 4, 3)), "values overlaps x");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::threshold_mask(cpu, xv, frugal::threshold{nullptr, std::numeric_limits<float>::quiet_NaN()}, yv, nullptr),
      "frugal::threshold_mask: threshold.all (=nan) must not be NaN");
  const float per[4] = {0.f, 1.f, std::numeric_limits<float>::quiet_NaN(), 2.f};
  FRUGAL_CHECK_THROWS_WITH(frugal::threshold_mask(cpu, xv, frugal::threshold{per, 0.f}, yv, nullptr),
                           "threshold.per_row[2] (=nan) must not be NaN");
  FRUGAL_CHECK_THROWS_WITH(frugal::threshold_mask(cpu, xv, frugal::threshold{}, matrix_view<float>(y.data(), 3, 8),
                                                  nullptr),
                           "y has shape [3, 8] but must be [rows, n] = [4, 8]");
  // Nothing was written by any failing call.
  for (float v : y) CHECK(v == 9.f);
  for (float v : val) CHECK(v == 9.f);
  for (std::int32_t v : idx) CHECK(v == 9);
  for (float v : kth) CHECK(v == 9.f);
  for (float v : x) CHECK(v == 1.f);
}
