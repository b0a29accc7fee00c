"""evaluate(): scoring through a fake LanguageModel with chosen log-likelihoods, caching, coverage, and a
real run on the tiny Gemma model (slow)."""

import math
from pathlib import Path

import pandas as pd
import pytest

from pgscore.evaluation.runner import evaluate, examples_for, pgr_for_language
from pgscore.models.base import ContinuationScore, Generation, LanguageModel, ModelSpec

FIXTURE = Path(__file__).parent / "fixtures" / "m_rewardbench_sample.jsonl"
P_GOOD = 1 / (1 + math.exp(-1))  # softmax of per-token means -1 vs -2


class FakeLM(LanguageModel):
    """-1 nat per word for texts in ``good``, -2 per word otherwise; completions are fixed text."""

    def __init__(self, good=(), completion="The answer is 18.", name="fake-a"):
        self.spec = ModelSpec(backend="fake", model=name)
        self.good = set(good)
        self.completion = completion
        self.calls = 0
        self.requests = []

    def chat(self, conversations, params):
        return [Generation(self.completion) for _ in conversations]

    def complete(self, prompts, params):
        self.calls += len(prompts)
        return [Generation(self.completion) for _ in prompts]

    def loglikelihood(self, requests):
        self.calls += len(requests)
        self.requests.extend(requests)
        out = []
        for _, cont in requests:
            n = max(1, len(cont.split()))
            per = -1.0 if cont in self.good else -2.0
            out.append(ContinuationScore(logprob=per * n, n_tokens=n))
        return out


def _rows():
    rows = pd.read_json(FIXTURE, lines=True)
    return rows[rows["subset"] != "translation-easy"]  # its texts would collide with row 4


def test_m_rewardbench_weighted_accuracy_through_fake(tmp_path):
    rows = _rows()
    wrong = {3, 5, 7, 9}  # the fake prefers the rejected answer on these ids
    good = [r.rejected if r.id in wrong else r.chosen for r in rows.itertuples()]
    lm = FakeLM(good)
    res = evaluate(lm, ["m_rewardbench"], ["id"], out_dir=tmp_path, hub=False, formulations={"m_rewardbench": "cloze"},
                   data_files={"m_rewardbench": str(FIXTURE)}, progress=False)
    r = res.iloc[0]
    assert r.status == "ok" and r.n == 9 and r.formulation == "cloze"
    # upstream weighting (EXAMPLE_COUNTS) inside each category, then the mean of the four categories
    chat, hard, safety, reasoning = (79 + 76) / 179, 76 / 119, 100 / 347, 983 / 1146
    assert r.score == pytest.approx((chat + hard + safety + reasoning) / 4)
    p, q = P_GOOD, 1 - P_GOOD
    graded = ((79 * p + 76 * p + 24 * q) / 179 + (76 * p + 43 * q) / 119 + (100 * p + 247 * q) / 347
              + (983 * p + 163 * q) / 1146) / 4
    assert r.graded == pytest.approx(graded)
    ex = examples_for(tmp_path, r.model_dir, "m_rewardbench", "id")
    assert len(ex) == 9 and set(ex["category"]) == {"Chat", "Chat Hard", "Safety", "Reasoning"}


def test_cache_coverage_and_mgsm(tmp_path):
    lm = FakeLM(completion="5 + 13 = 18. The answer is 18.")
    res = evaluate(lm, ["mgsm", "m_rewardbench"], ["de", "id"], limit=6, seed=1, out_dir=tmp_path, hub=False,
                   progress=False)
    by = {(r.task, r.language): r for r in res.itertuples()}
    assert by[("mgsm", "id")].status == "not_covered"
    assert by[("m_rewardbench", "de")].status == "missing_data"
    assert "multilingual-reward-bench" in by[("m_rewardbench", "de")].note
    mg = by[("mgsm", "de")]
    assert mg.status == "ok" and mg.n == 6
    ex = examples_for(tmp_path, mg.model_dir, "mgsm", "de")
    assert mg.exact_match == pytest.approx((ex["gold"] == "18").mean())
    assert (ex["prediction"] == "18").all()
    # graded MGSM signal: the gold number right after the localised answer phrase
    ctx, cont = lm.requests[0]
    assert ctx.endswith("Schritt-für-Schritt-Antwort: Die Antwort ist ") and cont == ex["gold"].iloc[0]
    assert ex["gold_prob"].iloc[0] == pytest.approx(math.exp(-2.0))  # -2 nats per word, one word
    # the same call again is served from the cache: no model calls, even from a spec that cannot load
    calls = lm.calls
    again = evaluate(lm, ["mgsm"], ["de"], limit=6, seed=1, out_dir=tmp_path, hub=False, progress=False)
    assert lm.calls == calls and again.iloc[0].exact_match == mg.exact_match
    spec_only = evaluate(ModelSpec(backend="fake", model="fake-a"), ["mgsm"], ["de"], limit=6, seed=1,
                         out_dir=tmp_path, hub=False, progress=False)
    assert spec_only.iloc[0].score == mg.score


def test_pgr_for_language_from_results(tmp_path):
    rows = _rows()
    kw = dict(out_dir=tmp_path, hub=False, data_files={"m_rewardbench": str(FIXTURE)}, progress=False,
              formulations={"m_rewardbench": "cloze"})
    base = evaluate(FakeLM([r.rejected for r in rows.itertuples()], name="base"), ["m_rewardbench", "mgsm"], ["id"], **kw)
    ref = evaluate(FakeLM([r.chosen for r in rows.itertuples()], name="ref"), ["m_rewardbench", "mgsm"], ["id"], **kw)
    half = [r.chosen if r.id in (1, 4, 6, 8) else r.rejected for r in rows.itertuples()]
    student = evaluate(FakeLM(half, name="student"), ["m_rewardbench", "mgsm"], ["id"], **kw)
    out = pgr_for_language(student, base, ref, "id", tmp_path, signal="accuracy")
    # base 0, reference 1, student: ids 1, 4, 6, 8 right -> weighted (79/179 + 76/119 + 100/347 + 983/1146) / 4
    assert out.base_score == 0 and out.reference_score == 1
    assert out.pgr == pytest.approx((79 / 179 + 76 / 119 + 100 / 347 + 983 / 1146) / 4)
    assert out.pgr_note.startswith("ok") and "mgsm (not_covered)" in out.pgr_note
    assert out.pgr_reliable and out.pgr_low <= out.pgr <= out.pgr_high and out.pgr_se > 0
    none = pgr_for_language(student, base, None, "id", tmp_path)
    assert math.isnan(none.pgr) and "no reference" in none.pgr_note
    same = pgr_for_language(student, base, base, "id", tmp_path)
    assert math.isnan(same.pgr) and "equals base" in same.pgr_note


@pytest.mark.slow
def test_real_tiny_model_deterministic(gemma_model, tmp_path):
    kw = dict(limit=3, seed=7, hub=False, progress=False, batch_size=8)
    a = evaluate(gemma_model, ["global_mmlu_lite"], ["id"], out_dir=tmp_path / "a", **kw)
    b = evaluate(gemma_model, ["global_mmlu_lite"], ["id"], out_dir=tmp_path / "b", **kw)
    assert a.iloc[0].status == "ok" and a.iloc[0].n == 3
    cols = ["acc", "acc_norm_tokens", "acc_norm_chars", "graded"]
    assert a[cols].to_dict() == b[cols].to_dict()
    ea = examples_for(tmp_path / "a", a.iloc[0].model_dir, "global_mmlu_lite", "id")
    eb = examples_for(tmp_path / "b", b.iloc[0].model_dir, "global_mmlu_lite", "id")
    la = [list(x) for x in ea["logprobs"]]
    assert la == [list(x) for x in eb["logprobs"]] and len(la) == 3 and all(len(x) == 4 for x in la)
    assert all(all(x < 0 for x in lp) for lp in la)
    assert 0.0 < a.iloc[0].graded < 1.0


def test_extrinsic_table_computes_base_once(tmp_path, monkeypatch):
    from pgscore.evaluation.config import EvaluationConfig
    from pgscore.evaluation.stage import EXTRINSIC_COLUMNS, extrinsic_table
    import pgscore.models as models_mod

    rows = _rows()
    chosen, rejected = [r.chosen for r in rows.itertuples()], [r.rejected for r in rows.itertuples()]
    models = {"base": FakeLM(rejected, name="base"), "ref": FakeLM(chosen, name="ref"),
              "s1": FakeLM(chosen, name="s1"), "s2": FakeLM(rejected, name="s2")}
    loads = []

    def _fake(spec):
        loads.append(spec.model)
        return models[spec.model]

    models_mod._ensure_builtin_backends()
    monkeypatch.setitem(models_mod._BACKENDS, "fake", _fake)  # restored after the test

    cfg = EvaluationConfig(benchmarks=["m_rewardbench", "mgsm"], hub=False, bootstrap=50,
                           data_files={"m_rewardbench": str(FIXTURE)}, formulation={"m_rewardbench": "cloze"})
    students = [{"teacher": "t1", "language": "id", "trial": 0, "student": "fake:s1"},
                {"teacher": "t2", "language": "id", "trial": 0, "student": "fake:s2"}]
    table = extrinsic_table(students, "fake:base", "fake:ref", cfg, tmp_path)
    assert list(table.columns) == EXTRINSIC_COLUMNS
    assert sorted(loads) == ["base", "ref", "s1", "s2"]  # base and reference loaded once
    assert table.pgr.tolist() == [1.0, 0.0]
    assert table.student.tolist() == ["base", "base"]  # the student base's name (here the fake base's)
    assert table.student_model.tolist() == ["fake:s1", "fake:s2"] and table.pgr_reliable.all()
    assert table.pgr_note.str.contains("mgsm \\(not_covered\\)").all()
    # no reference configured: PGR undefined with the reason, scores still reported
    table2 = extrinsic_table(students[:1], "fake:base", None, cfg, tmp_path)
    assert math.isnan(table2.pgr[0]) and "no reference" in table2.pgr_note[0] and table2.student_score[0] == 1.0
    assert sorted(loads) == ["base", "ref", "s1", "s2"]  # everything came from the cache


def test_cli_errors_are_one_line(capsys, tmp_path):
    from pgscore.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", "tiny:gemma3-270m", "--languages", "de", "--benchmarks", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown benchmark(s) nope" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", "x", "--languages", "de", "--data", "m_rewardbench"])
    assert exc.value.code == 2 and "BENCHMARK=FILE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tmp_path / "none.parquet"), "--base", "tiny:gemma3-270m", "--out", str(tmp_path / "s")])
    assert exc.value.code == 2 and "file not found" in capsys.readouterr().err


def test_mgsm_graded_signal_does_not_generate(tmp_path):
    lm = FakeLM(completion="The answer is 18.")
    generated = []
    lm.complete = lambda prompts, params: generated.extend(prompts) or []  # must never be called
    res = evaluate(lm, ["mgsm"], ["de"], limit=4, seed=1, out_dir=tmp_path, hub=False, progress=False, signal="graded")
    r = res.iloc[0]
    assert generated == [] and r.status == "ok" and r.n == 4
    assert math.isnan(r.exact_match) and math.isnan(r.score) and "no generation" in r.note
    assert r.graded == pytest.approx(math.exp(-2.0))  # one word per gold number, -2 nats each
    assert len(lm.requests) == 4  # one log-likelihood request per question, nothing else
    # the accuracy signal is a separate cache entry and does generate
    lm2 = FakeLM(completion="The answer is 18.")
    acc = evaluate(lm2, ["mgsm"], ["de"], limit=4, seed=1, out_dir=tmp_path, hub=False, progress=False)
    assert lm2.calls == 8 and not math.isnan(acc.iloc[0].exact_match)


def test_mgsm_number_formulation_is_the_authors_zero_shot_prompt(tmp_path):
    """formulation mgsm=number: question, blank line, the German "answer with only the number", "Answer:";
    a one-line answer's first number is matched; the graded signal is " N" right after "Answer:"."""
    import csv

    from pgscore.evaluation.mgsm import MGSM
    from pgscore.evaluation.runner import subsample
    from pgscore.paths import data_dir

    # the first number of the one-line answer counts (upstream: first match), not the last one
    lm = FakeLM(completion=" 18 Äpfel, nicht 20")
    res = evaluate(lm, ["mgsm"], ["de"], limit=5, seed=1, out_dir=tmp_path, hub=False, progress=False,
                   formulations={"mgsm": "number"})
    r = res.iloc[0]
    assert r.status == "ok" and r.n == 5
    ex = examples_for(tmp_path, r.model_dir, "mgsm", "de")
    assert (ex["prediction"] == "18").all() and (ex["formulation"] == "number").all()
    assert r.exact_match == pytest.approx((ex["gold"] == "18").mean())
    # the prompt, built by hand from the tsv row the seeded sample picks
    with open(data_dir() / "mgsm" / "mgsm_de.tsv", encoding="utf-8", newline="") as fh:
        rows = [x for x in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if len(x) >= 2]
    first = rows[int(subsample(len(rows), 5, 1)[0])]
    ctx, cont = lm.requests[0]
    assert ctx == f"{first[0].strip()}\n\nAntworte nur mit der Zahl.\nAnswer: " and cont == first[1].strip()
    assert ex["gold_prob"].iloc[0] == pytest.approx(math.exp(-2.0))
    # a separate cache entry from the default 5-shot chain of thought
    cot = evaluate(FakeLM(completion="Die Antwort ist 18."), ["mgsm"], ["de"], limit=5, seed=1, out_dir=tmp_path,
                   hub=False, progress=False)
    assert (examples_for(tmp_path, cot.iloc[0].model_dir, "mgsm", "de")["formulation"] == "cot").all()
    with pytest.raises(Exception, match="unknown formulation"):
        MGSM().set_formulation("mcf")
