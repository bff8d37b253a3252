// Core: dtype conversions (exhaustive against the compiler's _Float16), dispatch, errors, views, workspace, threads.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <frugal/frugal.hpp>

#include "common/test_util.hpp"

using frugal::bfloat16;
using frugal::half;

TEST_CASE("half: every bit pattern round-trips through float, and float->half matches _Float16") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const half h = half::from_bits(static_cast<std::uint16_t>(b));
    const float f = static_cast<float>(h);
    _Float16 ref;
    const std::uint16_t bits16 = static_cast<std::uint16_t>(b);
    std::memcpy(&ref, &bits16, 2);
    if (std::isnan(f)) {
      REQUIRE(std::isnan(static_cast<float>(ref)));
      REQUIRE(std::isnan(static_cast<float>(half(f))));
      continue;
    }
    REQUIRE(f == static_cast<float>(ref));
    REQUIRE(half(f).bits == b);  // exact values convert back exactly (incl. ±0, subnormals, ±Inf)
  }
  // Rounding: random floats across the whole range, plus midpoints between neighbouring halves.
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 2'000'000; ++i) {
    std::uint32_t u = bits(rng);
    if (i % 2) u = (u & 0x80000000u) | (0x30000000u + (u % 0x18000000u));  // concentrate near half's range
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    const _Float16 ref = static_cast<_Float16>(f);
    std::uint16_t rb;
    std::memcpy(&rb, &ref, 2);
    if (half(f).bits != rb) {
      INFO("f=", f, " bits=", u);
      REQUIRE(half(f).bits == rb);
    }
  }
  for (std::uint32_t b = 0; b < 0x7c00; ++b) {  // exact midpoints round to even
    const float lo = static_cast<float>(half::from_bits(static_cast<std::uint16_t>(b)));
    const float hi = static_cast<float>(half::from_bits(static_cast<std::uint16_t>(b + 1)));
    const float mid = lo + (hi - lo) / 2;
    const _Float16 ref = static_cast<_Float16>(mid);
    std::uint16_t rb;
    std::memcpy(&rb, &ref, 2);
    REQUIRE(half(mid).bits == rb);
  }
}

TEST_CASE("bfloat16: round to nearest even, NaN stays NaN, overflow to Inf") {
  CHECK(static_cast<float>(bfloat16(1.0f)) == 1.0f);
  CHECK(bfloat16(-0.0f).bits == 0x8000);
  CHECK(std::isnan(static_cast<float>(bfloat16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(static_cast<float>(bfloat16(std::numeric_limits<float>::max()))));
  CHECK(bfloat16(1.0f + 1.0f / 256).bits == bfloat16(1.0f).bits);        // tie -> even (1.0)
  CHECK(bfloat16(1.0f + 3.0f / 256).bits == bfloat16(1.0f).bits + 2);    // tie -> even (upper)
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 1'000'000; ++i) {
    const std::uint32_t u = bits(rng);
    float f;
    std::memcpy(&f, &u, 4);
    if (!std::isfinite(f)) continue;
    const bfloat16 c(f);
    if (!std::isfinite(static_cast<float>(c))) {  // overflow: only beyond the largest finite bf16 + half an ulp
      REQUIRE(std::abs(f) >= 3.3961775e38f);
      continue;
    }
    const double err = std::abs(static_cast<double>(static_cast<float>(c)) - f);
    for (int d : {-1, 1}) {  // no neighbour of the result is closer
      const float nb = static_cast<float>(bfloat16::from_bits(static_cast<std::uint16_t>(c.bits + d)));
      if (std::isfinite(nb)) REQUIRE(err <= std::abs(static_cast<double>(nb) - f));
    }
  }
}

TEST_CASE("dispatch_dtype and parse_dtype") {
  CHECK(frugal::dispatch_dtype(frugal::dtype::bf16, [](auto t) { return sizeof(typename decltype(t)::type); }) == 2);
  CHECK(frugal::dispatch_dtype(frugal::dtype::f64, [](auto t) { return sizeof(typename decltype(t)::type); }) == 8);
  CHECK(frugal::parse_dtype("half") == frugal::dtype::f16);
  FRUGAL_CHECK_THROWS_WITH(frugal::parse_dtype("int8"), "unknown dtype 'int8'; supported: f32, f64, f16, bf16");
  FRUGAL_CHECK_THROWS_WITH(frugal::dispatch_dtype(static_cast<frugal::dtype>(9), [](auto) { return 0; }),
                           "unsupported dtype value 9");
}

TEST_CASE("errors name the operation and values; views are validated") {
  const int k = 5000, n = 4096;
  auto check_k = [&] { FRUGAL_CHECK(k <= n, "topk", "k (=", k, ") must be in [1, n=", n, "]"); };
  FRUGAL_CHECK_THROWS_WITH(check_k(), "frugal::topk: k (=5000) must be in [1, n=4096]");
  float buf[6] = {};
  frugal::matrix_view<float> m(buf, 2, 3);
  CHECK(m(1, 2) == 0.f);
  CHECK_NOTHROW(frugal::detail::check_matrix("op", "x", m));
  FRUGAL_CHECK_THROWS_WITH(frugal::detail::check_matrix("op", "x", frugal::matrix_view<float>(buf, 2, 3, 2)),
                           "frugal::op: x row stride (=2) must be >= cols (=3)");
  FRUGAL_CHECK_THROWS_WITH(frugal::detail::check_matrix("op", "x", frugal::matrix_view<float>(nullptr, 2, 3)),
                           "x is null but has shape [2, 3]");
  CHECK_NOTHROW(frugal::detail::check_matrix("op", "x", frugal::matrix_view<float>(nullptr, 0, 3)));
  frugal::matrix_view<const float> cm = m;  // const conversion
  CHECK(cm.data == buf);
}

TEST_CASE("workspace_carver: aligned, counted, and checked") {
  frugal::detail::workspace_carver count;
  (void)count.take<char>(3);
  (void)count.take<float>(10);
  CHECK(count.bytes() == 256 + 40);
  std::vector<std::byte> mem(count.bytes() + 256);
  void* base = reinterpret_cast<void*>((reinterpret_cast<std::uintptr_t>(mem.data()) + 255) / 256 * 256);
  frugal::detail::workspace_carver carve({base, count.bytes()});
  (void)carve.take<char>(3);
  float* f = carve.take<float>(10);
  CHECK(reinterpret_cast<std::uintptr_t>(f) % 256 == 0);
  CHECK_NOTHROW(carve.check("x"));
  frugal::detail::workspace_carver small({base, 100});
  (void)small.take<float>(100);
  FRUGAL_CHECK_THROWS_WITH(small.check("topk"), "frugal::topk: workspace too small: 100 bytes given, 400 needed");
}

TEST_CASE("parallel_for covers the range once and rethrows") {
  for (int threads : {1, 2, 3, 8}) {
    std::vector<std::atomic<int>> hits(1000);
    frugal::detail::parallel_for(frugal::cpu.with_threads(threads), 1000, 1, [&](std::int64_t b, std::int64_t e) {
      for (auto i = b; i < e; ++i) hits[i]++;
    });
    for (auto& h : hits) REQUIRE(h.load() == 1);
  }
  CHECK_THROWS_AS(frugal::detail::parallel_for(frugal::cpu.with_threads(4), 100, 1,
                                               [](std::int64_t b, std::int64_t) {
                                                 if (b > 0) throw frugal::error("boom");
                                               }),
                  frugal::error);
}

// The worker pool behind parallel_for: chunks are the same whoever runs them, every chunk runs exactly once per
// call (also over thousands of back-to-back calls, the pattern of a decode step), a call made from inside a chunk
// or from several threads at once still completes (those run on their own threads), an exception leaves the pool
// usable, and more threads than before grow it.
TEST_CASE("parallel_for on the worker pool: chunking, back-to-back, nested and concurrent calls, exceptions") {
  const auto chunks_of = [](int threads, std::int64_t n, std::int64_t grain) {
    std::mutex m;
    std::vector<std::pair<std::int64_t, std::int64_t>> seen;
    frugal::detail::parallel_for(frugal::cpu.with_threads(threads), n, grain, [&](std::int64_t b, std::int64_t e) {
      std::lock_guard<std::mutex> g(m);
      seen.emplace_back(b, e);
    });
    std::sort(seen.begin(), seen.end());
    return seen;
  };
  using span = std::vector<std::pair<std::int64_t, std::int64_t>>;
  CHECK(chunks_of(3, 10, 1) == span{{0, 3}, {3, 6}, {6, 10}});
  CHECK(chunks_of(4, 10, 4) == span{{0, 3}, {3, 6}, {6, 10}});  // min(4 threads, ceil(10 / 4) = 3) chunks
  CHECK(chunks_of(2, 7, 1) == span{{0, 3}, {3, 7}});

  // Back to back: every item exactly once in each of 3000 calls (a lost or repeated chunk shows up in the sum).
  for (int threads : {2, 3, 5}) {
    std::atomic<std::int64_t> sum{0};
    const std::int64_t n = 37;
    for (int call = 0; call < 3000; ++call)
      frugal::detail::parallel_for(frugal::cpu.with_threads(threads), n, 1, [&](std::int64_t b, std::int64_t e) {
        for (auto i = b; i < e; ++i) sum += i + 1;
      });
    CHECK(sum.load() == 3000 * n * (n + 1) / 2);
  }

  // Nested: a parallel_for inside a chunk (the pool is busy with the outer call) runs on its own threads.
  {
    std::vector<std::atomic<int>> hits(4 * 100);
    frugal::detail::parallel_for(frugal::cpu.with_threads(4), 4, 1, [&](std::int64_t b, std::int64_t e) {
      for (auto o = b; o < e; ++o)
        frugal::detail::parallel_for(frugal::cpu.with_threads(3), 100, 1, [&](std::int64_t ib, std::int64_t ie) {
          for (auto i = ib; i < ie; ++i) hits[static_cast<std::size_t>(o * 100 + i)]++;
        });
    });
    for (auto& h : hits) REQUIRE(h.load() == 1);
  }

  // Concurrent callers: four threads, 500 calls each, every call exact.
  {
    std::atomic<int> bad{0};
    std::vector<std::thread> callers;
    for (int t = 0; t < 4; ++t)
      callers.emplace_back([&, t] {
        for (int call = 0; call < 500; ++call) {
          std::atomic<std::int64_t> sum{0};
          frugal::detail::parallel_for(frugal::cpu.with_threads(2 + t % 2), 64, 1,
                                       [&](std::int64_t b, std::int64_t e) {
                                         for (auto i = b; i < e; ++i) sum += i;
                                       });
          if (sum.load() != 64 * 63 / 2) bad++;
        }
      });
    for (auto& c : callers) c.join();
    CHECK(bad.load() == 0);
  }

  // An exception in one chunk: rethrown once; the other chunks still ran; the next call works.
  for (int rep = 0; rep < 50; ++rep) {
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH_AS(frugal::detail::parallel_for(frugal::cpu.with_threads(3), 3, 1,
                                                      [&](std::int64_t b, std::int64_t) {
                                                        ran++;
                                                        if (b == 1) throw frugal::error("chunk 1");
                                                      }),
                         "chunk 1", frugal::error);
    CHECK(ran.load() == 3);
  }
  CHECK(chunks_of(6, 6, 1).size() == 6);  // more threads than before: the pool grows
}
