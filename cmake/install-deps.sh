#!/usr/bin/env bash
# Installs the Debian packages frugal's build, tests, examples and plots need, if any are missing.
# (The CUDA Toolkit is optional and not a Debian package here; without nvcc only the CPU path builds.)
set -euo pipefail
pkgs=(cmake ninja-build g++ pkg-config doctest-dev libbenchmark-dev nlohmann-json3-dev libpcre2-dev
      libopenblas-dev liblapacke-dev python3-matplotlib clang libclang-rt-14-dev manpages manpages-dev groff-base npm)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v npm >/dev/null 2>&1 && missing=("${missing[@]/npm}")  # a non-Debian node/npm already present is fine
  missing=($(printf '%s\n' "${missing[@]}" | sed '/^$/d'))
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "frugal: installing missing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
