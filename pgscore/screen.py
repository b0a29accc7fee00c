"""Cheap screening: predict extrinsic performance (PGR) from intrinsic metrics, so students are trained
only for the most promising teachers.

As in the paper (Miranda, Vulić, Korhonen 2026, arXiv 2604.11290: PCA of the intrinsic metrics, a
linear model on the components, R² = 0.664), fitted with an sklearn pipeline on the teacher × language
rows that have both; teachers with intrinsic metrics only get a predicted PGR and PG-Score with a
bootstrap prediction interval. Validated by leave-one-teacher-out (LOTO).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pgscore.analysis import INTRINSIC_FEATURES
from pgscore.errors import PgScoreError

# Intrinsic metric columns used as features: the same as the paper's PCA in analysis (those present are used).
FEATURES = INTRINSIC_FEATURES
MIN_TEACHERS = 4  # fewer teachers with extrinsic scores: no fit, rank by intrinsic Z alone


@dataclass
class ScreenResult:
    """Output of :func:`screen_teachers`.

    ``teachers``: one row per teacher (teacher, n_languages, has_extrinsic, intrinsic_z, pgr_actual,
    pgr_pred, pgr_lo, pgr_hi, pg_actual, pg_pred, pg_lo, pg_hi, rank); ``proposed``: the top-k teachers
    without extrinsic results to train students for; ``validation``: LOTO numbers; ``loto``: per-teacher
    LOTO predictions; ``rows``: teacher × language predictions.
    """

    teachers: pd.DataFrame
    proposed: list[str]
    fitted: bool
    message: str
    validation: dict = field(default_factory=dict)
    loto: pd.DataFrame = field(default_factory=pd.DataFrame)
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    features: list[str] = field(default_factory=list)
    weight: float = 0.5

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "fitted": self.fitted,
            "message": self.message,
            "proposed": self.proposed,
            "features": self.features,
            "weight": self.weight,
            "validation": self.validation,
            "teachers": _records(self.teachers),
            "loto": _records(self.loto),
        }


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def check_weight(weight: float) -> None:
    """λ in [0, 1] (PG = λ·PGR + (1−λ)·Z), else a one-line error."""
    if not (isinstance(weight, (int, float, np.floating)) and 0.0 <= float(weight) <= 1.0):
        raise PgScoreError(f"weight λ must be a number in [0, 1], got {weight!r}")


# ------------------------------------------------------------------------------------------------ I/O
def load_screen_input(path: str | Path) -> pd.DataFrame:
    """Intrinsic metrics (+ ``pgr`` where known) from a results folder or a metrics table file.

    A folder: its dataset-level metrics joined with ``extrinsic.parquet`` (``ResultsFolder.joined``; PGR
    NaN where no student was trained or PGR is undefined). A file: any table with teacher, language and
    metric columns.
    """
    from pgscore.io import read_table
    from pgscore.results import ResultsFolder

    p = Path(path)
    if p.is_dir():
        return ResultsFolder(p).joined()
    if not p.exists():
        raise PgScoreError(f"not found: {p}")
    return read_table(p)


# ------------------------------------------------------------------------------------------ modelling
def make_pipeline(n_components: int):
    """Impute (median) -> standardise -> PCA -> linear regression."""
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=n_components)),
            ("ols", LinearRegression()),
        ]
    )


def _feature_matrix(df: pd.DataFrame, features: list[str]) -> np.ndarray:
    x = df[features].to_numpy(dtype=float).copy()
    if "perplexity" in features:
        j = features.index("perplexity")
        x[:, j] = np.log1p(np.clip(x[:, j], 0, None))
    return x


def _n_components(n_rows: int, n_features: int, max_components: int = 4) -> int:
    """Up to 4 components as in the paper, but about 3 training rows per fitted coefficient."""
    return max(1, min(max_components, n_features, (n_rows - 1) // 3))


def _prepare(metrics: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Teacher × language rows (trials averaged) with intrinsic_z; the usable feature columns."""
    from pgscore.scoring import REQUIRED_INTRINSIC, intrinsic_z

    if not isinstance(metrics, pd.DataFrame) or metrics.empty:
        raise PgScoreError("the metrics table is empty")
    missing = [c for c in ("teacher", "language", *REQUIRED_INTRINSIC) if c not in metrics.columns]
    if missing:
        raise PgScoreError(f"metrics table is missing column(s): {', '.join(missing)}")
    from pgscore.results import DATASET_METHOD, dataset_rows

    df = metrics.copy()
    if "method" in df.columns and (df["method"].astype(str) == DATASET_METHOD).any():
        df = dataset_rows(df)
    raw = ("student_score", "base_score", "reference_score")
    if all(c in df.columns for c in raw):  # fill PGR from the raw benchmark scores where missing
        from pgscore.scoring import compute_pgr

        computed = compute_pgr(*(pd.to_numeric(df[c], errors="coerce") for c in raw), on_zero="nan")
        df["pgr"] = pd.to_numeric(df["pgr"], errors="coerce").fillna(computed) if "pgr" in df.columns else computed
    features = [c for c in FEATURES if c in df.columns]
    for c in [*features, *(["pgr"] if "pgr" in df.columns else [])]:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    features = [c for c in features if df[c].notna().any()]
    # The judge is optional (metrics.judge unset): a missing judge score leaves Z to the other components,
    # as when scoring a results folder. Diversity and perplexity are always measured, so a gap there is an error.
    needed = [c for c in REQUIRED_INTRINSIC if c != "judge_score"]
    bad = df[needed].isna().any(axis=1)
    if bad.any():
        raise PgScoreError(f"{int(bad.sum())} metrics row(s) lack one of {', '.join(needed)}")
    df["intrinsic_z"] = intrinsic_z(df)
    if "pgr" not in df.columns:
        df["pgr"] = np.nan
    df["teacher"] = df["teacher"].astype(str)
    df["language"] = df["language"].astype(str)
    rows = df.groupby(["teacher", "language"], as_index=False, sort=True)[[*features, "intrinsic_z", "pgr"]].mean()
    return rows, features


def screen_teachers(
    metrics_df: pd.DataFrame,
    top_k: int = 3,
    weight: float = 0.5,
    n_bootstrap: int = 200,
    interval: float = 0.9,
    seed: int = 0,
) -> ScreenResult:
    """Fit intrinsic -> PGR on rows with both, predict the rest, propose the top-k, validate by LOTO.

    ``metrics_df``: rows teacher × language (× trial) with intrinsic metric columns and ``pgr`` (NaN or
    absent where no student was trained). PG is predicted as ``weight·PGR_pred + (1-weight)·Z``.
    """
    from pgscore.analysis import rank_correlation

    if top_k < 1:
        raise PgScoreError(f"top_k must be >= 1, got {top_k}")
    check_weight(weight)
    rows, features = _prepare(metrics_df)
    if not features:
        raise PgScoreError("no intrinsic metric columns with values to screen on")
    known = rows["pgr"].notna()
    train_teachers = sorted(rows.loc[known, "teacher"].unique())

    rows["pgr_pred"] = np.nan
    rows["pgr_lo"] = np.nan
    rows["pgr_hi"] = np.nan
    validation: dict = {"n_teachers_with_extrinsic": len(train_teachers), "n_rows_with_extrinsic": int(known.sum())}
    loto = pd.DataFrame()
    fitted = len(train_teachers) >= MIN_TEACHERS and int(known.sum()) >= 4
    if not fitted:
        message = (
            f"too little data to fit intrinsic -> extrinsic: {len(train_teachers)} teacher(s) with student "
            f"results, need at least {MIN_TEACHERS}; ranking by intrinsic Z alone (weak: Spearman 0.41 with "
            "extrinsic in the paper)"
        )
    else:
        train = rows[known]
        x_train, y_train = _feature_matrix(train, features), train["pgr"].to_numpy(dtype=float)
        k = _n_components(len(train), len(features))
        model = make_pipeline(k).fit(x_train, y_train)
        x_all = _feature_matrix(rows, features)
        rows["pgr_pred"] = model.predict(x_all)
        r2 = float(model.score(x_train, y_train)) if len(train) > 1 else float("nan")
        # bootstrap prediction intervals (refit on resampled rows + a resampled residual)
        rng = np.random.default_rng(seed)
        sims = np.empty((n_bootstrap, len(rows)))
        for b in range(n_bootstrap):
            idx = rng.integers(0, len(train), len(train))
            m = make_pipeline(_n_components(len(train), len(features))).fit(x_train[idx], y_train[idx])
            resid = y_train[idx] - m.predict(x_train[idx])
            sims[b] = m.predict(x_all) + rng.choice(resid, size=len(rows))
        alpha = (1 - interval) / 2
        rows["pgr_lo"] = np.quantile(sims, alpha, axis=0)
        rows["pgr_hi"] = np.quantile(sims, 1 - alpha, axis=0)
        teacher_sims = pd.DataFrame(sims.T).groupby(rows["teacher"].to_numpy()).mean()  # teacher × bootstrap
        loto = _loto(rows[known], features)
        rho_t = rank_correlation(loto["pgr_actual"].to_numpy(), loto["pgr_pred"].to_numpy()).rho
        lrows = loto.attrs["rows"]
        rho_r = rank_correlation(lrows["pgr"].to_numpy(), lrows["pgr_loto"].to_numpy()).rho
        ss_res = float(((lrows["pgr"] - lrows["pgr_loto"]) ** 2).sum())
        ss_tot = float(((lrows["pgr"] - lrows["pgr"].mean()) ** 2).sum())
        pca = model.named_steps["pca"]
        validation.update(
            {
                "n_components": int(k),
                "explained_variance": [round(float(v), 4) for v in pca.explained_variance_ratio_],
                "r2_in_sample": round(r2, 4),
                "loto_spearman_teachers": round(float(rho_t), 4),
                "loto_spearman_rows": round(float(rho_r), 4),
                "loto_q2": round(1 - ss_res / ss_tot, 4) if ss_tot > 0 else float("nan"),
                "loto_mae": round(float((lrows["pgr"] - lrows["pgr_loto"]).abs().mean()), 4),
            }
        )
        message = (
            f"fitted on {int(known.sum())} rows from {len(train_teachers)} teachers ({k} principal components, "
            f"R² {r2:.2f} in sample; paper: 0.664); leave-one-teacher-out Spearman {rho_t:.2f} (teachers), "
            f"{rho_r:.2f} (teacher × language rows)"
        )
        if not rho_t >= 0.5:
            message += (
                "; WARNING: validation is weak (teacher-level ρ < 0.5): intrinsic metrics do not predict your "
                "students well here, so train students for more teachers rather than trusting the prediction"
            )

    teachers = _teacher_table(rows, weight, teacher_sims if fitted else None, alpha if fitted else 0.05)
    unknown = teachers[~teachers["has_extrinsic"]]
    proposed = unknown.sort_values("pg_pred", ascending=False)["teacher"].head(top_k).tolist()
    if not proposed:
        message += "; every teacher already has student results, nothing left to screen"
    return ScreenResult(
        teachers=teachers,
        proposed=proposed,
        fitted=fitted,
        message=message,
        validation=validation,
        loto=loto,
        rows=rows,
        features=features,
        weight=weight,
    )


def _loto(train: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Leave-one-teacher-out predictions: per teacher mean actual vs predicted PGR (rows in attrs)."""
    parts = []
    for t in sorted(train["teacher"].unique()):
        held = train["teacher"] == t
        fit_rows = train[~held]
        m = make_pipeline(_n_components(len(fit_rows), len(features)))
        m.fit(_feature_matrix(fit_rows, features), fit_rows["pgr"].to_numpy(dtype=float))
        part = train[held][["teacher", "language", "pgr"]].copy()
        part["pgr_loto"] = m.predict(_feature_matrix(train[held], features))
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True)
    out = rows.groupby("teacher", as_index=False).agg(pgr_actual=("pgr", "mean"), pgr_pred=("pgr_loto", "mean"))
    out.attrs["rows"] = rows
    return out


def _teacher_table(rows: pd.DataFrame, weight: float, sims: pd.DataFrame | None, alpha: float) -> pd.DataFrame:
    g = rows.groupby("teacher", sort=True)
    t = pd.DataFrame(
        {
            "n_languages": g.size(),
            "has_extrinsic": g["pgr"].apply(lambda s: bool(s.notna().all())),
            "intrinsic_z": g["intrinsic_z"].mean(),
            "pgr_actual": g["pgr"].mean(),
            "pgr_pred": g["pgr_pred"].mean(),
        }
    )
    if sims is not None:
        t["pgr_lo"] = sims.quantile(alpha, axis=1)
        t["pgr_hi"] = sims.quantile(1 - alpha, axis=1)
        t["pg_pred"] = weight * t["pgr_pred"] + (1 - weight) * t["intrinsic_z"]
        t["pg_lo"] = weight * t["pgr_lo"] + (1 - weight) * t["intrinsic_z"]
        t["pg_hi"] = weight * t["pgr_hi"] + (1 - weight) * t["intrinsic_z"]
    else:
        t["pgr_lo"] = t["pgr_hi"] = np.nan
        t["pg_pred"] = t["intrinsic_z"]  # no fit: intrinsic Z alone
        t["pg_lo"] = t["pg_hi"] = np.nan
    t["pg_actual"] = weight * t["pgr_actual"] + (1 - weight) * t["intrinsic_z"]
    # rank all teachers by actual PG where known, else predicted
    best = t["pg_actual"].where(t["has_extrinsic"], t["pg_pred"])
    t["rank"] = best.rank(ascending=False, method="min").astype(int)
    t = t.reset_index().sort_values("rank", kind="stable").reset_index(drop=True)
    return t
