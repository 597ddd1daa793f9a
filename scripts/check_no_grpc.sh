#!/usr/bin/env bash
# Checks a `coe` built with -DCOE_WITH_GRPC=OFF (scripts/test.sh --no-grpc): it runs,
# records, evaluates and serves over REST, and `coe serve --grpc-port` says that this
# build has no gRPC (exit 2) instead of serving without it.
#   scripts/check_no_grpc.sh BUILD/coe
set -euo pipefail
coe="$1"
cd "$(dirname "$0")/.."
zoo=models/zoo
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$coe" --help >/dev/null
# Record two zoo models on 200 test images (the onednn module), then replay a cascade.
F=/usr/share/datasets/fashion-mnist
"$coe" record --models "$zoo/catalogue.toml" --only linear,mlp32 --data $F/t10k-images-idx3-ubyte.gz \
  --labels $F/t10k-labels-idx1-ubyte.gz --range 0:200 --out "$work/rec.csv" >/dev/null
printf '[[tiers]]\nmembers = ["linear"]\nmin_score = 0.9\n[[tiers]]\nmembers = ["mlp32"]\n' >"$work/cascade.toml"
"$coe" eval --cascade "$work/cascade.toml" --data "$work/rec.csv" --models "$work/rec.models.toml" >/dev/null
set +e
out="$("$coe" serve --cascade "$work/cascade.toml" --models "$zoo/catalogue.toml" --port 0 --grpc-port 0 2>&1)"
rc=$?
set -e
if [ "$rc" -ne 2 ] || ! grep -q "built without the gRPC front end (COE_WITH_GRPC=OFF)" <<<"$out"; then
  echo "check_no_grpc: coe serve --grpc-port should fail naming COE_WITH_GRPC=OFF (exit 2: a precondition); got exit $rc:" >&2
  echo "$out" >&2
  exit 1
fi
echo "check_no_grpc: coe without gRPC: help, record, eval and serve's refusal of --grpc-port as expected"
