"""``pgscore evaluate``: score a model on the built-in benchmarks (Global-MMLU Lite, M-RewardBench, MGSM)."""

from __future__ import annotations

from pathlib import Path

import typer

from pgscore.errors import PgScoreError


def _fmt(v) -> str:
    if isinstance(v, float):
        return "—" if v != v else f"{v:.3f}"
    return "" if v is None else str(v)


def evaluate(
    model: str = typer.Option(..., "--model", help="Model spec, e.g. tiny:gemma3-270m, hf:/path/student."),
    languages: str = typer.Option(..., "--languages", help="Comma-separated language codes, e.g. de,id."),
    benchmarks: str | None = typer.Option(None, "--benchmarks", help="Comma-separated; default: all built-ins."),
    limit: int | None = typer.Option(None, "--limit", help="Examples per benchmark x language (seeded sample)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the sample and for generation."),
    out: Path = typer.Option(Path("results/eval"), "--out", help="Results folder (cached per model)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Requests per model call."),
    no_hub: bool = typer.Option(False, "--no-hub", help="Use local data only, never the Hugging Face hub."),
    data: list[str] = typer.Option([], "--data", help="BENCHMARK=FILE: rows in the benchmark's hub schema."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Generation budget (MGSM chain of thought)."),
    signal: str = typer.Option("accuracy", "--signal", help="accuracy, or graded (gold-answer probability; MGSM "
                               "then skips generation)."),
    formulation: list[str] = typer.Option([], "--formulation", help="BENCHMARK=FORM: global_mmlu_lite / m_rewardbench mcf|cloze (default mcf), mgsm cot|number (default cot)."),
) -> None:
    """Evaluate one model; prints a summary table and writes summary.parquet + per-example Parquet files."""
    from rich.console import Console
    from rich.table import Table

    from pgscore.evaluation.registry import task_names
    from pgscore.evaluation.runner import evaluate as run_eval
    from pgscore.io import write_table

    langs = [x.strip() for x in languages.split(",") if x.strip()]
    tasks = [x.strip() for x in benchmarks.split(",")] if benchmarks else task_names()
    unknown = sorted(set(tasks) - set(task_names()))
    if unknown:
        raise PgScoreError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(task_names())}")
    files = {}
    for item in data:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise PgScoreError(f"--data expects BENCHMARK=FILE, got {item!r}")
        if not Path(path).is_file():
            raise PgScoreError(f"--data file not found: {path}")
        files[name] = path
    if signal not in ("accuracy", "graded"):
        raise PgScoreError(f"--signal must be accuracy or graded, got {signal!r}")
    forms = {}
    for item in formulation:
        name, sep, form = item.partition("=")
        if not sep or form not in ("mcf", "cloze", "cot", "number"):
            raise PgScoreError(f"--formulation expects BENCHMARK=FORM (mcf, cloze, cot or number), got {item!r}")
        forms[name] = form
    from pgscore.stages.context import StageContext

    with StageContext.for_folder(out) as ctx:  # the model's calls go through out/ledger.sqlite
        res = run_eval(model, tasks, langs, limit=limit, seed=seed, out_dir=out, hub=not no_hub, data_files=files,
                       batch_size=batch_size, max_new_tokens=max_new_tokens, load=ctx.loader("evaluate"),
                       signal=signal, formulations=forms)
    summary = res.drop(columns=["model_dir"])
    write_table(summary, out / res["model_dir"].iloc[0] / "summary.parquet")
    cols = ("task", "language", "status", "n", "primary_metric", "score", "graded")
    t = Table(title=f"{model} (seed {seed}, limit {limit})")
    for c in cols:
        t.add_column(c)
    for r in res.itertuples():
        t.add_row(*(_fmt(getattr(r, c)) for c in cols))
    console = Console()
    console.print(t)
    for r in res.itertuples():  # notes (stand-ins, not covered, missing data) as full lines
        if isinstance(r.note, str) and r.note:
            console.print(f"- {r.task} {r.language}: {r.note}", highlight=False, soft_wrap=True)
    typer.echo(f"results in {out / res['model_dir'].iloc[0]}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
