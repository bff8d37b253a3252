// examples/gpt2/model.hpp — GPT-2 configurations, host weights and the three ways to get them.
//
// A minimal GPT-2 (Radford et al. 2019; the layout of HF transformers' GPT2LMHeadModel and Karpathy's llm.c):
// token + position embeddings, n_layer pre-LayerNorm blocks (causal multi-head attention, GELU-tanh MLP), a final
// LayerNorm and an LM head tied to the token embedding.
//
// Host weights are kept in float, in the layout the decode GEMVs read (frugal::gemv: "channel-major" [K = in,
// N = out], element (k, n) at w[k * N + n]) — exactly HF's Conv1D layout. Engines convert them to their dtype.
//
// Sources of weights:
//   random_weights(cfg, seed)      GPT-2's initialisation: N(0, 0.02) for embeddings and linears, the two residual
//                                  projections of each block scaled by 1/sqrt(2 n_layer), LayerNorm (1, 0), biases 0.
//                                  Counter-based and parallel: the same seed gives the same model on every machine.
//   load_safetensors(path)         HF `model.safetensors` (F32/F16/BF16; names with or without "transformer.").
//   load_llmc(path)                llm.c's `gpt2_124M.bin` (version 3 = f32, 5 = bf16; PyTorch Linear layout [out,in]).
// A truncated or inconsistent file throws frugal::error naming the tensor.
#pragma once

#include <frugal/core/device.hpp>
#include <frugal/core/dtype.hpp>
#include <frugal/core/error.hpp>
#include <frugal/core/parallel.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace gpt2 {

//! Throws frugal::error("gpt2::<op>: <parts>").
template <class... Parts>
[[noreturn]] void fail(const char* op, Parts&&... parts) {
  throw frugal::error(frugal::detail::concat("gpt2::", op, ": ", std::forward<Parts>(parts)...));
}

struct config {
  std::string name = "124M";
  int n_layer = 12;
  int n_head = 12;
  int n_embd = 768;
  int vocab_size = 50257;
  int n_ctx = 1024;

  int head_dim() const { return n_embd / n_head; }
  //! Parameters (the LM head is tied, so counted once).
  std::int64_t num_params() const {
    const std::int64_t C = n_embd, L = n_layer;
    return std::int64_t(vocab_size) * C + std::int64_t(n_ctx) * C + L * (12 * C * C + 13 * C) + 2 * C;
  }
  //! "124M" (also "small", "gpt2"), "355M" ("medium"), "774M" ("large"), "1558M" ("xl", "1.5B").
  static config from_name(std::string_view s) {
    config c;
    if (s == "124M" || s == "small" || s == "gpt2") {
      c = {"124M", 12, 12, 768};
    } else if (s == "355M" || s == "medium" || s == "gpt2-medium") {
      c = {"355M", 24, 16, 1024};
    } else if (s == "774M" || s == "large" || s == "gpt2-large") {
      c = {"774M", 36, 20, 1280};
    } else if (s == "1558M" || s == "xl" || s == "XL" || s == "1.5B" || s == "gpt2-xl") {
      c = {"1558M", 48, 25, 1600};
    } else {
      fail("config", "unknown model '", std::string(s), "'; known: 124M, 355M, 774M, 1558M (xl)");
    }
    return c;
  }
  void validate(const char* op) const {
    if (n_layer < 1 || n_head < 1 || n_embd < 1 || vocab_size < 1 || n_ctx < 1 || n_embd % n_head != 0)
      fail(op, "inconsistent config: n_layer=", n_layer, " n_head=", n_head, " n_embd=", n_embd,
           " vocab_size=", vocab_size, " n_ctx=", n_ctx, " (n_embd must be a multiple of n_head)");
  }
};

//! Weights of one block, float, channel-major [in, out] for the linears.
struct layer_weights {
  std::vector<float> ln1_g, ln1_b;  // [C]
  std::vector<float> qkv_w;         // [C, 3C]  (q | k | v along the output)
  std::vector<float> qkv_b;         // [3C]
  std::vector<float> proj_w;        // [C, C]   attention output projection
  std::vector<float> proj_b;        // [C]
  std::vector<float> ln2_g, ln2_b;  // [C]
  std::vector<float> fc_w;          // [C, 4C]
  std::vector<float> fc_b;          // [4C]
  std::vector<float> fcproj_w;      // [4C, C]  MLP down projection
  std::vector<float> fcproj_b;      // [C]
  std::vector<float> adapter;       // [C, C] or empty: residual re-rotation after the block (layer-level LaRoSA)
};

struct weights {
  config cfg;
  std::vector<float> wte;  // [V, C] token embedding (and the tied LM head)
  std::vector<float> wpe;  // [n_ctx, C]
  std::vector<layer_weights> layers;
  std::vector<float> lnf_g, lnf_b;  // [C]

  // A rotation-folded model (larosa.hpp) differs from GPT-2's own layout in four ways, all empty / false here:
  bool rms_norm = false;            // norms are x / rms(x) (mean-centring folded into the residual writers)
  std::vector<float> wte_in;        // [V, C] input embedding when untied from the LM head (else wte)
  std::vector<float> lm_w;          // [C, V] untied LM head, channel-major (else wte transposed)
  std::vector<float> lm_b;          // [V] LM-head bias (folded ln_f.bias), or empty
};

namespace detail {

// splitmix64: a counter-based generator, so element i of tensor t gets the same value on any thread count.
inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline float unit_open(std::uint64_t bits) {  // uniform in (0, 1)
  return (static_cast<float>(bits >> 40) + 0.5f) * (1.0f / 16777216.0f);
}
//! Fills v with N(0, stddev) from (seed, stream) with Box-Muller on counter-based uniforms.
inline void fill_normal(std::vector<float>& v, std::uint64_t seed, std::uint64_t stream, float stddev) {
  const std::uint64_t key = splitmix64(seed ^ splitmix64(stream * 0x632be59bd9b4e019ull + 1));
  const std::int64_t pairs = static_cast<std::int64_t>((v.size() + 1) / 2);
  frugal::detail::parallel_for(frugal::cpu, pairs, 1 << 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const std::uint64_t r = splitmix64(key + static_cast<std::uint64_t>(i));
      const float u1 = unit_open(r), u2 = unit_open(splitmix64(r));
      const float rad = std::sqrt(-2.f * std::log(u1)) * stddev;
      const float th = 6.2831853071795864f * u2;
      v[2 * i] = rad * std::cos(th);
      if (static_cast<std::size_t>(2 * i + 1) < v.size()) v[2 * i + 1] = rad * std::sin(th);
    }
  });
}

}  // namespace detail

//! Allocates every tensor at its shape (zero-filled).
inline weights allocate_weights(const config& cfg) {
  cfg.validate("allocate_weights");
  const std::size_t C = cfg.n_embd, V = cfg.vocab_size, T = cfg.n_ctx;
  weights w;
  w.cfg = cfg;
  w.wte.assign(V * C, 0.f);
  w.wpe.assign(T * C, 0.f);
  w.layers.resize(cfg.n_layer);
  for (auto& l : w.layers) {
    l.ln1_g.assign(C, 1.f), l.ln1_b.assign(C, 0.f);
    l.qkv_w.assign(C * 3 * C, 0.f), l.qkv_b.assign(3 * C, 0.f);
    l.proj_w.assign(C * C, 0.f), l.proj_b.assign(C, 0.f);
    l.ln2_g.assign(C, 1.f), l.ln2_b.assign(C, 0.f);
    l.fc_w.assign(C * 4 * C, 0.f), l.fc_b.assign(4 * C, 0.f);
    l.fcproj_w.assign(4 * C * C, 0.f), l.fcproj_b.assign(C, 0.f);
  }
  w.lnf_g.assign(C, 1.f);
  w.lnf_b.assign(C, 0.f);
  return w;
}

//! GPT-2's initialisation (HF GPT2PreTrainedModel._init_weights), seeded and reproducible.
inline weights random_weights(const config& cfg, std::uint64_t seed) {
  weights w = allocate_weights(cfg);
  const float s = 0.02f, sres = 0.02f / std::sqrt(2.f * static_cast<float>(cfg.n_layer));
  std::uint64_t stream = 0;
  detail::fill_normal(w.wte, seed, stream++, s);
  detail::fill_normal(w.wpe, seed, stream++, s);
  for (auto& l : w.layers) {
    detail::fill_normal(l.qkv_w, seed, stream++, s);
    detail::fill_normal(l.proj_w, seed, stream++, sres);
    detail::fill_normal(l.fc_w, seed, stream++, s);
    detail::fill_normal(l.fcproj_w, seed, stream++, sres);
  }
  return w;
}

// ------------------------------------------------------------------------------------------------------------
// Files
// ------------------------------------------------------------------------------------------------------------

namespace detail {

//! Name and shape of every tensor of a file format, in file order, computed from the config alone (no allocation),
//! so that a header describing more data than the file holds is refused before anything is allocated — naming the
//! first tensor that does not fit. Element counts are formed in double: absurd headers cannot overflow them.
struct tensor_desc {
  std::string name;
  std::vector<std::int64_t> shape;
  double count() const {
    double n = 1;
    for (auto d : shape) n *= static_cast<double>(d);
    return n;
  }
};

//! One named tensor of a model file and where its float destination is (shape as the file must have it).
struct tensor_slot {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float>* dst;
  bool transpose = false;  // the file holds [out, in]; we keep [in, out]
};

//! Every tensor of GPT-2 in HF naming (without prefix), with its Conv1D shape.
inline std::vector<tensor_desc> hf_layout(const config& c) {
  const std::int64_t C = c.n_embd, V = c.vocab_size, T = c.n_ctx;
  std::vector<tensor_desc> s = {{"wte.weight", {V, C}}, {"wpe.weight", {T, C}}};
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    for (auto& d : std::vector<tensor_desc>{{p + "ln_1.weight", {C}}, {p + "ln_1.bias", {C}},
                                            {p + "attn.c_attn.weight", {C, 3 * C}}, {p + "attn.c_attn.bias", {3 * C}},
                                            {p + "attn.c_proj.weight", {C, C}}, {p + "attn.c_proj.bias", {C}},
                                            {p + "ln_2.weight", {C}}, {p + "ln_2.bias", {C}},
                                            {p + "mlp.c_fc.weight", {C, 4 * C}}, {p + "mlp.c_fc.bias", {4 * C}},
                                            {p + "mlp.c_proj.weight", {4 * C, C}}, {p + "mlp.c_proj.bias", {C}}})
      s.push_back(std::move(d));
  }
  s.push_back({"ln_f.weight", {C}});
  s.push_back({"ln_f.bias", {C}});
  return s;
}

//! The same tensors bound to the arrays of `w` (allocated).
inline std::vector<tensor_slot> hf_slots(weights& w) {
  const auto lay = hf_layout(w.cfg);
  std::vector<std::vector<float>*> dst = {&w.wte, &w.wpe};
  for (auto& l : w.layers)
    for (auto* v : {&l.ln1_g, &l.ln1_b, &l.qkv_w, &l.qkv_b, &l.proj_w, &l.proj_b, &l.ln2_g, &l.ln2_b, &l.fc_w, &l.fc_b,
                    &l.fcproj_w, &l.fcproj_b})
      dst.push_back(v);
  dst.push_back(&w.lnf_g);
  dst.push_back(&w.lnf_b);
  std::vector<tensor_slot> s;
  for (std::size_t i = 0; i < lay.size(); ++i) s.push_back({lay[i].name, lay[i].shape, dst[i]});
  return s;
}

//! llm.c's tensors in file order (all layers of one kind together; linears [out, in]; wte with vp rows).
//! llm.c's per-layer tensor kinds, in file order (each stored for all layers together).
inline std::vector<tensor_desc> llmc_kinds(std::int64_t C) {
  return {{"ln1w", {C}},   {"ln1b", {C}},     {"qkvw", {3 * C, C}}, {"qkvb", {3 * C}}, {"attprojw", {C, C}},
          {"attprojb", {C}}, {"ln2w", {C}},     {"ln2b", {C}},        {"fcw", {4 * C, C}}, {"fcb", {4 * C}},
          {"fcprojw", {C, 4 * C}}, {"fcprojb", {C}}};
}

inline std::vector<tensor_desc> llmc_layout(const config& c, std::int64_t vp) {
  const std::int64_t C = c.n_embd, T = c.n_ctx;
  std::vector<tensor_desc> s = {{"wte", {vp, C}}, {"wpe", {T, C}}};
  for (const auto& k : llmc_kinds(C))
    for (int i = 0; i < c.n_layer; ++i) s.push_back({k.name + "[layer " + std::to_string(i) + "]", k.shape});
  s.push_back({"lnfw", {C}});
  s.push_back({"lnfb", {C}});
  return s;
}

//! The first llm.c tensor that ends beyond `size` bytes (file order, data from byte 1024), or "" when all fit.
//! Walks the kinds arithmetically: a header claiming millions of layers costs nothing (fuzzing found the
//! materialised layout of such a header exhausting memory).
inline std::string llmc_first_truncated(const config& c, std::int64_t vp, std::int64_t es, std::int64_t size,
                                        double& at, double& end) {
  at = 1024;
  auto fits = [&](const tensor_desc& t, double n_times, std::string& name) {
    const double one = t.count() * static_cast<double>(es);
    end = at + n_times * one;
    if (end <= static_cast<double>(size)) {
      at = end;
      return true;
    }
    const double i = std::floor((static_cast<double>(size) - at) / one);  // the first layer that does not fit
    name = n_times == 1 ? t.name : t.name + "[layer " + std::to_string(static_cast<long long>(i)) + "]";
    at += i * one;
    end = at + one;
    return false;
  };
  std::string name;
  const std::int64_t C = c.n_embd;
  if (!fits({"wte", {vp, C}}, 1, name) || !fits({"wpe", {c.n_ctx, C}}, 1, name)) return name;
  for (const auto& k : llmc_kinds(C))
    if (!fits(k, c.n_layer, name)) return name;
  if (!fits({"lnfw", {C}}, 1, name) || !fits({"lnfb", {C}}, 1, name)) return name;
  return "";
}

inline std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

inline std::int64_t file_size(const std::string& path, const char* op) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  if (ec) fail(op, "cannot open '", path, "': ", ec.message());
  return static_cast<std::int64_t>(n);
}

//! Reads `count` elements of `dt` at byte `offset` of `f` into float dst (row-major), transposing [r, c] -> [c, r]
//! when asked (for llm.c's [out, in] linears).
inline void read_tensor(std::ifstream& f, std::int64_t offset, frugal::dtype dt, const tensor_slot& t, const char* op,
                        const std::string& path) {
  std::int64_t n = 1;
  for (auto d : t.shape) n *= d;
  const std::size_t es = frugal::dtype_size(dt);
  std::vector<char> buf(static_cast<std::size_t>(n) * es);
  f.clear();
  f.seekg(offset);
  f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
  if (!f || f.gcount() != static_cast<std::streamsize>(buf.size()))
    fail(op, "'", path, "': tensor '", t.name, "' is truncated (needs bytes [", offset, ", ",
         offset + static_cast<std::int64_t>(buf.size()), ") of the file)");
  std::vector<float> tmp;
  std::vector<float>& out = *t.dst;
  std::vector<float>& dst = t.transpose ? tmp : out;
  dst.resize(static_cast<std::size_t>(n));
  frugal::detail::parallel_for(frugal::cpu, n, 1 << 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const char* p = buf.data() + i * static_cast<std::int64_t>(es);
      std::uint16_t u16;
      switch (dt) {
        case frugal::dtype::f32: std::memcpy(&dst[i], p, 4); break;
        case frugal::dtype::f16: std::memcpy(&u16, p, 2); dst[i] = float(frugal::half::from_bits(u16)); break;
        case frugal::dtype::bf16: std::memcpy(&u16, p, 2); dst[i] = float(frugal::bfloat16::from_bits(u16)); break;
        case frugal::dtype::f64: { double d; std::memcpy(&d, p, 8); dst[i] = static_cast<float>(d); } break;
      }
    }
  });
  if (t.transpose) {  // tmp [r, c] -> out [c, r]
    const std::int64_t r = t.shape[0], c = t.shape[1];
    out.resize(static_cast<std::size_t>(n));
    frugal::detail::parallel_for(frugal::cpu, c, 64, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t j = b; j < e; ++j)
        for (std::int64_t i = 0; i < r; ++i) out[j * r + i] = tmp[i * c + j];
    });
  }
  for (float v : out)
    if (!std::isfinite(v)) fail(op, "'", path, "': tensor '", t.name, "' holds a non-finite value");
}

}  // namespace detail

struct load_options {
  int n_head = 0;  //!< 0: from config.json beside the file, else GPT-2's standard value for n_embd, else n_embd / 64
};

inline int default_n_head(int n_embd) {
  switch (n_embd) {
    case 768: return 12;
    case 1024: return 16;
    case 1280: return 20;
    case 1600: return 25;
    default: return n_embd % 64 == 0 ? n_embd / 64 : 0;
  }
}

inline std::string name_for(const config& c) {
  for (const char* n : {"124M", "355M", "774M", "1558M"}) {
    const config k = config::from_name(n);
    if (k.n_layer == c.n_layer && k.n_embd == c.n_embd && k.n_head == c.n_head && c.vocab_size == 50257) return n;
  }
  return "custom-L" + std::to_string(c.n_layer) + "-C" + std::to_string(c.n_embd);
}

//! HF `model.safetensors`: 8-byte little-endian header size, a JSON header {name: {dtype, shape, data_offsets}},
//! then the data. Names may carry the "transformer." prefix (GPT2LMHeadModel); "lm_head.weight" (tied) and the
//! old "attn.bias"/"attn.masked_bias" buffers are ignored.
inline weights load_safetensors(const std::string& path, load_options opt = {}) {
  const char* op = "load_safetensors";
  const std::int64_t size = detail::file_size(path, op);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(op, "cannot open '", path, "'");
  std::uint64_t hlen = 0;
  unsigned char h8[8];
  if (size < 8 || !f.read(reinterpret_cast<char*>(h8), 8)) fail(op, "'", path, "' is too short for a safetensors header");
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | h8[i];
  if (hlen > static_cast<std::uint64_t>(size - 8) || hlen > (100ull << 20))
    fail(op, "'", path, "': header size ", hlen, " exceeds the file (", size, " bytes); truncated or not safetensors");
  std::string hdr(hlen, '\0');
  f.read(hdr.data(), static_cast<std::streamsize>(hlen));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(hdr);
  } catch (const std::exception& e) {
    fail(op, "'", path, "': header is not valid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail(op, "'", path, "': header is not a JSON object");
  const std::int64_t data_begin = 8 + static_cast<std::int64_t>(hlen), data_size = size - data_begin;

  std::string prefix;
  if (j.contains("transformer.wte.weight")) prefix = "transformer.";
  auto entry = [&](const std::string& name) -> const nlohmann::json& {
    const std::string key = prefix + name;
    if (!j.contains(key)) fail(op, "'", path, "': tensor '", key, "' is missing");
    const auto& e = j[key];
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets") ||
        !e["shape"].is_array() || !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
      fail(op, "'", path, "': tensor '", key, "' has a malformed header entry");
    return e;
  };
  auto shape_of = [&](const std::string& name) {
    std::vector<std::int64_t> s;
    for (const auto& d : entry(name)["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) fail(op, "'", path, "': tensor '", prefix + name, "' has a bad shape");
      s.push_back(d.get<std::int64_t>());
    }
    return s;
  };

  // Configuration from the shapes (+ n_head from config.json or the GPT-2 table).
  config cfg;
  const auto wte_s = shape_of("wte.weight"), wpe_s = shape_of("wpe.weight");
  if (wte_s.size() != 2 || wpe_s.size() != 2 || wte_s[1] != wpe_s[1])
    fail(op, "'", path, "': tensor '", prefix, "wte.weight' ", detail::shape_str(wte_s), " and '", prefix, "wpe.weight' ",
         detail::shape_str(wpe_s), " are inconsistent");
  cfg.vocab_size = static_cast<int>(wte_s[0]);
  cfg.n_embd = static_cast<int>(wte_s[1]);
  cfg.n_ctx = static_cast<int>(wpe_s[0]);
  cfg.n_layer = 0;
  while (j.contains(prefix + "h." + std::to_string(cfg.n_layer) + ".ln_1.weight")) ++cfg.n_layer;
  if (cfg.n_layer == 0) fail(op, "'", path, "': tensor '", prefix, "h.0.ln_1.weight' is missing");
  cfg.n_head = opt.n_head;
  if (cfg.n_head == 0) {
    const auto cj = std::filesystem::path(path).parent_path() / "config.json";
    if (std::filesystem::exists(cj)) {
      try {
        std::ifstream cf(cj);
        const auto c = nlohmann::json::parse(cf);
        if (c.contains("n_head")) cfg.n_head = c["n_head"].get<int>();
      } catch (const std::exception& e) {
        fail(op, "'", cj.string(), "' is not valid JSON (", e.what(), ")");
      }
    }
  }
  if (cfg.n_head == 0) cfg.n_head = default_n_head(cfg.n_embd);
  if (cfg.n_head == 0) fail(op, "'", path, "': cannot infer n_head for n_embd=", cfg.n_embd, "; pass it explicitly");
  cfg.validate(op);
  cfg.name = name_for(cfg);
  // Every entry is checked (presence, dtype, shape, offsets inside the file) before anything is allocated.
  struct located {
    frugal::dtype dt;
    std::int64_t begin;
  };
  std::vector<located> where;
  for (const auto& t : detail::hf_layout(cfg)) {
    const auto& e = entry(t.name);
    const std::string key = prefix + t.name;
    const std::string dts = e["dtype"].is_string() ? e["dtype"].get<std::string>() : "?";
    frugal::dtype dt;
    if (dts == "F32") dt = frugal::dtype::f32;
    else if (dts == "F16") dt = frugal::dtype::f16;
    else if (dts == "BF16") dt = frugal::dtype::bf16;
    else fail(op, "'", path, "': tensor '", key, "' has dtype ", dts, "; supported: F32, F16, BF16");
    const auto s = shape_of(t.name);
    if (s != t.shape)
      fail(op, "'", path, "': tensor '", key, "' has shape ", detail::shape_str(s), ", expected ", detail::shape_str(t.shape));
    const auto& off = e["data_offsets"];
    if (!off[0].is_number_integer() || !off[1].is_number_integer())
      fail(op, "'", path, "': tensor '", key, "' has bad data_offsets");
    const std::int64_t b = off[0].get<std::int64_t>(), en = off[1].get<std::int64_t>();
    const double need = t.count() * static_cast<double>(frugal::dtype_size(dt));
    if (b < 0 || en < b || static_cast<double>(en - b) != need)
      fail(op, "'", path, "': tensor '", key, "' has data_offsets [", b, ", ", en, ") but shape ", detail::shape_str(s),
           " of ", dts, " needs ", need, " bytes");
    if (en > data_size)
      fail(op, "'", path, "': tensor '", key, "' is truncated (data ends at byte ", en, " but the file holds ", data_size,
           " data bytes)");
    where.push_back({dt, b});
  }
  weights w = allocate_weights(cfg);
  const auto slots = detail::hf_slots(w);
  for (std::size_t i = 0; i < slots.size(); ++i) detail::read_tensor(f, data_begin + where[i].begin, where[i].dt, slots[i], op, path);
  return w;
}

//! llm.c checkpoint: 256 int32 header {20240326, version 3 (f32) | 5 (bf16), maxT, V, L, NH, C, Vp}, then the
//! parameters in llm.c's order, linears as PyTorch [out, in] (transposed here to [in, out]); wte padded to Vp rows.
inline weights load_llmc(const std::string& path) {
  const char* op = "load_llmc";
  const std::int64_t size = detail::file_size(path, op);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(op, "cannot open '", path, "'");
  std::int32_t h[256];
  if (size < static_cast<std::int64_t>(sizeof h) || !f.read(reinterpret_cast<char*>(h), sizeof h))
    fail(op, "'", path, "' is too short for the 1024-byte llm.c header");
  if (h[0] != 20240326) fail(op, "'", path, "': bad magic ", h[0], " (expected 20240326: not an llm.c checkpoint)");
  if (h[1] != 3 && h[1] != 5) fail(op, "'", path, "': unsupported version ", h[1], " (3 = f32, 5 = bf16)");
  const frugal::dtype dt = h[1] == 3 ? frugal::dtype::f32 : frugal::dtype::bf16;
  config cfg;
  cfg.n_ctx = h[2], cfg.vocab_size = h[3], cfg.n_layer = h[4], cfg.n_head = h[5], cfg.n_embd = h[6];
  const int Vp = h[7] > 0 ? h[7] : h[3];
  cfg.validate(op);
  if (Vp < cfg.vocab_size) fail(op, "'", path, "': padded vocab ", Vp, " < vocab ", cfg.vocab_size);
  cfg.name = name_for(cfg);
  {  // before allocating: the first tensor that does not fit in the file, by name
    double at = 0, end = 0;
    const std::string bad = detail::llmc_first_truncated(cfg, Vp, static_cast<std::int64_t>(frugal::dtype_size(dt)),
                                                         size, at, end);
    if (!bad.empty())
      fail(op, "'", path, "': tensor '", bad, "' is truncated (needs bytes [", at, ", ", end, ") but the file has ",
           size, ")");
  }
  weights w = allocate_weights(cfg);
  const std::int64_t C = cfg.n_embd, L = cfg.n_layer, T = cfg.n_ctx;
  const std::int64_t es = static_cast<std::int64_t>(frugal::dtype_size(dt));

  // llm.c stores each kind for all layers together: wte, wpe, ln1w[L], ln1b[L], qkvw[L], ...
  std::int64_t offset = 1024;
  std::vector<float> wte_padded;
  auto read = [&](detail::tensor_slot t) {
    std::int64_t n = 1;
    for (auto d : t.shape) n *= d;
    if (offset + n * es > size)
      fail(op, "'", path, "': tensor '", t.name, "' is truncated (needs bytes [", offset, ", ", offset + n * es,
           ") but the file has ", size);
    detail::read_tensor(f, offset, dt, t, op, path);
    offset += n * es;
  };
  read({"wte", {Vp, C}, &wte_padded});
  std::copy_n(wte_padded.begin(), static_cast<std::size_t>(cfg.vocab_size * C), w.wte.begin());
  read({"wpe", {T, C}, &w.wpe});
  auto per_layer = [&](const char* kind, std::vector<std::int64_t> shape, auto member, bool tr) {
    for (int i = 0; i < L; ++i)
      read({std::string(kind) + "[layer " + std::to_string(i) + "]", shape, &(w.layers[i].*member), tr});
  };
  per_layer("ln1w", {C}, &layer_weights::ln1_g, false);
  per_layer("ln1b", {C}, &layer_weights::ln1_b, false);
  per_layer("qkvw", {3 * C, C}, &layer_weights::qkv_w, true);
  per_layer("qkvb", {3 * C}, &layer_weights::qkv_b, false);
  per_layer("attprojw", {C, C}, &layer_weights::proj_w, true);
  per_layer("attprojb", {C}, &layer_weights::proj_b, false);
  per_layer("ln2w", {C}, &layer_weights::ln2_g, false);
  per_layer("ln2b", {C}, &layer_weights::ln2_b, false);
  per_layer("fcw", {4 * C, C}, &layer_weights::fc_w, true);
  per_layer("fcb", {4 * C}, &layer_weights::fc_b, false);
  per_layer("fcprojw", {C, 4 * C}, &layer_weights::fcproj_w, true);
  per_layer("fcprojb", {C}, &layer_weights::fcproj_b, false);
  read({"lnfw", {C}, &w.lnf_g});
  read({"lnfb", {C}, &w.lnf_b});
  if (offset != size)
    fail(op, "'", path, "': ", size - offset, " bytes after the last tensor 'lnfb' (file does not match its header)");
  return w;
}

//! Picks the loader by content: llm.c magic, else safetensors.
inline weights load_weights(const std::string& path, load_options opt = {}) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("load_weights", "cannot open '", path, "'");
  std::int32_t magic = 0;
  f.read(reinterpret_cast<char*>(&magic), 4);
  f.close();
  if (magic == 20240326) return load_llmc(path);
  return load_safetensors(path, opt);
}

//! Writes HF-style safetensors (F32, or F16/BF16 when asked), e.g. to hand a random-init model to other tools.
inline void save_safetensors(const weights& w, const std::string& path, frugal::dtype dt = frugal::dtype::f32) {
  const char* op = "save_safetensors";
  if (dt == frugal::dtype::f64) fail(op, "dtype f64 is not supported");
  weights& mw = const_cast<weights&>(w);  // hf_slots takes non-const pointers; nothing is modified
  const auto slots = detail::hf_slots(mw);
  const std::size_t es = frugal::dtype_size(dt);
  const char* dts = dt == frugal::dtype::f32 ? "F32" : dt == frugal::dtype::f16 ? "F16" : "BF16";
  nlohmann::json j = nlohmann::json::object();
  j["__metadata__"] = {{"format", "pt"}};
  std::int64_t off = 0;
  for (const auto& t : slots) {
    const std::int64_t n = static_cast<std::int64_t>(t.dst->size());
    j[t.name] = {{"dtype", dts}, {"shape", t.shape}, {"data_offsets", {off, off + n * static_cast<std::int64_t>(es)}}};
    off += n * static_cast<std::int64_t>(es);
  }
  std::string hdr = j.dump();
  while ((hdr.size() + 8) % 8) hdr.push_back(' ');
  std::ofstream f(path, std::ios::binary);
  if (!f) fail(op, "cannot create '", path, "'");
  unsigned char h8[8];
  std::uint64_t hl = hdr.size();
  for (int i = 0; i < 8; ++i) h8[i] = static_cast<unsigned char>(hl >> (8 * i));
  f.write(reinterpret_cast<const char*>(h8), 8);
  f.write(hdr.data(), static_cast<std::streamsize>(hdr.size()));
  std::vector<char> buf;
  for (const auto& t : slots) {
    buf.resize(t.dst->size() * es);
    for (std::size_t i = 0; i < t.dst->size(); ++i) {
      const float v = (*t.dst)[i];
      if (dt == frugal::dtype::f32) {
        std::memcpy(buf.data() + 4 * i, &v, 4);
      } else {
        const std::uint16_t b = dt == frugal::dtype::f16 ? frugal::half(v).bits : frugal::bfloat16(v).bits;
        std::memcpy(buf.data() + 2 * i, &b, 2);
      }
    }
    f.write(buf.data(), static_cast<std::streamsize>(buf.size()));
  }
  if (!f) fail(op, "write to '", path, "' failed");
}

//! Writes an llm.c checkpoint (version 3, f32), the inverse of load_llmc (used by the tests).
inline void save_llmc(const weights& w, const std::string& path) {
  const char* op = "save_llmc";
  const auto& c = w.cfg;
  std::int32_t h[256] = {};
  h[0] = 20240326, h[1] = 3, h[2] = c.n_ctx, h[3] = c.vocab_size, h[4] = c.n_layer, h[5] = c.n_head, h[6] = c.n_embd;
  h[7] = c.vocab_size;
  std::ofstream f(path, std::ios::binary);
  if (!f) fail(op, "cannot create '", path, "'");
  f.write(reinterpret_cast<const char*>(h), sizeof h);
  auto put = [&](const std::vector<float>& v) { f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * 4)); };
  auto put_t = [&](const std::vector<float>& v, std::int64_t in, std::int64_t out) {  // [in,out] -> [out,in]
    std::vector<float> t(v.size());
    for (std::int64_t i = 0; i < in; ++i)
      for (std::int64_t o = 0; o < out; ++o) t[o * in + i] = v[i * out + o];
    put(t);
  };
  const std::int64_t C = c.n_embd;
  put(w.wte), put(w.wpe);
  for (auto& l : w.layers) put(l.ln1_g);
  for (auto& l : w.layers) put(l.ln1_b);
  for (auto& l : w.layers) put_t(l.qkv_w, C, 3 * C);
  for (auto& l : w.layers) put(l.qkv_b);
  for (auto& l : w.layers) put_t(l.proj_w, C, C);
  for (auto& l : w.layers) put(l.proj_b);
  for (auto& l : w.layers) put(l.ln2_g);
  for (auto& l : w.layers) put(l.ln2_b);
  for (auto& l : w.layers) put_t(l.fc_w, C, 4 * C);
  for (auto& l : w.layers) put(l.fc_b);
  for (auto& l : w.layers) put_t(l.fcproj_w, 4 * C, C);
  for (auto& l : w.layers) put(l.fcproj_b);
  put(w.lnf_g), put(w.lnf_b);
  if (!f) fail(op, "write to '", path, "' failed");
}

}  // namespace gpt2
