// examples/gpt2/texts.hpp — the texts the program runs on: the domain corpus of tests/vocab/make-corpus.sh (Linux man
// pages rendered to text; train.txt builds the patch vocabulary and calibrates LaRoSA, test.txt is held out and
// gives the prompts and the measured texts), or, without it, a short built-in corpus for the demo.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "model.hpp"

namespace gpt2 {

struct text_set {
  std::vector<std::string> train, test;
  std::string source;  // where they came from
};

//! Splits a corpus file at lines "<|endoftext|>".
inline std::vector<std::string> read_docs(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("read_docs", "cannot open '", path, "'");
  std::vector<std::string> docs(1);
  std::string line;
  while (std::getline(f, line)) {
    if (line == "<|endoftext|>") {
      if (!docs.back().empty()) docs.emplace_back();
      continue;
    }
    docs.back() += line;
    docs.back() += '\n';
  }
  if (docs.back().empty()) docs.pop_back();
  return docs;
}

//! A small built-in domain corpus (written for this example; about LLM inference) so that the demo runs anywhere.
inline text_set builtin_texts() {
  const char* paras[] = {
      "The key-value cache stores the attention keys and values of every past token, so each new token only computes "
      "its own query, key and value and attends over the cache. Without the cache the model recomputes the whole "
      "prefix at every step, and the cost of a step grows with the length of the sequence.",
      "A paged key-value cache splits the cache into blocks of sixteen tokens. A block table maps the positions of a "
      "sequence to its blocks, and a block allocator hands out free blocks when the last block of a sequence is full. "
      "Sequences of different lengths then share one pool of blocks and the memory lost to fragmentation is small.",
      "At batch size one the decode step of a transformer is bound by memory bandwidth: every weight of every linear "
      "layer is read once per token. Activation sparsity keeps only the largest activations of each layer input, so "
      "the matrix-vector product reads only the weight rows of the kept channels.",
      "The rotation of the layer inputs into the principal components of their covariance concentrates the energy of "
      "the activations in fewer channels, so top-k sparsity loses less of the signal. The rotation is folded into the "
      "weights of the linear layers and costs nothing at inference time.",
      "A patch vocabulary replaces rare tokens of the base tokenizer with frequent multi-token sequences of a domain. "
      "The same text then needs fewer tokens, fewer decode steps and a smaller key-value cache, while the embedding "
      "of each new token is initialised from the embeddings of the tokens it replaces.",
      "The attention keys and values of every layer are appended to the cache at the position of the new token, and "
      "the attention of the new token reads the keys and values of all previous positions from the cache.",
      "The memory bandwidth of the device sets the ceiling of the decode speed: the bytes read per token divided by "
      "the bandwidth give the shortest possible time of a decode step.",
      "Each block of the transformer applies layer normalisation, multi-head attention with a causal mask, a residual "
      "connection, a second layer normalisation and a feed-forward network with a GELU activation.",
  };
  text_set t;
  for (int rep = 0; rep < 3; ++rep)
    for (const char* p : paras) t.train.emplace_back(p);
  for (const char* p : paras) t.test.emplace_back(p);
  t.source = "built-in demo corpus (8 paragraphs about LLM inference)";
  return t;
}

inline text_set load_texts(const std::string& corpus_dir) {
  namespace fs = std::filesystem;
  if (!corpus_dir.empty() && fs::exists(fs::path(corpus_dir) / "train.txt") && fs::exists(fs::path(corpus_dir) / "test.txt")) {
    text_set t;
    t.train = read_docs((fs::path(corpus_dir) / "train.txt").string());
    t.test = read_docs((fs::path(corpus_dir) / "test.txt").string());
    if (t.train.empty() || t.test.empty()) fail("load_texts", "corpus '", corpus_dir, "' has an empty split");
    t.source = "Linux man pages (" + std::to_string(t.train.size()) + " train / " + std::to_string(t.test.size()) +
               " held-out documents) from " + corpus_dir;
    return t;
  }
  return builtin_texts();
}

}  // namespace gpt2
