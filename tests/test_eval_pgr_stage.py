"""extrinsic.parquet rows (contract 1) when the reference-base gap is inside the noise: PGR finite, with an
interval and pgr_reliable = False; scoring then gives a finite PG-Score (lenient) or blanks it (strict)."""

import math

import pandas as pd
import pytest

from test_eval_runner import FIXTURE, FakeLM, _rows


def _tables(tmp_path, monkeypatch):
    import pgscore.models as models_mod
    from pgscore.evaluation.config import EvaluationConfig
    from pgscore.evaluation.stage import EXTRINSIC_COLUMNS, extrinsic_table

    rows = _rows()

    def picks(right):
        return FakeLM([r.chosen if r.id in right else r.rejected for r in rows.itertuples()], name=str(sorted(right)))

    models = {"base": picks({1, 4, 6, 8}), "ref": picks({1, 2, 4, 6, 8}), "s": picks({1, 2, 3, 4, 6, 8}),
              "s2": picks({1, 4, 6, 8})}
    loads = []

    def load(spec):
        loads.append(spec.model)
        return models[spec.model]

    cfg = EvaluationConfig(benchmarks=["m_rewardbench"], hub=False, bootstrap=400, formulation={"m_rewardbench": "cloze"},
                           data_files={"m_rewardbench": str(FIXTURE)})
    students = [{"teacher": "t1", "language": "id", "trial": 0, "student": "gemma3-270m", "student_model": "fake:s"},
                {"teacher": "t1", "language": "id", "trial": 1, "student": "gemma3-270m", "student_model": "fake:s2"}]
    table = extrinsic_table(students, "fake:base", "fake:ref", cfg, tmp_path, load=load)
    assert list(table.columns) == EXTRINSIC_COLUMNS
    assert sorted(loads) == ["base", "ref", "s", "s2"]  # through the given loader, once each
    return table


def test_noisy_gap_gives_finite_flagged_pgr(tmp_path, monkeypatch):
    table = _tables(tmp_path, monkeypatch)
    r = table.iloc[0]
    # only Chat differs: base 79/179, reference (79+76)/179, student 1 -> PGR = (100/179)/(76/179)
    assert r.pgr == pytest.approx(100 / 76)
    assert r.student == "gemma3-270m" and r.student_model == "fake:s"
    assert bool(r.pgr_reliable) is False and r.pgr_note.startswith("unreliable:")
    assert r.pgr_low < r.pgr < r.pgr_high and r.pgr_se > 0
    assert table.iloc[1].pgr == pytest.approx(0.0)
    # two trials: the trial-level interval of the mean PGR
    assert table.pgr_trials_mean.iloc[0] == pytest.approx(50 / 76)
    assert table.pgr_trials_low.iloc[0] <= 50 / 76 <= table.pgr_trials_high.iloc[0]


def test_scoring_keeps_or_blanks_by_guard(tmp_path, monkeypatch):
    from pgscore import scoring

    table = _tables(tmp_path, monkeypatch)
    metrics = pd.DataFrame({"teacher": ["t1", "t1", "t2", "t2"], "language": "id", "trial": [0, 1, 0, 1],
                            "prompt_diversity": [0.5, 0.6, 0.4, 0.45], "response_diversity": [0.3, 0.35, 0.5, 0.4],
                            "judge_score": [3.5, 3.8, 2.9, 3.1], "perplexity": [12.0, 10.0, 20.0, 18.0]})
    t2 = table.assign(teacher="t2", pgr=[0.2, 0.4])
    joined = metrics.merge(pd.concat([table, t2]).drop(columns=["student", "student_model"]),
                           on=["teacher", "language", "trial"])
    lenient = scoring.score_rows(joined, pgr_guard="lenient")
    assert lenient["pg_score"].notna().all() and (~lenient["pgr_reliable"].astype(bool)).all()
    strict = scoring.score_rows(joined, pgr_guard="strict")
    assert strict["pgr"].isna().all() and strict["pgr_note"].str.startswith("undefined:").all()
    assert math.isfinite(lenient["pg_score"].iloc[0])
