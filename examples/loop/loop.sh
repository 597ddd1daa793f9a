#!/bin/bash
# The loop of issue 25, end to end on loopback: serve the best model through coe with a
# request log, record the cheaper models on the logged inputs, plan with --reference (no
# labels), reload the plan into the running server, and watch its shadow verification,
# first on the same kind of traffic, then on traffic that drifted. (bench/shadow_drift
# measures how soon the shadow alarm rises under drift, on longer traffic.)
#
# "Your LLM endpoint" is replay_upstream (bench/replay_upstream.cc): the eleven
# RouterBench models answering as the shared recordings say, billing the recorded
# dollars. Traffic is examples/loop/traffic.py. From the repository root, after
# scripts/build.sh:
#
#   examples/loop/loop.sh [WORKDIR]
#
# WORKDIR (new or empty; default: a new temporary folder) keeps every file the loop
# makes. Exit 0 when every step worked (a failed request or command stops it); the
# figures are printed as it goes.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${COE_BUILD:-$root/build}"
data="${COE_SHARED_DATA:-$root/../shared/data}/routerbench"
work="${1:-$(mktemp -d -t coe-loop.XXXXXX)}"
mkdir -p "$work"
[ -z "$(ls -A "$work")" ] || { echo "loop.sh: $work is not empty: give a new or empty folder" >&2; exit 2; }
coe="$build/coe"
for f in "$coe" "$build/replay_upstream"; do
  [ -x "$f" ] || { echo "loop.sh: $f is missing: run scripts/build.sh first" >&2; exit 2; }
done
[ -f "$data/arc_challenge_train.csv" ] || { echo "loop.sh: no RouterBench recordings in $data (set COE_SHARED_DATA)" >&2; exit 2; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_for_file() { for _ in $(seq 1 300); do [ -s "$1" ] && return 0; sleep 0.1; done; echo "loop.sh: $2 did not start" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

step "0. your endpoint: the RouterBench models on loopback"
"$build/replay_upstream" --data "$data/arc_challenge_train.csv" --data "$data/arc_challenge_test.csv" \
  --data "$data/winogrande_test.csv" --port-file "$work/upstream.port" >"$work/upstream.out" 2>&1 &
pids+=($!)
wait_for_file "$work/upstream.port" replay_upstream
sed "s/PORT/$(cat "$work/upstream.port")/" "$root/examples/loop/catalogue.toml" >"$work/catalogue.toml"
cp "$root/examples/loop/best.toml" "$work/served.toml"

step "1. serve the best model (gpt4) through coe, logging every request, shadowing 5% of early exits"
"$coe" serve --cascade "$work/served.toml" --models "$work/catalogue.toml" --name served --port 0 \
  --log "$work/requests.log" --shadow 0.05 >"$work/serve.out" 2>&1 &
pids+=($!)
serve_pid=$!
for _ in $(seq 1 300); do grep -q "on http://" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://127.0.0.1:[0-9]*' "$work/serve.out" | head -1)"
[ -n "$url" ] || { cat "$work/serve.out" >&2; exit 1; }
echo "coe serve at $url"
/usr/bin/python3 "$root/examples/loop/traffic.py" --url "$url" --model served --data "$data/arc_challenge_train.csv"

step "2. record the other models on exactly the logged inputs (no labels anywhere)"
"$coe" record --models "$work/catalogue.toml" --data "$work/requests.log" --out "$work/rec.csv" | grep -E "^recorded|failed"

step "3. plan without labels: gpt4's answers stand in for the truth"
"$coe" plan --calib "$work/rec.csv" --models "$work/rec.models.toml" --reference gpt4 --epsilon 0.03 \
  --out "$work/planned.toml" | sed -n '1,12p'

step "4. reload the plan into the running server (no restart, no failed request)"
cp "$work/planned.toml" "$work/served.toml"
curl -sf -X POST "$url/coe/reload"
echo

step "5. new traffic of the same kind (ARC test questions): cost, and accuracy against the true labels"
/usr/bin/python3 "$root/examples/loop/traffic.py" --url "$url" --model served --data "$data/arc_challenge_test.csv"
curl -sf "$url/coe/plan-health" >"$work/health-arc.json"
health() { /usr/bin/python3 "$root/examples/loop/health.py" "$1"; }
health "$work/health-arc.json"

step "6. the traffic drifts (Winogrande questions): tier 1 agrees less, so it exits less"
/usr/bin/python3 "$root/examples/loop/traffic.py" --url "$url" --model served --data "$data/winogrande_test.csv"
curl -sf "$url/coe/plan-health" >"$work/health-drift.json"
health "$work/health-drift.json"
grep -h "shadow" "$work/serve.out" | tail -3 || true
curl -sf "$url/metrics" | grep -E "^coe_shadow_" | head -20 || true

step "7. round two: record what is new in the log (resumed), plan again on all the traffic, reload"
"$coe" record --models "$work/catalogue.toml" --data "$work/requests.log" --out "$work/rec.csv" | grep -E "^recorded|failed"
"$coe" plan --calib "$work/rec.csv" --models "$work/rec.models.toml" --reference gpt4 --epsilon 0.03 \
  --out "$work/planned2.toml" | grep -E "^(CHOSEN|  chosen cascade|  with 95%)"
cp "$work/planned2.toml" "$work/served.toml"
curl -sf -X POST "$url/coe/reload"
echo

kill -TERM "$serve_pid"
echo
echo "every file of the loop is in $work"
