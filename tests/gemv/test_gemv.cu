// gemv on CUDA against the dense reference on the masked input (and the CPU implementation): every form, f32/f16/
// bf16, edge shapes, batch 1..17, bias, accumulate; every split count, the pre-sm_90 reduction path, fused top-k vs
// explicit top-k + sparse_gemv, determinism, CUDA Graph capture, and every documented error. Skips without a GPU.
#include <cstring>
#include <limits>

#include <frugal/gemv/gemv.hpp>

#include "common/cuda_test_util.cuh"
#include "common/test_util.hpp"
#include "gemv/gemv_cases.hpp"

using frugal::bfloat16;
using frugal_test::device_buffer;
using namespace gemv_test;

namespace {

template <class T>
struct device_case {
  device_buffer<T> x, w, bias, y, val;
  device_buffer<std::int32_t> idx, nnz;
  device_buffer<float> t_rows;
  explicit device_case(const host_case<T>& c)
      : x(c.x), w(c.w), bias(c.bias), y(c.y0), val(c.val), idx(c.idx), nnz(c.nnz), t_rows(c.t_rows) {}
};

template <class T>
std::vector<T> run_cuda(const host_case<T>& c, frugal::gemv_options opt = {}, frugal::cuda_t tag = frugal::cuda) {
  device_case<T> d(c);
  const std::size_t wsb = frugal::gemv_workspace_bytes<T>(tag, c.s.b, c.s.K, c.s.N);
  device_buffer<std::byte> ws(wsb);
  run_form<frugal::cuda_t, T>(tag, c, d.x.data(), d.w.data(), d.bias.data(), d.y.data(), d.idx.data(), d.val.data(),
                              d.nnz.data(), d.t_rows.data(), opt, frugal::workspace{ws.data(), wsb});
  FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
  return d.y.download();
}

template <class T>
std::vector<T> run_cpu(const host_case<T>& c) {
  std::vector<T> y = c.y0;
  run_form<frugal::cpu_t, T>(frugal::cpu, c, c.x.data(), c.w.data(), c.bias.data(), y.data(), c.idx.data(),
                             c.val.data(), c.nnz.data(), c.t_rows.data());
  return y;
}

//! Under FRUGAL_TEST_SMALL (compute-sanitizer runs) the sweeps keep every third case: every form, fewer shapes.
bool thinned(std::size_t i) {
  return frugal_test::small_tests() && i % 3 != 0;
}

template <class T>
void grid_test(bool integer) {
  int bad = 0;
  std::size_t i = 0;
  for (const spec& s : shape_grid(integer)) {
    if (thinned(i++)) continue;
    const auto c = make_case<T>(s);
    const auto y = run_cuda(c);
    bad += compare(c, y, "cuda");
    if (integer && std::memcmp(y.data(), run_cpu(c).data(), y.size() * sizeof(T)) != 0) {
      ++bad;
      FAIL_CHECK("cuda != cpu bitwise on integer data: ", describe(s));
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("gemv cuda: every form, exact on integer data, equal to the CPU", T, float, frugal::half, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  grid_test<T>(true);
}

TEST_CASE_TEMPLATE("gemv cuda: every form, continuous data within the error bound", T, float, frugal::half, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  grid_test<T>(false);
}

TEST_CASE_TEMPLATE("gemv cuda: every split count and segment width is exact and bitwise deterministic", T, float,
                   bfloat16) {
  FRUGAL_REQUIRE_GPU();
  // FRUGAL_TEST_SMALL=2 (racecheck): per form one launch for each of single-CTA / cluster (2..8 CTAs) reduction,
  // 128 / 512-byte segments and batch 1 / 11, no repeat.
  const bool tiny = frugal_test::tiny_tests();
  for (form f : all_forms)
    for (std::int64_t b : {1, 3, 11}) {
      if (frugal_test::small_tests() && b == 3) continue;
      spec s{.b = b,
             .K = 2500,
             .N = 300,
             .f = f,
             .bias = true,
             .accumulate = b == 3,
             .integer = true,
             .keep = 0.4,
             .seed = 9};
      const auto c = make_case<T>(s);
      for (int splits : {1, 2, 3, 5, 8})
        for (int seg : {128, 256, 512}) {
          if (frugal_test::small_tests() && (splits == 2 || splits == 5 || seg == 256)) continue;
          if (tiny &&
              !(b == 1 ? (splits == 1 && seg == 512) || (splits == 8 && seg == 128) : splits == 3 && seg == 512))
            continue;
          frugal::gemv_options o;
          o.splits = splits;
          o.segment_bytes = seg;
          const auto y1 = run_cuda(c, o);
          INFO("splits=", splits, " segment_bytes=", seg);
          CHECK(compare(c, y1, "cuda splits") == 0);
          if (!tiny) CHECK(std::memcmp(y1.data(), run_cuda(c, o).data(), y1.size() * sizeof(T)) == 0);
        }
    }
}

// Batch-1 dense input skips the staging (x is read next to the weights) but must keep the staged path's channel order:
// with continuous data any other summation order changes the bits. threshold 0 keeps every channel (|x̂| >= 0) and runs
// the staged path, so the two must agree bitwise — for every split count, segment width and norm, over several stages.
TEST_CASE_TEMPLATE("gemv cuda: batch-1 dense is bitwise equal to the staged path (threshold 0 keeps every channel)", T,
                   float, frugal::half, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  std::mt19937_64 rng(21);
  for (std::int64_t K : {100, 2500}) {
    const std::int64_t N = 300, ldw = 304;  // ragged last column tile; rows padded to 16 bytes
    std::vector<T> hx(static_cast<std::size_t>(K)), hw(static_cast<std::size_t>(K * ldw)),
        hb(static_cast<std::size_t>(N));
    for (auto& v : hx) v = sample<T>(rng, false);
    for (auto& v : hw) v = sample<T>(rng, false);
    for (auto& v : hb) v = sample<T>(rng, false);
    device_buffer<T> x(hx), w(hw), bias(hb), y1(static_cast<std::size_t>(N)), y2(static_cast<std::size_t>(N));
    const frugal::matrix_view<const T> xv(x.data(), 1, K), wv(w.data(), K, N, ldw);
    for (frugal::gemv_norm nm : {frugal::gemv_norm::none, frugal::gemv_norm::layernorm, frugal::gemv_norm::rmsnorm})
      for (int splits : {0, 1, 3, 8})
        for (int seg : {0, 128, 512}) {
          frugal::gemv_options o;
          o.splits = splits;
          o.segment_bytes = seg;
          o.norm = nm;
          frugal::gemv(frugal::cuda, xv, wv, bias.data(), frugal::matrix_view<T>(y1.data(), 1, N), o);
          frugal::sparse_gemv_threshold(frugal::cuda, xv, frugal::threshold{nullptr, 0.f}, wv, bias.data(),
                                        frugal::matrix_view<T>(y2.data(), 1, N), o);
          FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
          const auto a = y1.download(), b = y2.download();
          INFO("K=", K, " norm=", static_cast<int>(nm), " splits=", splits, " segment_bytes=", seg);
          CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
        }
  }
}

// The weights-ahead kernel (gemv_options::weights_ahead; dense, batch 1, sm_90): its own tiling, a shared-memory part
// and a register-streamed part of every tile, its own summation order. Against the f64 reference and the CPU.
TEST_CASE_TEMPLATE("gemv cuda: weights-ahead kernel (dense, batch 1): edge shapes, fused norm / GELU, large tiles", T,
                   float, frugal::half, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  frugal::gemv_options on;
  on.weights_ahead = 1;
  int bad = 0;
  std::size_t i = 0;
  for (bool integer : {true, false})
    for (spec s : shape_grid(integer)) {
      if (s.f != form::dense || thinned(i++)) continue;
      s.b = 1;
      const auto c = make_case<T>(s);
      const auto y = run_cuda(c, on);
      bad += compare(c, y, "cuda ahead");
      if (integer && std::memcmp(y.data(), run_cpu(c).data(), y.size() * sizeof(T)) != 0) {
        ++bad;
        FAIL_CHECK("cuda ahead != cpu bitwise on integer data: ", describe(s));
      }
    }
  for (spec s : fused_grid()) {
    if (s.f != form::dense || thinned(i++)) continue;
    s.b = 1;
    const auto c = make_case<T>(s);
    bad += compare(c, run_cuda(c, on), "cuda ahead fused");
  }
  // Tiles larger than the shared memory (the register batch, then the 4-stage ring), ragged N, the LM-head shape.
  const std::int64_t large[][2] = {{4096, 4096}, {1600, 6400}, {50257, 768}, {300, 30000}};
  for (const auto& kn : large) {
    if (frugal_test::small_tests() && kn[0] * kn[1] > 4096 * 4096) continue;
    for (bool fused : {false, true}) {
      spec s{.b = 1,
             .K = kn[1],
             .N = kn[0],
             .f = form::dense,
             .bias = true,
             .accumulate = !fused,
             .integer = !fused,
             .seed = 40};
      if (fused) s.norm = frugal::gemv_norm::layernorm, s.act = frugal::gemv_act::gelu_tanh;
      const auto c = make_case<T>(s);
      const auto y = run_cuda(c, on);
      bad += compare(c, y, "cuda ahead large");
      CHECK(std::memcmp(y.data(), run_cuda(c, on).data(), y.size() * sizeof(T)) == 0);  // deterministic
    }
  }
  CHECK(bad == 0);
}

TEST_CASE_TEMPLATE("gemv cuda: weights-ahead kernel: every cluster size, exact and deterministic; when it is chosen", T,
                   float, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  spec s{.b = 1, .K = 2500, .N = 300, .f = form::dense, .bias = true, .integer = true, .seed = 9};
  const auto c = make_case<T>(s);
  for (int splits = 1; splits <= 8; ++splits) {
    frugal::gemv_options o;
    o.weights_ahead = 1;
    o.splits = splits;
    const auto y = run_cuda(c, o);
    INFO("splits=", splits);
    CHECK(compare(c, y, "cuda ahead splits") == 0);
    CHECK(std::memcmp(y.data(), run_cuda(c, o).data(), y.size() * sizeof(T)) == 0);
  }
  // Which kernel a call gets: forced on / off, automatic = on with pdl unless the other kernel's shape is pinned;
  // never for batches or sparse forms.
  int major = 0, dev = 0;
  FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), "test");
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "test");
  device_buffer<T> x(std::vector<T>(16 * 1024)), w(std::vector<T>(1024 * 1024)), y(std::vector<T>(16 * 1024));
  auto chosen = [&](std::int64_t b, frugal::detail::gemv_input mode, frugal::gemv_options o) {
    const auto p = frugal::detail::gemv_dense_problem<T>("test", mode, frugal::matrix_view<const T>(x.data(), b, 1024),
                                                         frugal::matrix_view<const T>(w.data(), 1024, 1024), nullptr,
                                                         frugal::matrix_view<T>(y.data(), b, 1024), o);
    return frugal::detail::gemv_cuda_prepare("test", p, frugal::workspace{}).ahead;
  };
  using frugal::detail::gemv_input;
  const bool sm90 = major >= 9;
  CHECK(chosen(1, gemv_input::dense, {.weights_ahead = 1}) == sm90);
  CHECK(chosen(1, gemv_input::dense, {.pdl = true}) == sm90);
  CHECK_FALSE(chosen(1, gemv_input::dense, {}));
  CHECK_FALSE(chosen(1, gemv_input::dense, {.pdl = true, .weights_ahead = 0}));
  CHECK_FALSE(chosen(1, gemv_input::dense, {.splits = 2, .pdl = true}));
  CHECK_FALSE(chosen(2, gemv_input::dense, {.weights_ahead = 1}));
  CHECK_FALSE(chosen(1, gemv_input::threshold, {.weights_ahead = 1}));
  CHECK_THROWS_AS(chosen(1, gemv_input::dense, {.weights_ahead = 2}), frugal::error);
}

TEST_CASE_TEMPLATE("gemv cuda: LLaMA-sized shapes, exact on integer data" * doctest::skip(frugal_test::small_tests()),
                   T, frugal::half, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  for (form f : {form::dense, form::threshold_rows, form::list_shuffled})
    for (std::int64_t b : {1, 8}) {
      spec s{.b = b, .K = 11008, .N = 4096, .f = f, .bias = true, .integer = true, .keep = 0.5, .seed = 3};
      const auto c = make_case<T>(s);
      CHECK(compare(c, run_cuda(c), "cuda large") == 0);
    }
}

//! Runs the case through the cluster-free reduction (workspace partials + gemv_reduce_kernel) with `splits`.
template <class T>
std::vector<T> run_cuda_no_cluster(const host_case<T>& c, frugal::gemv_options o, int splits) {
  const spec& s = c.s;
  device_case<T> d(c);
  const std::size_t wsb = frugal::gemv_workspace_bytes<T>(frugal::cuda, s.b, s.K, s.N);
  device_buffer<std::byte> ws(wsb);
  o.splits = splits;
  o.accumulate = s.accumulate;
  o.norm = s.norm;
  o.act = s.act;
  o.eps = s.eps;
  // Build the problem as the public API does, then force the cluster-free reduction.
  frugal::matrix_view<const T> xv(d.x.data(), s.b, s.K, c.ldx), wv(d.w.data(), s.K, s.N, c.ldw);
  frugal::matrix_view<T> yv(d.y.data(), s.b, s.N, c.ldy);
  const T* bp = s.bias ? static_cast<const T*>(d.bias.data()) : nullptr;
  frugal::detail::gemv_problem<T> p;
  if (s.f == form::list_sorted || s.f == form::list_shuffled) {
    p = frugal::detail::gemv_list_problem(
        "test", frugal::sparse_rows<T>{d.idx.data(), d.val.data(), d.nnz.data(), s.b, c.cap, c.cap}, wv, bp, yv, o);
  } else {
    const auto mode = s.f == form::dense    ? frugal::detail::gemv_input::dense
                      : s.f == form::masked ? frugal::detail::gemv_input::masked
                                            : frugal::detail::gemv_input::threshold;
    p = frugal::detail::gemv_dense_problem("test", mode, xv, wv, bp, yv, o);
    p.t_all = c.t_all;
    if (s.f == form::threshold_rows) p.t_rows = d.t_rows.data();
  }
  auto plan = frugal::detail::gemv_cuda_prepare("test", p, frugal::workspace{ws.data(), wsb});
  plan.args.cluster = false;
  device_buffer<float> partials(static_cast<std::size_t>(splits * s.b * s.N));
  plan.args.partials = partials.data();
  frugal::detail::gemv_cuda_launch(frugal::cuda, "test", p, plan);
  FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
  return d.y.download();
}

TEST_CASE_TEMPLATE("gemv cuda: the pre-sm_90 path (workspace partials + reduce kernel)", T, float, frugal::half) {
  FRUGAL_REQUIRE_GPU();
  for (form f : all_forms) {
    spec s{.b = 5, .K = 1500, .N = 257, .f = f, .bias = true, .accumulate = true, .integer = true, .seed = 4};
    const auto c = make_case<T>(s);
    frugal::gemv_options o;
    o.segment_bytes = f == form::dense ? 512 : f == form::masked ? 256 : 128;
    CHECK(compare(c, run_cuda_no_cluster(c, o, 5), "cuda no-cluster") == 0);
  }
}

TEST_CASE_TEMPLATE("gemv cuda: fused top-k equals explicit top-k + sparse_gemv and the CPU", T, float, frugal::half,
                   bfloat16) {
  FRUGAL_REQUIRE_GPU();
  for (std::int64_t b : {1, 2, 7, 16}) {
    for (int k : {0, 1, 100, 700, 1500}) {
      const std::int64_t K = 1500, N = 333;
      spec s{.b = b, .K = K, .N = N, .f = form::dense, .bias = true, .accumulate = b == 2, .integer = false, .seed = 6};
      auto c = make_case<T>(s);
      std::mt19937_64 rng(21 + b);
      for (std::int64_t r = 0; r < b; ++r) {  // distinct magnitudes (no ties) in every dtype
        std::vector<int> order(K);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
        for (std::int64_t j = 0; j < K; ++j) {
          const float mag = static_cast<float>(bfloat16::from_bits(static_cast<std::uint16_t>(0x3a00 + j)));
          c.x[r * c.ldx + order[j]] = frugal::from_float<T>((rng() & 1) ? mag : -mag);
        }
      }
      // Explicit top-k (host): the k largest |x| per row, shuffled order.
      std::vector<std::int32_t> idx(b * K, 0), nnz(b, k);
      std::vector<T> val(b * K);
      for (std::int64_t r = 0; r < b; ++r) {
        std::vector<std::int32_t> ord(K);
        std::iota(ord.begin(), ord.end(), 0);
        auto mag = [&](std::int32_t i) { return std::fabs(static_cast<float>(as_double(c.x[r * c.ldx + i]))); };
        std::sort(ord.begin(), ord.end(), [&](auto p, auto q) { return mag(p) > mag(q); });
        for (int j = 0; j < k; ++j) {
          idx[r * K + j] = ord[j];
          val[r * K + j] = c.x[r * c.ldx + ord[j]];
        }
      }
      device_case<T> d(c);
      device_buffer<T> y2(c.y0);
      device_buffer<std::int32_t> didx(idx), dnnz(nnz);
      device_buffer<T> dval(val);
      const std::size_t wsb = frugal::gemv_workspace_bytes<T>(frugal::cuda, b, K, N, k);
      device_buffer<std::byte> ws(wsb);
      frugal::gemv_options o;
      o.accumulate = s.accumulate;
      frugal::matrix_view<const T> xv(d.x.data(), b, K, c.ldx), wv(d.w.data(), K, N, c.ldw);
      frugal::sparse_gemv_topk(frugal::cuda, xv, k, wv, d.bias.data(), frugal::matrix_view<T>(d.y.data(), b, N, c.ldy),
                               o, frugal::workspace{ws.data(), wsb});
      frugal::sparse_gemv(frugal::cuda, frugal::sparse_rows<T>{didx.data(), dval.data(), dnnz.data(), b, K, K}, wv,
                          d.bias.data(), frugal::matrix_view<T>(y2.data(), b, N, c.ldy), o);
      FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
      const auto a = d.y.download(), e = y2.download();
      // CPU fused top-k on the same data.
      std::vector<T> yc = c.y0;
      std::vector<std::byte> wsc(frugal::gemv_workspace_bytes<T>(frugal::cpu, b, K, N, k));
      frugal::sparse_gemv_topk(frugal::cpu, frugal::matrix_view<const T>(c.x.data(), b, K, c.ldx), k,
                               frugal::matrix_view<const T>(c.w.data(), K, N, c.ldw), c.bias.data(),
                               frugal::matrix_view<T>(yc.data(), b, N, c.ldy), o,
                               frugal::workspace{wsc.data(), wsc.size()});
      const double uT = frugal_test::unit_roundoff<T>();
      int bad = 0;
      for (std::int64_t r = 0; r < b; ++r)
        for (std::int64_t n = 0; n < N; ++n) {
          const double va = as_double(a[r * c.ldy + n]), ve = as_double(e[r * c.ldy + n]);
          const double vc = as_double(yc[r * c.ldy + n]);
          const double tol = 2.02 * uT * std::fabs(ve) + 1e-4;
          if (std::fabs(va - ve) > tol || std::fabs(va - vc) > tol) ++bad;
        }
      INFO("b=", b, " k=", k);
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("gemv cuda: works inside CUDA Graph capture (fused top-k, then replay)") {
  FRUGAL_REQUIRE_GPU();
  spec s{.b = 1, .K = 2048, .N = 1024, .f = form::dense, .bias = true, .integer = false, .seed = 8};
  const auto c = make_case<bfloat16>(s);
  device_case<bfloat16> d(c);
  const int k = 1024;
  const std::size_t wsb = frugal::gemv_workspace_bytes<bfloat16>(frugal::cuda, 1, 2048, 1024, k);
  device_buffer<std::byte> ws(wsb);
  cudaStream_t st;
  FRUGAL_CUDA_CHECK(cudaStreamCreate(&st), "test");
  frugal::matrix_view<const bfloat16> xv(d.x.data(), 1, 2048, c.ldx), wv(d.w.data(), 2048, 1024, c.ldw);
  frugal::matrix_view<bfloat16> yv(d.y.data(), 1, 1024, c.ldy);
  auto call = [&] {
    frugal::sparse_gemv_topk(frugal::cuda.on(st), xv, k, wv, d.bias.data(), yv, {}, frugal::workspace{ws.data(), wsb});
  };
  call();
  FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "test");
  const auto direct = d.y.download();
  d.y.zero();
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  FRUGAL_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), "test");
  call();
  FRUGAL_CUDA_CHECK(cudaStreamEndCapture(st, &graph), "test");
  FRUGAL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0), "test");
  FRUGAL_CUDA_CHECK(cudaGraphLaunch(exec, st), "test");
  FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "test");
  const auto replay = d.y.download();
  CHECK(std::memcmp(direct.data(), replay.data(), direct.size() * 2) == 0);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(st);
}

TEST_CASE_TEMPLATE("gemv cuda: gemv_tile_ahead answers for the kernel it describes", T, frugal::half, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  int dev = 0, major = 0, sms = 0;
  FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), "test");
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "test");
  FRUGAL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "test");
  if (major < 9) {
    CHECK(!frugal::gemv_tile_ahead<T>(frugal::cuda, 768, 768, 1));
    return;
  }
  // The reply is the weights-ahead kernel's own shape choice: one wave, each block's whole tile in shared memory.
  for (auto [K, N] : {std::pair<std::int64_t, std::int64_t>{768, 2304}, {768, 768}, {768, 3072}, {3072, 768},
                      {1600, 4800}, {1600, 1600}, {1600, 6400}, {6400, 1600}, {768, 50257}})
    for (int sp : {1, 2, 8}) {
      const auto sh = frugal::detail::gemv_ahead_pick(N, K, 8, 2, sms, sp);
      const bool whole = sh.ok && sh.all_ahead && sh.rows >= (K + sp - 1) / sp && sh.tiles * sh.splits <= sms;
      CHECK(frugal::gemv_tile_ahead<T>(frugal::cuda, K, N, sp) == whole);
    }
  if (sms >= 128) {  // H100 / H200: GPT-2 124M's layer GEMVs hold their unsplit tiles, XL's qkv and LM heads not
    for (auto [K, N] : {std::pair<std::int64_t, std::int64_t>{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}})
      CHECK(frugal::gemv_tile_ahead<T>(frugal::cuda, K, N, 1));
    CHECK(!frugal::gemv_tile_ahead<T>(frugal::cuda, 1600, 4800, 1));
    CHECK(!frugal::gemv_tile_ahead<T>(frugal::cuda, 768, 50257, 1));
  }
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv_tile_ahead<T>(frugal::cuda, 768, 768, 9), "splits in [1, 8] (9)");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv_tile_ahead<T>(frugal::cuda, 0, 768, 1), "needs K > 0 (0)");
}

TEST_CASE("gemv cuda: bad input throws frugal::error before anything is written") {
  FRUGAL_REQUIRE_GPU();
  const std::int64_t b = 2, K = 8, N = 16;
  device_buffer<frugal::half> x(b * K), w(K * N + 8), y(b * N), val(b * 3);
  const std::vector<frugal::half> sentinel(b * N, frugal::half(5.f));
  y.upload(sentinel);
  x.upload(std::vector<frugal::half>(b * K, frugal::half(1.f)));
  w.upload(std::vector<frugal::half>(K * N + 8, frugal::half(1.f)));
  val.upload(std::vector<frugal::half>(b * 3, frugal::half(1.f)));
  using frugal::matrix_view;
  const matrix_view<const frugal::half> xv(x.data(), b, K), wv(w.data(), K, N);
  const matrix_view<frugal::half> yv(y.data(), b, N);
  FRUGAL_CHECK_THROWS_WITH(
      frugal::gemv(frugal::cuda, xv, matrix_view<const frugal::half>(w.data() + 1, K, N), nullptr, yv),
      "frugal::gemv: the CUDA path reads weights in 16-byte vectors");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cuda, xv, matrix_view<const frugal::half>(w.data(), K, N - 1, N - 1),
                                        nullptr, matrix_view<frugal::half>(y.data(), b, N - 1)),
                           "w.ld (=15) a multiple of 8 elements");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cuda, xv, wv, nullptr, yv, {.splits = 9}),
                           "frugal::gemv: options.splits (=9) must be in [0, 8]");
  FRUGAL_CHECK_THROWS_WITH(frugal::gemv(frugal::cuda, xv, wv, nullptr, yv, {.segment_bytes = 64}),
                           "frugal::gemv: options.segment_bytes (=64) must be 0, 128, 256 or 512");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::gemv(frugal::cuda, matrix_view<const frugal::half>(x.data(), b, K - 1), wv, nullptr, yv),
      "frugal::gemv: x has K=7 input channels but w has 8 rows");

  // Checked mode on device lists: out of range, duplicate, nnz > K, nnz > cap.
  auto lists = [&](std::vector<std::int32_t> idx, std::vector<std::int32_t> nnz, bool checked) {
    device_buffer<std::int32_t> di(idx), dn(nnz);
    const std::size_t wsb = frugal::gemv_workspace_bytes<frugal::half>(frugal::cuda, b, K, N);
    device_buffer<std::byte> ws(wsb);
    frugal::gemv_options o;
    o.checked = checked;
    frugal::sparse_gemv(frugal::cuda, frugal::sparse_rows<frugal::half>{di.data(), val.data(), dn.data(), b, 3, 3}, wv,
                        nullptr, yv, o, frugal::workspace{ws.data(), wsb});
    FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
  };
  FRUGAL_CHECK_THROWS_WITH(lists({0, 1, 2, 3, 9, 5}, {3, 3}, true),
                           "frugal::sparse_gemv: index 9 at row 1, entry 1 is outside [0, K=8)");
  FRUGAL_CHECK_THROWS_WITH(lists({0, 1, 2, 3, -4, 5}, {3, 3}, true),
                           "frugal::sparse_gemv: index -4 at row 1, entry 1 is outside [0, K=8)");
  FRUGAL_CHECK_THROWS_WITH(lists({0, 1, 2, 3, 3, 5}, {3, 3}, true),
                           "frugal::sparse_gemv: index 3 appears twice in row 1");
  FRUGAL_CHECK_THROWS_WITH(lists({0, 1, 2, 3, 4, 5}, {4, 3}, true),
                           "frugal::sparse_gemv: nnz[0] (=4) must be in [0, min(cap=3, K=8)]");
  FRUGAL_CHECK_THROWS_WITH(lists({0, 1, 2, 3, 4, 5}, {3, -1}, true),
                           "frugal::sparse_gemv: nnz[1] (=-1) must be in [0, min(cap=3, K=8)]");
  const auto after = y.download();
  CHECK(std::memcmp(after.data(), sentinel.data(), sentinel.size() * 2) == 0);  // nothing written
  // Unchecked: out-of-range entries are skipped (memory-safe), nnz clamped to cap.
  lists({0, 1, 2, 3, 9, 5}, {3, 7}, false);
  const auto got = y.download();
  for (std::int64_t n = 0; n < N; ++n) {
    CHECK(static_cast<float>(got[n]) == 3.f);
    CHECK(static_cast<float>(got[N + n]) == 2.f);
  }
  lists({0, 1, 2, 3, 4, 5}, {3, 2}, true);  // valid: checked mode passes and computes
  const auto ok = y.download();
  CHECK(static_cast<float>(ok[0]) == 3.f);
  CHECK(static_cast<float>(ok[N]) == 2.f);
}

// ---------------------------------------------------------------------------------------------------------------
// Fused norm prologue (every block computes its rows' statistics over all of K) and activation epilogue.
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("gemv cuda: fused norm x activation x form against the f64 reference (batch 1..17)", T, float,
                   frugal::half, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  // FRUGAL_TEST_SMALL=2 (racecheck): per (form, norm, activation) the K = 2500, N = 515 case (default launch, 8 splits,
  // no cluster) and one small-K case, no repeat.
  const bool tiny = frugal_test::tiny_tests();
  int bad = 0;
  std::size_t i = 0;
  for (const spec& s : fused_grid()) {
    const bool big = s.K == 2500 && s.N == 515;
    const bool thin = thinned(i++);
    if (tiny ? !big && !(s.K == 7 && s.N == 515) : thin && !big) continue;
    const auto c = make_case<T>(s);
    bad += compare(c, run_cuda(c), "cuda fused");
    if (big) {  // the statistics must not depend on the split / block layout
      for (int splits : {1, 3, 8}) {
        if (tiny && splits != 8) continue;
        frugal::gemv_options o;
        o.splits = splits;
        o.segment_bytes = splits == 3 ? 128 : 512;
        const auto y1 = run_cuda(c, o);
        bad += compare(c, y1, "cuda fused splits");
        if (!tiny && std::memcmp(y1.data(), run_cuda(c, o).data(), y1.size() * sizeof(T)) != 0) {
          ++bad;
          FAIL_CHECK("not bitwise deterministic: ", describe(s), " splits=", splits);
        }
      }
      bad += compare(c, run_cuda_no_cluster(c, {}, 5), "cuda fused no-cluster");
    }
  }
  CHECK(bad == 0);
}

TEST_CASE_TEMPLATE("gemv cuda: fused top-k with the rmsnorm prologue ranks raw |x| and multiplies by rstd", T, float,
                   frugal::half, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  for (std::int64_t b : {1, 2, 7, 16})
    for (int k : {0, 1, 700, 1500})
      for (auto act : {frugal::gemv_act::none, frugal::gemv_act::gelu_tanh}) {
        spec s{.b = b,
               .K = 1500,
               .N = 333,
               .bias = true,
               .accumulate = b == 2,
               .integer = false,
               .seed = 42,
               .norm = frugal::gemv_norm::rmsnorm,
               .act = act};
        const auto c = make_topk_case<T>(s, k);
        device_case<T> d(c);
        const std::size_t wsb = frugal::gemv_workspace_bytes<T>(frugal::cuda, b, s.K, s.N, k);
        device_buffer<std::byte> ws(wsb);
        frugal::gemv_options o{.accumulate = s.accumulate, .norm = s.norm, .act = act};
        frugal::sparse_gemv_topk(frugal::cuda, frugal::matrix_view<const T>(d.x.data(), b, s.K, c.ldx), k,
                                 frugal::matrix_view<const T>(d.w.data(), s.K, s.N, c.ldw), d.bias.data(),
                                 frugal::matrix_view<T>(d.y.data(), b, s.N, c.ldy), o,
                                 frugal::workspace{ws.data(), wsb});
        FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
        INFO("b=", b, " k=", k);
        CHECK(compare(c, d.y.download(), "cuda topk fused") == 0);
      }
}

TEST_CASE("gemv cuda: fused layernorm in f32 on a GPT-2-like row (mean 40, outlier channels), every split") {
  FRUGAL_REQUIRE_GPU();
  const std::int64_t K = 3072, N = 96;
  spec s{.b = 1,
         .K = K,
         .N = N,
         .f = form::dense,
         .bias = true,
         .integer = false,
         .seed = 78,
         .norm = frugal::gemv_norm::layernorm,
         .act = frugal::gemv_act::gelu_tanh};
  auto c = make_case<float>(s);
  std::mt19937_64 rng(6);
  std::normal_distribution<float> nd(40.f, 1.f);
  for (std::int64_t k = 0; k < K; ++k) c.x[k] = nd(rng);
  c.x[0] = 2000.f, c.x[447] = -1800.f, c.x[2900] = 900.f;  // an outlier as the very first value, too
  double m = 0, q = 0;
  for (std::int64_t k = 0; k < K; ++k) m += c.x[k];
  m /= K;
  for (std::int64_t k = 0; k < K; ++k) q += (c.x[k] - m) * (c.x[k] - m);
  c.mean[0] = m;
  c.rstd[0] = 1 / std::sqrt(q / K + 1e-5);
  std::vector<double> xm(K);
  for (std::int64_t k = 0; k < K; ++k) xm[k] = (c.x[k] - m) * c.rstd[0];
  set_reference(c, xm);
  for (int splits : {0, 1, 2, 8}) {
    frugal::gemv_options o;
    o.splits = splits;
    INFO("splits=", splits);
    CHECK(compare(c, run_cuda(c, o), "cuda outlier row") == 0);
  }
}

TEST_CASE("gemv cuda: fused prologue/epilogue inside CUDA Graph capture (replay = direct, = reference)") {
  FRUGAL_REQUIRE_GPU();
  cudaStream_t st;
  FRUGAL_CUDA_CHECK(cudaStreamCreate(&st), "test");
  // Threshold + layernorm + gelu (b = 3) and top-k + rmsnorm + gelu (b = 1), captured back to back.
  spec s1{.b = 3,
          .K = 768,
          .N = 2304,
          .f = form::threshold_rows,
          .bias = true,
          .integer = false,
          .keep = 0.5,
          .seed = 91,
          .norm = frugal::gemv_norm::layernorm,
          .act = frugal::gemv_act::gelu_tanh};
  spec s2{.b = 1,
          .K = 1500,
          .N = 768,
          .bias = true,
          .accumulate = true,
          .integer = false,
          .seed = 92,
          .norm = frugal::gemv_norm::rmsnorm,
          .act = frugal::gemv_act::gelu_tanh};
  const auto c1 = make_case<bfloat16>(s1);
  const int k = 750;
  const auto c2 = make_topk_case<bfloat16>(s2, k);
  device_case<bfloat16> d1(c1), d2(c2);
  const std::size_t wsb = frugal::gemv_workspace_bytes<bfloat16>(frugal::cuda, 1, s2.K, s2.N, k);
  device_buffer<std::byte> ws(wsb);
  auto call = [&] {
    run_form<frugal::cuda_t, bfloat16>(frugal::cuda.on(st), c1, d1.x.data(), d1.w.data(), d1.bias.data(), d1.y.data(),
                                       nullptr, nullptr, nullptr, d1.t_rows.data());
    frugal::sparse_gemv_topk(frugal::cuda.on(st), frugal::matrix_view<const bfloat16>(d2.x.data(), 1, s2.K, c2.ldx), k,
                             frugal::matrix_view<const bfloat16>(d2.w.data(), s2.K, s2.N, c2.ldw), d2.bias.data(),
                             frugal::matrix_view<bfloat16>(d2.y.data(), 1, s2.N, c2.ldy),
                             {.accumulate = true, .norm = s2.norm, .act = s2.act}, frugal::workspace{ws.data(), wsb});
  };
  call();
  FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "test");
  const auto direct1 = d1.y.download(), direct2 = d2.y.download();
  CHECK(compare(c1, direct1, "cuda graph direct threshold") == 0);
  CHECK(compare(c2, direct2, "cuda graph direct topk") == 0);
  d1.y.upload(c1.y0);
  d2.y.upload(c2.y0);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  FRUGAL_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), "test");
  call();
  FRUGAL_CUDA_CHECK(cudaStreamEndCapture(st, &graph), "test");
  FRUGAL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0), "test");
  FRUGAL_CUDA_CHECK(cudaGraphLaunch(exec, st), "test");
  FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "test");
  const auto replay1 = d1.y.download(), replay2 = d2.y.download();
  CHECK(std::memcmp(direct1.data(), replay1.data(), direct1.size() * 2) == 0);
  CHECK(std::memcmp(direct2.data(), replay2.data(), direct2.size() * 2) == 0);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(st);
}

TEST_CASE("gemv cuda: fused options that do not fit the form throw before any launch") {
  FRUGAL_REQUIRE_GPU();
  const std::int64_t b = 2, K = 8, N = 16;
  device_buffer<frugal::half> x(b * K), w(K * N), y(b * N), val(b * 3);
  const std::vector<frugal::half> sentinel(b * N, frugal::half(5.f));
  y.upload(sentinel);
  x.upload(std::vector<frugal::half>(b * K, frugal::half(1.f)));
  w.upload(std::vector<frugal::half>(K * N, frugal::half(1.f)));
  device_buffer<std::int32_t> idx(std::vector<std::int32_t>{0, 1, 2, 3, 4, 5}), nnz(std::vector<std::int32_t>{3, 3});
  using frugal::gemv_norm;
  using frugal::matrix_view;
  const matrix_view<const frugal::half> xv(x.data(), b, K), wv(w.data(), K, N);
  const matrix_view<frugal::half> yv(y.data(), b, N);
  const std::size_t wsb = frugal::gemv_workspace_bytes<frugal::half>(frugal::cuda, b, K, N, 3);
  device_buffer<std::byte> ws(wsb);
  const frugal::workspace wsp{ws.data(), wsb};
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv(frugal::cuda, frugal::sparse_rows<frugal::half>{idx.data(), val.data(), nnz.data(), b, 3, 3},
                          wv, nullptr, yv, {.norm = gemv_norm::rmsnorm}, wsp),
      "frugal::sparse_gemv: options.norm = rmsnorm is not supported for explicit lists");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv_topk(frugal::cuda, xv, 3, wv, nullptr, yv, {.norm = gemv_norm::layernorm}, wsp),
      "frugal::sparse_gemv_topk: options.norm = layernorm is not supported for top-k selection");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::sparse_gemv_masked(frugal::cuda, xv, wv, nullptr, yv, {.norm = gemv_norm::layernorm}, wsp),
      "frugal::sparse_gemv_masked: options.norm = layernorm is not supported for the masked form");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::gemv(frugal::cuda, xv, wv, nullptr, yv, {.norm = gemv_norm::rmsnorm, .eps = -2.f}, wsp),
      "frugal::gemv: options.eps (=-2) must be finite and > 0 with options.norm = rmsnorm");
  FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
  const auto after = y.download();
  CHECK(std::memcmp(after.data(), sentinel.data(), sentinel.size() * 2) == 0);  // nothing written
}

TEST_CASE("gemv cuda: programmatic dependent launch — a chain of GEMVs, each reading the previous output, in a graph") {
  FRUGAL_REQUIRE_GPU();
  // y1 = ln(x)·W1 (dense), y2 = thr(y1)·W2 (threshold, reads y1), y3 = gelu(rms(y2)·W3 + b), y4 = y3·W4 + y4:
  // with pdl each launch may start before the previous one ends; the results must equal the plain launches.
  using T = bfloat16;
  const std::int64_t d0 = 768, d1 = 2304, d2 = 768, d3 = 3072;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  auto host = [&](std::int64_t n, float scale) {
    std::vector<T> v(static_cast<std::size_t>(n));
    for (auto& e : v) e = frugal::from_float<T>(nd(rng) * scale);
    return v;
  };
  device_buffer<T> x(host(d0, 1.f)), w1(host(d0 * d1, 0.04f)), w2(host(d1 * d2, 0.02f)), w3(host(d2 * d3, 0.04f)),
      w4(host(d3 * d0, 0.02f)), bias(host(d3, 0.1f));
  device_buffer<T> y1(d1), y2(d2), y3(d3), y4(host(d0, 1.f));
  const auto y4_0 = y4.download();
  device_buffer<float> t(std::vector<float>{0.3f});
  cudaStream_t st;
  FRUGAL_CUDA_CHECK(cudaStreamCreate(&st), "test");
  using frugal::matrix_view;
  int ahead = 0;  // the dense GEMVs' kernel (gemv_options::weights_ahead), the same with and without pdl
  auto chain = [&](bool pdl) {
    const auto tag = frugal::cuda.on(st);
    frugal::gemv(tag, matrix_view<const T>(x.data(), 1, d0), matrix_view<const T>(w1.data(), d0, d1), nullptr,
                 matrix_view<T>(y1.data(), 1, d1),
                 {.norm = frugal::gemv_norm::layernorm, .pdl = pdl, .weights_ahead = ahead});
    frugal::sparse_gemv_threshold(tag, matrix_view<const T>(y1.data(), 1, d1), frugal::threshold{t.data(), 0.f},
                                  matrix_view<const T>(w2.data(), d1, d2), nullptr, matrix_view<T>(y2.data(), 1, d2),
                                  {.pdl = pdl});
    frugal::gemv(
        tag, matrix_view<const T>(y2.data(), 1, d2), matrix_view<const T>(w3.data(), d2, d3), bias.data(),
        matrix_view<T>(y3.data(), 1, d3),
        {.norm = frugal::gemv_norm::rmsnorm, .act = frugal::gemv_act::gelu_tanh, .pdl = pdl, .weights_ahead = ahead});
    frugal::gemv(tag, matrix_view<const T>(y3.data(), 1, d3), matrix_view<const T>(w4.data(), d3, d0), nullptr,
                 matrix_view<T>(y4.data(), 1, d0), {.accumulate = true, .pdl = pdl, .weights_ahead = ahead});
  };
  for (ahead = 0; ahead <= 1; ++ahead) {
    y4.upload(y4_0);
    chain(false);
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "test");
    const auto ref2 = y2.download(), ref4 = y4.download();
    for (int mode = 0; mode < 2; ++mode) {  // 0: pdl on the stream, 1: pdl captured into a graph and replayed twice
      y1.zero(), y2.zero(), y3.zero();
      y4.upload(y4_0);
      if (mode == 0) {
        chain(true);
      } else {
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        FRUGAL_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), "test");
        chain(true);
        FRUGAL_CUDA_CHECK(cudaStreamEndCapture(st, &graph), "test");
        FRUGAL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0), "test");
        FRUGAL_CUDA_CHECK(cudaGraphLaunch(exec, st), "test");
        FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "test");
        CHECK(std::memcmp(y2.download().data(), ref2.data(), ref2.size() * 2) == 0);
        y4.upload(y4_0);
        FRUGAL_CUDA_CHECK(cudaGraphLaunch(exec, st), "test");
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
      }
      FRUGAL_CUDA_CHECK(cudaStreamSynchronize(st), "test");
      INFO("mode=", mode, " weights_ahead=", ahead);
      CHECK(std::memcmp(y2.download().data(), ref2.data(), ref2.size() * 2) == 0);
      CHECK(std::memcmp(y4.download().data(), ref4.data(), ref4.size() * 2) == 0);
    }
  }
  cudaStreamDestroy(st);
}

// ---------------------------------------------------------------------------------------------------------------
// Fused top-k with the select inside the GEMV kernel (b = 1, K <= detail::gemv_topk_in_kernel_max_K) and its
// two-kernel fallback (topk_select + threshold GEMV: b >= 2 or larger K).
// ---------------------------------------------------------------------------------------------------------------

namespace {

enum class topk_data { continuous, ties, nans };

//! One fused top-k case on CUDA against the CPU (topk_select's k-th magnitude -> the kept channels -> the f64
//! reference of sparse_gemv on them), and bitwise against the forced two-kernel path. Returns the failure count.
template <class T>
int topk_in_kernel_case(std::int64_t b, std::int64_t K, std::int64_t N, int k, topk_data data, std::int64_t pad,
                        std::uint64_t seed) {
  const bool integer = data != topk_data::continuous;
  spec s{.b = b,
         .K = K,
         .N = N,
         .f = form::dense,
         .bias = true,
         .accumulate = b == 2,
         .integer = integer,
         .seed = seed,
         .pad = pad};
  auto c = make_case<T>(s);
  std::mt19937_64 rng(seed * 101 + static_cast<std::uint64_t>(K) * 7 + static_cast<std::uint64_t>(k));
  if (integer)  // magnitudes 0..3: long runs of ties at every cut, zeros among them
    for (std::int64_t r = 0; r < b; ++r)
      for (std::int64_t j = 0; j < K; ++j)
        c.x[r * c.ldx + j] = frugal::from_float<T>(static_cast<float>(static_cast<int>(rng() % 7) - 3));
  if (data == topk_data::nans)  // a few NaNs per row (either sign): always kept, ranked above everything
    for (std::int64_t r = 0; r < b; ++r)
      for (int q = 0; q < 3; ++q) {
        const std::int64_t j = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(K));
        c.x[r * c.ldx + j] = frugal::from_float<T>(q == 1 ? -std::numeric_limits<float>::quiet_NaN()
                                                          : std::numeric_limits<float>::quiet_NaN());
      }
  // The CPU's k-th magnitudes and the channels they keep (isnan(x) || |x| >= kth: ties at the cut all kept).
  std::vector<float> kth(static_cast<std::size_t>(b));
  frugal::topk_select(frugal::cpu, frugal::matrix_view<const T>(c.x.data(), b, K, c.ldx), k, kth.data());
  std::vector<double> xm(static_cast<std::size_t>(b * K), 0.0);
  int bad = 0;
  for (std::int64_t r = 0; r < b; ++r) {
    std::int64_t kept = 0;
    for (std::int64_t j = 0; j < K; ++j) {
      const double v = as_double(c.x[r * c.ldx + j]);
      if (std::isnan(v) || std::fabs(v) >= static_cast<double>(kth[r])) xm[r * K + j] = v, ++kept;
    }
    if (kept < k) {
      ++bad;
      FAIL_CHECK("reference keeps ", kept, " < k=", k, " channels in row ", r);
    }
  }
  set_reference(c, xm);

  device_case<T> d(c);
  device_buffer<T> y2(c.y0);
  frugal::gemv_options o;
  o.accumulate = s.accumulate;
  frugal::matrix_view<const T> xv(d.x.data(), b, K, c.ldx), wv(d.w.data(), K, N, c.ldw);
  const bool in_kernel = frugal::detail::gemv_topk_in_kernel(b, K);
  // The in-kernel form takes no workspace for the select (sm_90: none at all): give it none, so a call that went
  // the two-kernel way would throw.
  const std::size_t wsb = in_kernel ? 0 : frugal::gemv_workspace_bytes<T>(frugal::cuda, b, K, N, k);
  device_buffer<std::byte> ws(std::max<std::size_t>(wsb, 1));
  frugal::sparse_gemv_topk(frugal::cuda, xv, k, wv, d.bias.data(), frugal::matrix_view<T>(d.y.data(), b, N, c.ldy), o,
                           in_kernel ? frugal::workspace{} : frugal::workspace{ws.data(), wsb});
  const std::size_t wsb2 = frugal::detail::gemv_cuda_workspace_bytes<T>(b, K, N, k, true);
  device_buffer<std::byte> ws2(wsb2);
  frugal::detail::gemv_topk_cuda<T>(frugal::cuda, xv, k, wv, d.bias.data(),
                                    frugal::matrix_view<T>(y2.data(), b, N, c.ldy), o,
                                    frugal::workspace{ws2.data(), wsb2}, true);
  FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
  const auto y = d.y.download(), e = y2.download();
  if (std::memcmp(y.data(), e.data(), y.size() * sizeof(T)) != 0) {
    ++bad;
    FAIL_CHECK("in-kernel select != topk_select + GEMV bitwise");
  }
  const double uT = frugal_test::unit_roundoff<T>();
  for (std::int64_t r = 0; r < b; ++r)
    for (std::int64_t n = 0; n < N; ++n) {
      const double got = as_double(y[r * c.ldy + n]), ref = c.ref[r * N + n];
      bool ok;
      if (std::isnan(ref)) {
        ok = std::isnan(got);
      } else if (integer) {
        ok = got == as_double(frugal::from_float<T>(static_cast<float>(ref)));
      } else {
        ok = std::fabs(got - ref) <= 1.01 * uT * std::fabs(ref) + 0.51 * min_subnormal<T>() + c.bound[r * N + n];
      }
      if (!ok && ++bad <= 3) FAIL_CHECK("y[", r, ", ", n, "] = ", got, ", expected ", ref);
    }
  for (std::int64_t r = 0; r < b; ++r)
    for (std::int64_t n = N; n < c.ldy; ++n)
      if (as_double(y[r * c.ldy + n]) != 7.0 && ++bad <= 3) FAIL_CHECK("wrote into y's padding at [", r, ", ", n, "]");
  return bad;
}

}  // namespace

TEST_CASE_TEMPLATE("gemv cuda: in-kernel top-k select equals CPU topk + sparse_gemv (ties, NaN, K tails, k edges)", T,
                   float, frugal::half, bfloat16) {
  FRUGAL_REQUIRE_GPU();
  const bool small = frugal_test::small_tests();
  const std::vector<std::int64_t> Ks =
      small ? std::vector<std::int64_t>{7, 1029} : std::vector<std::int64_t>{1, 7, 300, 1029, 4099, 8192};
  const std::vector<std::int64_t> bs = small ? std::vector<std::int64_t>{1, 2} : std::vector<std::int64_t>{1, 2, 3};
  int bad = 0, cases = 0;
  for (std::int64_t K : Ks)
    for (std::int64_t b : bs)
      for (topk_data data : {topk_data::continuous, topk_data::ties, topk_data::nans}) {
        if (K == 8192 && (data == topk_data::nans || b == 3)) continue;  // the largest in-kernel K: fewer cases
        std::vector<int> ks{1, static_cast<int>(K / 2), static_cast<int>(K - 1), static_cast<int>(K)};
        std::sort(ks.begin(), ks.end());
        ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
        for (int k : ks) {
          if (k < 1) continue;
          const std::int64_t N = K >= 4096 ? 40 : 70;
          const std::int64_t pad = (k % 2) ? 1 : 0;  // odd row strides: rows not 16-byte aligned
          INFO("b=", b, " K=", K, " k=", k, " data=", static_cast<int>(data), " pad=", pad);
          const int e = topk_in_kernel_case<T>(b, K, N, k, data, pad, 5 + static_cast<std::uint64_t>(k));
          CHECK(e == 0);
          bad += e;
          ++cases;
        }
      }
  MESSAGE(cases, " cases");
  CHECK(bad == 0);
}

TEST_CASE_TEMPLATE("gemv cuda: in-kernel top-k fallback for large K (topk_select + GEMV) and its workspace", T, float,
                   bfloat16) {
  FRUGAL_REQUIRE_GPU();
  const std::int64_t K = frugal::detail::gemv_topk_in_kernel_max_K + 3, N = 24;
  // Workspace: the in-kernel form needs nothing for the select, the fallback b floats (+ topk_select's).
  CHECK(frugal::gemv_workspace_bytes<T>(frugal::cuda, 1, 4096, N, 2048) ==
        frugal::gemv_workspace_bytes<T>(frugal::cuda, 1, 4096, N, 0));
  CHECK(frugal::gemv_workspace_bytes<T>(frugal::cuda, 2, 4096, N, 2048) >
        frugal::gemv_workspace_bytes<T>(frugal::cuda, 2, 4096, N, 0));
  CHECK(frugal::gemv_workspace_bytes<T>(frugal::cuda, 1, K, N, 100) >
        frugal::gemv_workspace_bytes<T>(frugal::cuda, 1, K, N, 0));
  int bad = 0;
  for (std::int64_t b : {std::int64_t{1}, std::int64_t{2}})
    for (topk_data data : {topk_data::ties, topk_data::continuous})
      for (int k : {1, static_cast<int>(K / 2), static_cast<int>(K)}) {
        if (frugal_test::small_tests() && k == 1) continue;
        INFO("b=", b, " K=", K, " k=", k, " data=", static_cast<int>(data));
        const int e = topk_in_kernel_case<T>(b, K, N, k, data, 0, 9);
        CHECK(e == 0);
        bad += e;
      }
  CHECK(bad == 0);
}
