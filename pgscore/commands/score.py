"""``pgscore score``: PG-Score per teacher × language from a metrics table, with a ranked leaderboard."""

from __future__ import annotations

from pathlib import Path

import typer

from pgscore.errors import PgScoreError


def render_leaderboard(board, intervals=None):
    """A rich Table from scoring.leaderboard's output. With ``intervals`` (scoring.leaderboard_intervals)
    and the board's mean_pg_low/mean_pg_high/p_best_overall columns, cells read ``0.512 [0.41, 0.60]``."""
    import pandas as pd
    from rich.table import Table

    table = Table()
    fixed = ("rank", "student", "method", "teacher", "mean_pg", "mean_z", "n_languages", "mean_pg_low", "mean_pg_high",
             "p_best_overall")
    n_lang = len([c for c in board.columns if c not in fixed])
    if "n_languages" in board and (board["n_languages"] == n_lang).all():
        board = board.drop(columns="n_languages")  # every teacher has every language
    lo_t = board.pop("mean_pg_low") if "mean_pg_low" in board else None
    hi_t = board.pop("mean_pg_high") if "mean_pg_high" in board else None
    keys = [c for c in ("student", "method", "teacher") if c in board.columns]
    lo_l = hi_l = None
    if intervals is not None:
        idx = [k for k in intervals[0].index.names if k in board.columns]
        where = pd.MultiIndex.from_frame(board[idx]) if len(idx) > 1 else pd.Index(board[idx[0]])
        lo_l, hi_l = (w.reindex(where) for w in intervals)
    for col in board.columns:
        text = col in ("teacher", "student", "method")
        name = "P(best)" if col == "p_best_overall" else str(col)
        table.add_column(name, justify="left" if text else "right", overflow="fold" if text else "ellipsis")
    for i, (_, row) in enumerate(board.iterrows()):
        cells = []
        for col in board.columns:
            v = row[col]
            if col in ("rank", "n_languages"):
                cells.append(str(int(v)))
            elif col == "p_best_overall":
                cells.append("—" if v != v else f"{100 * v:.0f}%")
            elif isinstance(v, float):
                lo = hi = float("nan")
                if col in ("mean_pg", "mean_z") and lo_t is not None:
                    lo, hi = lo_t.iloc[i], hi_t.iloc[i]
                elif lo_l is not None and col in lo_l.columns:
                    lo, hi = lo_l[col].iloc[i], hi_l[col].iloc[i]
                cell = "—" if v != v else f"{v:.3f}"
                if v == v and lo == lo and hi == hi:
                    cell += f" [{lo:.2f}, {hi:.2f}]"
                cells.append(cell)
            else:
                cells.append(str(v))
        table.add_row(*cells)
    return table


def read_results_dir(folder: Path):
    """A results folder's dataset-level metrics joined with its extrinsic table (``ResultsFolder.joined``)."""
    from pgscore.results import ResultsFolder

    return ResultsFolder(folder).require_dir().joined()


def leaderboard_of(scored, weight: float):
    """(board, title, note) for a scored table whose PG-Score may be undefined for some or all rows:
    rows without PG are left out of the ranking (note says how many); with no PG at all, teachers are
    ranked by intrinsic Z and the title says so."""
    from pgscore.scoring import leaderboard

    defined = scored["pg_score"].notna()
    if defined.any():
        board = leaderboard(scored[defined])
        title = f"PG-Score leaderboard (λ = {weight:g})"
        note = "" if defined.all() else (
            f"{int((~defined).sum())} of {len(scored)} teacher × language rows have no PG-Score (PGR undefined, "
            "see pgr_note) and are left out of the ranking")
        return board, title, note
    board = leaderboard(scored.assign(pg_score=scored["intrinsic_z"])).rename(columns={"mean_pg": "mean_z"})
    return board, "Intrinsic Z leaderboard (no PGR: PG-Score undefined)", "PGR is undefined for every row (see pgr_note)"


def score(
    metrics: Path = typer.Option(
        ..., "--metrics", "-m",
        help="Metrics table (.csv, .jsonl, .json, .parquet), or a results folder (metrics.parquet + extrinsic.parquet; "
        "writes scored.parquet there unless --out is given).",
    ),
    weight: float = typer.Option(0.5, "--weight", "-w", help="λ in PG = λ·PGR + (1−λ)·Z, in [0, 1]."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write one row per teacher × language (.csv/.json/.jsonl/.parquet)."
    ),
    pgr_guard: str | None = typer.Option(
        None, "--pgr-guard", help="lenient (keep a PGR whose reference-base gap is under 2 SE, flagged) or strict "
        "(blank it); default: the folder's scoring.pgr_guard, else lenient.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the interval / P(best) resampling."),
) -> None:
    """Score teachers: intrinsic Z (z over all rows), PGR, PG-Score; print the leaderboard."""
    from rich.console import Console

    from pgscore import io, scoring

    if out is not None and out.suffix.lower() not in io.TABLE_SUFFIXES:
        raise PgScoreError(f"unknown output format {out.suffix!r} for {out}; use one of {', '.join(io.TABLE_SUFFIXES)}")
    note = ""
    if pgr_guard is not None and pgr_guard not in scoring.PGR_GUARDS:
        raise PgScoreError(f"--pgr-guard must be one of {', '.join(scoring.PGR_GUARDS)}, got {pgr_guard!r}")
    messages: list[str] = []
    if metrics.is_dir():  # a results folder: scored the way `pgscore run` scores it (undefined PGR kept as NaN)
        from pgscore import uncertainty
        from pgscore.results import ResultsFolder

        folder = ResultsFolder(metrics).require_dir()
        scored, notes, unc = uncertainty.score_folder(folder.root, weight, pgr_guard, seed=seed)
        df = folder.metrics()
        messages = [n for n in notes if n.startswith("warning")] + unc.messages
        board, _, note = leaderboard_of(scored, weight)
        out = out or folder.scored_path
    else:
        from pgscore import uncertainty

        df = io.read_table(metrics)
        rows = scoring.score_rows(df, weight, pgr_guard=pgr_guard or "lenient")
        unc = uncertainty.propagate(rows, weight, seed=seed)
        scored = uncertainty.attach(scoring.average_trials(rows, scoring.key_columns(rows)), unc)
        messages = unc.messages
        board = scoring.leaderboard(scored)
    trials = int(scored["n_trials"].max())
    if "student" in scored.columns and scored["student"].nunique() > 1:
        z_rows = f"each student's rows ({scored['student'].nunique()} students, {len(df)} rows)"
    else:
        z_rows = f"{len(df)} rows"
    console = Console(soft_wrap=True)
    console.print(
        f"[bold]PG-Score[/] (λ={weight:g}) — {scored['teacher'].nunique()} teachers × "
        f"{scored['language'].nunique()} languages, z over {z_rows}"
        + (f", mean of up to {trials} trials" if trials > 1 else ""),
        soft_wrap=True,
    )
    console.print(render_leaderboard(board, scoring.leaderboard_intervals(scored)))
    if "interval_source" in scored.columns and scored["interval_source"].eq("none").all():
        console.print("[yellow]no intervals:[/] the table has one trial and no SE columns (see docs/scoring.md)")
    for m in messages[:1] + [m for m in messages[1:] if "not separable" in m or m.startswith("warning")]:
        console.print(("[yellow]" if "not separable" in m or m.startswith("warning") else "") + m, soft_wrap=True)
    import pandas as pd

    # averaged over trials, pgr_reliable is the share of reliable trials: below 1 = some trial unreliable
    reliable = pd.to_numeric(scored.get("pgr_reliable", pd.Series(dtype=float)).astype("float"), errors="coerce")
    flagged = reliable.lt(1) & scored["pgr"].notna() if "pgr" in scored.columns else reliable.lt(1)
    if flagged.any():
        n = int(flagged.sum())
        console.print(f"[yellow]note:[/] {n} row(s) have pgr_reliable=false (reference-base gap under 2 SE)")
    if note:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if out is not None:
        io.write_table(scored, out)
        console.print(f"wrote {len(scored)} rows to {out}")


def register(app: typer.Typer) -> None:
    app.command("score")(score)
