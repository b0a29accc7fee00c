"""Recommend teachers and a generation-method mix for a language and a student.

Evidence, in order: the user's own scored runs for that language, else the published findings of the
Polyglot Score paper (Miranda, Vulić, Korhonen 2026, arXiv 2604.11290), for an unmeasured language
through the most similar measured languages (resource class, script, family). Rules the paper supports:
a teacher of the student's family gains (+20% or more, Table 14); Generate is strongest for
high-resource languages, Respond or Translate for less-resourced ones (Table 15); ~10k examples per
language are enough to rank teachers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pgscore.errors import PgScoreError
from pgscore.synthesis.config import METHODS
from pgscore.evidence import (
    CITATION,
    LanguageProfile,
    language_profile,
    language_similarity,
    model_family,
    normalize_language,
    paper_table,
    parse_model_name,
)

FAMILY_BONUS = 0.20  # the smallest family-matching gain in the paper's Table 14 (Gemma 3 27B -> Gemma 3 4B)
N_EXAMPLES = 10_000
N_SIMILAR = 3


@dataclass
class TeacherRecommendation:
    rank: int
    teacher: str
    family: str | None
    size_b: float | None
    expected_pg: float
    base_pg: float
    student_shift: float
    family_bonus: float
    family_match: bool
    strength: str  # strong | moderate | thin
    n_languages: int
    spread: float | None
    languages_used: list[str]
    explanation: str


@dataclass
class Recommendation:
    language: str
    language_name: str
    profile: dict
    student: str
    student_family: str | None
    source: str  # "your runs" | "paper"
    thin_evidence: bool
    similar_languages: list[tuple[str, float]]
    teachers: list[TeacherRecommendation]
    methods: list[dict]
    method_mix: dict[str, float]
    method_explanation: str
    n_examples: int = N_EXAMPLES
    notes: list[str] = field(default_factory=list)
    citation: str = CITATION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["similar_languages"] = [{"language": c, "weight": round(w, 3)} for c, w in self.similar_languages]
        return _clean(d)


def _clean(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, 4)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


# ------------------------------------------------------------------------------------------ own runs
def load_own_scores(results_dirs: list[str | Path]) -> pd.DataFrame:
    """Scored rows (teacher, language, pg_score, n_trials, pg_score_std[, method]) from results folders.

    Uses ``scored.parquet``; without it, scores the folder (``ResultsFolder.scored``: metrics joined with
    extrinsic, undefined PGR kept as NaN). Teacher families come from ``experiment.yaml`` where present.
    """
    from pgscore.results import ResultsFolder

    parts = []
    for d in results_dirs:
        folder = ResultsFolder(d).require_dir()
        if folder.saved_scored() is None and not (folder.metrics_path.is_file() and folder.extrinsic_path.is_file()):
            raise PgScoreError(f"{folder.root} has no scored.parquet (nor metrics.parquet + extrinsic.parquet); "
                               "run `pgscore score`")
        df, _ = folder.scored_or_saved()
        df = df.dropna(subset=["pg_score"]).copy()  # undefined PG-Scores are no evidence
        df["results_dir"] = str(folder.root)
        models = _experiment_models(folder)
        df["teacher_model"] = [models.get(str(t), str(t)) for t in df["teacher"]]
        parts.append(df)
    if not parts:
        return pd.DataFrame(columns=["teacher", "language", "pg_score"])
    return pd.concat(parts, ignore_index=True)


def score_results_dir(p: Path) -> pd.DataFrame:
    """A results folder scored from metrics + extrinsic (``ResultsFolder.scored``)."""
    from pgscore.results import ResultsFolder

    return ResultsFolder(p).scored()


def _experiment_models(folder) -> dict[str, str]:
    """teacher name -> 'family or model id' from experiment.yaml (for family parsing)."""
    from pgscore.results import ResultsFolder

    out = {}
    for t in ResultsFolder(folder).experiment().get("teachers", []) or []:
        if isinstance(t, dict) and "name" in t:
            model = t.get("model")
            model = model.get("model", "") if isinstance(model, dict) else str(model or "")
            out[str(t["name"])] = f"{t.get('family') or ''} {model}".strip()
    return out


# ---------------------------------------------------------------------------------------- evidence
def similar_languages(profile: LanguageProfile, measured: list[str], k: int = N_SIMILAR) -> list[tuple[str, float]]:
    """The k measured languages most similar to ``profile`` with normalised weights."""
    sims = [(m, language_similarity(profile, language_profile(m))) for m in measured]
    sims.sort(key=lambda t: -t[1])
    top = sims[:k]
    total = sum(w for _, w in top) or 1.0
    return [(m, w / total) for m, w in top]


_STUDENT_TABLE_FAMILY = {"gemma": "Gemma 3 4B", "qwen": "Qwen 3 8B", "llama": "Llama 3 8B", "olmo": "OLMo 3 7B"}


def _student_shift(student_family: str | None) -> tuple[dict[str, float], str | None]:
    """Per paper teacher: PG with this student base minus PG with OLMo 3 7B (paper Fig. 2 table)."""
    base = _STUDENT_TABLE_FAMILY.get(student_family or "")
    if base is None or base == "OLMo 3 7B":
        return {}, base
    t = paper_table("pg_scores_by_student_base.csv").pivot(index="teacher", columns="student_base",
                                                           values="mean_pg_score_ar_de_id")
    return (t[base] - t["OLMo 3 7B"]).to_dict(), base


def _family_gain_text(student_family: str | None) -> str:
    g = paper_table("family_matching_gain.csv")
    matched = g[[model_family(t) == model_family(s) == student_family for t, s in zip(g["teacher"], g["student_base"])]]
    if matched.empty:
        return f"paper Table 14: family-matched gains {g['pct_pg_increase_vs_olmo_baseline'].min():.0f}% or more"
    lo, hi = matched["pct_pg_increase_vs_olmo_baseline"].min(), matched["pct_pg_increase_vs_olmo_baseline"].max()
    return f"paper Table 14: {student_family} teachers with a {student_family} student +{lo:.1f}% to +{hi:.1f}%"


def _weighted(values: pd.Series, weights: pd.Series) -> tuple[float, float]:
    w = weights / weights.sum()
    mean = float((values * w).sum())
    std = float(np.sqrt((w * (values - mean) ** 2).sum())) if len(values) > 1 else float("nan")
    return mean, std


# ------------------------------------------------------------------------------------------ methods
def recommend_methods(profile: LanguageProfile, weights: dict[str, float] | None = None,
                      own: pd.DataFrame | None = None) -> tuple[list[dict], dict[str, float], str]:
    """Rank the three methods and propose a mix for the language.

    Evidence: own per-method scores for the language, else the paper's per-method PG (Table 2: ar, de, id)
    weighted by language similarity, combined with the resource rule of Table 15.
    """
    code = profile.code
    if own is not None and "method" in own.columns:
        mine = own[(own["language"].map(_safe_norm) == code) & own["method"].isin(METHODS)]
        if not mine.empty:
            means = mine.groupby("method")["pg_score"].mean().sort_values(ascending=False)
            ranked = [{"method": m, "expected_pg": float(v), "evidence": "your runs"} for m, v in means.items()]
            best = means.index[0]
            return ranked, {best: 1.0}, f"your runs for {code}: {best} scores highest ({means.iloc[0]:.2f})"

    by_method = paper_table("pg_scores_by_method.csv")
    measured = sorted(by_method["language"].unique())
    if code in measured:
        sims, measured_here = [(code, 1.0)], True
    else:
        sims, measured_here = similar_languages(profile, measured, k=len(measured)), False
    w = pd.Series(dict(sims))
    per_lang = by_method.groupby(["method", "language"])["pg_score"].mean().unstack()
    per_lang = per_lang[[c for c in w.index]]
    expected = (per_lang * (w / w.sum())).sum(axis=1).sort_values(ascending=False)
    gains = paper_table("best_method_gain.csv")
    ranked = [
        {"method": m, "expected_pg": float(v),
         "evidence": f"paper Table 2 ({', '.join(f'{c} {wt:.2f}' for c, wt in sims)})"}
        for m, v in expected.items()
    ]
    hr = profile.high_resource
    if measured_here:
        best = expected.index[0]
        g = gains[gains["language"] == code]["pct_pg_increase_vs_equal_mix"]
        gtxt = f"; the best single method beat the equal mix by {g.min():.1f}–{g.max():.1f}% (Table 15)" if len(g) else ""
        return ranked, {best: 1.0}, f"measured in the paper for {code}: {best} is best on average over 3 teachers{gtxt}"
    if hr is None:
        mix = {m: round(1 / 3, 3) for m in METHODS}
        return ranked, mix, (
            f"resource level of {code} unknown: equal mix of the three methods (the paper's default); "
            "pass a language with known resource class for a sharper choice"
        )
    if hr:
        return ranked, {"generate": 1.0}, (
            f"{profile.name} is high-resource: Generate is strongest for high-resource languages "
            "(paper Table 15, de: +0.3–29.3% over the equal mix)"
        )
    pair = [m for m in expected.index if m in ("respond", "translate")]
    mix = {pair[0]: 0.67, pair[1]: 0.33}
    return ranked, mix, (
        f"{profile.name} is less-resourced (class {profile.resource_class}): Respond or Translate beat Generate "
        f"for less-resourced languages (paper Table 15: ar respond, id translate); {pair[0]} leads on the most "
        f"similar measured languages ({', '.join(f'{c} {wt:.2f}' for c, wt in sims)}), hedged with {pair[1]} "
        "because the language itself is unmeasured"
    )


def _safe_norm(code) -> str:
    try:
        return normalize_language(str(code))
    except PgScoreError:
        return str(code)


# ------------------------------------------------------------------------------------------- main
def recommend(language: str, student: str, results_dirs: list[str | Path] | None = None, top: int = 5) -> Recommendation:
    """Rank teachers and a method mix for ``language`` and ``student`` with explanations."""
    if top < 1:
        raise PgScoreError(f"--top must be >= 1, got {top}")
    if not str(student).strip():
        raise PgScoreError("empty student name")
    profile = language_profile(language)
    code = profile.code
    s_info = parse_model_name(student)
    s_fam = s_info.family
    notes: list[str] = []
    if s_fam is None:
        notes.append(f"student family of {student!r} not recognised: no family-matching adjustment")

    own = load_own_scores(list(results_dirs or []))
    own_here = own[own["language"].map(_safe_norm) == code] if not own.empty else own
    if "method" in own_here.columns:
        own_here = own_here[own_here["method"].isna() | ~own_here["method"].isin(METHODS)]

    if not own_here.empty:
        recs, sims, thin, source = _from_own(own_here, s_fam), [(code, 1.0)], False, "your runs"
        notes.append(f"ranked from your scored runs for {code} ({own_here['teacher'].nunique()} teachers)")
    else:
        if not own.empty:
            notes.append(f"your runs do not cover {code}; using the paper's published results instead")
        recs, sims, thin = _from_paper(profile, s_fam)
        source = "paper"
    recs.sort(key=lambda r: -r.expected_pg)
    for i, r in enumerate(recs):
        r.rank = i + 1
    top_recs = recs[:top]
    if len(top_recs) > 1 and top_recs[0].spread is not None and not math.isnan(top_recs[0].spread):
        gap = top_recs[0].expected_pg - top_recs[1].expected_pg
        if gap < top_recs[0].spread:
            notes.append(
                f"close call: the gap between #1 and #2 ({gap:.2f}) is smaller than #1's spread "
                f"({top_recs[0].spread:.2f}); consider measuring both"
            )
    if thin:
        notes.append(
            f"thin evidence: nobody measured {profile.name} ({code}); estimates borrow from the most similar "
            f"measured languages ({', '.join(f'{c} {w:.2f}' for c, w in sims)}) by resource class, script and family "
            f"[{profile.source}]"
        )
    methods, mix, mexp = recommend_methods(profile, own=own)
    notes.append(f"about {N_EXAMPLES:,} examples per language are enough to rank teachers (paper); more helps wide task mixes")
    return Recommendation(
        language=code,
        language_name=profile.name,
        profile=asdict(profile),
        student=str(student),
        student_family=s_fam,
        source=source,
        thin_evidence=thin,
        similar_languages=sims,
        teachers=top_recs,
        methods=methods,
        method_mix=mix,
        method_explanation=mexp,
        notes=notes,
    )


def _from_own(rows: pd.DataFrame, s_fam: str | None) -> list[TeacherRecommendation]:
    out = []
    for teacher, g in rows.groupby("teacher", sort=False):
        pg = float(g["pg_score"].mean())
        n_trials = int(g["n_trials"].sum()) if "n_trials" in g.columns else len(g)
        std = float(g["pg_score_std"].mean()) if "pg_score_std" in g.columns and g["pg_score_std"].notna().any() else float("nan")
        model_name = str(g["teacher_model"].iloc[0]) if "teacher_model" in g.columns else str(teacher)
        info = parse_model_name(model_name)
        fam = info.family or model_family(str(teacher))
        match = s_fam is not None and fam == s_fam
        strength = "strong" if n_trials >= 3 else "moderate"
        expl = f"your runs: PG {pg:.2f} over {n_trials} trial(s)"
        if not math.isnan(std):
            expl += f", spread (std over trials) {std:.2f}"
        if match:
            expl += f"; same family as the student ({fam}) — the paper finds family matching helps"
        out.append(TeacherRecommendation(0, str(teacher), fam, info.size_b or model_size(teacher), pg, pg, 0.0, 0.0,
                                         match, strength, 1, None if math.isnan(std) else std, [rows["language"].iloc[0]], expl))
    return out


def model_size(name) -> float | None:
    from pgscore.evidence import model_size_b

    return model_size_b(str(name))


def _from_paper(profile: LanguageProfile, s_fam: str | None) -> tuple[list[TeacherRecommendation], list, bool]:
    table = paper_table("pg_scores_by_language.csv")
    teachers = paper_table("teachers.csv").set_index("teacher")
    measured = sorted(table["language"].unique())
    thin = profile.code not in measured
    sims = [(profile.code, 1.0)] if not thin else similar_languages(profile, measured)
    weights = pd.Series(dict(sims))
    shifts, s_base = _student_shift(s_fam)
    fam_text = _family_gain_text(s_fam) if s_fam else ""
    out = []
    for teacher, g in table.groupby("teacher", sort=False):
        g = g.set_index("language").loc[weights.index]
        base, spread = _weighted(g["pg_score"], weights)
        shift = float(shifts.get(teacher, 0.0))
        fam = model_family(teacher)
        match = s_fam is not None and fam == s_fam
        bonus = FAMILY_BONUS * abs(base + shift) if match else 0.0
        expected = base + shift + bonus
        size = teachers.loc[teacher, "size_b"] if teacher in teachers.index else float("nan")
        if thin:
            langs = ", ".join(f"{c} {g.loc[c, 'pg_score']:+.2f}" for c in weights.index)
            expl = f"paper Table 1 (OLMo 3 7B student) on similar languages: {langs}; weighted PG {base:+.2f}, spread {spread:.2f}"
        else:
            expl = f"paper Table 1: PG {base:+.2f} for {profile.code} (OLMo 3 7B student, mean of 3 trials)"
        if shift:
            expl += f"; student effect {shift:+.2f} ({s_base} vs OLMo 3 7B student, mean over ar/de/id)"
        if match:
            expl += f"; family match with the student ({fam}): +20% ({fam_text})"
        strength = "thin" if thin else ("strong" if s_fam in _STUDENT_TABLE_FAMILY else "moderate")
        out.append(TeacherRecommendation(
            0, str(teacher), fam, None if pd.isna(size) else float(size), expected, base, shift, bonus, match,
            strength, len(weights), None if math.isnan(spread) else spread, list(weights.index), expl,
        ))
    return out, sims, thin
