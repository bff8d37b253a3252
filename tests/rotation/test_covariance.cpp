// covariance on the CPU: streaming sums against a naive f64 reference for every input dtype and for dims/token
// counts that are not multiples of the tile/chunk, merge, centring, damping, f32/f64 output, errors.
#include <frugal/rotation/covariance.hpp>

#include <cmath>
#include <vector>

#include "common/test_util.hpp"

namespace {

//! Naive reference: H = XᵀX and s = Σx in f64 over the values as stored in T.
template <class T>
void reference(const std::vector<T>& x, std::int64_t tokens, std::int64_t d, std::vector<double>& h,
               std::vector<double>& s) {
  h.assign(static_cast<std::size_t>(d * d), 0.0);
  s.assign(static_cast<std::size_t>(d), 0.0);
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t i = 0; i < d; ++i) {
      const double xi = frugal::detail::to_double(x[static_cast<std::size_t>(t * d + i)]);
      s[static_cast<std::size_t>(i)] += xi;
      for (std::int64_t j = 0; j < d; ++j)
        h[static_cast<std::size_t>(i * d + j)] +=
            xi * frugal::detail::to_double(x[static_cast<std::size_t>(t * d + j)]);
    }
}

}  // namespace

TEST_CASE_TEMPLATE("covariance cpu: streaming sums equal the f64 reference", T, float, double, frugal::half,
                   frugal::bfloat16) {
  for (std::int64_t d : {1, 5, 64, 70, 130}) {
    for (std::int64_t tokens : {1, 255, 300}) {
      const auto x = frugal_test::random_vector<T>(static_cast<std::size_t>(tokens * d), 10 + d + tokens);
      frugal::covariance_accumulator acc(d, true);
      // three uneven batches
      const std::int64_t cut1 = tokens / 3, cut2 = tokens - tokens / 4;
      for (auto [t0, t1] : {std::pair<std::int64_t, std::int64_t>{0, cut1}, {cut1, cut2}, {cut2, tokens}})
        acc.add<T>(frugal::cpu, frugal::matrix_view<const T>(x.data() + t0 * d, t1 - t0, d));
      CHECK(acc.count() == tokens);
      std::vector<double> h, s;
      reference(x, tokens, d, h, s);
      for (std::int64_t i = 0; i < d; ++i) {
        CHECK(acc.state().sum[i] == doctest::Approx(s[static_cast<std::size_t>(i)]).epsilon(1e-12));
        for (std::int64_t j = i; j < d; ++j)
          REQUIRE(acc.state().xtx[i * d + j] == doctest::Approx(h[static_cast<std::size_t>(i * d + j)]).epsilon(1e-12));
      }
      // finalize: uncentred, centred, damped
      std::vector<double> cov(static_cast<std::size_t>(d * d));
      acc.finalize(frugal::cpu, frugal::matrix_view<double>(cov.data(), d, d));
      for (std::int64_t i = 0; i < d; ++i)
        for (std::int64_t j = 0; j < d; ++j)
          CHECK(cov[static_cast<std::size_t>(i * d + j)] ==
                doctest::Approx(h[static_cast<std::size_t>(i * d + j)] / tokens).epsilon(1e-12));
      acc.finalize(frugal::cpu, frugal::matrix_view<double>(cov.data(), d, d), frugal::covariance_options{true, 0.5});
      double tr = 0;
      for (std::int64_t i = 0; i < d; ++i)
        tr += (h[static_cast<std::size_t>(i * d + i)] -
               s[static_cast<std::size_t>(i)] * s[static_cast<std::size_t>(i)] / tokens) /
              tokens;
      for (std::int64_t i = 0; i < d; ++i)
        for (std::int64_t j = 0; j < d; ++j) {
          double e = (h[static_cast<std::size_t>(i * d + j)] -
                      s[static_cast<std::size_t>(i)] * s[static_cast<std::size_t>(j)] / tokens) /
                     tokens;
          if (i == j) e += 0.5 * tr / d;
          CHECK(cov[static_cast<std::size_t>(i * d + j)] == doctest::Approx(e).epsilon(1e-9).scale(1.0));
        }
    }
  }
}

TEST_CASE("covariance cpu: merging partial accumulators equals one pass; f32 output; threads") {
  const std::int64_t d = 96, tokens = 700;
  const auto x = frugal_test::random_vector<float>(static_cast<std::size_t>(tokens * d), 3);
  frugal::covariance_accumulator all(d), a(d), b(d);
  all.add<float>(frugal::cpu_t{3}, frugal::matrix_view<const float>(x.data(), tokens, d));
  a.add<float>(frugal::cpu_t{1}, frugal::matrix_view<const float>(x.data(), 400, d));
  b.add<float>(frugal::cpu, frugal::matrix_view<const float>(x.data() + 400 * d, tokens - 400, d));
  a.merge(frugal::cpu, b);
  CHECK(a.count() == tokens);
  std::vector<float> c1(static_cast<std::size_t>(d * d)), c2(static_cast<std::size_t>(d * d));
  all.finalize(frugal::cpu, frugal::matrix_view<float>(c1.data(), d, d), frugal::covariance_options{false, 0.01});
  a.finalize(frugal::cpu, frugal::matrix_view<float>(c2.data(), d, d), frugal::covariance_options{false, 0.01});
  for (std::size_t e = 0; e < c1.size(); ++e) CHECK(c1[e] == doctest::Approx(c2[e]).epsilon(1e-6));
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j)
      CHECK(c1[static_cast<std::size_t>(i * d + j)] == c1[static_cast<std::size_t>(j * d + i)]);
  // reset
  a.reset(frugal::cpu);
  CHECK(a.count() == 0);
  CHECK(a.state().xtx[5] == 0.0);
}

TEST_CASE("covariance cpu: caller-owned state and workspace; empty batches") {
  const std::int64_t d = 33;
  std::vector<std::byte> mem(frugal::covariance_state_bytes(d, false));
  auto st = frugal::covariance_state_on(mem.data(), mem.size(), d, false);
  CHECK(st.sum == nullptr);
  frugal::covariance_reset(frugal::cpu, st);
  std::vector<std::byte> ws(frugal::covariance_workspace_bytes(frugal::cpu, d));
  const auto x = frugal_test::random_vector<double>(static_cast<std::size_t>(10 * d), 5);
  frugal::covariance_accumulate<double>(frugal::cpu, frugal::matrix_view<const double>(x.data(), 0, d), st,
                                        frugal::workspace{ws.data(), ws.size()});
  CHECK(st.count == 0);
  frugal::covariance_accumulate<double>(frugal::cpu, frugal::matrix_view<const double>(x.data(), 10, d), st,
                                        frugal::workspace{ws.data(), ws.size()});
  CHECK(st.count == 10);
  double h00 = 0;
  for (int t = 0; t < 10; ++t) h00 += x[static_cast<std::size_t>(t * d)] * x[static_cast<std::size_t>(t * d)];
  CHECK(st.xtx[0] == doctest::Approx(h00).epsilon(1e-14));
}

TEST_CASE("covariance cpu: errors") {
  const std::int64_t d = 8;
  frugal::covariance_accumulator acc(d);
  std::vector<float> x(static_cast<std::size_t>(4 * 9)), cov(static_cast<std::size_t>(d * d));
  FRUGAL_CHECK_THROWS_WITH(acc.add<float>(frugal::cpu, frugal::matrix_view<const float>(x.data(), 4, 9)),
                           "frugal::covariance_accumulate: x has 9 columns but the state has dim=8");
  FRUGAL_CHECK_THROWS_WITH(acc.finalize(frugal::cpu, frugal::matrix_view<float>(cov.data(), d, d)),
                           "frugal::covariance_finalize: no tokens accumulated (count=0)");
  acc.add<float>(frugal::cpu, frugal::matrix_view<const float>(x.data(), 4, 8));
  FRUGAL_CHECK_THROWS_WITH(
      acc.finalize(frugal::cpu, frugal::matrix_view<float>(cov.data(), d, d), frugal::covariance_options{true, 0.0}),
      "centered=true needs a state that tracks the mean");
  FRUGAL_CHECK_THROWS_WITH(acc.finalize(frugal::cpu, frugal::matrix_view<float>(cov.data(), 4, 4)),
                           "cov has shape [4, 4] but must be [8, 8]");
  FRUGAL_CHECK_THROWS_WITH(
      acc.finalize(frugal::cpu, frugal::matrix_view<float>(cov.data(), d, d), frugal::covariance_options{false, -1.0}),
      "damping (=-1) must be >= 0");
  frugal::covariance_accumulator other(9);
  FRUGAL_CHECK_THROWS_WITH(acc.merge(frugal::cpu, other), "frugal::covariance_merge: dims differ: 8 vs 9");
  frugal::covariance_accumulator with_mean(8, true);
  FRUGAL_CHECK_THROWS_WITH(acc.merge(frugal::cpu, with_mean), "one state tracks the mean and the other does not");
  FRUGAL_CHECK_THROWS_WITH(frugal::covariance_accumulator(0), "frugal::covariance_accumulator: dim (=0) must be >= 1");
  std::vector<std::byte> small(8);
  FRUGAL_CHECK_THROWS_WITH(frugal::covariance_state_on(small.data(), small.size(), d, false),
                           "memory too small: 8 bytes given");
  auto st = acc.state();
  FRUGAL_CHECK_THROWS_WITH(
      frugal::covariance_accumulate<float>(frugal::cpu, frugal::matrix_view<const float>(x.data(), 4, 8), st,
                                           frugal::workspace{small.data(), small.size()}),
      "covariance_accumulate: workspace too small");
}
