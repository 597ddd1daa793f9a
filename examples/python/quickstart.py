"""coe from Python, notebook style: plan on the zoo's recordings, plot the frontier, run
the chosen cascade live.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/quickstart.py \
        --calib calib.csv --test test.csv --models calib.models.toml

(calib.csv and test.csv as the README's quick start records them; or after
`pip install --no-build-isolation .` in a venv, without PYTHONPATH.)
"""
import argparse
import gzip
import os

import matplotlib

matplotlib.use("Agg")  # files, no display needed
import matplotlib.pyplot as plt
import numpy as np

import coe

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
F = "/usr/share/datasets/fashion-mnist/"

ap = argparse.ArgumentParser()
ap.add_argument("--calib", default="calib.csv")
ap.add_argument("--test", default="test.csv")
ap.add_argument("--models", default="calib.models.toml")
ap.add_argument("--catalogue", default=os.path.join(ROOT, "models", "zoo", "catalogue.toml"))
ap.add_argument("--plot", default="frontier.png")
a = ap.parse_args()

# 1. Recordings: every model's answers on the calibration and test images.
calib = coe.Recordings.from_csv(a.calib)
test = coe.Recordings.from_csv(a.test)
print(calib)

# 2. Plan: the cheapest cascade that holds the best model's accuracy.
plan = coe.plan(calib, a.models, test=test)
print(plan)
print(plan.chosen.to_toml())
frontier = plan.to_pandas()
print(frontier.head(10).to_string())

# 3. The frontier, with every single model, on a log cost axis.
fig, ax = plt.subplots(figsize=(8, 5))
ax.step(frontier.calib_cost, frontier.calib_accuracy, where="post", label="coe frontier (calibration)")
if "test_cost" in frontier:
    ax.plot(frontier.test_cost, frontier.test_accuracy, "o", mfc="none", label="the same, test")
for b in plan.baselines:
    ax.plot(b["calib"]["cost"], b["calib"]["accuracy"], "s", color="gray")
    ax.annotate(b["name"], (b["calib"]["cost"], b["calib"]["accuracy"]), fontsize=7)
c = plan.report["chosen"]["calib"]
ax.plot(c["cost"], c["accuracy"], "o", ms=12, mfc="none", mew=2, color="tab:orange", label="chosen")
ax.set_xscale("log")
ax.set_xlabel(f"mean cost per example ({plan.report['cost']})")
ax.set_ylabel("accuracy")
ax.legend()
fig.tight_layout()
fig.savefig(a.plot, dpi=120)
print("wrote", a.plot)

# 4. Run the chosen cascade live on the first 1,000 test images.
raw = gzip.open(F + "t10k-images-idx3-ubyte.gz").read()
images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 1, 28, 28)[:1000].astype(np.float32)
raw = gzip.open(F + "t10k-labels-idx1-ubyte.gz").read()
names = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
truth = [names[v] for v in np.frombuffer(raw, np.uint8, offset=8)[:1000]]
out = coe.run(plan.chosen, a.catalogue, images)
accuracy = np.mean([x == t for x, t in zip(out["answer"], truth)])
print(f"live: accuracy {accuracy:.4f}, mean {out['cost_unit']} {out['cost'].mean():.4g}, "
      f"exits per tier {np.bincount(out['exit_tier'])[1:].tolist()}, {len(images) / out['seconds']:.0f} images/s")
