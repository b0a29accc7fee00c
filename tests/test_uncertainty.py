"""Intervals, P(best) and "A beats B" (pgscore.uncertainty, pgscore.metrics.bootstrap) on tables with
known structure; the vectorised diversity resample against the explicit N×N computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pgscore import scoring, uncertainty
from pgscore.metrics import bootstrap
from pgscore.metrics.diversity import mean_pairwise_cosine_naive, pairwise_cosine


# ----------------------------------------------------------------------------------- bootstrap math
def test_resampled_diversity_matches_explicit_nxn_on_a_resample():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 12))
    X[5] = 0.0  # a zero row: cosine 0 with everything
    W = bootstrap.multinomial_weights(40, 25, rng)
    fast = bootstrap.weighted_mean_cosine(bootstrap.unit_rows(X), W)
    for b in range(25):
        # explicit: expand the resample into rows and compare every pair of *different* original examples
        w = W[b]
        U = bootstrap.unit_rows(X)
        rows = np.repeat(np.arange(40), w)
        C = U[rows] @ U[rows].T
        same = rows[:, None] == rows[None, :]
        explicit = C[~same].mean()
        assert fast[b] == pytest.approx(explicit, rel=1e-10, abs=1e-12)
        assert fast[b] == pytest.approx(bootstrap.weighted_mean_cosine_naive(X, w), rel=1e-10, abs=1e-12)
    assert W.sum(axis=1).tolist() == [40] * 25


def test_unit_weights_give_the_point_diversity():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 8))
    ones = np.ones((1, 30))
    assert bootstrap.weighted_mean_cosine(bootstrap.unit_rows(X), ones)[0] == pytest.approx(pairwise_cosine(X).mean)
    assert pairwise_cosine(X).mean == pytest.approx(mean_pairwise_cosine_naive(X))


def test_weighted_means_skip_missing_values():
    x = np.array([1.0, np.nan, 3.0, 5.0])
    W = np.array([[1, 2, 1, 0], [0, 4, 0, 0], [2, 0, 1, 1]])
    got = bootstrap.weighted_means(x, W)
    assert got[0] == pytest.approx(2.0)  # (1 + 3) / 2
    assert np.isnan(got[1])  # only the missing value was drawn
    assert got[2] == pytest.approx((2 + 3 + 5) / 4)


def test_resample_table_is_seeded_and_keyed():
    ex = _examples({"A": 0.0, "B": 0.0}, n=20, seed=1)
    vecs = np.random.default_rng(2).normal(size=(len(ex), 6))
    t1 = bootstrap.resample_table(ex, vecs, vecs, 50, seed=7)
    t2 = bootstrap.resample_table(ex.sample(frac=1.0, random_state=0).sort_index(), vecs, vecs, 50, seed=7)
    pd.testing.assert_frame_equal(t1, t2)
    assert len(t1) == 2 * 50 and set(t1.columns) == set(bootstrap.RESAMPLE_COLUMNS)
    t3 = bootstrap.resample_table(ex, vecs, vecs, 50, seed=8)
    assert not np.allclose(t1["perplexity"], t3["perplexity"])
    # resample means are centred on the point mean
    a = ex[ex["teacher"] == "A"]
    assert t1[t1["teacher"] == "A"]["perplexity"].mean() == pytest.approx(a["perplexity"].mean(), rel=0.05)


# ----------------------------------------------------------------------------------- known structure
def _examples(shift: dict[str, float], n: int = 60, seed: int = 0, same_sample: bool = False) -> pd.DataFrame:
    """Per-example rows for teachers in one language: perplexity ~ exp(N(2 + shift, 0.5)), judge ~ 1..5."""
    rng = np.random.default_rng(seed)
    parts = []
    base = None
    for t, s in shift.items():
        if same_sample and base is not None:
            ppl, judge = rng.permutation(base[0]), rng.permutation(base[1])
        else:
            ppl = np.exp(rng.normal(2.0 + s, 0.5, n))
            judge = np.clip(np.round(rng.normal(3.0 - s, 1.0, n)), 1, 5)
            base = (ppl, judge)
        parts.append(pd.DataFrame({"teacher": t, "language": "de", "trial": 1, "perplexity": ppl,
                                   "judge_score": judge, "judge_status": "ok"}))
    return pd.concat(parts, ignore_index=True)


def _rows_from_examples(ex: pd.DataFrame, vecs: np.ndarray, pgr: dict[str, tuple[float, float]]) -> pd.DataFrame:
    rows = []
    for t, g in ex.groupby("teacher", sort=False):
        idx = g.index.to_numpy()
        rows.append({"teacher": t, "language": "de", "trial": 1,
                     "prompt_diversity": pairwise_cosine(vecs[idx]).diversity,
                     "response_diversity": pairwise_cosine(vecs[idx]).diversity,
                     "perplexity": g["perplexity"].mean(), "judge_score": g["judge_score"].mean(),
                     "pgr": pgr[t][0], "pgr_se": pgr[t][1]})
    return pd.DataFrame(rows)


def _propagate(ex, vecs, pgr, B=400, seed=0):
    rows = scoring.score_rows(_rows_from_examples(ex, vecs, pgr))
    res = bootstrap.resample_table(ex, vecs, vecs, B, seed=seed)
    return rows, uncertainty.propagate(rows, resamples=res, seed=seed)


def test_same_distribution_gives_overlapping_intervals_and_p_best_near_half():
    """B's examples are A's examples in another order: the same empirical distribution."""
    # a third, different teacher C gives the z-scores a pool with spread (two identical rows alone have none)
    ex = pd.concat([_examples({"A": 0.0, "B": 0.0}, same_sample=True), _examples({"C": 1.5}, seed=9)],
                   ignore_index=True)
    rng = np.random.default_rng(5)
    va = rng.normal(size=(60, 16))
    vecs = np.vstack([va, va[rng.permutation(60)], rng.normal(size=(60, 16)) + 2.0])
    rows, unc = _propagate(ex, vecs, {"A": (0.5, 0.1), "B": (0.5, 0.1), "C": (-1.0, 0.1)})
    iv = unc.intervals.set_index("teacher")
    assert rows["pg_score"].iloc[0] == pytest.approx(rows["pg_score"].iloc[1])
    for col in ("pg_score", "intrinsic_z", "perplexity", "pgr", "prompt_diversity"):
        assert iv.loc["A", f"{col}_low"] < iv.loc["B", f"{col}_high"]
        assert iv.loc["B", f"{col}_low"] < iv.loc["A", f"{col}_high"]
    assert iv.loc["A", "p_best"] == pytest.approx(0.5, abs=0.1)
    assert iv.loc["C", "p_best"] == 0.0
    assert iv["p_best"].sum() == pytest.approx(1.0)
    assert any("not separable" in m for m in unc.messages)
    P = unc.pairwise[()]
    assert P.loc["A", "B"] + P.loc["B", "A"] == pytest.approx(1.0)


def test_independent_draws_from_one_distribution_average_p_best_half():
    """Over many independent datasets from the same distribution, P(best) averages 0.5 and the
    intervals overlap (they would not in most realisations if they were too narrow)."""
    pb, overlap = [], 0
    for k in range(30):
        ex = _examples({"A": 0.0, "B": 0.0}, n=40, seed=100 + k)
        vecs = np.random.default_rng(200 + k).normal(size=(len(ex), 8))
        _, unc = _propagate(ex, vecs, {"A": (0.5, 0.1), "B": (0.5, 0.1)}, B=200, seed=k)
        iv = unc.intervals.set_index("teacher")
        pb.append(iv.loc["A", "p_best"])
        overlap += iv.loc["A", "pg_score_low"] < iv.loc["B", "pg_score_high"] and \
            iv.loc["B", "pg_score_low"] < iv.loc["A", "pg_score_high"]
    assert np.mean(pb) == pytest.approx(0.5, abs=0.12)
    assert overlap >= 27


def test_clearly_separated_teachers_give_p_best_near_one():
    ex = _examples({"A": -0.8, "B": 0.8}, seed=4)  # A: lower perplexity, higher judge scores
    rng = np.random.default_rng(6)
    center = rng.normal(size=16)
    va = rng.normal(size=(60, 16))  # diverse
    vb = center + 0.2 * rng.normal(size=(60, 16))  # near-duplicates
    rows, unc = _propagate(ex, np.vstack([va, vb]), {"A": (0.9, 0.05), "B": (0.2, 0.05)})
    iv = unc.intervals.set_index("teacher")
    assert iv.loc["A", "p_best"] > 0.99
    assert iv.loc["A", "pg_score_low"] > iv.loc["B", "pg_score_high"]
    assert unc.teachers.set_index("teacher").loc["A", "p_best_overall"] > 0.99
    assert unc.pairwise[()].loc["A", "B"] > 0.99
    assert "separable" in unc.messages[0] and "not separable" not in unc.messages[0]
    assert iv.loc["A", "interval_source"] == "metrics:examples, pgr:se"


def test_z_interval_is_the_fixed_frame_transform_of_the_metric_interval():
    """Only prompt_diversity is noisy (an SE column): Z_b = ¼ (x_b − mean) / std with the pool's point
    mean and population std held fixed, so Z's percentiles are that transform of x's."""
    df = pd.DataFrame({"teacher": ["A", "B", "C"], "language": "de",
                       "prompt_diversity": [0.2, 0.5, 0.8], "prompt_diversity_se": [0.05, 0.05, 0.05],
                       "response_diversity": 0.4, "perplexity": 10.0, "judge_score": 3.0, "pgr": [0.1, 0.2, 0.3]})
    scored = scoring.score_table(df)
    x = np.array([0.2, 0.5, 0.8])
    mean, std = x.mean(), x.std(ddof=0)
    for col in ("low", "high"):
        z = (scored[f"prompt_diversity_{col}"] - mean) / std / 4
        assert scored[f"intrinsic_z_{col}"].to_numpy() == pytest.approx(z.to_numpy())
        pg = 0.5 * scored["pgr"] + 0.5 * scored[f"intrinsic_z_{col}"]
        assert scored[f"pg_score_{col}"].to_numpy() == pytest.approx(pg.to_numpy())
    # the interval of x is the normal one: x ± 1.96 se (within Monte Carlo error of 1000 draws)
    assert (scored["prompt_diversity_high"] - scored["prompt_diversity_low"]).to_numpy() == pytest.approx(
        2 * 1.96 * 0.05, rel=0.1)
    assert scored["interval_source"].eq("metrics:se").all()
    assert np.isnan(scored["pgr_low"]).all()  # no PGR noise source: no interval rather than a zero-width one


def test_plain_table_with_gap_inside_noise_is_finite_and_flagged():
    """Reference − base = 0.02 with SEs 0.02 each (gap SE 0.028): PGR is finite but unreliable."""
    df = pd.DataFrame({"teacher": ["A", "B"], "language": "de", "prompt_diversity": [0.3, 0.4],
                       "response_diversity": [0.5, 0.45], "perplexity": [12.0, 9.0], "judge_score": [3.1, 3.4],
                       "student_score": [0.51, 0.515], "base_score": 0.50, "reference_score": 0.52,
                       "base_se": 0.02, "reference_se": 0.02, "student_se": 0.02})
    scored = scoring.score_table(df)
    assert scored["pg_score"].notna().all()
    assert scored["pgr"].tolist() == pytest.approx([0.5, 0.75])
    assert scored["pgr_reliable"].tolist() == [False, False]
    assert (scored["pg_score_low"] < scored["pg_score"]).all() and (scored["pg_score"] < scored["pg_score_high"]).all()
    # delta-method SE of PGR for A: sqrt((es/g)^2 + (eb (s−r)/g^2)^2 + (er (s−b)/g^2)^2)
    g, s, b, r = 0.02, 0.51, 0.50, 0.52
    se = np.sqrt((0.02 / g) ** 2 + (0.02 * (s - r) / g**2) ** 2 + (0.02 * (s - b) / g**2) ** 2)
    assert uncertainty.pgr_se_of(scoring.score_rows(df))[0] == pytest.approx(se)
    strict = scoring.score_table(df, pgr_guard="strict")
    assert strict["pgr"].isna().all() and strict["pg_score"].isna().all()
    assert strict["pgr_note"].str.startswith("undefined: reference-base gap under 2 SE").all()


def test_pgr_interval_from_pgr_se_and_from_low_high():
    base = dict(language="de", prompt_diversity=[0.3, 0.4], response_diversity=[0.5, 0.45],
                perplexity=[12.0, 9.0], judge_score=[3.1, 3.4], pgr=[0.4, 0.6])
    a = scoring.score_table(pd.DataFrame(dict(teacher=["A", "B"], pgr_se=[0.05, 0.05], **base)))
    b = scoring.score_table(pd.DataFrame(dict(teacher=["A", "B"], pgr_low=[0.302, 0.502], pgr_high=[0.498, 0.698],
                                              **base)))
    for t in (a, b):
        width = (t["pgr_high"] - t["pgr_low"]).to_numpy()
        assert width == pytest.approx(2 * 1.96 * 0.05, rel=0.1)
        assert t["interval_source"].eq("pgr:se").all()


def test_trials_are_resampled():
    df = pd.DataFrame({"teacher": ["A", "A", "B", "B"], "language": "de", "trial": [1, 2, 1, 2],
                       "prompt_diversity": [0.3, 0.5, 0.4, 0.4], "response_diversity": 0.5, "perplexity": 10.0,
                       "judge_score": 3.0, "pgr": [0.2, 0.6, 0.4, 0.4]})
    scored = scoring.score_table(df).set_index("teacher")
    # A's two trials differ: its interval spans between the trials' PGs; B's trials are identical: none
    rows = scoring.score_rows(df).set_index(["teacher", "trial"])
    assert scored.loc["A", "pg_score_low"] == pytest.approx(rows.loc[("A", 1), "pg_score"], abs=1e-9)
    assert scored.loc["A", "pg_score_high"] == pytest.approx(rows.loc[("A", 2), "pg_score"], abs=1e-9)
    assert np.isnan(scored.loc["B", "pg_score_low"])
    assert scored.loc["A", "interval_source"] == "trials:2"


def test_p_best_and_pairwise_helpers_by_hand():
    D = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [2.0, 2.0, 0.0], [np.nan, 1.0, 3.0]])
    # row 3: the NaN never wins
    assert uncertainty._p_best(D).tolist() == pytest.approx([(1 + 0 + 0.5 + 0) / 4, (0 + 1 + 0.5 + 0) / 4, 0.25])
    P = uncertainty.pairwise_matrix(D)
    assert P[0, 1] == pytest.approx((1 + 0 + 0.5) / 3)  # row 3 has a NaN for column 0
    assert np.isnan(P[0, 0])
    assert P[0, 2] + P[2, 0] == pytest.approx(1.0)


def test_leaderboard_shows_intervals_and_cli_says_not_separable(tmp_path, capsys):
    from pgscore.cli import main

    df = pd.DataFrame({"teacher": ["A", "B", "A", "B"], "language": ["de", "de", "id", "id"],
                       "prompt_diversity": [0.30, 0.31, 0.40, 0.41], "prompt_diversity_se": 0.05,
                       "response_diversity": 0.5, "perplexity": 10.0, "judge_score": 3.0,
                       "pgr": [0.50, 0.49, 0.30, 0.31], "pgr_se": 0.1})
    board = scoring.leaderboard(scoring.score_table(df))
    assert {"mean_pg_low", "mean_pg_high", "p_best_overall"} <= set(board.columns)
    assert board["p_best_overall"].sum() == pytest.approx(1.0)
    path = tmp_path / "m.csv"
    df.to_csv(path, index=False)
    main(["score", "--metrics", str(path), "--out", str(tmp_path / "s.csv")])
    out = capsys.readouterr().out
    assert "not separable" in out and "P(best)" in out and "[" in out
    saved = pd.read_csv(tmp_path / "s.csv")
    assert {"pg_score_low", "pg_score_high", "p_best", "interval_source"} <= set(saved.columns)
