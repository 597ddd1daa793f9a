#!/usr/bin/env bash
# Scale-out on loopback: three `coe serve` replicas of the zoo cascade behind Debian's
# HAProxy (health checks on /v2/health/ready, L7 retries with redispatch), wrk posting
# one Fashion-MNIST test image per request; one replica is killed (SIGKILL) during the
# run and restarted later. Prints requests, throughput, p50/p99 and the failed requests
# (non-2xx answers plus socket errors; the target is 0), and HAProxy's retries and
# redispatches. Builds nothing; needs haproxy, wrk, curl and dataset-fashion-mnist
# (scripts/install-deps.sh).
#
#   bench/replicas.sh [COE_BINARY=build/coe]
#
# Environment: DURATION=60 (s), CONNECTIONS=64, KILL_AT=DURATION/3 and
# RESTART_AT=DURATION/2 (s after wrk starts), KILL_SIGNAL=KILL (TERM: a graceful stop,
# as in a rolling update), THREADS=1 (engine threads per model per replica: the three
# replicas share this machine), CASCADE=deploy/kserve/zoo/cascade.toml,
# MODELS=models/zoo/catalogue.toml, KEEP=1 keeps the work folder (logs, haproxy.cfg,
# HAProxy's log of the requests that went wrong).
#
# What no proxy can hide: a replica killed after it sent a response's status line but
# before its body. HAProxy has already forwarded the 200 and cannot replay the request;
# wrk sees a read error (HAProxy's log: SD-- with a short body). cpp-httplib writes the
# headers and the body with two send() calls, and on a loaded machine a thread can be
# preempted between them, so an occasional failure is expected under SIGKILL.
set -euo pipefail
cd "$(dirname "$0")/.."
COE=$(realpath "${1:-build/coe}")
DURATION=${DURATION:-60}
CONNS=${CONNECTIONS:-64}
KILL_AT=${KILL_AT:-$((DURATION / 3))}
KILL_SIGNAL=${KILL_SIGNAL:-KILL}
RESTART_AT=${RESTART_AT:-$((DURATION / 2))}
THREADS=${THREADS:-1}
CASCADE=${CASCADE:-deploy/kserve/zoo/cascade.toml}
MODELS=${MODELS:-models/zoo/catalogue.toml}
NAME=zoo
for tool in haproxy wrk curl; do
  command -v "$tool" >/dev/null || { echo "replicas.sh: $tool is missing (scripts/install-deps.sh)" >&2; exit 2; }
done
[ -x "$COE" ] || { echo "replicas.sh: no coe binary at $COE (build it first, or pass its path)" >&2; exit 2; }
if [ "$KILL_AT" -ge "$RESTART_AT" ] || [ "$RESTART_AT" -ge "$DURATION" ]; then
  echo "replicas.sh: need KILL_AT < RESTART_AT < DURATION" >&2; exit 2
fi

WORK=$(mktemp -d /tmp/coe-replicas.XXXXXX)
PIDS=()     # replica pids, by index
OTHER=()    # haproxy and wrk
cleanup() {
  for p in "${PIDS[@]}" "${OTHER[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}" "${OTHER[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Four free loopback ports: three replicas and the front end (held together while
# chosen, so they differ).
read -r -a PORTS < <(/usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
FRONT=${PORTS[3]}

start_replica() {  # index
  local i=$1
  "$COE" serve --cascade "$CASCADE" --models "$MODELS" --name "$NAME" --host 127.0.0.1 \
    --port "${PORTS[$i]}" --threads "$THREADS" --quiet >> "$WORK/replica$i.log" 2>&1 &
  PIDS[$i]=$!
}
wait_ready() {  # url
  for _ in $(seq 300); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "replicas.sh: $1 not ready after 30 s" >&2; return 1
}
elapsed() { echo $(( $(date +%s) - T0 )); }
sleep_until() { local d=$(( T0 + $1 - $(date +%s) )); if [ "$d" -gt 0 ]; then sleep "$d"; fi; }

for i in 0 1 2; do start_replica "$i"; done
for i in 0 1 2; do wait_ready "http://127.0.0.1:${PORTS[$i]}/v2/health/ready"; done

cat > "$WORK/haproxy.cfg" <<EOF
global
    maxconn 4096
    stats socket $WORK/haproxy.sock mode 600 level admin
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    option dontlog-normal   # log only the requests that went wrong
    timeout connect 1s
    timeout client 30s
    timeout server 10s
    timeout check 1s
    timeout http-keep-alive 10s

frontend coe
    bind 127.0.0.1:$FRONT
    default_backend replicas

backend replicas
    balance roundrobin
    # A replica is taken out after one failed check (every 200 ms) and back after two.
    option httpchk GET /v2/health/ready
    http-check expect status 200
    default-server check inter 200ms fastinter 200ms downinter 200ms fall 1 rise 2
    # A request whose replica refuses, resets or closes without answering, or answers
    # 5xx, is sent again (up to 3 times), each time to another replica. A POST can be
    # replayed only when HAProxy still holds its body: wait for the whole body first.
    option http-buffer-request
    retries 3
    retry-on all-retryable-errors
    option redispatch 1
    server r0 127.0.0.1:${PORTS[0]}
    server r1 127.0.0.1:${PORTS[1]}
    server r2 127.0.0.1:${PORTS[2]}
EOF
haproxy -c -q -f "$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 &
OTHER+=($!)
wait_ready "http://127.0.0.1:$FRONT/v2/health/ready"

# One request body: the first Fashion-MNIST test image as FP32 [1, 1, 28, 28].
/usr/bin/python3 - > "$WORK/body.json" <<'PY'
import gzip, json
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:16 + 784]
print(json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                              "data": [float(b) for b in raw]}]}))
PY
code=$(curl -s -o "$WORK/first.json" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data-binary "@$WORK/body.json" "http://127.0.0.1:$FRONT/v2/models/$NAME/infer")
[ "$code" = 200 ] || { echo "replicas.sh: first request through HAProxy got $code: $(cat "$WORK/first.json")" >&2; exit 1; }

echo "$(haproxy -v | head -n 1)"
echo "3 replicas of $CASCADE (--threads $THREADS) on ports ${PORTS[*]:0:3}; HAProxy on $FRONT"
echo "wrk: ${DURATION}s, $CONNS connections, 1 image per request; replica r1 sent SIG$KILL_SIGNAL at ${KILL_AT}s, restarted at ${RESTART_AT}s"
T0=$(date +%s)
COE_WRK_BODY="$WORK/body.json" wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency -s bench/wrk/infer.lua \
  "http://127.0.0.1:$FRONT/v2/models/$NAME/infer" > "$WORK/wrk.txt" 2>&1 &
WRK=$!
OTHER+=("$WRK")
sleep_until "$KILL_AT"
kill -"$KILL_SIGNAL" "${PIDS[1]}"
wait "${PIDS[1]}" 2>/dev/null || true
echo "  $(elapsed)s: r1 (pid ${PIDS[1]}) stopped by SIG$KILL_SIGNAL"
sleep_until "$RESTART_AT"
start_replica 1
echo "  $(elapsed)s: r1 restarted (pid ${PIDS[1]})"
wait_ready "http://127.0.0.1:${PORTS[1]}/v2/health/ready"
echo "  $(elapsed)s: r1 ready"
wait "$WRK" || { echo "replicas.sh: wrk failed:" >&2; cat "$WORK/wrk.txt" >&2; exit 1; }

# HAProxy's counters (CSV of `show stat`): per replica and for the backend.
/usr/bin/python3 - "$WORK/haproxy.sock" > "$WORK/stat.csv" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
out = b""
while chunk := s.recv(65536):
    out += chunk
sys.stdout.write(out.decode())
PY
for i in 0 1 2; do curl -s "http://127.0.0.1:${PORTS[$i]}/metrics" > "$WORK/metrics$i.txt" || true; done

/usr/bin/python3 - "$WORK" <<'PY'
import csv, os, re, sys
work = sys.argv[1]
text = open(os.path.join(work, "wrk.txt")).read()
s = dict(kv.split("=") for kv in re.search(r"COE_SUMMARY (.*)", text).group(1).split())
errors = {k[len("errors_"):]: int(v) for k, v in s.items() if k.startswith("errors_")}
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
non2xx = int(non2xx.group(1)) if non2xx else 0
socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
failed = non2xx + socket_errors
print("\nresult")
print(f"  requests       {int(s['requests'])} in {float(s['duration_s']):.1f} s")
print(f"  throughput     {float(s['rps']):.1f} requests/s")
print(f"  latency        p50 {float(s['p50_ms']):.2f} ms, p99 {float(s['p99_ms']):.2f} ms, mean {float(s['mean_ms']):.2f} ms")
print(f"  failed         {failed}  (non-2xx {non2xx}; socket errors: connect {errors['connect']}, read {errors['read']}, "
      f"write {errors['write']}, timeout {errors['timeout']})  target 0")
rows = list(csv.DictReader(l.lstrip("# ") for l in open(os.path.join(work, "stat.csv")) if l.strip()))
print("haproxy (backend replicas)")
print(f"  {'':8}{'status':>8}{'sessions':>10}{'retries':>9}{'redisp':>8}{'conn_err':>10}{'resp_err':>10}{'5xx':>6}{'downs':>7}")
for r in rows:
    if r["pxname"] != "replicas":
        continue
    print(f"  {r['svname']:8}{r['status']:>8}{r['stot']:>10}{r['wretr']:>9}{r['wredis']:>8}{r['econ'] or 0:>10}"
          f"{r['eresp'] or 0:>10}{r['hrsp_5xx'] or 0:>6}{r['chkdown'] or 0:>7}")
print(f"FAILED_REQUESTS={failed}")
PY
sed -n '/Latency Distribution/,/^ *99%/p' "$WORK/wrk.txt"
