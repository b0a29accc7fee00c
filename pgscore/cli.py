"""The ``pgscore`` command line. Each subcommand lives in ``pgscore/commands/<name>.py`` and exposes
``register(app)``; this module only wires them and turns user errors into one-line messages."""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from pgscore.errors import PgScoreError

app = typer.Typer(
    name="pgscore",
    help="Choose the teacher model and generation method for multilingual synthetic SFT data (PG-Score).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True, emoji=False)

COMMAND_MODULES = (
    "run",
    "seed",
    "synthesize",
    "measure",
    "train",
    "evaluate",
    "score",
    "analyze",
    "report",
    "recommend",
    "screen",
    "ledger",
    "plan",
    "push",
    "doctor",
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"pgscore.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"pgscore.commands.{name}":
                continue  # not built yet
            raise
        module.register(app)


_register_all()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from pgscore import __version__

        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line (``error: ...``) and exit 2, never a traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except PgScoreError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted: results written so far are kept; re-run the same command to resume")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # usage errors (typer vendors its own click, so match by shape, not class)
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code or 2)
        raise
