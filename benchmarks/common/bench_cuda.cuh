// Shared CUDA benchmark helpers: event timing for UseManualTime, L2 flushing, and the bandwidth counter.
//
//   frugal_bench::l2_flusher flush;            // once per benchmark
//   for (auto _ : state) {
//     flush.flush();                           // evict L2 (50 MB on H100) so weights come from HBM
//     frugal_bench::cuda_timer t;              // records start on the stream
//     launch();                                // the work being measured
//     state.SetIterationTime(t.seconds());     // stop, sync, elapsed
//   }
//   frugal_bench::set_bytes(state, bytes_touched_per_iteration);   // GB/s counter
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace frugal_bench {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

inline bool have_gpu() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();
  return ok;
}

class l2_flusher {
 public:
  l2_flusher() {
    int dev = 0, l2 = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev), "L2 size");
    bytes_ = static_cast<size_t>(l2) * 2;
    check(cudaMalloc(&buf_, bytes_), "cudaMalloc(l2 flush)");
  }
  ~l2_flusher() { cudaFree(buf_); }
  void flush(cudaStream_t s = nullptr) { check(cudaMemsetAsync(buf_, 0, bytes_, s), "l2 flush"); }

 private:
  void* buf_ = nullptr;
  size_t bytes_ = 0;
};

class cuda_timer {
 public:
  explicit cuda_timer(cudaStream_t s = nullptr) : s_(s) {
    cudaEventCreate(&a_);
    cudaEventCreate(&b_);
    cudaEventRecord(a_, s_);
  }
  ~cuda_timer() {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  double seconds() {
    cudaEventRecord(b_, s_);
    check(cudaEventSynchronize(b_), "cuda_timer");
    float ms = 0;
    cudaEventElapsedTime(&ms, a_, b_);
    return ms * 1e-3;
  }

 private:
  cudaStream_t s_;
  cudaEvent_t a_, b_;
};

//! Spins one thread for `ns` nanoseconds (%globaltimer). Launched right before the start event, it keeps the GPU
//! busy while the host enqueues the timed work, so the measurement is GPU time without the host's launch latency.
static __global__ void delay_kernel(unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

//! Reports bytes/s over the bytes actually touched per iteration (Google Benchmark shows it as GB/s).
inline void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace frugal_bench
