// frugal/core/detail/cuda_common.cuh — what every CUDA implementation in frugal shares (nvcc only).
//
// - FRUGAL_CUDA_CHECK(expr, op): turns a failed runtime call into frugal::error naming the operation.
// - cuda_type_t<T>: frugal::half -> __half, frugal::bfloat16 -> __nv_bfloat16 (bit-compatible, so pointers are
//   reinterpret_cast at the launch boundary); load_f / store_f convert through float with the hardware intrinsics.
// - ceil_div and the launch-check helper.
#pragma once

#if !defined(__CUDACC__)
#error "frugal/core/detail/cuda_common.cuh is CUDA code: include it only from a translation unit compiled by nvcc."
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "../device.hpp"
#include "../dtype.hpp"
#include "../error.hpp"

static_assert(std::is_same_v<cudaStream_t, frugal::stream_t>, "frugal::stream_t must be cudaStream_t");
static_assert(sizeof(__half) == sizeof(frugal::half) && alignof(__half) == alignof(frugal::half));
static_assert(sizeof(__nv_bfloat16) == sizeof(frugal::bfloat16) && alignof(__nv_bfloat16) == alignof(frugal::bfloat16));

FRUGAL_NAMESPACE_BEGIN
namespace detail {

inline void cuda_check(cudaError_t e, const char* op, const char* what) {
  if (e != cudaSuccess)
    fail(op, what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

template <class T>
struct cuda_type {
  using type = T;
};
template <>
struct cuda_type<half> {
  using type = __half;
};
template <>
struct cuda_type<bfloat16> {
  using type = __nv_bfloat16;
};
template <class T>
using cuda_type_t = typename cuda_type<std::remove_cv_t<T>>::type;

//! The inverse: the frugal element type of a CUDA element type (__half -> half, __nv_bfloat16 -> bfloat16).
template <class C>
struct frugal_type {
  using type = C;
};
template <>
struct frugal_type<__half> {
  using type = half;
};
template <>
struct frugal_type<__nv_bfloat16> {
  using type = bfloat16;
};
template <class C>
using frugal_type_t = typename frugal_type<std::remove_cv_t<C>>::type;

//! Reinterprets a frugal element pointer as the CUDA element pointer (same bits).
template <class T>
auto as_cuda(T* p) {
  using C = std::conditional_t<std::is_const_v<T>, const cuda_type_t<T>, cuda_type_t<T>>;
  return reinterpret_cast<C*>(p);
}

__device__ __forceinline__ float load_f(float v) { return v; }
__device__ __forceinline__ float load_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float load_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T store_f(float v);
template <>
__device__ __forceinline__ float store_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half store_f<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 store_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

//! Programmatic dependent launch (sm_90): wait until the preceding kernel in the stream has completed and its
//! writes are visible / let the next kernel start its prologue. No-ops when the launch did not ask for it.
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void trigger_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

template <class I>
constexpr FRUGAL_HOST_DEVICE I ceil_div(I a, I b) {
  return (a + b - 1) / b;
}

//! Launches kernel<<<grid, block, smem, stream>>>(args...) with programmatic dependent launch allowed on sm_90+
//! devices (cudaLaunchKernelEx with cudaLaunchAttributeProgrammaticStreamSerialization): the kernel may be scheduled
//! while the previous kernel in the stream still runs, so it must call grid_dependency_wait() before reading what
//! that kernel writes. Plain launch on older devices. `cluster` other than 1 x 1 x 1: thread-block clusters of that
//! shape (sm_90 only; the grid a multiple of it). Errors: frugal::error naming `op`.
template <class... P, class... A>
void launch_pdl_cluster(const char* op, void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem,
                        cudaStream_t stream, dim3 cluster, A&&... args) {
  int dev = 0, major = 0;
  cuda_check(cudaGetDevice(&dev), op, "cudaGetDevice");
  cuda_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), op, "cudaDeviceGetAttribute");
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (major >= 9) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster.x;
    attr[n].val.clusterDim.y = cluster.y;
    attr[n].val.clusterDim.z = cluster.z;
    ++n;
  }
  cfg.attrs = n ? attr : nullptr;
  cfg.numAttrs = n;
  cuda_check(cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...), op, "cudaLaunchKernelEx");
}

//! launch_pdl_cluster without clusters.
template <class... P, class... A>
void launch_pdl(const char* op, void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream,
                A&&... args) {
  launch_pdl_cluster(op, kernel, grid, block, smem, stream, dim3(1, 1, 1), std::forward<A>(args)...);
}

//! Streams launched into must not be capturing an illegal operation; this checks the launch only (no sync), so it
//! is safe inside CUDA Graph capture.
inline void check_launch(const char* op, const char* kernel) { cuda_check(cudaGetLastError(), op, kernel); }

}  // namespace detail
FRUGAL_NAMESPACE_END

//! FRUGAL_CUDA_CHECK(cudaMemcpyAsync(...), "kv_append") throws frugal::error "frugal::kv_append: cudaMemcpyAsync(...)
//! failed: cudaErrorInvalidValue (invalid argument)".
#define FRUGAL_CUDA_CHECK(expr, op) ::frugal::detail::cuda_check((expr), (op), #expr)
