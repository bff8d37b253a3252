// Sparse GEMV on the CPU (f32): frugal's dense / input-sparse forms against OpenBLAS cblas_sgemv, in the same run.
//
// Names: gemv/cpu/f32/<N>x<K>/<variant>
//   openblas      cblas_sgemv(ColMajor, NoTrans) on the channel-major weights (axpy form, frugal's layout)
//   openblas_t    cblas_sgemv(RowMajor, NoTrans) on a row-major [N, K] copy (dot form, nn.Linear layout); the
//                 baseline for speedups is the faster of the two
//   dense         frugal::gemv
//   list_s<S>     frugal::sparse_gemv with ascending index lists of the (1 - S%) largest |x|
//   thresh_s<S>   frugal::sparse_gemv_threshold at the S% quantile of |x|
//   topk_s<S>     frugal::sparse_gemv_topk, k = (1 - S%) K
//   thresh_pca_s<S>, topk_pca_s<S>   the same on an input in PCA order, as LaRoSA's rotated activations: channel k
//                 has standard deviation (1 + k)^-1/2 (a 1/k covariance spectrum), so the kept channels crowd the
//                 front of K (at s = 50, ~62% of them in its first half) — where the kept list is cut among threads
// Shapes: the LLaMA-sized ones of issue 3 (all sparsities) and GPT-2 124M / XL's (dense, s = 0.5, and the PCA-order
// input on the shapes whose batch-1 call splits the kept channels among threads: N < 4096 x threads).
// Threads: FRUGAL_BENCH_THREADS (default 2) for both frugal (cpu.with_threads) and OpenBLAS
// (openblas_set_num_threads); OpenBLAS's threads sleep between calls (OPENBLAS_THREAD_TIMEOUT=4, see main).
// Before every timed call a 96 MB buffer is read to evict the weights from the 32 MB
// L3 (at high sparsity the kept rows would otherwise fit), so weights stream from DRAM. Wall-clock time of the
// call alone (UseManualTime), 3 repetitions x 12 iterations. GB/s counts the weight rows read + x + y.
#include <benchmark/benchmark.h>

#include <frugal/gemv/gemv.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#if defined(FRUGAL_HAVE_CBLAS)
#include <cblas.h>
#endif

namespace {

int bench_threads() {
  if (const char* e = std::getenv("FRUGAL_BENCH_THREADS")) return std::max(1, std::atoi(e));
  return 2;
}

struct weights {
  std::int64_t N = 0, K = 0;
  std::vector<float> w, wt;  // [K, N] channel-major, [N, K] row-major
};
std::unique_ptr<weights> g_w;

const weights& get(std::int64_t N, std::int64_t K) {
  if (!g_w || g_w->N != N || g_w->K != K) {
    g_w.reset();
    auto p = std::make_unique<weights>();
    p->N = N;
    p->K = K;
    p->w.resize(static_cast<std::size_t>(N * K));
    p->wt.resize(static_cast<std::size_t>(N * K));
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto& v : p->w) v = u(rng) / std::sqrt(static_cast<float>(K));
    frugal::to_channel_major(frugal::matrix_view<const float>(p->w.data(), K, N),
                             frugal::matrix_view<float>(p->wt.data(), N, K));  // [K, N] -> [N, K] (same transpose)
    g_w = std::move(p);
  }
  return *g_w;
}

enum class variant { openblas, openblas_t, dense, list, thresh, topk, thresh_pca, topk_pca };

void run(benchmark::State& state, variant v, std::int64_t N, std::int64_t K, int s_pct) {
  const auto& W = get(N, K);
  const int threads = bench_threads();
  const auto tag = frugal::cpu.with_threads(threads);
  const std::int64_t keep = std::max<std::int64_t>(1, std::llround((1.0 - s_pct / 100.0) * static_cast<double>(K)));
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<std::size_t>(K)), y(static_cast<std::size_t>(N));
  for (auto& e : x) e = nd(rng);
  if (v == variant::thresh_pca || v == variant::topk_pca)
    for (std::int64_t k = 0; k < K; ++k) x[k] /= std::sqrt(static_cast<float>(1 + k));
  std::vector<float> a(static_cast<std::size_t>(K));
  for (std::int64_t k = 0; k < K; ++k) a[k] = std::fabs(x[k]);
  std::vector<float> srt = a;
  std::nth_element(srt.begin(), srt.begin() + (K - keep), srt.end());
  const float thr = s_pct == 0 ? 0.f : srt[K - keep];
  std::vector<std::int32_t> idx;
  std::vector<float> val;
  for (std::int64_t k = 0; k < K; ++k)
    if (a[k] >= thr) idx.push_back(static_cast<std::int32_t>(k)), val.push_back(x[k]);
  const std::int32_t nnz = static_cast<std::int32_t>(idx.size());
  std::vector<std::byte> ws(frugal::gemv_workspace_bytes<float>(tag, 1, K, N, static_cast<int>(keep)));
  const frugal::matrix_view<const float> xv(x.data(), 1, K), wv(W.w.data(), K, N);
  const frugal::matrix_view<float> yv(y.data(), 1, N);
#if defined(FRUGAL_HAVE_CBLAS)
  openblas_set_num_threads(threads);
#endif
  auto call = [&] {
    switch (v) {
      case variant::openblas:
#if defined(FRUGAL_HAVE_CBLAS)
        cblas_sgemv(CblasColMajor, CblasNoTrans, static_cast<int>(N), static_cast<int>(K), 1.f, W.w.data(),
                    static_cast<int>(N), x.data(), 1, 0.f, y.data(), 1);
#endif
        break;
      case variant::openblas_t:
#if defined(FRUGAL_HAVE_CBLAS)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(N), static_cast<int>(K), 1.f, W.wt.data(),
                    static_cast<int>(K), x.data(), 1, 0.f, y.data(), 1);
#endif
        break;
      case variant::dense: frugal::gemv(tag, xv, wv, nullptr, yv); break;
      case variant::list:
        frugal::sparse_gemv(tag, frugal::sparse_rows<float>{idx.data(), val.data(), &nnz, 1, nnz, nnz}, wv, nullptr,
                            yv);
        break;
      case variant::thresh:
      case variant::thresh_pca: frugal::sparse_gemv_threshold(tag, xv, frugal::threshold{nullptr, thr}, wv, nullptr, yv); break;
      case variant::topk:
      case variant::topk_pca:
        frugal::sparse_gemv_topk(tag, xv, static_cast<int>(keep), wv, nullptr, yv, {},
                                 frugal::workspace{ws.data(), ws.size()});
        break;
    }
  };
  call();
  static std::vector<float> flush_buf(static_cast<std::size_t>(96) << 18, 1.f);  // 96 MB > the 32 MB L3
  for (auto _ : state) {
    float sink = 0.f;
    for (std::size_t i = 0; i < flush_buf.size(); i += 16) sink += flush_buf[i];  // evict W (reads: no dirty lines)
    benchmark::DoNotOptimize(sink);
    const auto t0 = std::chrono::steady_clock::now();
    call();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const bool dense_like = v == variant::openblas || v == variant::openblas_t || v == variant::dense;
  const double rows = dense_like ? static_cast<double>(K) : static_cast<double>(nnz);
  state.counters["GB/s"] =
      benchmark::Counter((rows * N + K + N) * 4.0 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}

void add(variant v, std::int64_t N, std::int64_t K, int s) {
  static const char* names[] = {"openblas", "openblas_t", "dense", "list", "thresh", "topk", "thresh_pca", "topk_pca"};
  std::string vn = names[static_cast<int>(v)];
  if (v != variant::openblas && v != variant::openblas_t && v != variant::dense) vn += "_s" + std::to_string(s);
  const std::string name = "gemv/cpu/f32/" + std::to_string(N) + "x" + std::to_string(K) + "/" + vn;
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { run(st, v, N, K, s); })
      ->Unit(benchmark::kMillisecond)
      ->UseManualTime()
      ->Iterations(12)
      ->Repetitions(3)
      ->ReportAggregatesOnly(true);
}

}  // namespace

int main(int argc, char** argv) {
#if defined(FRUGAL_HAVE_CBLAS)
  // OpenBLAS's pthreads keep spinning for ~2^28 cycles after each call (its default thread timeout), and on a
  // 2-core machine that spinning thread takes a core from whatever runs next — the next benchmark's first
  // iterations. OPENBLAS_THREAD_TIMEOUT is read when the library loads, so set it and start again.
  if (!std::getenv("OPENBLAS_THREAD_TIMEOUT")) {
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);  // 2^4 cycles: OpenBLAS's threads sleep between calls, as frugal's do
    execv("/proc/self/exe", argv);  // (returns only on failure: then run with the default timeout)
  }
#endif
  // LLaMA-sized shapes (issue 3): every sparsity, the list and top-k forms; the GEMVs of a GPT-2 decode step, 124M
  // (qkv, o_proj, fc, down) and XL (1558M): dense, threshold and top-k at s = 0.5.
  const auto add_shape = [](std::int64_t N, std::int64_t K, bool all, bool pca) {
#if defined(FRUGAL_HAVE_CBLAS)
    add(variant::openblas, N, K, 0);
    add(variant::openblas_t, N, K, 0);
#endif
    add(variant::dense, N, K, 0);
    for (int s : {25, 50, 75, 90})
      if (all || s == 50) add(variant::thresh, N, K, s);
    if (all) add(variant::list, N, K, 50);
    add(variant::topk, N, K, 50);
    if (pca) {
      add(variant::thresh_pca, N, K, 50);
      add(variant::topk_pca, N, K, 50);
    }
  };
  for (auto [N, K] : {std::pair<std::int64_t, std::int64_t>{4096, 4096}, {11008, 4096}, {4096, 11008}, {12288, 4096},
                      {14336, 4096}})
    add_shape(N, K, true, N == 4096);
  for (auto [N, K] : {std::pair<std::int64_t, std::int64_t>{2304, 768}, {768, 768}, {3072, 768}, {768, 3072},
                      {4800, 1600}, {1600, 1600}, {6400, 1600}, {1600, 6400}})
    add_shape(N, K, false, N * K >= (std::int64_t{1} << 20));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
