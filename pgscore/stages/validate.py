"""Checks that run before the first stage of ``pgscore run``: every model spec, data path and benchmark name.

A problem is a one-line :class:`~pgscore.errors.PgScoreError` naming the experiment field, so a typo in
the last section fails in a second instead of after the seed and synthesis stages have run.
Nothing is loaded: backends are checked by name, tiny models against the registry, local model paths
and data files on disk.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from pgscore.errors import PgScoreError
from pgscore.student.config import TASK_SFT, TRAINED_REFERENCES

if TYPE_CHECKING:
    from pgscore.config import Experiment


def experiment_models(exp: "Experiment", stages: Sequence[str] | None = None) -> Iterator[tuple[str, Any]]:
    """(field, spec) for every model the experiment names, for the stages that will run."""
    want = set(stages) if stages is not None else None

    def on(stage: str) -> bool:
        return want is None or stage in want

    if on("synthesize"):
        for i, t in enumerate(exp.teachers):
            yield f"teachers[{i}].model ({t.name})", t.model
    if on("measure"):
        from pgscore.metrics.config import STUDENT_BASES

        m = exp.metrics
        if m.perplexity_model is not None and m.perplexity_model != STUDENT_BASES:
            yield "metrics.perplexity_model", m.perplexity_model
        if m.judge is not None:
            yield "metrics.judge", m.judge
    if on("students") or on("measure"):
        for i, b in enumerate(exp.student.resolved_bases()):
            where = "student" if exp.student.bases is None else f"student.bases[{i}]"
            yield f"{where}.base", b.base
            if b.reference not in (None, *TRAINED_REFERENCES):
                yield f"{where}.reference", b.reference


def check_model_spec(where: str, spec: Any) -> None:
    """Backend known, tiny model registered, a local path present (hub ids and servers are not contacted)."""
    from pgscore.models.base import _KNOWN_PREFIXES, ModelSpec

    try:
        s = ModelSpec.parse(spec)
    except Exception as exc:  # pydantic
        raise PgScoreError(f"{where}: not a model spec: {str(exc).splitlines()[0]}") from None
    from pgscore import models as registry

    known = set(_KNOWN_PREFIXES) | set(getattr(registry, "_BACKENDS", {}))
    if s.backend not in known:
        raise PgScoreError(f"{where}: unknown model backend {s.backend!r} in {s.short()}; known: "
                           f"{', '.join(sorted(known))}")
    if s.backend == "tiny":
        from pgscore.models.tiny import tiny_model

        try:
            tiny_model(s.model)
        except PgScoreError as exc:
            raise PgScoreError(f"{where}: {exc}") from None
    if s.backend == "hf":
        p = Path(s.model).expanduser()
        looks_local = s.model.startswith(("/", "./", "../", "~")) or p.suffix.lower() == ".gguf"
        if looks_local and not p.exists():
            raise PgScoreError(f"{where}: model path not found: {s.model}")
    from pgscore.models.precision import TRANSFORMERS_BACKENDS, cpu_auto_dtype

    if s.backend in TRANSFORMERS_BACKENDS and s.dtype in (None, "auto"):
        cpu_auto_dtype()  # a bad $PGSCORE_CPU_DTYPE fails here, before the first stage


def check_benchmarks(exp: "Experiment") -> None:
    from pgscore.evaluation.registry import task_names

    known = task_names()
    unknown = [b for b in exp.evaluation.benchmarks if b not in known]
    if unknown:
        raise PgScoreError(f"evaluation.benchmarks: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for name, path in exp.evaluation.data_files.items():
        if name not in known:
            raise PgScoreError(f"evaluation.data_files: unknown benchmark {name!r}; known: {', '.join(known)}")
        if not Path(path).expanduser().is_file():
            raise PgScoreError(f"evaluation.data_files.{name}: file not found: {path}")
    task_sft = any(b.reference == TASK_SFT for b in exp.student.resolved_bases())
    if task_sft and "mgsm" in exp.evaluation.benchmarks and exp.evaluation.formulation.get("mgsm") != "number":
        raise PgScoreError("student.reference task-sft trains on GSM8K train for MGSM, which needs "
                           "evaluation.formulation.mgsm: number (5-shot cot has no training split in the target language)")


def check_seed_paths(exp: "Experiment") -> None:
    """Non-optional local seed sources whose path names one file or folder (no {lang}, no glob) must exist."""
    from pgscore.paths import data_dir
    from pgscore.seed.presets import resolve

    for group in ("sources", "english_sources"):
        for i, src in enumerate(getattr(exp.seed, group)):
            where = f"seed.{group}[{i}] ({src.name})"
            try:
                s = resolve(src)
            except PgScoreError as exc:
                raise PgScoreError(f"{where}: {exc}") from None
            if s.optional or s.hf_dataset or not s.path or s.path == "builtin" or "{lang}" in s.path:
                continue
            path = s.path
            if "{data}" in path:
                root = data_dir(required=False)
                if root is None:
                    raise PgScoreError(f"{where}: reads the offline data folder, which was not found "
                                       "(set PGSCORE_DATA_DIR)")
                path = path.replace("{data}", str(root))
            if any(ch in path for ch in "*?["):
                if not glob.glob(str(Path(path).expanduser())):
                    raise PgScoreError(f"{where}: no file matches {s.path}")
            elif not Path(path).expanduser().exists():
                raise PgScoreError(f"{where}: file not found: {s.path}")


def validate_experiment(exp: "Experiment", stages: Sequence[str] | None = None) -> list[str]:
    """Raise on the first problem; returns lines worth printing (e.g. the Ray cluster found)."""
    for where, spec in experiment_models(exp, stages):
        check_model_spec(where, spec)
    if stages is None or "students" in stages:
        if exp.student.resolved_bases():
            check_benchmarks(exp)
    if stages is None or "seed" in stages:
        check_seed_paths(exp)
    lines = []
    if getattr(exp, "engine", None) is not None:
        from pgscore.engine import check_engine

        line = check_engine(exp.engine, [spec for _, spec in experiment_models(exp, stages)])
        if line:
            lines.append(line)
    return lines
