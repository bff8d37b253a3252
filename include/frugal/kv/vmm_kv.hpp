// frugal/kv/vmm_kv.hpp — a KV cache that is contiguous in virtual memory and backed by physical pages on demand
// (vAttention, Prabhu et al., ASPLOS'25), readable by the contiguous decode/prefill attention kernels unchanged.
//
// At construction one virtual range is reserved (cuMemAddressReserve) for every layer's K and V:
//   [num_layers][2 (K, V)][max_seqs][slot_bytes],  slot_bytes = round_up(max_len * kv_heads * head_dim * sizeof(T),
//   page_bytes), page_bytes = the device's allocation granularity (2 MB on current GPUs).
// No physical memory is used until reserve(slot, tokens) maps pages (cuMemCreate + cuMemMap + cuMemSetAccess) so
// that positions [0, tokens) of that slot are backed in every layer, K and V. release(slot) unmaps them
// (cuMemUnmap); the physical pages go to a pool (a LIFO stack, as vAttention) that later reserves reuse; trim()
// gives the pool back to the driver. layer(l) is a contiguous_kv_view<T> [max_seqs, max_len, kv_heads, head_dim]
// (seq_stride = slot_bytes / sizeof(T)) for kv_append / decode_attention / prefill_attention with frugal::cuda.
// The granularity is the waste unit: a slot wastes < page_bytes per layer and K/V (vAttention §7.4: 2 MB pages
// need a modified driver to go smaller). No block table, no copy-on-write (use block_allocator + paged_kv for that).
//
// Synchronisation: reserve/release/trim are host calls into the driver (not stream-ordered, not capturable in a CUDA
// Graph). Reserve before enqueuing work that writes the new positions; release only when no queued work touches
// the slot (e.g. after a stream synchronize). Reading positions of a slot that are not mapped is an illegal access.
//
// The driver API is reached through cudaGetDriverEntryPointByVersion (the program does not link libcuda), so
// binaries start on machines without a driver; vmm_kv_cache::supported() is false there and the constructor throws.
// Errors (frugal::error): no driver / device without VMM support, bad shapes, slot or token count out of range, any
// failed driver call (named, with its CUresult). reserve() is all-or-nothing: on failure the pages it mapped are
// unmapped again and the slot is as before. CUDA only: construct it in a translation unit compiled by nvcc.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "kv_view.hpp"

#if defined(__CUDACC__)
#include "detail/vmm_kv_cuda.cuh"
#endif

FRUGAL_NAMESPACE_BEGIN

template <class T>
class vmm_kv_cache {
  static_assert(detail::kv_dtype_ok_v<T>, "frugal kv supports float, frugal::half, frugal::bfloat16");

 public:
  struct options {
    std::int32_t max_seqs = 0;    //!< slots (sequences held at once)
    std::int32_t max_len = 0;     //!< tokens per slot (virtual)
    std::int32_t kv_heads = 0;
    std::int32_t head_dim = 0;
    std::int32_t num_layers = 1;
    int device = -1;              //!< -1: the current device
  };

  //! True when the device (default: current) supports CUDA virtual memory management; never throws.
  static bool supported(int device = -1) {
    FRUGAL_REQUIRE_NVCC(T, "vmm_kv_cache");
#if defined(__CUDACC__)
    if (device < 0 && cudaGetDevice(&device) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return detail::vmm_supported(device);
#else
    (void)device;
    return false;
#endif
  }

  explicit vmm_kv_cache(const options& o) : o_(o) {
    FRUGAL_REQUIRE_NVCC(T, "vmm_kv_cache");
#if defined(__CUDACC__)
    constexpr const char* op = "vmm_kv_cache";
    FRUGAL_CHECK(o.max_seqs >= 1 && o.max_len >= 1 && o.kv_heads >= 1 && o.head_dim >= 1 && o.num_layers >= 1, op,
                 "max_seqs (=", o.max_seqs, "), max_len (=", o.max_len, "), kv_heads (=", o.kv_heads,
                 "), head_dim (=", o.head_dim, ") and num_layers (=", o.num_layers, ") must all be >= 1");
    FRUGAL_CHECK(static_cast<std::int64_t>(o.max_seqs) * o.max_len <= INT32_MAX, op,
                 "max_seqs * max_len must be < 2^31");
    const detail::vmm_driver& d = detail::vmm_driver::get();
    FRUGAL_CHECK(d.error.empty(), op, "CUDA virtual memory is unavailable: ", d.error);
    if (o_.device < 0) FRUGAL_CUDA_CHECK(cudaGetDevice(&o_.device), op);
    FRUGAL_CHECK(detail::vmm_supported(o_.device), op, "device ", o_.device,
                 " does not support CUDA virtual memory management (CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_"
                 "SUPPORTED is 0)");
    FRUGAL_CUDA_CHECK(cudaFree(nullptr), op);  // the primary context exists before the driver calls
    const CUmemAllocationProp prop = detail::vmm_prop(o_.device);
    std::size_t gran = 0;
    d.check(d.granularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED), op, "cuMemGetAllocationGranularity");
    page_ = gran;
    row_bytes_ = static_cast<std::size_t>(o.kv_heads) * static_cast<std::size_t>(o.head_dim) * sizeof(T);
    pages_per_slot_ = (static_cast<std::size_t>(o.max_len) * row_bytes_ + page_ - 1) / page_;
    slot_bytes_ = pages_per_slot_ * page_;
    reserved_ = static_cast<std::size_t>(o.num_layers) * 2 * static_cast<std::size_t>(o.max_seqs) * slot_bytes_;
    handles_.assign(static_cast<std::size_t>(o.num_layers) * 2 * static_cast<std::size_t>(o.max_seqs) * pages_per_slot_,
                    0);
    mapped_.assign(static_cast<std::size_t>(o.max_seqs), 0);
    CUdeviceptr base = 0;
    d.check(d.address_reserve(&base, reserved_, page_, 0, 0), op, "cuMemAddressReserve");
    base_ = static_cast<std::uint64_t>(base);
#endif
  }

  ~vmm_kv_cache() { destroy(); }
  vmm_kv_cache(const vmm_kv_cache&) = delete;
  vmm_kv_cache& operator=(const vmm_kv_cache&) = delete;
  vmm_kv_cache(vmm_kv_cache&& o) noexcept { swap(o); }
  vmm_kv_cache& operator=(vmm_kv_cache&& o) noexcept {
    if (this != &o) {
      destroy();
      swap(o);
    }
    return *this;
  }

  //! Maps pages so that positions [0, tokens) of `slot` are backed in every layer (K and V). Never unmaps.
  void reserve(std::int32_t slot, std::int32_t tokens) {
    FRUGAL_REQUIRE_NVCC(T, "vmm_kv_cache::reserve");
#if defined(__CUDACC__)
    constexpr const char* op = "vmm_kv_cache::reserve";
    check_slot(op, slot);
    FRUGAL_CHECK(tokens >= 0 && tokens <= o_.max_len, op, "tokens (=", tokens, ") must be in [0, max_len=", o_.max_len,
                 "]");
    const std::size_t need = (static_cast<std::size_t>(tokens) * row_bytes_ + page_ - 1) / page_;
    const std::size_t have = mapped_[static_cast<std::size_t>(slot)];
    if (need <= have) return;
    const detail::vmm_driver& d = detail::vmm_driver::get();
    const CUmemAllocationProp prop = detail::vmm_prop(o_.device);
    CUmemAccessDesc access = {};
    access.location = prop.location;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    std::vector<std::pair<std::size_t, bool>> done;  // (handle index, created here) for the rollback
    done.reserve((need - have) * 2 * static_cast<std::size_t>(o_.num_layers));
    try {
      for (std::size_t p = have; p < need; ++p)
        for (std::int32_t l = 0; l < o_.num_layers; ++l)
          for (int kv = 0; kv < 2; ++kv) {
            const std::size_t hi = handle_index(l, kv, slot, p);
            bool created = false;
            unsigned long long h = 0;
            if (!pool_.empty()) {
              h = pool_.back();
              pool_.pop_back();
            } else {
              CUmemGenericAllocationHandle nh = 0;
              d.check(d.create(&nh, page_, &prop, 0), op, "cuMemCreate");
              h = static_cast<unsigned long long>(nh);
              created = true;
            }
            const CUdeviceptr va = static_cast<CUdeviceptr>(page_address(l, kv, slot, p));
            const CUresult mr = d.map(va, page_, 0, static_cast<CUmemGenericAllocationHandle>(h), 0);
            if (mr != CUDA_SUCCESS) {
              if (created) d.release(static_cast<CUmemGenericAllocationHandle>(h));
              else pool_.push_back(h);
              d.check(mr, op, "cuMemMap");
            }
            handles_[hi] = h;
            done.emplace_back(hi, created);
            const CUresult ar = d.set_access(va, page_, &access, 1);
            d.check(ar, op, "cuMemSetAccess");
          }
    } catch (...) {
      for (auto it = done.rbegin(); it != done.rend(); ++it) {  // undo, newest first
        const std::size_t hi = it->first;
        d.unmap(static_cast<CUdeviceptr>(address_of_index(hi)), page_);
        if (it->second) d.release(static_cast<CUmemGenericAllocationHandle>(handles_[hi]));
        else pool_.push_back(handles_[hi]);
        handles_[hi] = 0;
      }
      throw;
    }
    mapped_[static_cast<std::size_t>(slot)] = need;
    mapped_pages_ += (need - have) * 2 * static_cast<std::size_t>(o_.num_layers);
#else
    (void)slot, (void)tokens;
#endif
  }

  //! Unmaps every page of `slot`; the physical pages go to the pool. No queued work may touch the slot.
  void release(std::int32_t slot) {
    FRUGAL_REQUIRE_NVCC(T, "vmm_kv_cache::release");
#if defined(__CUDACC__)
    constexpr const char* op = "vmm_kv_cache::release";
    check_slot(op, slot);
    const detail::vmm_driver& d = detail::vmm_driver::get();
    const std::size_t have = mapped_[static_cast<std::size_t>(slot)];
    pool_.reserve(pool_.size() + have * 2 * static_cast<std::size_t>(o_.num_layers));
    for (std::size_t p = have; p-- > 0;)
      for (std::int32_t l = 0; l < o_.num_layers; ++l)
        for (int kv = 0; kv < 2; ++kv) {
          const std::size_t hi = handle_index(l, kv, slot, p);
          d.check(d.unmap(static_cast<CUdeviceptr>(page_address(l, kv, slot, p)), page_), op, "cuMemUnmap");
          pool_.push_back(handles_[hi]);
          handles_[hi] = 0;
        }
    mapped_pages_ -= have * 2 * static_cast<std::size_t>(o_.num_layers);
    mapped_[static_cast<std::size_t>(slot)] = 0;
#else
    (void)slot;
#endif
  }

  //! Returns the pooled (unmapped) physical pages to the driver.
  void trim() {
    FRUGAL_REQUIRE_NVCC(T, "vmm_kv_cache::trim");
#if defined(__CUDACC__)
    const detail::vmm_driver& d = detail::vmm_driver::get();
    while (!pool_.empty()) {
      d.check(d.release(static_cast<CUmemGenericAllocationHandle>(pool_.back())), "vmm_kv_cache::trim", "cuMemRelease");
      pool_.pop_back();
    }
#endif
  }

  //! Positions of `slot` currently backed by physical memory (<= max_len).
  std::int32_t mapped_tokens(std::int32_t slot) const {
    check_slot("vmm_kv_cache::mapped_tokens", slot);
    const std::size_t bytes = mapped_[static_cast<std::size_t>(slot)] * page_;
    return static_cast<std::int32_t>(std::min<std::size_t>(bytes / row_bytes_, static_cast<std::size_t>(o_.max_len)));
  }
  std::size_t page_bytes() const noexcept { return page_; }
  std::size_t mapped_bytes() const noexcept { return mapped_pages_ * page_; }
  std::size_t pooled_bytes() const noexcept { return pool_.size() * page_; }
  std::size_t reserved_bytes() const noexcept { return reserved_; }
  const options& shape() const noexcept { return o_; }

  //! Layer l as a contiguous view [max_seqs, max_len, kv_heads, head_dim] (device memory).
  contiguous_kv_view<T> layer(std::int32_t l) const {
    FRUGAL_CHECK(l >= 0 && l < o_.num_layers, "vmm_kv_cache::layer", "layer (=", l, ") must be in [0, ",
                 o_.num_layers, ")");
    return contiguous_kv_view<T>(reinterpret_cast<T*>(page_address(l, 0, 0, 0)),
                                 reinterpret_cast<T*>(page_address(l, 1, 0, 0)), o_.max_seqs, o_.max_len, o_.kv_heads,
                                 o_.head_dim, static_cast<std::int64_t>(slot_bytes_ / sizeof(T)));
  }

 private:
  void check_slot(const char* op, std::int32_t slot) const {
    FRUGAL_CHECK(slot >= 0 && slot < o_.max_seqs, op, "slot (=", slot, ") must be in [0, max_seqs=", o_.max_seqs, ")");
  }
  std::size_t handle_index(std::int32_t l, int kv, std::int32_t slot, std::size_t p) const {
    return ((static_cast<std::size_t>(l) * 2 + static_cast<std::size_t>(kv)) * static_cast<std::size_t>(o_.max_seqs) +
            static_cast<std::size_t>(slot)) * pages_per_slot_ + p;
  }
  std::uint64_t page_address(std::int32_t l, int kv, std::int32_t slot, std::size_t p) const {
    return address_of_index(handle_index(l, kv, slot, p));
  }
  std::uint64_t address_of_index(std::size_t hi) const { return base_ + hi * page_; }

  void destroy() noexcept {
#if defined(__CUDACC__)
    if (!base_) return;
    const detail::vmm_driver& d = detail::vmm_driver::get();
    for (std::size_t i = 0; i < handles_.size(); ++i)
      if (handles_[i]) {
        d.unmap(static_cast<CUdeviceptr>(address_of_index(i)), page_);
        d.release(static_cast<CUmemGenericAllocationHandle>(handles_[i]));
      }
    for (auto h : pool_) d.release(static_cast<CUmemGenericAllocationHandle>(h));
    d.address_free(static_cast<CUdeviceptr>(base_), reserved_);
    base_ = 0;
    handles_.clear();
    pool_.clear();
#endif
  }
  void swap(vmm_kv_cache& o) noexcept {
    std::swap(o_, o.o_);
    std::swap(page_, o.page_);
    std::swap(row_bytes_, o.row_bytes_);
    std::swap(pages_per_slot_, o.pages_per_slot_);
    std::swap(slot_bytes_, o.slot_bytes_);
    std::swap(reserved_, o.reserved_);
    std::swap(base_, o.base_);
    std::swap(mapped_pages_, o.mapped_pages_);
    handles_.swap(o.handles_);
    mapped_.swap(o.mapped_);
    pool_.swap(o.pool_);
  }

  options o_{};
  std::size_t page_ = 1;
  std::size_t row_bytes_ = 1;
  std::size_t pages_per_slot_ = 0;
  std::size_t slot_bytes_ = 0;
  std::size_t reserved_ = 0;
  std::uint64_t base_ = 0;
  std::size_t mapped_pages_ = 0;
  std::vector<unsigned long long> handles_;  // [layers, 2, max_seqs, pages_per_slot] physical handle (0: unmapped)
  std::vector<std::size_t> mapped_;          // [max_seqs] pages mapped per (layer, K/V) of each slot
  std::vector<unsigned long long> pool_;     // unmapped physical pages, LIFO
};

FRUGAL_NAMESPACE_END
