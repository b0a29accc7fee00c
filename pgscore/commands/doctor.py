"""``pgscore doctor``: check data, engines, GPU, tiny models, hub and API-key variables (see pgscore/doctor.py)."""

from __future__ import annotations

import sys

import typer


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON instead of a table."),
    smoke: bool = typer.Option(True, "--smoke/--no-smoke",
                               help="Run a one-token generation on each engine (a minute or two on CPU)."),
    hub_timeout: float = typer.Option(3.0, "--hub-timeout", min=0.1, help="Seconds to wait for the hub."),
) -> None:
    """Check what this machine can run; exit 0 only when the embedded default (tiny models) can run."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pgscore import doctor as d

    checks = d.run_checks(smoke=smoke, hub_timeout=hub_timeout)
    ok = d.embedded_default_ok(checks)
    if as_json:
        typer.echo(d.report_json(checks))
    else:
        colour = {d.OK: "green", d.WARN: "yellow", d.FAIL: "red", d.INFO: "cyan", d.SKIP: "dim"}
        table = Table(title="pgscore doctor")
        for col in ("check", "status", "detail", "fix"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(c.name, f"[{colour.get(c.status, 'white')}]{c.status}[/]", escape(c.detail), escape(c.fix))
        console = Console()
        console.print(table)
        console.print("[green]the embedded default can run[/]" if ok else
                      "[red]the embedded default cannot run here: see the fixes above[/]")
    if not ok:
        sys.exit(1)  # SystemExit passes through the CLI's main (typer.Exit's code would be dropped)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
