#!/usr/bin/env bash
# Issue 27's end-to-end demo: a three-tier cascade of real torchvision families
# (MobileNetV3-small and EfficientNet-B0 voting, then ResNet-50, then ViT-B/16; full
# size, 224x224, seeded random weights, 10 classes), exported to ONNX by
# tests/zoo/make_corpus.py --full, on the onednn backend:
#   recorded (coe record) from JPEGs of assorted sizes (resized and centre-cropped by the
#   catalogue's `resize`), planned (coe plan, labels from ViT-B/16's answers: random
#   weights have no true labels), run live (coe run) and served over REST with binary
#   tensors (coe serve + client.py, which makes them with torchvision's transforms), and
#   the served answers checked equal to the run's.
#
#   examples/zoo_families/run.sh [IMAGES]     (default 48 images; needs build/coe)
# Everything it makes goes to a temporary folder (printed), the models to the cache
# ($XDG_CACHE_HOME/coe or ~/.cache/coe), as the tests' corpus.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
images="${1:-48}"
coe="$root/build/coe"
work="${WORK:-$(mktemp -d /tmp/coe-families.XXXXXX)}"  # WORK=DIR: that folder (its recordings kept)
echo "working in $work"
hash=$(sha256sum tests/zoo/make_corpus.py | cut -c1-16)
models="${COE_ZOO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coe}/zoo-families-$hash"
if [ ! -f "$models/manifest.tsv" ]; then
  echo "exporting the four models (once) into $models ..."
  rm -rf "$models.tmp"
  /usr/bin/python3 tests/zoo/make_corpus.py "$models.tmp" --full --classes 10 --opsets 13 --batches dynamic \
    --families mobilenet_v3_small,efficientnet_b0,resnet50,vit_b_16 2> >(grep -v -i warn >&2)
  mv "$models.tmp" "$models"
fi
if [ ! -d "$work/images" ]; then
# Images as users have them: JPEGs of assorted sizes (smooth random colour fields), which
# coe resizes and centre-crops as the catalogue says (resize = 256, then 224x224).
/usr/bin/python3 - "$work/images" "$images" <<'PY'
import os, sys
import numpy as np
from PIL import Image
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
rng = np.random.default_rng(27)
for i in range(n):
    w, h = (int(v) for v in rng.integers(240, 480, 2))
    small = Image.fromarray((rng.random((7, 7, 3)) * 255).astype("uint8"))
    small.resize((w, h), Image.BICUBIC).save(os.path.join(out, f"img{i:04d}.jpg"), quality=90)
PY
fi
cat > "$work/catalogue.toml" <<TOML
[defaults]
backend = "onednn"
input_shape = [3, 224, 224]
labels = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]
resize = 256                     # the shorter side to 256, then the centre 224x224
scale = 0.00392156862745098      # pixels / 255, then ImageNet's mean and std per channel
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[models.mobilenet_v3_small]
path = "$models/mobilenet_v3_small.op13.dyn.onnx"
macs = 56000000
[models.efficientnet_b0]
path = "$models/efficientnet_b0.op13.dyn.onnx"
macs = 386000000
[models.resnet50]
path = "$models/resnet50.op13.dyn.onnx"
macs = 4090000000
[models.vit_b_16]
path = "$models/vit_b_16.op13.dyn.onnx"
macs = 17560000000
TOML
cd "$work"
echo "== coe record"
"$coe" record --models catalogue.toml --data images --out rec.csv  # (resumed: only what rec.csv lacks)
echo "== coe plan (labels: ViT-B/16's answers)"
"$coe" plan --calib rec.csv --models rec.models.toml --reference vit_b_16 --cost macs --out plan.toml
echo "== coe eval and coe run of the three-tier cascade ($root/examples/zoo_families/cascade.toml)"
cp "$root/examples/zoo_families/cascade.toml" cascade.toml
"$coe" run --cascade cascade.toml --models catalogue.toml --data images --out run.csv
echo "== coe serve, and every image sent as a binary FP32 tensor over REST"
"$coe" serve --cascade cascade.toml --models catalogue.toml --port 0 > serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
port=""
for _ in $(seq 600); do
  port=$(grep -o 'http://127.0.0.1:[0-9]*' serve.log | head -1 | cut -d: -f3 || true)
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break
  kill -0 $server 2>/dev/null || { cat serve.log; exit 1; }
  sleep 0.2
done
/usr/bin/python3 "$root/examples/zoo_families/client.py" "$port" families images > served.csv
/usr/bin/python3 - <<'PY'
import csv
run = {r["id"]: r for r in csv.DictReader(open("run.csv"))}
served = {r["id"]: r for r in csv.DictReader(open("served.csv"))}
same = sum(i in run and run[i]["answer"] == s["answer"] for i, s in served.items())
same_tier = sum(i in run and run[i]["exit_tier"] == s["exit_tier"] for i, s in served.items())
tiers = {}
for r in run.values():
    tiers[r["exit_tier"]] = tiers.get(r["exit_tier"], 0) + 1
print(f"served answers equal to coe run's: {same}/{len(run)}, exit tiers equal: {same_tier}/{len(run)}; "
      f"exits by tier (coe run): {dict(sorted(tiers.items()))}")
raise SystemExit(0 if same == same_tier == len(run) == len(served) else 1)
PY
