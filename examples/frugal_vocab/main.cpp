// frugal-vocab — GPT-2 BPE and AdaptiVocab patch vocabularies from the command line.
//
//   frugal-vocab build   --corpus FILE [-m 10000] [--max-n 4] [--min-freq 2] [--naive | --keep-containing] [-o ...]
//   frugal-vocab encode  [--patch patch.json] [--text STR | FILE | -]        ids on stdout, one line
//   frugal-vocab decode  [--patch patch.json] [IDS... | -]                    bytes on stdout
//   frugal-vocab stats   [--patch patch.json] --corpus FILE                   tokens base vs patched, MB/s
//   frugal-vocab measure --train FILE --test FILE [-m 10000] [--max-n 4]      build on one, stats on the other
// Common: --gpt2-dir DIR (default: $FRUGAL_GPT2_DIR or <repo>/.cache/gpt2), --threads N, --separator STR (documents
// in a corpus file are separated by "<|endoftext|>" unless told otherwise). Progress of long builds on stderr.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <frugal/vocab/bpe.hpp>
#include <frugal/vocab/patch_tokenizer.hpp>
#include <frugal/vocab/patch_vocab.hpp>

namespace {

struct args {
  std::string cmd;
  std::map<std::string, std::string> opt;
  std::vector<std::string> pos;
  bool has(const std::string& k) const { return opt.count(k) > 0; }
  std::string get(const std::string& k, const std::string& d = "") const {
    const auto it = opt.find(k);
    return it == opt.end() ? d : it->second;
  }
};

[[noreturn]] void usage(const char* msg = nullptr) {
  if (msg) std::cerr << "frugal-vocab: " << msg << "\n\n";
  std::cerr << "usage:\n"
               "  frugal-vocab build   --corpus FILE [-m 10000] [--max-n 4] [--min-freq 2] [--naive | --keep-containing] [-o patch.json]\n"
               "  frugal-vocab encode  [--patch patch.json] [--text STR | FILE | -]\n"
               "  frugal-vocab decode  [--patch patch.json] [IDS... | -]\n"
               "  frugal-vocab stats   [--patch patch.json] --corpus FILE\n"
               "  frugal-vocab measure --train FILE --test FILE [-m 10000] [--max-n 4] [--naive | --keep-containing] [-o patch.json]\n"
               "options: --gpt2-dir DIR  --threads N  --separator STR (default \"<|endoftext|>\")\n";
  std::exit(2);
}

args parse(int argc, char** argv) {
  if (argc < 2) usage();
  args a;
  a.cmd = argv[1];
  static const char* flags[] = {"--naive", "--keep-containing"};
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "-") {
      a.pos.push_back(s);
    } else if (s.size() > 1 && s[0] == '-' && !(s.size() > 1 && std::isdigit(static_cast<unsigned char>(s[1])))) {
      bool flag = false;
      for (const char* f : flags) flag = flag || s == f;
      if (flag) {
        a.opt[s] = "1";
        continue;
      }
      if (i + 1 >= argc) usage(("missing value after " + s).c_str());
      a.opt[s] = argv[++i];
    } else {
      a.pos.push_back(s);
    }
  }
  return a;
}

std::string slurp(const std::string& path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  return frugal::detail::json::read_file("frugal-vocab", path);
}

std::vector<std::string_view> split_docs(std::string_view text, const std::string& sep) {
  std::vector<std::string_view> docs;
  std::size_t p = 0;
  for (;;) {
    const std::size_t q = sep.empty() ? std::string_view::npos : text.find(sep, p);
    docs.push_back(text.substr(p, q == std::string_view::npos ? std::string_view::npos : q - p));
    if (q == std::string_view::npos) return docs;
    p = q + sep.size();
  }
}

frugal::cpu_t cpu_of(const args& a) { return frugal::cpu_t{a.has("--threads") ? std::atoi(a.get("--threads").c_str()) : 0}; }

frugal::gpt2_tokenizer load_base(const args& a) {
  return frugal::gpt2_tokenizer::from_dir(a.get("--gpt2-dir", frugal::gpt2_tokenizer::default_dir()));
}

//! A progress bar on stderr: "tokenize [##########..........]  50%".
struct progress_bar {
  std::string stage;
  int last = -1;
  bool tty = isatty(2) != 0;
  void operator()(std::string_view s, double f) {
    if (s != stage) {
      if (!stage.empty()) std::cerr << "\n";
      stage = std::string(s);
      last = -1;
    }
    const int pct = static_cast<int>(f * 100);
    if (pct == last || (!tty && pct != 100 && pct % 25 != 0)) return;
    last = pct;
    const int w = 30, fill = pct * w / 100;
    std::cerr << (tty ? "\r" : "") << "  " << stage << std::string(10 - std::min<std::size_t>(10, stage.size()), ' ') << "["
              << std::string(static_cast<std::size_t>(fill), '#') << std::string(static_cast<std::size_t>(w - fill), '.')
              << "] " << pct << "%" << (tty ? "" : "\n") << std::flush;
  }
  void done() {
    if (!stage.empty() && tty) std::cerr << "\n";
    stage.clear();
  }
};

frugal::patch_vocab build(const args& a, const frugal::gpt2_tokenizer& base, const std::string& corpus_path) {
  const std::string corpus = slurp(corpus_path);
  const auto docs = split_docs(corpus, a.get("--separator", "<|endoftext|>"));
  frugal::patch_vocab_options o;
  o.num_patches = std::atoi(a.get("-m", "10000").c_str());
  o.max_n = std::atoi(a.get("--max-n", "4").c_str());
  o.min_freq = std::atoll(a.get("--min-freq", "2").c_str());
  o.overlap_aware = !a.has("--naive");
  o.keep_containing = a.has("--keep-containing");
  progress_bar bar;
  o.progress = [&](std::string_view s, double f) { bar(s, f); };
  std::cerr << "frugal-vocab: building " << o.num_patches << " patch tokens (n <= " << o.max_n << ", "
            << (!o.overlap_aware ? "naive top-m" : o.keep_containing ? "overlap-aware, keep containing" : "overlap-aware")
            << ") from " << docs.size() << " documents, "
            << corpus.size() << " bytes\n";
  auto pv = frugal::patch_vocab::build(cpu_of(a), base, docs, o);
  bar.done();
  const auto& s = pv.stats();
  std::cerr << "frugal-vocab: " << pv.size() << " patches in " << s.seconds_total << " s (tokenize "
            << s.seconds_tokenize << " s, count " << s.seconds_count << " s, select " << s.seconds_select
            << " s); corpus " << s.base_tokens << " base tokens, " << s.unused_base_tokens << " of "
            << s.replaceable_tokens << " replaceable base tokens unused, " << s.distinct_ngrams << " distinct n-grams, "
            << s.candidates << " candidates\n";
  if (a.has("-o")) {
    pv.save(a.get("-o"), &base);
    std::cerr << "frugal-vocab: wrote " << a.get("-o") << "\n";
  }
  return pv;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void stats(const args& a, const frugal::gpt2_tokenizer& base, const frugal::patch_tokenizer* pt,
           const std::string& corpus_path) {
  const std::string corpus = slurp(corpus_path);
  const auto docs = split_docs(corpus, a.get("--separator", "<|endoftext|>"));
  // Token counts, per document (documents are encoded on their own, as prompts would be).
  std::int64_t nb = 0, np = 0;
  bool roundtrip = true;
  for (const auto d : docs) {
    nb += static_cast<std::int64_t>(base.encode(d).size());
    if (pt) {
      const auto ids = pt->encode(d);
      np += static_cast<std::int64_t>(ids.size());
      roundtrip = roundtrip && pt->decode(ids) == d;
    }
  }
  std::printf("corpus            %s: %zu documents, %zu bytes\n", corpus_path.c_str(), docs.size(), corpus.size());
  std::printf("base tokens       %lld (%.3f bytes/token)\n", static_cast<long long>(nb),
              static_cast<double>(corpus.size()) / static_cast<double>(nb));
  if (pt) {
    std::printf("patched tokens    %lld (%.3f bytes/token); %.2f%% fewer; decode(encode) exact: %s\n",
                static_cast<long long>(np), static_cast<double>(corpus.size()) / static_cast<double>(np),
                100.0 * (1.0 - static_cast<double>(np) / static_cast<double>(nb)), roundtrip ? "yes" : "NO");
  }
  // Throughput: best of 3, whole corpus as one text (one thread), then as a batch of documents (all threads).
  auto best = [&](auto&& f) {
    double b = 1e30;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      b = std::min(b, seconds_since(t0));
    }
    return static_cast<double>(corpus.size()) / b / 1e6;
  };
  const double mb_base = best([&] { (void)base.encode(corpus); });
  const frugal::cpu_t tag = cpu_of(a);
  const double mb_base_batch = best([&] { (void)base.encode_batch(tag, docs); });
  std::printf("encode MB/s       base: %.1f (1 thread), %.1f (batch, %d threads)\n", mb_base, mb_base_batch,
              tag.num_threads());
  if (pt) {
    const double mb_p = best([&] { (void)pt->encode(corpus); });
    const double mb_pb = best([&] { (void)pt->encode_batch(tag, docs); });
    std::printf("encode MB/s       patched: %.1f (1 thread), %.1f (batch, %d threads)\n", mb_p, mb_pb, tag.num_threads());
  }
}

int run(const args& a) {
  if (a.cmd == "build") {
    if (!a.has("--corpus")) usage("build needs --corpus FILE");
    const auto base = load_base(a);
    const auto pv = build(a, base, a.get("--corpus"));
    if (!a.has("-o")) std::cout << pv.to_json(&base);
    return 0;
  }
  if (a.cmd == "encode" || a.cmd == "decode") {
    const auto base = load_base(a);
    std::optional<frugal::patch_tokenizer> pt;
    if (a.has("--patch")) pt.emplace(base, frugal::patch_vocab::load(a.get("--patch")));
    if (a.cmd == "encode") {
      const std::string text = a.has("--text") ? a.get("--text") : slurp(a.pos.empty() ? "-" : a.pos[0]);
      const auto ids = pt ? pt->encode(text) : base.encode(text);
      for (std::size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
      std::cout << "\n";
    } else {
      std::vector<std::int32_t> ids;
      std::istringstream in(a.pos.empty() || a.pos[0] == "-" ? slurp("-") : [&] {
        std::string s;
        for (const auto& p : a.pos) s += p + " ";
        return s;
      }());
      long long x;
      while (in >> x) ids.push_back(static_cast<std::int32_t>(x));
      const std::string bytes = pt ? pt->decode(ids) : base.decode(ids);
      std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    return 0;
  }
  if (a.cmd == "stats") {
    if (!a.has("--corpus")) usage("stats needs --corpus FILE");
    const auto base = load_base(a);
    std::optional<frugal::patch_tokenizer> pt;
    if (a.has("--patch")) pt.emplace(base, frugal::patch_vocab::load(a.get("--patch")));
    stats(a, base, pt ? &*pt : nullptr, a.get("--corpus"));
    return 0;
  }
  if (a.cmd == "measure") {
    if (!a.has("--train") || !a.has("--test")) usage("measure needs --train FILE --test FILE");
    const auto base = load_base(a);
    const auto t0 = std::chrono::steady_clock::now();
    auto pv = build(a, base, a.get("--train"));
    std::printf("build             %d patches, n <= %d, %s, %.2f s wall (%d threads)\n", pv.size(), pv.max_n(),
                a.has("--naive") ? "naive top-m" : a.has("--keep-containing") ? "overlap-aware, keep containing" : "overlap-aware",
                seconds_since(t0), cpu_of(a).num_threads());
    const frugal::patch_tokenizer pt(base, std::move(pv));
    stats(a, base, &pt, a.get("--test"));
    return 0;
  }
  usage(("unknown command '" + a.cmd + "'").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "frugal-vocab: " << e.what() << "\n";
    return 1;
  }
}
