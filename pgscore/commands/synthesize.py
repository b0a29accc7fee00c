"""``pgscore synthesize``: synthetic data from teachers with the three methods."""

from __future__ import annotations

from pathlib import Path

import typer

from pgscore.errors import PgScoreError


def parse_teacher(text: str):
    """``NAME=SPEC`` or just ``SPEC`` (name: the model part, e.g. ``smollm2-135m``)."""
    from pgscore.config import TeacherConfig

    name, sep, spec = text.partition("=")
    if not sep:
        spec = text
        name = Path(text.split(":", 1)[-1]).name.removesuffix(".gguf")
    if not spec.strip() or not name.strip():
        raise PgScoreError(f"--teacher takes SPEC or NAME=SPEC, got {text!r}")
    return TeacherConfig(name=name.strip(), model=spec.strip())


def parse_methods(text: str) -> dict[str, float]:
    """``generate,respond`` or ``generate=2,translate=1``."""
    out = {}
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        name, sep, weight = item.partition("=")
        try:
            out[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise PgScoreError(f"--methods: bad weight in {item!r}") from None
    return out


def synthesize(
    teacher: list[str] = typer.Option(..., "--teacher", "-t", help="Model spec (tiny:smollm2-135m, hf:/x.gguf, "
                                      "openai:...) or NAME=SPEC; repeatable."),
    languages: str = typer.Option(..., "--languages", "-l", help="Comma-separated language codes."),
    seed_dir: Path = typer.Option(..., "--seed-dir", help="Folder written by `pgscore seed`."),
    out: Path = typer.Option(..., "--out", "-o", help="Results folder (synthetic.parquet, synthetic_parts/)."),
    n: int = typer.Option(12, "--n", min=1, help="Examples per teacher × language × trial, split across methods."),
    trials: int = typer.Option(1, "--trials", min=1),
    methods: str = typer.Option("generate,translate,respond", "--methods", help="Methods and optional weights."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Override every teacher's max tokens."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    seed_: int = typer.Option(0, "--seed"),
    templates: str = typer.Option("paper", "--templates", help="Prompt templates: paper, legacy or a folder of "
                                  "*.j2 files overriding the paper preset (docs/templates.md)."),
) -> None:
    """Generate synthetic SFT data (generate / translate / respond); re-running resumes."""
    from pydantic import ValidationError
    from rich.console import Console

    from pgscore.languages import normalize
    from pgscore.seed.build import load_seed_dir
    from pgscore.synthesis.config import SynthesisConfig
    from pgscore.synthesis.stage import synthesize as run

    try:
        cfg = SynthesisConfig(methods=parse_methods(methods), examples_per_cell=n, trials=trials,
                              max_tokens=max_tokens, batch_size=batch_size, seed=seed_, templates=templates)
        teachers = [parse_teacher(t) for t in teacher]
    except ValidationError as exc:
        raise PgScoreError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise PgScoreError("teacher names repeat: name them with NAME=SPEC")
    langs = [normalize(x) for x in languages.split(",") if x.strip()]
    seed_df, pool = load_seed_dir(seed_dir)
    from pgscore.stages.context import StageContext

    with StageContext.for_folder(out) as ctx:  # every teacher call goes through out/ledger.sqlite
        df = run(teachers, langs, seed_df, pool, cfg, out, load=ctx.loader("synthesize"))
    console = Console(soft_wrap=True)
    summary = df.groupby(["teacher", "language", "method", "status"]).size().unstack("status", fill_value=0)
    console.print(summary.to_string())
    errors = df.loc[df["status"] == "failed", "error"].fillna("").str.split(":").str[0].value_counts()
    if len(errors):
        console.print("failures by reason: " + ", ".join(f"{k} {v}" for k, v in errors.items()), highlight=False)
    console.print(f"wrote {len(df)} rows ({int((df['status'] == 'ok').sum())} ok) to {out / 'synthetic.parquet'}")


def register(app: typer.Typer) -> None:
    app.command("synthesize")(synthesize)
