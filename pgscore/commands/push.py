"""``pgscore push RESULTS --repo ORG/NAME``: synthetic datasets (and students) on the Hub with generated cards."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from pgscore.errors import PgScoreError


def _pairs(values: list[str] | None) -> dict[str, str]:
    out = {}
    for v in values or []:
        name, sep, lic = v.partition("=")
        if not sep or not name.strip() or not lic.strip():
            raise PgScoreError(f"--source-license takes NAME=LICENSE (e.g. my_seed=cc-by-4.0), got {v!r}")
        out[name.strip()] = lic.strip().lower()
    return out


def push(
    results_dir: Path = typer.Argument(..., help="Results folder of a run (synthetic.parquet, metrics, scored)."),
    repo: str = typer.Option(..., "--repo", help="Dataset repo ORG/NAME; students go to ORG/NAME-<student>."),
    dry_run: Path | None = typer.Option(None, "--dry-run", help="Write exactly what would be uploaded into this "
                                        "(new or empty) folder and upload nothing."),
    license: str | None = typer.Option(None, "--license", help="Dataset license (default: from the seed sources'; "
                                       "a permissive one is refused over non-commercial sources)."),
    source_license: list[str] | None = typer.Option(None, "--source-license", help="NAME=LICENSE for a seed "
                                                    "source pgscore does not know (repeatable)."),
    students: bool = typer.Option(False, "--students", help="Also push each trained student as a model repo."),
    private: bool = typer.Option(False, "--private", help="Create the repos private."),
) -> None:
    """Publish each teacher x language dataset (ok rows, Parquet, one config each) with a dataset card.

    The token is read from HF_TOKEN only and never written; HF_ENDPOINT selects another Hub endpoint."""
    from pgscore.hub import build_bundle, hub_token, push_bundle

    if not results_dir.is_dir():
        raise PgScoreError(f"results folder not found: {results_dir}")
    overrides = _pairs(source_license)
    if dry_run is None:
        hub_token()  # fail before any work when no token is set
        with tempfile.TemporaryDirectory(prefix="pgscore-push-") as tmp:
            bundle = build_bundle(results_dir, Path(tmp) / "bundle", repo, license=license, students=students,
                                  source_licenses=overrides, private=private)
            for w in bundle.warnings:
                typer.echo(f"warning: {w}", err=True)
            for url in push_bundle(bundle, private=private, log=typer.echo):
                typer.echo(url)
        return
    bundle = build_bundle(results_dir, dry_run, repo, license=license, students=students,
                          source_licenses=overrides, private=private)
    for w in bundle.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"dry run: {len(bundle.configs)} dataset config(s), {len(bundle.students)} student(s), license "
               f"{bundle.license}; written to {dry_run} (nothing uploaded)")


def register(app: typer.Typer) -> None:
    app.command("push")(push)
