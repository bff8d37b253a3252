// eigh on CUDA against cuSOLVER syevd (divide and conquer) and syevj (Jacobi, default tolerance = eps and up to 100
// sweeps) in the same run. Names: eigh/cuda/<dtype>/<n>/<variant>, variant = frugal | syevd | syevj.
// Timing: CUDA events around one call (frugal::eigh includes its input scan, copy and per-sweep host syncs; the
// cuSOLVER calls include a device copy of A, which they overwrite; handles, workspaces and info objects are made
// outside the loop). No L2 flush: the solves are compute/latency bound and re-read their working set many times.
// Counters: orth = max|QᵀQ - I|, residual = ||AQ - QΛ||_F / ||A||_F (f64, on the host, n <= 4096), bound = 10·n·eps,
// sweeps (frugal, syevj), ratio_vs_syevd = this variant's time / syevd's time for the same dtype and n.
#include <frugal/rotation/eigh.hpp>

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bench_eigh_common.hpp"
#include "common/bench_cuda.cuh"

namespace {

void cusolver_check(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS) {
    std::fprintf(stderr, "cuSOLVER error %d in %s\n", static_cast<int>(s), what);
    std::exit(1);
  }
}

template <class T>
struct dev {
  T* p = nullptr;
  explicit dev(std::size_t n) { frugal_bench::check(cudaMalloc(&p, n * sizeof(T) + 1), "cudaMalloc"); }
  ~dev() { cudaFree(p); }
  dev(const dev&) = delete;
  dev& operator=(const dev&) = delete;
};

std::map<std::pair<int, int>, double>& syevd_seconds() {
  static std::map<std::pair<int, int>, double> m;
  return m;
}

template <class T>
std::vector<T> upload_matrix(int n, T* d) {
  const auto& a64 = bench_eigh::matrix(n);
  std::vector<T> a(a64.begin(), a64.end());
  frugal_bench::check(cudaMemcpy(d, a.data(), a.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  return a;
}

template <class T>
void finish(benchmark::State& state, int n, double total, bool is_syevd, const std::vector<T>& a, const T* dw,
            const T* dq, bool column_major) {
  const double per = total / static_cast<double>(state.iterations());
  const auto key = std::make_pair(static_cast<int>(sizeof(T)), n);
  if (is_syevd) syevd_seconds()[key] = per;
  const auto it = syevd_seconds().find(key);
  if (it != syevd_seconds().end() && !is_syevd) state.counters["ratio_vs_syevd"] = per / it->second;
  std::vector<T> w(static_cast<std::size_t>(n)), q(static_cast<std::size_t>(n) * n);
  frugal_bench::check(cudaMemcpy(w.data(), dw, w.size() * sizeof(T), cudaMemcpyDeviceToHost), "download");
  frugal_bench::check(cudaMemcpy(q.data(), dq, q.size() * sizeof(T), cudaMemcpyDeviceToHost), "download");
  bench_eigh::set_accuracy(state, std::vector<double>(a.begin(), a.end()), w, q, n, column_major);
}

template <class T>
void bm_frugal(benchmark::State& state, int n) {
  dev<T> da(static_cast<std::size_t>(n) * n), dq(static_cast<std::size_t>(n) * n), dw(static_cast<std::size_t>(n));
  const auto a = upload_matrix<T>(n, da.p);
  const std::size_t bytes = frugal::eigh_workspace_bytes<T>(frugal::cuda, n);
  dev<std::byte> ws(bytes);
  frugal::eigh_info info =
      frugal::eigh<T>(frugal::cuda, frugal::matrix_view<const T>(da.p, n, n), dw.p, frugal::matrix_view<T>(dq.p, n, n),
                      frugal::workspace{ws.p, bytes});  // warm-up
  double total = 0;
  for (auto _ : state) {
    frugal_bench::cuda_timer t;
    info = frugal::eigh<T>(frugal::cuda, frugal::matrix_view<const T>(da.p, n, n), dw.p,
                           frugal::matrix_view<T>(dq.p, n, n), frugal::workspace{ws.p, bytes});
    const double s = t.seconds();
    state.SetIterationTime(s);
    total += s;
  }
  state.counters["sweeps"] = info.sweeps;
  finish(state, n, total, false, a, dw.p, dq.p, false);
}

template <class T>
void bm_cusolver(benchmark::State& state, int n, bool jacobi) {
  dev<T> da(static_cast<std::size_t>(n) * n), work_a(static_cast<std::size_t>(n) * n), dw(static_cast<std::size_t>(n));
  dev<int> dinfo(1);
  const auto a = upload_matrix<T>(n, da.p);
  cusolverDnHandle_t h;
  cusolver_check(cusolverDnCreate(&h), "create");
  syevjInfo_t params = nullptr;
  int lwork = 0;
  const auto mode = CUSOLVER_EIG_MODE_VECTOR;
  const auto uplo = CUBLAS_FILL_MODE_UPPER;
  if (jacobi) {
    cusolver_check(cusolverDnCreateSyevjInfo(&params), "syevj info");
    if constexpr (sizeof(T) == 4)
      cusolver_check(cusolverDnSsyevj_bufferSize(h, mode, uplo, n, work_a.p, n, dw.p, &lwork, params), "buffer");
    else
      cusolver_check(cusolverDnDsyevj_bufferSize(h, mode, uplo, n, work_a.p, n, dw.p, &lwork, params), "buffer");
  } else {
    if constexpr (sizeof(T) == 4)
      cusolver_check(cusolverDnSsyevd_bufferSize(h, mode, uplo, n, work_a.p, n, dw.p, &lwork), "buffer");
    else
      cusolver_check(cusolverDnDsyevd_bufferSize(h, mode, uplo, n, work_a.p, n, dw.p, &lwork), "buffer");
  }
  dev<T> work(static_cast<std::size_t>(lwork));
  auto call = [&] {
    cudaMemcpyAsync(work_a.p, da.p, static_cast<std::size_t>(n) * n * sizeof(T), cudaMemcpyDeviceToDevice);
    if (jacobi) {
      if constexpr (sizeof(T) == 4)
        cusolver_check(cusolverDnSsyevj(h, mode, uplo, n, work_a.p, n, dw.p, work.p, lwork, dinfo.p, params), "syevj");
      else
        cusolver_check(cusolverDnDsyevj(h, mode, uplo, n, work_a.p, n, dw.p, work.p, lwork, dinfo.p, params), "syevj");
    } else {
      if constexpr (sizeof(T) == 4)
        cusolver_check(cusolverDnSsyevd(h, mode, uplo, n, work_a.p, n, dw.p, work.p, lwork, dinfo.p), "syevd");
      else
        cusolver_check(cusolverDnDsyevd(h, mode, uplo, n, work_a.p, n, dw.p, work.p, lwork, dinfo.p), "syevd");
    }
  };
  call();  // warm-up (module loading), untimed
  frugal_bench::check(cudaDeviceSynchronize(), "warm-up");
  double total = 0;
  for (auto _ : state) {
    frugal_bench::cuda_timer t;
    call();
    const double s = t.seconds();
    state.SetIterationTime(s);
    total += s;
  }
  int info = 0;
  frugal_bench::check(cudaMemcpy(&info, dinfo.p, sizeof(int), cudaMemcpyDeviceToHost), "info");
  if (info != 0) state.SkipWithError("cuSOLVER reported info != 0");
  if (jacobi) {
    int sweeps = 0;
    cusolver_check(cusolverDnXsyevjGetSweeps(h, params, &sweeps), "sweeps");
    state.counters["sweeps"] = sweeps;
    cusolverDnDestroySyevjInfo(params);
  }
  cusolverDnDestroy(h);
  // cuSOLVER: eigenvectors are the columns of a column-major matrix == the rows of our row-major view
  finish(state, n, total, !jacobi, a, dw.p, work_a.p, true);
}

template <class T>
void register_n(int n, int iters, bool with_syevj) {
  const std::string base = std::string("eigh/cuda/") + (sizeof(T) == 4 ? "f32/" : "f64/") + std::to_string(n) + "/";
  benchmark::RegisterBenchmark((base + "syevd").c_str(), [n](benchmark::State& s) { bm_cusolver<T>(s, n, false); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(iters);
  if (with_syevj)
    benchmark::RegisterBenchmark((base + "syevj").c_str(), [n](benchmark::State& s) { bm_cusolver<T>(s, n, true); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(iters);
  benchmark::RegisterBenchmark((base + "frugal").c_str(), [n](benchmark::State& s) { bm_frugal<T>(s, n); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(iters);
}

}  // namespace

int main(int argc, char** argv) {
  if (!frugal_bench::have_gpu()) {
    std::fprintf(stderr, "bench_rotation_eigh: no CUDA device\n");
    return 0;
  }
  {  // warm up the context and cuSOLVER's library load outside any measurement
    cusolverDnHandle_t h;
    cusolver_check(cusolverDnCreate(&h), "create");
    cusolverDnDestroy(h);
  }
  for (int n : {256, 768, 1536, 4096}) {
    const int iters = n <= 768 ? 10 : (n <= 1536 ? 5 : 2);
    register_n<float>(n, iters, true);
    register_n<double>(n, iters, n < 4096);  // syevj f64 at 4096 takes ~1.5 s a call: left out
  }
  register_n<float>(8192, 1, false);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
