"""``pgscore screen``: predict PG for teachers without students from their intrinsic metrics."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def screen(
    source: Path = typer.Argument(..., help="Results folder (metrics.parquet [+ extrinsic.parquet]) or a metrics table."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many teachers to propose training students for."),
    weight: float = typer.Option(0.5, "--weight", "-w", help="λ in PG = λ·PGR + (1−λ)·Z."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Fit intrinsic -> extrinsic (PCA + linear regression), predict the rest, validate by leave-one-teacher-out."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from pgscore.screen import check_weight, load_screen_input, screen_teachers

    check_weight(weight)  # before reading anything
    res = screen_teachers(load_screen_input(source), top_k=top_k, weight=weight)
    if as_json:
        typer.echo(json.dumps(res.to_dict(), ensure_ascii=False, indent=1, default=float))
        return
    console = Console(soft_wrap=True)
    console.print(Text(res.message, style="bold" if res.fitted else "yellow"))
    table = Table(title="teachers (actual PG where a student was trained, else predicted)")
    for col in ("rank", "teacher", "students?", "intrinsic Z", "PGR", "PG", "90% interval"):
        table.add_column(col, justify="left" if col in ("teacher", "students?") else "right", overflow="fold")
    for _, r in res.teachers.iterrows():
        has = bool(r["has_extrinsic"])
        pgr = r["pgr_actual"] if has else r["pgr_pred"]
        pg = r["pg_actual"] if has else r["pg_pred"]
        interval = "" if has or r["pg_lo"] != r["pg_lo"] else f"[{r['pg_lo']:+.2f}, {r['pg_hi']:+.2f}]"
        table.add_row(str(int(r["rank"])), Text(str(r["teacher"])), "yes" if has else "predicted",
                      f"{r['intrinsic_z']:+.2f}", "—" if pgr != pgr else f"{pgr:+.2f}", f"{pg:+.2f}", interval)
    console.print(table)
    if not res.loto.empty:
        v = res.validation
        console.print(Text(
            f"Leave-one-teacher-out: Spearman {v['loto_spearman_teachers']:.2f} (teacher means, n={len(res.loto)}), "
            f"{v['loto_spearman_rows']:.2f} (rows); Q² {v['loto_q2']:.2f}; MAE {v['loto_mae']:.3f} PGR"))
    if res.proposed:
        console.print(Text.assemble(("Train students for: ", "bold green"), ", ".join(res.proposed)))


def register(app: typer.Typer) -> None:
    app.command("screen")(screen)
