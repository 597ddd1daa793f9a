#!/usr/bin/env bash
# Builds coe and runs its tests.
#   scripts/test.sh              Release build in build/
#   scripts/test.sh --sanitize   AddressSanitizer + UBSan build in build-asan/
#   scripts/test.sh --tsan       ThreadSanitizer build in build-tsan/
#   scripts/test.sh --no-grpc    the `coe` command alone, built with -DCOE_WITH_GRPC=OFF in
#                                build-nogrpc/, and a few commands of it (not the suite)
# Every other lane runs the whole suite with its default threads and chunking.
set -euo pipefail
tsan_reports=""
cd "$(dirname "$0")/.."
root="$(pwd)"
dir=build
args=(-DCMAKE_BUILD_TYPE=Release -DCOE_WERROR=ON)
case "${1:-}" in
  "") ;;
  --sanitize)
    dir=build-asan
    args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOE_SANITIZE=address -DCOE_BUILD_BENCH=OFF -DCOE_WERROR=ON)
    # intercept_tls_get_addr=0: GCC 12's LeakSanitizer, on Debian 12's glibc 2.36, reads a
    # bogus dynamic-TLS range for the main thread once enough TLS modules are loaded (here
    # after the dlopen'ed OpenCV plugin, with gRPC linked in) and its tracer dies:
    #   LSAN_OPTIONS=verbosity=1:log_threads=1 build-asan/coe_tests \
    #     --gtest_filter='Backends/Conformance.WrongShapeIsAnErrorAndEveryExampleAbstains/onnx_linear'
    #   ==32415==DTLS 22 at 0x0000000028fa-0x0010000039fc.
    #   Tracer caught signal 11: addr=0x2900 pc=0x7fb78e2e80f0
    #   ==32413==LeakSanitizer has encountered a fatal error.
    # (the fault address lies in that range; no coe frame is involved, and the test itself
    # passed). Without the __tls_get_addr interceptor LSan does not track dynamic TLS
    # blocks specially; they stay heap blocks reachable from the thread (found, not lost).
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ;;
  --tsan)
    dir=build-tsan
    args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOE_SANITIZE=thread -DCOE_BUILD_BENCH=OFF -DCOE_WERROR=ON)
    # Reports go to files that scripts/tsan_check.py reads after the tests: it excuses
    # only reports lying wholly inside a library of scripts/tsan-libraries.txt (TSan's
    # own suppressions match a frame in either stack, which could hide coe's races).
    tsan_reports="$root/$dir/tsan-reports"
    rm -rf "$tsan_reports" && mkdir -p "$tsan_reports"
    # scripts/tsan-uninstrumented.supp holds only `called_from_lib` entries (Debian's
    # gRPC, Abseil and protobuf: the interceptor calls of those uninstrumented
    # libraries, whose own synchronization TSan cannot see, are not recorded); never
    # `race:` entries.
    export TSAN_OPTIONS="halt_on_error=0 exitcode=0 second_deadlock_stack=1 log_path=$tsan_reports/report suppressions=$root/scripts/tsan-uninstrumented.supp"
    ;;
  --no-grpc)
    # A build without gRPC must build and work (without `coe serve --grpc-port`): only
    # the command and its modules, which ccache has from the Release lane.
    dir=build-nogrpc
    args=(-DCMAKE_BUILD_TYPE=Release -DCOE_WITH_GRPC=OFF -DCOE_BUILD_TESTS=OFF -DCOE_BUILD_BENCH=OFF
          -DCOE_WITH_PYTHON=OFF -DCOE_WERROR=ON)
    ;;
  *) echo "usage: scripts/test.sh [--sanitize|--tsan|--no-grpc]" >&2; exit 2 ;;
esac
# ccache, with paths relative to the checkout, so another clone reuses the objects.
if command -v ccache >/dev/null; then
  args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true
fi
# The official OpenAI client for the front-door test: a dev-only npm package, pinned by
# its lockfile (tests/openai_client/package-lock.json).
if [ "$dir" = build-nogrpc ]; then
  cmake -S . -B "$dir" "${args[@]}" >/dev/null
  cmake --build "$dir" -j"$(nproc)" --target coe_cli
  exec scripts/check_no_grpc.sh "$dir/coe"
fi
if [ ! -d tests/openai_client/node_modules/openai ]; then
  npm ci --prefix tests/openai_client --no-audit --no-fund --loglevel=error
fi
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)"
if [ -n "${tsan_reports:-}" ]; then /usr/bin/python3 scripts/tsan_check.py "$tsan_reports"; fi
