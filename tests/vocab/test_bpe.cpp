// GPT-2 byte-level BPE: strict JSON, merge semantics on a tiny vocabulary, file errors with positions, tokenizer.json,
// and on GPT-2's real files: exactness against two oracles (the npm package's JS encoder, the Python reference),
// byte round trips (fuzz), the long-piece heap path, specials and batch encoding.
#include <frugal/vocab/bpe.hpp>

#include <algorithm>
#include <random>

#include "common/test_util.hpp"
#include "vocab_test_util.hpp"

using frugal::gpt2_tokenizer;
using vocab_test::write;
namespace json = frugal::detail::json;

TEST_CASE("json: strict parser values and errors with line:column") {
  const auto v = json::parse("t", "x.json", R"({"a": [1, -2.5e3, true, false, null, "\u00e9\ud83d\ude00\n"], "b": {}})");
  REQUIRE(v.type == json::kind::object);
  const auto& a = *v.find("a");
  CHECK(a.items.size() == 6);
  CHECK(a.items[0].is_integer);
  CHECK(a.items[0].integer == 1);
  CHECK(a.items[1].num == -2500.0);
  CHECK(a.items[5].str == "\xc3\xa9\xf0\x9f\x98\x80\n");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "{\"a\": 1,}"), "x.json:1:9: expected a string object key");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "{\n  \"a\" 1}"), "x.json:2:7: expected ':'");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "[01]"), "x.json:1:3: leading zeros");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "[\"a\tb\"]"), "unescaped control character");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "[\"\xff\"]"), "invalid UTF-8");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "[\"\\ud800\"]"), "high surrogate");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "{\"a\":1,\"a\":2}"), "duplicate object key");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "[1] 2"), "unexpected data after");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "[1,"), "unexpected end of input");
  FRUGAL_CHECK_THROWS_WITH(json::parse("t", "x.json", "nul"), "expected a JSON value");
}

namespace {
// A tiny byte-level vocabulary: the 256 bytes (id = byte), then merges a+b, ab+c, Ġ+t, a+a, x+y, xy+x, x+x.
struct tiny_files {
  std::string dir, enc, bpe;
  explicit tiny_files(const std::string& name, const std::string& merges_text = "") {
    dir = vocab_test::temp_dir(name);
    enc = dir + "/encoder.json";
    bpe = dir + "/vocab.bpe";
    std::string e = "{";
    for (unsigned b = 0; b < 256; ++b) {
      json::write_string(e, frugal::detail::bytes_to_unicode_token(std::string(1, static_cast<char>(b))));
      e += frugal::detail::concat(": ", b, ", ");
    }
    e += R"("ab": 256, "abc": 257, "Ġt": 258, "aa": 259, "xy": 260, "xyx": 261, "xx": 262, "<|endoftext|>": 263})";
    write(enc, e);
    write(bpe, merges_text.empty() ? "#version: 0.2\na b\nab c\nĠ t\na a\nx y\nxy x\nx x\n" : merges_text);
  }
};
}  // namespace

TEST_CASE("bpe: merge semantics of the reference on a tiny vocabulary") {
  tiny_files f("tiny");
  const auto tok = gpt2_tokenizer::from_files(f.enc, f.bpe);
  CHECK(tok.vocab_size() == 264);
  CHECK(tok.eot_id() == 263);
  CHECK(tok.num_merges() == 7);
  using v = std::vector<std::int32_t>;
  CHECK(tok.encode("abc") == v{257});
  CHECK(tok.encode("aaa") == v{259, 'a'});    // all occurrences of the min-rank pair, left to right
  CHECK(tok.encode("aaaa") == v{259, 259});
  CHECK(tok.encode("aab") == v{'a', 256});     // (a,b) has the lower rank than (a,a)
  CHECK(tok.encode("xyx") == v{261});          // x y -> xy, then xy x -> xyx
  CHECK(tok.encode("xxy") == v{'x', 260});     // (x,y) ranks before (x,x)
  CHECK(tok.encode("xyxy") == v{260, 260});
  CHECK(tok.encode(" t") == v{258});
  CHECK(tok.encode("a<|endoftext|>b") == v{'a', 263, 'b'});
  CHECK(tok.encode_ordinary("<|endoftext|>").size() == 13);
  CHECK(tok.decode(tok.encode("hello abc  \xff\xfe")) == "hello abc  \xff\xfe");
  CHECK(tok.token_bytes(257) == "abc");
  CHECK(tok.producing_merge(257) == 1);
  CHECK(tok.producing_merge('a') == -1);
  FRUGAL_CHECK_THROWS_WITH(tok.decode(v{264}), "token id 264 is outside [0, 264)");
  FRUGAL_CHECK_THROWS_WITH(tok.token_bytes(-1), "token id -1 is outside");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer().encode("x"), "empty tokenizer");
}

TEST_CASE("bpe: the long-piece heap path equals the literal loop") {
  tiny_files f("tiny-heap");
  const auto tok = gpt2_tokenizer::from_files(f.enc, f.bpe);
  CHECK(tok.model().well_ordered);
  frugal::detail::bpe_model literal = tok.model();
  literal.well_ordered = false;  // forces the O(n^2) reference loop on every piece
  std::mt19937_64 rng(1);
  for (int it = 0; it < 200; ++it) {
    std::string s(static_cast<std::size_t>(257 + rng() % 700), 'a');
    for (auto& c : s) c = "abcxy"[rng() % (it % 2 ? 2 : 5)];
    std::vector<std::int32_t> a, b;
    frugal::detail::bpe_scratch s1(tok.model()), s2(literal);
    frugal::detail::bpe_merge_piece(tok.model(), s, a, s1);
    frugal::detail::bpe_merge_piece(literal, s, b, s2);
    REQUIRE(a == b);
  }
}

TEST_CASE("bpe: malformed files give errors naming the file and the position") {
  tiny_files f("bad");
  const std::string d = f.dir;
  write(d + "/m1.bpe", "#version: 0.2\na b\nabc\n");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(f.enc, d + "/m1.bpe"), "m1.bpe:3:1: expected two tokens");
  write(d + "/m2.bpe", "#version: 0.2\na b\na  b\n");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(f.enc, d + "/m2.bpe"), "m2.bpe:3:1");
  write(d + "/m3.bpe", "#version: 0.2\na b\nab q\n");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(f.enc, d + "/m3.bpe"), "m3.bpe:3:1: merge result \"abq\" is not in");
  write(d + "/m4.bpe", "a b\nzz b\n");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(f.enc, d + "/m4.bpe"), "m4.bpe:2:1: merge part \"zz\"");
  write(d + "/m5.bpe", "a b\n\nab c\n");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(f.enc, d + "/m5.bpe"), "m5.bpe:2:1: empty line");
  write(d + "/e1.json", "{\"a\": 0,\n \"b\": 1,}");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/e1.json", f.bpe), "e1.json:2:9: expected a string object key");
  write(d + "/e2.json", "{\"a\": 0, \"b\": \"x\"}");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/e2.json", f.bpe), "e2.json:1:15: the id of token \"b\" must be an integer");
  write(d + "/e3.json", "{\"a\": 0, \"b\": 2}");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/e3.json", f.bpe), "id 1 is missing");
  write(d + "/e4.json", "{\"a\": 0, \"b\": 0}");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/e4.json", f.bpe), "e4.json:1:15: token id 0 is used twice");
  write(d + "/e5.json", "{\"a\": 0, \"b\": 1}");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/e5.json", f.bpe), "the single-byte token for byte 0");
  write(d + "/e6.json", "{\"\\u4e00\": 0}");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/e6.json", f.bpe), "outside the byte-level alphabet");
  write(d + "/e7.json", "[1, 2]");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/e7.json", f.bpe), "must be an object");
  write(d + "/e8.json", "");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/e8.json", f.bpe), "e8.json:1:1: unexpected end of input");
  // A huge id in a tiny file: rejected before any per-id table exists (a fuzz finding: this allocated ~36 GB).
  write(d + "/e9.json", "{\"a\": 0, \"b\": 1073741823}");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/e9.json", f.bpe),
                           "token ids must be 0..1073741823 without gaps, but id 1 is missing");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_files(d + "/missing.json", f.bpe), "cannot open");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_dir(d + "/nowhere"), "no encoder.json + vocab.bpe nor tokenizer.json");
}

namespace {
//! Writes a Hugging Face tokenizer.json for the same model as encoder.json + vocab.bpe (merges in `style`).
std::string write_tokenizer_json(const std::string& enc, const std::string& bpe, const std::string& path,
                                 bool array_merges, const std::string& extra_model = "",
                                 const std::string& pre = R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})") {
  const std::string vocab = vocab_test::slurp(enc);
  std::string merges;
  const std::string bpe_text = vocab_test::slurp(bpe);
  std::istringstream in(bpe_text);
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    if (line.rfind("#version", 0) == 0 || line.empty()) continue;
    const auto sp = line.find(' ');
    merges += first ? "" : ", ";
    first = false;
    if (array_merges) {
      merges += "[";
      json::write_string(merges, line.substr(0, sp));
      merges += ", ";
      json::write_string(merges, line.substr(sp + 1));
      merges += "]";
    } else {
      json::write_string(merges, line);
    }
  }
  std::string eot_id = "50256";
  if (vocab.size() < 100000) eot_id = "263";
  const std::string text = R"({"version": "1.0", "truncation": null, "padding": null,
 "added_tokens": [{"id": )" + eot_id + R"(, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": true}],
 "normalizer": null, "pre_tokenizer": )" + pre + R"(,
 "post_processor": null, "decoder": {"type": "ByteLevel"},
 "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "", "end_of_word_suffix": "",
   "fuse_unk": false)" + extra_model + R"(, "vocab": )" + vocab + R"(, "merges": [)" + merges + "]}}";
  write(path, text);
  return path;
}
}  // namespace

TEST_CASE("bpe: Hugging Face tokenizer.json (both merge styles) and its errors") {
  tiny_files f("hf");
  const auto ref = gpt2_tokenizer::from_files(f.enc, f.bpe);
  for (const bool arr : {false, true}) {
    const auto tok = gpt2_tokenizer::from_tokenizer_json(write_tokenizer_json(f.enc, f.bpe, f.dir + "/tokenizer.json", arr));
    CHECK(tok.vocab_size() == ref.vocab_size());
    CHECK(tok.eot_id() == 263);
    for (const char* s : {"abc aab xyxy xxy", " t<|endoftext|>aaaa", "\xff\xfe x"}) CHECK(tok.encode(s) == ref.encode(s));
  }
  CHECK(gpt2_tokenizer::from_dir(f.dir).vocab_size() == 264);  // encoder.json + vocab.bpe preferred
  const std::string d = f.dir;
  write_tokenizer_json(f.enc, f.bpe, d + "/t1.json", false, R"(, "byte_fallback": true)");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_tokenizer_json(d + "/t1.json"), "model.byte_fallback = true is not supported");
  write_tokenizer_json(f.enc, f.bpe, d + "/t2.json", false, "", R"({"type": "Whitespace"})");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_tokenizer_json(d + "/t2.json"), "pre_tokenizer.type must be \"ByteLevel\"");
  write_tokenizer_json(f.enc, f.bpe, d + "/t3.json", false, "", R"({"type": "ByteLevel", "add_prefix_space": true})");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_tokenizer_json(d + "/t3.json"), "t3.json:3:");
  write(d + "/t4.json", R"({"model": {"type": "WordPiece", "vocab": {}, "merges": []}})");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_tokenizer_json(d + "/t4.json"), "t4.json:1:20: only BPE models");
  write(d + "/t5.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}})");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_tokenizer_json(d + "/t5.json"), "t5.json:1:57: a merge must be");
  write(d + "/t6.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}}})");
  FRUGAL_CHECK_THROWS_WITH(gpt2_tokenizer::from_tokenizer_json(d + "/t6.json"), "missing member \"merges\"");
}

// ----------------------------------------------------------------------------------------------------------------
// GPT-2's real files

TEST_CASE("gpt2: known encodings, special token, sizes") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  CHECK(tok.vocab_size() == 50257);
  CHECK(tok.num_merges() == 50000);
  CHECK(tok.eot_id() == 50256);
  CHECK(tok.jit());
  using v = std::vector<std::int32_t>;
  CHECK(tok.encode("Hello world") == v{15496, 995});
  CHECK(tok.encode("<|endoftext|>") == v{50256});
  CHECK(tok.encode("a<|endoftext|>b") == v{64, 50256, 65});
  CHECK(tok.encode_ordinary("<|endoftext|>") == v{27, 91, 437, 1659, 5239, 91, 29});
  CHECK(tok.token_bytes(50256) == "<|endoftext|>");
  CHECK(tok.token_bytes(220) == " ");
  CHECK(tok.decode(v{15496, 11, 995, 0}) == "Hello, world!");
  CHECK(gpt2_tokenizer::default_dir().size() > 0);
}

TEST_CASE("gpt2: decode(encode(s)) == s for random byte strings, invalid UTF-8 included (fuzz)") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  std::mt19937_64 rng(42);
  for (int it = 0; it < 3000; ++it) {
    const std::string s = vocab_test::random_bytes(rng, it % 100 == 0 ? 5000 : 200);
    const auto ids = tok.encode(s);
    if (tok.decode(ids) != s) {
      INFO("input of ", s.size(), " bytes, iteration ", it);
      REQUIRE(tok.decode(ids) == s);
    }
    REQUIRE(tok.decode(tok.encode_ordinary(s)) == s);
  }
  // Long runs take the heap path; all 256 single bytes; empty input.
  for (const std::string& s : std::vector<std::string>{std::string(100000, ' '), std::string(70000, '\xff'), std::string(5000, 'a') + "\xc3",
                              std::string(3000, '\n') + std::string(3000, '1')}) {
    CHECK(tok.decode(tok.encode(s)) == s);
  }
  for (int b = 0; b < 256; ++b) {
    const std::string s(1, static_cast<char>(b));
    CHECK(tok.encode(s) == std::vector<std::int32_t>{tok.byte_token(static_cast<unsigned char>(b))});
  }
  CHECK(tok.encode("").empty());
}

TEST_CASE("gpt2: the heap path equals the literal reference loop on GPT-2's merges") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  REQUIRE(tok.model().well_ordered);
  frugal::detail::bpe_model literal = tok.model();
  literal.well_ordered = false;
  std::mt19937_64 rng(7);
  for (int it = 0; it < 60; ++it) {
    std::string s;
    const std::size_t n = 300 + rng() % 3000;
    const char* alpha[] = {"abcdefghijklmnopqrstuvwxyz", "aeiou", "tsrnle", "\xff\xfe\x80"};
    const std::string a = alpha[it % 4];
    while (s.size() < n) s += a[rng() % a.size()];
    std::vector<std::int32_t> x, y;
    frugal::detail::bpe_scratch s1(tok.model()), s2(literal);
    frugal::detail::bpe_merge_piece(tok.model(), s, x, s1);
    frugal::detail::bpe_merge_piece(literal, s, y, s2);
    REQUIRE(x == y);
  }
}

namespace {
//! Compares encode_ordinary per document with an oracle file; returns the number of bytes compared.
std::int64_t compare_with_oracle(const gpt2_tokenizer& tok, const std::string& input, const std::string& ids_file,
                                 std::int64_t& tokens, std::int64_t& docs_out) {
  const std::string text = vocab_test::slurp(input);
  const auto docs = vocab_test::split_docs(text);
  const auto ref = vocab_test::read_ids(ids_file);
  REQUIRE(ref.size() <= docs.size());
  REQUIRE(ref.size() > 0);
  std::int64_t bytes = 0;
  for (std::size_t d = 0; d < ref.size(); ++d) {
    const auto ids = tok.encode_ordinary(docs[d]);
    if (ids != ref[d]) {
      std::size_t k = 0;
      while (k < ids.size() && k < ref[d].size() && ids[k] == ref[d][k]) ++k;
      INFO("document ", d, " of ", input, ": first difference at token ", k);
      REQUIRE(ids == ref[d]);
    }
    bytes += static_cast<std::int64_t>(docs[d].size());
    tokens += static_cast<std::int64_t>(ids.size());
  }
  docs_out += static_cast<std::int64_t>(ref.size());
  return bytes;
}
}  // namespace

TEST_CASE("gpt2: token-for-token equal to the JS (gpt-3-encoder) and Python (openai/gpt-2) oracles") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  const std::string o = FRUGAL_VOCAB_ORACLE_DIR;
  const std::string data = FRUGAL_VOCAB_TEST_DATA;
  struct job {
    std::string input, ids;
  };
  const std::vector<job> jobs = {
      {data + "/adversarial.txt", o + "/adversarial.js.ids"},
      {data + "/adversarial.txt", o + "/adversarial.py.ids"},
      {data + "/adversarial-python.txt", o + "/adversarial-python.py.ids"},
      {vocab_test::corpus_file("test.txt"), o + "/test.js.ids"},
      {vocab_test::corpus_file("test.txt"), o + "/test.py.ids"},
      {vocab_test::corpus_file("train.txt"), o + "/train.js.ids"},  // these two only with FRUGAL_VOCAB_FULL_ORACLE=1
      {vocab_test::corpus_file("train.txt"), o + "/train.py.ids"},
  };
  int compared = 0;
  for (const auto& j : jobs) {
    if (!vocab_test::exists(j.ids) || !vocab_test::exists(j.input)) {
      MESSAGE("oracle file not available (skipped): " << j.ids);
      continue;
    }
    std::int64_t tokens = 0, docs = 0;
    const std::int64_t bytes = compare_with_oracle(tok, j.input, j.ids, tokens, docs);
    MESSAGE("equal to " << j.ids << ": " << docs << " documents, " << bytes << " bytes, " << tokens << " tokens");
    ++compared;
  }
  if (compared == 0) MESSAGE("skipped: no oracle output (needs node or python3-regex at test setup)");
}

TEST_CASE("gpt2: tokenizer.json of the same model encodes identically; batch encode equals encode") {
  VOCAB_REQUIRE_GPT2();
  const auto& tok = *vocab_test::gpt2();
  const std::string dir = gpt2_tokenizer::default_dir();
  const std::string tmp = vocab_test::temp_dir("gpt2-hf");
  const auto hf = gpt2_tokenizer::from_tokenizer_json(
      write_tokenizer_json(dir + "/encoder.json", dir + "/vocab.bpe", tmp + "/tokenizer.json", false));
  CHECK(hf.vocab_size() == 50257);
  CHECK(hf.eot_id() == 50256);
  const std::string adv = vocab_test::slurp(std::string(FRUGAL_VOCAB_TEST_DATA) + "/adversarial.txt");
  CHECK(hf.encode(adv) == tok.encode(adv));
  const auto docs = vocab_test::split_docs(adv);
  const auto batch = tok.encode_batch(frugal::cpu_t{3}, docs);
  REQUIRE(batch.size() == docs.size());
  for (std::size_t i = 0; i < docs.size(); ++i) CHECK(batch[i] == tok.encode(docs[i]));
  CHECK(tok.encode_batch(frugal::cpu, std::span<const std::string_view>{}).empty());
}
