// CUDA patch merge and patch embedding init, compared with the CPU reference (id for id; per dtype tolerances).
#include <frugal/vocab/patch_embeddings.hpp>
#include <frugal/vocab/patch_tokenizer.hpp>

#include <random>
#include <set>

#include "common/cuda_test_util.cuh"
#include "common/test_util.hpp"
#include "vocab_test_util.hpp"

using frugal_test::device_buffer;

namespace {
struct merge_case {
  std::vector<std::int32_t> ids;
  std::vector<std::int64_t> offsets{0};
};

void check_cuda_merge(const frugal::patch_merge_table& table, const merge_case& c, const char* what) {
  const std::int64_t docs = static_cast<std::int64_t>(c.offsets.size()) - 1;
  const std::int64_t total = c.offsets.back();
  std::vector<std::int32_t> ref(c.ids.size(), -5);
  std::vector<std::int64_t> ref_counts(static_cast<std::size_t>(docs));
  frugal::patch_merge(frugal::cpu, table.view(), c.ids.data(), c.offsets.data(), docs, ref.data(), ref_counts.data());

  device_buffer<std::uint64_t> keys(table.keys);
  device_buffer<std::int32_t> values(table.values);
  device_buffer<std::int32_t> ids(c.ids.empty() ? std::vector<std::int32_t>{0} : c.ids);
  device_buffer<std::int64_t> offsets(c.offsets);
  device_buffer<std::int32_t> out(std::max<std::size_t>(1, c.ids.size()));
  device_buffer<std::int64_t> counts(std::max<std::int64_t>(1, docs));
  out.upload(std::vector<std::int32_t>(out.size(), -5));
  counts.upload(std::vector<std::int64_t>(counts.size(), -5));  // docs = 0 writes none: keep the download defined
  const std::size_t wsb = frugal::patch_merge_workspace_bytes(frugal::cuda, total, docs);
  device_buffer<std::uint8_t> ws(std::max<std::size_t>(1, wsb));
  frugal::patch_merge(frugal::cuda, table.view_at(keys.data(), values.data()), ids.data(), offsets.data(), docs, total,
                      out.data(), counts.data(), frugal::workspace{ws.data(), wsb});
  FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
  const auto got = out.download();
  const auto got_counts = counts.download();
  INFO(what, ": ", docs, " documents, ", total, " ids");
  for (std::int64_t d = 0; d < docs; ++d) {
    REQUIRE(got_counts[static_cast<std::size_t>(d)] == ref_counts[static_cast<std::size_t>(d)]);
    const std::int64_t b = c.offsets[static_cast<std::size_t>(d)];
    for (std::int64_t k = 0; k < ref_counts[static_cast<std::size_t>(d)]; ++k)
      REQUIRE(got[static_cast<std::size_t>(b + k)] == ref[static_cast<std::size_t>(b + k)]);
  }
}
}  // namespace

TEST_CASE("patch_merge (cuda) equals the CPU on random streams: empty docs, length-1 docs, long docs, chunk edges") {
  FRUGAL_REQUIRE_GPU();
  std::mt19937_64 rng(5);
  for (int max_n : {2, 3, 4}) {
    std::vector<std::pair<std::int32_t, std::vector<std::int32_t>>> patches;
    std::set<std::vector<std::int32_t>> seen;
    for (int attempt = 0; patches.size() < 40 && attempt < 4000; ++attempt) {  // 6^2 = 36 bigrams: bounded
      std::vector<std::int32_t> p(static_cast<std::size_t>(2 + rng() % static_cast<unsigned>(max_n - 1)));
      for (auto& x : p) x = static_cast<std::int32_t>(rng() % 6);
      if (seen.insert(p).second) patches.emplace_back(static_cast<std::int32_t>(900 - patches.size()), p);
    }
    const auto table = frugal::make_patch_merge_table(patches, 1000);
    const std::vector<std::vector<std::int64_t>> shapes = {
        {}, {0}, {1}, {0, 0, 1, 0}, {127}, {128}, {129}, {255, 1, 256, 0, 257}, {100000}, {3, 5, 7, 130, 1, 1, 1}};
    for (const auto& lens : shapes) {
      merge_case c;
      for (const auto n : lens) {
        for (std::int64_t i = 0; i < n; ++i) c.ids.push_back(static_cast<std::int32_t>(rng() % 8));
        c.offsets.push_back(static_cast<std::int64_t>(c.ids.size()));
      }
      check_cuda_merge(table, c, "shape");
    }
    merge_case many;  // many documents of random lengths
    for (int d = 0; d < 5000; ++d) {
      const std::int64_t n = static_cast<std::int64_t>(rng() % 200);
      for (std::int64_t i = 0; i < n; ++i) many.ids.push_back(static_cast<std::int32_t>(rng() % 8));
      many.offsets.push_back(static_cast<std::int64_t>(many.ids.size()));
    }
    check_cuda_merge(table, many, "5000 documents");
  }
}

TEST_CASE("patch_merge (cuda) equals the CPU on GPT-2 token streams of the man-page corpus") {
  FRUGAL_REQUIRE_GPU();
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  const std::string f = vocab_test::corpus_file("test.txt");
  if (!vocab_test::exists(f)) {
    MESSAGE("skipped: no corpus");
    return;
  }
  const std::string text = vocab_test::slurp(f);
  const auto docs = vocab_test::split_docs(text);
  frugal::patch_vocab_options o;
  o.num_patches = 2000;
  const auto pv = frugal::patch_vocab::build(frugal::cpu, tok, docs, o);
  const frugal::patch_tokenizer pt(tok, pv);
  merge_case c;
  c.offsets.clear();
  pt.flatten(frugal::cpu, docs, c.ids, c.offsets);
  check_cuda_merge(pt.table(), c, "man pages");
  // and equal to patch_tokenizer::encode, document by document
  std::vector<std::int32_t> out(c.ids.size());
  std::vector<std::int64_t> counts(docs.size());
  frugal::patch_merge(frugal::cpu, pt.table().view(), c.ids.data(), c.offsets.data(),
                      static_cast<std::int64_t>(docs.size()), out.data(), counts.data());
  for (std::size_t d = 0; d < docs.size(); ++d) {
    const auto ref = pt.encode(docs[d]);
    REQUIRE(counts[d] == static_cast<std::int64_t>(ref.size()));
    REQUIRE(std::equal(ref.begin(), ref.end(), out.begin() + c.offsets[d]));
  }
}

TEST_CASE("init_patch_embeddings (cuda) equals the CPU for f32, f16, bf16") {
  FRUGAL_REQUIRE_GPU();
  using frugal::patch_embedding_role;
  const std::int64_t rows = 1000, max_n = 4;
  std::mt19937_64 rng(9);
  std::vector<std::int32_t> targets, pieces;
  for (int p = 0; p < 300; ++p) {
    targets.push_back(700 + p);
    const int k = 2 + p % 3;
    for (int i = 0; i < max_n; ++i) pieces.push_back(i < k ? static_cast<std::int32_t>(rng() % 700) : -1);
  }
  for (const std::int64_t cols : {1, 7, 64, 768, 1000}) {
    const std::int64_t ld = cols + (cols % 2);
    for (const auto role : {patch_embedding_role::input, patch_embedding_role::output, patch_embedding_role::mean}) {
      auto run = [&](auto tagged) {
        using T = typename decltype(tagged)::type;
        const auto host = frugal_test::random_vector<T>(static_cast<std::size_t>(rows * ld), 17);
        auto ref = host;
        frugal::init_patch_embeddings(frugal::cpu, frugal::matrix_view<T>(ref.data(), rows, cols, ld), targets.data(),
                                      pieces.data(), 300, static_cast<int>(max_n), role);
        device_buffer<T> e(host);
        device_buffer<std::int32_t> t(targets), p(pieces);
        frugal::init_patch_embeddings(frugal::cuda, frugal::matrix_view<T>(e.data(), rows, cols, ld), t.data(), p.data(), 300,
                                      static_cast<int>(max_n), role);
        FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
        const auto got = e.download();
        for (std::size_t i = 0; i < got.size(); ++i) {
          const float a = frugal::to_float(got[i]), b = frugal::to_float(ref[i]);
          // Same float sums in the same order: equal up to one rounding of the stored value (FMA contraction).
          const float tol = static_cast<float>(2 * frugal_test::unit_roundoff<T>()) * (std::abs(b) + 1e-3f) + 1e-6f;
          if (std::abs(a - b) > tol) {
            INFO("dtype ", frugal::dtype_traits<T>::name, " cols ", cols, " index ", i, ": ", a, " vs ", b);
            REQUIRE(std::abs(a - b) <= tol);
          }
        }
      };
      run(frugal::type_tag<float>{});
      run(frugal::type_tag<frugal::half>{});
      run(frugal::type_tag<frugal::bfloat16>{});
    }
  }
}
