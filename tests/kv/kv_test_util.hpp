// Shared by the kv tests: a random batch of sequences stored both paged (fragmented block tables from an allocator)
// and contiguous, random queries, and a naive double-precision attention reference.
#pragma once

#include <frugal/kv/block_allocator.hpp>
#include <frugal/kv/decode_attention.hpp>
#include <frugal/kv/paged_kv.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/test_util.hpp"

namespace kv_test {

template <class T>
struct kv_case {
  std::int32_t batch = 0, kv_heads = 0, q_heads = 0, head_dim = 0, page = 0, max_len = 0, max_blocks = 0;
  std::int32_t num_blocks = 0;
  std::vector<std::int32_t> lens;
  std::vector<T> k_src, v_src;      // [batch, max_len, kv_heads, head_dim]: the tokens (contiguous storage too)
  std::vector<T> paged;             // [num_blocks, 2, page, kv_heads, head_dim]
  std::vector<std::int32_t> table;  // [batch, max_blocks]
  std::vector<T> q;                 // [batch, q_heads * head_dim]

  std::int64_t row() const { return static_cast<std::int64_t>(kv_heads) * head_dim; }
  frugal::paged_kv_view<T> paged_view(T* p) { return {p, num_blocks, page, kv_heads, head_dim}; }
  frugal::contiguous_kv_view<T> contig_view(T* k, T* v) { return {k, v, batch, max_len, kv_heads, head_dim}; }
};

//! Sequences of the given lengths written token by token, round-robin in random chunks, into an allocator with a
//! scrambled free list (so block tables are fragmented); then their K/V are appended to the paged storage.
template <class T>
kv_case<T> make_case(std::uint64_t seed, std::int32_t kv_heads, std::int32_t group, std::int32_t head_dim,
                     std::int32_t page, const std::vector<std::int32_t>& lens, std::int32_t rows_q = -1) {
  kv_case<T> c;
  c.batch = static_cast<std::int32_t>(lens.size());
  c.kv_heads = kv_heads;
  c.q_heads = kv_heads * group;
  c.head_dim = head_dim;
  c.page = page;
  c.lens = lens;
  c.max_len = std::max<std::int32_t>(1, *std::max_element(lens.begin(), lens.end()));
  std::int64_t blocks = 0;
  for (auto l : lens) blocks += (l + page - 1) / page;
  c.num_blocks = static_cast<std::int32_t>(blocks + 8);
  std::mt19937_64 rng(seed);
  frugal::block_allocator alloc(c.num_blocks, page);
  // scramble the free list
  std::vector<frugal::block_allocator::seq_id> junk;
  for (int i = 0; i < 4; ++i) junk.push_back(alloc.allocate(page * static_cast<std::int64_t>(1 + rng() % 2)));
  std::vector<frugal::block_allocator::seq_id> seqs;
  for (std::int32_t b = 0; b < c.batch; ++b) seqs.push_back(alloc.allocate(0));
  for (auto j : junk) alloc.free(j);
  std::vector<std::int32_t> done(lens.size(), 0);
  for (bool more = true; more;) {
    more = false;
    for (std::size_t b = 0; b < lens.size(); ++b) {
      const std::int32_t n = std::min<std::int32_t>(lens[b] - done[b], 1 + static_cast<std::int32_t>(rng() % 40));
      if (n > 0) {
        REQUIRE_FALSE(alloc.append(seqs[b], n).has_value());
        done[b] += n;
      }
      more = more || done[b] < lens[b];
    }
  }
  c.max_blocks = std::max<std::int32_t>(1, alloc.max_blocks(seqs));
  c.table.assign(static_cast<std::size_t>(c.batch) * c.max_blocks, 0);
  std::vector<std::int32_t> lens_out(lens.size());
  alloc.export_dense(seqs, c.table.data(), c.max_blocks, lens_out.data());
  REQUIRE(lens_out == lens);

  const std::size_t n_src = static_cast<std::size_t>(c.batch) * c.max_len * c.row();
  c.k_src = frugal_test::random_vector<T>(n_src, seed + 1);
  c.v_src = frugal_test::random_vector<T>(n_src, seed + 2);
  c.q = frugal_test::random_vector<T>(static_cast<std::size_t>(rows_q < 0 ? c.batch : rows_q) * c.q_heads * head_dim,
                                      seed + 3);
  // paged storage: garbage everywhere first (NaN would poison a kernel that reads past the lengths)
  c.paged = frugal_test::random_vector<T>(
      static_cast<std::size_t>(frugal::paged_kv_view<T>::elements(c.num_blocks, page, kv_heads, head_dim)), seed + 4,
      100.f);
  std::vector<std::int32_t> slots;
  std::vector<T> ks, vs;
  for (std::int32_t b = 0; b < c.batch; ++b)
    for (std::int32_t t = 0; t < lens[static_cast<std::size_t>(b)]; ++t) {
      slots.push_back(alloc.slot(seqs[static_cast<std::size_t>(b)], t));
      const std::size_t o = (static_cast<std::size_t>(b) * c.max_len + t) * c.row();
      ks.insert(ks.end(), c.k_src.begin() + static_cast<std::ptrdiff_t>(o),
                c.k_src.begin() + static_cast<std::ptrdiff_t>(o + c.row()));
      vs.insert(vs.end(), c.v_src.begin() + static_cast<std::ptrdiff_t>(o),
                c.v_src.begin() + static_cast<std::ptrdiff_t>(o + c.row()));
    }
  const std::int64_t n = static_cast<std::int64_t>(slots.size());
  frugal::kv_append(frugal::cpu, c.paged_view(c.paged.data()), frugal::matrix_view<const T>(ks.data(), n, c.row()),
                    frugal::matrix_view<const T>(vs.data(), n, c.row()), slots.data());
  return c;
}

//! Naive reference in double: rows of q against k_src/v_src ([batch, max_len, kv_heads, D]).
//! row_seq[r], row_len[r]: the sequence and number of keys of query row r.
template <class T>
std::vector<double> naive_attention(const kv_case<T>& c, const std::vector<T>& q,
                                    const std::vector<std::int32_t>& row_seq, const std::vector<std::int32_t>& row_len,
                                    double scale) {
  const std::int32_t D = c.head_dim, G = c.q_heads / c.kv_heads;
  std::vector<double> out(row_seq.size() * static_cast<std::size_t>(c.q_heads) * D, 0.0);
  for (std::size_t r = 0; r < row_seq.size(); ++r)
    for (std::int32_t qh = 0; qh < c.q_heads; ++qh) {
      const std::int32_t h = qh / G, b = row_seq[r], len = row_len[r];
      if (len <= 0) continue;
      std::vector<double> s(static_cast<std::size_t>(len));
      double mx = -1e300;
      for (std::int32_t t = 0; t < len; ++t) {
        double d = 0;
        for (std::int32_t x = 0; x < D; ++x)
          d += static_cast<double>(frugal::to_float(q[(r * c.q_heads + qh) * D + x])) *
               static_cast<double>(
                   frugal::to_float(c.k_src[((static_cast<std::size_t>(b) * c.max_len + t) * c.kv_heads + h) * D + x]));
        s[static_cast<std::size_t>(t)] = d * scale;
        mx = std::max(mx, s[static_cast<std::size_t>(t)]);
      }
      double sum = 0;
      for (auto& v : s) sum += (v = std::exp(v - mx));
      for (std::int32_t t = 0; t < len; ++t)
        for (std::int32_t x = 0; x < D; ++x)
          out[(r * c.q_heads + qh) * D + x] +=
              s[static_cast<std::size_t>(t)] / sum *
              static_cast<double>(
                  frugal::to_float(c.v_src[((static_cast<std::size_t>(b) * c.max_len + t) * c.kv_heads + h) * D + x]));
    }
  return out;
}

//! Worst ratio |got - ref| / (1.5 u_T |ref| + atol) over all elements: <= 1 means every output is within one
//! rounding to T of the exact value (u_T |x|, with a margin for |x| vs |ref|), plus atol for the f32 accumulation
//! (dot products, exp2, sums). NaN counts as 1e300.
template <class T>
double tol_ratio(const std::vector<T>& got, const std::vector<double>& ref, double atol = 3e-5) {
  const double u = std::is_same_v<T, float> ? 0.0 : frugal_test::unit_roundoff<T>();
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double g = static_cast<double>(frugal::to_float(got[i]));
    const double r = std::abs(g - ref[i]) / (1.5 * u * std::abs(ref[i]) + atol);
    worst = std::isnan(g) ? 1e300 : std::max(worst, r);
  }
  return worst;
}

template <class T>
bool same_bits(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

//! Fused append inputs: row b = the K (V) row of position lens[b] - 1 (zeros when lens[b] = 0), row stride ld.
template <class T>
std::vector<T> new_rows(const kv_case<T>& c, const std::vector<T>& src, std::int64_t ld) {
  std::vector<T> out(static_cast<std::size_t>(c.batch * ld), frugal::from_float<T>(0.f));
  for (std::int32_t b = 0; b < c.batch; ++b) {
    const std::int32_t t = c.lens[static_cast<std::size_t>(b)] - 1;
    if (t < 0) continue;
    const std::size_t o = (static_cast<std::size_t>(b) * c.max_len + t) * c.row();
    std::copy(src.begin() + static_cast<std::ptrdiff_t>(o), src.begin() + static_cast<std::ptrdiff_t>(o + c.row()),
              out.begin() + b * ld);
  }
  return out;
}
//! Overwrites the K/V of position lens[b] - 1 of every sequence with `value` in paged storage and in k/v_src.
template <class T>
void clobber_last(kv_case<T>& c, std::vector<T>& paged, std::vector<T>& k_src, std::vector<T>& v_src, float value) {
  const auto view = c.paged_view(paged.data());
  for (std::int32_t b = 0; b < c.batch; ++b) {
    const std::int32_t t = c.lens[static_cast<std::size_t>(b)] - 1;
    if (t < 0) continue;
    const std::int32_t blk = c.table[static_cast<std::size_t>(b) * c.max_blocks + t / c.page];
    std::fill(view.k(blk, t % c.page), view.k(blk, t % c.page) + c.row(), frugal::from_float<T>(value));
    std::fill(view.v(blk, t % c.page), view.v(blk, t % c.page) + c.row(), frugal::from_float<T>(value));
    const std::size_t o = (static_cast<std::size_t>(b) * c.max_len + t) * c.row();
    std::fill(k_src.begin() + static_cast<std::ptrdiff_t>(o), k_src.begin() + static_cast<std::ptrdiff_t>(o + c.row()),
              frugal::from_float<T>(value));
    std::fill(v_src.begin() + static_cast<std::ptrdiff_t>(o), v_src.begin() + static_cast<std::ptrdiff_t>(o + c.row()),
              frugal::from_float<T>(value));
  }
}

inline std::vector<std::int32_t> iota_rows(std::int32_t n) {
  std::vector<std::int32_t> v(static_cast<std::size_t>(n));
  for (std::int32_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

}  // namespace kv_test
