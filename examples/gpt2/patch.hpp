// examples/gpt2/patch.hpp — AdaptiVocab patch tokens for GPT-2 with frugal/vocab: a patch vocabulary built on the
// domain corpus (or loaded), its tokenizer, and the model with the patch rows of the embeddings initialised.
//
// GPT-2 ties the LM head to wte; AdaptiVocab's exponential init wants the input rows weighted toward the last piece
// and the output rows toward the first. The engine keeps its LM head as a separate channel-major [C, V] copy anyway
// (for the GEMV), so untying costs nothing at inference: the input embedding gets role::input rows, the LM head
// role::output rows (frugal/vocab/patch_embeddings.hpp, option (a)). Vocabulary size and shapes are unchanged.
#pragma once

#include <frugal/gemv/gemv.hpp>
#include <frugal/vocab/bpe.hpp>
#include <frugal/vocab/patch_embeddings.hpp>
#include <frugal/vocab/patch_tokenizer.hpp>
#include <frugal/vocab/patch_vocab.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "model.hpp"

namespace gpt2 {

class patch_bundle {
 public:
  patch_bundle(frugal::patch_tokenizer tok, weights w, bool built)
      : tok_(std::move(tok)), w_(std::move(w)), built_(built) {}
  std::vector<std::int32_t> encode(std::string_view s) const { return tok_.encode(s); }
  std::string decode(const std::vector<std::int32_t>& ids) const { return tok_.decode(ids); }
  int size() const { return static_cast<int>(tok_.vocab().size()); }
  bool built() const { return built_; }
  const frugal::patch_tokenizer& tokenizer() const { return tok_; }
  //! A copy of the patched host weights (untied: wte_in with input rows, lm_w with output rows).
  weights weights_copy() const { return w_; }

 private:
  frugal::patch_tokenizer tok_;
  weights w_;
  bool built_ = false;
};

//! The patched embeddings of `w` for vocabulary `v`.
inline weights patch_weights(weights&& w, const frugal::patch_vocab& v) {
  const std::int64_t C = w.cfg.n_embd, V = w.cfg.vocab_size;
  if (v.vocab_size() != V) fail("patch_weights", "patch vocabulary for ", v.vocab_size(), " ids, model has ", V);
  const auto targets = v.init_targets();
  const auto pieces = v.init_pieces();
  std::vector<float> out = w.wte;  // LM-head rows
  if (w.wte_in.empty()) w.wte_in = std::move(w.wte);
  std::vector<float>().swap(w.wte);
  frugal::init_patch_embeddings(frugal::cpu, frugal::matrix_view<float>(w.wte_in.data(), V, C), targets.data(),
                                pieces.data(), v.size(), v.max_n(), frugal::patch_embedding_role::input);
  frugal::init_patch_embeddings(frugal::cpu, frugal::matrix_view<float>(out.data(), V, C), targets.data(), pieces.data(),
                                v.size(), v.max_n(), frugal::patch_embedding_role::output);
  w.lm_w.resize(static_cast<std::size_t>(C * V));
  frugal::to_channel_major<float>(frugal::matrix_view<const float>(out.data(), V, C),
                                  frugal::matrix_view<float>(w.lm_w.data(), C, V));
  return std::move(w);
}

//! Loads the patch vocabulary from `path` when it exists; else builds one of m tokens on `docs` (and saves it to
//! `path` when given).
inline patch_bundle build_patch(const frugal::gpt2_tokenizer& base, const std::vector<std::string>& docs, weights&& w,
                                int m, const std::string& path) {
  frugal::patch_vocab v;
  bool built = false;
  if (!path.empty() && std::filesystem::exists(path)) {
    v = frugal::patch_vocab::load(path);
  } else {
    std::vector<std::string_view> views(docs.begin(), docs.end());
    frugal::patch_vocab_options o;
    o.num_patches = m;
    v = frugal::patch_vocab::build(frugal::cpu, base, views, o);
    built = true;
    if (!path.empty()) v.save(path, &base);
  }
  auto pw = patch_weights(std::move(w), v);
  return patch_bundle(frugal::patch_tokenizer(base, std::move(v)), std::move(pw), built);
}

}  // namespace gpt2
