"""`pgscore report`: one self-contained HTML file (figures embedded as base64 PNG, no scripts from the
network) plus PNG/SVG figures in RESULTS_DIR/figures/. Each section degrades to a note when its inputs
are missing. All model text goes through jinja2 autoescaping or ``DataFrame.to_html(escape=True)``."""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from pgscore.errors import PgScoreError
from pgscore.evidence import CITATION
from pgscore.synthesis.config import METHODS

log = logging.getLogger(__name__)
SAMPLES_PER_GROUP = 5


# ----------------------------------------------------------------------------------------- loading
from pgscore.report.data import OPTIONAL_TABLES, TABLES, ResultsData, load_results  # noqa: E402,F401 (seam: loading)


# ----------------------------------------------------------------------------------------- sections
@dataclass
class Figure_:
    name: str
    uri: str
    caption: str


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    figures: list[Figure_] = field(default_factory=list)
    tables: list[tuple[str, Any, int]] = field(default_factory=list)  # (caption, Markup html, n rows)
    missing: str = ""
    samples: list[dict] | None = None


class _Missing(Exception):
    """A section's input is absent: the message is shown instead of the section."""


def _table(caption: str, df: pd.DataFrame, index: bool = False, digits: int = 3) -> tuple[str, Any, int]:
    """(caption, escaped HTML table, number of rows) for the template."""
    from markupsafe import Markup

    html = df.to_html(index=index, escape=True, border=0, classes="tbl", na_rep="–",
                      float_format=lambda x: f"{x:.{digits}f}")
    return caption, Markup(html), len(df)


class _Builder:
    def __init__(self, data: ResultsData, fig_dir: Path | None, formats: tuple[str, ...] = ("png", "svg")):
        self.data = data
        self.fig_dir = fig_dir
        self.formats = formats

    def figure(self, fig, name: str, caption: str) -> Figure_:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        png = buf.getvalue()
        if self.fig_dir is not None:
            self.fig_dir.mkdir(parents=True, exist_ok=True)
            (self.fig_dir / f"{name}.png").write_bytes(png)
            if "svg" in self.formats:
                fig.savefig(self.fig_dir / f"{name}.svg", format="svg")
        return Figure_(name, "data:image/png;base64," + base64.b64encode(png).decode("ascii"), caption)

    # -- helpers
    def need(self, name: str) -> pd.DataFrame:
        df = self.data.get(name)
        if df is None or df.empty:
            raise _Missing(self.data.notes.get(name, f"{name}.parquet is empty"))
        return df

    def need_scored(self) -> pd.DataFrame:
        if self.data.scored is None or self.data.scored.empty:
            raise _Missing(self.data.notes.get("scored", "no scores: run `pgscore score` (needs metrics + extrinsic)"))
        return self.data.scored

    # -- sections
    def leaderboard(self, s: Section) -> None:
        from pgscore import scoring
        from pgscore.report import plots

        scored = self.need_scored()
        if scored["pg_score"].notna().any():
            what, caption = "PG-Score", "PG-Score (λ·PGR + (1−λ)·Z) per teacher and language; teachers sorted by mean PG."
        else:  # no PGR anywhere (no student stage, or PGR undefined): rank by intrinsic Z and say so
            scored = scored.assign(pg_score=scored["intrinsic_z"])
            what, caption = "Intrinsic Z", "PG-Score is undefined (no PGR: see the student section); intrinsic Z shown instead."
            s.intro += " No PGR is defined, so teachers are ranked by intrinsic Z alone."
        board = scoring.leaderboard(scored)
        fixed = ("rank", "teacher", "mean_pg", "n_languages", "student", "method", "mean_pg_low", "mean_pg_high",
                 "p_best_overall")
        langs = [c for c in board.columns if c not in fixed]
        mat = board.set_index("teacher")[langs]
        iv = scoring.leaderboard_intervals(scored) if what == "PG-Score" else _z_intervals(scored)
        annot = None
        if iv is not None:
            lo, hi = (w.reset_index().set_index("teacher")[langs] if "teacher" in w.index.names else w for w in iv)
            annot = pd.DataFrame({c: [_cell(v, a, b, 2, "\n") for v, a, b in zip(mat[c], lo[c].reindex(mat.index),
                                                                                  hi[c].reindex(mat.index))]
                                  for c in langs}, index=mat.index)
            caption += " Brackets: 95% bootstrap interval (see the P(best) section)."
        s.figures.append(self.figure(plots.heatmap(mat, f"{what} per teacher × language", center=0.0, annot=annot),
                                     "leaderboard_heatmap", caption))
        s.tables.append(_table(f"Leaderboard: mean {what} over languages" + (" with 95% intervals" if iv else ""),
                               _board_with_intervals(board, iv, langs)))
        unc = self.data.uncertainty
        if unc is not None and unc.messages:
            s.intro += " " + unc.messages[0][0].upper() + unc.messages[0][1:] + "."
        rows = self.data.rows
        if rows is not None and "trial" in rows.columns:
            r = rows.copy()
            by = "pg_score" if r["pg_score"].notna().any() else "intrinsic_z"
            r["rank"] = r.groupby(["trial", "language"])[by].rank(ascending=False, method="min")
            per_trial = r.groupby(["trial", "teacher"])["rank"].mean().reset_index()
            ranks = per_trial.groupby("teacher")["rank"].agg(mean_rank="mean", std_rank="std", n_trials="size").reset_index()
            s.figures.append(self.figure(plots.ranking(ranks, "mean ranking with spread over trials"), "ranking_trials",
                                         "Mean rank over languages per trial; bar = mean over trials, error = std over trials."))
        else:
            s.intro += " Per-trial rows are not available, so the ranking spread over trials is not shown."

    def intrinsic_vs_extrinsic(self, s: Section) -> None:
        from pgscore import analysis
        from pgscore.report import plots

        scored = self.need_scored()
        df = self.data.rows if self.data.rows is not None else scored
        caption = "Each point is a teacher × language" + (" × trial." if df is not scored else ".")
        try:
            rc = analysis.intrinsic_vs_extrinsic(scored)
            caption += f" Spearman (teacher × language) ρ = {rc.rho:.2f} (p = {rc.p:.3g}, n = {rc.n}); paper: 0.41 over 60."
        except PgScoreError as exc:
            caption += f" Spearman not computed: {exc}."
        y, ylabel = "pgr", "PGR (performance gap recovered)"
        if "pgr" not in df.columns or df["pgr"].isna().all():
            if not {"student_score", "base_score"} <= set(df.columns) or df["student_score"].isna().all():
                raise _Missing("no student results: PGR and student scores are undefined for every dataset")
            # PGR undefined everywhere (see the student section): show the raw student gain over the base
            df = df.assign(student_gain=df["student_score"] - df["base_score"])
            y, ylabel = "student_gain", "student score − base score"
            caption = ("PGR is undefined for every dataset (pgr_note says why), so the y axis is the raw gain "
                       "of each student over the base model. " + caption)
        s.figures.append(self.figure(plots.scatter(df, "intrinsic_z", y, "teacher", "intrinsic vs extrinsic",
                                                   "intrinsic score Z", ylabel),
                                     "intrinsic_vs_extrinsic", caption))

    def intrinsic_metrics(self, s: Section) -> None:
        from pgscore.analysis import INTRINSIC_FEATURES
        from pgscore.report import plots

        metrics = self.need("metrics")
        if "method" in metrics.columns:
            from pgscore.results import DATASET_METHOD

            metrics = metrics[metrics["method"].astype(str) == DATASET_METHOD]
        present = [m for m in INTRINSIC_FEATURES if m in metrics.columns and metrics[m].notna().any()]
        if not present:
            raise _Missing("metrics.parquet has no intrinsic metric columns")
        s.figures.append(self.figure(plots.metric_bars(metrics, present), "intrinsic_metrics",
                                     "Mean per teacher over languages and trials (error bar: std)."))
        tab = metrics.groupby("teacher", sort=False)[present].mean().reset_index()
        s.tables.append(_table("Mean intrinsic metrics per teacher", tab))

    def pca(self, s: Section) -> None:
        from pgscore import analysis
        from pgscore.report import plots

        df = self.data.rows if self.data.rows is not None else self.need_scored()
        try:
            res = analysis.pca_regression(df, target="pgr")
        except PgScoreError as exc:
            raise _Missing(f"PCA regression not possible: {exc}") from None
        ev = ", ".join(f"PC{i + 1} {100 * v:.1f}%" for i, v in enumerate(res.explained_variance_ratio))
        s.figures.append(self.figure(plots.pca_figure(res.explained_variance_ratio, res.loadings), "pca",
                                     f"Explained variance: {ev}. Paper: PC1–PC4 42.2/22.1/16.5/12.6%."))
        coef = pd.DataFrame({"component": res.coefficients.index, "coefficient": res.coefficients.to_numpy()})
        s.intro = (f"Linear regression PGR ~ first {len(res.coefficients)} components: R² {res.r2_train:.2f} on "
                   f"{res.n_train} training rows, {res.r2_test:.2f} on {res.n_test} held-out rows (paper: 0.664).")
        s.tables.append(_table("Regression coefficients on the components", coef))

    def robustness(self, s: Section) -> None:
        from pgscore import analysis
        from pgscore.report import plots

        scored = self.need_scored()
        try:
            wr = analysis.weight_robustness(scored)
        except PgScoreError as exc:
            raise _Missing(f"λ robustness not possible: {exc}") from None
        mat = wr.matrix.copy()
        mat.index = [f"{w:.1f}" for w in mat.index]
        mat.columns = [f"{w:.1f}" for w in mat.columns]
        s.figures.append(self.figure(plots.heatmap(mat, "Spearman ρ of teacher rankings between λ", cmap="viridis",
                                                   xlabel="λ", ylabel="λ", vmin=-1, vmax=1),
                                     "lambda_robustness",
                                     f"Minimum adjacent ρ = {wr.adjacent['rho'].min():.2f}. λ = weight of PGR in PG."))

    def methods(self, s: Section) -> None:
        from pgscore import scoring
        from pgscore.report import plots

        metrics = self.need("metrics")
        if "method" not in metrics.columns:
            raise _Missing("metrics.parquet has no method column")
        per = metrics[metrics["method"].isin(METHODS)]
        if per.empty:
            raise _Missing("metrics.parquet has no per-method rows (generate / translate / respond)")
        per = per.copy()
        try:
            per["intrinsic_z"] = scoring.intrinsic_z(per)
        except PgScoreError as exc:
            raise _Missing(f"per-method intrinsic Z not computed: {exc}") from None
        mat = per.pivot_table(index="teacher", columns="method", values="intrinsic_z", aggfunc="mean", sort=False)
        mat = mat[[m for m in METHODS if m in mat.columns]]
        s.figures.append(self.figure(plots.heatmap(mat, "intrinsic Z per teacher × method", center=0.0),
                                     "methods_intrinsic_z", "Intrinsic score Z, z-scores taken over all per-method rows."))
        scored = self.data.scored
        if scored is not None and "method" in scored.columns and scored["method"].isin(METHODS).any():
            pg = scored[scored["method"].isin(METHODS)].pivot_table(index="teacher", columns="method", values="pg_score")
            s.figures.append(self.figure(plots.heatmap(pg, "PG-Score per teacher × method", center=0.0),
                                         "methods_pg", "PG-Score for single-method students."))
        cols = [c for c in ("n", "prompt_diversity", "response_diversity", "perplexity", "judge_score",
                            "response_lang_fidelity") if c in per.columns]
        tab = per.groupby(["method", "teacher"], sort=False)[cols].mean().reset_index()
        s.tables.append(_table("Mean metrics per method and teacher", tab))

    def p_best(self, s: Section) -> None:
        from pgscore.report import plots

        unc = self.data.uncertainty
        scored = self.need_scored()
        if unc is None or "p_best" not in scored.columns or scored["p_best"].isna().all():
            raise _Missing(self.data.notes.get("uncertainty", "no resamples: P(best) needs metrics.parquet"))
        what = "PG-Score" if unc.value == "pg_score" else "intrinsic Z (no PGR defined)"
        s.intro = (f"From {unc.n_resamples} resamples ({_sources(scored)}): the probability that each teacher has the "
                   f"highest {what}, per language and for the mean over languages, and how often one teacher's mean "
                   "beats another's. Two teachers are called separable when one beats the other in at least 95% of "
                   "resamples.")
        extra = [c for c in ("student", "method") if c in scored.columns and scored[c].nunique() > 1]
        pb = scored.pivot_table(index=[*extra, "teacher"], columns="language", values="p_best", aggfunc="mean", sort=False)
        pb.columns.name = None
        if "p_best_overall" in scored.columns:
            pb.insert(0, "overall", scored.groupby([*extra, "teacher"], sort=False)["p_best_overall"].first())
        pb = pb.sort_values("overall" if "overall" in pb.columns else pb.columns[0], ascending=False)
        s.tables.append(_table("P(best): share of resamples in which the teacher is highest", pb.reset_index(), digits=2))
        s.tables.append(_table("Separability of the top two", pd.DataFrame({"finding": unc.messages})))
        for key, mat in unc.pairwise.items():
            if len(mat) < 2:
                continue
            order = mat.mean(axis=1).sort_values(ascending=False).index
            m = mat.loc[order, order]
            label = " ".join(str(k) for k in key)
            s.figures.append(self.figure(
                plots.heatmap(m, f"P(row beats column), mean {what} over languages" + (f" — {label}" if label else ""),
                              cmap="RdBu", vmin=0, vmax=1, fmt="{:.0%}"),
                "pairwise" + ("_" + _slug(label) if label else ""),
                "Share of resamples in which the row teacher's mean over languages is higher than the column's."))

    def calibration(self, s: Section) -> None:
        cal = self.need("calibration")
        cols = [c for c in ("language", "n_matched", "n_corrupted", "judge_auc", "judge_matched_mean",
                            "judge_corrupted_mean", "judge_in_z", "perplexity_auc", "embedder_auc", "embedder_gap",
                            "note") if c in cal.columns]
        thr = cal["min_judge_auc"].dropna().iloc[0] if "min_judge_auc" in cal.columns and cal["min_judge_auc"].notna().any() else 0.6
        dropped = cal[cal["judge_in_z"] == False]["language"].tolist() if "judge_in_z" in cal.columns else []  # noqa: E712
        s.intro = (f"Before a metric counts, each language's own seed pairs are matched against corrupted copies "
                   f"({cal['corruptions'].iloc[0] if 'corruptions' in cal.columns else 'swapped, other language, truncated, shuffled'}). "
                   "AUC 0.5 = cannot tell them apart, 1 = always ranks the real pair higher. Judge AUC below "
                   f"metrics.min_judge_auc = {thr:g} leaves the judge out of Z for that language"
                   + (f": left out for {', '.join(map(str, dropped))}." if dropped else "; no judge was left out.")
                   + " The embedder column compares a prompt with its own response against another prompt's response.")
        names = {c: c for c in cols}
        s.tables.append(_table("Calibration per language", cal[cols].rename(columns=names), digits=2))
        judges = [c for c in ("judge", "perplexity_model", "embedder") if c in cal.columns and cal[c].notna().any()]
        if judges:
            s.tables.append(_table("Models calibrated", cal[["language", *judges]].drop_duplicates(subset=judges)))

    def screen(self, s: Section) -> None:
        from pgscore.screen import screen_teachers

        df = self.data.rows if self.data.rows is not None else self.need_scored()
        try:
            res = screen_teachers(df, top_k=min(3, max(1, df["teacher"].nunique() - 1)))
        except PgScoreError as exc:
            raise _Missing(f"screening not possible: {exc}") from None
        s.intro = (f"Which teachers are worth training students for, predicted from intrinsic metrics "
                   f"(`pgscore screen`). {res.message}")
        cols = [c for c in ("rank", "teacher", "n_languages", "has_extrinsic", "intrinsic_z", "pgr_actual", "pgr_pred",
                            "pgr_lo", "pgr_hi", "pg_actual", "pg_pred", "pg_lo", "pg_hi") if c in res.teachers.columns]
        s.tables.append(_table("Screening: predicted PGR and PG-Score per teacher (interval: bootstrap)", res.teachers[cols]))
        if res.validation:
            val = pd.DataFrame([{k: v for k, v in res.validation.items() if not isinstance(v, (list, dict))}])
            s.tables.append(_table("Leave-one-teacher-out validation", val))

    def recommend(self, s: Section) -> None:
        from pgscore.recommend import recommend

        langs = _summary(self.data).get("languages") or []
        if not langs:
            raise _Missing("no languages in this folder")
        student = (self.data.experiment.get("student") or {}).get("base") if isinstance(
            self.data.experiment.get("student"), dict) else None
        student = student if isinstance(student, str) else "tiny:gemma3-270m"
        rows, notes = [], []
        for lang in langs:
            try:
                rec = recommend(lang, student, results_dirs=[self.data.root], top=3)
            except PgScoreError as exc:
                notes.append(f"{lang}: {exc}")
                continue
            for t in rec.teachers:
                rows.append({"language": lang, "rank": t.rank, "teacher": t.teacher, "expected_pg": t.expected_pg,
                             "strength": t.strength, "source": rec.source})
            mix = ", ".join(f"{k} {100 * v:.0f}%" for k, v in rec.method_mix.items())
            notes.append(f"{lang}: method mix {mix} — {rec.method_explanation}")
        if not rows:
            raise _Missing("; ".join(notes) or "no recommendation")
        s.intro = (f"`pgscore recommend` for each language of this run and the student {student}: the top teachers "
                   "by expected PG-Score (from this folder's scores where they exist, else the paper) and a method mix.")
        s.tables.append(_table("Recommended teachers per language", pd.DataFrame(rows)))
        s.tables.append(_table("Method mix per language", pd.DataFrame({"recommendation": notes})))

    def students(self, s: Section) -> None:
        from pgscore.report import plots

        ext = self.need("extrinsic")
        need = [c for c in ("student_score", "base_score", "reference_score") if c not in ext.columns]
        if need:
            raise _Missing(f"extrinsic.parquet lacks {', '.join(need)}")
        s.figures.append(self.figure(plots.student_scores(ext), "student_scores",
                                     "Benchmark score of the student trained on each teacher's data (mean ± std over trials)."))
        keys = ["teacher", "language"] + (["student"] if "student" in ext.columns else [])
        tab = ext.groupby(keys, sort=False).agg(
            student_score=("student_score", "mean"), base_score=("base_score", "mean"),
            reference_score=("reference_score", "mean"), pgr=("pgr", "mean") if "pgr" in ext.columns else ("student_score", "size"),
            trials=("student_score", "size")).reset_index()
        s.tables.append(_table("Student scores", tab))

    def failures(self, s: Section) -> None:
        from pgscore.report import plots

        syn = self.need("synthetic")
        keys = ["teacher", "language", "method"]
        g = syn.groupby(keys, sort=False)
        tab = pd.DataFrame({"attempts": g.size(), "failed": g["status"].apply(lambda x: int((x != "ok").sum()))})
        ex = self.data.get("metrics_examples")
        if ex is not None and not ex.empty:
            e = ex.copy()
            base = e["language"].astype(str).str.split("-").str[0].str.lower()
            for side in ("prompt", "response"):
                col = f"{side}_lang"
                if col in e.columns:
                    e[f"wrong_{side}_lang"] = e[col].notna() & (e[col].astype(str).str.split("-").str[0].str.lower() != base)
            if "judge_status" in e.columns:
                e["judge_unparsed"] = e["judge_status"].astype(str) != "ok"
            flags = [c for c in ("wrong_prompt_lang", "wrong_response_lang", "judge_unparsed") if c in e.columns]
            tab = tab.join(e.groupby(keys, sort=False)[flags].sum().astype(int), how="left")
        else:
            s.intro += " metrics_examples.parquet not found: wrong-language and judge counts are not shown."
        tab = tab.fillna(0).reset_index()
        tab["failed_pct"] = 100 * tab["failed"] / tab["attempts"]
        parts = [c for c in ("failed", "wrong_prompt_lang", "wrong_response_lang", "judge_unparsed") if c in tab.columns]
        by_teacher = tab.groupby("teacher", sort=False)[parts].sum()
        s.figures.append(self.figure(plots.stacked_bars(by_teacher, "problems per teacher", "rows"), "failures",
                                     "Failed synthesis rows (unparseable output), wrong-language prompts/responses "
                                     "(language id ≠ target) and judge outputs without a parseable score."))
        s.tables.append(_table("Counts per teacher × language × method", tab, digits=1))
        if "error" in syn.columns:
            errs = syn[syn["status"] != "ok"].groupby(["teacher", "error"], sort=False).size().rename("rows").reset_index()
            if not errs.empty:
                s.tables.append(_table("Failure reasons", errs))

    def cost(self, s: Section) -> None:
        from pgscore.report import plots

        syn = self.data.get("synthetic")
        have_tokens = syn is not None and {"prompt_tokens", "completion_tokens"} <= set(syn.columns)
        ledger_path = self.data.root / "ledger.sqlite"
        if not have_tokens and not ledger_path.is_file():
            raise _Missing("no token counts (synthetic.parquet token columns) and no ledger.sqlite")
        if have_tokens:
            g = syn.groupby("teacher", sort=False)
            tab = pd.DataFrame({
                "attempts": g.size(),
                "ok": g["status"].apply(lambda x: int((x == "ok").sum())),
                "prompt_tokens": g["prompt_tokens"].sum().astype("int64"),
                "completion_tokens": g["completion_tokens"].sum().astype("int64"),
            })
            tab["tokens_per_ok_example"] = (tab["prompt_tokens"] + tab["completion_tokens"]) / tab["ok"].where(tab["ok"] > 0)
            s.figures.append(self.figure(plots.stacked_bars(tab[["prompt_tokens", "completion_tokens"]],
                                                            "synthesis tokens per teacher", "tokens"),
                                         "tokens", "Tokens spent on synthesis (from synthetic.parquet)."))
            s.tables.append(_table("Synthesis tokens per teacher", tab.reset_index(), digits=1))
        else:
            s.intro += " synthetic.parquet has no token columns."
        if ledger_path.is_file():
            try:
                from pgscore.ledger import Ledger

                with Ledger(ledger_path, create=False) as led:
                    stats = led.stats()
                s.tables.append(_table("Run ledger: calls, tokens and cost per model and stage", stats, digits=4))
            except (PgScoreError, ImportError) as exc:
                s.intro += f" Ledger not read: {exc}."
        else:
            s.intro += " No ledger.sqlite: cost in USD is not known."

    def samples(self, s: Section) -> None:
        syn = self.need("synthetic")
        ok = syn[syn["status"] == "ok"]
        if ok.empty:
            raise _Missing("no successful synthetic rows")
        ex = self.data.get("metrics_examples")
        if ex is not None:
            cols = [c for c in ("id", "judge_score", "judge_feedback", "judge_status", "response_lang") if c in ex.columns]
            ok = ok.merge(ex[cols], on="id", how="left", suffixes=("", "_m"))
        groups = []
        for teacher, gt in ok.groupby("teacher", sort=False):
            langs = []
            for lang, gl in gt.groupby("language", sort=False):
                methods = []
                for method, gm in gl.groupby("method", sort=False):
                    items = []
                    for _, r in gm.head(SAMPLES_PER_GROUP).iterrows():
                        items.append({
                            "id": str(r["id"]), "prompt": str(r.get("prompt", "")), "response": str(r.get("response", "")),
                            "trial": r.get("trial"),
                            "judge_score": None if pd.isna(r.get("judge_score", np.nan)) else f"{float(r['judge_score']):.1f}",
                            "judge_feedback": "" if pd.isna(r.get("judge_feedback", np.nan)) else str(r["judge_feedback"]),
                        })
                    methods.append({"method": str(method), "n": len(gm), "pairs": items})
                langs.append({"language": str(lang), "n": len(gl), "methods": methods})
            groups.append({"teacher": str(teacher), "n": len(gt), "languages": langs})
        s.samples = groups
        s.intro = f"Up to {SAMPLES_PER_GROUP} successful pairs per teacher × language × method, with judge score and feedback."


SECTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("leaderboard", "PG-Score leaderboard", "leaderboard",
     "PG-Score combines intrinsic data quality (Z) and extrinsic student gain (PGR); higher is better."),
    ("intrinsic-extrinsic", "Intrinsic vs extrinsic", "intrinsic_vs_extrinsic", ""),
    ("intrinsic-metrics", "Intrinsic metrics per teacher", "intrinsic_metrics", ""),
    ("pca", "PCA of intrinsic metrics", "pca", ""),
    ("robustness", "λ robustness", "robustness",
     "How much the teacher ranking changes when the weight λ of PGR vs Z changes."),
    ("methods", "Generation methods", "methods", ""),
    ("p-best", "P(best) and pairwise comparison", "p_best", ""),
    ("calibration", "Calibration of judge, perplexity model and embedder", "calibration", ""),
    ("screen", "Screening (which teachers to train students for)", "screen", ""),
    ("recommend", "Recommendation", "recommend", ""),
    ("students", "Student benchmark scores", "students", ""),
    ("failures", "Failures", "failures", ""),
    ("cost", "Cost and tokens", "cost", ""),
    ("samples", "Sample browser", "samples", ""),
)


def _cell(v, lo, hi, digits: int = 3, sep: str = " ") -> str:
    """``0.512 [0.41, 0.60]`` (value alone without an interval, ``–`` without a value)."""
    if v is None or v != v:
        return "–"
    if lo is None or hi is None or lo != lo or hi != hi:
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f}{sep}[{lo:.2f}, {hi:.2f}]"


def _board_with_intervals(board: pd.DataFrame, iv, langs: list[str]) -> pd.DataFrame:
    """The leaderboard with interval text in the mean and language cells and P(best) as a percentage."""
    out = board.copy()
    if {"mean_pg_low", "mean_pg_high"} <= set(out.columns):
        out["mean_pg"] = [_cell(v, a, b) for v, a, b in zip(out["mean_pg"], out["mean_pg_low"], out["mean_pg_high"])]
        out = out.drop(columns=["mean_pg_low", "mean_pg_high"])
    if "p_best_overall" in out.columns:
        out["p_best_overall"] = [("–" if v != v else f"{100 * v:.0f}%") for v in out["p_best_overall"]]
        out = out.rename(columns={"p_best_overall": "P(best)"})
    if iv is not None:
        lo, hi = iv
        keys = [k for k in lo.index.names if k in out.columns]
        where = pd.MultiIndex.from_frame(out[keys]) if len(keys) > 1 else pd.Index(out[keys[0]])
        lo, hi = lo.reindex(where), hi.reindex(where)
        for c in langs:
            if c in lo.columns:
                out[c] = [_cell(v, a, b) for v, a, b in zip(board[c], lo[c].to_numpy(), hi[c].to_numpy())]
    return out


def _z_intervals(scored: pd.DataFrame):
    if not {"intrinsic_z_low", "intrinsic_z_high"} <= set(scored.columns):
        return None
    from pgscore import scoring

    return scoring.leaderboard_intervals(scored.assign(pg_score_low=scored["intrinsic_z_low"],
                                                       pg_score_high=scored["intrinsic_z_high"]))


def _sources(scored: pd.DataFrame) -> str:
    if "interval_source" not in scored.columns:
        return "no source recorded"
    srcs = sorted({p.strip() for v in scored["interval_source"].dropna() for p in str(v).split(",") if p.strip()})
    return "sources: " + (", ".join(srcs) if srcs else "none")


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "x"


def build_sections(data: ResultsData, fig_dir: Path | None, progress: Callable[[str], None] | None = None,
                   svg: bool = True) -> list[Section]:
    """Every report section; a missing or unusable input gives a section with a ``missing`` note."""
    import matplotlib

    from pgscore.report.plots import RC

    b = _Builder(data, fig_dir, ("png", "svg") if svg else ("png",))
    out = []
    with matplotlib.rc_context(RC):
        for sid, title, method, intro in SECTIONS:
            if progress:
                progress(title)
            s = Section(sid, title, intro)
            try:
                getattr(b, method)(s)
            except _Missing as exc:
                s.missing = str(exc)
            except (PgScoreError, KeyError, ValueError) as exc:  # a bad table spoils one section, not the report
                log.warning("report section %s failed: %s", sid, exc)
                s.missing = f"could not be drawn: {type(exc).__name__}: {exc}"
            out.append(s)
    return out


def _summary(data: ResultsData) -> dict:
    scored = data.scored
    out: dict[str, Any] = {"folder": str(data.root), "name": data.experiment.get("name") or data.root.name}
    syn = data.get("synthetic")
    src = scored if scored is not None else (syn if syn is not None else data.get("metrics"))
    if src is not None:
        out["teachers"] = list(dict.fromkeys(src["teacher"].astype(str))) if "teacher" in src.columns else []
        out["languages"] = list(dict.fromkeys(src["language"].astype(str))) if "language" in src.columns else []
    if syn is not None:
        out["n_synthetic"] = len(syn)
        out["n_ok"] = int((syn["status"] == "ok").sum()) if "status" in syn.columns else None
    if scored is not None and not scored.empty:
        # PG-Score where PGR is defined; intrinsic Z (labelled so) where no row has a PG-Score
        col, label = ("pg_score", "") if scored["pg_score"].notna().any() else ("intrinsic_z", "Z ")
        s = scored.dropna(subset=[col])
        if not s.empty:
            best = s.loc[s.groupby("language")[col].idxmax()]
            out["best"] = [{"language": r.language, "teacher": r.teacher, "pg": f"{label}{getattr(r, col):.2f}"}
                           for r in best.itertuples()]
            mean = s.groupby("teacher")[col].mean().sort_values(ascending=False)
            out["overall"] = {"teacher": mean.index[0], "pg": f"{label}{mean.iloc[0]:.2f}"}
    return out


def render_report(results_dir: str | Path, out: str | Path | None = None, progress: Callable[[str], None] | None = None,
                  svg: bool = True) -> Path:
    """Write the HTML report (default RESULTS_DIR/report.html) and figures (PNG, + SVG unless ``svg=False``)
    in RESULTS_DIR/figures/; return the HTML path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from jinja2 import Environment, FileSystemLoader, select_autoescape
    except ImportError as exc:
        raise PgScoreError(f"the report needs matplotlib and jinja2 ({exc.name} missing): pip install 'pgscore[report]'") from None

    data = load_results(results_dir)
    out_path = Path(out) if out else data.root / "report.html"
    if out_path.suffix.lower() not in (".html", ".htm"):
        raise PgScoreError(f"--out must end in .html, got {out_path}")
    sections = build_sections(data, data.root / "figures", progress, svg=svg)
    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.get_template("report.html.j2").render(
        summary=_summary(data),
        sections=sections,
        notes=[v for k, v in data.notes.items() if k in ("scored", "rows", "experiment")],
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        citation=CITATION,
        experiment_json=json.dumps(data.experiment, ensure_ascii=False, indent=1, default=str) if data.experiment else "",
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out_path)
    return out_path
