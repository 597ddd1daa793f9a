#!/usr/bin/env bash
# Single-request latency, planned beside measured (issue 12): the cascade `coe plan
# --objective latency` chooses on the zoo's calibration recordings, served by
# `coe serve`, against the best single model served the same way, each queried by one
# client one request at a time (build/request_latency: the first IMAGES test images),
# ROUNDS interleaved rounds; medians of the rounds' mean, p50 and p99. A third server
# with the cheapest model (FLOOR, default linear: microseconds of its own) shows what a
# served request costs besides the models (HTTP, JSON, hand-offs), which the plan leaves out.
# SERVE_FLAGS go to every coe serve (e.g. --max-batch 1).
#   bench/request_latency.sh [IMAGES=2000] [ROUNDS=3]
# WORK (default /tmp/coe-request-latency) holds `coe demo`'s recordings, made once,
# with each model's latency at one example a call (latency_ms).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-2000}
ROUNDS=${2:-3}
COE=${COE:-build/coe}
CLIENT=${CLIENT:-build/request_latency}
WORK=${WORK:-/tmp/coe-request-latency}
MODELS=models/zoo/catalogue.toml
if ! grep -q latency_ms "$WORK/calib.models.toml" 2>/dev/null; then
  echo "recording the zoo's calibration split into $WORK (coe demo, once)" >&2
  "$COE" demo --work "$WORK" --json > /dev/null
fi
"$COE" plan --calib "$WORK/calib.csv" --models "$WORK/calib.models.toml" --allow-duplicate-ids \
  --objective latency --out "$WORK/latency.toml" --json > "$WORK/plan.json" || [ $? -eq 3 ]
read -r BEST PLANNED PLANNED_BEST CHOSEN < <(/usr/bin/python3 - "$WORK/plan.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
best = j["best_single"]
b = next(r for r in j["baselines"] if r["name"] == best)
tiers = " -> ".join("{" + ",".join(t["members"]) + "}" for t in j["chosen"]["tiers"])
print(best, j["chosen"]["calib"]["cost"], b["calib"]["cost"], tiers.replace(" ", ""))
PY
)
printf '[[tiers]]\nmembers = ["%s"]\n' "$BEST" > "$WORK/single.toml"
FLOOR=${FLOOR:-linear}
printf '[[tiers]]\nmembers = ["%s"]\n' "$FLOOR" > "$WORK/floor.toml"
source bench/serve_lib.sh
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT
measure() {  # cascade file -> one line of JSON
  local port; port=$(free_port)
  "$COE" serve --cascade "$1" --models "$MODELS" --name served --port "$port" --quiet ${SERVE_FLAGS:-} > "$WORK/server.log" 2>&1 &
  local pid=$!
  wait_ready "$port" "$WORK/server.log"
  "$CLIENT" --port "$port" --model served --images "$IMAGES" --json
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
: > "$WORK/rounds"
for r in $(seq "$ROUNDS"); do
  # One assignment a measure, so that a failing server stops the script (set -e).
  for kind in single cascade floor; do
    file=$WORK/$kind.toml
    [ "$kind" = cascade ] && file=$WORK/latency.toml
    line=$(measure "$file")
    echo "$kind $line" >> "$WORK/rounds"
  done
done
/usr/bin/python3 - "$WORK/rounds" "$BEST" "$PLANNED" "$PLANNED_BEST" "$CHOSEN" "$IMAGES" "$ROUNDS" <<'PY'
import json, statistics as st, sys
rounds, best, planned, planned_best, chosen, images, n = sys.argv[1:8]
runs = {"single": [], "cascade": [], "floor": []}
for line in open(rounds):
    k, v = line.split(" ", 1)
    runs[k].append(json.loads(v))
med = {k: {f: st.median(r[f] for r in v) for f in ("mean_ms", "p50_ms", "p99_ms")} for k, v in runs.items()}
print(f"one client, one request at a time, {images} test images, {n} interleaved rounds (medians)")
print(f"cascade planned on latency: {chosen}")
print(f"{'':10} {'planned mean':>13} {'mean':>9} {'p50':>9} {'p99':>9}   (ms; planned: the models' own time at one example a call)")
for k, planned_ms, name in (("single", float(planned_best), best), ("cascade", float(planned), "cascade")):
    m = med[k]
    print(f"{name:10} {planned_ms:13.3f} {m['mean_ms']:9.3f} {m['p50_ms']:9.3f} {m['p99_ms']:9.3f}")
s, c = med["single"], med["cascade"]
print(f"the cascade answers a lone request {s['mean_ms'] / c['mean_ms']:.2f}x sooner on average "
      f"(planned {float(planned_best) / float(planned):.2f}x); p50 {s['p50_ms'] / c['p50_ms']:.2f}x, "
      f"p99 {s['p99_ms'] / c['p99_ms']:.2f}x")
f = med["floor"]
print(f"a served request's own cost (the cheapest model served the same way): mean {f['mean_ms']:.3f} ms, "
      f"p50 {f['p50_ms']:.3f} ms; with it added, planned {float(planned_best) + f['mean_ms']:.3f} against "
      f"{float(planned) + f['mean_ms']:.3f} ms ({(float(planned_best) + f['mean_ms']) / (float(planned) + f['mean_ms']):.2f}x)")
PY
