"""The extrinsic stage: evaluate students, their base and reference, and build ``extrinsic.parquet``.

Base and reference results are cached per model under ``<eval_dir>``, so they are computed once for
all teachers, trials and re-runs; students are cached the same way (a re-run only scores what is new).
Each row's PGR carries a seeded paired-bootstrap 95% interval over examples; where a teacher x language
x student base has several trials, ``pgr_trials_*`` give the interval of the trials' mean PGR, which
resamples trials as well (docs/evaluation.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd

from pgscore.evaluation.config import EvaluationConfig
from pgscore.evaluation.runner import evaluate, pgr_for_language
from pgscore.models.base import ModelSpec

EXTRINSIC_COLUMNS = ["teacher", "language", "trial", "student", "student_model", "student_score", "base_score",
                     "reference_score", "pgr", "pgr_se", "pgr_low", "pgr_high", "pgr_reliable", "pgr_note",
                     "pgr_trials_mean", "pgr_trials_low", "pgr_trials_high"]


def base_label(base: str | dict | ModelSpec) -> str:
    """Default student-base name: the model's short name (``tiny:gemma3-270m`` -> ``gemma3-270m``)."""
    spec = ModelSpec.parse(base)
    return Path(spec.model).name or spec.model


def evaluate_kwargs(cfg: EvaluationConfig, eval_dir: str | Path, load: Callable | None = None) -> dict:
    """Keyword arguments of :func:`pgscore.evaluation.runner.evaluate` for this configuration: what
    :func:`extrinsic_table` scores with, so a model scored ahead of it (a student evaluated in memory right
    after training) lands in the same cache entry."""
    return dict(limit=cfg.limit, seed=cfg.seed, out_dir=eval_dir, hub=cfg.hub, data_files=cfg.data_files,
                batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, signal=cfg.signal,
                formulations=cfg.formulation, revisions=cfg.hub_revisions, load=load)


def extrinsic_table(
    students: Iterable[Mapping],
    base: str | dict,
    reference: str | dict | None,
    cfg: EvaluationConfig,
    eval_dir: str | Path,
    load: Callable | None = None,
    student_name: str | None = None,
) -> pd.DataFrame:
    """One row per trained student (columns ``EXTRINSIC_COLUMNS``, contract 1 in docs/architecture.md).

    ``students`` yields dicts with teacher, language, trial and the trained model's spec as
    ``student_model`` (or, older callers, as ``student``); ``student`` names the student base when
    ``student_model`` is given, else ``student_name`` or the base's short name is used. ``load`` (spec ->
    LanguageModel) loads models that are not cached yet (default ``pgscore.models.load_model``).
    """
    kw = evaluate_kwargs(cfg, eval_dir, load)
    pgr_kw = dict(signal=cfg.signal, k=cfg.pgr_k, n_boot=cfg.bootstrap, seed=cfg.seed)
    rows = []
    baseline: dict[str, tuple[pd.DataFrame, pd.DataFrame | None]] = {}
    summaries: dict[tuple, list[pd.DataFrame]] = {}
    label_default = student_name or base_label(base)
    for s in students:
        lang = s["language"]
        if lang not in baseline:
            b = evaluate(base, cfg.benchmarks, [lang], **kw)
            r = evaluate(reference, cfg.benchmarks, [lang], **kw) if reference else None
            baseline[lang] = (b, r)
        b, r = baseline[lang]
        model = s.get("student_model") or s["student"]
        label = s.get("student") if s.get("student_model") else label_default
        st = evaluate(model, cfg.benchmarks, [lang], **kw)
        res = pgr_for_language(st, b, r, lang, eval_dir, **pgr_kw)
        summaries.setdefault((s["teacher"], lang, label), []).append(st)
        rows.append({"teacher": s["teacher"], "language": lang, "trial": s.get("trial", 0), "student": label,
                     "student_model": str(model if isinstance(model, str) else ModelSpec.parse(model).short()),
                     "student_score": res.student_score, "base_score": res.base_score,
                     "reference_score": res.reference_score, "pgr": res.pgr, "pgr_se": res.pgr_se,
                     "pgr_low": res.pgr_low, "pgr_high": res.pgr_high, "pgr_reliable": bool(res.pgr_reliable),
                     "pgr_note": f"{res.pgr_note} [signal={cfg.signal}; benchmarks={res.benchmarks or '-'}; "
                                 f"bootstrap={cfg.bootstrap}, seed={cfg.seed}]"})
    table = pd.DataFrame(rows, columns=EXTRINSIC_COLUMNS)
    nan = float("nan")
    table[["pgr_trials_mean", "pgr_trials_low", "pgr_trials_high"]] = nan
    for (teacher, lang, label), group in summaries.items():
        if len(group) < 2:
            continue
        b, r = baseline[lang]
        res = pgr_for_language(group, b, r, lang, eval_dir, **pgr_kw)
        mask = (table["teacher"] == teacher) & (table["language"] == lang) & (table["student"] == label)
        table.loc[mask, "pgr_trials_mean"] = res.pgr
        table.loc[mask, "pgr_trials_low"] = res.pgr_low if not math.isnan(res.pgr) else nan
        table.loc[mask, "pgr_trials_high"] = res.pgr_high if not math.isnan(res.pgr) else nan
    table["pgr_reliable"] = table["pgr_reliable"].astype(bool)
    return table
