"""Run benchmarks on a model, keep per-example outputs, cache results per model key.

Layout under ``out_dir``: ``<model-slug>/<task>__<language>.parquet`` (one row per example) and
``<model-slug>/<task>__<language>.json`` (the summary). A summary with the same limit, seed and data
source is reused, so base and reference models are evaluated once across teachers and re-runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from pgscore.errors import DataMissingError
from pgscore.evaluation.pgr import BenchSamples, LanguagePGR, bootstrap_pgr, language_pgr
from pgscore.evaluation.registry import TaskData, get_task, task_names
from pgscore.io import write_table
from pgscore.models.base import LanguageModel, ModelSpec

EVAL_VERSION = 2  # bump when prompts or scoring change: invalidates cached results
SUMMARY_COLUMNS = ["model", "model_dir", "task", "language", "status", "source", "standin", "n", "primary_metric", "score",
                   "graded", "acc", "acc_norm_tokens", "acc_norm_chars", "exact_match", "note"]


def model_slug(spec: ModelSpec | str | dict) -> str:
    """Folder name for a model's cached results: readable name + hash of the full spec key."""
    spec = ModelSpec.parse(spec)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec.model).name or spec.model)[:48]
    return f"{spec.backend}-{name}-{hashlib.sha256(spec.key().encode()).hexdigest()[:10]}"


def subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded random subset of size ``limit`` (sorted), or all indices."""
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False))


def _summary(task, df: pd.DataFrame) -> dict[str, Any]:
    """Each metric's corpus score by the task's own rule (M-RewardBench: upstream weighted accuracy)."""
    out = {m: task.corpus_score(df, m) for m in task.metrics}
    out["score"] = out[task.primary_metric]
    out["graded"] = out.get("gold_prob", float("nan"))
    out["formulation"] = getattr(task, "formulation", None)
    return out


def configure_task(task, formulations: dict[str, str] | None = None, revisions: dict[str, str] | None = None,
                   signal: str = "accuracy", max_new_tokens: int = 256) -> None:
    """Apply the evaluation settings a task reads: formulation, hub revision, generation on/off."""
    task.set_formulation((formulations or {}).get(task.name))
    if hasattr(task, "revision"):
        task.revision = (revisions or {}).get(task.name)
    if hasattr(task, "max_tokens"):
        task.max_tokens = max_new_tokens
    task.generate = signal != "graded"  # graded signal: tasks that can skip generation do


class _Progress:
    """A rich progress bar over model requests (quiet when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._p = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeRemainingColumn(), transient=False)
            self._p.__enter__()
        return self

    def task(self, description: str, total: int):
        if self._p is None:
            return lambda n: None
        tid = self._p.add_task(description, total=total)
        return lambda n: self._p.advance(tid, n)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)


def evaluate(
    model: LanguageModel | ModelSpec | str | dict,
    tasks: Sequence[str] | None = None,
    languages: Sequence[str] = ("en",),
    limit: int | None = None,
    seed: int = 0,
    out_dir: str | Path = "results/eval",
    *,
    hub: bool = True,
    data_files: dict[str, str] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    max_new_tokens: int = 256,
    signal: str = "accuracy",
    formulations: dict[str, str] | None = None,
    revisions: dict[str, str] | None = None,
    load: Callable[[ModelSpec], LanguageModel] | None = None,
) -> pd.DataFrame:
    """Score ``model`` on each task x language; one summary row per pair (status ok / not_covered /
    missing_data). A spec is loaded (with ``load``, default ``pgscore.models.load_model``) only if some
    result is not cached yet; an already loaded ``LanguageModel`` is used as is.

    ``signal="graded"`` lets MGSM skip generation; ``formulations`` maps benchmark -> ``mcf``/``cloze``;
    ``revisions`` maps benchmark -> hub revision."""
    spec = model.spec if isinstance(model, LanguageModel) else ModelSpec.parse(model)
    lm = model if isinstance(model, LanguageModel) else None
    folder = Path(out_dir) / model_slug(spec)
    rows = []
    with _Progress(progress) as bars:
        for tname in tasks or task_names():
            task = get_task(tname)
            configure_task(task, formulations, revisions, signal, max_new_tokens)
            for lang in languages:
                base_row = {"model": spec.short(), "model_dir": folder.name, "task": tname, "language": lang, "primary_metric": task.primary_metric}
                if not task.covers(lang):
                    rows.append({**base_row, "status": "not_covered", "n": 0,
                                 "note": f"{tname} has no {lang} version"})
                    continue
                try:
                    data = task.load(lang, hub=hub, local=(data_files or {}).get(tname))
                except DataMissingError as exc:
                    rows.append({**base_row, "status": "missing_data", "n": 0, "note": str(exc)})
                    continue
                idx = subsample(len(data.examples), limit, seed)
                data = TaskData([data.examples[i] for i in idx], data.source, data.standin, data.extra)
                key = {"version": EVAL_VERSION, "limit": limit, "seed": seed, "source": data.source,
                       "n": len(data.examples), "spec": spec.key(),
                       "max_new_tokens": getattr(task, "max_tokens", None), "formulation": task.formulation,
                       "generate": task.generate if tname == "mgsm" else None}
                stem = folder / f"{tname}__{lang}"
                cached = _read_cached(stem, key)
                if cached is not None:
                    rows.append(cached)
                    continue
                if lm is None:
                    if load is None:
                        from pgscore.models import load_model as load
                    lm = load(spec)
                tick = bars.task(f"{tname} {lang} {spec.short()}", task.n_requests(data))
                df = task.score(lm, data, lang, batch_size=batch_size, seed=seed, progress=tick)
                df.insert(0, "language", lang)
                df.insert(0, "task", tname)
                df.insert(0, "model", spec.short())
                write_table(df, stem.with_suffix(".parquet"))
                notes = [f"stand-in: {data.standin}"] if data.standin else []
                if tname == "m_rewardbench":
                    from pgscore.evaluation.m_rewardbench import subset_mapping

                    empty = [c for c, subs in subset_mapping().items() if not df["source"].isin(subs).any()]
                    if empty:
                        notes.append(f"no rows in categor{'y' if len(empty) == 1 else 'ies'} {', '.join(empty)}: "
                                     "counted as 0 in the weighted accuracy, as upstream does")
                if tname == "mgsm" and not task.generate:
                    notes.append("graded signal only: no generation, exact_match not measured")
                summ = {**base_row, "status": "ok", "source": data.source, "standin": data.standin,
                        "n": len(df), **_summary(task, df), "note": "; ".join(notes)}
                stem.with_suffix(".json").write_text(json.dumps({"key": key, "summary": summ}, ensure_ascii=False, indent=1))
                rows.append(summ)
    out = pd.DataFrame(rows)
    for c in SUMMARY_COLUMNS:
        if c not in out:
            out[c] = np.nan
    return out[SUMMARY_COLUMNS + [c for c in out.columns if c not in SUMMARY_COLUMNS]]


def _read_cached(stem: Path, key: dict) -> dict | None:
    js, pq = stem.with_suffix(".json"), stem.with_suffix(".parquet")
    if not (js.is_file() and pq.is_file()):
        return None
    try:
        rec = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return rec["summary"] if rec.get("key") == key else None


def examples_for(out_dir: str | Path, model_dir: str, task: str, language: str) -> pd.DataFrame | None:
    """Per-example outputs of one cached result (``model_dir`` = the summary's model_dir column)."""
    p = Path(out_dir) / model_dir / f"{task}__{language}.parquet"
    return pd.read_parquet(p) if p.is_file() else None


def _bench_samples(task, frames: Sequence[pd.DataFrame], base: pd.DataFrame, ref: pd.DataFrame,
                   column: str) -> BenchSamples | None:
    """Align per-example outputs of student trial(s), base and reference on their shared example ids."""
    keep = ["example_id", column] + (["source"] if "source" in base else [])
    joined = base[keep].merge(ref[["example_id", column]], on="example_id", suffixes=("_b", "_r"))
    for j, f in enumerate(frames):
        joined = joined.merge(f[["example_id", column]].rename(columns={column: f"{column}_s{j}"}), on="example_id")
    if len(joined) < 2 or joined[[f"{column}_b", f"{column}_r"]].isna().all().any():
        return None
    ctx = joined.rename(columns={f"{column}_b": column})

    def score(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
        tmp = ctx.assign(**{column: values})
        return task.score_matrix(tmp, column, idx)

    return BenchSamples(task.name, np.stack([joined[f"{column}_s{j}"].to_numpy(float) for j in range(len(frames))]),
                        joined[f"{column}_b"].to_numpy(float), joined[f"{column}_r"].to_numpy(float), score)


def pgr_for_language(
    student: pd.DataFrame | Sequence[pd.DataFrame],
    base: pd.DataFrame,
    reference: pd.DataFrame | None,
    language: str,
    out_dir: str | Path,
    signal: str = "accuracy",
    k: float = 2.0,
    n_boot: int = 500,
    seed: int = 0,
) -> LanguagePGR:
    """PGR for one language from ``evaluate`` summaries (student, base, reference or None), with its
    seeded paired-bootstrap 95% interval and the reliability flag.

    ``student`` may be a list of summaries, one per trial of the same teacher x language: the scores are
    then the trials' mean and the bootstrap resamples trials as well as examples.
    ``signal``: ``accuracy`` (each benchmark's primary metric) or ``graded`` (gold-answer probability).
    """
    col = "score" if signal == "accuracy" else "graded"
    students = [student] if isinstance(student, pd.DataFrame) else list(student)

    def ok_rows(summary: pd.DataFrame) -> pd.DataFrame:
        return summary[(summary["language"] == language) & (summary["status"] == "ok")]

    def scores(summary: pd.DataFrame) -> dict[str, float]:
        return {r.task: float(r[col]) for _, r in ok_rows(summary).iterrows()}

    def not_ok(summary: pd.DataFrame) -> list[str]:
        s = summary[(summary["language"] == language) & (summary["status"] != "ok")]
        return [f"{r.task} ({r.status})" for _, r in s.iterrows()]

    per_trial = [scores(s) for s in students]
    common = set.intersection(*(set(p) for p in per_trial)) if per_trial else set()
    st = {t: float(np.mean([p[t] for p in per_trial])) for t in per_trial[0] if t in common} if per_trial else {}
    ba = scores(base)
    ref = scores(reference) if reference is not None else None
    interval = None
    if reference is not None:
        benches = []
        dirs = lambda summ: dict(zip(ok_rows(summ)["task"], ok_rows(summ)["model_dir"]))  # noqa: E731
        b_dirs, r_dirs, s_dirs = dirs(base), dirs(reference), [dirs(s) for s in students]
        for t in st:
            if t not in ba or not ref or t not in ref or any(math.isnan(v) for v in (st[t], ba[t], ref[t])):
                continue
            task = get_task(t)
            column = task.primary_metric if signal == "accuracy" else "gold_prob"
            b_ex = examples_for(out_dir, b_dirs[t], t, language)
            r_ex = examples_for(out_dir, r_dirs[t], t, language)
            s_ex = [examples_for(out_dir, d[t], t, language) for d in s_dirs]
            if b_ex is None or r_ex is None or any(x is None for x in s_ex):
                continue
            task.formulation = b_ex["formulation"].iloc[0] if "formulation" in b_ex else task.formulation
            bench = _bench_samples(task, s_ex, b_ex, r_ex, column)
            if bench is not None:
                benches.append(bench)
        names = [t for t in st if t in ba and ref and t in ref and not any(math.isnan(v) for v in (st[t], ba[t], ref[t]))]
        if benches and len(benches) == len(names):
            interval = bootstrap_pgr(benches, n_boot=n_boot, seed=seed)
    not_cov = sorted({x for s in students for x in not_ok(s)})
    return language_pgr(st, ba, ref, interval=interval, not_covered=not_cov, k=k)
