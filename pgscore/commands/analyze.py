"""``pgscore analyze``: the paper's statistics on a scored (or metrics) table, each as a rich table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import pandas as pd

from pgscore.errors import PgScoreError

GROUP_CANDIDATES = ("student", "student_base", "method")


def _fmt(v) -> str:
    import numpy as np

    if isinstance(v, (float, np.floating)):
        if v != v:
            return "—"
        return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}"
    return str(v)


def _table(title: str, df: pd.DataFrame, index: bool = False):
    """A rich Group: a bold title line (not wrapped to the table's width) and the table."""
    import pandas as pd
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if index:
        df = df.reset_index()
    t = Table()
    for c in df.columns:
        t.add_column(str(c), justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left", overflow="fold")
    for row in df.itertuples(index=False):
        t.add_row(*(_fmt(v) for v in row))
    return Group(Text(title, style="bold"), t)


def load_scored(path: Path, weight: float) -> tuple[pd.DataFrame, str]:
    """Read a scored table, or score a metrics table; returns (table, how it was obtained)."""
    from pgscore import io, scoring
    from pgscore.results import ResultsFolder

    if path.is_dir():
        return ResultsFolder(path).scored_or_saved(weight)
    df = io.read_table(path)
    if {"teacher", "language", "pg_score"} <= set(df.columns):
        return df, "scored table"
    has_extrinsic = "pgr" in df.columns or set(scoring.RAW_EXTRINSIC) <= set(df.columns)
    if set(scoring.REQUIRED_INTRINSIC) <= set(df.columns) and has_extrinsic:
        return scoring.score_table(df, weight=weight), f"metrics table scored with λ={weight:g}"
    raise PgScoreError(
        f"{path} is neither a scored table (teacher, language, pg_score) nor a metrics table "
        f"(teacher, language, {', '.join(scoring.REQUIRED_INTRINSIC)}, pgr or raw scores)"
    )


def _meta(path: Path | None, default: str, key: str, scored: pd.DataFrame, notes: list[str]):
    """Metadata table (user file, else the paper's) or None when no name matches."""
    import pandas as pd

    from pgscore import analysis, io
    from pgscore.paths import resource

    meta = io.read_table(path) if path else pd.read_csv(resource("paper_evidence", default))
    if key not in meta.columns:
        raise PgScoreError(f"metadata file {path} has no {key!r} column")
    norm = analysis.normalize_teacher if key == "teacher" else analysis.normalize_name
    names = set(meta[key].map(norm))
    ours = scored[key].drop_duplicates()
    matched = ours.map(norm).isin(names)
    src = str(path) if path else f"paper metadata {default}"
    if not matched.any():
        return None, f"no {key} in the table matches {src}" + ("" if path else f" (pass --{key}-meta FILE)")
    notes.append(f"{src}: {int(matched.sum())} of {len(ours)} {key}s matched")
    return meta, None


def analyze(
    table: Path = typer.Argument(..., help="Scored table (`pgscore score --out`), metrics table, or results folder."),
    teacher_meta: Path | None = typer.Option(
        None, "--teacher-meta", help="Teacher properties (teacher + numeric columns)."
    ),
    language_meta: Path | None = typer.Option(
        None, "--language-meta", help="Language properties (language + numeric columns)."
    ),
    teacher_property: str = typer.Option("size_b", help="Teacher property for the mixed-effects regression."),
    language_property: str = typer.Option("common_crawl_pct", help="Language property for the Spearman test."),
    by: str | None = typer.Option(
        None, "--by", help="Column whose groups' teacher rankings are compared (default: student/student_base/method)."
    ),
    weight: float = typer.Option(0.5, "--weight", "-w", help="λ used when scoring a metrics table."),
    seed: int = typer.Option(0, help="Seed of the PCA regression's train/test split."),
    out_json: Path | None = typer.Option(None, "--out-json", help="Write every statistic to this JSON file."),
) -> None:
    """PCA + regression, Spearman of rankings, λ robustness, mixed effects, language-property Spearman."""
    import pandas as pd
    from rich.console import Console

    from pgscore import analysis

    console = Console(soft_wrap=True)  # long lines stay whole; tables still fit the terminal
    scored, how = load_scored(table, weight)
    console.print(f"[bold]{table}[/]: {how}, {len(scored)} rows, {scored['teacher'].nunique()} teachers × "
                  f"{scored['language'].nunique()} languages")
    results: dict = {}
    skipped: dict[str, str] = {}
    notes: list[str] = []

    def attempt(name: str, fn):
        try:
            results[name] = fn()
        except PgScoreError as exc:
            skipped[name] = str(exc)

    has_scores = {"pgr", "intrinsic_z"} <= set(scored.columns)
    no_scores = "table has no pgr/intrinsic_z columns (score a metrics table first)"

    # 1. intrinsic vs extrinsic
    if has_scores:
        attempt("intrinsic_vs_extrinsic", lambda: analysis.intrinsic_vs_extrinsic(scored).to_dict())
    else:
        skipped["intrinsic_vs_extrinsic"] = no_scores
    if "intrinsic_vs_extrinsic" in results:
        r = results["intrinsic_vs_extrinsic"]
        console.print(_table("Spearman: intrinsic Z vs PGR (rows)", pd.DataFrame([r])))

    # 2. PCA + regression
    if "pgr" in scored.columns:
        attempt("pca_regression", lambda: analysis.pca_regression(scored, target="pgr", seed=seed).to_dict())
    else:
        skipped["pca_regression"] = "table has no pgr column (the regression target)"
    if "pca_regression" in results:
        r = results["pca_regression"]
        pcs = list(r["coefficients"])
        n_all = len(r["explained_variance_ratio"])
        pca_df = pd.DataFrame(
            {
                "component": [f"PC{i + 1}" for i in range(n_all)],
                "explained_var": r["explained_variance_ratio"],
                "cumulative": r["cumulative_explained_variance"],
                "coef_to_pgr": [r["coefficients"].get(f"PC{i + 1}", float("nan")) for i in range(n_all)],
            }
        )
        console.print(_table(f"PCA of intrinsic metrics ({len(r['features'])} features)", pca_df))
        loadings = pd.DataFrame(r["loadings"])[pcs]
        loadings.index.name = "feature"
        console.print(_table(f"PCA loadings (the {len(pcs)} components used in the regression)", loadings, index=True))
        console.print(
            f"linear regression PGR ~ PCs: R² train {r['r2_train']:.3f} (n={r['n_train']}), "
            f"R² test {r['r2_test']:.3f} (n={r['n_test']})"
        )

    # 3. teacher rankings across groups
    group = by or next((c for c in GROUP_CANDIDATES if c in scored.columns and scored[c].nunique() > 1), None)
    if group is None:
        skipped["teacher_rank_correlations"] = (
            "one student model and one method only: no rankings to compare (--by COL)"
        )
    else:
        attempt(
            "teacher_rank_correlations",
            lambda: analysis.teacher_rank_correlations(scored, by=group).to_dict(orient="records"),
        )
    if "teacher_rank_correlations" in results:
        pairs = pd.DataFrame(results["teacher_rank_correlations"])
        console.print(_table(f"Spearman of teacher rankings across {group}", pairs))

    # 4. λ robustness
    if has_scores:
        attempt("weight_robustness", lambda: analysis.weight_robustness(scored).to_dict())
    else:
        skipped["weight_robustness"] = no_scores
    if "weight_robustness" in results:
        r = results["weight_robustness"]
        console.print(_table("Ranking robustness: Spearman between adjacent λ", pd.DataFrame(r["adjacent"])))

    # 5. mixed effects on a teacher property
    meta, why = _meta(teacher_meta, "teachers.csv", "teacher", scored, notes)
    if meta is None:
        skipped["mixed_effects"] = why
    elif teacher_property not in meta.columns:
        skipped["mixed_effects"] = f"teacher metadata has no {teacher_property!r} column"
    else:
        joined = analysis.attach_meta(scored, meta, "teacher", [teacher_property])
        attempt("mixed_effects", lambda: analysis.mixed_effects(joined, teacher_property).to_dict())
    if "mixed_effects" in results:
        console.print(_table(f"Mixed effects: pg_score ~ {teacher_property} (random intercept per language)",
                             pd.DataFrame([results["mixed_effects"]])))

    # 6. language property
    meta, why = _meta(language_meta, "languages.csv", "language", scored, notes)
    if meta is None:
        skipped["language_property_correlation"] = why
    elif language_property not in meta.columns:
        skipped["language_property_correlation"] = f"language metadata has no {language_property!r} column"
    else:
        attempt(
            "language_property_correlation",
            lambda: analysis.language_property_correlation(scored, meta, col=language_property).to_dict(),
        )
    if "language_property_correlation" in results:
        console.print(_table(f"Spearman: mean PG-Score per language vs {language_property}",
                             pd.DataFrame([results["language_property_correlation"]])))

    for n in notes:
        console.print(f"[dim]{n}[/]")
    if skipped:
        why = pd.DataFrame({"statistic": list(skipped), "why": list(skipped.values())})
        console.print(_table("Skipped statistics", why))
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"input": str(table), "source": how, "results": results, "skipped": skipped, "notes": notes}
        out_json.write_text(json.dumps(payload, indent=1, default=_json_default))
        console.print(f"wrote {out_json}")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
