// eigh on the CPU against LAPACK ?syevd (OpenBLAS, via the optional frugal_lapacke target) in the same run.
// Names: eigh/cpu/<dtype>/<n>/<variant>, variant = frugal | lapack_syevd. Both on 2 threads unless
// FRUGAL_BENCH_THREADS says otherwise. Counters: orth = max|QᵀQ - I|, residual = ||AQ - QΛ||_F / ||A||_F, bound =
// 10·n·eps, sweeps; ratio_vs_syevd = frugal time / syevd time of the same dtype and n (measured earlier in the run).
#include <frugal/rotation/eigh.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bench_eigh_common.hpp"

#if defined(FRUGAL_HAVE_LAPACKE)
#include <cblas.h>
#include <lapacke.h>
#endif

namespace {

int bench_threads() {
  const char* e = std::getenv("FRUGAL_BENCH_THREADS");
  return e && std::atoi(e) > 0 ? std::atoi(e) : 2;
}

std::map<std::pair<int, int>, double>& syevd_seconds() {
  static std::map<std::pair<int, int>, double> m;
  return m;
}

template <class T>
void bm_frugal(benchmark::State& state, int n) {
  const auto& a64 = bench_eigh::matrix(n);
  const std::vector<T> a(a64.begin(), a64.end());
  std::vector<T> w(static_cast<std::size_t>(n)), q(static_cast<std::size_t>(n) * n);
  const frugal::cpu_t tag{bench_threads()};
  std::vector<std::byte> ws(frugal::eigh_workspace_bytes<T>(tag, n));
  frugal::eigh_info info{};
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    info = frugal::eigh<T>(tag, frugal::matrix_view<const T>(a.data(), n, n), w.data(),
                           frugal::matrix_view<T>(q.data(), n, n), frugal::workspace{ws.data(), ws.size()});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(s);
    total += s;
  }
  state.counters["sweeps"] = info.sweeps;
  state.counters["threads"] = tag.threads;
  const auto it = syevd_seconds().find({static_cast<int>(sizeof(T)), n});
  if (it != syevd_seconds().end()) state.counters["ratio_vs_syevd"] = total / state.iterations() / it->second;
  bench_eigh::set_accuracy(state, std::vector<double>(a.begin(), a.end()), w, q, n);
}

#if defined(FRUGAL_HAVE_LAPACKE)
template <class T>
void bm_syevd(benchmark::State& state, int n) {
  openblas_set_num_threads(bench_threads());
  const auto& a64 = bench_eigh::matrix(n);
  const std::vector<T> a(a64.begin(), a64.end());
  std::vector<T> work(a.size()), w(static_cast<std::size_t>(n));
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    work = a;  // syevd overwrites its input (counted: a copy of n² elements)
    int info;
    if constexpr (sizeof(T) == 8)
      info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', n, work.data(), n, w.data());
    else
      info = LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'V', 'U', n, work.data(), n, w.data());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (info != 0) state.SkipWithError("syevd failed");
    state.SetIterationTime(s);
    total += s;
  }
  syevd_seconds()[{static_cast<int>(sizeof(T)), n}] = total / state.iterations();
  state.counters["threads"] = bench_threads();
  // LAPACK returns ascending eigenvalues, eigenvectors in columns (row-major storage)
  bench_eigh::set_accuracy(state, std::vector<double>(a.begin(), a.end()), w, work, n);
}
#endif

template <class T>
void register_n(int n, int iters) {
  const std::string dt = sizeof(T) == 4 ? "f32" : "f64";
  const std::string base = "eigh/cpu/" + dt + "/" + std::to_string(n) + "/";
#if defined(FRUGAL_HAVE_LAPACKE)
  benchmark::RegisterBenchmark((base + "lapack_syevd").c_str(), [n](benchmark::State& s) { bm_syevd<T>(s, n); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(iters);
#endif
  benchmark::RegisterBenchmark((base + "frugal").c_str(), [n](benchmark::State& s) { bm_frugal<T>(s, n); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(iters);
}

}  // namespace

int main(int argc, char** argv) {
  for (int n : {256, 768}) {
    register_n<double>(n, n <= 256 ? 5 : 3);
    register_n<float>(n, n <= 256 ? 5 : 3);
  }
  register_n<double>(1536, 1);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
