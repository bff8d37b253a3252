#!/usr/bin/env bash
# Runs already-built libFuzzer targets side by side, each in fork mode with several workers, on a machine with more
# cores than this one (the fuzzers need no GPU and only libstdc++: build them here with `bash tests/fuzz/run.sh 1`,
# copy build/fuzz/tests/fuzz/fuzz_* and build/fuzz/corpus over, and run this from the repository root there):
#   FUZZ_BIN=dir FUZZ_CORPUS=dir FUZZ_OUT=dir bash tests/fuzz/run-parallel.sh [seconds, default 270] [workers per target, default 4]
# Crashes, out-of-memory and timeout inputs are kept (fork mode goes on after each) in $FUZZ_OUT/crashes/<target>/;
# new corpus entries go into $FUZZ_CORPUS/<target>/; per-target logs and a summary into $FUZZ_OUT.
# fuzz_bpe_roundtrip needs GPT-2's tokenizer files in .cache/gpt2 (or $FRUGAL_GPT2_DIR).
set -u
secs=${1:-270}
workers=${2:-4}
bin=${FUZZ_BIN:-build/fuzz/tests/fuzz}
corpus=${FUZZ_CORPUS:-build/fuzz/corpus}
out=${FUZZ_OUT:-build/fuzz/parallel}
targets=$(sed -n "s/^ *frugal_add_fuzzer(\([a-z_0-9]*\).*/\1/p" "$(dirname "$0")/CMakeLists.txt")
mkdir -p "$out"
date -u > "$out/summary.txt"
for t in $targets; do
  [ -x "$bin/fuzz_$t" ] || { echo "fuzz_$t: not found in $bin" | tee -a "$out/summary.txt"; continue; }
  mkdir -p "$out/crashes/$t" "$corpus/$t"
  ("$bin/fuzz_$t" -fork="$workers" -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -max_total_time="$secs" \
     -rss_limit_mb=2048 -artifact_prefix="$out/crashes/$t/" "$corpus/$t" "$(dirname "$0")/corpus/$t" \
     >"$out/log_$t.txt" 2>&1; echo "rc=$?" >>"$out/log_$t.txt") &
done
wait
date -u >> "$out/summary.txt"
for t in $targets; do
  [ -f "$out/log_$t.txt" ] || continue
  echo "== $t: $(ls "$out/crashes/$t" | wc -l) inputs kept (crash/oom/timeout), corpus $(ls "$corpus/$t" | wc -l) files" >> "$out/summary.txt"
  grep -E '^#[0-9]+' "$out/log_$t.txt" | tail -1 >> "$out/summary.txt"
done
cat "$out/summary.txt"
[ -z "$(find "$out/crashes" -type f)" ]
