#!/usr/bin/env bash
# ctest setup step for the vocab tests (never fails: what cannot be made is reported, and the tests skip).
#   setup-test-data.sh gpt2   <cache> <oracle dir>   GPT-2 files into <cache>/gpt2 (or $FRUGAL_GPT2_DIR)
#   setup-test-data.sh corpus <cache> <oracle dir>   man-page corpus into <cache>/corpus
#   setup-test-data.sh oracle <cache> <oracle dir>   oracle token ids (JS gpt-3-encoder, Python reference)
#                      (FRUGAL_VOCAB_FULL_ORACLE=1 adds the whole training split of the corpus)
set -u
what=$1 cache=$2 oracle=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gpt2=${FRUGAL_GPT2_DIR:-$cache/gpt2}
case $what in
  gpt2)
    bash "$here/fetch-gpt2-tokenizer.sh" "$gpt2" || echo "vocab setup: GPT-2 files unavailable; tests that need them will skip" ;;
  corpus)
    bash "$here/make-corpus.sh" "$cache/corpus" || echo "vocab setup: corpus unavailable; tests that need it will skip" ;;
  oracle)
    mkdir -p "$oracle"
    inputs=("$here/data/adversarial.txt" "$here/data/adversarial-python.txt" "$cache/corpus/test.txt")
    # FRUGAL_VOCAB_FULL_ORACLE=1: also the whole training split (~7 MB; the JS oracle takes about a minute).
    [ "${FRUGAL_VOCAB_FULL_ORACLE:-0}" = 1 ] && inputs+=("$cache/corpus/train.txt")
    for input in "${inputs[@]}"; do
      name=$(basename "$input" .txt)
      [ -f "$input" ] || { echo "vocab setup: $input missing"; continue; }
      if [ -f "$gpt2/Encoder.js" ] && command -v node >/dev/null && [ "$name" != adversarial-python ]; then
        [ -s "$oracle/$name.js.ids" ] && [ "$oracle/$name.js.ids" -nt "$input" ] ||
          node "$here/gpt2_oracle.js" "$gpt2" "$input" "$oracle/$name.js.ids" || rm -f "$oracle/$name.js.ids"
      else
        echo "vocab setup: no node or no Encoder.js: JS oracle for $name skipped"
      fi
      if [ -f "$gpt2/encoder.json" ] && python3 -c 'import regex' 2>/dev/null; then
        [ -s "$oracle/$name.py.ids" ] && [ "$oracle/$name.py.ids" -nt "$input" ] ||
          python3 "$here/gpt2_reference.py" "$gpt2" "$input" "$oracle/$name.py.ids" || rm -f "$oracle/$name.py.ids"
      else
        echo "vocab setup: no python3 'regex' module or no GPT-2 files: Python oracle for $name skipped"
      fi
    done ;;
esac
exit 0
