#!/usr/bin/python3
"""A plain vectorized-NumPy version of `coe plan --rules vote` (speed baseline, cross-check).

Exhaustive search over vote-only cascades: 1 to 3 tiers, 1 to 3 distinct models per tier,
each model at most once, tiers in strictly ascending order of their most expensive member,
non-final tiers with >= 2 members and a vote threshold k/n (k > n/2). Every cascade is
evaluated exactly on the recordings; the accuracy/cost Pareto frontier and the
"match-best" point (least cost reaching the best single model's accuracy) are reported.

Vectorized over examples, looping over cascades (prefixes are shared by nested loops).
Standalone: numpy + stdlib only.

    /usr/bin/python3 bench/numpy_plan.py RECORDINGS.csv [--json]
"""
import argparse
import csv
import json
import sys
import time

import numpy as np

MAX_TIERS = 3
MAX_MEMBERS = 3
EXPECTED_SPACE_11 = 280060


def read_recordings(path):
    """Returns (model names, labels int [n, m] with -1 = abstain, truth int [n] with -1 =
    unlabeled, costs float [n, m]) with models in column order."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    col = {name: i for i, name in enumerate(header)}
    if "label" not in col:
        sys.exit(f"{path}: no 'label' column")
    models = [h for h in header if h not in ("id", "label") and "|" not in h]
    missing = [m for m in models if m + "|cost" not in col]
    if missing:
        sys.exit(f"{path}: no '<model>|cost' column for {', '.join(missing)}")
    label_ix = {}

    def code(s):
        if s == "":
            return -1
        return label_ix.setdefault(s, len(label_ix))

    n, m = len(rows), len(models)
    truth = np.empty(n, dtype=np.int64)
    labels = np.empty((n, m), dtype=np.int64)
    costs = np.empty((n, m), dtype=np.float64)
    lcol = col["label"]
    pcols = [col[name] for name in models]
    ccols = [col[name + "|cost"] for name in models]
    for i, r in enumerate(rows):
        truth[i] = code(r[lcol])
        labels[i] = [code(r[c]) for c in pcols]
        costs[i] = [float(r[c]) for c in ccols]
    return models, labels, truth, costs


def tally(L):
    """Plurality of each row of L ([n, k] labels, -1 = abstain): returns (plurality, votes).
    A tie goes to the tied voter listed last; plurality is -1 when every member abstains."""
    n, k = L.shape
    voted = L >= 0
    counts = ((L[:, :, None] == L[:, None, :]) & voted[:, None, :]).sum(axis=2)
    counts[~voted] = 0
    j = k - 1 - np.argmax(counts[:, ::-1], axis=1)  # last voter with the top count
    rows = np.arange(n)
    votes = counts[rows, j]
    plurality = np.where(votes > 0, L[rows, j], -1)
    return plurality, votes


def member_sets(m):
    """Every set of 1..MAX_MEMBERS positions (ascending), in a fixed order."""
    out = []

    def gen(start, comb):
        if comb:
            out.append(tuple(comb))
        if len(comb) == MAX_MEMBERS:
            return
        for q in range(start, m):
            gen(q + 1, comb + [q])

    gen(0, [])
    return out


class Tier:
    __slots__ = ("pos", "mask", "top", "correct", "cost", "total_correct", "total_cost",
                 "options")


def plan(models, labels, truth, costs):
    n, m = labels.shape
    labeled = int(np.count_nonzero(truth >= 0))
    # Models in ascending mean cost; ties keep column order (stable sort).
    order = np.argsort(costs.mean(axis=0), kind="stable")
    names = [models[q] for q in order]
    labels = labels[:, order]
    costs = costs[:, order]

    tiers = []
    for pos in member_sets(m):
        t = Tier()
        t.pos = pos
        t.mask = sum(1 << q for q in pos)
        t.top = pos[-1]
        plurality, votes = tally(labels[:, list(pos)])
        t.correct = (plurality == truth) & (truth >= 0)
        t.cost = costs[:, list(pos)].sum(axis=1)
        t.total_correct = int(np.count_nonzero(t.correct))
        t.total_cost = float(t.cost.sum())
        k = len(pos)
        # (threshold k/n, exit mask): agreement >= j/k  <=>  votes >= j (integers).
        t.options = [(j / k, votes >= j) for j in range(k // 2 + 1, k + 1)] if k >= 2 else []
        tiers.append(t)

    # Tiers whose top member comes after position p (index p + 1; p = -1 at the start).
    after = [[(ti, t) for ti, t in enumerate(tiers) if t.top > p] for p in range(-1, m)]

    res_correct, res_cost, res_path = [], [], []
    all_rows = np.ones(n, dtype=bool)

    def search(reach, prefix_correct, prefix_cost, path, used, prev_top, depth):
        reach_f = reach.astype(np.float64)
        for ti, t in after[prev_top + 1]:
            if t.mask & used:
                continue
            tier_cost = float(reach_f @ t.cost)
            # As the final tier.
            res_correct.append(prefix_correct + int(np.count_nonzero(reach & t.correct)))
            res_cost.append(prefix_cost + tier_cost)
            res_path.append(path + ((ti, -1),))
            if depth + 1 >= MAX_TIERS:
                continue
            for oi, (_, exits) in enumerate(t.options):
                out = reach & exits
                search(reach & ~exits,
                       prefix_correct + int(np.count_nonzero(out & t.correct)),
                       prefix_cost + tier_cost,
                       path + ((ti, oi),), used | t.mask, t.top, depth + 1)

    search(all_rows, 0, 0.0, (), 0, -1, 0)

    searched = len(res_path)
    if m == 11:
        assert searched == EXPECTED_SPACE_11, searched
    correct = np.array(res_correct, dtype=np.int64)
    total = np.array(res_cost, dtype=np.float64)

    # Pareto frontier: sort by cost ascending, then correct descending (stable: the
    # earlier-enumerated cascade wins exact ties); keep points beating every one before.
    idx = np.lexsort((-correct, total))
    c_sorted = correct[idx]
    best_before = np.concatenate(([-1], np.maximum.accumulate(c_sorted)[:-1]))
    frontier_ix = idx[c_sorted > best_before]

    def describe(path):
        parts = []
        for ti, oi in path:
            t = tiers[ti]
            s = "{" + ", ".join(names[q] for q in t.pos) + "}"
            if oi >= 0:
                s += " agree>=%.3g" % t.options[oi][0]
            parts.append(s)
        return " -> ".join(parts)

    def point(i):
        return {"accuracy": int(correct[i]) / labeled, "correct": int(correct[i]),
                "cost": float(total[i]) / n, "cascade": describe(res_path[i])}

    frontier = [point(i) for i in frontier_ix]
    singles = [(t.total_correct, names[t.pos[0]]) for t in tiers if len(t.pos) == 1]
    best_correct = max(c for c, _ in singles)
    best_single = next(name for c, name in singles if c == best_correct)  # the cheaper
    chosen = next(p for p in frontier if p["correct"] >= best_correct)
    return {"searched": searched, "examples": n, "labeled": labeled,
            "best_single": best_single, "best_single_correct": best_correct,
            "frontier": frontier, "chosen": chosen}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recordings")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    models, labels, truth, costs = read_recordings(args.recordings)
    t1 = time.perf_counter()
    result = plan(models, labels, truth, costs)
    t2 = time.perf_counter()

    if args.json:
        out = {"searched": result["searched"], "seconds": t2 - t1, "read_seconds": t1 - t0,
               "examples": result["examples"], "labeled": result["labeled"],
               "best_single": result["best_single"],
               "frontier": result["frontier"], "chosen": result["chosen"]}
        json.dump(out, sys.stdout, indent=2)
        print()
        return
    print(f"{args.recordings}: {result['examples']} examples ({result['labeled']} labeled), "
          f"{len(models)} models")
    print(f"searched {result['searched']} cascades in {t2 - t1:.3f} s "
          f"(reading: {t1 - t0:.3f} s)")
    print(f"frontier ({len(result['frontier'])} points):")
    print(f"  {'accuracy':>9} {'correct':>7} {'cost':>13}  cascade")
    for p in result["frontier"]:
        print(f"  {p['accuracy']:9.5f} {p['correct']:7d} {p['cost']:13.6e}  {p['cascade']}")
    c = result["chosen"]
    print(f"best single model: {result['best_single']} "
          f"({result['best_single_correct'] / result['labeled']:.5f})")
    print(f"chosen (match-best): accuracy {c['accuracy']:.5f} ({c['correct']}), "
          f"cost {c['cost']:.6e}: {c['cascade']}")


if __name__ == "__main__":
    main()
