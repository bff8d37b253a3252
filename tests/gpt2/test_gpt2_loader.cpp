// Tests of the GPT-2 example's weight files: safetensors and llm.c round trips, and the errors a truncated or
// inconsistent file gives (each names the tensor).
#include <doctest/doctest.h>

#include <common/test_util.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <string>

#include "model.hpp"

namespace {

gpt2::config tiny() {
  gpt2::config c;
  c.name = "tiny";
  c.n_layer = 2, c.n_head = 2, c.n_embd = 8, c.vocab_size = 32, c.n_ctx = 16;
  return c;
}

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("frugal_gpt2_" + std::to_string(::getpid()) + "_" + name)).string();
}

std::string read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_all(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

// Splits a safetensors file into (header JSON, data bytes) and joins them back.
struct st_file {
  nlohmann::json header;
  std::string data;
};
st_file split(const std::string& bytes) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  return {nlohmann::json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}
std::string join(const st_file& f) {
  const std::string h = f.header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  return out + h + f.data;
}

void check_equal(const gpt2::weights& a, const gpt2::weights& b, float tol) {
  auto eq = [&](const std::vector<float>& x, const std::vector<float>& y) {
    REQUIRE(x.size() == y.size());
    for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(std::abs(x[i] - y[i]) <= tol * (1.f + std::abs(x[i])));
  };
  CHECK(a.cfg.n_layer == b.cfg.n_layer);
  CHECK(a.cfg.n_head == b.cfg.n_head);
  CHECK(a.cfg.n_embd == b.cfg.n_embd);
  CHECK(a.cfg.vocab_size == b.cfg.vocab_size);
  CHECK(a.cfg.n_ctx == b.cfg.n_ctx);
  eq(a.wte, b.wte), eq(a.wpe, b.wpe), eq(a.lnf_g, b.lnf_g), eq(a.lnf_b, b.lnf_b);
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    const auto &x = a.layers[l], &y = b.layers[l];
    eq(x.ln1_g, y.ln1_g), eq(x.ln1_b, y.ln1_b), eq(x.qkv_w, y.qkv_w), eq(x.qkv_b, y.qkv_b);
    eq(x.proj_w, y.proj_w), eq(x.proj_b, y.proj_b), eq(x.ln2_g, y.ln2_g), eq(x.ln2_b, y.ln2_b);
    eq(x.fc_w, y.fc_w), eq(x.fc_b, y.fc_b), eq(x.fcproj_w, y.fcproj_w), eq(x.fcproj_b, y.fcproj_b);
  }
}

gpt2::weights tiny_weights() {
  auto w = gpt2::random_weights(tiny(), 7);
  // non-trivial LayerNorm and biases, so that every tensor's placement is checked
  for (auto& l : w.layers) {
    gpt2::detail::fill_normal(l.ln1_b, 1, 1, 0.1f), gpt2::detail::fill_normal(l.qkv_b, 1, 2, 0.1f);
    gpt2::detail::fill_normal(l.fc_b, 1, 3, 0.1f), gpt2::detail::fill_normal(l.ln2_g, 1, 4, 0.1f);
  }
  return w;
}

}  // namespace

TEST_CASE("gpt2 config: named sizes and parameter counts") {
  CHECK(gpt2::config::from_name("124M").num_params() == 124439808);
  CHECK(gpt2::config::from_name("xl").n_layer == 48);
  CHECK(gpt2::config::from_name("1558M").num_params() == 1557611200);
  FRUGAL_CHECK_THROWS_WITH(gpt2::config::from_name("7B"), "unknown model '7B'");
}

TEST_CASE("gpt2 random init: seeded, reproducible, GPT-2 statistics") {
  const auto a = gpt2::random_weights(tiny(), 42), b = gpt2::random_weights(tiny(), 42), c = gpt2::random_weights(tiny(), 43);
  CHECK(a.wte == b.wte);
  CHECK(a.wte != c.wte);
  auto cfg = gpt2::config::from_name("124M");
  cfg.n_layer = 1;
  const auto w = gpt2::random_weights(cfg, 1);
  double s = 0, s2 = 0;
  for (float v : w.wte) s += v, s2 += double(v) * v;
  const double n = double(w.wte.size()), sd = std::sqrt(s2 / n - (s / n) * (s / n));
  CHECK(std::abs(s / n) < 1e-4);
  CHECK(std::abs(sd - 0.02) < 2e-4);
  double r2 = 0;
  for (float v : w.layers[0].proj_w) r2 += double(v) * v;
  CHECK(std::abs(std::sqrt(r2 / double(w.layers[0].proj_w.size())) - 0.02 / std::sqrt(2.0)) < 3e-4);
}

TEST_CASE("gpt2 safetensors: round trip in f32, f16, bf16, with and without the transformer. prefix") {
  const auto w = tiny_weights();
  const std::string p = tmp_path("rt.safetensors");
  for (auto dt : {frugal::dtype::f32, frugal::dtype::f16, frugal::dtype::bf16}) {
    CAPTURE(frugal::dtype_name(dt));
    gpt2::save_safetensors(w, p, dt);
    const auto r = gpt2::load_safetensors(p, {2});
    check_equal(w, r, dt == frugal::dtype::f32 ? 0.f : dt == frugal::dtype::f16 ? 1e-3f : 8e-3f);
  }
  // HF GPT2LMHeadModel naming: "transformer." prefix plus a tied lm_head.weight
  gpt2::save_safetensors(w, p);
  auto f = split(read_all(p));
  nlohmann::json h = nlohmann::json::object();
  for (auto& [k, v] : f.header.items()) h[k == "__metadata__" ? k : "transformer." + k] = v;
  h["lm_head.weight"] = h["transformer.wte.weight"];
  f.header = h;
  write_all(p, join(f));
  check_equal(w, gpt2::load_safetensors(p, {2}), 0.f);
  // n_head from config.json beside the file
  {
    std::filesystem::create_directories(tmp_path("dir"));
    const std::string q = tmp_path("dir") + "/model.safetensors";
    gpt2::save_safetensors(w, q);
    write_all(tmp_path("dir") + "/config.json", R"({"n_head": 4, "n_embd": 8})");
    CHECK(gpt2::load_safetensors(q).cfg.n_head == 4);
    std::filesystem::remove_all(tmp_path("dir"));
  }
  std::remove(p.c_str());
}

TEST_CASE("gpt2 safetensors: truncated and inconsistent files name the tensor") {
  const auto w = tiny_weights();
  const std::string p = tmp_path("bad.safetensors");
  gpt2::save_safetensors(w, p);
  const std::string good = read_all(p);
  const auto parts = split(good);

  SUBCASE("truncated inside a tensor") {
    const auto& e = parts.header["h.1.mlp.c_fc.weight"];
    const std::size_t cut = 8 + (good.size() - 8 - parts.data.size()) + e["data_offsets"][0].get<std::size_t>() + 12;
    write_all(p, good.substr(0, cut));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "tensor 'h.1.mlp.c_fc.weight' is truncated");
  }
  SUBCASE("truncated inside the header") {
    write_all(p, good.substr(0, 40));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "exceeds the file");
  }
  SUBCASE("shorter than the size field") {
    write_all(p, good.substr(0, 5));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "too short");
  }
  SUBCASE("wrong shape") {
    auto f = parts;
    f.header["h.0.attn.c_proj.weight"]["shape"] = {8, 9};
    write_all(p, join(f));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "tensor 'h.0.attn.c_proj.weight' has shape [8, 9], expected [8, 8]");
  }
  SUBCASE("offsets that do not match the shape") {
    auto f = parts;
    auto& off = f.header["h.1.ln_2.bias"]["data_offsets"];
    off[1] = off[1].get<std::int64_t>() - 4;
    write_all(p, join(f));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "tensor 'h.1.ln_2.bias' has data_offsets");
  }
  SUBCASE("missing tensor") {
    auto f = parts;
    f.header.erase("h.1.attn.c_attn.bias");
    write_all(p, join(f));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "tensor 'h.1.attn.c_attn.bias' is missing");
  }
  SUBCASE("unsupported dtype") {
    auto f = parts;
    f.header["ln_f.bias"]["dtype"] = "I64";
    write_all(p, join(f));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "tensor 'ln_f.bias' has dtype I64");
  }
  SUBCASE("wte and wpe disagree") {
    auto f = parts;
    f.header["wpe.weight"]["shape"] = {16, 4};
    write_all(p, join(f));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "are inconsistent");
  }
  SUBCASE("header is not JSON") {
    auto s = good;
    s[9] = '#';
    write_all(p, s);
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "header is not valid JSON");
  }
  SUBCASE("non-finite value") {
    auto f = parts;
    const std::size_t at = f.header["h.0.ln_1.weight"]["data_offsets"][0].get<std::size_t>();
    const float inf = std::numeric_limits<float>::infinity();
    std::memcpy(f.data.data() + at, &inf, 4);
    write_all(p, join(f));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(p, {2}), "tensor 'h.0.ln_1.weight' holds a non-finite value");
  }
  SUBCASE("missing file") {
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_safetensors(tmp_path("nope.safetensors")), "cannot open");
  }
  std::remove(p.c_str());
}

TEST_CASE("gpt2 llm.c checkpoint: round trip and errors") {
  const auto w = tiny_weights();
  const std::string p = tmp_path("m.bin");
  gpt2::save_llmc(w, p);
  check_equal(w, gpt2::load_llmc(p), 0.f);
  check_equal(w, gpt2::load_weights(p), 0.f);  // picked by its magic
  const std::string good = read_all(p);
  const std::int64_t C = 8, L = 2, V = 32, T = 16;
  SUBCASE("truncated inside fcw of layer 1") {
    // header, wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw[0], then 10 floats into fcw[1]
    const std::int64_t floats = V * C + T * C + L * C * 2 + L * 3 * C * C + L * 3 * C + L * C * C + L * C + 2 * L * C +
                                4 * C * C + 10;
    write_all(p, good.substr(0, static_cast<std::size_t>(1024 + 4 * floats)));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_llmc(p), "tensor 'fcw[layer 1]' is truncated");
  }
  SUBCASE("trailing bytes") {
    write_all(p, good + "xxxx");
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_llmc(p), "after the last tensor");
  }
  SUBCASE("bad magic and version") {
    auto s = good;
    s[0] = 1;
    write_all(p, s);
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_llmc(p), "bad magic");
    s = good;
    s[4] = 9;
    write_all(p, s);
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_llmc(p), "unsupported version 9");
  }
  SUBCASE("inconsistent header") {
    auto s = good;
    const std::int32_t nh = 3;  // 8 is not a multiple of 3
    std::memcpy(s.data() + 5 * 4, &nh, 4);
    write_all(p, s);
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_llmc(p), "inconsistent config");
  }
  SUBCASE("header only") {
    write_all(p, good.substr(0, 100));
    FRUGAL_CHECK_THROWS_WITH(gpt2::load_llmc(p), "too short");
  }
  std::remove(p.c_str());
}
