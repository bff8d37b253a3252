#!/usr/bin/env bash
# Runs all of frugal's tests: the README's test command, and exactly what CI (.ci/run) runs.
#
#   bash tests/run.sh            # install missing Debian packages, build and test every configuration
#
# Configurations, each built in its own folder and tested with ctest:
#   build/cuda  CUDA on (when nvcc is found; kernels for sm_90 unless CMAKE_CUDA_ARCHITECTURES is set): CPU tests
#               run, CUDA test cases skip without a GPU and run on a GPU machine; benchmarks and examples compile.
#   build/cpu   -DFRUGAL_ENABLE_CUDA=OFF: proves the CPU path (tests, examples) needs no CUDA Toolkit.
#   build/asan  CPU tests again under AddressSanitizer + UndefinedBehaviorSanitizer (halt on first error).
#   build/fuzz  every libFuzzer target (clang, ASan+UBSan) for FUZZ_SECONDS (default 30) each.
# FRUGAL_TEST_CONFIGS="cpu asan" limits the set; JOBS sets build parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${JOBS:-$(nproc)}
configs=${FRUGAL_TEST_CONFIGS:-"cuda cpu asan fuzz"}

bash "$root/cmake/install-deps.sh"

export PATH=$PATH:/usr/local/cuda/bin
have_nvcc=0; command -v nvcc >/dev/null 2>&1 && have_nvcc=1

run_config() {  # name, cmake args...
  local name=$1; shift
  echo "=== frugal tests: $name ==="
  cmake -S "$root" -B "$root/build/$name" -G Ninja "$@" >/dev/null
  cmake --build "$root/build/$name" -j "$jobs"
  (cd "$root/build/$name" && ctest --output-on-failure -j "$jobs")
}

for c in $configs; do
  case $c in
    cuda)
      if [ $have_nvcc = 1 ]; then
        run_config cuda -DCMAKE_BUILD_TYPE=Release -DFRUGAL_ENABLE_CUDA=ON -DFRUGAL_BUILD_BENCHMARKS=ON \
          -DCMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90}"
      else
        echo "=== frugal tests: cuda skipped (no nvcc on this machine) ==="
      fi ;;
    cpu) run_config cpu -DCMAKE_BUILD_TYPE=Release -DFRUGAL_ENABLE_CUDA=OFF -DFRUGAL_BUILD_BENCHMARKS=OFF ;;
    asan) ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
          run_config asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFRUGAL_ENABLE_CUDA=OFF -DFRUGAL_SANITIZE=ON \
          -DFRUGAL_INSTALL=OFF -DFRUGAL_BUILD_EXAMPLES=OFF ;;
    fuzz) echo "=== frugal tests: fuzz ==="; bash "$root/tests/fuzz/run.sh" "${FUZZ_SECONDS:-30}" ;;
    *) echo "unknown configuration '$c' (known: cuda cpu asan fuzz)" >&2; exit 2 ;;
  esac
done
echo "=== frugal tests: all configurations passed ($configs) ==="
