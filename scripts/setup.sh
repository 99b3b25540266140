#!/usr/bin/env bash
# Installs what minipeft needs from Debian's packages (skipping what is
# installed) and configures the build directory `build/` if it is not there.
# Used by both commands at the top of README.md; safe to run again.
# `scripts/setup.sh fuzz` (scripts/fuzz.sh) installs clang with libFuzzer and
# the sanitizer runtimes as well, and configures nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(g++ meson ninja-build pkg-config libfmt-dev doctest-dev libbenchmark-dev libopenblas-dev libdnnl-dev
          nlohmann-json3-dev libcli11-dev libpcre2-dev gnuplot-nox libopenmpi-dev openmpi-bin)
fuzz=false
[ "${1:-}" = fuzz ] && fuzz=true
$fuzz && packages+=(clang libclang-rt-dev libomp-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! $fuzz && [ ! -f build/build.ninja ]; then
  options=()
  # CI treats warnings as errors.
  [ -n "${CI:-}" ] && options+=(-Dwerror=true)
  meson setup build "${options[@]}"
fi
