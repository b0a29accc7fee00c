"""Running stages: ``run_stages`` (any list of :class:`Stage`) and ``run_experiment`` (``pgscore run``).

For each stage in order: skipped when ``--only`` leaves it out; reused when ``stages.json`` holds its
fingerprint and its outputs exist; otherwise run. A stage that runs forgets every later stage's
fingerprint (their inputs changed); ``--force`` forgets the named stages and everything after them. A
stage that raises is recorded as ``failed`` in ``summary.json`` before the error goes on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
import yaml
from rich.console import Console

from pgscore.config import Experiment
from pgscore.errors import PgScoreError
from pgscore.results import ResultsFolder
from pgscore.stages.base import Stage, StageBook, StageStatus, Status
from pgscore.stages.context import RunLock, StageContext


@dataclass
class RunResult:
    results_dir: Path
    stages: list[StageStatus] = field(default_factory=list)
    scored: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def check_stage_names(stages: Sequence[Stage], *lists: Sequence[str] | None) -> None:
    names = [s.name for s in stages]
    for given in lists:
        for name in given or []:
            if name not in names:
                raise PgScoreError(f"unknown stage {name!r}; stages: {', '.join(names)}")


def run_stages(stages: Sequence[Stage], ctx: StageContext, only: Sequence[str] | None = None,
               force: Sequence[str] | None = None, result: RunResult | None = None) -> RunResult:
    """Run ``stages`` in order in ``ctx``'s results folder (see the module docstring for the rules)."""
    check_stage_names(stages, only, force)
    names = [s.name for s in stages]
    result = result or RunResult(ctx.results.root)
    book = StageBook.open(ctx.results.stages)
    if force:
        first = min(names.index(n) for n in force)
        book.forget(names[first:])
    for i, stage in enumerate(stages):
        if only and stage.name not in only:
            continue
        fp = stage.fingerprint(ctx.exp)
        if book.is_done(stage.name, fp, stage.output_paths(ctx.results)):
            result.stages.append(StageStatus(stage.name, Status.REUSED.value, note="outputs exist for this configuration"))
            continue
        ctx.console.rule(f"[bold]{stage.name}")
        t0 = time.perf_counter()
        try:
            outcome = stage.run(ctx)
        except BaseException as exc:
            note = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            result.stages.append(StageStatus(stage.name, Status.FAILED.value, time.perf_counter() - t0, note))
            book.forget(names[i:])
            raise
        secs = time.perf_counter() - t0
        result.notes += [n for n in outcome.notes if n not in result.notes]  # a warning two stages repeat is shown once
        result.stages.append(StageStatus(stage.name, outcome.status.value, secs, outcome.note))
        if outcome.status is Status.SKIPPED:
            book.forget([stage.name])
        else:
            book.forget(names[i + 1 :])  # later stages read what this one wrote
            book.mark(stage.name, fp)
    return result


def run_experiment(
    exp: Experiment,
    results_dir: Path | None = None,
    only: list[str] | None = None,
    force: list[str] | None = None,
    console: Console | None = None,
    stages: Sequence[Stage] | None = None,
    validate: bool = True,
) -> RunResult:
    """Run (or resume) the experiment; returns stage statuses and the scored table.

    Before any stage: stage names, every model spec, data path and benchmark name are checked
    (``pgscore.stages.validate``), and the folder is locked (``run.lock``) so a second run is refused.
    """
    from pgscore.stages.builtin import STAGES

    stages = tuple(stages if stages is not None else STAGES)
    console = console or Console()
    check_stage_names(stages, only, force)
    results = ResultsFolder(Path(results_dir) if results_dir else exp.results_dir())
    if validate:
        from pgscore.stages.validate import validate_experiment

        for line in validate_experiment(exp, [s.name for s in stages if not only or s.name in only]):
            console.print(line)
    results.root.mkdir(parents=True, exist_ok=True)
    result = RunResult(results.root)
    with RunLock(results.lock), StageContext(exp, results, console) as ctx:
        results.experiment_path.write_text(
            yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
        try:
            run_stages(stages, ctx, only, force, result)
        finally:
            result.notes += [n for n in ctx.notes if n not in result.notes]
            if results.scored_path.exists():
                result.scored = pd.read_parquet(results.scored_path)
            write_summary(exp, results, result)
    return result


def write_summary(exp: Experiment, results: ResultsFolder, result: RunResult) -> None:
    summary = {
        "experiment": exp.name,
        "results_dir": str(results.root),
        "stages": [s.__dict__ for s in result.stages],
        "notes": result.notes,
    }
    if result.scored is not None:
        summary["scored"] = json.loads(result.scored.to_json(orient="records"))
    results.summary.write_text(json.dumps(summary, indent=1, ensure_ascii=False))
