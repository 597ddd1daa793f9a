"""coe: cascades of ensembles, from Python.

Plan a cascade on recordings (each model's answers, and costs, on calibration data),
evaluate any cascade on recordings, and run one live on images::

    import coe
    calib = coe.Recordings.from_csv("calib.csv")
    plan = coe.plan(calib, "calib.models.toml", test=coe.Recordings.from_csv("test.csv"))
    print(plan.chosen.to_toml(), plan.chosen_figures)
    plan.to_pandas()                          # the frontier, one row per cascade
    out = coe.run(plan.chosen, "models/zoo/catalogue.toml", images)   # images: float32 (N, 1, 28, 28)

Errors raise coe.Error carrying coe's message (file, line and column where it has
them). Planning, evaluating and running release the GIL.
"""
import json as _json

from . import _coe
from ._coe import Error

__all__ = ["Error", "Recordings", "Cascade", "Plan", "plan", "run"]


def _missing_as_none(series):
    """A pandas Series as an object array with None where pandas has a missing value."""
    return series.astype(object).where(series.notna(), None).to_numpy()


class Recordings:
    """Every model's answer (and cost, score) on each example, with the true labels."""

    def __init__(self, ids, labels, predictions, costs=None, scores=None, probabilities=None, label_names=None,
                 allow_duplicate_ids=False):
        """Recordings from arrays.

        ids: one non-empty id per example, each once (list, NumPy array or pandas Series).
        labels: the true label of each example (None or "" where unknown), or None.
        predictions: {model name: its answer on each example (None or "" = abstained)}.
        costs: {model name: cost per example, finite and >= 0}, optional (else the
            catalogue's figures).
        scores: {model name: confidence per example in [0, 1]; None where it gives none},
            optional.
        probabilities: {model name: array (examples, len(label_names)) of probabilities
            in [0, 1], each row summing to 1 (within 0.01) or all 0 (none)}, optional.
        label_names: the label of each probability column, each once (required with
            probabilities).
        allow_duplicate_ids: keep examples whose id repeats an earlier one's (a warning).
        The values obey the same rules as the CSV reader's (coe::ValidateRecordings);
        a broken one raises ValueError naming the model's column and the example.
        The arrays are read once into coe's own columns (one copy).
        """
        self._r = _coe._Recordings.from_arrays(ids, labels, dict(predictions), costs, scores, probabilities,
                                               label_names, allow_duplicate_ids)

    @classmethod
    def from_csv(cls, path, allow_duplicate_ids=False):
        """Reads recordings in coe's CSV format (the output of `coe record`)."""
        self = cls.__new__(cls)
        self._r = _coe._Recordings.from_csv(str(path), allow_duplicate_ids)
        return self

    @classmethod
    def from_pandas(cls, df, id_column="id", label_column="label"):
        """Recordings from a DataFrame with an id column, a label column and one column
        per model (its answers); `<model>|cost` and `<model>|score` columns as in the CSV
        (a missing score, pandas' NaN, is no score for that example, as an empty cell)."""
        models = [c for c in df.columns if c not in (id_column, label_column) and "|" not in c]
        costs = {m: df[m + "|cost"].to_numpy() for m in models if m + "|cost" in df.columns}
        scores = {m: _missing_as_none(df[m + "|score"]) for m in models if m + "|score" in df.columns}
        labels = df[label_column] if label_column in df.columns else None
        return cls(df[id_column].astype(str), labels, {m: df[m] for m in models}, costs or None, scores or None)

    @property
    def num_examples(self):
        return self._r.num_examples

    @property
    def models(self):
        """Model names, in column order."""
        return self._r.models

    def to_csv(self):
        """The recordings as coe's CSV text."""
        return self._r.to_csv()

    def __len__(self):
        return self._r.num_examples

    def __repr__(self):
        return f"<coe.Recordings: {self.num_examples} examples, models {', '.join(self.models)}>"


class Cascade:
    """A cascade: tiers of models, each with the rule that lets an example exit."""

    def __init__(self, toml_text, source="cascade"):
        self._toml = _coe.check_cascade(toml_text, source)

    @classmethod
    def from_toml(cls, path):
        """Reads a cascade file."""
        with open(path) as f:
            return cls(f.read(), str(path))

    def to_toml(self):
        """The cascade as TOML text (what `coe plan --out` writes)."""
        return self._toml

    def evaluate(self, recordings, catalogue, cost=""):
        """Replays the cascade on recordings: dict with accuracy, cost, exits per tier."""
        return _json.loads(_coe.evaluate_json(self._toml, recordings._r, str(catalogue), cost))

    def __repr__(self):
        return "<coe.Cascade>\n" + self._toml


class Plan:
    """What `coe plan` found: the chosen cascade, the frontier, the baselines."""

    def __init__(self, report_json, chosen_toml):
        self._json = report_json
        self.report = _json.loads(report_json)
        self.chosen = Cascade(chosen_toml, "chosen")
        self.chosen_figures = {k: self.report["chosen"].get(k) for k in ("calib", "test")}
        self.frontier = self.report["frontier"]
        self.baselines = self.report["baselines"]
        self.goal_met = self.report["goal_met"]

    def to_json(self):
        """The report as `coe plan --json` prints it (`coe report --plan` reads it)."""
        return self._json

    def to_pandas(self):
        """The frontier as a DataFrame: cascade, calibration and test accuracy and cost."""
        import pandas as pd

        rows = []
        for f in self.frontier:
            row = {"cascade": f["cascade"], "calib_accuracy": f["calib"]["accuracy"], "calib_cost": f["calib"]["cost"]}
            if f.get("test"):
                row.update(test_accuracy=f["test"]["accuracy"], test_cost=f["test"]["cost"])
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self):
        c = self.report["chosen"]["calib"]
        return f"<coe.Plan: {len(self.frontier)} frontier points; chosen {self.report['chosen']['cascade']} (calibration accuracy {c['accuracy']:.4f}, cost {c['cost']:.4g})>"


def plan(recordings, catalogue, goal="match-best", rules="", test=None, select="noninferiority", max_tiers=3,
         max_members=3, cost="", threads=0):
    """Searches cascades over calibration recordings, as `coe plan` does.

    catalogue: the model catalogue (TOML path) with cost figures.
    goal: "match-best" | "accuracy=X" | "budget=X" | "max-accuracy".
    rules: "" (every kind the recordings support), "vote", "score", "vote+score" or a comma list.
    test: held-out Recordings to report on. select: the match-best guard.
    """
    report, chosen = _coe.plan_json(recordings._r, str(catalogue), goal, rules, test._r if test is not None else None,
                                    select, max_tiers, max_members, cost, threads)
    return Plan(report, chosen)


def run(cascade, catalogue, images, threads=0):
    """Runs a cascade live (ONNX members) on images, float32 of shape (N, *input_shape).

    Returns a dict: answer (labels, "" = none), exit_tier (1-based), cost, degraded,
    cost_unit, seconds.
    """
    return _coe.run(cascade.to_toml(), str(catalogue), images, threads)
