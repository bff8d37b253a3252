// frugal/vocab/detail/json.hpp — a small strict JSON reader/writer for tokenizer and patch-vocabulary files.
//
// RFC 8259, strictly: no comments, no trailing commas, no NaN, no leading zeros, strings must be valid UTF-8 with
// escaped control characters, \u escapes with proper surrogate pairs. Errors throw frugal::error naming the
// operation, the file (or "<string>") and the 1-based line:column of the offending byte, e.g.
//   "frugal::gpt2_tokenizer: encoder.json:3:17: expected ':' after object key".
// Objects keep their members in file order (duplicate keys are an error). Zero dependencies, so the vocab headers
// need nothing but PCRE2.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail::json {

enum class kind { null, boolean, number, string, array, object };

inline const char* kind_name(kind k) {
  switch (k) {
    case kind::null: return "null";
    case kind::boolean: return "a boolean";
    case kind::number: return "a number";
    case kind::string: return "a string";
    case kind::array: return "an array";
    case kind::object: return "an object";
  }
  return "?";
}

//! A parsed JSON value. `pos` is the byte offset of its first character in the source (for error messages).
struct value {
  kind type = kind::null;
  bool b = false;
  double num = 0;
  bool is_integer = false;       // number written without fraction/exponent
  std::int64_t integer = 0;      // its value when is_integer
  std::string str;               // string contents (UTF-8)
  std::vector<std::string> keys;  // object member names (file order)
  std::vector<value> items;       // array elements, or object member values (parallel to keys)
  std::size_t pos = 0;

  const value* find(std::string_view key) const {
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (keys[i] == key) return &items[i];
    return nullptr;
  }
};

//! Where a byte offset lies in a text: 1-based line and column (column counts bytes).
inline std::string where(std::string_view text, std::size_t pos) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < pos && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return concat(line, ":", col);
}

//! Throws "frugal::<op>: <file>:<line>:<col>: <message>" for a position in `text`.
template <class... Parts>
[[noreturn]] void fail_at(const char* op, std::string_view file, std::string_view text, std::size_t pos,
                          Parts&&... parts) {
  fail(op, file, ":", where(text, pos), ": ", std::forward<Parts>(parts)...);
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

//! Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 when it is not valid UTF-8.
inline int utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  int n;
  std::uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + static_cast<std::size_t>(n) > s.size()) return 0;
  for (int k = 1; k < n; ++k) {
    const auto d = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
    if ((d & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3F);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return n;
}

class parser {
 public:
  parser(const char* op, std::string_view file, std::string_view text) : op_(op), file_(file), t_(text) {}

  value parse_document() {
    skip_ws();
    value v = parse_value(0);
    skip_ws();
    if (i_ != t_.size()) error("unexpected data after the top-level value");
    return v;
  }

 private:
  const char* op_;
  std::string_view file_;
  std::string_view t_;
  std::size_t i_ = 0;

  template <class... Parts>
  [[noreturn]] void error(Parts&&... parts) const {
    fail_at(op_, file_, t_, i_, std::forward<Parts>(parts)...);
  }
  std::string describe_here() const {
    if (i_ >= t_.size()) return "end of input";
    const auto c = static_cast<unsigned char>(t_[i_]);
    if (c >= 0x20 && c < 0x7F) return concat("'", static_cast<char>(c), "'");
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", c);
    return concat("byte ", buf);
  }

  void skip_ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r')) ++i_;
  }

  value parse_value(int depth) {
    if (depth > 256) error("nesting deeper than 256 levels");
    if (i_ >= t_.size()) error("unexpected end of input, expected a value");
    value v;
    v.pos = i_;
    const char c = t_[i_];
    if (c == '{') {
      v.type = kind::object;
      std::unordered_set<std::string> seen;  // used once an object has 16 keys
      ++i_;
      skip_ws();
      if (i_ < t_.size() && t_[i_] == '}') {
        ++i_;
        return v;
      }
      for (;;) {
        skip_ws();
        if (i_ >= t_.size() || t_[i_] != '"') error("expected a string object key, found ", describe_here());
        const std::size_t key_pos = i_;
        std::string key = parse_string();
        if (v.keys.size() < 16) {
          for (const auto& k : v.keys)
            if (k == key) fail_at(op_, file_, t_, key_pos, "duplicate object key \"", key, "\"");
        } else {
          if (seen.empty()) seen.insert(v.keys.begin(), v.keys.end());
          if (!seen.insert(key).second) fail_at(op_, file_, t_, key_pos, "duplicate object key \"", key, "\"");
        }
        skip_ws();
        if (i_ >= t_.size() || t_[i_] != ':') error("expected ':' after object key, found ", describe_here());
        ++i_;
        skip_ws();
        v.keys.push_back(std::move(key));
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        if (i_ < t_.size() && t_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < t_.size() && t_[i_] == '}') {
          ++i_;
          return v;
        }
        error("expected ',' or '}' in object, found ", describe_here());
      }
    }
    if (c == '[') {
      v.type = kind::array;
      ++i_;
      skip_ws();
      if (i_ < t_.size() && t_[i_] == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        skip_ws();
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        if (i_ < t_.size() && t_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < t_.size() && t_[i_] == ']') {
          ++i_;
          return v;
        }
        error("expected ',' or ']' in array, found ", describe_here());
      }
    }
    if (c == '"') {
      v.type = kind::string;
      v.str = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      parse_number(v);
      return v;
    }
    if (t_.substr(i_, 4) == "true") {
      v.type = kind::boolean;
      v.b = true;
      i_ += 4;
      return v;
    }
    if (t_.substr(i_, 5) == "false") {
      v.type = kind::boolean;
      i_ += 5;
      return v;
    }
    if (t_.substr(i_, 4) == "null") {
      i_ += 4;
      return v;
    }
    error("expected a JSON value, found ", describe_here());
  }

  void parse_number(value& v) {
    const std::size_t start = i_;
    v.type = kind::number;
    if (t_[i_] == '-') ++i_;
    auto digit = [&] { return i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9'; };
    if (!digit()) error("expected a digit in number");
    if (t_[i_] == '0') {
      ++i_;
      if (digit()) error("leading zeros are not allowed in numbers");
    } else {
      while (digit()) ++i_;
    }
    bool integral = true;
    if (i_ < t_.size() && t_[i_] == '.') {
      integral = false;
      ++i_;
      if (!digit()) error("expected a digit after '.' in number");
      while (digit()) ++i_;
    }
    if (i_ < t_.size() && (t_[i_] == 'e' || t_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < t_.size() && (t_[i_] == '+' || t_[i_] == '-')) ++i_;
      if (!digit()) error("expected a digit in number exponent");
      while (digit()) ++i_;
    }
    const std::string text(t_.substr(start, i_ - start));
    v.num = std::strtod(text.c_str(), nullptr);
    if (integral && text.size() <= 18) {
      v.is_integer = true;
      v.integer = std::strtoll(text.c_str(), nullptr, 10);
    } else if (integral) {
      v.is_integer = false;  // too large for int64 exactly: treated as a plain number
    }
  }

  std::uint32_t parse_hex4() {
    if (i_ + 4 > t_.size()) error("truncated \\u escape");
    std::uint32_t u = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = t_[i_ + static_cast<std::size_t>(k)];
      u <<= 4;
      if (h >= '0' && h <= '9')
        u |= static_cast<std::uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f')
        u |= static_cast<std::uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        u |= static_cast<std::uint32_t>(h - 'A' + 10);
      else {
        i_ += static_cast<std::size_t>(k);
        error("invalid hex digit in \\u escape");
      }
    }
    i_ += 4;
    return u;
  }

  std::string parse_string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= t_.size()) error("unterminated string");
      const auto c = static_cast<unsigned char>(t_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) error("unescaped control character ", describe_here(), " in string");
      if (c == '\\') {
        ++i_;
        if (i_ >= t_.size()) error("unterminated escape");
        const char e = t_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            std::uint32_t cp = parse_hex4();
            if (cp >= 0xD800 && cp < 0xDC00) {
              if (t_.substr(i_, 2) != "\\u") error("high surrogate \\u escape not followed by a low surrogate");
              i_ += 2;
              const std::uint32_t lo = parse_hex4();
              if (lo < 0xDC00 || lo >= 0xE000) error("high surrogate \\u escape not followed by a low surrogate");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
              error("lone low surrogate in \\u escape");
            }
            append_utf8(out, cp);
            break;
          }
          default: --i_; error("invalid escape '\\", e, "' in string");
        }
        continue;
      }
      const int n = utf8_sequence_length(t_, i_);
      if (n == 0) error("invalid UTF-8 ", describe_here(), " in string");
      out.append(t_.substr(i_, static_cast<std::size_t>(n)));
      i_ += static_cast<std::size_t>(n);
    }
  }
};

//! Parses `text` (named `file` in errors).
inline value parse(const char* op, std::string_view file, std::string_view text) {
  return parser(op, file, text).parse_document();
}

//! Reads a whole file; throws "frugal::<op>: cannot open <path>" when it cannot.
inline std::string read_file(const char* op, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FRUGAL_CHECK(in.good(), op, "cannot open '", path, "' for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  FRUGAL_CHECK(!in.bad(), op, "error while reading '", path, "'");
  return ss.str();
}

//! Appends `s` as a JSON string literal (escaping quotes, backslashes and control characters; UTF-8 kept).
inline void write_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

//! Typed accessors that fail with the file position of the value.
struct reader {
  const char* op;
  std::string_view file;
  std::string_view text;

  template <class... Parts>
  [[noreturn]] void fail_value(const value& v, Parts&&... parts) const {
    fail_at(op, file, text, v.pos, std::forward<Parts>(parts)...);
  }
  const value& expect(const value& v, kind k, std::string_view what) const {
    if (v.type != k) fail_value(v, what, " must be ", kind_name(k), ", found ", kind_name(v.type));
    return v;
  }
  const value& member(const value& obj, std::string_view key, kind k) const {
    expect(obj, kind::object, "the enclosing value");
    const value* m = obj.find(key);
    if (!m) fail_value(obj, "missing member \"", key, "\"");
    return expect(*m, k, concat("member \"", key, "\""));
  }
  std::int64_t integer(const value& v, std::string_view what, std::int64_t lo, std::int64_t hi) const {
    if (v.type != kind::number || !v.is_integer) fail_value(v, what, " must be an integer, found ", kind_name(v.type));
    if (v.integer < lo || v.integer > hi) fail_value(v, what, " (=", v.integer, ") must be in [", lo, ", ", hi, "]");
    return v.integer;
  }
};

}  // namespace detail::json
FRUGAL_NAMESPACE_END
