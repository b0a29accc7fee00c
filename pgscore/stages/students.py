"""The students stage: for each student base, screen (optional), train one student per teacher × language
× trial, build the seed-SFT reference when asked, and evaluate students, base and reference into
``extrinsic.parquet`` (contract 1: ``student`` = the base's name, ``student_model`` = the trained model).

Base and reference are loaded once through the stage context (contract 4) and handed to evaluation
(contract 2), so a base that is also a teacher or the perplexity model is not loaded again.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import pandas as pd

from pgscore.errors import PgScoreError
from pgscore.stages.base import StageOutcome
from pgscore.student.config import SEED_SFT, TASK_SFT  # noqa: F401  (SEED_SFT re-exported by pgscore.pipeline)

if TYPE_CHECKING:
    from pgscore.stages.context import StageContext

STAGE = "students"


def student_bases(student_cfg: Any) -> list:
    """``StudentConfig.resolved_bases()`` (contract 3)."""
    return student_cfg.resolved_bases()


def screened_teachers(ctx: "StageContext", teachers: list[str]) -> tuple[list[str], list[str]]:
    """The top-k teachers by screening (``student.top_k``), else all; with the note it leaves."""
    cfg = ctx.exp.student
    if not cfg.top_k or cfg.top_k >= len(teachers):
        return teachers, []
    from pgscore.screen import screen_teachers

    screened = screen_teachers(ctx.results.metrics(dataset_level=False), cfg.top_k)
    chosen = list(screened.proposed)
    return chosen, [f"screening chose {', '.join(chosen)} for students ({screened.message})"]


def evaluate_in_memory(ctx: "StageContext", languages: list[str]):
    """``train_student``'s ``on_trained`` hook: score the model just trained on ``languages`` while it is in
    memory, through the ledger with the saved folder's identity, into the evaluation cache that
    :func:`evaluate_students` reads; the folder is then never loaded again (a re-run reads the cache)."""

    def hook(folder, model, tokenizer) -> None:
        from pgscore.evaluation.runner import evaluate
        from pgscore.evaluation.stage import evaluate_kwargs
        from pgscore.ledger import CachedModel
        from pgscore.models.base import ModelSpec
        from pgscore.models.local import TransformersLM
        from pgscore.stages.context import local_model_identity

        spec = ModelSpec.parse(f"hf:{folder}")  # exactly what evaluate_students names it
        model = cast_for_inference(model, spec)  # the dtype loading the folder would give (bf16 on bf16 CPUs)
        lm = CachedModel(TransformersLM(model, tokenizer, spec), ctx.ledger, stage=STAGE,
                         identity=local_model_identity(spec))
        evaluate(lm, ctx.exp.evaluation.benchmarks, languages, **evaluate_kwargs(ctx.exp.evaluation,
                                                                                  ctx.results.eval_dir))

    return hook


def cast_for_inference(model, spec):
    """The trained model (float32 master weights) in the dtype ``spec`` resolves to, as ``load_model`` would
    load the saved folder: a student scores the same in memory and from disk."""
    import torch

    from pgscore.models.precision import dtype_name

    want = getattr(torch, dtype_name(spec, str(model.device).split(":")[0]))
    return model.to(want) if model.dtype != want else model


def train_students(ctx: "StageContext", base, teachers: list[str], ok: pd.DataFrame, notes: list[str],
                   prefix: str = "") -> list[dict]:
    """One student per teacher × language × trial with 2 or more usable rows (a finished folder is kept)."""
    from pgscore.student.train import train_student
    from pgscore.synthesis.stage import slug

    exp = ctx.exp
    students = []
    for teacher in teachers:
        for lang in exp.languages:
            for trial in sorted(ok["trial"].unique()):
                rows = ok[(ok["teacher"] == teacher) & (ok["language"] == lang) & (ok["trial"] == trial)]
                if len(rows) < 2:
                    notes.append(f"no student for {teacher}/{lang}/trial {trial}: {len(rows)} usable synthetic rows")
                    continue
                path = ctx.results.student_dir(f"{prefix}{slug(teacher)}-{lang}-{trial}")
                ctx.console.print(f"student{f' ({base.name})' if prefix else ''}: {teacher} / {lang} / trial {trial} "
                                  f"({len(rows)} usable rows)")
                train_student(rows, base.base, path, exp.student.training, teacher=teacher, language=lang,
                              on_trained=evaluate_in_memory(ctx, [lang]))
                students.append({"teacher": teacher, "language": lang, "trial": int(trial), "student": base.name,
                                 "student_model": f"hf:{path}"})
    return students


def references(ctx: "StageContext", base, notes: list[str], prefix: str = "") -> dict[str, Any]:
    """language -> reference spec: the configured instruct model, a seed-SFT model trained here, or None."""
    from pgscore.student.train import train_student

    exp = ctx.exp
    if base.reference == TASK_SFT and exp.student.task_sft_scope == "joint":
        return task_sft_reference(ctx, base, exp.languages, notes, prefix, name="joint")
    out: dict[str, Any] = {}
    for lang in exp.languages:
        if base.reference == TASK_SFT:
            out.update(task_sft_reference(ctx, base, [lang], notes, prefix))
            continue
        if base.reference != SEED_SFT:
            out[lang] = base.reference
            continue
        seed = pd.read_parquet(ctx.results.seed)
        pairs = seed[(seed["language"] == lang) & seed["response"].notna()].assign(method="seed", status="ok")
        if len(pairs) < 2:
            out[lang] = None
            notes.append(f"no seed-sft reference for {lang}: fewer than 2 seed pairs")
            continue
        path = ctx.results.student_dir(f"_reference-seed-sft-{prefix}{lang}")
        ctx.console.print(f"reference: {base.name} fine-tuned on {len(pairs)} {lang} seed pairs")
        train_student(pairs, base.base, path, exp.student.reference_training or exp.student.training,
                      teacher="seed pairs (human-written)", language=lang, on_trained=evaluate_in_memory(ctx, [lang]))
        out[lang] = f"hf:{path}"
    if base.reference is None:
        notes.append(f"no reference for student base {base.name}: PGR is undefined (set an instruct model of the "
                     "base's family)")
    return out


def task_sft_pairs(evaluation, language: str, limit: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """(training rows, sources) for a task-sft reference: each configured benchmark that covers ``language``
    and has a training split gives up to ``limit`` (prompt, completion) pairs in its evaluated formulation."""
    from pgscore.errors import DataMissingError
    from pgscore.evaluation.registry import get_task
    from pgscore.evaluation.runner import configure_task

    rows, sources = [], []
    for name in evaluation.benchmarks:
        task = get_task(name)
        if not task.covers(language):
            continue
        configure_task(task, evaluation.formulation, evaluation.hub_revisions, evaluation.signal,
                       evaluation.max_new_tokens)
        try:
            pairs, source = task.train_pairs(language, limit, seed, hub=evaluation.hub)
        except DataMissingError:
            continue
        if not pairs:  # hub unreachable: nothing to train on from this benchmark
            continue
        rows += [{"id": f"{name}/{i}", "prompt": p, "response": c, "method": "task", "status": "ok"}
                 for i, (p, c) in enumerate(pairs)]
        sources.append(f"{name}: {len(pairs)} from {source}")
    return pd.DataFrame(rows), sources


def task_sft_reference(ctx: "StageContext", base, languages: list[str], notes: list[str], prefix: str = "",
                       name: str | None = None) -> dict[str, Any]:
    """The base fine-tuned on the benchmarks' training splits of ``languages`` together (prompts verbatim, no
    chat template; ``task_sft_examples`` pairs per benchmark and language), with ``student.reference_training``
    (else the students' settings): an upper anchor where no instruct model of the base's family is at hand.
    ``task_sft_scope: joint`` trains one for every language (folder ``name`` "joint"), as the paper's one
    instruct model serves all languages; ``per_language`` one per language. language -> its spec (None,
    with a note, where no benchmark has a training split for it)."""
    from pgscore.student.train import train_student

    exp = ctx.exp
    frames, sources, covered = [], [], []
    for lang in languages:
        pairs, src = task_sft_pairs(exp.evaluation, lang, exp.student.task_sft_examples, exp.student.training.seed)
        if len(pairs) < 2:
            notes.append(f"no task-sft reference for {lang}: no benchmark with a training split covers it")
            continue
        frames.append(pairs.assign(id=lang + "/" + pairs["id"]))
        sources.append(f"{lang}: {'; '.join(src)}")
        covered.append(lang)
    out: dict[str, Any] = {lang: None for lang in languages}
    if not frames:
        return out
    pairs = pd.concat(frames, ignore_index=True)
    path = ctx.results.student_dir(f"_reference-task-sft-{prefix}{name or '-'.join(covered)}")
    ctx.console.print(f"reference: {base.name} fine-tuned on {len(pairs)} benchmark training pairs "
                      f"({' | '.join(sources)})")
    train_student(pairs, base.base, path, exp.student.reference_training or exp.student.training,
                  teacher="benchmark training splits (task-sft)", language=",".join(covered), raw_prompts=True,
                  on_trained=evaluate_in_memory(ctx, covered))
    out.update({lang: f"hf:{path}" for lang in covered})
    return out


def evaluate_students(ctx: "StageContext", base, students: list[dict], refs: dict[str, Any]) -> list[pd.DataFrame]:
    """extrinsic rows per language, models loaded through the context (contract 2)."""
    from pgscore.evaluation.stage import extrinsic_table

    params = inspect.signature(extrinsic_table).parameters
    kw: dict[str, Any] = {}
    if "load" in params:
        kw["load"] = ctx.loader(STAGE)
    if "student_name" in params:
        kw["student_name"] = base.name
    frames = []
    for lang in ctx.exp.languages:
        group = [s for s in students if s["language"] == lang]
        if group:
            frames.append(extrinsic_table(group, base.base, refs[lang], ctx.exp.evaluation, ctx.results.eval_dir, **kw))
    return frames


def run_students(ctx: "StageContext") -> StageOutcome:
    """The stage: every student base in turn (``student.bases`` or ``student.base``)."""
    from pgscore.io import write_table

    exp = ctx.exp
    bases = student_bases(exp.student)
    if not bases:
        return StageOutcome.skipped("no student.base in the experiment (PGR needs a student)")
    notes: list[str] = []
    synthetic = pd.read_parquet(ctx.results.synthetic)
    ok = synthetic[synthetic["status"] == "ok"]
    teachers, screen_notes = screened_teachers(ctx, [t.name for t in exp.teachers])
    notes += screen_notes
    several = len(bases) > 1
    frames: list[pd.DataFrame] = []
    for base in bases:
        prefix = f"{base.name}--" if several else ""  # one base keeps the folder names of earlier versions
        students = train_students(ctx, base, teachers, ok, notes, prefix)
        refs = references(ctx, base, notes, prefix)
        frames += evaluate_students(ctx, base, students, refs)
    if not frames:
        raise PgScoreError("no student could be trained: no teacher produced 2 or more usable rows")
    extrinsic = pd.concat(frames, ignore_index=True)
    write_table(extrinsic, ctx.results.extrinsic_path)
    defined = int(extrinsic["pgr"].notna().sum())
    return StageOutcome.done(f"{len(extrinsic)} students evaluated, PGR defined for {defined}", notes)
