// frugal/kv/detail/vmm_kv_cuda.cuh — the CUDA driver virtual-memory calls behind vmm_kv_cache (nvcc only).
//
// The driver API is reached through the runtime (cudaGetDriverEntryPointByVersion), never linked: a program that
// links libcuda cannot even start on a machine without the driver (CI), while this one starts everywhere and
// reports "no CUDA driver" as a frugal::error only when a vmm_kv_cache is actually constructed. <cuda.h> is included
// for the types only.
#pragma once

#if !defined(__CUDACC__)
#error "frugal/kv/detail/vmm_kv_cuda.cuh is CUDA code: include it only from a translation unit compiled by nvcc."
#endif

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "../../core/detail/cuda_common.cuh"
#include "../../core/error.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

//! Driver entry points used by vmm_kv_cache, resolved once per process.
struct vmm_driver {
  decltype(&::cuGetErrorName) get_error_name = nullptr;
  decltype(&::cuDeviceGet) device_get = nullptr;
  decltype(&::cuDeviceGetAttribute) device_get_attribute = nullptr;
  decltype(&::cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&::cuMemAddressReserve) address_reserve = nullptr;
  decltype(&::cuMemAddressFree) address_free = nullptr;
  decltype(&::cuMemCreate) create = nullptr;
  decltype(&::cuMemRelease) release = nullptr;
  decltype(&::cuMemMap) map = nullptr;
  decltype(&::cuMemUnmap) unmap = nullptr;
  decltype(&::cuMemSetAccess) set_access = nullptr;
  std::string error;  // why loading failed (empty when all entry points were found)

  static const vmm_driver& get() {
    static const vmm_driver d = [] {
      vmm_driver r;
      int count = 0;
      const cudaError_t e = cudaGetDeviceCount(&count);
      if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        r.error = concat("no usable CUDA device/driver (cudaGetDeviceCount: ", cudaGetErrorName(e), ")");
        return r;
      }
      auto load = [&r](const char* name, auto& fn) {
        if (!r.error.empty()) return;
        void* p = nullptr;
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        const cudaError_t err = cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &q);
        if (err != cudaSuccess || q != cudaDriverEntryPointSuccess || !p) {
          cudaGetLastError();
          r.error = concat("driver entry point ", name, " not found (", cudaGetErrorName(err), ")");
          return;
        }
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
      };
      load("cuGetErrorName", r.get_error_name);
      load("cuDeviceGet", r.device_get);
      load("cuDeviceGetAttribute", r.device_get_attribute);
      load("cuMemGetAllocationGranularity", r.granularity);
      load("cuMemAddressReserve", r.address_reserve);
      load("cuMemAddressFree", r.address_free);
      load("cuMemCreate", r.create);
      load("cuMemRelease", r.release);
      load("cuMemMap", r.map);
      load("cuMemUnmap", r.unmap);
      load("cuMemSetAccess", r.set_access);
      return r;
    }();
    return d;
  }

  void check(CUresult r, const char* op, const char* what) const {
    if (r == CUDA_SUCCESS) return;
    const char* name = "?";
    if (get_error_name) get_error_name(r, &name);
    fail(op, what, " failed: ", name, " (", static_cast<int>(r), ")");
  }
};

//! Whether `device` supports the virtual-memory management API; false (never throws) without a driver.
inline bool vmm_supported(int device) {
  const vmm_driver& d = vmm_driver::get();
  if (!d.error.empty()) return false;
  CUdevice dev = 0;
  int v = 0;
  if (d.device_get(&dev, device) != CUDA_SUCCESS) return false;
  if (d.device_get_attribute(&v, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev) != CUDA_SUCCESS)
    return false;
  return v != 0;
}

inline CUmemAllocationProp vmm_prop(int device) {
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}

}  // namespace detail
FRUGAL_NAMESPACE_END
