// frugal/core/workspace.hpp — the workspace convention (CUB temporary storage, without the double call).
//
// An algorithm that needs scratch memory exposes `<algo>_workspace_bytes(tag, shapes...)` and takes a
// `workspace{ptr, bytes}` of caller memory (device memory for frugal::cuda). frugal never allocates on a hot path.
// `workspace_carver` hands out aligned sub-buffers of one workspace in a fixed order, so the size query and the
// algorithm agree by construction: both run the same sequence of `take<T>(count)` calls.
#pragma once

#include <cstddef>
#include <cstdint>

#include "config.hpp"
#include "error.hpp"

FRUGAL_NAMESPACE_BEGIN

struct workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

namespace detail {
inline constexpr std::size_t workspace_alignment = 256;  // cudaMalloc's alignment; also keeps 16-byte vector loads legal

//! Carves a workspace; with a null base it only counts (the *_workspace_bytes path).
class workspace_carver {
 public:
  explicit workspace_carver(workspace ws = {}) : base_(static_cast<std::byte*>(ws.data)), cap_(ws.bytes) {}
  template <class T>
  T* take(std::size_t count) {
    offset_ = (offset_ + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += count * sizeof(T);
    return p;
  }
  std::size_t bytes() const { return offset_; }
  //! Throws when the caller's workspace is smaller than what was taken.
  void check(const char* op) const {
    FRUGAL_CHECK(base_ != nullptr || offset_ == 0, op, "workspace is null but ", offset_, " bytes are needed");
    FRUGAL_CHECK(offset_ <= cap_, op, "workspace too small: ", cap_, " bytes given, ", offset_, " needed");
  }

 private:
  std::byte* base_;
  std::size_t cap_;
  std::size_t offset_ = 0;
};
}  // namespace detail

FRUGAL_NAMESPACE_END
