#!/usr/bin/env bash
# Serving at scale, measured side by side on this machine (loopback, zoo cascade, one
# Fashion-MNIST test image per request):
#  1. closed loop, wrk at 64 connections for DURATION s (the server pinned to core 0 and
#     wrk to core 1; PIN_CORES=0 lets them share), ROUNDS interleaved rounds of:
#     the server before the Beast rewrite (OLD_COE, when given), the new server with
#     dynamic batching (default flags), and the new server with batching off
#     (--max-batch 1); medians and ratios;
#  2. open loop (build/open_loop, fixed rates, pinned the same way): at 80% of the
#     saturating rate (the batching median of 1), p99 of the answers; at 150%,
#     how fast the excess gets 503 and the p99 of the requests accepted
#     (--queue-timeout-ms QUEUE_MS, default 100), with the default load-shedding bound
#     --max-io-wait-ms 20 and with 5.
#   bench/serve_load.sh [DURATION=60] [ROUNDS=3]
# OLD_COE: a coe built from the commit before the rewrite, e.g.
#   git worktree add /tmp/coe-old 3b18b3d && (cd /tmp/coe-old && scripts/build.sh)
#   OLD_COE=/tmp/coe-old/build/coe bench/serve_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
ROUNDS=${2:-3}
COE=${COE:-build/coe}
OPEN_LOOP=${OPEN_LOOP:-build/open_loop}
OLD_COE=${OLD_COE:-}
QUEUE_MS=${QUEUE_MS:-100}
CASCADE=${CASCADE:-deploy/kserve/zoo/cascade.toml}
MODELS=models/zoo/catalogue.toml
WORK=$(mktemp -d /tmp/coe-serve-load.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
/usr/bin/python3 - > "$WORK/body.json" <<'PY'
import gzip, json
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:16 + 784]
print(json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                              "data": [float(b) for b in raw]}]}))
PY
source bench/serve_lib.sh
start() {  # binary flags... -> sets PID, PORT
  PORT=$(free_port)
  ${PIN:-} "$1" serve --cascade "$CASCADE" --models "$MODELS" --name served --port "$PORT" --quiet --max-inflight 256 "${@:2}" \
    > "$WORK/server.log" 2>&1 &
  PID=$!
  wait_ready "$PORT" "$WORK/server.log"
}
stop() { kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; }
wrk_run() {  # name -> appends "name rps p50 p99 errors" to $WORK/closed
  COE_WRK_BODY="$WORK/body.json" $CLIENT_CPU wrk -t"$WRK_THREADS" -c64 -d"${DURATION}s" --timeout 10s -s bench/wrk/infer.lua \
    "http://127.0.0.1:$PORT/v2/models/served/infer" > "$WORK/wrk.out"
  local s; s=$(grep COE_SUMMARY "$WORK/wrk.out")
  local rps p50 p99 err
  rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<< "$s")
  p50=$(sed -E 's/.* p50_ms=([0-9.]+).*/\1/' <<< "$s")
  p99=$(sed -E 's/.* p99_ms=([0-9.]+).*/\1/' <<< "$s")
  err=$(/usr/bin/python3 -c 'import re,sys; print(sum(int(v) for v in re.findall(r"errors_\w+=(\d+)", sys.argv[1])))' "$s")
  echo "$1 $rps $p50 $p99 $err" >> "$WORK/closed"
  printf '  %-12s %9.1f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %s\n' "$1" "$rps" "$p50" "$p99" "$err"
}
# The server runs on core 0 and the client on core 1: sharing cores, the client takes
# CPU from the server in proportion to their threads (the old server had a thread per
# connection, so it won CPU from wrk rather than serving faster). PIN_CORES=0 shares them.
if [ "$(nproc)" -ge 2 ] && [ "${PIN_CORES:-1}" = 1 ]; then
  SERVER_CPU="taskset -c 0"; CLIENT_CPU="taskset -c 1"; WRK_THREADS=1; WHERE="server on core 0, client on core 1"
else
  SERVER_CPU=""; CLIENT_CPU=""; WRK_THREADS=2; WHERE="server and client sharing the cores"
fi
PIN=$SERVER_CPU
echo "closed loop: wrk, 64 connections, ${DURATION} s, 1 image per request, $ROUNDS interleaved rounds; $WHERE"
echo "cascade: $(grep -v '^#' "$CASCADE" | tr '\n' ' ' | tr -s ' ')"
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  if [ -n "$OLD_COE" ]; then start "$OLD_COE"; wrk_run old; stop; fi
  start "$COE"; wrk_run batching; stop
  start "$COE" --max-batch 1; wrk_run no_batching; stop
done
/usr/bin/python3 - "$WORK/closed" > "$WORK/medians" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, err = line.split()
    rows.setdefault(name, []).append((float(rps), float(p50), float(p99), int(err)))
med = {k: [statistics.median(x[i] for x in v) for i in range(3)] + [sum(x[3] for x in v)] for k, v in rows.items()}
print("medians:")
for k, (rps, p50, p99, err) in med.items():
    print(f"  {k:12s} {rps:9.1f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  errors {err}")
b = med["batching"][0]
print(f"  batching on / off throughput: {b / med['no_batching'][0]:.2f}x")
if "old" in med:
    print(f"  new (batching) / old server throughput: {b / med['old'][0]:.2f}x;"
          f" p99 {med['old'][2]:.2f} -> {med['batching'][2]:.2f} ms")
print(f"SATURATION {b:.1f}")
PY
cat "$WORK/medians" | grep -v SATURATION
SAT=$(grep SATURATION "$WORK/medians" | cut -d' ' -f2)
echo "open loop: build/open_loop (epoll, one thread), $WHERE; saturating rate $SAT req/s (the batching"
echo "  median above); --queue-timeout-ms $QUEUE_MS, 30 s per rate, latency from each request's due time"
for bound in 20 5; do
  start "$COE" --queue-timeout-ms "$QUEUE_MS" --max-io-wait-ms "$bound"
  for frac in 0.8 1.5; do
    rate=$(/usr/bin/python3 -c "print(round($SAT * $frac, 1))")
    out=$($CLIENT_CPU "$OPEN_LOOP" --port "$PORT" --path /v2/models/served/infer --body "$WORK/body.json" \
      --rate "$rate" --seconds 30 --connections 4000)
    echo "  --max-io-wait-ms $bound, ${frac}x saturation: $out"
  done
  stop
done
