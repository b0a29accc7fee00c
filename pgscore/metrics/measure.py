"""The ``measure`` stage: intrinsic metrics of synthetic data, per example and per dataset.

Input: ``synthetic.parquet`` rows (only ``status == "ok"`` ones are measured). Output (schemas in
docs/architecture.md): ``metrics_examples.parquet`` (one row per example) and ``metrics.parquet`` (one
row per teacher × language × trial with ``method="all"``, plus one per method).

Perplexity under each student base (paper §3.2): with ``metrics.perplexity_model: student`` (the default)
and student bases in the experiment (``StudentConfig.resolved_bases()``), perplexity is taken under every
base; both tables then gain a ``student`` column (the base's name) and hold one row per base (the other
metrics, which do not depend on the base, repeat).

:func:`measure_dataset` computes from tables and already-built models (no loading, no files except
the optional embedding cache); :func:`run_measure` loads models through a ``load`` callable (spec ->
LanguageModel; default :func:`pgscore.models.load_model`), wraps them in the run ledger (so a killed run
resumes without repeating model calls), and writes the tables.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pgscore.errors import PgScoreError
from pgscore.metrics.config import FALLBACK_PERPLEXITY_MODEL, STUDENT_BASES, MetricsConfig
from pgscore.metrics.diversity import pairwise_cosine
from pgscore.metrics.fidelity import LanguageDetector, language_fidelity
from pgscore.metrics.judge import OK, judge_with_config
from pgscore.metrics.lengths import TokenCounter, char_lengths
from pgscore.metrics.perplexity import response_perplexity
from pgscore.models.base import LanguageModel
from pgscore.models.embedders import Embedder

REQUIRED_COLUMNS = ("id", "teacher", "language", "method", "trial", "prompt", "response", "status")
KEYS = ["teacher", "language", "trial"]
STUDENT = "student"  # key column when perplexity is per student base
EXAMPLE_COLUMNS = [
    "id", "teacher", "language", "method", "trial", "perplexity", "judge_score", "judge_feedback",
    "judge_status", "prompt_tokens_len", "response_tokens_len", "prompt_chars", "response_chars",
    "prompt_lang", "response_lang", "perplexity_truncated",
]
METRIC_COLUMNS = [
    "teacher", "language", "trial", "method", "n", "prompt_diversity", "response_diversity", "perplexity",
    "judge_score", "judge_unparsed", "prompt_len", "response_len", "prompt_lang_fidelity",
    "response_lang_fidelity", "perplexity_median", "perplexity_truncated", "judge_n", "prompt_chars",
    "response_chars",
]
SKIPPED = "skipped"


# ------------------------------------------------------------------------------------ input


def select_ok(synthetic: pd.DataFrame, max_examples: int | None = None) -> pd.DataFrame:
    """The ``ok`` rows (first ``max_examples`` per teacher × language × trial × method), with checks."""
    missing = [c for c in REQUIRED_COLUMNS if c not in synthetic.columns]
    if missing:
        raise PgScoreError(f"synthetic table lacks column(s) {', '.join(missing)}; expected {', '.join(REQUIRED_COLUMNS)}")
    df = synthetic[synthetic["status"] == "ok"].copy()
    if df.empty:
        raise PgScoreError(f"no rows with status 'ok' among {len(synthetic)} synthetic rows: nothing to measure")
    for col in ("prompt", "response"):
        df[col] = df[col].fillna("").astype(str)
    df["id"] = df["id"].astype(str)
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise PgScoreError(f"synthetic ids repeat among ok rows (e.g. {dup.iloc[0]!r})")
    if max_examples:
        df = df.groupby(KEYS + ["method"], sort=False, group_keys=False).head(max_examples)
    return df.reset_index(drop=True)


# ------------------------------------------------------------------------------------ embeddings


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors by text hash, saved as one ``.npz`` per computed chunk under ``folder`` (resume)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.vectors: dict[str, np.ndarray] = {}
        if folder and folder.is_dir():
            for f in sorted(folder.glob("chunk-*.npz")):
                try:
                    with np.load(f) as z:
                        self.vectors.update(zip(z["keys"].tolist(), z["vecs"]))
                except (OSError, ValueError, KeyError):
                    f.unlink(missing_ok=True)  # a chunk cut short by a kill: recompute it

    def add(self, keys: list[str], vecs: np.ndarray) -> None:
        self.vectors.update(zip(keys, vecs))
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)
            n = len(list(self.folder.glob("chunk-*.npz")))
            tmp = self.folder / f".tmp-{n:06d}.npz"
            np.savez(tmp, keys=np.array(keys), vecs=vecs.astype(np.float32))
            tmp.replace(self.folder / f"chunk-{n:06d}.npz")


def embed_texts(texts: Sequence[str], embedder: Embedder, cache: EmbeddingCache, chunk_size: int,
                progress: Progress | None = None) -> np.ndarray:
    """Embeddings of ``texts`` (each distinct text embedded once, cached chunk by chunk)."""
    keys = [text_hash(t) for t in texts]
    todo: dict[str, str] = {}
    for k, t in zip(keys, texts):
        if k not in cache.vectors:
            todo.setdefault(k, t)
    task = progress.add_task("embeddings", total=len(todo)) if progress else None
    items = list(todo.items())
    for s in range(0, len(items), chunk_size):
        part = items[s : s + chunk_size]
        vecs = embedder.encode([t for _, t in part])
        cache.add([k for k, _ in part], vecs)
        if progress:
            progress.advance(task, len(part))
    if not keys:
        return np.zeros((0, 1), dtype=np.float32)
    return np.stack([cache.vectors[k] for k in keys])


# ------------------------------------------------------------------------------------ the stage


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), disable=not show, transient=False,
    )


def _mean(values: Iterable[float]) -> float:
    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], dtype=float)
    return float(arr.mean()) if arr.size else math.nan


def measure_dataset(
    synthetic: pd.DataFrame,
    cfg: MetricsConfig | None = None,
    *,
    embedder: Embedder | None = None,
    perplexity_model: LanguageModel | None = None,
    perplexity_models: Mapping[str, LanguageModel] | None = None,
    judge: LanguageModel | None = None,
    detector: LanguageDetector | None = None,
    counter: TokenCounter | None = None,
    cache_dir: Path | None = None,
    notes: list[str] | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(examples, metrics) for the ok rows of ``synthetic``. A metric whose model is ``None`` is skipped:
    its columns are NaN and a line is added to ``notes``.

    ``perplexity_models`` (student base name -> base LM) takes perplexity under each base: both tables
    gain a ``student`` column, with one row per base. It replaces ``perplexity_model``."""
    if perplexity_models is not None and perplexity_model is not None:
        raise ValueError("give perplexity_model or perplexity_models, not both")
    if perplexity_models is not None and not len(perplexity_models):
        raise ValueError("perplexity_models is empty")
    cfg = cfg or MetricsConfig()
    notes = notes if notes is not None else []
    df = select_ok(synthetic, cfg.max_examples)
    n = len(df)
    prompts, responses = df["prompt"].tolist(), df["response"].tolist()
    ex = df[["id", "teacher", "language", "method", "trial"]].copy()

    with _progress(progress) as bar:
        # lengths
        ex["prompt_chars"] = char_lengths(prompts)
        ex["response_chars"] = char_lengths(responses)
        if counter is not None:
            ex["prompt_tokens_len"] = counter(prompts)
            ex["response_tokens_len"] = counter(responses)
        else:
            ex["prompt_tokens_len"] = ex["response_tokens_len"] = np.nan
            notes.append("token lengths skipped: no tokenizer (set metrics.length_tokenizer or a perplexity model)")

        # language fidelity
        if detector is not None:
            task = bar.add_task("language id", total=2 * n)
            ex["prompt_lang"] = detector.detect(prompts)
            bar.advance(task, n)
            ex["response_lang"] = detector.detect(responses)
            bar.advance(task, n)
        else:
            ex["prompt_lang"] = ex["response_lang"] = None
            notes.append("language fidelity skipped: no language detector")

        # embeddings (diversity is computed per dataset below)
        prompt_vecs = response_vecs = None
        if embedder is not None:
            cache = EmbeddingCache(cache_dir / text_hash(embedder.name)[:12] if cache_dir else None)
            vecs = embed_texts(prompts + responses, embedder, cache, cfg.chunk_size, bar)
            prompt_vecs, response_vecs = vecs[:n], vecs[n:]
        else:
            notes.append("diversity skipped: no embedder")

        # perplexity (under one base LM, or under each student base)
        ex["perplexity"] = np.nan
        ex["perplexity_truncated"] = False
        per_base: dict[str, tuple[list[float], list[bool]]] = {}
        ppl_models = dict(perplexity_models) if perplexity_models is not None else (
            {None: perplexity_model} if perplexity_model is not None else {})
        for base_name, lm in ppl_models.items():
            label = "perplexity" if base_name is None else f"ppl {base_name}"[:12]
            task = bar.add_task(label, total=n)
            ppl = response_perplexity(lm, prompts, responses, template=cfg.perplexity_template,
                                      chunk_size=cfg.chunk_size, progress=lambda k, t=task: bar.advance(t, k))
            per_base[base_name] = ([p.perplexity for p in ppl], [p.truncated for p in ppl])
            n_trunc = sum(per_base[base_name][1])
            if n_trunc:
                under = "" if base_name is None else f" under {base_name}"
                notes.append(f"perplexity{under}: {n_trunc} of {n} examples longer than the model window were cut "
                             "on the left")
        if None in per_base:
            ex["perplexity"], ex["perplexity_truncated"] = per_base[None]
        elif not per_base:
            notes.append("perplexity skipped: no perplexity model")

        # judge
        ex["judge_score"] = pd.array([pd.NA] * n, dtype="Int64")
        ex["judge_feedback"] = ""
        ex["judge_status"] = SKIPPED
        if judge is not None:
            task = bar.add_task("judge", total=n)
            scores, feedback, status = [], [], []
            langs = df["language"].astype(str).tolist()
            for s in range(0, n, cfg.chunk_size):
                sl = slice(s, s + cfg.chunk_size)
                for v in judge_with_config(judge, prompts[sl], responses[sl], langs[sl], cfg):
                    scores.append(v.score if v.score is not None else pd.NA)
                    feedback.append(v.feedback)
                    status.append(v.status)
                bar.advance(task, len(prompts[sl]))
            ex["judge_score"] = pd.array(scores, dtype="Int64")
            ex["judge_feedback"] = feedback
            ex["judge_status"] = status
            bad = sum(st != OK for st in status)
            if bad:
                notes.append(f"judge: {bad} of {n} verdicts unusable (excluded from the mean, counted in judge_unparsed)")
        else:
            notes.append("judge skipped: no judge model configured")

    ex = ex[EXAMPLE_COLUMNS]
    if perplexity_models is None:
        return ex, aggregate(ex, prompt_vecs, response_vecs, judged=judge is not None)
    ex_parts, metric_parts = [], []
    for base_name, (values, truncated) in per_base.items():
        part = ex.assign(perplexity=values, perplexity_truncated=truncated)
        part.insert(part.columns.get_loc("trial") + 1, STUDENT, base_name)
        m = aggregate(part, prompt_vecs, response_vecs, judged=judge is not None)
        ex_parts.append(part)
        metric_parts.append(m)
    return (pd.concat(ex_parts, ignore_index=True),
            pd.concat(metric_parts, ignore_index=True))


def _dataset_row(g: pd.DataFrame, idx: np.ndarray, prompt_vecs, response_vecs, judged: bool) -> dict:
    ok = g["judge_status"] == OK
    ppl = g["perplexity"].astype(float)
    fid = {
        col: language_fidelity([x for x in g[col].tolist() if x], lang)
        if g[col].notna().any() else math.nan
        for col, lang in (("prompt_lang", g["language"].iloc[0]), ("response_lang", g["language"].iloc[0]))
    }
    return {
        "n": len(g),
        "prompt_diversity": pairwise_cosine(prompt_vecs[idx]).diversity if prompt_vecs is not None else math.nan,
        "response_diversity": pairwise_cosine(response_vecs[idx]).diversity if response_vecs is not None else math.nan,
        "perplexity": _mean(ppl),
        "judge_score": float(g.loc[ok, "judge_score"].astype(float).mean()) if judged and ok.any() else math.nan,
        "judge_unparsed": int((~ok).sum()) if judged else 0,
        "prompt_len": _mean(g["prompt_tokens_len"].astype(float)),
        "response_len": _mean(g["response_tokens_len"].astype(float)),
        "prompt_lang_fidelity": fid["prompt_lang"],
        "response_lang_fidelity": fid["response_lang"],
        "perplexity_median": float(ppl.median()) if ppl.notna().any() else math.nan,
        "perplexity_truncated": int(g["perplexity_truncated"].sum()),
        "judge_n": int(ok.sum()) if judged else 0,
        "prompt_chars": _mean(g["prompt_chars"].astype(float)),
        "response_chars": _mean(g["response_chars"].astype(float)),
    }


def aggregate(ex: pd.DataFrame, prompt_vecs: np.ndarray | None = None, response_vecs: np.ndarray | None = None,
              judged: bool = True) -> pd.DataFrame:
    """Dataset rows: per teacher × language × trial (``method="all"``) and per method. Row order of
    ``ex`` must match the vectors' (for one student base: ``ex`` may hold a constant ``student`` column,
    which is kept as a key after ``trial``)."""
    rows = []
    ex = ex.reset_index(drop=True)
    student = None
    if STUDENT in ex.columns:
        names = ex[STUDENT].unique()
        if len(names) != 1:
            raise ValueError("aggregate takes one student base at a time")
        student = names[0]
    for keys, g in ex.groupby(KEYS, sort=True, dropna=False):
        rows.append(dict(zip(KEYS, keys), method="all", **_dataset_row(g, g.index.to_numpy(), prompt_vecs,
                                                                          response_vecs, judged)))
        for method, gm in g.groupby("method", sort=True):
            rows.append(dict(zip(KEYS, keys), method=method, **_dataset_row(gm, gm.index.to_numpy(), prompt_vecs,
                                                                               response_vecs, judged)))
    out = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    if student is not None:
        out.insert(out.columns.get_loc("trial") + 1, STUDENT, student)
    return out


# ------------------------------------------------------------------------------------ loading + files


Loader = Callable[[Any], LanguageModel]


def _student_bases(student) -> list:
    """StudentConfig / list of StudentBase / None -> list of StudentBase (names filled)."""
    if student is None:
        return []
    if hasattr(student, "resolved_bases"):
        return student.resolved_bases()
    return [b.resolved() if hasattr(b, "resolved") else b for b in student]


def perplexity_targets(cfg: MetricsConfig, student=None) -> tuple[dict[str, Any] | None, Any, list[str]]:
    """Which base LM(s) perplexity is taken under: ``(per_base, single, notes)``.

    ``per_base`` maps each student base's name to its spec when ``cfg.perplexity_model`` is ``"student"``
    and ``student`` (a StudentConfig or a list of StudentBase) names bases; otherwise ``single`` is the one
    spec (``tiny:gemma3-270m`` for ``"student"`` without a student base) or None (skipped)."""
    notes: list[str] = []
    if cfg.perplexity_model != STUDENT_BASES:
        return None, cfg.perplexity_model, notes
    bases = _student_bases(student)
    if not bases:
        notes.append(f"perplexity under {FALLBACK_PERPLEXITY_MODEL}: the experiment names no student base "
                     "(metrics.perplexity_model: student); set student.base, or a base LM in metrics.perplexity_model")
        return None, FALLBACK_PERPLEXITY_MODEL, notes
    return {b.name: b.base for b in bases}, None, notes


def load_measure_models(cfg: MetricsConfig, load: Loader | None = None, student=None,
                        notes: list[str] | None = None, skip: Iterable[str] = ()) -> dict:
    """The models the config names: embedder, perplexity_model or perplexity_models (one per student
    base), judge, detector, counter. LMs come from ``load`` (default :func:`pgscore.models.load_model`).
    Names in ``skip`` are not loaded (``perplexity_model`` skips both perplexity entries)."""
    from pgscore.metrics.fidelity import load_detector
    from pgscore.metrics.lengths import token_counter
    from pgscore.models import load_model
    from pgscore.models.embedders import load_embedder

    load = load or load_model
    skip = set(skip)
    out: dict[str, Any] = {}
    if "perplexity_model" not in skip and "perplexity_models" not in skip:
        per_base, single, why = perplexity_targets(cfg, student)
        if notes is not None:
            notes += why
        out["perplexity_model"] = load(single) if single else None
        out["perplexity_models"] = {name: load(spec) for name, spec in per_base.items()} if per_base else None
    if "counter" not in skip:
        if cfg.length_tokenizer:
            out["counter"] = token_counter(cfg.length_tokenizer)
        else:  # token lengths: the (first) perplexity model's tokenizer
            first = out.get("perplexity_model") or next(iter((out.get("perplexity_models") or {}).values()), None)
            out["counter"] = token_counter(_unwrap(first)) if first is not None else None
    if "embedder" not in skip:
        out["embedder"] = load_embedder(cfg.embedder)
    if "judge" not in skip:
        out["judge"] = load(cfg.judge) if cfg.judge else None
    if "detector" not in skip:
        out["detector"] = load_detector(cfg.language_detector)
    return out


def _unwrap(model):
    """The model under a ledger wrapper (token counting needs the real tokenizer)."""
    return getattr(model, "model", model) if type(model).__name__ == "CachedModel" else model


MODEL_ARGS = ("embedder", "perplexity_model", "perplexity_models", "judge", "detector", "counter")


def run_measure(synthetic: pd.DataFrame | str | Path, out_dir: str | Path, cfg: MetricsConfig | None = None,
                progress: bool = True, *, load: Loader | None = None, student=None,
                **models) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Measure a synthetic table and write ``metrics_examples.parquet`` and ``metrics.parquet`` in
    ``out_dir``. Resumable: model calls go through the run ledger ``out_dir/ledger.sqlite`` (a server
    embedder's vectors too) and local embeddings are cached in ``out_dir/cache/embeddings``.

    ``load`` (spec -> LanguageModel) builds the LMs (the run's shared loader, contract 4; default
    :func:`pgscore.models.load_model`); models it returns already wrapped in a ``CachedModel`` are used as
    they are. ``student`` (the experiment's StudentConfig, or a list of StudentBase) names the bases that
    ``perplexity_model: student`` measures under. ``models`` (any of ``MODEL_ARGS``) replace what the config
    would load; passing ``perplexity_model`` or ``perplexity_models`` decides perplexity on its own."""
    from pgscore.io import read_table, write_table
    from pgscore.ledger import CachedModel, Ledger
    from pgscore.models.embedders import CachedEmbedder, is_remote

    unknown = set(models) - set(MODEL_ARGS)
    if unknown:
        raise TypeError(f"unknown model argument(s): {', '.join(sorted(unknown))}")
    cfg = cfg or MetricsConfig()
    out = Path(out_dir)
    df = read_table(synthetic) if isinstance(synthetic, (str, Path)) else synthetic
    select_ok(df)  # fail fast on bad input, before loading any model
    notes: list[str] = []
    if "perplexity_model" in models or "perplexity_models" in models:
        models.setdefault("perplexity_model", None)
        models.setdefault("perplexity_models", None)
    if not all(k in models for k in MODEL_ARGS):
        models = {**load_measure_models(cfg, load=load, student=student, notes=notes, skip=models), **models}
    ledger = Ledger(out)
    wrap = lambda m, stage: m if m is None or isinstance(m, CachedModel) else CachedModel(  # noqa: E731
        m, ledger, stage=stage, chunk_size=cfg.chunk_size)
    models["perplexity_model"] = wrap(models.get("perplexity_model"), "measure.perplexity")
    if models.get("perplexity_models"):
        models["perplexity_models"] = {k: wrap(m, "measure.perplexity") for k, m in models["perplexity_models"].items()}
    models["judge"] = wrap(models.get("judge"), "measure.judge")
    emb = models.get("embedder")
    cache_dir: Path | None = out / "cache" / "embeddings"
    if emb is not None and is_remote(emb):
        models["embedder"] = CachedEmbedder(emb, ledger, stage="measure.embed")
        cache_dir = None  # the ledger keeps the vectors
    if cfg.perplexity_model == STUDENT_BASES and models.get("perplexity_models"):
        names = ", ".join(models["perplexity_models"])
        notes.append(f"perplexity under each student base ({names}): metrics gain a 'student' column")
    try:
        ex, metrics = measure_dataset(df, cfg, cache_dir=cache_dir, notes=notes, progress=progress, **models)
        from pgscore.metrics.bootstrap import measure_hook  # bootstrap.parquet + calibration.parquet (issue 12)

        measure_hook(out, df, ex, cfg, models, notes, cache_dir)
    finally:
        ledger.close()
    write_table(ex, out / "metrics_examples.parquet")
    write_table(metrics, out / "metrics.parquet")
    return ex, metrics, notes
