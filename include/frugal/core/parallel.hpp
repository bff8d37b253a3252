// frugal/core/parallel.hpp — fork-join over a range on the CPU, with no global thread pool.
//
// parallel_for(tag, n, grain, fn) splits [0, n) into at most tag.num_threads() contiguous chunks of at least
// `grain` items, runs fn(begin, end) on each (the calling thread takes the first chunk) and joins. Exceptions
// thrown by fn are rethrown on the calling thread (the first one wins).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "config.hpp"
#include "device.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

template <class F>
void parallel_for(cpu_t tag, std::int64_t n, std::int64_t grain, F&& fn) {
  if (n <= 0) return;
  grain = std::max<std::int64_t>(grain, 1);
  const std::int64_t chunks = std::min<std::int64_t>(tag.num_threads(), (n + grain - 1) / grain);
  if (chunks <= 1) {
    fn(std::int64_t{0}, n);
    return;
  }
  std::exception_ptr first;
  std::mutex m;
  auto run = [&](std::int64_t c) {
    const std::int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    try {
      fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(m);
      if (!first) first = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(chunks - 1));
  for (std::int64_t c = 1; c < chunks; ++c) pool.emplace_back(run, c);
  run(0);
  for (auto& t : pool) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace detail
FRUGAL_NAMESPACE_END
