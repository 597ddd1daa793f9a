# Sourced by the serving benches (bash): a free loopback port, and waiting for a
# `coe serve` to be ready.
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_ready PORT LOG: returns once the server on PORT answers /v2/health/ready (10 s at
# most); else prints LOG (the server's output) and exits 1.
wait_ready() {
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/v2/health/ready" > /dev/null && return 0; sleep 0.05; done
  echo "server did not start: $(cat "$2")" >&2
  exit 1
}
