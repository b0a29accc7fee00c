"""PGR as the paper computes it: a number whenever reference > base, with a paired-bootstrap interval
and a reliability flag; undefined only where there is no gap to recover."""

import math

import numpy as np
import pandas as pd
import pytest

from pgscore.evaluation.metrics import RewardBenchSpec
from pgscore.evaluation.pgr import (
    BenchSamples,
    PGRInterval,
    aggregate,
    bootstrap_pgr,
    language_pgr,
    paired_gap_se,
    pgr_value,
    point_scores,
)


def test_pgr_regular_and_extreme_values():
    value, note = pgr_value(0.5, 0.4, 0.6)
    assert value == pytest.approx(0.5) and note == "ok"
    assert pgr_value(0.7, 0.4, 0.6)[0] == pytest.approx(1.5)
    assert pgr_value(0.3, 0.4, 0.6)[0] == pytest.approx(-0.5)
    # a tiny gap still gives a number (the paper's Table 12 has PGRs like -2.1 and 3.1)
    assert pgr_value(0.462, 0.40, 0.42)[0] == pytest.approx(3.1)
    assert pgr_value(0.358, 0.40, 0.42)[0] == pytest.approx(-2.1)


def test_pgr_undefined_only_without_a_gap():
    value, note = pgr_value(0.5, 0.4, 0.4)
    assert math.isnan(value) and note.startswith("undefined: reference equals base")
    value, note = pgr_value(0.5, 0.4, 0.3)
    assert math.isnan(value) and note.startswith("undefined:") and "reference below base" in note
    assert pgr_value(0.5, 0.4, None, has_reference=False)[1] == "undefined: no reference model configured"
    assert pgr_value(float("nan"), 0.4, 0.6)[1] == "undefined: no student score"


def test_language_pgr_reliability_flag_keeps_the_value():
    s, b, r = {"mgsm": 0.5}, {"mgsm": 0.40}, {"mgsm": 0.42}
    noisy = language_pgr(s, b, r, interval=PGRInterval(4.0, -3.0, 12.0, gap_se=0.015, n_boot=100))
    assert noisy.pgr == pytest.approx(5.0)  # 0.10 / 0.02, kept
    assert noisy.pgr_reliable is False and noisy.pgr_note.startswith("unreliable:")
    assert (noisy.pgr_low, noisy.pgr_high, noisy.pgr_se) == (-3.0, 12.0, 4.0)
    clear = language_pgr(s, b, r, interval=PGRInterval(0.5, 4.0, 6.0, gap_se=0.005, n_boot=100))
    assert clear.pgr == pytest.approx(5.0) and clear.pgr_reliable is True and clear.pgr_note.startswith("ok")
    # exactly at k x SE counts as reliable (gap >= 2 SE)
    assert language_pgr(s, b, r, interval=PGRInterval(1, 0, 1, gap_se=0.01, n_boot=10)).pgr_reliable is True
    none = language_pgr(s, b, {"mgsm": 0.3}, interval=PGRInterval(1, 0, 1, gap_se=0.01, n_boot=10))
    assert math.isnan(none.pgr) and math.isnan(none.pgr_low) and none.pgr_reliable is False
    assert none.pgr_note.startswith("undefined:")


def test_language_pgr_averages_common_benchmarks():
    student = {"mgsm": 0.30, "global_mmlu_lite": 0.50, "m_rewardbench": 0.6}
    base = {"mgsm": 0.20, "global_mmlu_lite": 0.40}  # m_rewardbench missing for base
    ref = {"mgsm": 0.40, "global_mmlu_lite": 0.60, "m_rewardbench": 0.7}
    r = language_pgr(student, base, ref, interval=PGRInterval(0.1, 0.3, 0.7, 0.02, 100), not_covered=["x (not_covered)"])
    assert (r.student_score, r.base_score, r.reference_score) == pytest.approx((0.40, 0.30, 0.50))
    assert r.pgr == pytest.approx(0.5) and r.pgr_reliable
    assert "missing scores: m_rewardbench" in r.pgr_note and "not covered: x (not_covered)" in r.pgr_note
    assert r.benchmarks == "mgsm,global_mmlu_lite"


def test_language_pgr_no_reference_and_no_benchmark():
    r = language_pgr({"mgsm": 0.3}, {"mgsm": 0.2}, None)
    assert math.isnan(r.pgr) and r.pgr_note.startswith("undefined: no reference")
    assert r.student_score == pytest.approx(0.3)
    r = language_pgr({}, {}, {}, not_covered=["mgsm (not_covered)"])
    assert math.isnan(r.pgr) and "no benchmark" in r.pgr_note


def test_bootstrap_matches_normal_theory_and_is_seeded():
    # base always wrong, reference always right: the gap is exactly 1 in every resample, so PGR is the
    # student's accuracy and its bootstrap SE must be the binomial one, sqrt(p(1-p)/n) = 0.05
    n = 100
    student = np.array([1.0, 0.0] * (n // 2))
    bench = BenchSamples("x", student, np.zeros(n), np.ones(n))
    iv = bootstrap_pgr([bench], n_boot=4000, seed=1)
    assert iv.gap_se == pytest.approx(0.0)
    assert iv.pgr_se == pytest.approx(0.05, rel=0.08)
    assert iv.pgr_low == pytest.approx(0.5 - 1.96 * 0.05, abs=0.02)
    assert iv.pgr_high == pytest.approx(0.5 + 1.96 * 0.05, abs=0.02)
    again = bootstrap_pgr([bench], n_boot=4000, seed=1)
    assert (again.pgr_low, again.pgr_high, again.pgr_se) == (iv.pgr_low, iv.pgr_high, iv.pgr_se)


def test_bootstrap_pairs_examples():
    # student == reference on every example: PGR is 1 in every resample when pairing is kept
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 2, 60).astype(float)
    base = np.zeros(60)
    iv = bootstrap_pgr([BenchSamples("x", ref, base, ref)], n_boot=500, seed=0)
    assert iv.pgr_low == pytest.approx(1.0) and iv.pgr_high == pytest.approx(1.0) and iv.pgr_se == pytest.approx(0.0)
    # gap SE of a mean difference: sd(ref - base) / sqrt(n)
    assert iv.gap_se == pytest.approx(ref.std(ddof=1) / math.sqrt(60), rel=0.15)


def test_bootstrap_over_trials_widens_the_interval():
    n = 200
    base, ref = np.zeros(n), np.ones(n)
    t1 = (np.arange(n) % 5 == 0).astype(float)  # 0.2
    t2 = (np.arange(n) % 5 != 0).astype(float)  # 0.8
    single = bootstrap_pgr([BenchSamples("x", t1, base, ref)], n_boot=2000, seed=0)
    both = bootstrap_pgr([BenchSamples("x", np.stack([t1, t2]), base, ref)], n_boot=2000, seed=0)
    assert point_scores([BenchSamples("x", np.stack([t1, t2]), base, ref)])["x"] == pytest.approx((0.5, 0.0, 1.0))
    # resampling two trials gives means 0.2, 0.5 or 0.8: the interval spans (nearly) both trials
    assert both.pgr_low < 0.25 and both.pgr_high > 0.75
    assert single.pgr_high - single.pgr_low < 0.15


def test_bootstrap_with_weighted_benchmark_score():
    subsets = ["math-prm", "hep-python"] * 10
    spec = RewardBenchSpec.build(subsets, {"math-prm": 983, "hep-python": 163}, {"Reasoning": ["math-prm", "hep-python"]})
    student = np.array([1.0, 0.0] * 10)  # math-prm all right, hep-python all wrong
    bench = BenchSamples("m", student, np.zeros(20), np.ones(20), score=spec.score)
    assert point_scores([bench])["m"][0] == pytest.approx(983 / (983 + 163))
    iv = bootstrap_pgr([bench], n_boot=300, seed=0)
    # every resample has both subsets (10 of each): the weighted score is the same constant
    assert iv.pgr_low <= 983 / 1146 <= iv.pgr_high


def test_older_helpers_still_work():
    df = pd.DataFrame({"example_id": list("abcd"), "acc": [1.0, 1.0, 0.0, 1.0], "category": ["C", "C", "S", "S"]})
    assert aggregate(df, "acc") == pytest.approx(0.75)
    base = pd.DataFrame({"example_id": [str(i) for i in range(40)], "acc": [0.0] * 40})
    ref = pd.DataFrame({"example_id": [str(i) for i in range(40)], "acc": [1.0] * 40})
    assert paired_gap_se(base, ref, "acc", n_boot=100) == pytest.approx(0.0)
