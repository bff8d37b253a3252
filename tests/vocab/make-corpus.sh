#!/usr/bin/env bash
# Builds a real domain corpus for AdaptiVocab from Debian's Linux man pages (packages `manpages` and
# `manpages-dev`: sections 2, 3, 4, 5, 7 and the few of 1/8), rendered to plain UTF-8 text with groff exactly as
# `man` shows them at 80 columns. Pages are sorted by path; every 10th page goes to the held-out test split.
# Documents are separated by a line "<|endoftext|>" (GPT-2's end-of-text token).
#   usage: tests/vocab/make-corpus.sh [dest]     (default <repo>/.cache/corpus; writes train.txt, test.txt)
#   env:   FRUGAL_CORPUS_LIMIT=N  render only the first N pages (quick runs)
#          FRUGAL_CORPUS_DEDENT=1 strip each line's leading whitespace (man's indentation), a layout-free variant
#                                 (default dest then <repo>/.cache/corpus-dedent)
# Needs: groff-base, manpages, manpages-dev (apt-get install groff-base manpages manpages-dev).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dedent=${FRUGAL_CORPUS_DEDENT:-0}
if [ "$dedent" = 1 ]; then dest=${1:-$repo/.cache/corpus-dedent}; else dest=${1:-$repo/.cache/corpus}; fi
limit=${FRUGAL_CORPUS_LIMIT:-0}
for p in manpages manpages-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "make-corpus: Debian package $p is not installed (apt-get install $p)" >&2; exit 2; }
done
command -v groff >/dev/null || { echo "make-corpus: groff not found (apt-get install groff-base)" >&2; exit 2; }
if [ -s "$dest/train.txt" ] && [ -s "$dest/test.txt" ] && [ -f "$dest/.limit" ] && [ "$(cat "$dest/.limit")" = "$limit/$dedent" ]; then
  echo "make-corpus: $dest already has train.txt and test.txt"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Regular files only (symlinks are aliases), and no ".so" stubs that only include another page.
dpkg -L manpages manpages-dev | grep -E '^/usr/share/man/man[0-9]/.*\.gz$' | sort | while read -r f; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  zcat "$f" | grep -v '^\.\\"' | grep -v '^[[:space:]]*$' | head -1 | grep -q '^\.so ' && continue
  echo "$f"
done > "$tmp/pages"
[ "$limit" -gt 0 ] && head -n "$limit" "$tmp/pages" > "$tmp/p2" && mv "$tmp/p2" "$tmp/pages"
n=$(wc -l < "$tmp/pages")
render() { zcat "$1" | groff -t -man -Tutf8 -P-c -P-b -P-u -rLL=80n 2>/dev/null | sed -e 's/[[:space:]]*$//' |
  if [ "$FRUGAL_CORPUS_DEDENT" = 1 ]; then sed -e 's/^[[:space:]]*//'; else cat; fi | cat -s; }
export -f render
export FRUGAL_CORPUS_DEDENT=$dedent
mkdir -p "$tmp/out"
# Render in parallel (2 jobs), file names by index so that order is kept.
nl -ba -nrz -w6 "$tmp/pages" | xargs -P 2 -L 1 bash -c 'render "$1" > "'"$tmp"'/out/$0.txt"'
: > "$tmp/train.txt"; : > "$tmp/test.txt"
i=0
for f in "$tmp"/out/*.txt; do
  if [ $((i % 10)) -eq 0 ]; then t="$tmp/test.txt"; else t="$tmp/train.txt"; fi
  [ -s "$t" ] && printf '<|endoftext|>\n' >> "$t"
  cat "$f" >> "$t"
  i=$((i + 1))
done
mkdir -p "$dest"
mv "$tmp/train.txt" "$tmp/test.txt" "$dest/"
echo "$limit/$dedent" > "$dest/.limit"
echo "make-corpus: $n pages -> $dest/train.txt ($(wc -c < "$dest/train.txt") bytes), test.txt ($(wc -c < "$dest/test.txt") bytes)"
