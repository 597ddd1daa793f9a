#!/usr/bin/env bash
# Replacement without downtime under load (issue 25): a `coe serve` of the zoo cascade
# (A: deploy/kserve/zoo/cascade.toml, three tiers) while build/reload_load posts
# continuously from CLIENTS connections and swaps the served cascade file between A and
# B (one tier: linear) every EVERY_MS, reloading by POST /coe/reload and then by SIGHUP.
# Every reply must be A's answer or B's, exactly (16 images: labels and exit tiers);
# the line printed counts each, the mixed ones (none expected) and the failed requests
# (none expected); the server's /metrics must count every reload ok.
#   bench/reload_load.sh [DURATION=10] [EVERY_MS=150] [CLIENTS=8]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
EVERY_MS=${2:-150}
CLIENTS=${3:-8}
COE=${COE:-build/coe}
CLIENT=${CLIENT:-build/reload_load}
WORK=$(mktemp -d /tmp/coe-reload-load.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
source bench/serve_lib.sh
cp deploy/kserve/zoo/cascade.toml "$WORK/a.toml"
printf '[[tiers]]\nmembers = ["linear"]\n' > "$WORK/b.toml"
cp "$WORK/a.toml" "$WORK/cascade.toml"
status=0
for via in post sighup; do
  PORT=$(free_port)
  "$COE" serve --cascade "$WORK/cascade.toml" --models models/zoo/catalogue.toml --name served --port "$PORT" \
    --quiet --max-inflight 256 > "$WORK/server.log" 2>&1 &
  PID=$!
  wait_ready "$PORT" "$WORK/server.log"
  extra=()
  [ "$via" = sighup ] && extra=(--sighup "$PID")
  "$CLIENT" --port "$PORT" --model served --cascade "$WORK/cascade.toml" --a "$WORK/a.toml" --b "$WORK/b.toml" \
    --seconds "$DURATION" --clients "$CLIENTS" --every-ms "$EVERY_MS" "${extra[@]}" || status=1
  curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^coe_(reloads_total|cascade_generation)' | tr '\n' ' '
  echo
  kill -TERM "$PID"
  wait "$PID" 2>/dev/null || true
  if grep -q "reload failed" "$WORK/server.log"; then grep "reload failed" "$WORK/server.log" | head -3; status=1; fi
done
exit $status
