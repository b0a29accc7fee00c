"""Mixed effects as the paper fits them (§4.1): PG-Score on teacher size, random intercept per teacher,
rows over trials, beside today's grouping by language."""

import numpy as np
import pandas as pd
import pytest

from pgscore import analysis
from pgscore.errors import PgScoreError


def _table():
    # 5 teachers (size = teacher property), 3 languages x 2 trials each: a balanced design
    rng = np.random.default_rng(3)
    sizes = {"t1": 1.0, "t2": 4.0, "t3": 8.0, "t4": 27.0, "t5": 70.0}
    teacher_off = {"t1": 0.3, "t2": -0.2, "t3": 0.1, "t4": -0.3, "t5": 0.2}
    rows = []
    for t, size in sizes.items():
        for lang in ("de", "id", "ja"):
            for trial in (0, 1):
                rows.append({"teacher": t, "language": lang, "trial": trial, "method": "all", "size_b": size,
                             "pg_score": 0.01 * size + teacher_off[t] + rng.normal(0, 0.05)})
                rows.append({"teacher": t, "language": lang, "trial": trial, "method": "generate", "size_b": size,
                             "pg_score": 99.0})  # per-method rows must not enter the fit
    return pd.DataFrame(rows)


def test_by_teacher_equals_ols_on_teacher_means():
    """Balanced groups + a group-level covariate: the GLS slope of the random-intercept model equals the
    OLS slope of the teacher means on size (a textbook identity), computed here with numpy.polyfit."""
    df = _table()
    res = analysis.mixed_effects_by_teacher(df, "size_b")
    dataset = df[df.method == "all"]
    means = dataset.groupby("teacher").agg(size=("size_b", "first"), pg=("pg_score", "mean"))
    slope = np.polyfit(means["size"], means["pg"], 1)[0]
    assert res.coef == pytest.approx(slope, rel=1e-4, abs=1e-6)
    assert res.group == "teacher" and res.n == 30 and res.n_groups == 5


def test_by_language_is_a_different_model():
    df = _table()
    by_lang = analysis.mixed_effects(df[df.method == "all"], "size_b")
    assert by_lang.group == "language" and by_lang.n_groups == 3
    with pytest.raises(PgScoreError, match="at least two teacher groups"):
        analysis.mixed_effects_by_teacher(df[df.teacher == "t1"], "size_b")
