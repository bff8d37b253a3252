// CUDA top-k (frugal/sparsify/topk.hpp) against the CPU reference: every dtype, every shape class (n = 1, odd n,
// strided and unaligned rows, staged and streaming rows, many rows), every input class (ties, NaN/Inf, denormals,
// signed zeros, any bit pattern), k from 1 to n; sets are compared (sorted), values and masks bit for bit.
// Also: CUDA Graph capture, the 256/1024-thread variants, and the errors (thrown before any launch).
// FRUGAL_TEST_SMALL=1 shrinks the sweep (for compute-sanitizer racecheck, which is slow).
#include <frugal/sparsify/topk.hpp>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <vector>

#include "common/cuda_test_util.cuh"
#include "common/test_util.hpp"
#include "sparsify/topk_oracle.hpp"

using frugal::matrix_view;
using namespace frugal_test;

namespace {

bool small_run() {
  const char* e = std::getenv("FRUGAL_TEST_SMALL");
  return e && *e && *e != '0';
}

//! Input classes swept: all of them, or three that cover ties, specials and random data in the small run.
std::vector<input_kind> kinds() {
  if (small_run()) return {input_kind::random, input_kind::many_ties, input_kind::specials};
  return std::vector<input_kind>(std::begin(all_kinds), std::end(all_kinds));
}

struct shape {
  std::int64_t rows, n, ld;
};

std::vector<shape> gpu_shapes() {
  if (small_run()) return {{1, 1, 1}, {3, 37, 41}, {2, 768, 768}, {2, 4096, 4099}, {1, 20000, 20000}};
  return {{1, 1, 1},          {3, 7, 9},           {2, 33, 33},          {16, 768, 768},      {4, 4096, 4100},
          {3, 4097, 4101},    {2, 11008, 11008},   {2, 16384, 16384},    {1, 20000, 20003},   {1, 40000, 40000},
          {3000, 64, 64},     {256, 4096, 4096}};
}

std::vector<int> gpu_ks(std::int64_t n) {
  std::vector<int> ks = {1, static_cast<int>(n)};
  if (small_run()) {
    if (n > 2) ks.push_back(static_cast<int>(n / 2));
    return ks;
  }
  if (n > 2) ks.push_back(static_cast<int>(n / 2));
  if (n > 7) ks.push_back(static_cast<int>(n - 3));
  if (n > 40) ks.push_back(static_cast<int>(n / 10) + 1);
  return ks;
}

//! Runs the four CUDA operations (through `run`, which may pick a block size or force streaming) and compares each
//! with the CPU reference on the same input.
template <class T, class Run>
void compare_with_cpu(const std::vector<T>& x, const shape& s, int k, const char* what, Run&& run) {
  INFO(what, " dtype=", frugal::dtype_traits<T>::name, " rows=", s.rows, " n=", s.n, " ld=", s.ld, " k=", k);
  const std::int64_t rows = s.rows, n = s.n, ld = s.ld;
  matrix_view<const T> hx(x.data(), rows, n, ld);
  // CPU reference
  std::vector<std::int32_t> ci(rows * k);
  std::vector<T> cv(rows * k), cy(x.size());
  std::vector<float> ck(rows);
  frugal::topk(frugal::cpu, hx, k, matrix_view<std::int32_t>(ci.data(), rows, k), matrix_view<T>(cv.data(), rows, k));
  frugal::topk_mask(frugal::cpu, hx, k, matrix_view<T>(cy.data(), rows, n, ld));
  frugal::topk_select(frugal::cpu, hx, k, ck.data());
  // CUDA
  device_buffer<T> dx(x), dv(rows * k), dy(x.size()), dyin(x);
  device_buffer<std::int32_t> di(rows * k);
  device_buffer<float> dk(rows);
  dy.zero();
  matrix_view<const T> gx(dx.data(), rows, n, ld);
  run(gx, k, matrix_view<std::int32_t>(di.data(), rows, k), matrix_view<T>(dv.data(), rows, k),
      matrix_view<T>(dy.data(), rows, n, ld), matrix_view<T>(dyin.data(), rows, n, ld), dk.data());
  FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
  const auto gi = di.download();
  const auto gv = dv.download();
  const auto gy = dy.download();
  const auto gyin = dyin.download();
  const auto gk = dk.download();
  for (std::int64_t r = 0; r < rows; ++r) {
    INFO("row ", r);
    std::vector<std::int32_t> a(ci.begin() + r * k, ci.begin() + (r + 1) * k), b(gi.begin() + r * k, gi.begin() + (r + 1) * k);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    REQUIRE(a == b);  // same set
    for (int j = 0; j < k; ++j) {  // each value is x at its index
      const std::int32_t i = gi[r * k + j];
      REQUIRE(i >= 0);
      REQUIRE(i < n);
      REQUIRE(bits_of(gv[r * k + j]) == bits_of(x[r * ld + i]));
    }
    for (std::int64_t i = 0; i < n; ++i) {
      REQUIRE(bits_of(gy[r * ld + i]) == bits_of(cy[r * ld + i]));
      REQUIRE(bits_of(gyin[r * ld + i]) == bits_of(cy[r * ld + i]));
    }
    for (std::int64_t i = n; i < ld; ++i) REQUIRE(bits_of(gy[r * ld + i]) == 0u);  // padding untouched (was zeroed)
    if (std::isnan(ck[r])) REQUIRE(std::isnan(gk[r]));
    else REQUIRE(gk[r] == ck[r]);
  }
}

template <class T, int Block>
auto launcher(bool force_streaming) {
  return [force_streaming](matrix_view<const T> x, int k, matrix_view<std::int32_t> i, matrix_view<T> v,
                           matrix_view<T> y, matrix_view<T> yin, float* kth) {
    using frugal::detail::topk_cuda_mode;
    const frugal::cuda_t tag{};
    frugal::detail::topk_cuda_launch<T, Block>(tag, x, k, topk_cuda_mode::indices, i, v, {}, nullptr, force_streaming);
    frugal::detail::topk_cuda_launch<T, Block>(tag, x, k, topk_cuda_mode::mask, {}, {}, y, nullptr, force_streaming);
    frugal::detail::topk_cuda_launch<T, Block>(tag, matrix_view<const T>(yin), k, topk_cuda_mode::mask, {}, {}, yin,
                                               nullptr, force_streaming);
    frugal::detail::topk_cuda_launch<T, Block>(tag, x, k, topk_cuda_mode::select, {}, {}, {}, kth, force_streaming);
  };
}

template <class T>
auto public_api() {
  return [](matrix_view<const T> x, int k, matrix_view<std::int32_t> i, matrix_view<T> v, matrix_view<T> y,
            matrix_view<T> yin, float* kth) {
    frugal::topk(frugal::cuda, x, k, i, v);
    frugal::topk_mask(frugal::cuda, x, k, y);
    frugal::topk_mask(frugal::cuda, matrix_view<const T>(yin), k, yin);  // in place
    frugal::topk_select(frugal::cuda, x, k, kth);
  };
}

}  // namespace

TEST_CASE_TEMPLATE("topk cuda: every dtype, shape class and input class agrees with the CPU", T, float, frugal::half,
                   frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  std::uint64_t seed = 11;
  for (const auto& s : gpu_shapes()) {
    for (const auto kind : kinds()) {
      const bool big = s.rows * s.n > 50000;
      if (big && kind != input_kind::random && kind != input_kind::many_ties && kind != input_kind::uniform_bits)
        continue;
      const auto x = make_input<T>(kind, s.rows, s.n, s.ld, seed++);
      for (int k : gpu_ks(s.n)) {
        compare_with_cpu(x, s, k, kind_name(kind), public_api<T>());
      }
    }
  }
}

TEST_CASE_TEMPLATE("topk cuda: streaming rows and the 256/1024-thread variants agree with the CPU", T, float,
                   frugal::half) {
  FRUGAL_REQUIRE_GPU();
  std::vector<shape> ss = {{2, 1, 1}, {3, 300, 301}, {2, 4096, 4096}, {2, 5000, 5003}};
  if (small_run()) ss = {{3, 300, 301}, {2, 4096, 4096}};
  std::uint64_t seed = 500;
  for (const auto& s : ss) {
    for (const auto kind : {input_kind::random, input_kind::many_ties, input_kind::specials, input_kind::all_equal}) {
      const auto x = make_input<T>(kind, s.rows, s.n, s.ld, seed++);
      for (int k : gpu_ks(s.n)) {
        compare_with_cpu(x, s, k, "streaming", launcher<T, frugal::detail::topk_block>(true));
        compare_with_cpu(x, s, k, "block256", launcher<T, 256>(false));
        compare_with_cpu(x, s, k, "block1024", launcher<T, 1024>(false));
      }
    }
  }
}

TEST_CASE_TEMPLATE("threshold_mask cuda: agrees with the CPU, per row and for all, in place too", T, float, frugal::half,
                   frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  std::vector<shape> ss = {{1, 1, 1}, {4, 37, 40}, {3, 4096, 4100}, {2, 11008, 11008}, {1000, 64, 64}};
  if (small_run()) ss = {{4, 37, 40}, {3, 4096, 4100}};
  std::uint64_t seed = 900;
  for (const auto& s : ss) {
    for (const auto kind : kinds()) {
      const auto x = make_input<T>(kind, s.rows, s.n, s.ld, seed++);
      std::vector<float> per(s.rows);
      for (std::int64_t r = 0; r < s.rows; ++r) per[r] = std::array<float, 5>{0.f, 0.3f, 1.f, 1e-41f, -2.f}[r % 5];
      for (int mode = 0; mode < 3; ++mode) {
        INFO(kind_name(kind), " rows=", s.rows, " n=", s.n, " mode=", mode);
        matrix_view<const T> hx(x.data(), s.rows, s.n, s.ld);
        device_buffer<float> dper(per);
        frugal::threshold ht, dt;
        if (mode == 0) ht.per_row = per.data(), dt.per_row = dper.data();
        else ht.all = dt.all = mode == 1 ? 0.8f : std::numeric_limits<float>::infinity();
        std::vector<T> cy(x.size());
        std::vector<std::int32_t> cc(s.rows);
        frugal::threshold_mask(frugal::cpu, hx, ht, matrix_view<T>(cy.data(), s.rows, s.n, s.ld), cc.data());
        device_buffer<T> dx(x), dy(x.size());
        device_buffer<std::int32_t> dc(s.rows);
        dy.zero();
        frugal::threshold_mask(frugal::cuda, matrix_view<const T>(dx.data(), s.rows, s.n, s.ld), dt,
                               matrix_view<T>(dy.data(), s.rows, s.n, s.ld), dc.data());
        frugal::threshold_mask(frugal::cuda, matrix_view<const T>(dx.data(), s.rows, s.n, s.ld), dt,
                               matrix_view<T>(dx.data(), s.rows, s.n, s.ld), nullptr);  // in place, no counts
        FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
        const auto gy = dy.download(), gyin = dx.download();
        const auto gc = dc.download();
        REQUIRE(gc == cc);
        for (std::int64_t r = 0; r < s.rows; ++r)
          for (std::int64_t i = 0; i < s.n; ++i) {
            REQUIRE(bits_of(gy[r * s.ld + i]) == bits_of(cy[r * s.ld + i]));
            REQUIRE(bits_of(gyin[r * s.ld + i]) == bits_of(cy[r * s.ld + i]));
          }
      }
    }
  }
}

TEST_CASE("topk cuda: runs inside CUDA Graph capture (no sync, no allocation) and replays") {
  FRUGAL_REQUIRE_GPU();
  const std::int64_t rows = 16, n = 11008;  // 11008 f32 needs the large-shared-memory opt-in
  const int k = static_cast<int>(n / 2);
  cudaStream_t s;
  FRUGAL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "test");
  auto x = make_input<float>(input_kind::random, rows, n, n, 3);
  device_buffer<float> dx(x), dv(rows * k), dy(rows * n);
  device_buffer<std::int32_t> di(rows * k);
  device_buffer<float> dk(rows);
  matrix_view<const float> gx(dx.data(), rows, n);
  cudaGraph_t graph;
  FRUGAL_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "test");
  frugal::topk(frugal::cuda.on(s), gx, k, matrix_view<std::int32_t>(di.data(), rows, k),
               matrix_view<float>(dv.data(), rows, k));
  frugal::topk_mask(frugal::cuda.on(s), gx, k, matrix_view<float>(dy.data(), rows, n));
  frugal::topk_select(frugal::cuda.on(s), gx, k, dk.data());
  frugal::threshold_mask(frugal::cuda.on(s), gx, frugal::threshold{dk.data(), 0.f}, matrix_view<float>(dy.data(), rows, n),
                         nullptr);
  FRUGAL_CUDA_CHECK(cudaStreamEndCapture(s, &graph), "test");
  cudaGraphExec_t exec;
  FRUGAL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0), "test");
  for (int rep = 0; rep < 2; ++rep) {
    x = make_input<float>(input_kind::random, rows, n, n, 100 + rep);  // new data, same graph
    dx.upload(x);
    FRUGAL_CUDA_CHECK(cudaGraphLaunch(exec, s), "test");
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(s), "test");
    std::vector<std::int32_t> ci(rows * k);
    std::vector<float> cv(rows * k), cy(rows * n);
    frugal::topk(frugal::cpu, matrix_view<const float>(x.data(), rows, n), k,
                 matrix_view<std::int32_t>(ci.data(), rows, k), matrix_view<float>(cv.data(), rows, k));
    frugal::topk_mask(frugal::cpu, matrix_view<const float>(x.data(), rows, n), k, matrix_view<float>(cy.data(), rows, n));
    CHECK(di.download() == ci);  // both ascending per row
    CHECK(dv.download() == cv);
    const auto gy = dy.download();  // threshold at the k-th |x| == the top-k mask (random data: no ties)
    for (std::int64_t i = 0; i < rows * n; ++i) REQUIRE(bits_of(gy[i]) == bits_of(cy[i]));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

TEST_CASE("topk cuda: bad input throws frugal::error before any launch") {
  // No GPU needed: validation runs on the host before anything touches the device.
  auto* fake = reinterpret_cast<float*>(std::uintptr_t{4096});
  auto* ifake = reinterpret_cast<std::int32_t*>(std::uintptr_t{1 << 20});
  matrix_view<const float> xv(fake, 4, 8);
  matrix_view<std::int32_t> iv(ifake, 4, 3);
  matrix_view<float> vv(fake + 1000, 4, 3);
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(frugal::cuda, xv, 0, iv, vv), "frugal::topk: k (=0) must be in [1, n=8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(frugal::cuda, xv, 9, iv, vv), "k (=9) must be in [1, n=8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk(frugal::cuda, xv, 2, iv, vv), "indices has shape [4, 3] but must be");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk_mask(frugal::cuda, xv, 3, matrix_view<float>(nullptr, 4, 8)),
                           "y is null but has shape [4, 8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk_select(frugal::cuda, xv, 3, nullptr), "kth_abs is null but x has 4 rows");
  FRUGAL_CHECK_THROWS_WITH(frugal::threshold_mask(frugal::cuda, xv,
                                                  frugal::threshold{nullptr, std::numeric_limits<float>::quiet_NaN()},
                                                  matrix_view<float>(fake + 1000, 4, 8), nullptr),
                           "threshold.all (=nan) must not be NaN");
  FRUGAL_CHECK_THROWS_WITH(frugal::topk_mask(frugal::cuda, matrix_view<const frugal::half>(nullptr, 2, 5), 3,
                                             matrix_view<frugal::half>(nullptr, 2, 5)),
                           "x is null but has shape [2, 5]");
}
