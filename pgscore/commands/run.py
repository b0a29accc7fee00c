"""``pgscore run EXPERIMENT.yaml``: the whole method, resumable."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def run(
    experiment: Path = typer.Argument(..., help="Experiment YAML (see examples/quickstart.yaml)."),
    out: Path | None = typer.Option(None, "--out", help="Results folder (default: output_dir or results/<name>)."),
    only: str | None = typer.Option(None, "--only", help="Comma-separated stages to run (others are left as they are)."),
    force: str | None = typer.Option(None, "--force", help="Comma-separated stages to redo (and everything after them)."),
    preview: int | None = typer.Option(None, "--preview", help="Only N rows per teacher x language x method through "
                                       "synthesis and metrics, shown side by side; the full run reuses them."),
) -> None:
    """Run seed -> synthesize -> measure -> students -> score -> report; a re-run resumes where it stopped."""
    from pgscore.config import load_experiment
    from pgscore.commands.score import leaderboard_of, render_leaderboard
    from pgscore.pipeline import run_experiment

    console = Console() if sys.stdout.isatty() else Console(width=160)  # logs: don't squeeze tables to 80
    exp = load_experiment(experiment)
    if preview is not None:
        from pgscore.preview import run_preview

        run_preview(exp, preview, out, console=console)
        return
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    result = run_experiment(exp, out, only=split(only), force=split(force), console=console)

    table = Table(title=f"stages of {exp.name}")
    for col in ("stage", "status", "seconds", "note"):
        table.add_column(col, overflow="fold")
    style = {"done": "green", "reused": "cyan", "skipped": "yellow", "failed": "red"}
    for s in result.stages:
        table.add_row(s.name, f"[{style.get(s.status, '')}]{s.status}", f"{s.seconds:.1f}", s.note)
    console.print(table)

    if (result.results_dir / "ledger.sqlite").is_file():
        from pgscore.commands.ledger import stats_table
        from pgscore.ledger import Ledger

        usage = Ledger(result.results_dir, create=False).stats()
        if len(usage):
            console.print(stats_table(usage, "model calls, cache hits, tokens and cost (run ledger)"))

    if result.scored is not None and len(result.scored):
        board, title, _ = leaderboard_of(result.scored, exp.scoring.weight)
        console.print(f"[bold]{title}")  # the same table as `pgscore score` (intervals where known)
        console.print(render_leaderboard(board))
    for n in result.notes:
        console.print(f"[yellow]note:[/] {n}")
    console.print(f"results: {result.results_dir}  (report: {result.results_dir / 'report.html'})")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
