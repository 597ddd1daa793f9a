#!/usr/bin/env bash
# Builds (if needed) and runs one libFuzzer target on a scratch copy of its seed corpus.
#
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#
# TARGET is csv_fuzz or toml_fuzz (any NAME_fuzz with a fuzz/corpus/NAME/). New corpus entries go to a scratch directory under
# $TMPDIR (default /tmp), never into fuzz/corpus/; crash-*, leak-*, timeout-* and
# slow-unit-* files land in the same scratch directory. Environment:
#   BUILD_DIR  build tree (default: <repo>/build-fuzz)
#   CC, CXX    compilers for a fresh configure (default: clang-14, clang++-14)
#   JOBS       parallel build jobs (default: 1)
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 TARGET SECONDS [libFuzzer flags...]   (TARGET: csv_fuzz, toml_fuzz)" >&2
  exit 2
fi
target=$1
seconds=$2
shift 2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
corpus=${target%_fuzz}  # csv_fuzz -> fuzz/corpus/csv/, fuzz/csv.dict
if [[ "$corpus" == "$target" || ! -d "$repo/fuzz/corpus/$corpus" ]]; then
  echo "$0: unknown target '$target' (no fuzz/corpus/$corpus/)" >&2
  exit 2
fi
build=${BUILD_DIR:-$repo/build-fuzz}

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  CC=${CC:-clang-14} CXX=${CXX:-clang++-14} cmake -S "$repo" -B "$build" \
    -DCOE_BUILD_FUZZ=ON -DCOE_BUILD_TESTS=OFF -DCOE_BUILD_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$build" --target "$target" -j "${JOBS:-1}"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/coe-$target.XXXXXX")
mkdir -p "$scratch/corpus"
cp "$repo/fuzz/corpus/$corpus/"* "$scratch/corpus/"
echo "scratch directory: $scratch" >&2

dict=()
if [[ -f "$repo/fuzz/$corpus.dict" ]]; then dict=(-dict="$repo/fuzz/$corpus.dict"); fi

cd "$scratch"
# One worker on one core; -artifact_prefix keeps reproducers in the scratch directory.
exec "$build/$target" -max_total_time="$seconds" -max_len=4096 -timeout=5 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$scratch/" "${dict[@]}" "$@" "$scratch/corpus"
