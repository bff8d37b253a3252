// frugal/core/view.hpp — non-owning views over strided row-major matrices and vectors.
//
// A view is (pointer, extents, row stride) and nothing else: it never owns or allocates. Public entry points take
// views and validate them once (`check_matrix`) so the implementations can trust the shapes.
#pragma once

#include <cstdint>
#include <type_traits>

#include "config.hpp"
#include "error.hpp"

FRUGAL_NAMESPACE_BEGIN

//! Row-major matrix view: element (r, c) is data[r * ld + c]; ld >= cols.
template <class T>
struct matrix_view {
  T* data = nullptr;          // [rows, ld]
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t ld = 0;        // row stride in elements

  matrix_view() = default;
  FRUGAL_HOST_DEVICE matrix_view(T* p, std::int64_t r, std::int64_t c) : data(p), rows(r), cols(c), ld(c) {}
  FRUGAL_HOST_DEVICE matrix_view(T* p, std::int64_t r, std::int64_t c, std::int64_t stride)
      : data(p), rows(r), cols(c), ld(stride) {}
  //! A const view of a mutable one converts implicitly.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  FRUGAL_HOST_DEVICE matrix_view(const matrix_view<U>& o) : data(o.data), rows(o.rows), cols(o.cols), ld(o.ld) {}

  FRUGAL_HOST_DEVICE T* row(std::int64_t r) const { return data + r * ld; }
  FRUGAL_HOST_DEVICE T& operator()(std::int64_t r, std::int64_t c) const { return data[r * ld + c]; }
  FRUGAL_HOST_DEVICE std::int64_t size() const { return rows * cols; }
  FRUGAL_HOST_DEVICE bool empty() const { return rows == 0 || cols == 0; }
};

template <class T>
matrix_view(T*, std::int64_t, std::int64_t) -> matrix_view<T>;
template <class T>
matrix_view(T*, std::int64_t, std::int64_t, std::int64_t) -> matrix_view<T>;

namespace detail {
//! Validates a view at a public boundary: non-negative extents, ld >= cols, no null data when non-empty.
template <class T>
void check_matrix(const char* op, const char* name, const matrix_view<T>& m) {
  FRUGAL_CHECK(m.rows >= 0 && m.cols >= 0, op, name, " has negative extents [", m.rows, ", ", m.cols, "]");
  FRUGAL_CHECK(m.ld >= m.cols, op, name, " row stride (=", m.ld, ") must be >= cols (=", m.cols, ")");
  FRUGAL_CHECK(m.data != nullptr || m.empty(), op, name, " is null but has shape [", m.rows, ", ", m.cols, "]");
}
template <class A, class B>
void check_same_shape(const char* op, const char* na, const matrix_view<A>& a, const char* nb,
                      const matrix_view<B>& b) {
  FRUGAL_CHECK(a.rows == b.rows && a.cols == b.cols, op, na, " has shape [", a.rows, ", ", a.cols, "] but ", nb,
               " has shape [", b.rows, ", ", b.cols, "]");
}
}  // namespace detail

FRUGAL_NAMESPACE_END
