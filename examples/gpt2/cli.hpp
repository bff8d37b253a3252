// examples/gpt2/cli.hpp — command line of the gpt2 program (plain C++, shared by the CPU and CUDA translation units).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "model.hpp"

namespace gpt2 {

//! The check of a --calib-tokens value n that needs no text (calibration.hpp checks it against the training split):
//! 0 (the default) or an integer >= 2 (a covariance / quantile of one token is none). Else a frugal::error naming
//! the option, the value and the limits.
inline void check_calib_tokens(double n) {
  if (!(n >= 0) || n == 1 || n > 1e9 || n != static_cast<double>(static_cast<long long>(n)))
    fail("calibration", "--calib-tokens (=", n, ") must be 0 (the default) or an integer in [2, the tokens of the ",
         "training split] (half of them when thresholds are calibrated too)");
}

struct cli {
  std::string device = "cpu";
  std::string dtype;  // default: f32 on cpu, f16 on cuda
  std::string model = "124M";
  std::string weights;  // model.safetensors or llm.c .bin; empty: random init
  std::uint64_t seed = 1;
  int threads = 0;
  std::string tokenizer_dir;
  std::string corpus_dir;   // train.txt / test.txt (tests/vocab/make-corpus.sh)
  std::string patch_vocab;  // prebuilt patch vocabulary (JSON), else built from the corpus
  int patch_size = 0;       // patch tokens to build (0: default)
  std::string prompt;
  int new_tokens = 32;
  std::string mode = "all";
  float p = 0.5f;
  std::string select = "topk";     // sparse decode rule: topk (per token) | threshold (TEAL, calibrated per layer/site)
  bool mega = false;               // --mega: the kv mode's decode step as one persistent kernel (CUDA, batch 1)
  std::string rotation = "model";  // LaRoSA: model (one Q) | layer (Q per layer + residual adapters)
  int batch = 1;
  int page_size = 16;
  int attn_splits = 0;  // --attn-splits: attention_params::num_splits of the decode attention (0: the library's plan)
  float temperature = 0.f;
  int top_k = 0;
  float top_p = 1.f;
  std::uint64_t sample_seed = 0;
  bool demo = false;
  std::string bench_out;  // --bench FILE.json
  std::string profile_out;  // --profile FILE.json
  std::string bench_set = "full";
  int calib_tokens = 0;  // --calib-tokens: LaRoSA / threshold calibration tokens per use (0: default; calibration.hpp)
  int reps = 0;  // --reps: best-of count of the benchmark's measurements (0: 3, or 1 for xl on the CPU)
  std::string command;  // the command line, for the JSON

  static void usage() {
    std::printf(
        "gpt2 — a minimal GPT-2 on frugal: KV cache, paged KV, LaRoSA / TEAL sparse decode, AdaptiVocab patch tokens\n"
        "\n"
        "usage: gpt2 [options]\n"
        "  --demo                    short tour on random-init 124M: every mode, a measured table (README demo)\n"
        "  --bench FILE.json         benchmark suite (see examples/gpt2/bench.sh); --bench-set full|quick|xl|sparse\n"
        "  --profile FILE.json       time every op of a decode step (dense and --p sparse), vs the CUDA Graph replay\n"
        "  --device cpu|cuda         (default cpu)\n"
        "  --dtype f32|f16|bf16      (default f32 on cpu, f16 on cuda)\n"
        "  --model 124M|355M|774M|1558M   configuration for random init (default 124M)\n"
        "  --weights FILE            HF model.safetensors or llm.c gpt2_124M.bin (default: seeded random init)\n"
        "  --seed N                  random-init seed (default 1)\n"
        "  --threads N               CPU threads (default: FRUGAL_NUM_THREADS or all)\n"
        "  --tokenizer-dir DIR       GPT-2 encoder.json + vocab.bpe (tests/vocab/fetch-gpt2-tokenizer.sh)\n"
        "  --corpus DIR              domain corpus train.txt/test.txt (tests/vocab/make-corpus.sh) for LaRoSA\n"
        "                            calibration, the patch vocabulary and the benchmark texts\n"
        "  --patch-vocab FILE        prebuilt AdaptiVocab patch vocabulary; --patch-size M tokens to build\n"
        "  --prompt TEXT             (default: a sentence about KV caches)\n"
        "  --new-tokens N            tokens to generate per mode (default 32)\n"
        "  --mode M                  nocache|kv|paged|teal|larosa|patch|combined|all (default all)\n"
        "  --p P                     sparsity of teal/larosa/combined (default 0.5)\n"
        "  --select topk|threshold   teal/larosa/combined: keep the top-k of every block input per token (default),\n"
        "                            or |v| >= a per-layer threshold calibrated as the p-quantile on the corpus (TEAL)\n"
        "  --mega                    kv mode (CUDA, batch 1): also run the decode step as one persistent kernel\n"
        "                            (examples/gpt2/mega_cuda.cuh; row \"kv_mega\" in --bench)\n"
        "  --rotation model|layer    LaRoSA: one rotation for the residual stream, or one per layer + adapters\n"
        "  --calib-tokens N          calibration tokens for the LaRoSA rotations, and as many again (the next ones)\n"
        "                            for the thresholds, each cut into sequences of at most n_ctx - 1 tokens that\n"
        "                            go into one covariance / one quantile (default: n_ctx - 1 when that exceeds\n"
        "                            n_embd, else 2 x n_embd: 124M 1023 tokens = 1 sequence, 1558M 3200 = 4; half\n"
        "                            the training text when it is shorter); N, or 2N with thresholds, must fit in\n"
        "                            the training text\n"
        "  --reps N                  benchmark: best of N alternating runs per configuration (default 3)\n"
        "  --batch B                 sequences decoded together (kv, paged)\n"
        "  --page-size N             paged KV tokens per block (default 16)\n"
        "  --attn-splits N           CUDA decode attention split-K partitions (default 0: the library's plan)\n"
        "  --temperature T --top-k K --top-p P --sample-seed S   sampling (default greedy)\n");
  }

  static cli parse(int argc, char** argv) {
    cli a;
    for (int i = 0; i < argc; ++i) {
      if (i) a.command.push_back(' ');
      a.command.append(argv[i]);
    }
    auto need = [&](int& i) -> std::string {
      if (i + 1 >= argc) fail("cli", "option ", argv[i], " needs a value");
      return argv[++i];
    };
    auto num = [&](int& i) {
      const std::string v = need(i);
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end) fail("cli", "option ", argv[i - 1], " needs a number, got '", v, "'");
      return d;
    };
    for (int i = 1; i < argc; ++i) {
      const std::string o = argv[i];
      if (o == "-h" || o == "--help") usage(), std::exit(0);
      else if (o == "--demo") a.demo = true;
      else if (o == "--bench") a.bench_out = need(i);
      else if (o == "--profile") a.profile_out = need(i);
      else if (o == "--bench-set") a.bench_set = need(i);
      else if (o == "--device") a.device = need(i);
      else if (o == "--dtype") a.dtype = need(i);
      else if (o == "--model") a.model = need(i);
      else if (o == "--weights") a.weights = need(i);
      else if (o == "--seed") a.seed = static_cast<std::uint64_t>(num(i));
      else if (o == "--threads") a.threads = static_cast<int>(num(i));
      else if (o == "--tokenizer-dir") a.tokenizer_dir = need(i);
      else if (o == "--corpus") a.corpus_dir = need(i);
      else if (o == "--patch-vocab") a.patch_vocab = need(i);
      else if (o == "--patch-size") a.patch_size = static_cast<int>(num(i));
      else if (o == "--prompt") a.prompt = need(i);
      else if (o == "--new-tokens") a.new_tokens = static_cast<int>(num(i));
      else if (o == "--mode") a.mode = need(i);
      else if (o == "--p") a.p = static_cast<float>(num(i));
      else if (o == "--select") a.select = need(i);
      else if (o == "--mega") a.mega = true;
      else if (o == "--rotation") a.rotation = need(i);
      else if (o == "--calib-tokens") {
        const double v = num(i);
        check_calib_tokens(v);
        a.calib_tokens = static_cast<int>(v);
      }
      else if (o == "--reps") a.reps = static_cast<int>(num(i));
      else if (o == "--batch") a.batch = static_cast<int>(num(i));
      else if (o == "--page-size") a.page_size = static_cast<int>(num(i));
      else if (o == "--attn-splits") a.attn_splits = static_cast<int>(num(i));
      else if (o == "--temperature") a.temperature = static_cast<float>(num(i));
      else if (o == "--top-k") a.top_k = static_cast<int>(num(i));
      else if (o == "--top-p") a.top_p = static_cast<float>(num(i));
      else if (o == "--sample-seed") a.sample_seed = static_cast<std::uint64_t>(num(i));
      else fail("cli", "unknown option '", o, "' (see --help)");
    }
    if (a.device != "cpu" && a.device != "cuda") fail("cli", "--device must be cpu or cuda, got '", a.device, "'");
    if (a.dtype.empty()) a.dtype = a.device == "cuda" ? "f16" : "f32";
    if (a.dtype != "f32" && a.dtype != "f16" && a.dtype != "bf16") fail("cli", "--dtype must be f32, f16 or bf16");
    if (a.p < 0.f || a.p >= 1.f) fail("cli", "--p must be in [0, 1), got ", a.p);
    if (a.select != "topk" && a.select != "threshold")
      fail("cli", "--select must be topk or threshold, got '", a.select, "'");
    if (a.rotation != "model" && a.rotation != "layer") fail("cli", "--rotation must be model or layer");
    if (a.mega && a.device != "cuda") fail("cli", "--mega (the one-kernel decode step) needs --device cuda");
    if (a.mega && a.batch != 1) fail("cli", "--mega runs batch 1, got --batch ", a.batch);
    if (a.new_tokens < 2) fail("cli", "--new-tokens must be >= 2");
    if (a.batch < 1) fail("cli", "--batch must be >= 1");
    if (a.page_size < 1 || a.page_size > 256) fail("cli", "--page-size must be in [1, 256]");
    if (a.attn_splits < 0 || a.attn_splits > 1024) fail("cli", "--attn-splits must be in [0, 1024] (0: the library's plan)");
    const std::vector<std::string> modes = {"nocache", "kv", "paged", "teal", "larosa", "patch", "combined", "all"};
    bool ok = false;
    for (const auto& m : modes) ok |= m == a.mode;
    if (!ok) fail("cli", "--mode must be one of nocache|kv|paged|teal|larosa|patch|combined|all, got '", a.mode, "'");
    return a;
  }
};

}  // namespace gpt2
