// frugal/core/device.hpp — device tags (Thrust-style execution policies).
//
// Every public algorithm takes a tag first: `frugal::cpu` or `frugal::cuda` (optionally `frugal::cuda.on(stream)`).
// The stream rides on the tag; frugal has no global stream, and no global state but the CPU worker pool
// (core/parallel.hpp). This header compiles without the CUDA Toolkit: `cudaStream_t` is `CUstream_st*`,
// forward-declared here exactly as the runtime declares it.
#pragma once

#include <cstdlib>
#include <thread>
#include <type_traits>

#include "config.hpp"

struct CUstream_st;  // the type behind cudaStream_t (global namespace, as in the CUDA runtime headers)

FRUGAL_NAMESPACE_BEGIN

using stream_t = CUstream_st*;  //!< identical to cudaStream_t

//! Host execution. `threads` = 0 means: FRUGAL_NUM_THREADS from the environment, else all hardware threads.
struct cpu_t {
  int threads = 0;
  constexpr cpu_t with_threads(int n) const { return cpu_t{n}; }
  int num_threads() const {
    if (threads > 0) return threads;
    if (const char* env = std::getenv("FRUGAL_NUM_THREADS")) {
      const int n = std::atoi(env);
      if (n > 0) return n;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw ? static_cast<int>(hw) : 1;
  }
};

//! CUDA execution on `stream` (the legacy default stream when null). Work is asynchronous unless documented.
struct cuda_t {
  stream_t stream = nullptr;
  constexpr cuda_t on(stream_t s) const { return cuda_t{s}; }
};

inline constexpr cpu_t cpu{};
inline constexpr cuda_t cuda{};

template <class Tag>
inline constexpr bool is_device_tag_v = std::is_same_v<Tag, cpu_t> || std::is_same_v<Tag, cuda_t>;

namespace detail {
template <class...>
inline constexpr bool dependent_false_v = false;
}  // namespace detail

FRUGAL_NAMESPACE_END

//! Placed in the body of a public CUDA overload: fails at compile time, with a sentence that says how to fix it,
//! when that overload is instantiated in a translation unit that nvcc does not compile.
#if defined(__CUDACC__)
#define FRUGAL_REQUIRE_NVCC(Dep, op)
#else
#define FRUGAL_REQUIRE_NVCC(Dep, op)                                                                            \
  static_assert(::frugal::detail::dependent_false_v<Dep>,                                                       \
                "frugal::" op "(frugal::cuda, ...) launches CUDA kernels: call it from a .cu file compiled by " \
                "nvcc (CMake: enable the CUDA language), or use frugal::cpu.")
#endif
