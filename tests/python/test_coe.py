"""The coe Python package (build/python on PYTHONPATH), against the coe command."""
import csv
import gzip
import json
import os
import subprocess
import threading
import time

import numpy as np
import pytest

import coe

SRC = os.environ.get("COE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
COE = os.environ.get("COE_BINARY", os.path.join(SRC, "build", "coe"))
ZOO = os.path.join(SRC, "models", "zoo", "catalogue.toml")
F = "/usr/share/datasets/fashion-mnist/"


def cli(*args):
    r = subprocess.run([COE, *args], capture_output=True, text=True)
    assert r.returncode in (0, 3), r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    """Zoo recordings on 2,000 calibration and 1,000 test images, made by coe record."""
    d = tmp_path_factory.mktemp("zoo")
    cli("record", "--models", ZOO, "--data", F + "train-images-idx3-ubyte.gz", "--labels",
        F + "train-labels-idx1-ubyte.gz", "--range", "0:2000", "--out", str(d / "calib.csv"))
    cli("record", "--models", ZOO, "--data", F + "t10k-images-idx3-ubyte.gz", "--labels",
        F + "t10k-labels-idx1-ubyte.gz", "--range", "0:1000", "--out", str(d / "test.csv"))
    return d


def arrays_from_csv(path):
    """The recordings CSV read by Python into NumPy arrays, as a user's own would be."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    cols = rows[0].keys()
    models = [c for c in cols if c not in ("id", "label") and "|" not in c]
    ids = np.array([r["id"] for r in rows])
    labels = np.array([r["label"] for r in rows], dtype=object)
    preds = {m: np.array([r[m] for r in rows], dtype=object) for m in models}
    costs = {m: np.array([float(r[m + "|cost"]) for r in rows]) for m in models if m + "|cost" in cols}
    scores = {m: np.array([float(r[m + "|score"]) for r in rows]) for m in models if m + "|score" in cols}
    names = [c.split("|p:", 1)[1] for c in cols if c.startswith(models[0] + "|p:")]
    probs = {m: np.array([[float(r[m + "|p:" + l]) for l in names] for r in rows], dtype=np.float32)
             for m in models if m + "|p:" + names[0] in cols} if names else None
    return ids, labels, preds, costs or None, scores or None, probs, names or None


def test_plan_from_numpy_arrays_equals_coe_plan(zoo):
    ids, labels, preds, costs, scores, probs, names = arrays_from_csv(zoo / "calib.csv")
    rec = coe.Recordings(ids, labels, preds, costs=costs, scores=scores, probabilities=probs, label_names=names)
    assert len(rec) == 2000 and len(rec.models) == 10
    test = coe.Recordings.from_csv(zoo / "test.csv")
    plan = coe.plan(rec, zoo / "calib.models.toml", test=test)
    want = json.loads(cli("plan", "--calib", str(zoo / "calib.csv"), "--test", str(zoo / "test.csv"), "--models",
                          str(zoo / "calib.models.toml"), "--json"))
    assert plan.report["chosen"]["cascade"] == want["chosen"]["cascade"]
    for split in ("calib", "test"):
        for k in ("accuracy", "cost", "exits", "correct"):
            assert plan.report["chosen"][split][k] == want["chosen"][split][k], (split, k)
    assert [f["cascade"] for f in plan.frontier] == [f["cascade"] for f in want["frontier"]]
    df = plan.to_pandas()
    assert len(df) == len(want["frontier"]) and list(df.columns[:3]) == ["cascade", "calib_accuracy", "calib_cost"]
    assert json.loads(plan.to_json())["goal"] == "match-best"


def test_evaluate_equals_coe_eval_and_cascades_round_trip(zoo, tmp_path):
    rec = coe.Recordings.from_csv(zoo / "test.csv")
    plan = coe.plan(coe.Recordings.from_csv(zoo / "calib.csv"), zoo / "calib.models.toml")
    path = tmp_path / "c.toml"
    path.write_text(plan.chosen.to_toml())
    again = coe.Cascade.from_toml(path)
    assert again.to_toml() == plan.chosen.to_toml()
    got = again.evaluate(rec, zoo / "test.models.toml")
    want = json.loads(cli("eval", "--cascade", str(path), "--data", str(zoo / "test.csv"), "--models",
                          str(zoo / "test.models.toml"), "--json"))
    assert got == want


def read_idx_images(path, begin, end):
    with gzip.open(path) as f:
        data = f.read()
    n, rows, cols = (int.from_bytes(data[4 * k:4 * k + 4], "big") for k in (1, 2, 3))
    px = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, rows, cols)
    return px[begin:end].astype(np.float32)


def test_run_live_equals_coe_run(zoo, tmp_path):
    plan = coe.plan(coe.Recordings.from_csv(zoo / "calib.csv"), zoo / "calib.models.toml")
    path = tmp_path / "c.toml"
    path.write_text(plan.chosen.to_toml())
    images = read_idx_images(F + "t10k-images-idx3-ubyte.gz", 0, 500)
    out = coe.run(plan.chosen, ZOO, images)
    cli("run", "--cascade", str(path), "--models", ZOO, "--data", F + "t10k-images-idx3-ubyte.gz", "--range", "0:500",
        "--out", str(tmp_path / "live.csv"))
    with open(tmp_path / "live.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 500 == len(out["answer"])
    assert [r["answer"] for r in rows] == out["answer"]
    assert [int(r["exit_tier"]) for r in rows] == list(out["exit_tier"])
    assert np.allclose([float(r["cost"]) for r in rows], out["cost"])


def test_errors_carry_coes_message(tmp_path):
    with pytest.raises(coe.Error, match="no-such.csv"):
        coe.Recordings.from_csv(tmp_path / "no-such.csv")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[tiers]]\nmembers = [\"a\"\n")
    with pytest.raises(coe.Error, match=r"bad.toml:\d+:\d+"):
        coe.Cascade.from_toml(bad)
    with pytest.raises(ValueError, match="predictions\\['m'\\]: 1 values for 2 ids"):
        coe.Recordings(["a", "b"], ["x", "y"], {"m": ["x"]})
    rec = coe.Recordings(["a", "b"], ["x", "y"], {"m": ["x", "y"]})
    with pytest.raises(coe.Error, match="catalogue|no such|cannot"):
        coe.plan(rec, tmp_path / "missing.toml")
    with pytest.raises(coe.Error):
        coe.run(coe.Cascade("[[tiers]]\nmembers = [\"mlp32\"]\n"), ZOO, np.zeros((2, 3, 3), np.float32))


def test_run_refuses_tensors_for_a_chat_cascade(tmp_path):
    """A chat model takes text: an array sent to it is a ValueError, not empty answers."""
    cat = tmp_path / "chat.toml"
    cat.write_text("[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:9/v1\"\nprompt = \"{input}\"\n"
                   "answer = \"choice\"\n[models.a]\n[models.b]\n")
    cascade = coe.Cascade("[[tiers]]\nmembers = [\"a\", \"b\"]\n")
    with pytest.raises(ValueError, match="member 'a' is a chat model: it takes text"):
        coe.run(cascade, cat, np.zeros((2, 3), np.float32))


def test_planning_releases_the_gil(zoo):
    rec = coe.Recordings.from_csv(zoo / "calib.csv")
    done = threading.Event()
    seconds = []

    def work():
        t = time.perf_counter()
        coe.plan(rec, zoo / "calib.models.toml")
        seconds.append(time.perf_counter() - t)
        done.set()

    th = threading.Thread(target=work)
    spins = 0
    th.start()
    while not done.is_set():
        spins += 1
        time.sleep(0.001)
    th.join()
    # With the GIL held through the search this thread could not run for its length.
    assert spins > 0.3 * seconds[0] / 0.0011, (spins, seconds[0])
