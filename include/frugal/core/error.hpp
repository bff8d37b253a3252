// frugal/core/error.hpp — the one exception type of frugal and the checks that throw it.
//
// Host preconditions throw `frugal::error` (a std::runtime_error) whose message names the operation and the
// offending values, e.g. "frugal::topk: k (=5000) must be in [1, n=4096]". The library never prints, exits or
// aborts; a failed check leaves the caller's state untouched because every check runs before any write.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "config.hpp"

FRUGAL_NAMESPACE_BEGIN

//! The exception thrown by every frugal operation on bad input, exhausted resources or a failed CUDA call.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

//! Concatenates any streamable values into one string ("a", 1, "b" -> "a1b").
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  os.precision(9);
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}

//! Throws frugal::error with "frugal::<op>: <message parts>".
template <class... Parts>
[[noreturn]] void fail(const char* op, Parts&&... parts) {
  throw error(concat("frugal::", op, ": ", std::forward<Parts>(parts)...));
}

}  // namespace detail

FRUGAL_NAMESPACE_END

//! FRUGAL_CHECK(cond, "topk", "k (=", k, ") must be in [1, n=", n, "]") throws frugal::error when cond is false.
#define FRUGAL_CHECK(cond, op, ...)                              \
  do {                                                           \
    if (!(cond)) ::frugal::detail::fail((op), __VA_ARGS__);      \
  } while (0)
