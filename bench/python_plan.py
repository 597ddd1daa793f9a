"""The Python package's overhead: coe.plan() against the search itself and against a
whole `coe plan` process, on the same recordings, medians of interleaved runs.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_plan.py --calib calib.csv --models calib.models.toml [--runs 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import coe

ap = argparse.ArgumentParser()
ap.add_argument("--calib", required=True)
ap.add_argument("--models", required=True)
ap.add_argument("--coe", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "coe"))
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--allow-duplicate-ids", action="store_true")
a = ap.parse_args()

py, search, cli, cli_search, load = [], [], [], [], []
for _ in range(a.runs):
    t = time.perf_counter()
    rec = coe.Recordings.from_csv(a.calib, a.allow_duplicate_ids)
    t1 = time.perf_counter()
    p = coe.plan(rec, a.models)
    t2 = time.perf_counter()
    load.append(t1 - t)
    py.append(t2 - t1)
    search.append(p.report["seconds"])
    args = [a.coe, "plan", "--calib", a.calib, "--models", a.models, "--json"]
    if a.allow_duplicate_ids:
        args.append("--allow-duplicate-ids")
    t = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    cli.append(time.perf_counter() - t)
    cli_search.append(json.loads(r.stdout)["seconds"])
m = statistics.median
print(f"python_plan: {a.calib}, medians of {a.runs} interleaved runs")
print(f"  coe.plan() call          {m(py) * 1e3:9.1f} ms   (its search {m(search) * 1e3:.1f} ms; "
      f"the rest: report, baselines, families, JSON)")
print(f"  Recordings.from_csv      {m(load) * 1e3:9.1f} ms")
print(f"  coe plan process         {m(cli) * 1e3:9.1f} ms   (its search {m(cli_search) * 1e3:.1f} ms)")
print(f"  Python call / CLI process: {m(py) / m(cli):.2f}; (from_csv + call) / process: {(m(py) + m(load)) / m(cli):.2f}")
