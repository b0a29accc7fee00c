"""What the report reads: the tables of one results folder (through :class:`pgscore.results.ResultsFolder`),
scored the way ``pgscore run`` scores them, with intervals where the folder has the inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pgscore.errors import PgScoreError


@dataclass
class ResultsData:
    """The tables of one results folder (None where absent) and load notes."""

    root: Path
    tables: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    experiment: dict = field(default_factory=dict)
    scored: pd.DataFrame | None = None  # teacher × language
    rows: pd.DataFrame | None = None  # teacher × language × trial, scored (score_rows)
    uncertainty: Any = None  # pgscore.uncertainty.Uncertainty of the folder's scores (P(best), pairwise)

    def get(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)


TABLES = ("scored", "metrics", "extrinsic", "synthetic", "metrics_examples", "calibration")
OPTIONAL_TABLES = ("calibration",)  # not enough on their own to call a folder a results folder


def load_results(root: str | Path) -> ResultsData:
    """Read what exists of a results folder; compute scores from metrics + extrinsic when possible."""
    from pgscore.io import read_table

    root = Path(root)
    if not root.is_dir():
        raise PgScoreError(f"results folder not found: {root}")
    data = ResultsData(root=root)
    from pgscore.results import ResultsFolder

    for name in TABLES:
        p = ResultsFolder(root).path(name)
        if not p.is_file():
            data.tables[name] = None
            data.notes[name] = f"{name}.parquet not found"
            continue
        try:
            data.tables[name] = read_table(p)
        except PgScoreError as exc:
            data.tables[name] = None
            data.notes[name] = str(exc)
    if not any(data.tables[n] is not None for n in TABLES if n not in OPTIONAL_TABLES):
        raise PgScoreError(f"{root} holds none of {', '.join(t + '.parquet' for t in TABLES)}: not a results folder")
    if (root / "experiment.yaml").is_file():
        import yaml

        try:
            data.experiment = yaml.safe_load((root / "experiment.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            data.notes["experiment"] = "experiment.yaml is not valid YAML"
    _score(data)
    return data


def _score(data: ResultsData) -> None:
    from pgscore.results import ResultsFolder

    metrics, ext = data.get("metrics"), data.get("extrinsic")
    folder = ResultsFolder(data.root)
    if metrics is not None and ext is not None:
        # per-trial rows exactly as `pgscore run` scores them: an undefined PGR stays undefined (NaN)
        try:
            data.rows, _ = folder.scored_rows()
        except PgScoreError as exc:
            data.notes["rows"] = f"cannot score trials: {exc}"
    data.scored = data.get("scored")
    full = None
    if metrics is not None:  # intervals, P(best) and the pairwise matrix (pgscore.uncertainty)
        try:
            full = folder.scored_full()
            data.uncertainty = full[2]
        except PgScoreError as exc:
            data.notes["uncertainty"] = f"no intervals: {exc}"
    if data.scored is None and data.rows is not None:
        data.scored = full[0] if full is not None else folder.scored()
        data.notes["scored"] = "scored.parquet not found: scores computed from metrics + extrinsic"
    elif data.scored is not None and "pg_score_low" not in data.scored.columns and full is not None and ext is not None:
        data.scored = full[0]
        data.notes["scored"] = "scored.parquet has no intervals (written before issue 12): scores recomputed with intervals"
