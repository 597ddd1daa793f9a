#!/usr/bin/env bash
# Issue 27's speed table: full-size torchvision classifiers (224x224, seeded random
# weights) exported to ONNX by tests/zoo/make_corpus.py --full (generated here and cached
# by the script's hash, never committed), run on coe's onednn and onnx (OpenCV DNN)
# backends (build/model_zoo_speed) and on PyTorch (bench/torch_speed.py), side by side:
# images/s at batch 1 and 16, on one thread and on the machine's cores; medians of
# --runs rounds of --seconds each.
#
#   bench/model_zoo_speed.sh [--families a,b] [--seconds S] [--runs R] [--json]
# Needs a Release build in build/ (scripts/build.sh) and python3-torch(vision).
set -euo pipefail
cd "$(dirname "$0")/.."
families="" seconds=1 runs=3 json=0
while [ $# -gt 0 ]; do
  case "$1" in
    --families) families="$2"; shift ;;
    --seconds) seconds="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --json) json=1 ;;
    *) echo "usage: bench/model_zoo_speed.sh [--families a,b] [--seconds S] [--runs R] [--json]" >&2; exit 2 ;;
  esac
  shift
done
cores=$(nproc)
hash=$(sha256sum tests/zoo/make_corpus.py | cut -c1-16)
dir="${COE_ZOO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coe}/zoo-full-$hash"
if [ ! -f "$dir/manifest.tsv" ]; then
  echo "exporting the full-size models into $dir (once) ..." >&2
  rm -rf "$dir.tmp"
  /usr/bin/python3 tests/zoo/make_corpus.py "$dir.tmp" --full --opsets 13 --batches dynamic --images 16 \
    ${families:+--families "$families"} 2> >(grep -v -i warn >&2)
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fam=()
[ -n "$families" ] && fam=(--families "$families")
build/model_zoo_speed --dir "$dir" "${fam[@]}" --threads "1,$cores" --batches 1,16 --seconds "$seconds" --runs "$runs" | tee -a "$out" >&2
/usr/bin/python3 bench/torch_speed.py "$dir" "${fam[@]}" --threads "1,$cores" --batches 1,16 --seconds "$seconds" --runs "$runs" | tee -a "$out" >&2
/usr/bin/python3 - "$out" "$json" "$cores" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if sys.argv[2] == "1":
    print(json.dumps(rows, indent=1)); sys.exit()
cores = int(sys.argv[3])
fig = {(r["family"], r["backend"], r["threads"], r.get("batch")): r for r in rows}
families = list(dict.fromkeys(r["family"] for r in rows))
cols = [(1, 1), (1, 16), (cores, 1), (cores, 16)]
print("images/s (median); onednn/pytorch in brackets; threads x batch")
print(f"{'family':<20}" + "".join(f"{f'{t}x{b} onednn':>22}{'onnx':>9}{'pytorch':>9}" for t, b in cols))
for f in families:
    line = f"{f:<20}"
    for t, b in cols:
        get = lambda be: fig.get((f, be, t, b)) or fig.get((f, be, t, None)) or {}
        d, o, p = get("onednn"), get("onnx"), get("pytorch")
        dv, ov, pv = d.get("images_per_s"), o.get("images_per_s"), p.get("images_per_s")
        ratio = f"({dv / pv:.2f})" if dv and pv else ""
        line += f"{(f'{dv:.1f}' if dv else 'refused') + ratio:>22}{(f'{ov:.1f}' if ov else '-'):>9}{(f'{pv:.1f}' if pv else '-'):>9}"
    print(line)
PY
