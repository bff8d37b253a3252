// Top-k on the CPU: frugal's radix select vs std::nth_element, same run.
//
// Names: topk/cpu/<dtype>/<rows>x<n>/<variant>, k = n/2.
//   frugal_1t     frugal::topk on one thread (indices + values)
//   frugal        frugal::topk on all hardware threads (rows spread over threads when there is enough work)
//   select_1t     frugal::topk_select on one thread (k-th magnitude only)
//   nth_element   baseline, one thread: |x| of the row into a float buffer, iota indices, std::nth_element with
//                 the comparator |x[a]| > |x[b]|, then indices + values of the first k (unordered)
// Wall-clock time (UseRealTime). GB/s counts x read plus the outputs written.
#include <benchmark/benchmark.h>

#include <frugal/sparsify/topk.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using frugal::matrix_view;

template <class T>
void bench(benchmark::State& state, int rows, int n, const std::string& variant) {
  const int k = n / 2;
  std::vector<T> x(static_cast<std::size_t>(rows) * n);
  std::mt19937 rng(42);
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& v : x) v = frugal::from_float<T>(d(rng));
  std::vector<std::int32_t> idx(static_cast<std::size_t>(rows) * k);
  std::vector<T> val(idx.size());
  std::vector<float> kth(rows);
  matrix_view<const T> xv(x.data(), rows, n);
  matrix_view<std::int32_t> iv(idx.data(), rows, k);
  matrix_view<T> vv(val.data(), rows, k);
  std::vector<float> mag(n);
  std::vector<std::int32_t> order(n);
  for (auto _ : state) {
    if (variant == "frugal_1t") {
      frugal::topk(frugal::cpu.with_threads(1), xv, k, iv, vv);
    } else if (variant == "frugal") {
      frugal::topk(frugal::cpu, xv, k, iv, vv);
    } else if (variant == "select_1t") {
      frugal::topk_select(frugal::cpu.with_threads(1), xv, k, kth.data());
    } else {
      for (int r = 0; r < rows; ++r) {
        const T* row = x.data() + static_cast<std::size_t>(r) * n;
        for (int i = 0; i < n; ++i) mag[i] = std::fabs(frugal::to_float(row[i]));
        std::iota(order.begin(), order.end(), 0);
        std::nth_element(order.begin(), order.begin() + (k - 1), order.end(),
                         [&](std::int32_t a, std::int32_t b) { return mag[a] > mag[b]; });
        for (int j = 0; j < k; ++j) {
          idx[static_cast<std::size_t>(r) * k + j] = order[j];
          val[static_cast<std::size_t>(r) * k + j] = row[order[j]];
        }
      }
    }
    benchmark::DoNotOptimize(idx.data());
    benchmark::DoNotOptimize(kth.data());
    benchmark::ClobberMemory();
  }
  const double bytes = static_cast<double>(rows) * n * sizeof(T) +
                       (variant == "select_1t" ? rows * 4.0 : static_cast<double>(rows) * k * (4 + sizeof(T)));
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = variant == "frugal" ? frugal::cpu.num_threads() : 1;
}

template <class T>
void register_all() {
  const std::string dt = frugal::dtype_traits<T>::name;
  for (int rows : {1, 16, 256})
    for (int n : {768, 4096, 11008})
      for (const char* v : {"frugal_1t", "frugal", "select_1t", "nth_element"}) {
        if (rows == 1 && std::string(v) == "frugal") continue;  // one row never uses more than one thread
        const std::string name = "topk/cpu/" + dt + "/" + std::to_string(rows) + "x" + std::to_string(n) + "/" + v;
        benchmark::RegisterBenchmark(name.c_str(), [rows, n, v](benchmark::State& s) { bench<T>(s, rows, n, v); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
}

}  // namespace

int main(int argc, char** argv) {
  register_all<float>();
  register_all<frugal::half>();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
