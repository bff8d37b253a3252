// AdaptiVocab: patch merge against a plain reference, builder properties and errors, save/load, the patched
// tokenizer's exact round trip (property + fuzz), token savings on held-out man pages, embedding init (CPU).
#include <frugal/vocab/patch_embeddings.hpp>
#include <frugal/vocab/patch_tokenizer.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "common/test_util.hpp"
#include "vocab_test_util.hpp"

using frugal::patch_tokenizer;
using frugal::patch_vocab;

namespace {
using patches_t = std::vector<std::pair<std::int32_t, std::vector<std::int32_t>>>;

//! The merge written as plainly as possible: at each position try the longest n-gram in a std::map.
std::vector<std::int32_t> reference_merge(const std::vector<std::int32_t>& ids, const patches_t& patches, int max_n) {
  std::map<std::vector<std::int32_t>, std::int32_t> m;
  for (const auto& [id, p] : patches) m[p] = id;
  std::vector<std::int32_t> out;
  for (std::size_t i = 0; i < ids.size();) {
    bool hit = false;
    for (int k = max_n; k >= 2 && !hit; --k) {
      if (i + static_cast<std::size_t>(k) > ids.size()) continue;
      const std::vector<std::int32_t> key(ids.begin() + static_cast<std::ptrdiff_t>(i),
                                          ids.begin() + static_cast<std::ptrdiff_t>(i) + k);
      if (const auto it = m.find(key); it != m.end()) {
        out.push_back(it->second);
        i += static_cast<std::size_t>(k);
        hit = true;
      }
    }
    if (!hit) out.push_back(ids[i++]);
  }
  return out;
}

patches_t random_patches(std::mt19937_64& rng, int vocab, int count, int max_n) {
  std::set<std::vector<std::int32_t>> seen;
  patches_t p;
  for (int i = 0; static_cast<int>(p.size()) < count && i < count * 10; ++i) {
    std::vector<std::int32_t> pieces(static_cast<std::size_t>(2 + rng() % static_cast<unsigned>(max_n - 1)));
    for (auto& x : pieces) x = static_cast<std::int32_t>(rng() % 8);  // small alphabet: many matches
    if (!seen.insert(pieces).second) continue;
    p.emplace_back(static_cast<std::int32_t>(vocab - 1 - static_cast<int>(p.size())), pieces);
  }
  return p;
}
}  // namespace

TEST_CASE("patch_merge (cpu): equals the plain reference on random streams, documents kept apart") {
  std::mt19937_64 rng(3);
  for (int max_n : {2, 3, 4}) {
    const auto patches = random_patches(rng, 1000, 60, max_n);
    const auto table = frugal::make_patch_merge_table(patches, 1000);
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<std::int32_t> ids;
      std::vector<std::int64_t> offsets{0};
      std::vector<std::vector<std::int32_t>> docs;
      const int ndocs = 1 + static_cast<int>(rng() % 40);
      for (int d = 0; d < ndocs; ++d) {
        std::vector<std::int32_t> doc(rng() % 5 == 0 ? 0 : rng() % 300);
        for (auto& x : doc) x = static_cast<std::int32_t>(rng() % 10);
        ids.insert(ids.end(), doc.begin(), doc.end());
        offsets.push_back(static_cast<std::int64_t>(ids.size()));
        docs.push_back(doc);
      }
      std::vector<std::int32_t> out(ids.size(), -7);
      std::vector<std::int64_t> counts(static_cast<std::size_t>(ndocs));
      frugal::patch_merge(frugal::cpu_t{2}, table.view(), ids.data(), offsets.data(), ndocs, out.data(), counts.data());
      for (int d = 0; d < ndocs; ++d) {
        const auto ref = reference_merge(docs[static_cast<std::size_t>(d)], patches, max_n);
        REQUIRE(counts[static_cast<std::size_t>(d)] == static_cast<std::int64_t>(ref.size()));
        REQUIRE(std::equal(ref.begin(), ref.end(), out.begin() + offsets[static_cast<std::size_t>(d)]));
      }
    }
  }
}

TEST_CASE("patch_merge: bad arguments") {
  const auto table = frugal::make_patch_merge_table({{9, {1, 2}}}, 10);
  std::vector<std::int32_t> ids{1, 2, 3};
  std::vector<std::int64_t> off{0, 3}, bad{1, 3}, dec{0, 3, 2};
  std::vector<std::int64_t> counts(2);
  FRUGAL_CHECK_THROWS_WITH(frugal::patch_merge(frugal::cpu, table.view(), ids.data(), bad.data(), 1, ids.data(), counts.data()),
                           "offsets[0] (=1) must be 0");
  FRUGAL_CHECK_THROWS_WITH(frugal::patch_merge(frugal::cpu, table.view(), ids.data(), dec.data(), 2, ids.data(), counts.data()),
                           "offsets must be non-decreasing");
  FRUGAL_CHECK_THROWS_WITH(frugal::patch_merge(frugal::cpu, table.view(), ids.data(), off.data(), -1, ids.data(), counts.data()),
                           "docs (=-1) must be >= 0");
  FRUGAL_CHECK_THROWS_WITH(frugal::patch_merge(frugal::cpu, frugal::patch_merge_table_view{}, ids.data(), off.data(), 1,
                                               ids.data(), counts.data()),
                           "the merge table is empty");
  FRUGAL_CHECK_THROWS_WITH(frugal::make_patch_merge_table({{9, {1, 2}}, {8, {1, 2}}}, 10), "repeats the pieces");
  FRUGAL_CHECK_THROWS_WITH(frugal::make_patch_merge_table({{9, {1}}}, 10), "2..4 are supported");
  FRUGAL_CHECK_THROWS_WITH(frugal::make_patch_merge_table({{9, {1, 12}}}, 10), "piece 12 outside [0, 10)");
  frugal::patch_merge(frugal::cpu, table.view(), ids.data(), off.data(), 1, ids.data(), counts.data());  // in place
  CHECK(counts[0] == 2);
  CHECK(ids[0] == 9);
  CHECK(ids[1] == 3);
}

// ----------------------------------------------------------------------------------------------------------------

namespace {
const std::vector<std::string>& small_corpus() {  // first ~1.5 MB of the man-page corpus (or nothing)
  static const std::vector<std::string> docs = [] {
    std::vector<std::string> d;
    const std::string f = vocab_test::corpus_file("train.txt");
    if (!vocab_test::exists(f)) return d;
    const std::string text = vocab_test::slurp(f);
    std::size_t bytes = 0;
    for (const auto doc : vocab_test::split_docs(text)) {
      d.emplace_back(doc);
      if ((bytes += doc.size()) > 1500000) break;
    }
    return d;
  }();
  return docs;
}
std::vector<std::string_view> views(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }
}  // namespace

TEST_CASE("patch_vocab: builder on synthetic documents — sizes, replaced ids, overlap-aware choice") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  // " special relativity" dominates; "the special" overlaps it; numbers only must never become patches.
  std::vector<std::string> docs;
  for (int i = 0; i < 50; ++i) docs.push_back("the special relativity theory of 1905 and 2023 1905 2023 " + std::to_string(i));
  docs.push_back("");
  frugal::patch_vocab_options opt;
  opt.num_patches = 3;
  opt.max_n = 3;
  std::vector<std::pair<std::string, double>> seen_progress;
  opt.progress = [&](std::string_view s, double f) { seen_progress.emplace_back(std::string(s), f); };
  const auto pv = patch_vocab::build(frugal::cpu_t{2}, tok, views(docs), opt);
  CHECK(pv.vocab_size() == 50257);
  CHECK(pv.size() == 3);
  CHECK(pv.max_n() == 3);
  CHECK(!seen_progress.empty());
  CHECK(seen_progress.back().first == "select");
  const auto& st = pv.stats();
  CHECK(st.documents == 51);
  CHECK(st.replaceable_tokens == 50000);
  CHECK(st.unused_base_tokens > 49000);
  std::set<std::int32_t> ids;
  for (const auto& p : pv.patches()) {
    CHECK(patch_vocab::replaceable(tok, p.id));
    ids.insert(p.id);
    bool digits_only = true;
    for (const auto x : p.pieces) digits_only = digits_only && frugal::detail::digit_piece(tok.token_bytes(x));
    CHECK_FALSE(digits_only);
  }
  CHECK(ids.size() == 3);
  CHECK(ids.count(50255) == 1);  // unused tokens go first, highest id first (50256 is special)
  // The first choice is a 3-gram; the overlapping 2-grams of the same words lost their occurrences.
  CHECK(pv.patches()[0].pieces.size() == 3);
  CHECK(pv.patches()[0].freq == 50);
  for (std::size_t i = 1; i < pv.patches().size(); ++i) CHECK(pv.patches()[i].freq <= 50);
  const patch_tokenizer pt(tok, pv);
  for (const auto& d : docs) {
    CHECK(pt.decode(pt.encode(d)) == d);
    CHECK(pt.encode(d).size() <= tok.encode(d).size());
  }
}

TEST_CASE("patch_vocab: keep_containing keeps longer n-grams that contain a chosen one") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  std::vector<std::string> docs(100, "the special");
  for (int i = 0; i < 20; ++i) docs.push_back("the special relativity");
  frugal::patch_vocab_options o;
  o.num_patches = 2;
  o.max_n = 3;
  const auto paper = patch_vocab::build(frugal::cpu, tok, views(docs), o);
  o.keep_containing = true;
  const auto keep = patch_vocab::build(frugal::cpu, tok, views(docs), o);
  // "the special" (freq 120 x 2) wins first in both; the paper's rule then zeroes "the special relativity".
  REQUIRE(paper.size() >= 1);
  CHECK(paper.patches()[0].pieces.size() == 2);
  for (const auto& p : paper.patches()) CHECK(p.pieces.size() == 2);
  REQUIRE(keep.size() == 2);
  CHECK(keep.patches()[1].pieces.size() == 3);
  CHECK(keep.patches()[1].freq == 20);
  const patch_tokenizer pt(tok, keep);
  CHECK(pt.encode("the special relativity").size() == 1);
  CHECK(pt.decode(pt.encode("the special relativity the special")) == "the special relativity the special");
}

TEST_CASE("patch_vocab: builder errors (empty corpus, m too large, bad max_n)") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  std::vector<std::string_view> none;
  std::vector<std::string_view> empty_docs{"", ""};
  std::vector<std::string_view> docs{"hello world hello world hello world"};
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::build(frugal::cpu, tok, none), "the corpus is empty (0 documents, 0 bytes)");
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::build(frugal::cpu, tok, empty_docs), "the corpus is empty (2 documents");
  frugal::patch_vocab_options o;
  o.num_patches = 50001;
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::build(frugal::cpu, tok, docs, o),
                           "num_patches (=50001) is larger than the number of replaceable base tokens (50000");
  o.num_patches = 0;
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::build(frugal::cpu, tok, docs, o), "num_patches (=0) must be >= 1");
  o.num_patches = 10;
  o.max_n = 5;
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::build(frugal::cpu, tok, docs, o), "max_n (=5) must be in [2, 4]");
  o.max_n = 2;
  o.min_freq = 0;
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::build(frugal::cpu, tok, docs, o), "min_freq (=0) must be >= 1");
  // Fewer qualifying n-grams than m: fewer tokens are replaced, nothing breaks.
  o.min_freq = 2;
  const auto pv = patch_vocab::build(frugal::cpu, tok, docs, o);
  CHECK(pv.size() >= 1);
  CHECK(pv.size() < 10);
}

TEST_CASE("patch_tokenizer: decode(encode(s)) == s on corpus, adversarial texts and random bytes; save/load") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  const auto& corpus = small_corpus();
  if (corpus.empty()) {
    MESSAGE("skipped: no corpus (run tests/vocab/make-corpus.sh)");
    return;
  }
  frugal::patch_vocab_options opt;
  opt.num_patches = 3000;
  const auto pv = patch_vocab::build(frugal::cpu, tok, views(corpus), opt);
  REQUIRE(pv.size() == 3000);
  const patch_tokenizer pt(tok, pv);
  // Property: every text round-trips, patching never lengthens, and expanding gives the split base ids.
  const std::string adv = vocab_test::slurp(std::string(FRUGAL_VOCAB_TEST_DATA) + "/adversarial.txt");
  std::vector<std::string> texts(corpus.begin(), corpus.begin() + 20);
  for (const auto d : vocab_test::split_docs(adv)) texts.emplace_back(d);
  std::mt19937_64 rng(11);
  for (int i = 0; i < 3000; ++i) texts.push_back(vocab_test::random_bytes(rng, i % 50 == 0 ? 4000 : 300));
  for (const auto& s : texts) {
    const auto ids = pt.encode(s);
    if (pt.decode(ids) != s) {
      INFO("text of ", s.size(), " bytes");
      REQUIRE(pt.decode(ids) == s);
    }
    const auto split = pt.split(tok.encode(s));
    REQUIRE(ids.size() <= split.size());
    REQUIRE(pt.expand(ids) == split);
  }
  // Batch = one by one.
  std::vector<std::string_view> v(texts.begin(), texts.begin() + 200);
  const auto batch = pt.encode_batch(frugal::cpu_t{2}, v);
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(batch[i] == pt.encode(v[i]));
  // Save / load gives the same tokenizer.
  const std::string path = vocab_test::temp_dir("pv") + "/patch.json";
  pv.save(path, &tok);
  const auto back = patch_vocab::load(path);
  CHECK(back.size() == pv.size());
  CHECK(back.base_fingerprint() == pv.base_fingerprint());
  const patch_tokenizer pt2(tok, back);
  for (std::size_t i = 0; i < 30; ++i) CHECK(pt2.encode(texts[i]) == pt.encode(texts[i]));
  // Savings on the held-out split.
  const std::string test = vocab_test::slurp(vocab_test::corpus_file("test.txt"));
  const auto tdocs = vocab_test::split_docs(test);
  std::int64_t nb = 0, np = 0;
  for (std::size_t i = 0; i < tdocs.size() && i < 40; ++i) {
    nb += static_cast<std::int64_t>(tok.encode(tdocs[i]).size());
    np += static_cast<std::int64_t>(pt.encode(tdocs[i]).size());
  }
  const double saving = 1.0 - static_cast<double>(np) / static_cast<double>(nb);
  MESSAGE("m=3000 built on " << pv.stats().corpus_bytes << " bytes: held-out tokens " << nb << " -> " << np << " ("
                             << 100 * saving << "% fewer)");
  CHECK(saving > 0.15);
}

TEST_CASE("patch_vocab: load errors name the file and the position; wrong base is refused") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  const std::string head = R"({"format": "frugal.patch_vocab", "version": 1, "base": {"vocab_size": 50257, "fingerprint": ")" +
                           patch_vocab::fingerprint(tok) + R"("}, "max_n": 3, "patches": [)";
  const auto ok = patch_vocab::from_json(head + R"({"id": 50255, "pieces": [464, 2041]}]})", "ok.json");
  CHECK(ok.size() == 1);
  const patch_tokenizer pt(tok, ok);
  CHECK(pt.encode("The special") == std::vector<std::int32_t>{50255});
  CHECK(pt.decode(std::vector<std::int32_t>{50255, 50255}) == "The specialThe special");
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::from_json(head + R"({"id": 50257, "pieces": [1, 2]}]})", "p.json"),
                           "p.json:1:");
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::from_json(head + R"({"id": 50255, "pieces": [1]}]})", "p.json"),
                           "a patch must have 2..max_n=3 pieces, found 1");
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::from_json(head + R"({"id": 50255, "pieces": [1, 2]}, {"id": 50254, "pieces": [50255, 2]}]})", "p.json"),
                           "has piece 50255, which is itself replaced by a patch");
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::from_json(head + R"({"id": 50255, "pieces": [1, 2]}, {"id": 50255, "pieces": [3, 2]}]})", "p.json"),
                           "patch id 50255 is used twice");
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::from_json(R"({"format": "x"})", "p.json"), "p.json:1:12: format must be");
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::from_json("{\"format\": \"frugal.patch_vocab\",\n \"version\": 1,}", "p.json"),
                           "p.json:2:15: expected a string object key");
  FRUGAL_CHECK_THROWS_WITH(patch_vocab::load("/nonexistent/p.json"), "cannot open");
  // Another base (a different fingerprint) and a non-replaceable id.
  auto other = patch_vocab::from_json(head + "]}", "x");
  const std::string wrong = R"({"format": "frugal.patch_vocab", "version": 1, "base": {"vocab_size": 50257, "fingerprint": "0123"}, "max_n": 2, "patches": []})";
  FRUGAL_CHECK_THROWS_WITH(patch_tokenizer(tok, patch_vocab::from_json(wrong, "w.json")), "built on another base tokenizer");
  FRUGAL_CHECK_THROWS_WITH(patch_tokenizer(tok, patch_vocab::from_json(head + R"({"id": 50256, "pieces": [1, 2]}]})", "s.json")),
                           "cannot be replaced");
  FRUGAL_CHECK_THROWS_WITH(patch_tokenizer(tok, patch_vocab::from_json(head + R"({"id": 65, "pieces": [1, 2]}]})", "b.json")),
                           "cannot be replaced");
  CHECK(patch_tokenizer(tok, other).encode("hello") == tok.encode("hello"));
}

// ----------------------------------------------------------------------------------------------------------------

TEST_CASE("init_patch_embeddings (cpu): exponential weights, roles, dtypes, errors") {
  using frugal::patch_embedding_role;
  CHECK(std::abs(frugal::detail::patch_weight(patch_embedding_role::input, 2.f, 0, 2) - 0.119203f) < 1e-5f);
  CHECK(std::abs(frugal::detail::patch_weight(patch_embedding_role::input, 2.f, 1, 2) - 0.880797f) < 1e-5f);
  CHECK(std::abs(frugal::detail::patch_weight(patch_embedding_role::output, 2.f, 0, 3) - 0.866813f) < 1e-5f);
  CHECK(std::abs(frugal::detail::patch_weight(patch_embedding_role::input, 2.f, 2, 3) - 0.866813f) < 1e-5f);
  CHECK(std::abs(frugal::detail::patch_weight(patch_embedding_role::mean, 2.f, 1, 4) - 0.25f) < 1e-7f);
  CHECK(std::abs(frugal::detail::patch_weight(patch_embedding_role::input, 0.f, 1, 4) - 0.25f) < 1e-7f);

  const std::int64_t rows = 40, cols = 37, ld = 41;
  const std::vector<std::int32_t> targets{30, 31, 39};
  const std::vector<std::int32_t> pieces{1, 2, -1, -1, 5, 6, 7, 8, 0, 3, 9, -1};
  const auto base = frugal_test::random_vector<double>(static_cast<std::size_t>(rows * ld), 5);
  for (const auto role : {patch_embedding_role::input, patch_embedding_role::output, patch_embedding_role::mean}) {
    auto run = [&](auto tagged) {
      using T = typename decltype(tagged)::type;
      std::vector<T> e(base.size());
      for (std::size_t i = 0; i < e.size(); ++i) e[i] = frugal::from_float<T>(static_cast<float>(base[i]));
      const auto before = e;
      frugal::init_patch_embeddings(frugal::cpu_t{2}, frugal::matrix_view<T>(e.data(), rows, cols, ld), targets.data(),
                                    pieces.data(), 3, 4, role);
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < ld; ++c) {
          const auto q = std::find(targets.begin(), targets.end(), r);
          const std::size_t at = static_cast<std::size_t>(r * ld + c);
          if (q == targets.end() || c >= cols) {
            REQUIRE(frugal::to_float(e[at]) == frugal::to_float(before[at]));  // untouched
            continue;
          }
          const std::size_t p = static_cast<std::size_t>(q - targets.begin());
          int k = 0;
          while (k < 4 && pieces[p * 4 + static_cast<std::size_t>(k)] >= 0) ++k;
          double ref = 0, mag = 0;
          for (int i = 0; i < k; ++i) {
            const double w = frugal::detail::patch_weight(role, 2.f, i, k);
            const double x = frugal::to_float(before[static_cast<std::size_t>(pieces[p * 4 + static_cast<std::size_t>(i)] * ld + c)]);
            ref += w * x;
            mag += std::abs(w * x);
          }
          const double tol = 4 * frugal_test::unit_roundoff<T>() * (mag + std::abs(ref)) + 1e-6 * mag;
          REQUIRE(std::abs(frugal::to_float(e[at]) - ref) <= tol);
        }
    };
    run(frugal::type_tag<float>{});
    run(frugal::type_tag<double>{});
    run(frugal::type_tag<frugal::half>{});
    run(frugal::type_tag<frugal::bfloat16>{});
  }
  std::vector<float> e(static_cast<std::size_t>(rows * cols));
  frugal::matrix_view<float> m(e.data(), rows, cols);
  const std::vector<std::int32_t> t_bad{40}, t_ok{30}, p_overlap{30, 1}, p_bad{1, 40}, p_pad{-1, 2}, p_ok{1, 2};
  FRUGAL_CHECK_THROWS_WITH(frugal::init_patch_embeddings(frugal::cpu, m, t_bad.data(), p_ok.data(), 1, 2, patch_embedding_role::mean),
                           "target 40 of patch 0 is outside [0, 40)");
  FRUGAL_CHECK_THROWS_WITH(frugal::init_patch_embeddings(frugal::cpu, m, t_ok.data(), p_overlap.data(), 1, 2, patch_embedding_role::mean),
                           "piece 30 of patch 0 is itself a patch row");
  FRUGAL_CHECK_THROWS_WITH(frugal::init_patch_embeddings(frugal::cpu, m, t_ok.data(), p_bad.data(), 1, 2, patch_embedding_role::mean),
                           "piece 40 of patch 0 is outside");
  FRUGAL_CHECK_THROWS_WITH(frugal::init_patch_embeddings(frugal::cpu, m, t_ok.data(), p_pad.data(), 1, 2, patch_embedding_role::mean),
                           "has no pieces");
  FRUGAL_CHECK_THROWS_WITH(frugal::init_patch_embeddings(frugal::cpu, m, t_ok.data(), p_ok.data(), 1, 1, patch_embedding_role::mean),
                           "max_n (=1) must be in [2, 16]");
  FRUGAL_CHECK_THROWS_WITH(frugal::init_patch_embeddings(frugal::cpu, m, t_ok.data(), p_ok.data(), 1, 2, patch_embedding_role::input, -1.f),
                           "alpha (=-1) must be finite");
  FRUGAL_CHECK_THROWS_WITH(frugal::init_patch_embeddings(frugal::cpu, frugal::matrix_view<float>(e.data(), rows, cols, 3),
                                                         t_ok.data(), p_ok.data(), 1, 2, patch_embedding_role::mean),
                           "row stride");
}

TEST_CASE("init_patch_embeddings: a patch_vocab's tables on a GPT-2-shaped matrix") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  std::vector<std::string> docs(30, "the special relativity theory and the general relativity theory");
  frugal::patch_vocab_options o;
  o.num_patches = 4;
  const auto pv = patch_vocab::build(frugal::cpu, tok, views(docs), o);
  const auto targets = pv.init_targets();
  const auto pieces = pv.init_pieces();
  const std::int64_t d = 8;
  std::vector<float> wte(static_cast<std::size_t>(tok.vocab_size() * d));
  for (std::size_t i = 0; i < wte.size(); ++i) wte[i] = static_cast<float>(i % 97) * 0.01f;
  frugal::init_patch_embeddings(frugal::cpu, frugal::matrix_view<float>(wte.data(), tok.vocab_size(), d), targets.data(),
                                pieces.data(), pv.size(), pv.max_n(), frugal::patch_embedding_role::mean);
  const auto& p0 = pv.patches()[0];
  float ref = 0;
  for (const auto x : p0.pieces) ref += wte[static_cast<std::size_t>(x * d)] / static_cast<float>(p0.pieces.size());
  CHECK(std::abs(wte[static_cast<std::size_t>(p0.id * d)] - ref) < 1e-5f);
}
