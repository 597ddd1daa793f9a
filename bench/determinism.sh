#!/usr/bin/env bash
# Answers are a pure function of (input, cascade, models), shown end to end with the
# real commands and the default zoo:
#  1. `coe record` of linear_pool,linear,mlp32,mlp128 on the calibration split (the
#     last 10,000 training images), 6 runs at 2 threads and 6 at 8: distinct CSVs.
#  2. `coe run` of CASCADE on the 10,000 test images, --threads 1/2/8 x --batch
#     1/7/256/2048: distinct prediction files.
#  3. `coe serve` of CASCADE (default threads) under wrk, 64 connections for SECONDS,
#     all posting the same image (one that reaches the last tier): distinct answers
#     (label, exit tier and probabilities, bit for bit).
# Each count should be 1.
#   bench/determinism.sh [CASCADE.toml] [SECONDS=60]
# Without CASCADE it plans one with `coe demo`. Needs wrk (Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."
COE=build/coe
MODELS=models/zoo/catalogue.toml
F=/usr/share/datasets/fashion-mnist
CASCADE=${1:-}
SECONDS_=${2:-60}
WORK=$(mktemp -d /tmp/coe-determinism.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
if [ -z "$CASCADE" ]; then
  $COE demo --work "$WORK/demo" --json > "$WORK/demo.json"
  CASCADE=$WORK/demo/cascade.toml
fi
echo "cascade: $(grep -v '^#' "$CASCADE" | tr '\n' ' ')"

echo "== 1. coe record, 12 runs (6 x --threads 2, 6 x --threads 8)"
for t in 2 8; do for k in 1 2 3 4 5 6; do
  $COE record --models $MODELS --only linear_pool,linear,mlp32,mlp128 --data $F/train-images-idx3-ubyte.gz \
    --labels $F/train-labels-idx1-ubyte.gz --range 50000:60000 --threads $t --out "$WORK/rec_${t}_$k.csv" >/dev/null 2>&1
done; done
echo "distinct recordings: $(md5sum "$WORK"/rec_*.csv | awk '{print $1}' | sort -u | wc -l) of 12 runs"

echo "== 2. coe run, --threads 1/2/8 x --batch 1/7/256/2048"
for t in 1 2 8; do for b in 1 7 256 2048; do
  $COE run --cascade "$CASCADE" --models $MODELS --data $F/t10k-images-idx3-ubyte.gz \
    --labels $F/t10k-labels-idx1-ubyte.gz --threads $t --batch $b --out "$WORK/pred_${t}_$b.csv" >/dev/null 2>&1
done; done
echo "distinct prediction files: $(md5sum "$WORK"/pred_*.csv | awk '{print $1}' | sort -u | wc -l) of 12 runs"

echo "== 3. coe serve under wrk: 64 connections, ${SECONDS_}s, one image"
last=$(grep -c '^\[\[tiers\]\]' "$CASCADE")
row=$(awk -F, -v last="$last" 'NR > 1 && $3 == last { print NR - 2; exit }' "$WORK/pred_2_256.csv")
echo "image: test #$row (answered by tier $last)"
/usr/bin/python3 - "$row" > "$WORK/body.json" <<'PY'
import gzip, json, sys
i = int(sys.argv[1])
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16 + i * 784:16 + (i + 1) * 784]
print(json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                              "data": [float(b) for b in raw]}],
                  "outputs": [{"name": "label"}, {"name": "exit_tier"}, {"name": "probabilities"}]}))
PY
port=$((20000 + RANDOM % 20000))
$COE serve --cascade "$CASCADE" --models $MODELS --name served --port "$port" > "$WORK/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break; sleep 0.1; done
COE_WRK_BODY="$WORK/body.json" wrk -t2 -c64 -d"${SECONDS_}s" --timeout 10s -s bench/wrk/distinct.lua \
  "http://127.0.0.1:$port/v2/models/served/infer" > "$WORK/wrk.out"
kill -TERM "$pid"; wait "$pid" || true
grep COE_DISTINCT "$WORK/wrk.out"
grep COE_ANSWER "$WORK/wrk.out" | cut -c1-200
