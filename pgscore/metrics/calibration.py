"""Per-language calibration of the judge, the perplexity model and the embedder, before their metrics count.

From a language's own seed pairs (human-written prompt + response) pgscore builds a small set of
*matched* pairs and *corrupted* ones, cycling through four corruptions:

- ``swapped``: the prompt with another seed pair's response;
- ``other_language``: the prompt with a response from another language's seed pairs (``swapped`` when
  the run has a single language);
- ``truncated``: the first quarter of the response's words (characters for text without spaces);
- ``shuffled``: the response's words in random order (characters for text without spaces).

Measured per language (``calibration.parquet``, one row per language):

- ``judge_auc``: ROC AUC of the judge's 1–5 score at ranking matched above corrupted pairs
  (``sklearn.metrics.roc_auc_score``; ties count one half, so a judge that gives every pair the same
  score has AUC 0.5). Below ``metrics.min_judge_auc`` (default 0.6) the judge is left out of Z for that
  language (scoring.py; one warning line).
- ``perplexity_auc``: AUC of −perplexity at preferring each real response over its word-shuffled copy.
- ``embedder_auc`` / ``embedder_gap``: how well cosine(prompt, response) separates a prompt's own
  response (related) from another prompt's response (unrelated): AUC and the difference of mean cosines.
  No paraphrase corpus ships offline, so "related" is a prompt with its own human response.

Model calls go through whatever the caller passes (the measure stage passes its ledger-wrapped models
and embedding cache, so a resumed run repeats no call).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pgscore.errors import PgScoreError

CALIBRATION_FILE = "calibration.parquet"  # pgscore.results.FILES["calibration"]
DEFAULT_PAIRS = 8
DEFAULT_MIN_JUDGE_AUC = 0.6
CORRUPTIONS = ("swapped", "other_language", "truncated", "shuffled")
COLUMNS = [
    "language", "n_matched", "n_corrupted", "corruptions", "judge", "judge_auc", "judge_n", "judge_matched_mean",
    "judge_corrupted_mean", "perplexity_model", "perplexity_auc", "embedder", "embedder_auc", "embedder_gap",
    "min_judge_auc", "judge_in_z", "note",
]


# ------------------------------------------------------------------------------------------- pure parts
def _units(text: str) -> tuple[list[str], str]:
    """Words (joined by spaces) or, for text without spaces (Japanese, Chinese, Thai), characters."""
    words = text.split()
    return (words, " ") if len(words) >= 2 else (list(text), "")


def truncate(text: str, keep: float = 0.25) -> str:
    units, sep = _units(text)
    return sep.join(units[: max(1, int(len(units) * keep))])


def shuffle_words(text: str, rng: np.random.Generator) -> str:
    units, sep = _units(text)
    if len(units) < 2:
        return text
    order = rng.permutation(len(units))
    if (order == np.arange(len(units))).all():  # never return the text unchanged
        order = np.roll(order, 1)
    return sep.join(units[i] for i in order)


def build_calibration_set(pairs: pd.DataFrame, other: pd.DataFrame | None = None, n: int = DEFAULT_PAIRS,
                          seed: int = 0) -> pd.DataFrame:
    """``n`` matched pairs and ``n`` corrupted ones from ``pairs`` (columns prompt, response).

    Returns columns: prompt, response, label (1 matched, 0 corrupted), kind, source (row of ``pairs``).
    ``other``: seed pairs of other languages (for ``other_language``).
    """
    pairs = pairs[pairs["response"].fillna("").astype(str).str.strip() != ""].reset_index(drop=True)
    m = min(n, len(pairs))
    if m < 2:
        raise PgScoreError(f"calibration needs at least 2 seed pairs with a response, got {len(pairs)}")
    rng = np.random.default_rng(seed)
    pairs = pairs.iloc[:m]
    prompts, responses = pairs["prompt"].astype(str).tolist(), pairs["response"].astype(str).tolist()
    others = [] if other is None else [r for r in other["response"].dropna().astype(str) if r.strip()]
    rows = [{"prompt": p, "response": r, "label": 1, "kind": "matched", "source": i}
            for i, (p, r) in enumerate(zip(prompts, responses))]
    for k in range(m):
        kind = CORRUPTIONS[k % len(CORRUPTIONS)]
        i = k
        if kind == "other_language" and not others:
            kind = "swapped"
        if kind == "swapped":
            resp = responses[(i + 1) % m]
        elif kind == "other_language":
            resp = others[k % len(others)]
        elif kind == "truncated":
            resp = truncate(responses[i])
        else:
            resp = shuffle_words(responses[i], rng)
        rows.append({"prompt": prompts[i], "response": resp, "label": 0, "kind": kind, "source": i})
    return pd.DataFrame(rows)


def auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """ROC AUC of ``scores`` for ``labels`` (1 = should rank higher) over the finite scores; NaN when a
    class is missing. Ties count 1/2 (a constant scorer gives 0.5)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    ok = np.isfinite(s)
    y, s = y[ok], s[ok]
    if len(np.unique(y)) < 2:
        return math.nan
    return float(roc_auc_score(y, s))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    den = np.where((na > 0) & (nb > 0), na * nb, 1.0)
    return np.einsum("ij,ij->i", a, b) / den


# ------------------------------------------------------------------------------------------- measuring
def judge_auc(judge, cal: pd.DataFrame, language: str, cfg=None) -> tuple[float, int, float, float]:
    """(AUC, usable verdicts, mean score matched, mean score corrupted) of a judge on a calibration set,
    graded the way the measure stage grades (constrained for local judges in ``auto`` mode)."""
    from pgscore.metrics.judge import OK, judge_with_config

    verdicts = judge_with_config(judge, cal["prompt"].tolist(), cal["response"].tolist(), language, cfg)
    scores = np.array([v.score if (v.status == OK and v.score is not None) else np.nan for v in verdicts], dtype=float)
    labels = cal["label"].to_numpy()
    ok = np.isfinite(scores)
    mm = float(np.nanmean(scores[labels == 1])) if (ok & (labels == 1)).any() else math.nan
    mc = float(np.nanmean(scores[labels == 0])) if (ok & (labels == 0)).any() else math.nan
    return auc(labels, scores), int(ok.sum()), mm, mc


def perplexity_auc(model, cal: pd.DataFrame, template: str = "{prompt}\n\n", seed: int = 0) -> float:
    """AUC of −perplexity: each matched response against its word-shuffled copy."""
    from pgscore.metrics.perplexity import response_perplexity

    matched = cal[cal["label"] == 1]
    rng = np.random.default_rng(seed + 1)
    prompts = matched["prompt"].tolist()
    real = matched["response"].tolist()
    shuffled = [shuffle_words(r, rng) for r in real]
    ppl = response_perplexity(model, prompts + prompts, real + shuffled, template=template)
    scores = [-p.perplexity for p in ppl]
    return auc([1] * len(real) + [0] * len(shuffled), scores)


def embedder_separation(encode, cal: pd.DataFrame) -> tuple[float, float]:
    """(AUC, mean cosine gap) of cosine(prompt, response): own response vs another prompt's response."""
    matched = cal[cal["label"] == 1].reset_index(drop=True)
    m = len(matched)
    prompts = matched["prompt"].tolist()
    responses = matched["response"].tolist()
    vecs = np.asarray(encode(prompts + responses), dtype=np.float64)
    P, R = vecs[:m], vecs[m:]
    related = _cos(P, R)
    unrelated = _cos(P, np.roll(R, -1, axis=0))
    return auc([1] * m + [0] * m, np.concatenate([related, unrelated])), float(related.mean() - unrelated.mean())


def calibrate_language(language: str, pairs: pd.DataFrame, other: pd.DataFrame | None, *, judge=None,
                       perplexity_model=None, encode=None, cfg=None, n: int = DEFAULT_PAIRS, seed: int = 0,
                       min_judge_auc: float = DEFAULT_MIN_JUDGE_AUC, embedder_name: str | None = None) -> dict:
    """One calibration row for ``language`` (see the module doc); a missing model leaves its columns NaN."""
    row: dict = {c: math.nan for c in COLUMNS}
    row.update(language=language, min_judge_auc=float(min_judge_auc), judge_in_z=True, note="")
    cal = build_calibration_set(pairs, other, n=n, seed=seed)
    row["n_matched"] = int((cal["label"] == 1).sum())
    row["n_corrupted"] = int((cal["label"] == 0).sum())
    row["corruptions"] = ", ".join(f"{k}:{v}" for k, v in cal[cal["label"] == 0]["kind"].value_counts(sort=False).items())
    notes = []
    if judge is not None:
        row["judge"] = judge.name
        a, k, mm, mc = judge_auc(judge, cal, language, cfg)
        row.update(judge_auc=a, judge_n=k, judge_matched_mean=mm, judge_corrupted_mean=mc)
        if math.isnan(a):
            notes.append("judge AUC undefined (no usable verdict for one class): judge kept, uncalibrated")
        elif a < min_judge_auc:
            row["judge_in_z"] = False
            notes.append(f"judge AUC {a:.2f} < min_judge_auc {min_judge_auc:g}: judge left out of Z")
    if perplexity_model is not None:
        row["perplexity_model"] = perplexity_model.name
        row["perplexity_auc"] = perplexity_auc(perplexity_model, cal,
                                               getattr(cfg, "perplexity_template", "{prompt}\n\n"), seed)
    if encode is not None:
        row["embedder"] = embedder_name or getattr(encode, "__name__", "embedder")
        row["embedder_auc"], row["embedder_gap"] = embedder_separation(encode, cal)
    row["note"] = "; ".join(notes)
    return row


def judge_drops(calibration: pd.DataFrame | None, min_judge_auc: float = DEFAULT_MIN_JUDGE_AUC) -> dict[str, float]:
    """Languages whose judge AUC is below ``min_judge_auc``: {language: auc} (pure; used by scoring)."""
    if calibration is None or calibration.empty or "judge_auc" not in calibration.columns:
        return {}
    c = calibration.dropna(subset=["judge_auc"])
    bad = c[c["judge_auc"].astype(float) < float(min_judge_auc)]
    return {str(r.language): float(r.judge_auc) for r in bad.itertuples()}


# ------------------------------------------------------------------------------------------- stage I/O
def run_calibration(out_dir: str | Path, cfg, models: dict, notes: list[str], embed_cache=None) -> pd.DataFrame | None:
    """Calibrate every language of ``out_dir/seed/seed.parquet`` and write ``calibration.parquet``.
    Skipped (with a note) when ``metrics.calibration_pairs`` is 0 or the run has no seed pairs."""
    from pgscore.io import write_table

    out = Path(out_dir)
    n = int(getattr(cfg, "calibration_pairs", DEFAULT_PAIRS) or 0)
    threshold = float(getattr(cfg, "min_judge_auc", DEFAULT_MIN_JUDGE_AUC))
    path = out / CALIBRATION_FILE
    from pgscore.results import FILES

    seed_path = out / FILES["seed"]
    if n <= 0:
        path.unlink(missing_ok=True)
        notes.append("calibration skipped (metrics.calibration_pairs = 0)")
        return None
    if not seed_path.is_file():
        notes.append(f"calibration skipped: no seed pairs ({seed_path} not found)")
        return None
    seed = pd.read_parquet(seed_path)
    if "response" not in seed.columns:
        notes.append("calibration skipped: the seed has no responses")
        return None
    seed = seed[seed["response"].notna()]
    encode = None
    embedder = models.get("embedder")
    if embedder is not None:
        from pgscore.metrics.measure import EmbeddingCache, embed_texts

        cache = embed_cache if embed_cache is not None else EmbeddingCache(None)

        def encode(texts):
            return embed_texts(texts, embedder, cache, int(getattr(cfg, "chunk_size", 16)))

    rows = []
    for lang, pairs in seed.groupby("language", sort=True):
        try:
            row = calibrate_language(str(lang), pairs, seed[seed["language"] != lang], judge=models.get("judge"),
                                     perplexity_model=models.get("perplexity_model"), encode=encode, cfg=cfg, n=n,
                                     min_judge_auc=threshold,
                                     embedder_name=getattr(embedder, "name", None) if embedder is not None else None)
        except PgScoreError as exc:
            notes.append(f"calibration skipped for {lang}: {exc}")
            continue
        if not row["judge_in_z"]:
            notes.append(f"warning: judge AUC {row['judge_auc']:.2f} < metrics.min_judge_auc {threshold:g} in {lang}: "
                         f"judge_score is left out of Z for {lang}")
        rows.append(row)
    if not rows:
        return None
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_table(table, path)
    return table
