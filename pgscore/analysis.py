"""The paper's statistics on scored tables (pure; scipy / statsmodels / scikit-learn, no I/O).

PCA of the intrinsic metrics + regression to the extrinsic score, Spearman correlations of teacher
rankings, ranking robustness over λ, mixed-effects regression of PG-Score on a teacher property with
language as the group, and Spearman of PG-Score against a language property.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from pgscore import scoring
from pgscore.errors import PgScoreError

# Intrinsic metric columns used for the PCA when present (perplexity enters as −log(1+ppl)).
INTRINSIC_FEATURES = (
    "prompt_diversity",
    "response_diversity",
    "perplexity",
    "judge_score",
    "prompt_len",
    "response_len",
    "prompt_lang_fidelity",
    "response_lang_fidelity",
)


@dataclass
class RankCorrelation:
    """Spearman's rho with its two-sided p-value over ``n`` pairs."""

    rho: float
    p: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PCARegression:
    """PCA of the (standardised) intrinsic metrics and a linear regression from the components."""

    features: list[str]
    target: str
    explained_variance_ratio: np.ndarray
    loadings: pd.DataFrame  # feature × PC (all components)
    coefficients: pd.Series  # PC1..PCk -> coefficient (regression fitted on the training split)
    intercept: float
    r2_train: float
    r2_test: float
    n_train: int
    n_test: int

    def to_dict(self) -> dict:
        return {
            "features": self.features,
            "target": self.target,
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
            "cumulative_explained_variance": [float(v) for v in np.cumsum(self.explained_variance_ratio)],
            "loadings": {pc: {f: float(v) for f, v in col.items()} for pc, col in self.loadings.items()},
            "coefficients": {k: float(v) for k, v in self.coefficients.items()},
            "intercept": float(self.intercept),
            "r2_train": float(self.r2_train),
            "r2_test": float(self.r2_test),
            "n_train": self.n_train,
            "n_test": self.n_test,
        }


@dataclass
class WeightRobustness:
    """Teacher rankings across λ: Spearman between adjacent λ and the full λ × λ matrix."""

    weights: list[float]
    adjacent: pd.DataFrame  # lambda_a, lambda_b, rho, p
    matrix: pd.DataFrame  # λ × λ Spearman rho
    rankings: pd.DataFrame = field(default_factory=pd.DataFrame)  # teacher × λ mean PG-Score

    def to_dict(self) -> dict:
        return {
            "weights": self.weights,
            "adjacent": self.adjacent.to_dict(orient="records"),
            "min_adjacent_rho": float(self.adjacent["rho"].min()) if len(self.adjacent) else None,
            "matrix": {str(k): {str(k2): float(v) for k2, v in row.items()} for k, row in self.matrix.iterrows()},
        }


@dataclass
class MixedEffects:
    """MixedLM pg_score ~ property with a random intercept per group."""

    property: str
    coef: float
    std_err: float
    p_value: float
    intercept: float
    n: int
    n_groups: int
    converged: bool
    group: str = "language"  # the random-intercept grouping

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------- PCA
def intrinsic_feature_matrix(df: pd.DataFrame, features: list[str] | None = None) -> pd.DataFrame:
    """The intrinsic metric columns present in ``df`` (perplexity replaced by −log(1+perplexity))."""
    cols = list(features) if features else [c for c in INTRINSIC_FEATURES if c in df.columns]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise PgScoreError(f"table is missing intrinsic column(s): {', '.join(missing)}")
    if len(cols) < 2:
        raise PgScoreError("PCA needs at least two intrinsic metric columns (e.g. prompt_diversity, perplexity)")
    X = df[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    if "perplexity" in X:
        X["perplexity"] = -np.log1p(X["perplexity"])
        X = X.rename(columns={"perplexity": "neg_log1p_perplexity"})
    # A constant column carries no variance and would make standardisation divide by zero.
    X = X.loc[:, X.nunique(dropna=True) > 1]
    if X.shape[1] < 2:
        raise PgScoreError("PCA needs at least two intrinsic metric columns that vary across rows")
    return X


def pca_regression(
    df: pd.DataFrame,
    target: str = "pgr",
    n_components: int | None = None,
    test_size: float = 0.25,
    seed: int = 0,
    features: list[str] | None = None,
) -> PCARegression:
    """PCA of the standardised intrinsic metrics (all rows: explained variance and loadings of every
    component) and a linear regression target ~ first k components fitted on a random train split (scaler,
    PCA and OLS all fit on the training rows only), with R² on both splits. k = ``n_components``, by default
    the fewest components explaining >= 90 % of the variance (the paper used 4, 93.3 %)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if target not in df.columns:
        raise PgScoreError(f"table has no target column {target!r} for the PCA regression")
    X = intrinsic_feature_matrix(df, features)
    y = pd.to_numeric(df[target], errors="coerce").astype(float)
    ok = X.notna().all(axis=1) & y.notna()
    X, y = X[ok], y[ok]
    n_test = int(np.ceil(len(X) * test_size))
    if len(X) - n_test < 3 or n_test < 2:
        raise PgScoreError(f"PCA regression needs more rows: {len(X)} complete row(s), test_size={test_size}")
    k_max = min(X.shape[1], len(X) - n_test - 1)
    k = k_max if n_components is None else int(n_components)
    if not 1 <= k <= k_max:
        raise PgScoreError(f"n_components must be between 1 and {k_max}, got {n_components}")

    full = make_pipeline(StandardScaler(), PCA(random_state=seed)).fit(X)
    pca = full[-1]
    all_pcs = [f"PC{i + 1}" for i in range(pca.n_components_)]
    loadings = pd.DataFrame(pca.components_.T, index=list(X.columns), columns=all_pcs)
    if n_components is None:  # fewest components explaining >= 90 % of the variance
        k = min(k_max, int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), 0.9 - 1e-12) + 1))

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=n_test, random_state=seed)
    model = make_pipeline(StandardScaler(), PCA(n_components=k, random_state=seed), LinearRegression()).fit(X_tr, y_tr)
    ols = model[-1]
    return PCARegression(
        features=list(X.columns),
        target=target,
        explained_variance_ratio=pca.explained_variance_ratio_,
        loadings=loadings,
        coefficients=pd.Series(ols.coef_, index=all_pcs[:k]),
        intercept=float(ols.intercept_),
        r2_train=float(model.score(X_tr, y_tr)),
        r2_test=float(model.score(X_te, y_te)),
        n_train=len(X_tr),
        n_test=len(X_te),
    )


# ------------------------------------------------------------------------------------- Spearman
def rank_correlation(a, b) -> RankCorrelation:
    """Spearman rho and two-sided p-value (scipy). Two Series are aligned on their index first."""
    from scipy.stats import spearmanr

    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        a, b = a.align(b, join="inner")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise PgScoreError(f"rank correlation needs two sequences of the same length, got {x.size} and {y.size}")
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if x.size < 3:
        raise PgScoreError(f"rank correlation needs at least 3 paired values, got {x.size}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return RankCorrelation(float("nan"), float("nan"), int(x.size))  # undefined for a constant input
    res = spearmanr(x, y)
    return RankCorrelation(float(res.statistic), float(res.pvalue), int(x.size))


def teacher_means(scored: pd.DataFrame, value: str = "pg_score", by: str | None = None) -> pd.DataFrame:
    """Mean ``value`` per teacher (over languages and anything else), one column per ``by`` group."""
    cols = ["teacher", value] + ([by] if by else [])
    _require(scored, cols)
    if by is None:
        return scored.groupby("teacher", sort=False)[value].mean().to_frame(value)
    return scored.pivot_table(index="teacher", columns=by, values=value, aggfunc="mean", sort=False)


def teacher_rank_correlations(scored: pd.DataFrame, by: str = "student", value: str = "pg_score") -> pd.DataFrame:
    """Pairwise Spearman of teacher rankings (mean ``value`` per teacher) between the groups in ``by``
    (e.g. student base models, methods, languages), over the teachers both groups share."""
    wide = teacher_means(scored, value, by)
    groups = list(wide.columns)
    if len(groups) < 2:
        raise PgScoreError(f"column {by!r} has fewer than two groups: nothing to compare")
    rows = []
    for i, a in enumerate(groups):
        for b in groups[i + 1 :]:
            rc = rank_correlation(wide[a], wide[b])
            rows.append({"group_a": a, "group_b": b, "rho": rc.rho, "p": rc.p, "n_teachers": rc.n})
    return pd.DataFrame(rows)


def intrinsic_vs_extrinsic(scored: pd.DataFrame) -> RankCorrelation:
    """Spearman between the intrinsic score Z and PGR over all rows (paper: 0.41 over 60 rows)."""
    _require(scored, ["intrinsic_z", "pgr"])
    return rank_correlation(scored["intrinsic_z"], scored["pgr"])


# ----------------------------------------------------------------------------------- λ robustness
def weight_robustness(df: pd.DataFrame, weights=None) -> WeightRobustness:
    """Teacher rankings (mean PG over languages) at each λ; Spearman between adjacent λ and λ × λ matrix.

    ``df`` is a scored table (with pgr and intrinsic_z) or a metrics table (scored here).
    """
    weights = [round(float(w), 10) for w in (np.linspace(0, 1, 11) if weights is None else weights)]
    if len(weights) < 2:
        raise PgScoreError("weight robustness needs at least two weights")
    for w in weights:
        scoring._check_weight(w)
    scored = df if {"pgr", "intrinsic_z"} <= set(df.columns) else scoring.score_table(df)
    cols = {}
    for w in weights:
        tmp = scored.assign(pg_score=scoring.rescore(scored, w))
        cols[w] = teacher_means(tmp)["pg_score"]
    rankings = pd.DataFrame(cols)
    if len(rankings) < 3:
        raise PgScoreError(f"weight robustness needs at least 3 teachers, got {len(rankings)}")
    adjacent = []
    for a, b in zip(weights[:-1], weights[1:]):
        rc = rank_correlation(rankings[a], rankings[b])
        adjacent.append({"lambda_a": a, "lambda_b": b, "rho": rc.rho, "p": rc.p})
    matrix = pd.DataFrame(index=weights, columns=weights, dtype=float)
    for a in weights:
        for b in weights:
            matrix.loc[a, b] = 1.0 if a == b else rank_correlation(rankings[a], rankings[b]).rho
    return WeightRobustness(weights, pd.DataFrame(adjacent), matrix, rankings)


# -------------------------------------------------------------------------------- mixed effects
def mixed_effects(
    scored: pd.DataFrame, property_col: str, group: str = "language", value: str = "pg_score"
) -> MixedEffects:
    """statsmodels MixedLM: value ~ 1 + property, random intercept per ``group`` (rows with a missing
    property are dropped). ``property_col`` must already be a column of ``scored`` (see attach_meta)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    _require(scored, [value, property_col, group])
    data = scored[[value, property_col, group]].copy()
    data[property_col] = pd.to_numeric(data[property_col], errors="coerce")
    data[value] = pd.to_numeric(data[value], errors="coerce")
    data = data.dropna()
    n_groups = data[group].nunique()
    if n_groups < 2:
        raise PgScoreError(f"mixed effects needs at least two {group} groups, got {n_groups}")
    if data[property_col].nunique() < 2:
        raise PgScoreError(f"mixed effects needs {property_col!r} to vary across rows")
    exog = sm.add_constant(data[[property_col]].astype(float), has_constant="add")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = sm.MixedLM(data[value].astype(float), exog, groups=data[group].astype(str)).fit(reml=True)
    converged = bool(fit.converged) and not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return MixedEffects(
        property=property_col,
        coef=float(fit.fe_params[property_col]),
        std_err=float(fit.bse_fe[property_col]),
        p_value=float(fit.pvalues[property_col]),
        intercept=float(fit.fe_params["const"]),
        n=len(data),
        n_groups=int(n_groups),
        converged=converged,
        group=group,
    )


def mixed_effects_by_teacher(scored: pd.DataFrame, property_col: str, value: str = "pg_score") -> MixedEffects:
    """The paper's fit (§4.1): value ~ 1 + property, random intercept per *teacher*, one row per teacher x
    language x trial (trials are not averaged first: they are the within-teacher replicates).

    Dataset-level rows (``method == "all"``) are used when the table has per-method rows too. Beside
    ``mixed_effects(..., group="language")`` (today's default, a random intercept per language); see
    docs/evaluation.md for when each answers which question.
    """
    data = scored
    if "method" in data and (data["method"] == "all").any():
        data = data[data["method"] == "all"]
    return mixed_effects(data, property_col, group="teacher", value=value)


def language_property_correlation(
    scored: pd.DataFrame, lang_props: pd.DataFrame, col: str = "common_crawl_pct", value: str = "pg_score"
) -> RankCorrelation:
    """Spearman of mean ``value`` per language against a language property (paper: Common Crawl share)."""
    _require(scored, ["language", value])
    _require(lang_props, ["language", col], what="language metadata")
    means = scored.groupby(scored["language"].map(normalize_name))[value].mean()
    props = pd.to_numeric(lang_props[col], errors="coerce")
    props.index = lang_props["language"].map(normalize_name)
    return rank_correlation(means, props[~props.index.duplicated()])


# ------------------------------------------------------------------------------------- metadata
from pgscore.families import normalize_name, normalize_teacher  # noqa: E402,F401  (model-name keys live there)


def _normalizer(on: str):
    return normalize_teacher if on == "teacher" else normalize_name


def attach_meta(scored: pd.DataFrame, meta: pd.DataFrame, on: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Left-join metadata columns onto ``scored`` by normalised ``on`` name (teacher or language; teachers
    match by normalize_teacher, languages by normalize_name)."""
    _require(meta, [on], what="metadata")
    cols = [c for c in (columns or meta.columns) if c != on and c not in scored.columns]
    norm = _normalizer(on)
    m = meta.assign(_key=meta[on].map(norm)).drop_duplicates("_key")[["_key", *cols]]
    out = scored.assign(_key=scored[on].map(norm)).merge(m, on="_key", how="left")
    return out.drop(columns="_key").set_index(scored.index)


def _require(df: pd.DataFrame, cols, what: str = "table") -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise PgScoreError(f"{what} is missing column(s): {', '.join(missing)}")
