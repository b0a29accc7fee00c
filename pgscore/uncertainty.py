"""Intervals, P(best) and "A beats B" for PG-Scores: resamples of every component propagated to PG.

Per scored row (teacher × language [× student] × trial) and resample b, each input gets a draw:

- intrinsic metrics: the measure stage's bootstrap over examples (``bootstrap.parquet``, see
  ``pgscore/metrics/bootstrap.py``); else a normal draw from a ``<metric>_se`` column; else the point
  value (no noise from that component; ``interval_source`` says so);
- PGR: normal draws N(pgr, pgr_se) (``pgr_se`` from the evaluation stage's paired bootstrap); else an SE
  from ``pgr_low``/``pgr_high`` (95 % interval / 3.92); else the delta-method SE from
  ``student_se``/``base_se``/``reference_se`` columns; else the point value.

Each draw goes through the same z-transform as the point estimate, with the across-row mean and standard
deviation **held fixed** at the point estimate's (see docs/scoring.md): Z_b and PG_b are then exactly the
point formulas applied to the resampled row, so the interval of a row measures that row's own sampling
noise, and comparisons between teachers (P(best), A beats B) compare draws in one frame. Trials: several
trials of a teacher × language are resampled too (multinomial weights over trials per resample), then
averaged; this is the two-stage (trials, then examples) bootstrap.

From the per-row draws: 95 % percentile intervals of each metric, Z, PGR and PG per teacher × language,
the teacher's mean over languages with its interval, P(best) per language and overall (ties split), and
the pairwise matrix P(A's mean PG > B's). Pure numpy/pandas; :func:`score_folder` at the bottom is the one
function that reads files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

METRICS = ("prompt_diversity", "response_diversity", "perplexity", "judge_score")
COMPONENT_OF = {  # metric -> z column of scoring.py
    "prompt_diversity": "z_prompt_diversity",
    "response_diversity": "z_response_diversity",
    "judge_score": "z_judge_score",
    "perplexity": "z_neg_log1p_perplexity",
}
INTERVAL_OF = (*METRICS, "intrinsic_z", "pgr", "pg_score")
DEFAULT_RESAMPLES = 1000
SEPARABLE_AT = 0.95  # P(A beats B) needed to call the top two separable
Z95 = 1.959963984540054


@dataclass
class Uncertainty:
    """Result of :func:`propagate`.

    ``intervals``: one row per group (teacher × language [× student, method]) with ``<x>_low``/``<x>_high``
    for x in INTERVAL_OF, ``p_best`` (in its language) and ``interval_source``; ``teachers``: per teacher
    (within student/method): mean_pg, mean_pg_low, mean_pg_high, p_best_overall; ``pairwise``: per
    extra-key tuple, a teacher × teacher DataFrame of P(row teacher's mean beats column teacher's);
    ``messages``: separability of the top two overall and per language; ``value``: what was ranked
    (``pg_score``, or ``intrinsic_z`` where no PGR is defined).
    """

    intervals: pd.DataFrame
    teachers: pd.DataFrame
    pairwise: dict = field(default_factory=dict)
    p_best: pd.DataFrame = field(default_factory=pd.DataFrame)
    messages: list[str] = field(default_factory=list)
    n_resamples: int = 0
    value: str = "pg_score"


# ------------------------------------------------------------------------------------------- draws
def _metric_draws(rows: pd.DataFrame, resamples: pd.DataFrame | None, B: int, rng: np.random.Generator):
    """{metric: (B, R) draws} and {metric: (R,) source label}."""
    R = len(rows)
    draws, source = {}, {}
    keyed = None
    if resamples is not None and len(resamples):
        keys = [k for k in ("teacher", "language", "student", "trial") if k in resamples.columns and k in rows.columns]
        rs = resamples.copy()
        for k in keys:
            rs[k] = rs[k].astype(str)
        keyed = {k: g.sort_values("resample") for k, g in rs.groupby(keys, sort=False)}
        row_keys = [tuple(str(v) for v in t) for t in rows[keys].itertuples(index=False)]
        row_keys = [k if len(keys) > 1 else k[0] for k in row_keys]
    for m in METRICS:
        point = rows[m].to_numpy(dtype=float) if m in rows.columns else np.full(R, np.nan)
        d = np.tile(point, (B, 1))
        src = np.array(["none"] * R, dtype=object)
        se_col = f"{m}_se"
        if se_col in rows.columns:
            se = pd.to_numeric(rows[se_col], errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(se) & (se > 0) & np.isfinite(point)
            if ok.any():
                d[:, ok] = point[ok] + se[ok] * rng.standard_normal((B, int(ok.sum())))
                src[ok] = "se"
        if keyed is not None:
            for r, k in enumerate(row_keys):
                g = keyed.get(k)
                if g is None or not np.isfinite(point[r]):
                    continue
                vals = g[m].to_numpy(dtype=float)
                vals = vals[np.isfinite(vals)]  # a tiny dataset's resample of one distinct example has no diversity
                if len(vals) == 0:
                    continue
                d[:, r] = vals[np.arange(B) % len(vals)]
                src[r] = "examples"
        draws[m], source[m] = d, src
    return draws, source


def pgr_se_of(rows: pd.DataFrame) -> np.ndarray:
    """SE of each row's PGR: pgr_se, else from pgr_low/pgr_high, else the delta method from the raw scores'
    SEs (student_se, base_se, reference_se; absent ones count as 0); NaN where nothing says."""
    R = len(rows)
    col = lambda c: np.array(pd.to_numeric(rows[c], errors="coerce"), dtype=float) if c in rows.columns else np.full(R, np.nan)  # noqa: E731
    se = col("pgr_se")
    lo, hi = col("pgr_low"), col("pgr_high")
    fill = ~np.isfinite(se) & np.isfinite(lo) & np.isfinite(hi)
    se[fill] = (hi[fill] - lo[fill]) / (2 * Z95)
    es, eb, er = col("student_se"), col("base_se"), col("reference_se")
    have = np.isfinite(es) | np.isfinite(eb) | np.isfinite(er)
    s, b, r = col("student_score"), col("base_score"), col("reference_score")
    g = r - b
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.sqrt((np.nan_to_num(es) / g) ** 2 + (np.nan_to_num(eb) * (s - r) / g**2) ** 2
                        + (np.nan_to_num(er) * (s - b) / g**2) ** 2)
    fill = ~np.isfinite(se) & have & np.isfinite(delta)
    se[fill] = delta[fill]
    return se


def _pgr_draws(rows: pd.DataFrame, B: int, rng: np.random.Generator):
    point = rows["pgr"].to_numpy(dtype=float) if "pgr" in rows.columns else np.full(len(rows), np.nan)
    se = pgr_se_of(rows)
    d = np.tile(point, (B, 1))
    ok = np.isfinite(se) & (se > 0) & np.isfinite(point)
    d[:, ok] = point[ok] + se[ok] * rng.standard_normal((B, int(ok.sum())))
    src = np.where(ok, "se", "none").astype(object)
    return d, src


def _z_frame(rows: pd.DataFrame, groups: np.ndarray, judge_mask: np.ndarray):
    """Per row the (mean, std) of each transformed component over its z pool (student group), from the
    point values exactly as scoring.zscore takes them (population std; a constant column -> std None)."""
    frame = {}
    for m in METRICS:
        x = _transform(m, rows[m].to_numpy(dtype=float)) if m in rows.columns else np.full(len(rows), np.nan)
        if m == "judge_score":
            x = np.where(judge_mask, np.nan, x)
        mean = np.full(len(rows), np.nan)
        std = np.full(len(rows), np.nan)
        for gval in np.unique(groups):
            sel = groups == gval
            f = x[sel][np.isfinite(x[sel])]
            if f.size == 0:
                continue
            mu, sd = f.mean(), f.std(ddof=0)
            if np.ptp(f) == 0 or sd <= 1e-12 * max(1.0, abs(mu)):
                sd = 0.0
            mean[sel], std[sel] = mu, sd
        frame[m] = (mean, std)
    return frame


def _transform(metric: str, x):
    x = np.asarray(x, dtype=float)
    return -np.log1p(x) if metric == "perplexity" else x


def _z_draws(draws: dict, frame: dict, judge_mask: np.ndarray) -> np.ndarray:
    """(B, R) intrinsic Z draws: mean over the components defined for the row."""
    zs = []
    for m in METRICS:
        mean, std = frame[m]
        x = _transform(m, draws[m])
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), np.where(np.isfinite(x), 0.0, np.nan))
        z = np.where(np.isfinite(mean), z, np.nan)
        if m == "judge_score":
            z[:, judge_mask] = np.nan
        zs.append(z)
    stack = np.stack(zs)  # (4, B, R)
    with np.errstate(invalid="ignore"):
        cnt = np.isfinite(stack).sum(axis=0)
        return np.where(cnt > 0, np.nansum(stack, axis=0) / np.maximum(cnt, 1), np.nan)


# ------------------------------------------------------------------------------------------- main
def propagate(
    rows: pd.DataFrame,
    weight: float = 0.5,
    resamples: pd.DataFrame | None = None,
    judge_excluded: dict | set | None = None,
    n_resamples: int | None = None,
    seed: int = 0,
) -> Uncertainty:
    """Intervals and P(best) from per-trial scored rows (``scoring.score_rows`` / ``score_result_rows``).

    ``resamples``: the measure stage's long table (keys + ``resample`` + metrics); ``judge_excluded``:
    languages whose judge is left out of Z (calibration); ``n_resamples``: B (default: the number of
    example resamples available, else 1000).
    """
    rows = rows.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    if n_resamples is None:
        n_resamples = int(resamples["resample"].nunique()) if resamples is not None and len(resamples) else DEFAULT_RESAMPLES
    B = max(int(n_resamples), 2)
    excluded = set(judge_excluded or ())
    judge_mask = rows["language"].astype(str).isin(excluded).to_numpy()
    groups = rows["student"].astype(str).to_numpy() if "student" in rows.columns else np.zeros(len(rows), dtype=int)

    draws, sources = _metric_draws(rows, resamples, B, rng)
    pgr, pgr_src = _pgr_draws(rows, B, rng)
    z = _z_draws(draws, _z_frame(rows, groups, judge_mask), judge_mask)
    pg = weight * pgr + (1.0 - weight) * z
    per_row = {**draws, "intrinsic_z": z, "pgr": pgr, "pg_score": pg}

    keys = [k for k in ("teacher", "language", "student", "method") if k in rows.columns]
    extra = [k for k in ("student", "method") if k in rows.columns]
    gdf = rows[keys].astype(str).drop_duplicates().reset_index(drop=True)
    gidx = {tuple(t): i for i, t in enumerate(gdf.itertuples(index=False))}
    row_group = np.array([gidx[tuple(t)] for t in rows[keys].astype(str).itertuples(index=False)])
    G = len(gdf)

    # trials: multinomial weights over a group's trials per resample, then the weighted mean
    agg = {name: np.full((B, G), np.nan) for name in per_row}
    n_trials = np.zeros(G, dtype=int)
    for gi in range(G):
        idx = np.flatnonzero(row_group == gi)
        n_trials[gi] = len(idx)
        Wt = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=B).astype(float) if len(idx) > 1 \
            else np.ones((B, 1))
        for name, d in per_row.items():
            v = d[:, idx]
            fin = np.isfinite(v)
            w = np.where(fin, Wt, 0.0)
            tot = w.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                agg[name][:, gi] = np.where(tot > 0, (np.where(fin, v, 0.0) * w).sum(axis=1) / np.where(tot > 0, tot, 1),
                                            np.nan)

    point_pg = rows.assign(_g=row_group).groupby("_g")["pg_score"].mean().reindex(range(G)).to_numpy(dtype=float) \
        if "pg_score" in rows.columns else np.full(G, np.nan)
    value = "pg_score"
    if not np.isfinite(point_pg).any():
        value = "intrinsic_z"
        point_pg = rows.assign(_g=row_group).groupby("_g")["intrinsic_z"].mean().reindex(range(G)).to_numpy(dtype=float)
    rank_draws = agg[value]

    out = gdf.copy()
    out["n_trials"] = n_trials
    with np.errstate(invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for name in INTERVAL_OF:
                lo, hi = np.nanpercentile(agg[name], [2.5, 97.5], axis=0)
                spread = np.nanmax(agg[name], axis=0) - np.nanmin(agg[name], axis=0)
                noiseless = ~(spread > 0)  # no noise source: no interval (rather than a zero-width one)
                out[f"{name}_low"] = np.where(noiseless, np.nan, lo)
                out[f"{name}_high"] = np.where(noiseless, np.nan, hi)
    src = []
    for gi in range(G):
        idx = np.flatnonzero(row_group == gi)
        parts = sorted({s for m in METRICS for s in sources[m][idx] if s != "none"})
        pieces = [f"metrics:{'+'.join(parts)}"] if parts else []
        if (pgr_src[idx] != "none").any():
            pieces.append("pgr:se")
        if len(idx) > 1:
            pieces.append(f"trials:{len(idx)}")
        src.append(", ".join(pieces) or "none")
    out["interval_source"] = src

    # P(best) per language (within student / method)
    out["p_best"] = np.nan
    pb_rows, messages = [], []
    finite_point = np.isfinite(point_pg)
    for gkey, g in out.groupby([*extra, "language"], sort=False):
        idx = g.index.to_numpy()
        idx = idx[finite_point[idx]]
        if len(idx) == 0:
            continue
        p = _p_best(rank_draws[:, idx])
        out.loc[idx, "p_best"] = p
        for i, pi in zip(idx, p):
            pb_rows.append({**{k: out.loc[i, k] for k in [*extra, "language", "teacher"]}, "p_best": pi})
        if len(idx) >= 2:
            order = idx[np.argsort(-point_pg[idx], kind="stable")]
            msg = _separable(out.loc[order[0], "teacher"], out.loc[order[1], "teacher"],
                             rank_draws[:, order[0]], rank_draws[:, order[1]])
            lang = gkey[-1] if isinstance(gkey, tuple) else gkey
            messages.append(f"{_label(extra, gkey)}{lang}: {msg}")

    # teacher means over languages (within student / method)
    tgroups = out.groupby([*extra, "teacher"], sort=False)
    trows, means, tk = [], [], []
    for tkey, g in tgroups:
        idx = g.index.to_numpy()
        idx = idx[finite_point[idx]]
        if len(idx) == 0:
            continue
        with np.errstate(invalid="ignore"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                md = np.nanmean(rank_draws[:, idx], axis=1)
        tkey = tkey if isinstance(tkey, tuple) else (tkey,)
        lo, hi = (np.nanpercentile(md, [2.5, 97.5]) if np.ptp(md[np.isfinite(md)]) > 0 else (np.nan, np.nan))
        trows.append({**dict(zip([*extra, "teacher"], tkey)), "mean_pg": float(np.mean(point_pg[idx])),
                      "mean_pg_low": float(lo), "mean_pg_high": float(hi), "n_languages": len(idx)})
        means.append(md)
        tk.append(tkey)
    teachers = pd.DataFrame(trows)
    pairwise: dict = {}
    if len(teachers):
        teachers["p_best_overall"] = np.nan
        M = np.stack(means, axis=1)  # (B, T)
        for ekey, g in teachers.groupby(extra, sort=False) if extra else [((), teachers)]:
            idx = g.index.to_numpy()
            teachers.loc[idx, "p_best_overall"] = _p_best(M[:, idx])
            names = teachers.loc[idx, "teacher"].tolist()
            mat = pairwise_matrix(M[:, idx])
            pairwise[ekey if isinstance(ekey, tuple) else (ekey,)] = pd.DataFrame(mat, index=names, columns=names)
            if len(idx) >= 2:
                order = idx[np.argsort(-teachers.loc[idx, "mean_pg"].to_numpy(), kind="stable")]
                messages.insert(0, f"{_label(extra, ekey)}overall: " + _separable(
                    teachers.loc[order[0], "teacher"], teachers.loc[order[1], "teacher"], M[:, order[0]], M[:, order[1]]))
    p_best = pd.DataFrame(pb_rows)
    return Uncertainty(out, teachers, pairwise, p_best, messages, B, value)


def _p_best(D: np.ndarray) -> np.ndarray:
    """Share of resamples (rows of D, columns = candidates) where each column is highest; ties split;
    NaN draws never win."""
    X = np.where(np.isfinite(D), D, -np.inf)
    top = X.max(axis=1, keepdims=True)
    win = (X == top) & np.isfinite(top)
    share = win / np.maximum(win.sum(axis=1, keepdims=True), 1)
    return share.mean(axis=0)


def pairwise_matrix(M: np.ndarray) -> np.ndarray:
    """P(column i's draw > column j's) over the rows of M (ties count 1/2); the diagonal is NaN."""
    a = M[:, :, None]
    b = M[:, None, :]
    ok = np.isfinite(a) & np.isfinite(b)
    wins = ((a > b) + 0.5 * (a == b)) * ok
    with np.errstate(invalid="ignore", divide="ignore"):
        P = wins.sum(axis=0) / ok.sum(axis=0)
    np.fill_diagonal(P, np.nan)
    return P


def _separable(a: str, b: str, da: np.ndarray, db: np.ndarray) -> str:
    ok = np.isfinite(da) & np.isfinite(db)
    if not ok.any() or np.ptp(np.concatenate([da[ok], db[ok]])) == 0:
        return f"{a} leads {b}; no interval (no noise source), separability unknown"
    p = float(((da[ok] > db[ok]) + 0.5 * (da[ok] == db[ok])).mean())
    if p >= SEPARABLE_AT:
        return f"{a} beats {b} in {100 * p:.0f}% of resamples (separable)"
    return f"top two not separable: {a} beats {b} in only {100 * p:.0f}% of resamples (< {100 * SEPARABLE_AT:.0f}%)"


def _label(extra: list[str], key) -> str:
    if not extra:
        return ""
    key = key if isinstance(key, tuple) else (key,)
    return "".join(f"{k}={v} " for k, v in zip(extra, key) if k != "language")


def attach(scored: pd.DataFrame, unc: Uncertainty) -> pd.DataFrame:
    """``scored`` (one row per group) with the interval columns, p_best, and the teacher-level
    mean_pg_low/mean_pg_high/p_best_overall repeated on each of the teacher's rows."""
    keys = [k for k in ("teacher", "language", "student", "method") if k in scored.columns]
    cols = [c for c in unc.intervals.columns if c not in keys and c != "n_trials"]
    left = scored.drop(columns=[c for c in cols if c in scored.columns])
    lk = left[keys].astype(str)
    right = unc.intervals[[*keys, *cols]]
    merged = lk.merge(right, on=keys, how="left")
    for c in cols:
        left[c] = merged[c].to_numpy()
    if len(unc.teachers):
        tkeys = [k for k in ("student", "method", "teacher") if k in scored.columns]
        t = unc.teachers[[*tkeys, "mean_pg_low", "mean_pg_high", "p_best_overall"]]
        m2 = left[tkeys].astype(str).merge(t.astype({k: str for k in tkeys}), on=tkeys, how="left")
        for c in ("mean_pg_low", "mean_pg_high", "p_best_overall"):
            left[c] = m2[c].to_numpy()
    left["n_resamples"] = unc.n_resamples
    return left


# ------------------------------------------------------------------------------------------- I/O
def score_folder(folder, weight: float | None = None, pgr_guard: str | None = None,
                 min_judge_auc: float | None = None, seed: int = 0):
    """Score a results folder with intervals: (scored table, notes, Uncertainty), read through
    ``pgscore.results.ResultsFolder.scored_full`` (metrics, extrinsic, bootstrap.parquet, calibration.parquet).
    ``weight`` / ``pgr_guard`` default to the folder's experiment."""
    from pgscore.results import ResultsFolder

    return ResultsFolder(folder).require_dir().scored_full(pgr_guard, weight, seed=seed, min_judge_auc=min_judge_auc)
