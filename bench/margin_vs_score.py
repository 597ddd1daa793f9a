#!/usr/bin/python3
"""Does a margin rule pay? Exit quality of two confidence measures on recordings.

For each tier (a set of members), on recordings with per-label probabilities
(`<model>|p:<label>` columns), compares at equal exit rates the error among the
examples a tier would let exit under
  score   the members' mean probability for the plurality label (coe's score rule)
  margin  that minus the highest mean probability of another label (top-1 - top-2)
A rule that exits the same share of examples with fewer errors among them gives a
better cascade; equal errors mean the richer rule cannot pay on these recordings.

  margin_vs_score.py CALIB.csv [--tiers "cnn_tiny;cnn8_16,cnn_small"] [--json]
"""
import argparse
import csv
import json
import sys

import numpy as np


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    probs = {}
    for k, col in enumerate(head):
        if "|p:" in col:
            model, label = col.split("|p:")
            probs.setdefault(model, {})[label] = k
    if not probs:
        sys.exit(f"{path}: no '<model>|p:<label>' columns")
    labels = sorted(next(iter(probs.values())))
    truth_col = head.index("label")
    keep = [r for r in body if r[truth_col] in labels]
    truth = np.array([labels.index(r[truth_col]) for r in keep])
    p = {m: np.array([[float(r[cols[l]]) for l in labels] for r in keep]) for m, cols in probs.items()}
    return truth, p


def tier(members, p):
    mean = np.mean([p[m] for m in members], axis=0)
    votes = np.array([p[m].argmax(1) for m in members])
    n = votes.shape[1]
    plurality = np.empty(n, int)
    for i in range(n):  # most votes; a tie goes to the last-listed tied voter (coe/rules.h)
        best, count = -1, 0
        for j in range(len(members) - 1, -1, -1):
            c = int((votes[:, i] == votes[j, i]).sum())
            if c > count:
                best, count = votes[j, i], c
        plurality[i] = best
    score = mean[np.arange(n), plurality]
    other = mean.copy()
    other[np.arange(n), plurality] = -np.inf
    return plurality, score, score - other.max(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("calib")
    ap.add_argument("--tiers", default="cnn_tiny;cnn8_16,cnn_small;cnn8_16;cnn_small")
    ap.add_argument("--rates", default="0.5,0.66,0.8,0.9")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    truth, p = read(a.calib)
    out = []
    for t in a.tiers.split(";"):
        members = t.split(",")
        plurality, score, margin = tier(members, p)
        right = plurality == truth
        row = {"tier": members, "accuracy": float(right.mean()), "rates": []}
        for rate in map(float, a.rates.split(",")):
            e = {"exit_rate": rate}
            for name, s in (("score", score), ("margin", margin)):
                exits = s >= np.quantile(s, 1 - rate)
                e[name + "_error"] = float(1 - right[exits].mean())
            row["rates"].append(e)
        out.append(row)
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{len(truth)} labeled examples of {a.calib}: error among the examples that exit")
    for row in out:
        print(f"{{{', '.join(row['tier'])}}}  (accuracy {100 * row['accuracy']:.2f}%)")
        for e in row["rates"]:
            print(f"  exit {100 * e['exit_rate']:3.0f}%:  score {100 * e['score_error']:.2f}%"
                  f"  margin {100 * e['margin_error']:.2f}%")


if __name__ == "__main__":
    main()
