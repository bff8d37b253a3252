// frugal/vocab/detail/hash.hpp — open-addressing hash tables used by the tokenizers (host code).
//
// flat_map64: uint64 key -> uint64 value, linear probing, power-of-two capacity, load factor <= 1/2. Used for BPE
// pair ranks ((a << 32) | b -> (rank << 32) | merged id) and for n-gram tables. The all-ones key is reserved.
// piece_cache: byte string -> token ids, for the per-call BPE cache (arena-backed, no allocation per entry).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "../../core/config.hpp"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

FRUGAL_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

//! Fast non-cryptographic hash of a byte string (8 bytes at a time, then mixed).
inline std::uint64_t hash_bytes(const char* p, std::size_t n) {
  std::uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ mix64(w)) * 0x9fb21c651e98df25ull;
    p += 8;
    n -= 8;
  }
  std::uint64_t w = 0;
  std::memcpy(&w, p, n);
  h ^= mix64(w ^ (static_cast<std::uint64_t>(n) << 56));
  return mix64(h);
}

class flat_map64 {
 public:
  static constexpr std::uint64_t empty_key = ~std::uint64_t{0};

  flat_map64() { rehash(16); }
  explicit flat_map64(std::size_t expected) { rehash(capacity_for(expected)); }

  std::size_t size() const { return size_; }
  std::size_t capacity() const { return keys_.size(); }
  const std::uint64_t* keys() const { return keys_.data(); }
  const std::uint64_t* values() const { return vals_.data(); }

  //! Inserts or overwrites.
  void set(std::uint64_t key, std::uint64_t value) {
    if ((size_ + 1) * 2 > keys_.size()) rehash(keys_.size() * 2);
    std::size_t i = slot(key);
    if (keys_[i] == empty_key) {
      keys_[i] = key;
      ++size_;
    }
    vals_[i] = value;
  }
  //! Inserts `value` when absent; returns a reference to the stored value.
  std::uint64_t& get_or_insert(std::uint64_t key, std::uint64_t value) {
    if ((size_ + 1) * 2 > keys_.size()) rehash(keys_.size() * 2);
    std::size_t i = slot(key);
    if (keys_[i] == empty_key) {
      keys_[i] = key;
      vals_[i] = value;
      ++size_;
    }
    return vals_[i];
  }
  const std::uint64_t* find(std::uint64_t key) const {
    std::size_t i = slot(key);
    return keys_[i] == empty_key ? nullptr : &vals_[i];
  }
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i] != empty_key) f(keys_[i], vals_[i]);
  }

 private:
  std::vector<std::uint64_t> keys_, vals_;
  std::size_t size_ = 0;
  std::size_t mask_ = 0;

  static std::size_t capacity_for(std::size_t n) {
    std::size_t c = 16;
    while (c < 2 * n + 2) c *= 2;
    return c;
  }
  std::size_t slot(std::uint64_t key) const {
    std::size_t i = static_cast<std::size_t>(mix64(key)) & mask_;
    while (keys_[i] != empty_key && keys_[i] != key) i = (i + 1) & mask_;
    return i;
  }
  void rehash(std::size_t cap) {
    std::vector<std::uint64_t> ok = std::move(keys_), ov = std::move(vals_);
    keys_.assign(cap, empty_key);
    vals_.assign(cap, 0);
    mask_ = cap - 1;
    size_ = 0;
    for (std::size_t i = 0; i < ok.size(); ++i)
      if (ok[i] != empty_key) set(ok[i], ov[i]);
  }
};

//! Byte string -> token ids cache with arena storage. `find` returns {pointer, count} or {nullptr, 0}.
class piece_cache {
 public:
  explicit piece_cache(std::size_t max_entries = std::size_t{1} << 18) : max_entries_(max_entries) { reset(1024); }

  struct hit {
    const std::int32_t* ids;
    std::uint32_t count;
  };

  hit find(std::string_view key, std::uint64_t h) const {
    std::size_t i = static_cast<std::size_t>(h) & mask_;
    for (;;) {
      const entry& e = table_[i];
      if (e.key_len == empty) return {nullptr, 0};
      if (e.hash == h && e.key_len == key.size() && std::memcmp(keys_.data() + e.key_off, key.data(), key.size()) == 0)
        return {ids_.data() + e.ids_off, e.ids_len};
      i = (i + 1) & mask_;
    }
  }
  void insert(std::string_view key, std::uint64_t h, const std::int32_t* ids, std::uint32_t count) {
    if (entries_ >= max_entries_) reset(table_.size());  // bounded: start over rather than grow without limit
    if ((entries_ + 1) * 2 > table_.size()) grow();
    std::size_t i = static_cast<std::size_t>(h) & mask_;
    while (table_[i].key_len != empty) i = (i + 1) & mask_;
    entry& e = table_[i];
    e.hash = h;
    e.key_off = static_cast<std::uint32_t>(keys_.size());
    e.key_len = static_cast<std::uint32_t>(key.size());
    e.ids_off = static_cast<std::uint32_t>(ids_.size());
    e.ids_len = count;
    keys_.insert(keys_.end(), key.begin(), key.end());
    ids_.insert(ids_.end(), ids, ids + count);
    ++entries_;
  }

 private:
  static constexpr std::uint32_t empty = ~std::uint32_t{0};
  struct entry {
    std::uint64_t hash = 0;
    std::uint32_t key_off = 0, key_len = empty, ids_off = 0, ids_len = 0;
  };
  std::vector<entry> table_;
  std::vector<char> keys_;
  std::vector<std::int32_t> ids_;
  std::size_t mask_ = 0, entries_ = 0, max_entries_;

  void reset(std::size_t cap) {
    table_.assign(cap, entry{});
    mask_ = cap - 1;
    keys_.clear();
    ids_.clear();
    entries_ = 0;
  }
  void grow() {
    std::vector<entry> old = std::move(table_);
    table_.assign(old.size() * 2, entry{});
    mask_ = table_.size() - 1;
    for (const entry& e : old) {
      if (e.key_len == empty) continue;
      std::size_t i = static_cast<std::size_t>(e.hash) & mask_;
      while (table_[i].key_len != empty) i = (i + 1) & mask_;
      table_[i] = e;
    }
  }
};

}  // namespace detail
FRUGAL_NAMESPACE_END
