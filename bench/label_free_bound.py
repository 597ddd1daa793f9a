#!/usr/bin/python3
"""Checks the bound of label-free planning (coe plan --reference) on real recordings.

For each data set and each of --splits random splits of its pooled train and test
recordings (the calibration part as large as the published train split), it plans with
`coe plan --reference REF` on the calibration part with its label column removed, then
scores the chosen cascade and the reference alone on the rest against the TRUE labels
(`coe eval`), and counts the splits where the true accuracy loss relative to the
reference exceeded the stated epsilon. The plan states that, with 95% confidence, the
loss is at most epsilon: the share of such splits must be at most 5%.

It also prints, on the published split, the plan with the true labels beside the plan
with --reference (labels removed): test accuracy against the true labels, and cost.

Run it (a separate command, not a unit test) after building coe:
  /usr/bin/python3 bench/label_free_bound.py --coe build/coe \\
      --data ../shared/data/routerbench [--splits 20] [--epsilon 0.02,0.03,0.05]
Writes nothing into the repository: its files go to a temporary directory.
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile

SETS = {"arc_challenge": "ARC-Challenge", "winogrande": "Winogrande"}


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_csv(path, header, rows, drop_label):
    keep = [i for i, h in enumerate(header) if not (drop_label and h == "label")]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([header[i] for i in keep])
        for r in rows:
            w.writerow([r[i] for i in keep])


def coe(args, binary):
    # RouterBench's ARC files reuse a few ids for distinct questions.
    p = subprocess.run([binary] + args + ["--allow-duplicate-ids"], capture_output=True, text=True)
    if p.returncode not in (0, 3):
        sys.exit("coe %s failed (%d):\n%s" % (" ".join(args), p.returncode, p.stderr))
    return p.stdout


def evaluate(binary, cascade, data, models):
    e = json.loads(coe(["eval", "--cascade", cascade, "--data", data, "--models", models, "--json"], binary))
    return e["accuracy"], e["cost"]


def plan(binary, calib, test, models, out, extra):
    args = ["plan", "--calib", calib, "--test", test, "--models", models, "--out", out, "--json"] + extra
    return json.loads(coe(args, binary))


def side_by_side(binary, data, name, reference, epsilon, tmp):
    """The published split: labels vs --reference (labels removed from calibration)."""
    header, train = read_csv(os.path.join(data, name + "_train.csv"))
    models = os.path.join(data, name + "_train.models.toml")
    calib_free = os.path.join(tmp, name + "_calib_nolabel.csv")
    write_csv(calib_free, header, train, drop_label=True)
    test = os.path.join(data, name + "_test.csv")
    ref_toml = os.path.join(tmp, "ref.toml")
    with open(ref_toml, "w") as f:
        f.write('[[tiers]]\nmembers = ["%s"]\n' % reference)
    ref_acc, ref_cost = evaluate(binary, ref_toml, test, models)
    rows = []
    for label, calib, extra in [("true labels", os.path.join(data, name + "_train.csv"), []),
                                ("--reference " + reference, calib_free,
                                 ["--reference", reference, "--epsilon", str(epsilon)])]:
        out = os.path.join(tmp, "side.toml")
        p = plan(binary, calib, test, models, out, extra)
        acc, cost = evaluate(binary, out, test, models)
        rows.append((label, p["chosen"]["cascade"], acc, cost, ref_cost / cost))
    print("\n%s, published split (%s): %s alone: test accuracy %.2f%%, cost $%.6f" %
          (SETS[name], name, reference, 100 * ref_acc, ref_cost))
    print("  %-36s %9s %11s %7s  %s" % ("planned with", "test acc", "test cost", "saving", "chosen"))
    for label, cascade, acc, cost, saving in rows:
        print("  %-36s %8.2f%% %11.6f %6.2fx  %s" % (label, 100 * acc, cost, saving, cascade))


def splits(binary, data, name, reference, epsilon, count, tmp):
    header, train = read_csv(os.path.join(data, name + "_train.csv"))
    _, test = read_csv(os.path.join(data, name + "_test.csv"))
    models = os.path.join(data, name + "_train.models.toml")
    pool = train + test
    ref_toml = os.path.join(tmp, "ref.toml")
    with open(ref_toml, "w") as f:
        f.write('[[tiers]]\nmembers = ["%s"]\n' % reference)
    exceeded, losses, savings = 0, [], []
    print("\n%s: %d random splits, %d calibration (labels removed) / %d test, epsilon %.3g" %
          (SETS[name], count, len(train), len(test), epsilon))
    print("  %5s %9s %9s %8s %8s %7s  %s" % ("split", "ref acc", "coe acc", "loss", "bound", "saving", "chosen"))
    for k in range(count):
        rows = pool[:]
        random.Random(1000 + k).shuffle(rows)
        calib_rows, test_rows = rows[:len(train)], rows[len(train):]
        calib = os.path.join(tmp, "calib.csv")
        held = os.path.join(tmp, "test.csv")
        write_csv(calib, header, calib_rows, drop_label=True)
        write_csv(held, header, test_rows, drop_label=False)
        out = os.path.join(tmp, "chosen.toml")
        p = plan(binary, calib, held, models, out, ["--reference", reference, "--epsilon", str(epsilon)])
        acc, cost = evaluate(binary, out, held, models)
        ref_acc, ref_cost = evaluate(binary, ref_toml, held, models)
        loss = ref_acc - acc
        exceeded += loss > epsilon
        losses.append(loss)
        savings.append(ref_cost / cost)
        bound = p["selection"].get("disagreement_bound")
        print("  %5d %8.2f%% %8.2f%% %+7.2fpt %7s %6.2fx  %s" %
              (k + 1, 100 * ref_acc, 100 * acc, 100 * loss, "%.2f%%" % (100 * bound) if bound is not None else "-",
               savings[-1], p["chosen"]["cascade"]))
    share = exceeded / count
    print("  loss > epsilon on %d of %d splits (%.0f%%; stated at most 5%%); mean loss %+.2f points, worst %+.2f; "
          "mean saving %.2fx" % (exceeded, count, 100 * share, 100 * sum(losses) / count, 100 * max(losses),
                                 sum(savings) / count))
    return share


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coe", default="build/coe")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "../../shared/data/routerbench"))
    ap.add_argument("--reference", default="gpt-4-1106-preview")
    ap.add_argument("--epsilon", default="0.02,0.03,0.05", help="a comma list: each is checked")
    ap.add_argument("--splits", type=int, default=20)
    a = ap.parse_args()
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for epsilon in [float(e) for e in a.epsilon.split(",")]:
            print("\n==== epsilon %.3g (confidence 95%%)" % epsilon)
            for name in SETS:
                side_by_side(a.coe, a.data, name, a.reference, epsilon, tmp)
                worst = max(worst, splits(a.coe, a.data, name, a.reference, epsilon, a.splits, tmp))
    print("\nworst share of splits over epsilon: %.0f%% (stated: at most 5%%)" % (100 * worst))
    return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
