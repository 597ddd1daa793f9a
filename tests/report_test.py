#!/usr/bin/python3
"""coe report as a person sees it: rendered by headless Chromium.

For three plans (the zoo, recorded here on 2,000 + 2,000 Fashion-MNIST images, with a
live run beside it; RouterBench ARC from ../shared/data; a degenerate 1-model plan)
it writes the report, has Chromium render it (a PNG screenshot kept as a test artefact)
and dump the DOM after rendering, and checks the DOM: one mark per frontier point (both
splits), baseline and baseline-family point, the chosen point present, no script, and
no console message from the page.

Usage: report_test.py --coe BUILD/coe --out DIR [--shared ../shared/data]
"""
import argparse
import html.parser
import json
import os
import shutil
import subprocess
import sys

F = "/usr/share/datasets/fashion-mnist/"


class Marks(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.classes = []
        self.scripts = 0
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if "id" in a:
            self.ids.add(a["id"])
        if "class" in a:
            self.classes.append(tuple(a["class"].split()))

    def count(self, *want):
        return sum(1 for c in self.classes if all(w in c for w in want))


def run(cmd):
    """Runs a coe command; exit 0, or 3 (a plan's goal not met), is success."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode not in (0, 3):
        sys.exit(f"FAILED: {' '.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def usable(split):
    return isinstance(split, dict) and split.get("cost") is not None and split["cost"] > 0


def check(name, plan_path, html_path, out, chromium, runs=0):
    plan = json.load(open(plan_path))
    png = os.path.join(out, name + ".png")
    if os.path.exists(png):
        os.remove(png)
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", "--window-size=1200,1700"]
    shot = subprocess.run(base + ["--screenshot=" + png, "file://" + os.path.abspath(html_path)],
                          capture_output=True, text=True, timeout=120)
    dom = subprocess.run(base + ["--dump-dom", "file://" + os.path.abspath(html_path)],
                         capture_output=True, text=True, timeout=120)
    errors = []
    if not os.path.exists(png) or os.path.getsize(png) < 20000:
        errors.append(f"no screenshot (or a blank one) at {png}: {shot.stderr[-2000:]}")
    for log in (shot.stderr, dom.stderr):
        for line in log.splitlines():
            if "CONSOLE" in line:
                errors.append("console: " + line)
    m = Marks()
    m.feed(dom.stdout)
    want_calib = sum(usable(r["calib"]) for r in plan["frontier"])
    want_test = sum(usable(r.get("test")) for r in plan["frontier"])
    want_base = sum(usable(b["calib"]) for b in plan["baselines"])
    want_fam = sum(usable(r["calib"]) for f in plan.get("families", []) for r in f["frontier"])
    got = {
        "frontier calibration": (m.count("pt", "frontier", "calib"), want_calib),
        "frontier test": (m.count("pt", "frontier", "test"), want_test),
        "baselines": (m.count("pt", "baseline"), want_base),
        "family points": (m.count("pt", "family"), want_fam),
        "chosen": (m.count("pt", "chosen"), 1 + usable(plan["chosen"].get("test"))),
    }
    for what, (have, want) in got.items():
        if have != want:
            errors.append(f"{what}: {have} marks in the DOM, {want} in the plan")
    if m.scripts:
        errors.append(f"{m.scripts} <script> elements (the report has none)")
    if "pareto" not in m.ids or "chosen-tiers" not in m.ids:
        errors.append("no plot or no tier diagram")
    if runs and f"run {runs}" not in dom.stdout:
        errors.append("the live run is not shown")
    size = os.path.getsize(html_path)
    print(f"{name}: {html_path} {size} bytes, screenshot {png}; marks " +
          ", ".join(f"{k} {v[0]}" for k, v in got.items()))
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coe", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    a = ap.parse_args()
    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("FAILED: no chromium (scripts/install-deps.sh installs Debian's)")
    os.makedirs(a.out, exist_ok=True)
    zoo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "zoo", "catalogue.toml")
    o = lambda n: os.path.join(a.out, n)
    errors = []
    # The zoo: recordings of every model on 2,000 + 2,000 images, a plan, a live run.
    run([a.coe, "record", "--models", zoo, "--data", F + "train-images-idx3-ubyte.gz", "--labels",
         F + "train-labels-idx1-ubyte.gz", "--range", "0:2000", "--out", o("zoo-calib.csv")])
    run([a.coe, "record", "--models", zoo, "--data", F + "t10k-images-idx3-ubyte.gz", "--labels",
         F + "t10k-labels-idx1-ubyte.gz", "--range", "0:2000", "--out", o("zoo-test.csv")])
    plan = run([a.coe, "plan", "--calib", o("zoo-calib.csv"), "--test", o("zoo-test.csv"), "--models",
                o("zoo-calib.models.toml"), "--out", o("zoo-cascade.toml"), "--json"])
    open(o("zoo-plan.json"), "w").write(plan.stdout)
    live = run([a.coe, "run", "--cascade", o("zoo-cascade.toml"), "--models", zoo, "--data",
                F + "t10k-images-idx3-ubyte.gz", "--labels", F + "t10k-labels-idx1-ubyte.gz", "--range", "0:2000",
                "--json"])
    open(o("zoo-run.json"), "w").write(live.stdout)
    run([a.coe, "report", "--plan", o("zoo-plan.json"), "--run", o("zoo-run.json"), "--out", o("zoo.html")])
    if not json.load(open(o("zoo-plan.json"))).get("families"):
        errors.append("zoo: no baseline families in coe plan --json")
    errors += ["zoo: " + e for e in check("zoo", o("zoo-plan.json"), o("zoo.html"), a.out, chromium, runs=1)]
    # RouterBench ARC (dollars).
    rb = os.path.join(a.shared, "routerbench")
    if not os.path.exists(os.path.join(rb, "arc_challenge_train.csv")):
        sys.exit(f"FAILED: no RouterBench data in {rb} (pass --shared)")
    plan = run([a.coe, "plan", "--calib", os.path.join(rb, "arc_challenge_train.csv"), "--test",
                os.path.join(rb, "arc_challenge_test.csv"), "--models", os.path.join(rb, "arc_challenge_train.models.toml"),
                "--allow-duplicate-ids", "--report", o("arc.html"), "--json"])
    open(o("arc-plan.json"), "w").write(plan.stdout)
    errors += ["arc: " + e for e in check("arc", o("arc-plan.json"), o("arc.html"), a.out, chromium)]
    # One model: the degenerate plan.
    plan = run([a.coe, "plan", "--calib", o("zoo-calib.csv"), "--models", o("zoo-calib.models.toml"), "--only",
                "mlp32", "--json"])
    open(o("one-plan.json"), "w").write(plan.stdout)
    run([a.coe, "report", "--plan", o("one-plan.json"), "--out", o("one.html")])
    errors += ["one model: " + e for e in check("one", o("one-plan.json"), o("one.html"), a.out, chromium)]
    # A wrong input is an error naming the file, not a report.
    bad = subprocess.run([a.coe, "report", "--plan", o("zoo-calib.csv"), "--out", o("bad.html")],
                         capture_output=True, text=True)
    if bad.returncode == 0 or "zoo-calib.csv" not in bad.stderr or os.path.exists(o("bad.html")):
        errors.append(f"a CSV given as the plan: exit {bad.returncode}, {bad.stderr!r}")
    if errors:
        print("FAILED:\n  " + "\n  ".join(errors))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
