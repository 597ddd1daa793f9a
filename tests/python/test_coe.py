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


def test_arrays_obey_the_csv_readers_rules():
    """coe.Recordings(...) refuses what the CSV reader refuses, with the same message
    (model's column, example and id): one set of rules, coe::ValidateRecordings."""
    ids, truth, preds = ["a", "b", "c"], ["x", "y", "x"], {"m": ["x", "y", "y"], "n": ["x", "x", None]}

    def refused(match, **kw):
        args = dict(ids=ids, labels=truth, predictions=preds)
        args.update(kw)
        with pytest.raises(ValueError, match=match):
            coe.Recordings(**args)

    for bad, what in ((-999999999.0, "negative cost -999999999"), (np.inf, "cost inf is not finite"),
                      (np.nan, "cost nan is not finite"), (None, "cost nan is not finite")):
        refused(r"example 1 \(id 'b'\): column 'm\|cost': " + what, costs={"m": [1.0, bad, 2.0]})
    for bad in (7.5, -3.0):
        refused(rf"example 2 \(id 'c'\): column 'n\|score': score {bad:g} is outside \[0,1\]",
                scores={"n": np.array([0.5, 0.5, bad])})
    refused(r"scores\['m'\]\[0\] \(id 'a'\): NaN is not a score", scores={"m": np.array([np.nan, 0.5, 0.5])})
    refused(r"column 'id': duplicate id 'a' \(first at example 0\)", ids=["a", "b", "a"])
    refused(r"example 1 \(id ''\): column 'id': empty id", ids=["a", "", "c"])
    refused(r"example 1 \(id ''\): column 'id': empty id", ids=["a", None, "c"])
    refused(r"example 2 \(id 'c'\): column 'm\|p:x': probability -0.5 is outside \[0,1\]", label_names=["x", "y"],
            probabilities={"m": np.array([[1, 0], [0, 1], [-0.5, 1.5]])})
    refused(r"example 0 \(id 'a'\): model 'm': its \|p: columns sum to 0.5, not 1", label_names=["x", "y"],
            probabilities={"m": np.array([[0.25, 0.25], [0, 1], [0, 1]])})
    refused(r"probability nan is outside", label_names=["x", "y"],
            probabilities={"m": np.array([[np.nan, 1], [0, 1], [0, 1]])})
    refused(r"model name 'a\|b' cannot name a column", predictions={"a|b": ["x", "y", "y"]})
    refused(r"model name 'label' cannot name a column", predictions={"label": ["x", "y", "y"]})
    refused(r"costs: 'mm' is not a model of predictions", costs={"mm": [1.0, 1.0, 1.0]})
    # Repeated label names: 1,000 of them crashed to_csv(), 3 renamed its columns.
    refused(r"label_names: 'x' is listed twice \(at 0 and 2\)", label_names=["x", "y", "x"],
            probabilities={"m": np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]])})
    refused(r"label_names: 'x' is listed twice", label_names=["x"] * 1000,
            probabilities={"m": np.zeros((3, 1000))})
    # What is allowed: duplicate ids when asked (a warning), None for no score, rows of
    # zero probabilities (none), an abstention.
    with pytest.warns(UserWarning, match="duplicate id 'a'"):
        rec = coe.Recordings(["a", "a", "c"], truth, preds, allow_duplicate_ids=True)
    assert len(rec) == 3
    rec = coe.Recordings(ids, truth, preds, costs={"m": [0.0, 1.0, 2.0]}, scores={"m": [0.5, None, 1.0]},
                         probabilities={"n": np.array([[1, 0], [0.5, 0.5], [0, 0]])}, label_names=["x", "y"])
    text = rec.to_csv()
    assert text.splitlines()[0] == "id,label,m,n,m|cost,m|score,n|p:x,n|p:y", text
    assert text.splitlines()[2].startswith("b,y,y,x,1,,"), text


def test_arrays_and_csv_give_the_same_message(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,label,m,m|cost\na,x,x,1\nb,y,y,-2\n")
    with pytest.raises(coe.Error, match=r"r.csv:3: column 'm\|cost': negative cost -2$"):
        coe.Recordings.from_csv(path)
    with pytest.raises(ValueError, match=r"^coe.Recordings: example 1 \(id 'b'\): column 'm\|cost': negative cost -2$"):
        coe.Recordings(["a", "b"], ["x", "y"], {"m": ["x", "y"]}, costs={"m": [1, -2]})


def test_from_pandas_reads_missing_scores_as_none():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"id": ["a", "b"], "label": ["x", "y"], "m": ["x", "y"], "m|score": [0.5, np.nan]})
    rec = coe.Recordings.from_pandas(df)
    assert rec.to_csv().splitlines()[1:] == ["a,x,x,0.5", "b,y,y,"]


def test_arrays_refuse_values_that_are_not_strings_or_numbers():
    """A list, a dict, a boolean or a 2-D array's row is not an answer or a label: its
    Python text ("[0. 0.]", "{'a': 1}") was taken for one."""
    base = dict(ids=["a", "b"], labels=["x", "y"], costs={"m": [1.0, 1.0]})
    for bad, kind in [(np.zeros((2, 2)), "ndarray"), ([["x", "y"], "y"], "list"), ([{"a": 1}, "y"], "dict"),
                      ([True, "y"], "bool")]:
        with pytest.raises(ValueError, match=r"^predictions\['m'\]\[0\] is %s, not a string or a number$" % kind):
            coe.Recordings(**base, predictions={"m": bad})
    with pytest.raises(ValueError, match=r"^labels\[1\] is list, not a string or a number$"):
        coe.Recordings(ids=["a", "b"], labels=["x", ["y"]], predictions={"m": ["x", "y"]})
    # Numbers are their text, None and NaN no answer.
    r = coe.Recordings(**base, predictions={"m": [np.int64(3), float("nan")]})
    assert r.to_csv() == "id,label,m,m|cost\na,x,3,1\nb,y,,1\n"
