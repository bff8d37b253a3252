#!/usr/bin/env bash
# Every CUDA test binary under each of compute-sanitizer's four tools — run on a machine with a GPU:
#
#   bash tests/cuda-sanitize.sh [BUILD_DIR]
#
# BUILD_DIR (default build/cuda) is configured and built here when it holds no CUDA test binaries yet.
# Tools: memcheck (out-of-bounds / misaligned accesses, API errors), racecheck (shared-memory hazards), initcheck
# (reads of uninitialised device memory), synccheck (invalid __syncthreads / warp-sync usage).
# Environment:
#   TOOLS        which tools (default "memcheck racecheck initcheck synccheck")
#   TESTS        which binaries, as a grep -E regex over their names (default: every test*_cuda binary)
#   JOBS         sanitizer processes run side by side on the GPU (default 4)
#   SAN_TIMEOUT  seconds per (tool, binary) before it counts as failed (default 600)
#   OUT          where logs and summary.txt go (default BUILD_DIR/sanitize)
#   SAN_FULL=1   run memcheck on the tests' full sweeps too (ctest's sizes; rotation alone then takes > 7 minutes)
#   PER_CASE=1   one sanitizer process per doctest test case (from --list-test-cases), JOBS at a time, SAN_TIMEOUT
#                each: long binaries (racecheck of gemv, rotation, gpt2 takes > 10 minutes per binary) finish in
#                parallel, and the summary has one line per case
#   CASES        with PER_CASE=1: only the test cases whose names match this grep -E regex (default: all)
# The tools slow kernels down by one to two orders of magnitude, so the tests run with their reduced sweeps
# (FRUGAL_TEST_SMALL=1, FRUGAL_KV_QUICK=1): the same kernels and code paths on fewer and smaller shapes; racecheck,
# slower again, with the minimal sweeps (FRUGAL_TEST_SMALL=2: the longest cases keep one configuration per kernel
# instantiation and no repeated runs); ctest on a GPU machine runs the full sweeps without instrumentation.
# Excluded everywhere: test cases whose name says "(deliberate API error)" — they make an invalid CUDA call on
# purpose to test frugal's error translation, which the sanitizer would report as an error.
# Exit status: 0 when every (tool, binary) ends with exit 0 and "ERROR SUMMARY: 0 errors" (racecheck: 0 hazards).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build/cuda}
tools=${TOOLS:-"memcheck racecheck initcheck synccheck"}
jobs=${JOBS:-4}
limit=${SAN_TIMEOUT:-600}
out=${OUT:-$build/sanitize}
export PATH=$PATH:/usr/local/cuda/bin
command -v compute-sanitizer >/dev/null || { echo "cuda-sanitize: compute-sanitizer not found (CUDA Toolkit)" >&2; exit 2; }
nvidia-smi -L >/dev/null 2>&1 || { echo "cuda-sanitize: no GPU on this machine (nvidia-smi -L failed)" >&2; exit 2; }

list_tests() {
  find "$build/tests" -type f -perm -u+x -name 'test*_cuda' -not -path '*CMakeFiles*' 2>/dev/null |
    grep -E "${TESTS:-.}" | sort
}
if [ -z "$(list_tests)" ]; then
  echo "=== cuda-sanitize: building the CUDA tests in $build ==="
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFRUGAL_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90}" -DFRUGAL_BUILD_TESTS=ON >/dev/null || exit 1
  targets=$(cmake --build "$build" --target help | sed -n 's/^\(test[a-z0-9_]*_cuda\):.*/\1/p')
  # shellcheck disable=SC2086
  cmake --build "$build" -j "$(nproc)" --target $targets || exit 1
fi
mkdir -p "$out"

one() {  # tool binary [test case]: runs one (tool, binary[, case]), prints its summary line
  local tool=$1 bin=$2 tc=${3:-} name log rc envs="" filter
  name=$(basename "$bin")
  log=$out/$name.$tool.log
  filter=()
  if [ -n "$tc" ]; then  # doctest filters split at commas: match them with '?'
    filter=(-tc="${tc//,/?}")
    log=$out/$name.$tool.$(printf '%s' "$tc" | md5sum | cut -c1-8).log
  fi
  [ "$tool" != memcheck ] || [ "${SAN_FULL:-0}" = 0 ] && envs="FRUGAL_TEST_SMALL=1 FRUGAL_KV_QUICK=1"
  [ "$tool" = racecheck ] && envs="FRUGAL_TEST_SMALL=2 FRUGAL_KV_QUICK=1"
  local start=$SECONDS
  # shellcheck disable=SC2086
  env $envs timeout "$limit" compute-sanitizer --tool "$tool" --error-exitcode 9 \
    "$bin" --test-case-exclude='*(deliberate API error)*' "${filter[@]}" >"$log" 2>&1
  rc=$?
  local summary
  summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)
  local tests
  tests=$(grep -E '^\[doctest\] test cases' "$log" | tail -1 | tr -s ' ')
  if [ -n "$tc" ] && [[ "$tests" == *"test cases: 0 |"* ]]; then  # the reduced sweep skips this case
    rc=0 summary="skipped: 0 errors"
  fi
  printf '%-10s %-28s rc=%-3s %4ss  %s | %s%s\n' "$tool" "$name" "$rc" "$((SECONDS - start))" "${summary:-no summary}" \
    "${tests:-no doctest summary}" "${tc:+ | $tc}"
}
export -f one
export out limit

echo "=== cuda-sanitize: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) ==="
echo "=== tools: $tools; $jobs at a time; logs in $out ==="
cases() {  # binary: its test cases, one per line (the deliberate-API-error ones are excluded anyway)
  "$1" --list-test-cases 2>/dev/null | sed -n '3,$p' | grep -v -e '^=====' -e 'unskipped test cases' \
    -e 'deliberate API error'
}
for t in $tools; do for b in $(list_tests); do
  if [ "${PER_CASE:-0}" = 1 ]; then
    cases "$b" | grep -E -- "${CASES:-.}" | while IFS= read -r c; do printf '%s\t%s\t%s\0' "$t" "$b" "$c"; done
  else
    printf '%s\t%s\t\0' "$t" "$b"
  fi
done; done | xargs -0 -P "$jobs" -n 1 bash -c 'IFS=$(printf "\t") read -r t b c <<< "$0"; one "$t" "$b" "$c"' |
  tee "$out/summary.txt"
bad=$(awk '$3 != "rc=0" || !/: 0 (errors|hazards)/' "$out/summary.txt")
if [ -n "$bad" ]; then
  echo "=== cuda-sanitize: FAILED ==="
  echo "$bad"
  exit 1
fi
echo "=== cuda-sanitize: all clean ==="
