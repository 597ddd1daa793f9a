#!/usr/bin/env bash
# Load test: `coe serve` on loopback under wrk, the planned zoo cascade against the same
# server running only the best single model. Bounded: DURATION seconds per server.
#   bench/load_test.sh [CASCADE.toml] [DURATION=60] [CONNECTIONS=64] [IMAGES_PER_REQUEST=1]
# Without CASCADE it plans one with `coe demo`. Needs wrk (Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."
COE=build/coe
MODELS=models/zoo/catalogue.toml
CASCADE=${1:-}
DURATION=${2:-60}
CONNS=${3:-64}
PER=${4:-1}
WORK=$(mktemp -d /tmp/coe-load.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT
if [ -z "$CASCADE" ]; then
  echo "planning: $COE demo --work $WORK/demo" >&2
  $COE demo --work "$WORK/demo" --json > "$WORK/demo.json"
  CASCADE=$WORK/demo/cascade.toml
fi
BEST=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['best_single'])" "$WORK/demo.json" 2>/dev/null || tail -n 3 "$CASCADE" | grep -o '"[^"]*"' | tail -n 1 | tr -d '"')
printf '[[tiers]]\nmembers = ["%s"]\n' "$BEST" > "$WORK/single.toml"
# One request body: PER test images as FP32 [PER, 1, 28, 28].
/usr/bin/python3 - "$PER" > "$WORK/body.json" <<'PY'
import gzip, json, sys
n = int(sys.argv[1])
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:16 + n * 784]
print(json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, 1, 28, 28],
                              "data": [float(b) for b in raw]}]}))
PY
run() {  # name cascade
  local port=$((20000 + RANDOM % 20000))
  $COE serve --cascade "$2" --models "$MODELS" --name served --port "$port" --max-inflight 128 > "$WORK/$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break; sleep 0.1; done
  COE_WRK_BODY="$WORK/body.json" wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s bench/wrk/infer.lua \
    "http://127.0.0.1:$port/v2/models/served/infer" > "$WORK/$1.wrk"
  local summary; summary=$(grep COE_SUMMARY "$WORK/$1.wrk")
  curl -s "http://127.0.0.1:$port/metrics" > "$WORK/$1.metrics"
  kill -TERM "$pid"; wait "$pid" || true
  echo "$1 $summary"
}
echo "wrk: ${DURATION}s, $CONNS connections, $PER image(s) per request, loopback"
echo "cascade: $(grep -v '^#' "$CASCADE" | tr '\n' ' ')"
run cascade "$CASCADE"
run "single_$BEST" "$WORK/single.toml"
