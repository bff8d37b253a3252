// kv on CPU: append / copy_blocks / gather on paged storage, and decode + prefill attention, paged vs contiguous (the
// same template: bitwise equal) vs a naive double-precision reference, for f32/f16/bf16, group sizes 1..8, head dims
// 64/80/96/128 (and 32 on CPU), lengths 0, 1, page boundaries and random; documented errors.
#include <frugal/kv/block_allocator.hpp>
#include <frugal/kv/decode_attention.hpp>
#include <frugal/kv/paged_kv.hpp>

#include "kv_test_util.hpp"

using frugal::bfloat16;
using frugal::half;
using frugal::matrix_view;
using kv_test::same_bits;

TEST_CASE_TEMPLATE("kv_append + kv_gather round-trip through fragmented block tables", T, float, half, bfloat16) {
  for (const std::int32_t page : {1, 7, 16, 256}) {
    auto c = kv_test::make_case<T>(static_cast<std::uint64_t>(page), 2, 1, 64, page, {1, 0, 16, 17, 100, 33});
    std::vector<T> ok(c.k_src.size(), frugal::from_float<T>(-5.f)), ov = ok;
    const frugal::paged_kv_table tab{c.table.data(), c.lens.data(), c.batch, c.max_blocks};
    frugal::kv_gather(frugal::cpu, c.paged_view(c.paged.data()), tab, c.contig_view(ok.data(), ov.data()));
    bool good = true;
    for (std::int32_t b = 0; b < c.batch; ++b)
      for (std::int32_t t = 0; t < c.max_len; ++t)
        for (std::int64_t x = 0; x < c.row(); ++x) {
          const std::size_t i = (static_cast<std::size_t>(b) * c.max_len + t) * c.row() + static_cast<std::size_t>(x);
          if (t < c.lens[static_cast<std::size_t>(b)])
            good = good && same_bits(ok[i], c.k_src[i]) && same_bits(ov[i], c.v_src[i]);
          else
            good = good && frugal::to_float(ok[i]) == -5.f && frugal::to_float(ov[i]) == -5.f;
        }
    INFO("page=", page);
    CHECK(good);
  }
}

TEST_CASE("kv_append: negative slots are skipped; row strides (fused QKV columns) work") {
  const std::int32_t H = 2, D = 8, P = 4;
  std::vector<float> cache(static_cast<std::size_t>(frugal::paged_kv_view<float>::elements(3, P, H, D)), 0.f);
  frugal::paged_kv_view<float> view(cache.data(), 3, P, H, D);
  // qkv rows [3, 3 * H * D]: K at column H*D, V at 2*H*D
  std::vector<float> qkv(3 * 3 * H * D);
  for (std::size_t i = 0; i < qkv.size(); ++i) qkv[i] = static_cast<float>(i);
  const std::int32_t slots[3] = {5, -1, 11};  // block 1 offset 1, skip, block 2 offset 3
  frugal::kv_append(frugal::cpu, view, matrix_view<const float>(qkv.data() + H * D, 3, H * D, 3 * H * D),
                    matrix_view<const float>(qkv.data() + 2 * H * D, 3, H * D, 3 * H * D), slots);
  for (int x = 0; x < H * D; ++x) {
    CHECK(view.k(1, 1)[x] == qkv[static_cast<std::size_t>(H * D + x)]);
    CHECK(view.v(1, 1)[x] == qkv[static_cast<std::size_t>(2 * H * D + x)]);
    CHECK(view.k(2, 3)[x] == qkv[static_cast<std::size_t>(2 * 3 * H * D + H * D + x)]);
    CHECK(view.v(2, 3)[x] == qkv[static_cast<std::size_t>(2 * 3 * H * D + 2 * H * D + x)]);
  }
  std::size_t nonzero = 0;
  for (float f : cache) nonzero += f != 0.f;
  CHECK(nonzero == static_cast<std::size_t>(4 * H * D));  // two tokens, K and V rows; the skipped one wrote nothing
  // errors, nothing written
  const auto before = cache;
  const std::int32_t bad[3] = {0, 12, 1};
  FRUGAL_CHECK_THROWS_WITH(frugal::kv_append(frugal::cpu, view, matrix_view<const float>(qkv.data(), 3, H * D),
                                             matrix_view<const float>(qkv.data(), 3, H * D), bad),
                           "frugal::kv_append: slots[1] (=12) must be < capacity (=12)");
  FRUGAL_CHECK_THROWS_WITH(frugal::kv_append(frugal::cpu, view, matrix_view<const float>(qkv.data(), 3, H * D + 1),
                                             matrix_view<const float>(qkv.data(), 3, H * D + 1), slots),
                           "but both must be [n, kv_heads * head_dim = 16]");
  frugal::paged_kv_view<float> two_layers(cache.data(), 1, P, H, D, 2);
  FRUGAL_CHECK_THROWS_WITH(frugal::kv_append(frugal::cpu, two_layers, matrix_view<const float>(qkv.data(), 1, H * D),
                                             matrix_view<const float>(qkv.data(), 1, H * D), slots),
                           "pass cache.layer(l)");
  CHECK(cache == before);
}

TEST_CASE_TEMPLATE("kv_copy_blocks copies K and V of every layer, nothing else", T, float, half, bfloat16) {
  const std::int32_t L = 3, NB = 6, P = 5, H = 2, D = 4;
  auto data =
      frugal_test::random_vector<T>(static_cast<std::size_t>(frugal::paged_kv_view<T>::elements(NB, P, H, D, L)), 9);
  const auto orig = data;
  frugal::paged_kv_view<T> view(data.data(), NB, P, H, D, L);
  const frugal::block_copy copies[2] = {{1, 4}, {2, 0}};
  frugal::kv_copy_blocks(frugal::cpu, view, copies, 2);
  const std::size_t be = static_cast<std::size_t>(view.block_elems());
  for (std::int32_t l = 0; l < L; ++l)
    for (std::int32_t b = 0; b < NB; ++b) {
      const std::int32_t src = b == 4 ? 1 : b == 0 ? 2 : b;
      const std::size_t at = (static_cast<std::size_t>(l) * NB + static_cast<std::size_t>(b)) * be;
      const std::size_t from = (static_cast<std::size_t>(l) * NB + static_cast<std::size_t>(src)) * be;
      CHECK(std::memcmp(data.data() + at, orig.data() + from, be * sizeof(T)) == 0);
    }
  const frugal::block_copy bad[1] = {{1, 6}};
  FRUGAL_CHECK_THROWS_WITH(frugal::kv_copy_blocks(frugal::cpu, view, bad, 1),
                           "frugal::kv_copy_blocks: copies[0] = {1, 6} must name blocks in [0, 6)");
}

namespace {

template <class T>
void check_decode(std::uint64_t seed, std::int32_t kv_heads, std::int32_t group, std::int32_t D, std::int32_t page,
                  const std::vector<std::int32_t>& lens) {
  auto c = kv_test::make_case<T>(seed, kv_heads, group, D, page, lens);
  INFO("T=", frugal::dtype_traits<T>::name, " kv_heads=", kv_heads, " group=", group, " D=", D, " page=", page);
  const std::int64_t cols = static_cast<std::int64_t>(c.q_heads) * D;
  std::vector<T> out_p(c.q.size()), out_c(c.q.size());
  frugal::attention_params p;
  p.q_heads = c.q_heads;
  const frugal::paged_kv_table tab{c.table.data(), c.lens.data(), c.batch, c.max_blocks};
  frugal::paged_decode_attention(frugal::cpu, matrix_view<const T>(c.q.data(), c.batch, cols),
                                 c.paged_view(c.paged.data()), tab, matrix_view<T>(out_p.data(), c.batch, cols), p);
  frugal::decode_attention(frugal::cpu, matrix_view<const T>(c.q.data(), c.batch, cols),
                           c.contig_view(c.k_src.data(), c.v_src.data()), c.lens.data(),
                           matrix_view<T>(out_c.data(), c.batch, cols), p);
  CHECK(same_bits(out_p, out_c));  // one template, same arithmetic: paging changes addresses only
  const auto ref = kv_test::naive_attention(c, c.q, kv_test::iota_rows(c.batch), c.lens, 1.0 / std::sqrt(double(D)));
  const double ratio = kv_test::tol_ratio(out_p, ref);
  if (std::getenv("KV_VERBOSE")) MESSAGE("tolerance ratio ", ratio);
  CHECK(ratio <= 1.0);
}

}  // namespace

TEST_CASE_TEMPLATE("decode attention: paged == contiguous, both match the naive reference", T, float, half, bfloat16) {
  std::uint64_t seed = 100;
  for (const std::int32_t D : {64, 80, 96, 128, 32})
    for (std::int32_t g = 1; g <= 8; ++g) check_decode<T>(++seed, g % 2 ? 2 : 1, g, D, 16, {1, 16, 17, 0, 47, 130});
  for (const std::int32_t page : {1, 3, 256}) check_decode<T>(++seed, 2, 3, 64, page, {1, 255, 256, 257, 40});
}

TEST_CASE_TEMPLATE("prefill attention over the paged cache: causal and not, paged == contiguous, vs naive", T, float,
                   half, bfloat16) {
  const std::vector<std::int32_t> lens{5, 20, 33, 1};
  const std::vector<std::int32_t> n_new{5, 3, 1, 1};  // the last n_new tokens of each sequence are the queries
  std::vector<std::int32_t> indptr{0};
  for (auto n : n_new) indptr.push_back(indptr.back() + n);
  const std::int32_t rows = indptr.back(), D = 64;
  for (const std::int32_t group : {1, 4, 7}) {
    auto c = kv_test::make_case<T>(7 + static_cast<std::uint64_t>(group), 2, group, D, 16, lens, rows);
    const std::int64_t cols = static_cast<std::int64_t>(c.q_heads) * D;
    for (const bool causal : {true, false}) {
      INFO("group=", group, " causal=", causal);
      frugal::attention_params p;
      p.q_heads = c.q_heads;
      p.causal = causal;
      p.scale = 0.3f;
      std::vector<T> out_p(c.q.size()), out_c(c.q.size());
      const frugal::paged_kv_table tab{c.table.data(), c.lens.data(), c.batch, c.max_blocks};
      frugal::paged_prefill_attention(frugal::cpu, matrix_view<const T>(c.q.data(), rows, cols),
                                      c.paged_view(c.paged.data()), tab, indptr.data(),
                                      matrix_view<T>(out_p.data(), rows, cols), p);
      frugal::prefill_attention(frugal::cpu, matrix_view<const T>(c.q.data(), rows, cols),
                                c.contig_view(c.k_src.data(), c.v_src.data()), c.lens.data(), indptr.data(),
                                matrix_view<T>(out_c.data(), rows, cols), p);
      CHECK(same_bits(out_p, out_c));
      std::vector<std::int32_t> rseq, rlen;
      for (std::int32_t b = 0; b < c.batch; ++b)
        for (std::int32_t i = 0; i < n_new[static_cast<std::size_t>(b)]; ++i) {
          rseq.push_back(b);
          rlen.push_back(causal ? lens[static_cast<std::size_t>(b)] - n_new[static_cast<std::size_t>(b)] + i + 1
                                : lens[static_cast<std::size_t>(b)]);
        }
      const auto ref = kv_test::naive_attention(c, c.q, rseq, rlen, 0.3);
      CHECK(kv_test::tol_ratio(out_p, ref) <= 1.0);
    }
  }
}

namespace {

//! Fused append + decode on CPU: the new tokens' cache rows are clobbered first; the fused op must write them back
//! (cache bit-equal to the original) and produce what decode over the original cache produces (bit for bit).
template <class T>
void check_append_decode(std::uint64_t seed, std::int32_t kv_heads, std::int32_t group, std::int32_t D,
                         std::int32_t page, const std::vector<std::int32_t>& lens) {
  auto c = kv_test::make_case<T>(seed, kv_heads, group, D, page, lens);
  INFO("T=", frugal::dtype_traits<T>::name, " kv_heads=", kv_heads, " group=", group, " D=", D, " page=", page);
  const std::int64_t cols = static_cast<std::int64_t>(c.q_heads) * D, ld = 3 * c.row() + 8;  // fused-QKV-like
  const auto kn = kv_test::new_rows(c, c.k_src, ld), vn = kv_test::new_rows(c, c.v_src, ld);
  frugal::attention_params p;
  p.q_heads = c.q_heads;
  const auto qv = matrix_view<const T>(c.q.data(), c.batch, cols);
  std::vector<T> ref(c.q.size()), out_p(c.q.size()), out_c(c.q.size());
  const frugal::paged_kv_table tab{c.table.data(), c.lens.data(), c.batch, c.max_blocks};
  frugal::paged_decode_attention(frugal::cpu, qv, c.paged_view(c.paged.data()), tab,
                                 matrix_view<T>(ref.data(), c.batch, cols), p);
  auto paged = c.paged, k = c.k_src, v = c.v_src;
  kv_test::clobber_last(c, paged, k, v, 37.f);
  frugal::paged_append_decode_attention(frugal::cpu, qv, matrix_view<const T>(kn.data(), c.batch, c.row(), ld),
                                        matrix_view<const T>(vn.data(), c.batch, c.row(), ld),
                                        c.paged_view(paged.data()), tab, matrix_view<T>(out_p.data(), c.batch, cols),
                                        p);
  frugal::append_decode_attention(frugal::cpu, qv, matrix_view<const T>(kn.data(), c.batch, c.row(), ld),
                                  matrix_view<const T>(vn.data(), c.batch, c.row(), ld),
                                  c.contig_view(k.data(), v.data()), c.lens.data(),
                                  matrix_view<T>(out_c.data(), c.batch, cols), p);
  CHECK(same_bits(out_p, ref));
  CHECK(same_bits(out_c, ref));
  CHECK(same_bits(paged, c.paged));
  CHECK(same_bits(k, c.k_src));
  CHECK(same_bits(v, c.v_src));
}

}  // namespace

TEST_CASE_TEMPLATE("fused append + decode attention == kv_append then decode, paged and contiguous", T, float, half,
                   bfloat16) {
  std::uint64_t seed = 300;
  for (const std::int32_t D : {64, 128, 32})
    for (const std::int32_t g : {1, 3, 4, 8})
      check_append_decode<T>(++seed, g % 2 ? 2 : 1, g, D, 16, {1, 16, 17, 0, 47, 130});
  for (const std::int32_t page : {1, 7, 256}) check_append_decode<T>(++seed, 2, 2, 64, page, {1, 255, 256, 257, 40});
}

TEST_CASE("fused append + decode errors: shapes, lengths, block ids; nothing is written") {
  auto c = kv_test::make_case<float>(9, 2, 2, 64, 16, {5, 20});
  const frugal::paged_kv_table tab{c.table.data(), c.lens.data(), c.batch, c.max_blocks};
  std::vector<float> out(c.q.size(), 7.f);
  const auto kn = kv_test::new_rows(c, c.k_src, c.row()), vn = kv_test::new_rows(c, c.v_src, c.row());
  const auto qv = matrix_view<const float>(c.q.data(), 2, 4 * 64);
  const auto ov = matrix_view<float>(out.data(), 2, 4 * 64);
  const auto kv = matrix_view<const float>(kn.data(), 2, c.row()), vv = matrix_view<const float>(vn.data(), 2, c.row());
  frugal::attention_params p;
  p.q_heads = 4;
  const auto paged0 = c.paged;
  FRUGAL_CHECK_THROWS_WITH(
      frugal::paged_append_decode_attention(frugal::cpu, qv, matrix_view<const float>(kn.data(), 1, c.row()), vv,
                                            c.paged_view(c.paged.data()), tab, ov, p),
      "frugal::paged_append_decode_attention: k_new is [1, 128] and v_new is [2, 128] but both must be [rows = 2, "
      "kv_heads * head_dim = 128]");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::append_decode_attention(frugal::cpu, qv, kv, matrix_view<const float>(vn.data(), 2, 64),
                                      c.contig_view(c.k_src.data(), c.v_src.data()), c.lens.data(), ov, p),
      "frugal::append_decode_attention: k_new is [2, 128] and v_new is [2, 64]");
  auto table = c.table;
  table[1 * static_cast<std::size_t>(c.max_blocks) + 1] = -4;  // sequence 1's last block: checked before any write
  const frugal::paged_kv_table tab_bad{table.data(), c.lens.data(), c.batch, c.max_blocks};
  FRUGAL_CHECK_THROWS_WITH(
      frugal::paged_append_decode_attention(frugal::cpu, qv, kv, vv, c.paged_view(c.paged.data()), tab_bad, ov, p),
      "frugal::paged_append_decode_attention: block_table[1, 1] (=-4)");
  auto lens = c.lens;
  lens[0] = 33;
  const frugal::paged_kv_table tab_long{c.table.data(), lens.data(), c.batch, c.max_blocks};
  FRUGAL_CHECK_THROWS_WITH(
      frugal::paged_append_decode_attention(frugal::cpu, qv, kv, vv, c.paged_view(c.paged.data()), tab_long, ov, p),
      "seq_lens[0] (=33) must be in [0, 32]");
  CHECK(kv_test::same_bits(c.paged, paged0));
  for (float f : out) REQUIRE(f == 7.f);
}

TEST_CASE("attention errors name the operation and the values; nothing is written") {
  auto c = kv_test::make_case<float>(3, 2, 2, 64, 16, {5, 20});
  const frugal::paged_kv_table tab{c.table.data(), c.lens.data(), c.batch, c.max_blocks};
  std::vector<float> out(c.q.size(), 7.f);
  const auto qv = matrix_view<const float>(c.q.data(), 2, 4 * 64);
  const auto ov = matrix_view<float>(out.data(), 2, 4 * 64);
  frugal::attention_params p;
  p.q_heads = 3;
  FRUGAL_CHECK_THROWS_WITH(frugal::paged_decode_attention(frugal::cpu, qv, c.paged_view(c.paged.data()), tab, ov, p),
                           "frugal::paged_decode_attention: q_heads (=3) must be a positive multiple of kv_heads (=2)");
  p.q_heads = 4;
  FRUGAL_CHECK_THROWS_WITH(frugal::paged_decode_attention(frugal::cpu, matrix_view<const float>(c.q.data(), 2, 200),
                                                          c.paged_view(c.paged.data()), tab, ov, p),
                           "q has 200 columns but q_heads * head_dim = 256");
  auto lens = c.lens;
  lens[1] = 33;  // > max_blocks * page = 32
  const frugal::paged_kv_table tab_long{c.table.data(), lens.data(), c.batch, c.max_blocks};
  FRUGAL_CHECK_THROWS_WITH(
      frugal::paged_decode_attention(frugal::cpu, qv, c.paged_view(c.paged.data()), tab_long, ov, p),
      "seq_lens[1] (=33) must be in [0, 32]");
  auto table = c.table;
  table[1 * static_cast<std::size_t>(c.max_blocks) + 1] = c.num_blocks;
  const frugal::paged_kv_table tab_bad{table.data(), c.lens.data(), c.batch, c.max_blocks};
  FRUGAL_CHECK_THROWS_WITH(
      frugal::paged_decode_attention(frugal::cpu, qv, c.paged_view(c.paged.data()), tab_bad, ov, p),
      "block_table[1, 1] (=");
  const std::int32_t bad_indptr[3] = {0, 1, 3};
  FRUGAL_CHECK_THROWS_WITH(
      frugal::paged_prefill_attention(frugal::cpu, qv, c.paged_view(c.paged.data()), tab, bad_indptr, ov, p),
      "q_indptr must start at 0 and end at the number of query rows (=2)");
  for (float f : out) REQUIRE(f == 7.f);
}
