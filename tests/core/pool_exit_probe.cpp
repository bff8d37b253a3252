// pool_exit_probe [threads] — one short parallel_for on the worker pool, then exit at once.
//
// Run many times by the ctest `core_pool_exit` (tests/core/pool_exit.cmake). The call is so short that the calling
// thread runs every chunk before the workers it started are scheduled, so the workers first run while (or after) the
// process tears the pool down. A worker that read the pool's epoch only when it started took the destructor's closing
// epoch as already seen and slept forever; the join in the destructor hung, and so did the process (a clean-clone CI
// run of test_rotation_covariance timed out at 900 s after all its cases passed).
#include <atomic>
#include <cstdlib>

#include "frugal/core/parallel.hpp"

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 16;
  std::atomic<std::int64_t> covered{0};
  frugal::detail::parallel_for(frugal::cpu.with_threads(threads), threads, 1,
                               [&](std::int64_t b, std::int64_t e) { covered += e - b; });
  return covered == threads ? 0 : 1;
}
