"""PG-Score math (Miranda, Vulić, Korhonen 2026, arXiv 2604.11290): pure numpy/pandas, no I/O.

- PGR = (student − base) / (reference − base)                      (performance gap recovered)
- Z   = mean of the z-scores of prompt_diversity, response_diversity, judge_score and −log(1+perplexity),
        each z taken with the population standard deviation over all rows scored together
- PG  = λ·PGR + (1−λ)·Z                                             (λ = ``weight``, default 0.5)

With trials, z-scores are taken over all rows (every trial), PG is computed per row and then averaged
per teacher × language (× student, × method when those columns exist).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pgscore.errors import PgScoreError

REQUIRED_INTRINSIC = ("prompt_diversity", "response_diversity", "perplexity", "judge_score")
RAW_EXTRINSIC = ("student_score", "base_score", "reference_score")
KEY_COLUMNS = ("teacher", "language")
OPTIONAL_KEYS = ("student", "method")
DEFAULT_WEIGHT = 0.5
Z_COLUMNS = ("z_prompt_diversity", "z_response_diversity", "z_judge_score", "z_neg_log1p_perplexity")
Z_NAMES = dict(zip(Z_COLUMNS, ("prompt_diversity", "response_diversity", "judge_score", "perplexity")))
INTERVAL_COLUMNS = tuple(f"{x}_{s}" for x in ("prompt_diversity", "response_diversity", "perplexity", "judge_score",
                                               "intrinsic_z", "pgr", "pg_score") for s in ("low", "high"))
UNCERTAINTY_COLUMNS = (*INTERVAL_COLUMNS, "interval_source", "p_best", "mean_pg_low", "mean_pg_high",
                       "p_best_overall", "n_resamples")
# pgr_low / pgr_high are also inputs (extrinsic.parquet, contract 1): re-scoring keeps them as the PGR's interval
DERIVED = ("intrinsic_z", "pg_score", "n_trials", "pg_score_std", "z_components", *Z_COLUMNS,
           *(c for c in UNCERTAINTY_COLUMNS if c not in ("pgr_low", "pgr_high")))
PGR_GUARDS = ("lenient", "strict")


# ---------------------------------------------------------------------------------------------- math
def compute_pgr(student, base, reference, on_zero: str = "raise"):
    """Vectorised PGR = (student − base) / (reference − base).

    Where reference == base the PGR is undefined: ``on_zero="raise"`` raises a PgScoreError naming the
    positions, ``on_zero="nan"`` returns NaN there. Scalars in give a scalar out.
    """
    s, b, r = (np.asarray(x, dtype=float) for x in (student, base, reference))
    denom = r - b
    zero = denom == 0
    if zero.any() and on_zero == "raise":
        where = np.flatnonzero(np.atleast_1d(zero)).tolist()
        raise PgScoreError(f"base_score == reference_score at positions {_short_list(where)}: PGR is undefined")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(zero, np.nan, (s - b) / np.where(zero, 1.0, denom))
    if isinstance(student, pd.Series):
        return pd.Series(out, index=student.index, name="pgr")
    return out.item() if out.ndim == 0 else out


def zscore(values) -> np.ndarray:
    """z = (x − mean) / std with the population std (ddof=0); a constant column gives zeros, not NaN.

    NaNs are ignored for the mean/std and stay NaN.
    """
    x = np.asarray(values, dtype=float)
    finite = x[~np.isnan(x)]
    if finite.size == 0:
        return np.full_like(x, np.nan)
    mean = finite.mean()
    std = finite.std(ddof=0)
    # Identical floats can give std ~1e-17 instead of 0: treat anything at round-off level as constant.
    if np.ptp(finite) == 0 or std <= 1e-12 * max(1.0, abs(mean)):
        return np.where(np.isnan(x), np.nan, 0.0)
    return (x - mean) / std


def intrinsic_components(df: pd.DataFrame) -> pd.DataFrame:
    """The four z-scored intrinsic components (z over all rows of ``df``)."""
    _require_columns(df, REQUIRED_INTRINSIC)
    ppl = df["perplexity"].to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "z_prompt_diversity": zscore(df["prompt_diversity"]),
            "z_response_diversity": zscore(df["response_diversity"]),
            "z_judge_score": zscore(df["judge_score"]),
            "z_neg_log1p_perplexity": zscore(-np.log1p(ppl)),
        },
        index=df.index,
    )


def intrinsic_z(df: pd.DataFrame) -> pd.Series:
    """Intrinsic score Z: mean of the four component z-scores, z taken over all rows passed."""
    return intrinsic_components(df).mean(axis=1).rename("intrinsic_z")


def pg_score(pgr, z, weight: float = DEFAULT_WEIGHT):
    """PG = λ·PGR + (1−λ)·Z."""
    _check_weight(weight)
    return weight * np.asarray(pgr, dtype=float) + (1.0 - weight) * np.asarray(z, dtype=float)


# ---------------------------------------------------------------------------------------- validation
def key_columns(df: pd.DataFrame) -> list[str]:
    """Grouping keys present in ``df``: teacher, language (+ student, method)."""
    return list(KEY_COLUMNS) + [c for c in OPTIONAL_KEYS if c in df.columns]


def validate_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Check a metrics table and return a copy with a complete ``pgr`` column.

    Raises a one-line PgScoreError for missing columns, non-numeric or missing values, perplexity < 0,
    duplicate teacher × language (× student, method, trial) rows, and base == reference.
    """
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise PgScoreError("the metrics table is empty")
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in (*KEY_COLUMNS, *REQUIRED_INTRINSIC) if c not in df.columns]
    has_raw = all(c in df.columns for c in RAW_EXTRINSIC)
    if "pgr" not in df.columns and not has_raw:
        missing += ["pgr (or " + ", ".join(c for c in RAW_EXTRINSIC if c not in df.columns) + ")"]
    if missing:
        raise PgScoreError(f"metrics table is missing column(s): {', '.join(missing)}")

    keys = key_columns(df) + (["trial"] if "trial" in df.columns else [])
    for c in keys:
        bad = df[c].isna() | (df[c].astype(str).str.strip() == "")
        if bad.any():
            raise PgScoreError(f"column {c!r} is empty in row(s) {_rows(df, bad)}")
        if c != "trial":
            df[c] = df[c].astype(str).str.strip()

    numeric = [*REQUIRED_INTRINSIC, *(["pgr"] if "pgr" in df.columns else []), *(RAW_EXTRINSIC if has_raw else [])]
    for c in numeric:
        converted = pd.to_numeric(df[c], errors="coerce")
        bad = converted.isna() & df[c].notna()
        if bad.any():
            raise PgScoreError(f"column {c!r} is not numeric in row(s) {_rows(df, bad)}")
        df[c] = converted.astype(float)
        if np.isinf(df[c]).any():
            raise PgScoreError(f"column {c!r} is infinite in row(s) {_rows(df, np.isinf(df[c]))}")

    for c in REQUIRED_INTRINSIC:
        if df[c].isna().any():
            raise PgScoreError(f"column {c!r} has missing values (NaN) in row(s) {_rows(df, df[c].isna())}")
    if (df["perplexity"] < 0).any():
        raise PgScoreError(f"perplexity must be >= 0; negative in row(s) {_rows(df, df['perplexity'] < 0)}")

    # PGR: use the given column, filling gaps from the raw scores when those are present.
    need = df["pgr"].isna() if "pgr" in df.columns else pd.Series(True, index=df.index)
    if need.any() and "pgr_note" in df.columns:  # the evaluation stage already judged these undefined
        undefined = need & df["pgr_note"].astype(str).str.startswith("undefined")
        if undefined.any():
            note = str(df.loc[undefined, "pgr_note"].iloc[0])
            raise PgScoreError(f"PGR is {note} in row(s) {_rows(df, undefined)}")
    if need.any():
        if not has_raw:
            raise PgScoreError(f"column 'pgr' has missing values (NaN) in row(s) {_rows(df, need)}")
        for c in RAW_EXTRINSIC:
            if df.loc[need, c].isna().any():
                raise PgScoreError(
                    f"column {c!r} has missing values (NaN) in row(s) {_rows(df, need & df[c].isna())}"
                )
        same = need & (df["base_score"] == df["reference_score"])
        if same.any():
            raise PgScoreError(
                f"base_score == reference_score in row(s) {_rows(df, same)}: PGR = (student - base) / "
                "(reference - base) is undefined; use a reference that differs from the base model"
            )
        pgr = compute_pgr(df["student_score"], df["base_score"], df["reference_score"], on_zero="nan")
        df["pgr"] = df["pgr"].where(~need, pgr) if "pgr" in df.columns else pgr

    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        hint = "" if "trial" in df.columns else "; add a 'trial' column for repeated runs"
        raise PgScoreError(f"duplicate {' × '.join(keys)} rows: {_rows(df, dup)}{hint}")
    return df


# ------------------------------------------------------------------------------------------- scoring
def score_rows(df: pd.DataFrame, weight: float = DEFAULT_WEIGHT, *, pgr_guard: str = "lenient",
               judge_excluded: dict | set | None = None) -> pd.DataFrame:
    """Per-row (per-trial) scores: the validated input plus z components, intrinsic_z, z_components and
    pg_score.

    z-scores are taken over all rows together; with a ``student`` column, over each student's rows
    (the synthetic data, hence its intrinsic metrics, are shared between students). ``pgr_guard``:
    ``strict`` blanks the PGR of rows with ``pgr_reliable == False``; ``judge_excluded``: languages whose
    judge failed calibration (their judge score is left out of Z, and out of the judge's mean/std).
    """
    _check_weight(weight)
    # Re-scoring a scored table: drop what this function derives (pgr, if present, is kept and reused).
    df = validate_metrics(df.drop(columns=[c for c in DERIVED if c in df.columns]))
    return _finish(fill_reliability(df), weight, pgr_guard, judge_excluded)


def fill_reliability(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``pgr_reliable`` where a table can tell: reference − base ≥ 2 × its SE, the SE from
    ``base_se``/``reference_se`` (independent errors; sqrt of the sum of squares). Rows that cannot tell stay NA."""
    if not {"base_se", "reference_se", "base_score", "reference_score"} <= set(df.columns):
        return df
    df = df.copy()
    gap = df["reference_score"].astype(float) - df["base_score"].astype(float)
    se = np.sqrt(pd.to_numeric(df["base_se"], errors="coerce") ** 2 + pd.to_numeric(df["reference_se"], errors="coerce") ** 2)
    computed = pd.Series(np.where(se.notna() & gap.notna(), gap >= 2 * se, pd.NA), index=df.index, dtype="boolean")
    if "pgr_reliable" in df.columns:
        given = df["pgr_reliable"].astype("boolean")
        df["pgr_reliable"] = given.fillna(computed)
    else:
        df["pgr_reliable"] = computed
    flagged = df["pgr_reliable"].eq(False).fillna(False).to_numpy(dtype=bool)
    if flagged.any():
        note = (f"reference-base gap under 2 SE: PGR kept but unreliable (scoring.pgr_guard: lenient)")
        old = df["pgr_note"].fillna("").astype(str) if "pgr_note" in df.columns else pd.Series("", index=df.index)
        df["pgr_note"] = np.where(flagged & ~old.str.contains("under 2 SE"), (old + "; " + note).str.strip("; "), old)
    return df


def apply_pgr_guard(df: pd.DataFrame, pgr_guard: str = "lenient") -> pd.DataFrame:
    """``strict``: blank the PGR of rows flagged ``pgr_reliable == False`` (reason in ``pgr_note``, starting
    ``undefined:``); ``lenient``: unchanged (the flag stays)."""
    if pgr_guard not in PGR_GUARDS:
        raise PgScoreError(f"unknown scoring.pgr_guard {pgr_guard!r}; use one of {', '.join(PGR_GUARDS)}")
    if pgr_guard == "lenient" or "pgr_reliable" not in df.columns or "pgr" not in df.columns:
        return df
    bad = (df["pgr_reliable"].astype("boolean").eq(False).fillna(False) & df["pgr"].notna()).to_numpy(dtype=bool)
    if not bad.any():
        return df
    df = df.copy()
    old = df["pgr_note"].fillna("").astype(str) if "pgr_note" in df.columns else pd.Series("", index=df.index)
    df.loc[bad, "pgr"] = np.nan
    df.loc[bad, "pgr_note"] = "undefined: reference-base gap under 2 SE (scoring.pgr_guard: strict); " + old[bad]
    return df


def _finish(df: pd.DataFrame, weight: float, pgr_guard: str, judge_excluded) -> pd.DataFrame:
    """Guard PGR, mask uncalibrated judges, z components (per student), intrinsic_z, z_components, pg_score."""
    df = apply_pgr_guard(df, pgr_guard)
    excluded = set(judge_excluded or ())
    if excluded and "judge_score" in df.columns:
        df = df.copy()
        df.loc[df["language"].astype(str).isin(excluded), "judge_score"] = np.nan
    if "student" in df.columns:
        comps = pd.concat([intrinsic_components(g) for _, g in df.groupby("student", sort=False)]).loc[df.index]
    else:
        comps = intrinsic_components(df)
    out = pd.concat([df.drop(columns=[c for c in comps.columns if c in df.columns]), comps], axis=1)
    out["intrinsic_z"] = comps.mean(axis=1, skipna=True)
    names = np.array([Z_NAMES[c] for c in comps.columns])
    used = comps.notna().to_numpy()
    out["z_components"] = [",".join(names[u]) for u in used]
    out["pg_score"] = pg_score(out["pgr"], out["intrinsic_z"], weight)
    return out


def score_table(df: pd.DataFrame, weight: float = DEFAULT_WEIGHT, *, pgr_guard: str = "lenient",
                intervals: bool = True, seed: int = 0) -> pd.DataFrame:
    """One row per teacher × language (× student, × method): intrinsic_z, pgr, pg_score, n_trials,
    pg_score_std (sample std over trials; NaN with one trial), z components and the input columns
    (numeric ones averaged over trials, text ones joined).

    ``intervals``: add 95 % intervals, P(best) and the teacher-level columns (``pgscore.uncertainty``)
    from what the table offers: several trials, ``<metric>_se`` columns, ``pgr_se`` / ``pgr_low`` +
    ``pgr_high`` / ``student_se``, ``base_se``, ``reference_se``; ``interval_source`` says which."""
    rows = score_rows(df, weight, pgr_guard=pgr_guard)
    table = average_trials(rows, key_columns(rows))
    if not intervals:
        return table
    from pgscore import uncertainty

    return uncertainty.attach(table, uncertainty.propagate(rows, weight, seed=seed))


def average_trials(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per-trial scored rows -> one row per ``keys``: numeric columns averaged (NaN skipped), text joined,
    plus ``n_trials`` and ``pg_score_std`` (sample std over trials)."""
    rows = rows.drop(columns=["trial"], errors="ignore")
    g = rows.groupby(keys, sort=False)
    numeric = [c for c in rows.columns if c not in keys and pd.api.types.is_numeric_dtype(rows[c])]
    text = [c for c in rows.columns if c not in keys and c not in numeric]
    out = g[numeric].mean()
    out["n_trials"] = g.size()
    out["pg_score_std"] = g["pg_score"].std(ddof=1)
    for c in text:
        out[c] = g[c].agg(lambda s: "; ".join(dict.fromkeys(str(v) for v in s.dropna())))
    out = out.reset_index()
    head = [*keys, "intrinsic_z", "pgr", "pg_score", "n_trials", "pg_score_std", *Z_COLUMNS]
    return out[head + [c for c in out.columns if c not in head]]


def leaderboard(scored: pd.DataFrame) -> pd.DataFrame:
    """Teachers ranked by mean PG-Score over languages, one column per language.

    With several students or methods, teachers are ranked within each (extra key columns in front).
    """
    _require_columns(scored, ("teacher", "language", "pg_score"))
    extra = [c for c in OPTIONAL_KEYS if c in scored.columns and scored[c].nunique() > 1]
    index = [*extra, "teacher"]
    wide = scored.pivot_table(index=index, columns="language", values="pg_score", aggfunc="mean", sort=False)
    languages = list(dict.fromkeys(scored["language"]))
    wide = wide.reindex(columns=languages)  # a language whose PG is undefined everywhere stays as NaN
    wide.columns.name = None
    wide.insert(0, "mean_pg", wide.mean(axis=1, skipna=True))
    wide.insert(1, "n_languages", wide[languages].notna().sum(axis=1))
    wide = wide.reset_index()
    wide = wide.sort_values([*extra, "mean_pg"], ascending=[True] * len(extra) + [False], kind="stable")
    rank = wide.groupby(extra, sort=False)["mean_pg"].rank(ascending=False, method="min") if extra else (
        wide["mean_pg"].rank(ascending=False, method="min")
    )
    wide.insert(0, "rank", rank.astype(int))
    wide = wide.reset_index(drop=True)
    # intervals and P(best), when the scored table carries them (pgscore.uncertainty.attach)
    teacher_cols = [c for c in ("mean_pg_low", "mean_pg_high", "p_best_overall") if c in scored.columns]
    if teacher_cols:
        t = scored.groupby(index, sort=False)[teacher_cols].first().reset_index()
        wide = wide.merge(t, on=index, how="left")
        at = wide.columns.get_loc("mean_pg") + 1
        for i, c in enumerate(teacher_cols):
            wide.insert(at + i, c, wide.pop(c))
    return wide


def leaderboard_intervals(scored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(low, high) wide tables of the PG-Score interval per teacher (rows, in ``leaderboard`` order's keys)
    × language; None when the scored table has no intervals."""
    if not {"pg_score_low", "pg_score_high"} <= set(scored.columns):
        return None
    extra = [c for c in OPTIONAL_KEYS if c in scored.columns and scored[c].nunique() > 1]
    index = [*extra, "teacher"]
    languages = list(dict.fromkeys(scored["language"]))
    out = []
    for c in ("pg_score_low", "pg_score_high"):
        w = scored.pivot_table(index=index, columns="language", values=c, aggfunc="mean", sort=False, dropna=False)
        w = w.reindex(columns=languages)
        w.columns.name = None
        out.append(w)
    return out[0], out[1]


def rescore(scored: pd.DataFrame, weight: float) -> pd.Series:
    """PG-Score at another λ from a scored table's ``pgr`` and ``intrinsic_z`` (PG is linear in both)."""
    _require_columns(scored, ("pgr", "intrinsic_z"))
    return pd.Series(pg_score(scored["pgr"], scored["intrinsic_z"], weight), index=scored.index, name="pg_score")


# ------------------------------------------------------------------------------------------- helpers
def _check_weight(weight: float) -> None:
    if not (isinstance(weight, (int, float, np.floating)) and 0.0 <= float(weight) <= 1.0):
        raise PgScoreError(f"weight λ must be a number in [0, 1], got {weight!r}")


def _require_columns(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise PgScoreError(f"table is missing column(s): {', '.join(missing)}")


def _short_list(items: list, limit: int = 5) -> str:
    head = ", ".join(str(i) for i in items[:limit])
    return head + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _rows(df: pd.DataFrame, mask) -> str:
    """Human description of flagged rows: 1-based data-row numbers plus their keys."""
    mask = np.asarray(mask, dtype=bool)
    positions = np.flatnonzero(mask)
    keys = [c for c in (*KEY_COLUMNS, *OPTIONAL_KEYS, "trial") if c in df.columns]
    parts = []
    for p in positions[:5]:
        desc = "/".join(str(df.iloc[p][c]) for c in keys)
        parts.append(f"{p + 1} ({desc})" if desc else str(p + 1))
    more = f" (+{len(positions) - 5} more)" if len(positions) > 5 else ""
    return ", ".join(parts) + more


# ------------------------------------------------------------------------------------ pipeline results
def result_keys(rows: pd.DataFrame) -> list[str]:
    """Keys of one scored row per dataset: teacher, language (+ student, the student base, when present)."""
    return [k for k in ("teacher", "language", "student") if k in rows.columns]


def score_results(
    metrics: pd.DataFrame, extrinsic: pd.DataFrame | None = None, weight: float = DEFAULT_WEIGHT, **kwargs
) -> tuple[pd.DataFrame, list[str]]:
    """Like :func:`score_result_rows`, averaged over trials per teacher × language (× student), with
    intervals and P(best) (see :func:`score_results_full`, which takes the same keyword arguments)."""
    scored, notes, _ = score_results_full(metrics, extrinsic, weight, **kwargs)
    return scored, notes


def score_results_full(
    metrics: pd.DataFrame,
    extrinsic: pd.DataFrame | None = None,
    weight: float = DEFAULT_WEIGHT,
    *,
    resamples: pd.DataFrame | None = None,
    calibration: pd.DataFrame | None = None,
    pgr_guard: str = "lenient",
    min_judge_auc: float | None = None,
    seed: int = 0,
):
    """(scored, notes, uncertainty): a results folder's tables scored with 95 % intervals, P(best) and the
    pairwise matrix (``pgscore.uncertainty.propagate``). ``resamples``: ``bootstrap.parquet``;
    ``calibration``: ``calibration.parquet`` (a judge below ``min_judge_auc`` in a language is left out of
    Z there; default: the threshold the measure stage recorded, else 0.6)."""
    from pgscore import uncertainty
    from pgscore.metrics.calibration import judge_drops

    threshold = _threshold(calibration, min_judge_auc)
    rows, notes = score_result_rows(metrics, extrinsic, weight, pgr_guard=pgr_guard, calibration=calibration,
                                    min_judge_auc=threshold)
    table = average_trials(rows, result_keys(rows))
    unc = uncertainty.propagate(rows, weight, resamples=resamples, judge_excluded=judge_drops(calibration, threshold),
                                seed=seed)
    table = uncertainty.attach(table, unc)
    if resamples is None:
        notes.append("no bootstrap.parquet: intrinsic metrics carry no example-level interval (re-run measure)")
    return table, notes, unc


def _threshold(calibration: pd.DataFrame | None, min_judge_auc: float | None) -> float:
    if min_judge_auc is not None:
        return float(min_judge_auc)
    if calibration is not None and "min_judge_auc" in calibration.columns and calibration["min_judge_auc"].notna().any():
        return float(calibration["min_judge_auc"].dropna().iloc[0])
    return 0.6


def score_result_rows(
    metrics: pd.DataFrame,
    extrinsic: pd.DataFrame | None = None,
    weight: float = DEFAULT_WEIGHT,
    *,
    pgr_guard: str = "lenient",
    calibration: pd.DataFrame | None = None,
    min_judge_auc: float | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Score a results folder's ``metrics`` (dataset rows, method ``all``) joined with ``extrinsic``.

    Unlike :func:`score_table`, missing pieces are reported instead of raised: without a student stage,
    or where the evaluation stage judged PGR undefined, ``pgr`` and ``pg_score`` stay NaN (the note says
    why) while ``intrinsic_z`` is still computed over all rows. ``pgr_guard`` (``scoring.pgr_guard``):
    ``strict`` blanks PGRs flagged ``pgr_reliable == False``. ``calibration``: languages whose judge AUC is
    below ``min_judge_auc`` leave the judge out of Z (a warning line each). Returns (per-trial rows, notes).
    """
    from pgscore.metrics.calibration import judge_drops

    _check_weight(weight)
    if pgr_guard not in PGR_GUARDS:
        raise PgScoreError(f"unknown scoring.pgr_guard {pgr_guard!r}; use one of {', '.join(PGR_GUARDS)}")
    notes: list[str] = []
    from pgscore.results import dataset_rows  # the one definition of the dataset-level rows

    m = dataset_rows(metrics)
    if m.empty:
        raise PgScoreError("no dataset-level metric rows (method == 'all') to score")
    if extrinsic is not None and len(extrinsic):
        # contract 1: `student` names the student base, `student_model` the trained student; an older
        # extrinsic table has only `student` = the trained student's path
        if "student_model" not in extrinsic.columns and "student" in extrinsic.columns:
            extrinsic = extrinsic.rename(columns={"student": "student_model"})
        keys = [k for k in ("teacher", "language", "student", "trial") if k in m.columns and k in extrinsic.columns]
        df = m.merge(extrinsic, on=keys, how="left", suffixes=("", "_extrinsic"))
    else:
        df = m.copy()
        df["pgr"] = np.nan
        df["pgr_note"] = "undefined: no student stage ran"
        notes.append("no student results: PG-Score needs PGR, only intrinsic Z is scored")
    if "pgr_note" not in df.columns:
        df["pgr_note"] = ""
    df["pgr_note"] = df["pgr_note"].fillna("undefined: no student for this dataset")
    if "pgr" not in df.columns:
        df["pgr"] = np.nan
    df = fill_reliability(df)
    if "pgr_reliable" in df.columns:
        n_unrel = int((df["pgr_reliable"].astype("boolean").eq(False).fillna(False) & df["pgr"].notna()).sum())
        if n_unrel:
            notes.append(f"{n_unrel} PGR(s) rest on a reference-base gap under 2 SE (pgr_reliable=false): "
                         + ("kept, flagged (scoring.pgr_guard: lenient)" if pgr_guard == "lenient"
                            else "blanked (scoring.pgr_guard: strict)"))
    threshold = _threshold(calibration, min_judge_auc)
    excluded = judge_drops(calibration, threshold)
    for lang, a in excluded.items():
        notes.append(f"warning: judge AUC {a:.2f} < metrics.min_judge_auc {threshold:g} in {lang}: "
                     f"judge_score is left out of Z for {lang}")

    complete = df["pgr"].notna().all() and not df[list(REQUIRED_INTRINSIC)].isna().any().any()
    if complete:  # the validated path of `pgscore score`
        return score_rows(df, weight, pgr_guard=pgr_guard, judge_excluded=excluded), notes

    for c in REQUIRED_INTRINSIC:
        if df[c].isna().all():
            notes.append(f"{c} is missing for every dataset: intrinsic Z uses the other components")
        elif df[c].isna().any():
            notes.append(f"{c} is missing for {int(df[c].isna().sum())} dataset(s): their Z uses the other components")
    df = _finish(df, weight, pgr_guard, excluded)
    n_undef = int(df["pgr"].isna().sum())
    if n_undef and extrinsic is not None and len(extrinsic):
        notes.append(f"PGR undefined for {n_undef} of {len(df)} datasets (see pgr_note): their PG-Score is NaN")

    return df, notes
