"""Bootstrap resamples of the dataset-level intrinsic metrics, vectorised over resamples.

A resample of a dataset of N examples is a vector of multinomial counts w (Σ w_i = N). For every
resample at once (W: B × N):

- mean metrics (perplexity, judge score): Σ_i w_i x_i / Σ_i w_i over the examples where x is defined;
- diversity = 1 − mean pairwise cosine, with unit vectors e_i:
  ``mean_cos(w) = (‖Σ_i w_i e_i‖² − Σ_i w_i² ‖e_i‖²) / (N² − Σ_i w_i²)``,
  i.e. the weighted mean of cos(e_i, e_j) over pairs of *different* original examples i ≠ j (copies of the
  same example drawn twice are not compared with each other: their cosine of 1 would pull every resample's
  diversity down). ``S = W @ E`` is one matrix product; no N × N matrix and no Python loop per resample.

The measure stage (``pgscore/metrics/measure.py``) calls :func:`measure_hook` once after measuring:
it writes ``bootstrap.parquet`` (one row per dataset × resample) and runs the calibration
(``pgscore/metrics/calibration.py``). Pure math first, I/O at the bottom.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

DEFAULT_RESAMPLES = 200
METRICS = ("prompt_diversity", "response_diversity", "perplexity", "judge_score")
BOOTSTRAP_FILE = "bootstrap.parquet"  # pgscore.results.FILES["bootstrap"]
RESAMPLE_COLUMNS = ["teacher", "language", "trial", "resample", *METRICS]


# ------------------------------------------------------------------------------------------- math
def dataset_seed(seed: int, *key) -> np.random.Generator:
    """A generator seeded by ``seed`` and the dataset's key (stable across runs and row orders)."""
    digest = hashlib.sha256("\x1f".join(str(k) for k in key).encode("utf-8")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def multinomial_weights(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, n) bootstrap counts: each row is a resample of n examples drawn with replacement."""
    if n <= 0:
        return np.zeros((n_resamples, 0), dtype=np.int32)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.int32)


def unit_rows(X) -> np.ndarray:
    """Rows scaled to norm 1 (float64); zero rows stay zero (cosine 0 with everything)."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    inv = np.zeros_like(norms)
    inv[norms > 0] = 1.0 / norms[norms > 0]
    return X * inv[:, None]


def weighted_mean_cosine(U: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Mean cos(u_i, u_j) over pairs of different examples, weighted by w_i·w_j, for each row of W.

    ``U``: (N, d) unit (or zero) rows; ``W``: (B, N) counts. Returns (B,); NaN where a resample holds fewer
    than two distinct examples.
    """
    W = np.asarray(W, dtype=np.float64)
    S = W @ U  # (B, d)
    sq_norms = np.einsum("ij,ij->i", U, U)  # 1 for unit rows, 0 for zero rows
    num = np.einsum("bd,bd->b", S, S) - (W * W) @ sq_norms
    den = W.sum(axis=1) ** 2 - (W * W).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def weighted_mean_cosine_naive(U: np.ndarray, w: np.ndarray) -> float:
    """The explicit N × N definition for one resample (tests): Σ_{i≠j} w_i w_j cos_ij / Σ_{i≠j} w_i w_j."""
    U = unit_rows(U)
    w = np.asarray(w, dtype=np.float64)
    C = U @ U.T
    P = np.outer(w, w)
    np.fill_diagonal(P, 0.0)
    return float((P * C).sum() / P.sum())


def weighted_means(x, W: np.ndarray) -> np.ndarray:
    """Σ w_i x_i / Σ w_i over the examples where x is finite, for each row of W (NaN if none)."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    W = np.asarray(W, dtype=np.float64)[:, ok]
    tot = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (W @ x[ok]) / np.where(tot > 0, tot, 1.0), np.nan)


def dataset_resamples(
    n_resamples: int,
    rng: np.random.Generator,
    prompt_vecs: np.ndarray | None = None,
    response_vecs: np.ndarray | None = None,
    perplexity: Sequence[float] | None = None,
    judge_score: Sequence[float] | None = None,
    n: int | None = None,
) -> dict[str, np.ndarray]:
    """The four metrics of one dataset under ``n_resamples`` bootstrap resamples (NaN arrays where the
    input is missing). All metrics share the same resampled examples."""
    sizes = [len(a) for a in (prompt_vecs, response_vecs, perplexity, judge_score) if a is not None]
    n = n if n is not None else (sizes[0] if sizes else 0)
    if any(s != n for s in sizes):
        raise ValueError(f"per-example inputs differ in length: {sizes}")
    W = multinomial_weights(n, n_resamples, rng)
    nan = np.full(n_resamples, np.nan)
    out = {}
    out["prompt_diversity"] = 1.0 - weighted_mean_cosine(unit_rows(prompt_vecs), W) if prompt_vecs is not None else nan
    out["response_diversity"] = (1.0 - weighted_mean_cosine(unit_rows(response_vecs), W)
                                 if response_vecs is not None else nan.copy())
    out["perplexity"] = weighted_means(perplexity, W) if perplexity is not None else nan.copy()
    out["judge_score"] = weighted_means(judge_score, W) if judge_score is not None else nan.copy()
    return out


def resample_table(
    ex: pd.DataFrame,
    prompt_vecs: np.ndarray | None,
    response_vecs: np.ndarray | None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    keys: Sequence[str] = ("teacher", "language", "trial"),
) -> pd.DataFrame:
    """Long table: one row per dataset (``keys``, all methods together as ``metrics.parquet``'s
    ``method == "all"`` rows) × resample, with the four metrics. Row order of ``ex`` matches the vectors'.

    The judge mean uses only verdicts with ``judge_status == "ok"`` (as the measure stage does).
    """
    keys = [k for k in keys if k in ex.columns]
    ex = ex.reset_index(drop=True)
    ppl = ex["perplexity"].astype(float).to_numpy() if "perplexity" in ex.columns else None
    judge = None
    if "judge_score" in ex.columns and ex["judge_score"].notna().any():
        judge = pd.to_numeric(ex["judge_score"], errors="coerce").astype(float).to_numpy()
        if "judge_status" in ex.columns:
            judge = np.where(ex["judge_status"].astype(str).to_numpy() == "ok", judge, np.nan)
    frames = []
    for key, g in ex.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        idx = g.index.to_numpy()
        res = dataset_resamples(
            n_resamples, dataset_seed(seed, *key),
            prompt_vecs[idx] if prompt_vecs is not None else None,
            response_vecs[idx] if response_vecs is not None else None,
            ppl[idx] if ppl is not None else None,
            judge[idx] if judge is not None else None,
            n=len(idx),
        )
        part = pd.DataFrame({k: [v] * n_resamples for k, v in zip(keys, key)})
        part["resample"] = np.arange(n_resamples, dtype=np.int32)
        for m in METRICS:
            part[m] = res[m]
        frames.append(part)
    if not frames:
        return pd.DataFrame(columns=[*keys, "resample", *METRICS])
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------- hook
def measure_hook(out_dir: str | Path, synthetic: pd.DataFrame, ex: pd.DataFrame, cfg, models: dict,
                 notes: list[str], cache_dir: Path | None = None) -> None:
    """Called once by ``run_measure`` after the metrics are computed (inside the run ledger's lifetime):
    writes ``bootstrap.parquet`` and runs the per-language calibration (``calibration.parquet``).

    Embeddings come from the measure stage's embedding cache (or, for a server embedder, its ledger):
    the same texts, no re-encoding. With perplexity per student base, ``ex`` holds one block of rows per
    base (same row order); each block is resampled with the same example weights.
    """
    from pgscore.io import write_table
    from pgscore.metrics.measure import EmbeddingCache, text_hash, embed_texts, select_ok

    out = Path(out_dir)
    n_boot = int(getattr(cfg, "bootstrap", DEFAULT_RESAMPLES) or 0)
    seed = int(getattr(cfg, "bootstrap_seed", 0) or 0)
    embedder = models.get("embedder")
    cache = None
    if embedder is not None:
        cache = EmbeddingCache(cache_dir / text_hash(embedder.name)[:12] if cache_dir is not None else None)
    if n_boot > 0:
        df = select_ok(synthetic, cfg.max_examples)
        n = len(df)
        pv = rv = None
        if embedder is not None:
            vecs = embed_texts(df["prompt"].tolist() + df["response"].tolist(), embedder, cache, cfg.chunk_size)
            pv, rv = vecs[:n], vecs[n:]
        blocks = [ex] if "student" not in ex.columns else [g for _, g in ex.groupby("student", sort=False)]
        parts = []
        for block in blocks:
            block = block.reset_index(drop=True)
            if len(block) != n:
                notes.append("bootstrap skipped: per-example rows do not line up with the synthetic rows")
                parts = []
                break
            part = resample_table(block, pv, rv, n_boot, seed=seed)
            if "student" in block.columns:
                part.insert(part.columns.get_loc("trial") + 1, "student", block["student"].iloc[0])
            parts.append(part)
        if parts:
            write_table(pd.concat(parts, ignore_index=True), out / BOOTSTRAP_FILE)
    else:
        (out / BOOTSTRAP_FILE).unlink(missing_ok=True)
        notes.append("bootstrap resamples skipped (metrics.bootstrap = 0): scores carry no example-level interval")
    from pgscore.metrics.calibration import run_calibration

    cal_models = dict(models)
    if cal_models.get("perplexity_model") is None and cal_models.get("perplexity_models"):
        cal_models["perplexity_model"] = next(iter(cal_models["perplexity_models"].values()))
    run_calibration(out, cfg, cal_models, notes, embed_cache=cache)
