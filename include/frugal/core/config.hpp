// frugal/core/config.hpp — version, ABI namespace and portability macros.
//
// Every public symbol lives in `frugal::v0_1` through an inline namespace, so two inference engines that vendor
// different frugal versions can be linked into one process without violating the one-definition rule
// (the nlohmann/json and CUB_WRAPPED_NAMESPACE technique). Code refers to it as `frugal::` only.
#pragma once

#define FRUGAL_VERSION_MAJOR 0
#define FRUGAL_VERSION_MINOR 1
#define FRUGAL_VERSION_PATCH 0
#define FRUGAL_VERSION_STRING "0.1.0"

#define FRUGAL_NAMESPACE_BEGIN \
  namespace frugal {           \
  inline namespace v0_1 {
#define FRUGAL_NAMESPACE_END \
  }                          \
  }

// Functions usable from both host and device code. Plain host compilers see nothing.
#if defined(__CUDACC__)
#define FRUGAL_HOST_DEVICE __host__ __device__
#define FRUGAL_FORCEINLINE __forceinline__
#else
#define FRUGAL_HOST_DEVICE
#define FRUGAL_FORCEINLINE inline __attribute__((always_inline))
#endif

// True in a translation unit compiled by nvcc (host and device passes alike).
#if defined(__CUDACC__)
#define FRUGAL_HAS_CUDA 1
#else
#define FRUGAL_HAS_CUDA 0
#endif
