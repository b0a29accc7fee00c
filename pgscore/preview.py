"""``pgscore run EXPERIMENT.yaml --preview N``: the first N rows per teacher x language x method (first
trial) through the real synthesis and intrinsic metrics, shown side by side before paying for a full run.

The rows are the full run's own first rows (``synthesize(..., limit_per_method=N)`` filters the stage's row
plan; it never re-plans), written to the same ``synthetic_parts/`` shards, and every model call goes through
the run ledger (``pgscore.pipeline.cached_loader``) under the same stage names as the full run. So the full
run generates none of these rows again and its perplexity and judge requests for them are ledger hits. The
seed stage runs as in ``pgscore run`` (and is reused by it); ``synthetic.parquet`` and ``metrics*.parquet``
are left alone; the preview's rows and metrics are written to ``preview/preview.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from pgscore.errors import PgScoreError

@dataclass
class PreviewResult:
    rows: pd.DataFrame  # synthesis rows (ok and failed) joined with their per-example metrics
    results_dir: Path
    notes: list[str] = field(default_factory=list)


def run_preview(exp: Any, n: int, results_dir: str | Path | None = None, console: Console | None = None,
                progress: bool = True) -> PreviewResult:
    """Synthesize and measure the first ``n`` rows per teacher x language x method; see the module docstring."""
    from pgscore.metrics.measure import EXAMPLE_COLUMNS, load_measure_models, measure_dataset
    from pgscore.pipeline import run_experiment
    from pgscore.seed.build import load_seed_dir
    from pgscore.stages.context import StageContext
    from pgscore.synthesis.stage import synthesize

    if n < 1:
        raise PgScoreError(f"--preview needs a positive number of rows, got {n}")
    console = console or Console()
    out = Path(results_dir) if results_dir else exp.results_dir()
    run_experiment(exp, out, only=["seed"], console=console)  # the seed stage, reused by the full run
    seed_df, pool = load_seed_dir(out / "seed")
    notes: list[str] = []
    # the run's stage context (contract 4): each spec loaded once, every call in the run ledger under the
    # same stage names and keys as the full run
    with StageContext(exp, out, console) as ctx:
        synthetic = synthesize(exp.teachers, exp.languages, seed_df, pool, exp.synthesis, out,
                               load=ctx.loader("synthesize"), progress=progress, limit_per_method=n)
        rows = synthetic.copy()
        ok = synthetic[synthetic["status"] == "ok"]
        if ok.empty:
            notes.append("no preview row parsed: nothing to measure (see the errors)")
            for c in EXAMPLE_COLUMNS:
                if c not in rows:
                    rows[c] = None
        else:
            models = _measure_models(exp, ctx, load_measure_models)
            ex, _ = measure_dataset(ok, exp.metrics, cache_dir=out / "cache" / "embeddings", notes=notes,
                                    progress=progress, **models)
            keep = [c for c in ex.columns if c not in ("teacher", "language", "method", "trial")]
            if "student" in ex.columns:  # perplexity per student base: show the first base's
                ex = ex[ex["student"] == ex["student"].iloc[0]]
            rows = synthetic.merge(ex[keep], on="id", how="left")
    from pgscore.io import write_table

    from pgscore.results import ResultsFolder

    write_table(rows, ResultsFolder(out).preview)
    result = PreviewResult(rows, out, notes)
    console.print(preview_table(rows))
    console.print(summary_table(rows))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"preview rows are kept in {out} (synthetic_parts + ledger): the full run reuses them; "
                  f"`pgscore plan` now uses their parse rates and lengths")
    return result


def _measure_models(exp: Any, ctx: Any, load_measure_models) -> dict:
    """The measure stage's models, loaded through the run's context and wrapped in the run ledger as
    ``run_measure`` wraps them (``measure.perplexity``, ``measure.judge``)."""
    from pgscore.ledger import CachedModel
    from pgscore.models.embedders import CachedEmbedder, is_remote

    models = load_measure_models(exp.metrics, load=ctx.shared_loader("measure"), student=exp.student)
    wrap = lambda m, stage: m if m is None or isinstance(m, CachedModel) else CachedModel(  # noqa: E731
        m, ctx.ledger, stage=stage, chunk_size=exp.metrics.chunk_size)
    models["perplexity_model"] = wrap(models.get("perplexity_model"), "measure.perplexity")
    if models.get("perplexity_models"):
        models["perplexity_models"] = {k: wrap(m, "measure.perplexity") for k, m in models["perplexity_models"].items()}
    models["judge"] = wrap(models.get("judge"), "measure.judge")
    emb = models.get("embedder")
    if emb is not None and is_remote(emb):
        models["embedder"] = CachedEmbedder(emb, ctx.ledger, stage="measure.embed")
    return models


def _cut(text: Any, width: int = 160) -> str:
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return ""
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


def _num(v: Any, fmt: str) -> str:
    return "" if v is None or pd.isna(v) else format(float(v), fmt)


def preview_table(rows: pd.DataFrame) -> Table:
    """One line per preview row: teachers side by side within each language x method."""
    t = Table(title="preview: synthetic rows and their intrinsic metrics", show_lines=True)
    for col, kw in (("language", {}), ("method", {}), ("teacher", {}), ("prompt", {"ratio": 3}),
                    ("response", {"ratio": 3}), ("status", {}), ("ppl", {"justify": "right"}),
                    ("judge", {"justify": "right"}), ("lang id", {})):
        t.add_column(col, overflow="fold", **kw)
    order = rows.sort_values(["language", "method", "id"], kind="stable") if len(rows) else rows
    for r in order.to_dict(orient="records"):
        status = "[green]ok" if r["status"] == "ok" else f"[red]{_cut(r.get('error'), 60)}"
        lid = "/".join(x for x in (r.get("prompt_lang"), r.get("response_lang")) if isinstance(x, str))
        t.add_row(str(r["language"]), str(r["method"]), str(r["teacher"]), _cut(r.get("prompt")),
                  _cut(r.get("response")), status, _num(r.get("perplexity"), ".1f"),
                  _num(r.get("judge_score"), ".0f"), lid)
    return t


def summary_table(rows: pd.DataFrame) -> Table:
    """Per teacher x method: rows, parse rate, mean completion tokens, mean perplexity and judge score."""
    t = Table(title="preview summary (small samples: a look, not a measurement)")
    for c in ("teacher", "method", "rows", "ok", "compl tok", "ppl", "judge"):
        t.add_column(c, justify="left" if c in ("teacher", "method") else "right")
    if rows.empty:
        return t
    for (teacher, method), g in rows.groupby(["teacher", "method"], sort=True):
        okg = g[g["status"] == "ok"]
        ppl = pd.to_numeric(okg.get("perplexity"), errors="coerce") if "perplexity" in okg else pd.Series(dtype=float)
        js = pd.to_numeric(okg.get("judge_score"), errors="coerce") if "judge_score" in okg else pd.Series(dtype=float)
        t.add_row(str(teacher), str(method), str(len(g)), f"{len(okg)}/{len(g)}",
                  f"{g['completion_tokens'].astype(float).mean():.0f}", _num(ppl.mean() if len(ppl) else None, ".1f"),
                  _num(js.mean() if len(js) else None, ".2f"))
    return t
