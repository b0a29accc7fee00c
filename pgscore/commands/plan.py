"""``pgscore plan EXPERIMENT.yaml``: calls, tokens, cost and time per stage and model, before any model runs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer


def _fmt_secs(s: float) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "?"
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}min"
    return f"{s / 3600:.1f}h"


def _fmt_usd(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "?"
    return f"{v:.2e}" if 0 < v < 0.01 else f"{v:.2f}"


def plan_table(plan, title: str):
    """A rich Table of a :class:`pgscore.plan.Plan` with a total row."""
    from rich.table import Table

    t = Table(title=title)
    for c, j in (("stage", "left"), ("model", "left"), ("kind", "left"), ("calls", "right"), ("done", "right"),
                 ("prompt tok", "right"), ("compl tok", "right"), ("USD (to do)", "right"), ("time (to do)", "right"),
                 ("basis", "left")):
        t.add_column(c, justify=j, overflow="fold", ratio=3 if c == "basis" else None)
    for r in plan.table.to_dict(orient="records"):
        t.add_row(r["stage"], r["model"], r["kind"], str(r["calls"]), str(r["done"]), f"{r['prompt_tokens']:,}",
                  f"{r['completion_tokens']:,}", _fmt_usd(r["cost_usd"]), _fmt_secs(r["seconds"]), r["basis"])
    tot = plan.totals()
    t.add_row("total", "", "", str(tot["calls"]), str(tot["calls"] - tot["todo"]), "", "", _fmt_usd(tot["cost_usd"]),
              _fmt_secs(tot["seconds"]), "", style="bold")
    return t


def plan(
    experiment: Path = typer.Argument(..., help="Experiment YAML."),
    out: Path | None = typer.Option(None, "--out", help="Results folder to read what is done (default: the experiment's)."),
    pricing: Path | None = typer.Option(None, "--pricing", help="YAML with extra/overriding prices (see docs/sharing.md)."),
    throughput: Path | None = typer.Option(None, "--throughput", help="YAML with extra/overriding throughput entries."),
    parse_rates: Path | None = typer.Option(None, "--parse-rates",
                                            help="YAML with extra/overriding parse-rate entries (unseen teachers)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    save: bool = typer.Option(False, "--save", help="Also write plan.json into the results folder (ledger stats compares it)."),
) -> None:
    """Model calls, prompt/completion tokens, USD and time per stage and model, without calling a model."""
    from rich.console import Console

    from pgscore.config import load_experiment
    from pgscore.plan import PLAN_FILE, plan_experiment

    exp = load_experiment(experiment)
    result = plan_experiment(exp, out, pricing=pricing, throughput=throughput, parse_rates=parse_rates)
    data = result.to_json()
    if save:
        folder = Path(out) if out else exp.results_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PLAN_FILE).write_text(json.dumps(data, indent=1, ensure_ascii=False))
    if json_out:
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(plan_table(result, f"plan of {exp.name}"))
    for n in result.notes:
        console.print(f"[yellow]note:[/] {n}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
