#!/usr/bin/env bash
# Configures and builds coe (Release) in build/. Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-DCMAKE_BUILD_TYPE=Release)
if command -v ccache >/dev/null; then
  args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=true
fi
cmake -S . -B build "${args[@]}" "$@" >/dev/null
cmake --build build -j"$(nproc)"
