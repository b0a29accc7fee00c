"""``pgscore ledger stats RESULTS_DIR``: calls, cache hits, tokens and cost per model and stage, and planned
vs actual calls and tokens when the results folder holds a saved plan (``pgscore plan --save``)."""

from __future__ import annotations

from pathlib import Path

import typer

ledger_app = typer.Typer(help="Inspect the run ledger (the cache of every model call).", no_args_is_help=True)

_HEADS = {"failures": "fail", "prompt_tokens": "prompt tok", "completion_tokens": "compl tok", "cost_usd": "USD"}


def _usd(v: float) -> str:
    return f"{v:.2e}" if 0 < v < 0.01 else f"{v:.2f}"


def stats_table(df, title: str):
    """A rich Table of ``Ledger.stats()`` with a total row (also printed at the end of ``pgscore run``)."""
    from rich.table import Table

    table = Table(title=title)
    for col in df.columns:
        table.add_column(_HEADS.get(col, col), justify="left" if col in ("model", "stage") else "right", no_wrap=True)
    for row in df.itertuples(index=False):
        table.add_row(*[_usd(v) if isinstance(v, float) else str(v) for v in row])
    if len(df):
        tot = df.drop(columns=["model", "stage"]).sum()
        table.add_row("total", "", *[_usd(v) if k == "cost_usd" else str(int(v)) for k, v in tot.items()],
                      style="bold")
    return table


def versus_table(df, title: str):
    """Planned vs actual calls and tokens (generation calls; log-likelihood requests carry no tokens)."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("model", "stage", "plan calls", "calls", "actual/plan", "plan tok", "tokens", "actual/plan "):
        table.add_column(col, justify="left" if col in ("model", "stage") else "right", no_wrap=True)
    r = lambda v: "-" if v != v else f"{v:.2f}"  # noqa: E731 - NaN: nothing planned
    for row in df.itertuples(index=False):
        table.add_row(row.model, row.stage, str(row.plan_calls), str(row.calls), r(row.calls_ratio),
                      str(row.plan_tokens), str(row.tokens), r(row.tokens_ratio))
    return table


@ledger_app.command("stats")
def stats(
    results_dir: Path = typer.Argument(..., help="Results folder holding ledger.sqlite (or the .sqlite file)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON records instead of a table."),
    failures: int = typer.Option(0, "--failures", help="Also list the N most recent failure reasons."),
    plan: Path | None = typer.Option(None, "--plan", help="A plan.json (`pgscore plan --save`/`--json`) to set "
                                     "beside the actual calls; default: RESULTS_DIR/plan.json when it exists."),
) -> None:
    """Calls sent, results stored, cache hits, failures, tokens and cost, per model and stage; with a saved
    plan, planned vs actual calls and tokens side by side."""
    import json

    from rich.console import Console

    from pgscore.errors import PgScoreError
    from pgscore.ledger import Ledger
    from pgscore.plan import PLAN_FILE, plan_vs_actual

    with Ledger(results_dir, create=False) as ledger:
        df = ledger.stats()
        fails = ledger.failures()[-failures:] if failures > 0 else []
    plan_path = plan or (results_dir / PLAN_FILE if results_dir.is_dir() else None)
    versus = None
    if plan_path is not None and (plan is not None or plan_path.is_file()):
        try:
            rows = json.loads(plan_path.read_text(encoding="utf-8"))["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            raise PgScoreError(f"{plan_path} is not a plan written by `pgscore plan --save` or `--json`") from None
        versus = plan_vs_actual(rows, df)
    if json_out:
        if versus is None:
            typer.echo(df.to_json(orient="records"))
        else:
            typer.echo(json.dumps({"stats": json.loads(df.to_json(orient="records")),
                                   "plan_vs_actual": json.loads(versus.to_json(orient="records"))}))
        return
    console = Console()
    if not console.is_terminal:  # piped / logged: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(stats_table(df, f"run ledger: {results_dir}"))
    if versus is not None:
        console.print(versus_table(versus, f"plan ({plan_path}) vs actual"))
    for f in fails:
        console.print(f"{f['model']} {f['stage']} {f['kind']}: {f['error']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
