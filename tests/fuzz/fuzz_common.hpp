// Helpers for fuzz targets: a byte reader and the "a violated property is a crash" rule.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace frugal_fuzz {

//! Reads integers from the fuzz input; past the end it yields zeros.
class reader {
 public:
  reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  bool done() const { return i_ >= n_; }
  std::uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

//! A property the library promises failed: report and abort, so libFuzzer records the input.
[[noreturn]] inline void violated(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "frugal fuzz: property violated: %s %s\n", what, detail.c_str());
  std::abort();
}
#define FRUGAL_FUZZ_ASSERT(cond, ...) \
  do {                                \
    if (!(cond)) ::frugal_fuzz::violated(#cond, ##__VA_ARGS__); \
  } while (0)

}  // namespace frugal_fuzz
