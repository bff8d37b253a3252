// frugal/core/parallel.hpp — fork-join over a range on the CPU, on a persistent process-wide worker pool.
//
// parallel_for(tag, n, grain, fn) splits [0, n) into at most tag.num_threads() contiguous chunks of at least
// `grain` items, runs fn(begin, end) on each and returns when all have run. Exceptions thrown by fn are rethrown
// on the calling thread (the first one wins). The chunk boundaries depend only on (n, grain, num_threads), never on
// which thread runs a chunk, so results that depend on the chunking (e.g. per-chunk partial sums added in chunk
// order) are the same from call to call. A chunk must not wait for another chunk of the same call: chunks may run
// one after another on one thread.
//
// Why a pool: creating and joining a std::thread per call cost ~70 us on the 2-vCPU development machine
// (benchmarks/core/bench_parallel.cpp), and a CPU decode step of the GPT-2 example makes such a call for every GEMV,
// attention and KV append of every layer (docs/results.md measures the step before and after). The pool's workers
// are started on first use (as many as the largest num_threads() - 1 asked for, at most 255), take chunks by an
// atomic claim on one 64-bit state word (epoch | chunks | claimed), spin for a short while after each job
// (FRUGAL_POOL_SPIN_US, default 200 us; 0 = block at once) and then block on a condition variable (not
// std::atomic<uint64_t>::wait: libstdc++ 12 emulates it for 64-bit words with a proxy counter). A worker is handed
// the epoch current when it is created (see grow): two clean-clone CI runs hung at exit because a worker that
// started late took the shutdown's epoch as already seen (tests/core/pool_exit_probe.cpp). The calling thread
// claims chunks too, so a call finishes even while every worker is asleep or busy elsewhere. A call made while the
// pool is running another call (from another thread, or nested inside a chunk) runs on threads created for it, as
// before the pool — same chunks, same results.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "config.hpp"
#include "device.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

//! The process-wide worker pool behind parallel_for (see the header comment). One job at a time.
class worker_pool {
 public:
  static constexpr int max_workers = 255;

  static worker_pool& instance() {
    static worker_pool pool;
    return pool;
  }

  //! Runs chunks [0, chunks) of `body` (body(c) for each c) on the caller and the workers; false (nothing run) when
  //! the pool is busy with another call. Rethrows the first exception of a chunk.
  template <class Body>
  bool run(int chunks, Body& body) {
    if (busy_.exchange(true, std::memory_order_acquire)) return false;  // (also a nested call from a chunk)
    struct release {
      std::atomic<bool>& b;
      ~release() { b.store(false, std::memory_order_release); }
    } unlock{busy_};
    grow(chunks - 1);
    job_body_ = &body;
    job_call_ = [](void* b, int c) { (*static_cast<Body*>(b))(c); };
    done_.store(0, std::memory_order_relaxed);
    const std::uint64_t e = (epoch(state_.load(std::memory_order_relaxed)) + 1) & 0xffffffffu;
    state_.store(e << 32 | static_cast<std::uint64_t>(chunks) << 16, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all();
    while (claim_and_run(e)) {
    }
    // Wait for the chunks the workers claimed: they read this call's body until they count themselves done.
    for (int spins = 0; done_.load(std::memory_order_acquire) < chunks; ++spins) {
      if (spins < 4096)
        cpu_relax();
      else
        std::this_thread::yield();
    }
    job_body_ = nullptr;
    if (std::exception_ptr err = std::exchange(error_, nullptr)) std::rethrow_exception(err);
    return true;
  }

  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  ~worker_pool() {
    stop_.store(true, std::memory_order_seq_cst);
    state_.fetch_add(std::uint64_t{1} << 32, std::memory_order_seq_cst);  // a new epoch with no chunks: wakes all
    wake_all();
    for (auto& t : workers_) t.join();
  }

 private:
  worker_pool() {
    if (const char* e = std::getenv("FRUGAL_POOL_SPIN_US")) spin_us_ = std::max(0, std::atoi(e));
  }

  static std::uint32_t epoch(std::uint64_t s) { return static_cast<std::uint32_t>(s >> 32); }

  // After a (seq_cst) change of state_'s epoch. A sleeper counts itself in sleepers_ and then checks the epoch under
  // sleep_mutex_ before it waits, so either it sees the new epoch or it is waiting when this notifies (taking the
  // mutex orders the two); a poster that reads sleepers_ == 0 comes before the count, so the check sees the epoch.
  void wake_all() {
    std::lock_guard<std::mutex> g(sleep_mutex_);
    sleep_cv_.notify_all();
  }

  // Takes the next unclaimed chunk of epoch e, if any, and runs it. A worker reads the job's fields only after a
  // successful claim: the caller cannot return (and post another job) before that chunk is counted done.
  bool claim_and_run(std::uint64_t e) {
    std::uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t chunks = s >> 16 & 0xffffu, claimed = s & 0xffffu;
      if (epoch(s) != e || claimed >= chunks) return false;
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        try {
          job_call_(job_body_, static_cast<int>(claimed));
        } catch (...) {
          std::lock_guard<std::mutex> g(error_mutex_);
          if (!error_) error_ = std::current_exception();
        }
        done_.fetch_add(1, std::memory_order_release);
        return true;
      }
    }
  }

  // Called before the job's epoch is posted. A new worker is handed the epoch of now, not left to read it when its
  // thread starts: a thread that starts late (after this job, or after the destructor's closing epoch) would take
  // that later epoch as already seen and wait for a change that never comes, and the destructor's join would hang.
  void grow(int want) {
    want = std::min(want, max_workers);
    const std::uint32_t now = epoch(state_.load(std::memory_order_relaxed));
    while (static_cast<int>(workers_.size()) < want) {
      try {
        workers_.emplace_back([this, now] { work(now); });
      } catch (...) {  // no more threads: the caller and the existing workers run every chunk
        return;
      }
    }
  }

  void work(std::uint32_t seen) {
    for (;;) {
      std::uint64_t s = state_.load(std::memory_order_acquire);
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
      for (int i = 0; epoch(s) == seen; ++i) {
        if ((i & 255) == 255 && std::chrono::steady_clock::now() >= until) {
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          {
            std::unique_lock<std::mutex> lock(sleep_mutex_);
            sleep_cv_.wait(lock, [&] { return epoch(state_.load(std::memory_order_seq_cst)) != seen; });
          }
          sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        } else {
          cpu_relax();
        }
        s = state_.load(std::memory_order_acquire);
      }
      if (stop_.load(std::memory_order_acquire)) return;
      seen = epoch(s);
      while (claim_and_run(seen)) {
      }
    }
  }

  std::atomic<bool> busy_{false};        // one job at a time
  std::atomic<std::uint64_t> state_{0};  // epoch (32 bits) | chunks (16) | chunks claimed (16)
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::mutex sleep_mutex_;  // with sleep_cv_: where idle workers block (see wake_all)
  std::condition_variable sleep_cv_;
  std::atomic<bool> stop_{false};
  void* job_body_ = nullptr;
  void (*job_call_)(void*, int) = nullptr;
  std::mutex error_mutex_;
  std::exception_ptr error_;
  int spin_us_ = 200;
  std::vector<std::thread> workers_;
};

//! The number of chunks parallel_for and parallel_for_threads cut [0, n) into (n > 0): at most num_threads(), each of
//! at least `grain` items; chunk c is [n·c / chunks, n·(c + 1) / chunks).
inline std::int64_t parallel_chunks(cpu_t tag, std::int64_t n, std::int64_t grain) {
  grain = std::max<std::int64_t>(grain, 1);
  return std::min<std::int64_t>(tag.num_threads(), (n + grain - 1) / grain);
}

//! The same chunks on threads created for this call and joined before it returns (no pool): parallel_for's
//! fallback, and the baseline of benchmarks/core/bench_parallel.cpp.
template <class F>
void parallel_for_threads(cpu_t tag, std::int64_t n, std::int64_t grain, F&& fn) {
  if (n <= 0) return;
  const std::int64_t chunks = parallel_chunks(tag, n, grain);
  std::exception_ptr first;
  std::mutex m;
  auto run = [&](std::int64_t c) {
    try {
      fn(n * c / chunks, n * (c + 1) / chunks);
    } catch (...) {
      std::lock_guard<std::mutex> lock(m);
      if (!first) first = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(std::max<std::int64_t>(chunks - 1, 0)));
  for (std::int64_t c = 1; c < chunks; ++c) pool.emplace_back(run, c);
  run(0);
  for (auto& t : pool) t.join();
  if (first) std::rethrow_exception(first);
}

template <class F>
void parallel_for(cpu_t tag, std::int64_t n, std::int64_t grain, F&& fn) {
  if (n <= 0) return;
  const std::int64_t chunks = parallel_chunks(tag, n, grain);
  if (chunks <= 1) {
    fn(std::int64_t{0}, n);
    return;
  }
  if (chunks <= worker_pool::max_workers + 1) {
    auto body = [&](int c) { fn(n * c / chunks, n * (c + 1) / chunks); };
    if (worker_pool::instance().run(static_cast<int>(chunks), body)) return;
  }
  // The pool is busy (a concurrent or nested call) or more chunks than it serves: threads of this call only.
  parallel_for_threads(tag, n, grain, fn);
}

}  // namespace detail
FRUGAL_NAMESPACE_END
