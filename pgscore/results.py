"""One home for the results folder: its file names, and how its tables are read, joined and scored.

Every reader of a results folder (``pgscore score``, ``analyze``, ``screen``, ``recommend``, ``report``
and the run's own score stage) goes through :class:`ResultsFolder`, so there is one join of ``metrics``
with ``extrinsic`` and one rule for undefined PGR::

    rf = ResultsFolder("results/quickstart")
    rf.metrics()          # dataset-level rows (method == "all")
    rf.extrinsic()        # one row per trained student, or None before the students stage
    rf.scored_rows()      # per-trial rows scored by scoring.score_result_rows (+ notes)
    rf.scored()           # one row per teacher × language (× student)

Scoring a results folder is always *lenient about what is missing*: a row whose PGR is undefined (no
student stage, no reference, reference <= base) keeps ``pg_score`` NaN with the reason in ``pgr_note``
and intrinsic Z is still taken over every row. The ``policy`` says what happens to PGRs that are
defined but unreliable (reference-base gap inside 2 bootstrap SE, ``pgr_reliable == False``):
``lenient`` keeps them (flagged; the paper's Table 12 way), ``strict`` blanks them. The default policy
and λ are the folder's own (``scoring.pgr_guard`` / ``scoring.weight`` in its ``experiment.yaml``).
"""

from __future__ import annotations

from pathlib import Path
import pandas as pd

from pgscore.errors import PgScoreError

DATASET_METHOD = "all"  # metrics rows with method == "all" describe a whole teacher × language × trial dataset
POLICIES = ("lenient", "strict")
DEFAULT_POLICY = "lenient"
DEFAULT_WEIGHT = 0.5

# file name (relative to the results folder) of everything a run writes
FILES: dict[str, str] = {
    "experiment": "experiment.yaml",
    "seed_dir": "seed",
    "seed": "seed/seed.parquet",
    "english_pool": "seed/english_pool.parquet",
    "synthetic": "synthetic.parquet",
    "synthetic_parts": "synthetic_parts",
    "metrics_examples": "metrics_examples.parquet",
    "metrics": "metrics.parquet",
    "embedding_cache": "cache/embeddings",
    "students_dir": "students",
    "eval_dir": "eval",
    "extrinsic": "extrinsic.parquet",
    "scored": "scored.parquet",
    "report": "report.html",
    "figures": "figures",
    "stages": "stages.json",
    "summary": "summary.json",
    "ledger": "ledger.sqlite",
    "lock": "run.lock",
    "calibration": "calibration.parquet",
    "bootstrap": "bootstrap.parquet",
    "plan": "plan.json",
    "preview": "preview/preview.parquet",
}


def dataset_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The dataset-level rows of a metrics table (``method == "all"``), without the method column.

    A table without a ``method`` column is dataset-level already and comes back unchanged.
    """
    if "method" not in metrics.columns:
        return metrics
    return metrics[metrics["method"].astype(str) == DATASET_METHOD].drop(columns="method")


def method_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The per-method rows of a metrics table (every ``method`` other than ``all``)."""
    if "method" not in metrics.columns:
        return metrics.iloc[0:0]
    return metrics[metrics["method"].astype(str) != DATASET_METHOD]


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise PgScoreError(f"unknown PGR policy {policy!r}; use one of {', '.join(POLICIES)}")
    return policy


class ResultsFolder:
    """A results folder (``results/<experiment>/``): paths of its files and readers of its tables."""

    def __init__(self, path: str | Path) -> None:
        self.root = Path(path)

    def __repr__(self) -> str:
        return f"ResultsFolder({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    def __truediv__(self, other: str) -> Path:
        return self.root / other

    def path(self, name: str) -> Path:
        """The path of a file named in :data:`FILES` (``rf.path("metrics")``)."""
        try:
            return self.root / FILES[name]
        except KeyError:
            raise PgScoreError(f"no results file named {name!r}; known: {', '.join(FILES)}") from None

    def __getattr__(self, name: str) -> Path:
        """``rf.synthetic``, ``rf.ledger``, ... are paths; ``metrics``, ``extrinsic`` and ``scored`` are
        readers (methods), their paths are ``rf.metrics_path`` etc. (``<name>_path`` works for every name)."""
        if name.startswith("__"):
            raise AttributeError(name)
        key = name.removesuffix("_path")
        if key in FILES:
            return self.root / FILES[key]
        raise AttributeError(f"ResultsFolder has no attribute {name!r}")

    def student_dir(self, name: str) -> Path:
        return self.path("students_dir") / name

    # ---- reading --------------------------------------------------------------------------------
    def require_dir(self) -> "ResultsFolder":
        if not self.root.is_dir():
            raise PgScoreError(f"results folder not found: {self.root}")
        return self

    def experiment(self) -> dict:
        """The folder's ``experiment.yaml`` as a dict ({} when absent or unreadable)."""
        import yaml

        f = self.path("experiment")
        if not f.is_file():
            return {}
        try:
            raw = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            return {}
        return raw if isinstance(raw, dict) else {}

    def default_policy(self) -> str:
        scoring = self.experiment().get("scoring") or {}
        policy = scoring.get("pgr_guard", DEFAULT_POLICY) if isinstance(scoring, dict) else DEFAULT_POLICY
        return policy if policy in POLICIES else DEFAULT_POLICY

    def default_weight(self) -> float:
        scoring = self.experiment().get("scoring") or {}
        w = scoring.get("weight", DEFAULT_WEIGHT) if isinstance(scoring, dict) else DEFAULT_WEIGHT
        return float(w) if isinstance(w, (int, float)) else DEFAULT_WEIGHT

    def table(self, name: str, required: bool = False, stage: str | None = None) -> pd.DataFrame | None:
        """A table of the folder by its :data:`FILES` name; None (or a one-line error) when absent."""
        from pgscore.io import read_table

        p = self.path(name)
        if not p.is_file():
            if required:
                hint = f"; run `pgscore {stage}` first" if stage else ""
                raise PgScoreError(f"{self.root} has no {FILES[name]}{hint}")
            return None
        return read_table(p)

    def metrics(self, dataset_level: bool = True) -> pd.DataFrame:
        """``metrics.parquet``: the dataset-level rows (``method == "all"``), or every row."""
        df = self.table("metrics", required=True, stage="measure")
        if not dataset_level:
            return df
        rows = dataset_rows(df)
        if rows.empty:
            raise PgScoreError(f"{self.path('metrics')} has no dataset-level rows (method == 'all')")
        return rows

    def extrinsic(self, required: bool = False) -> pd.DataFrame | None:
        """``extrinsic.parquet`` (one row per trained student), or None before the students stage."""
        df = self.table("extrinsic", required=required, stage="run (the students stage)")
        return None if df is None or df.empty and not required else df

    def saved_scored(self) -> pd.DataFrame | None:
        """``scored.parquet`` as written by the run's score stage or ``pgscore score`` (None when absent)."""
        return self.table("scored")

    # ---- scoring (the one entry point) ------------------------------------------------------------
    def score_inputs(self) -> dict[str, pd.DataFrame | None]:
        """The tables scoring reads: metrics (dataset rows), extrinsic, bootstrap resamples, judge calibration."""
        return {"metrics": self.metrics(), "extrinsic": self.extrinsic(), "bootstrap": self.table("bootstrap"),
                "calibration": self.table("calibration")}

    def _policy_weight(self, policy: str | None, weight: float | None) -> tuple[str, float]:
        return check_policy(policy or self.default_policy()), self.default_weight() if weight is None else weight

    def scored_rows(self, policy: str | None = None, weight: float | None = None) -> tuple[pd.DataFrame, list[str]]:
        """Per-trial rows: dataset-level metrics joined with extrinsic and scored (``scoring.score_result_rows``),
        plus notes. Undefined PGR -> NaN PG with the reason in ``pgr_note`` (``policy``: module docstring)."""
        from pgscore import scoring

        policy, weight = self._policy_weight(policy, weight)
        t = self.score_inputs()
        return scoring.score_result_rows(t["metrics"], t["extrinsic"], weight=weight, pgr_guard=policy,
                                         calibration=t["calibration"])

    def scored_full(self, policy: str | None = None, weight: float | None = None, *, seed: int = 0,
                    min_judge_auc: float | None = None):
        """(scored, notes, uncertainty): one row per teacher × language (× student) with 95 % intervals and
        P(best), from ``scoring.score_results_full`` over this folder's tables: what ``scored.parquet`` holds."""
        from pgscore import scoring

        policy, weight = self._policy_weight(policy, weight)
        t = self.score_inputs()
        return scoring.score_results_full(t["metrics"], t["extrinsic"], weight, resamples=t["bootstrap"],
                                          calibration=t["calibration"], pgr_guard=policy,
                                          min_judge_auc=min_judge_auc, seed=seed)

    def joined(self, policy: str | None = None) -> pd.DataFrame:
        """Dataset-level metrics joined with extrinsic (``pgr``, ``pgr_note``, raw scores): the scored rows
        without the derived score columns (z components, intrinsic_z, pg_score)."""
        from pgscore.scoring import DERIVED

        rows, _ = self.scored_rows(policy)
        return rows.drop(columns=[c for c in DERIVED if c in rows.columns])

    def scored(self, policy: str | None = None, weight: float | None = None, seed: int = 0) -> pd.DataFrame:
        """One row per teacher × language (× student): :meth:`scored_full`'s table."""
        return self.scored_full(policy, weight, seed=seed)[0]

    def scored_or_saved(self, weight: float | None = None) -> tuple[pd.DataFrame, str]:
        """``scored.parquet`` when the folder has one, else :meth:`scored` (at ``weight``, default the
        folder's λ); returns (table, how it was obtained)."""
        saved = self.saved_scored()
        if saved is not None:
            return saved, "scored.parquet of a results folder"
        w = self.default_weight() if weight is None else weight
        return self.scored(weight=w), f"results folder scored with λ={w:g}"
