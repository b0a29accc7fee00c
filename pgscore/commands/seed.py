"""``pgscore seed``: build the seed table and the English prompt pool for some languages."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pgscore.errors import PgScoreError


def _parse_sources(specs: list[str], columns: list[str], language: str | None, quota: int | None):
    """``--source`` values: a preset name (builtin, vicuna80, cendol, aya...), ``hf:owner/name`` or a path."""
    from pgscore.seed.config import SeedSource
    from pgscore.seed.presets import PRESETS

    mapping = {}
    for item in columns:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise PgScoreError(f"--map takes OURS=COLUMN (e.g. prompt=inputs), got {item!r}")
        mapping[ours.strip()] = theirs.strip()
    out = []
    for spec in specs:
        extra = {k: v for k, v in (("quota", quota), ("language", language)) if v is not None}
        if mapping:
            extra["columns"] = mapping
        if spec in PRESETS:
            out.append(SeedSource(name=spec, preset=spec, **extra))
        elif spec.startswith("hf:"):
            out.append(SeedSource(name=spec[3:], hf_dataset=spec[3:], **extra))
        else:
            if not Path(spec).exists() and not any(c in spec for c in "*?[{"):
                raise PgScoreError(f"--source {spec!r} is neither a preset ({', '.join(sorted(PRESETS))}), "
                                   "hf:<dataset id>, nor an existing file")
            out.append(SeedSource(name=Path(spec).stem, path=spec, **extra))
    return out


def seed(
    languages: str = typer.Option(..., "--languages", "-l", help="Comma-separated language codes, e.g. de,id,ja."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for seed.parquet, english_pool.parquet, seed_report.csv."),
    per_language: int | None = typer.Option(None, "--per-language", "-n", min=1, help="At most N seed rows per language."),
    source: list[str] = typer.Option([], "--source", "-s", help="Preset name, hf:<dataset id> or a file; repeatable. "
                                      "Default: builtin pairs + vicuna80 prompts."),
    map_: list[str] = typer.Option([], "--map", help="Column mapping for --source files, OURS=COLUMN (prompt, response, "
                                   "language, messages); repeatable."),
    language: str | None = typer.Option(None, "--language", help="Language of every row of the --source files."),
    quota: int | None = typer.Option(None, "--quota", min=1, help="At most N rows per language per --source."),
    no_langid: bool = typer.Option(False, "--no-langid", help="Keep rows whatever language-ID says."),
    seed_: int = typer.Option(0, "--seed", help="Seed for quota sampling."),
    recipe: str | None = typer.Option(None, "--recipe", help="A whole seed recipe instead of --source: 'paper' "
                                      "(the paper's Table 6 sources; quotas per language: docs/data-formats.md)."),
    recipe_dir: Path | None = typer.Option(None, "--recipe-dir", help="Local copies of the recipe's sources "
                                           "(DIR/<preset>.jsonl|json|parquet|csv in the hub schema) instead of the hub."),
    recipe_quota: list[str] = typer.Option([], "--recipe-quota", help="SOURCE=N: rows per language from one recipe "
                                           "source (e.g. aya=500; 0 leaves it out), SOURCE:LANG=N for one "
                                           "language (e.g. cidar:ar=1000); repeatable."),
) -> None:
    """Build seed data: target-language pairs and prompts, plus English prompts for Translate."""
    from rich.console import Console
    from rich.table import Table

    from pgscore.seed.build import DROP_REASONS, build_seed
    from pgscore.seed.config import SeedConfig

    langs = [x.strip() for x in languages.split(",") if x.strip()]
    if recipe is not None and recipe != "paper":
        raise PgScoreError(f"--recipe {recipe!r}: the known recipe is 'paper'")
    if recipe and source:
        raise PgScoreError("give --recipe or --source, not both")
    quotas: dict[str, int | dict[str, int]] = {}
    for item in recipe_quota:
        key, sep, n = item.partition("=")
        name, _, lang = (x.strip() for x in key.partition(":"))
        if not sep or not name or not n.strip().isdigit() or (":" in key and not lang):
            raise PgScoreError(f"--recipe-quota takes SOURCE=N or SOURCE:LANG=N with N >= 0 (e.g. aya=500, "
                               f"cidar:ar=1000), got {item!r}")
        if lang:
            prev = quotas.get(name)
            quotas[name] = {**(prev if isinstance(prev, dict) else {}), lang: int(n)}
        else:
            quotas[name] = int(n)
    if (recipe_dir or quotas) and not recipe:
        raise PgScoreError("--recipe-dir and --recipe-quota need --recipe paper")
    cfg = SeedConfig(per_language=per_language, langid_filter=not no_langid, seed=seed_, recipe=recipe,
                     recipe_dir=str(recipe_dir) if recipe_dir else None, recipe_quotas=quotas)
    if source:
        cfg.sources = _parse_sources(source, map_, language, quota)
    result = build_seed(langs, cfg, out_dir=out)
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 120)
    table = Table(title="seed sources")
    short = {"wrong_language": "wrong lang", "duplicate": "dup", "per_language_cap": "cap", "language": "lang"}
    for col in ["source", "language", "kind", "loaded", "kept", *DROP_REASONS]:
        table.add_column(short.get(col, col), justify="left" if col in ("source", "language", "kind") else "right",
                         no_wrap=col == "source")
    for row in result.report.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    console.print(table)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    console.print(f"wrote {len(result.seed)} seed rows and {len(result.english_pool)} English prompts to {out}")


def register(app: typer.Typer) -> None:
    app.command("seed")(seed)
