"""The stages of ``pgscore run``, in order: seed -> synthesize -> measure -> students -> score -> report.

Each is a :class:`~pgscore.stages.base.Stage`: the config sections it depends on, the results files it
writes, and a ``run(ctx)`` that calls the stage's own package (seed/, synthesis/, metrics/, student/ +
evaluation/, scoring, report/) with models from the context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgscore.stages.base import Stage, StageOutcome
from pgscore.stages.students import run_students

if TYPE_CHECKING:
    from pgscore.config import Experiment
    from pgscore.stages.context import StageContext


def run_seed(ctx: "StageContext") -> StageOutcome:
    from pgscore.seed.build import build_seed

    res = build_seed(ctx.exp.languages, ctx.exp.seed, out_dir=ctx.results.seed_dir)
    for w in res.warnings:
        ctx.console.print(f"[yellow]warning:[/] {w}")
    counts = res.seed.groupby("language").size().to_dict()
    return StageOutcome.done(f"{len(res.seed)} seed rows ({', '.join(f'{k}: {v}' for k, v in counts.items())}), "
                             f"{len(res.english_pool)} English prompts")


def run_synthesize(ctx: "StageContext") -> StageOutcome:
    from pgscore.seed.build import load_seed_dir
    from pgscore.synthesis.stage import synthesize

    exp = ctx.exp
    seed_df, pool = load_seed_dir(ctx.results.seed_dir)
    df = synthesize(exp.teachers, exp.languages, seed_df, pool, exp.synthesis, ctx.results.root,
                    load=ctx.loader("synthesize"))
    ok = int((df["status"] == "ok").sum())
    return StageOutcome.done(f"{len(df)} rows, {ok} ok, {len(df) - ok} failed (kept with reasons)")


def run_measure_stage(ctx: "StageContext") -> StageOutcome:
    from pgscore.metrics.measure import run_measure

    exp = ctx.exp
    cfg = exp.metrics
    if cfg.judge_templates is None:  # the judge prompt comes from the experiment's template set
        cfg = cfg.model_copy(update={"judge_templates": exp.synthesis.templates})
    _, metrics, notes = run_measure(ctx.results.synthetic, ctx.results.root, cfg,
                                    load=ctx.shared_loader("measure"),  # run_measure labels the ledger rows
                                    student=exp.student)
    return StageOutcome.done(f"{len(metrics)} metric rows" + (f"; {'; '.join(notes)}" if notes else ""), notes)


def run_score(ctx: "StageContext") -> StageOutcome:
    from pgscore.io import write_table

    exp = ctx.exp
    scored, notes, _ = ctx.results.scored_full(policy=exp.scoring.pgr_guard, weight=exp.scoring.weight)
    write_table(scored, ctx.results.scored_path)
    return StageOutcome.done(f"{len(scored)} teacher x language rows" + (f"; {'; '.join(notes)}" if notes else ""),
                             notes)


def run_report(ctx: "StageContext") -> StageOutcome:
    from pgscore.report.html import render_report

    return StageOutcome.done(f"wrote {render_report(ctx.results.root)}")


# ---- extra fingerprint inputs (what the config sections do not say) --------------------------------
def synthesis_templates(exp: "Experiment") -> Any:
    """Content hash of the synthesis template files: editing a template re-runs synthesis."""
    from pgscore.synthesis import templates

    return templates.template_hash(getattr(exp.synthesis, "templates", None))


def perplexity_bases(exp: "Experiment") -> Any:
    """The base LM(s) perplexity is taken under (``metrics.perplexity_model: student`` reads student bases)."""
    from pgscore.metrics.measure import perplexity_targets

    per_base, single, _ = perplexity_targets(exp.metrics, exp.student)
    return {"per_base": per_base, "single": single}


_UP_TO_SYNTHESIS = ("languages", "seed", "teachers", "synthesis")
_ALL = (*_UP_TO_SYNTHESIS, "metrics", "student", "evaluation", "scoring")

STAGES: tuple[Stage, ...] = (
    Stage("seed", ("languages", "seed"), ("seed",), run_seed, description="seed data per language + English pool"),
    Stage("synthesize", _UP_TO_SYNTHESIS, ("synthetic",), run_synthesize, extra=synthesis_templates,
          description="teachers generate / translate / respond"),
    Stage("measure", (*_UP_TO_SYNTHESIS, "metrics"), ("metrics",), run_measure_stage, extra=perplexity_bases,
          description="intrinsic metrics"),
    Stage("students", (*_UP_TO_SYNTHESIS, "student", "evaluation"), ("extrinsic",), run_students,
          description="screen, train, evaluate, PGR"),
    Stage("score", _ALL, ("scored",), run_score, description="PG-Score"),
    Stage("report", _ALL, ("report",), run_report, description="HTML report"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
