// The fixed cost of one detail::parallel_for call on the CPU: the persistent worker pool against threads created
// and joined per call (parallel_for_threads, what parallel_for did before the pool), in the same process.
//
// Names: parallel/cpu/<work>/t<threads>/<variant>
//   work      empty: every chunk returns at once (the pure fork-join cost); sum64k: the chunks sum 64 Ki floats
//             between them (a serial add chain per chunk: some work whose cost is the same in both variants)
//   variant   pool (parallel_for) | threads (parallel_for_threads)
// Wall-clock time per call, mean over the iterations Google Benchmark picks, 5 repetitions.
#include <benchmark/benchmark.h>

#include <frugal/core/parallel.hpp>

#include <string>
#include <vector>

namespace {

void run(benchmark::State& state, bool pool, int threads, std::int64_t items) {
  const auto tag = frugal::cpu.with_threads(threads);
  std::vector<float> data(static_cast<std::size_t>(items ? items : 1), 1.f);
  std::vector<float> part(static_cast<std::size_t>(threads), 0.f);
  const std::int64_t n = items ? items : threads;
  auto body = [&](std::int64_t b, std::int64_t e) {
    float s = 0.f;
    if (items)
      for (std::int64_t i = b; i < e; ++i) s += data[static_cast<std::size_t>(i)];
    part[static_cast<std::size_t>(b * threads / n)] = s;
  };
  const std::int64_t grain = items ? items / threads : 1;
  for (auto _ : state) {
    if (pool)
      frugal::detail::parallel_for(tag, n, grain, body);
    else
      frugal::detail::parallel_for_threads(tag, n, grain, body);
    benchmark::DoNotOptimize(part.data());
  }
  state.counters["threads"] = threads;
}

}  // namespace

int main(int argc, char** argv) {
  for (int threads : {2, 4})
    for (std::int64_t items : {std::int64_t{0}, std::int64_t{1} << 16})
      for (bool pool : {true, false}) {
        const std::string name = std::string("parallel/cpu/") + (items ? "sum64k" : "empty") + "/t" +
                                 std::to_string(threads) + "/" + (pool ? "pool" : "threads");
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { run(st, pool, threads, items); })
            ->Unit(benchmark::kMicrosecond)
            ->Repetitions(5)
            ->ReportAggregatesOnly(true);
      }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
