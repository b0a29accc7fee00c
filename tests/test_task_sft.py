"""task-sft reference data: the benchmarks' own training splits, never their test items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgscore.evaluation.config import EvaluationConfig
from pgscore.evaluation.mgsm import MGSM, number_prompt
from pgscore.paths import data_dir
from pgscore.stages.students import task_sft_pairs

REPO = Path(__file__).resolve().parents[1]


def test_mgsm_task_sft_pairs_are_gsm8k_train_in_the_number_formulation():
    cfg = EvaluationConfig(benchmarks=["mgsm", "global_mmlu_lite", "m_rewardbench"], formulation={"mgsm": "number"},
                           hub=False)
    df, sources = task_sft_pairs(cfg, "ja", 20, seed=3)
    assert len(df) == 20 and set(df["method"]) == {"task"} and (df["status"] == "ok").all()
    assert sources == ["mgsm: 20 from local:gsm8k/train.jsonl"]  # no offline Global-MMLU dev / M-RB rows for ja
    train = [json.loads(x) for x in (data_dir() / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    by_q = {r["question"]: r["answer"].split("####")[-1].strip() for r in train}
    for p, c in zip(df["prompt"], df["response"]):
        q = p.split("\n\n数字のみで答えてください。\nAnswer: ")[0]
        assert p == number_prompt(q, "ja") + " " and by_q[q] == c  # the prompt MGSM evaluates, its gold number
    # MGSM's test set is translated from GSM8K *test*: no training question may be a test question
    test_q = {json.loads(x)["question"] for x in (data_dir() / "gsm8k" / "test.jsonl").read_text().splitlines()}
    assert not set(df["prompt"].str.split("\n\n").str[0]) & test_q
    again, _ = task_sft_pairs(cfg, "ja", 20, seed=3)
    assert again.equals(df)  # seeded


def test_task_sft_needs_the_number_formulation_and_dev_rows_for_global_mmlu():
    with pytest.raises(Exception, match="formulation.mgsm: number"):
        task_sft_pairs(EvaluationConfig(benchmarks=["mgsm"], hub=False), "de", 5)
    df, sources = task_sft_pairs(EvaluationConfig(benchmarks=["global_mmlu_lite"], hub=False), "id", 4)
    assert len(df) == 4 and sources[0].startswith("global_mmlu_lite: 4 from local:global_mmlu_lite_seahelm/"
                                                  "global_mmlu_lite_id_dev.jsonl")
    assert df["prompt"].str.endswith("Jawaban:").all() and df["response"].isin([" A", " B", " C", " D"]).all()
    empty, none = task_sft_pairs(EvaluationConfig(benchmarks=["mgsm"], formulation={"mgsm": "number"}, hub=False),
                                 "id", 5)  # MGSM has no Indonesian
    assert empty.empty and none == []
    assert MGSM().covers("ja") and not MGSM().covers("id")


def test_task_sft_with_mgsm_cot_is_refused_before_work_starts(tmp_path):
    import subprocess
    import sys

    exp = tmp_path / "e.yaml"
    exp.write_text("name: t\nlanguages: [de]\nteachers: [{name: a, model: 'tiny:smollm2-135m'}]\n"
                   "student: {base: 'tiny:gemma3-270m', reference: task-sft}\nevaluation: {benchmarks: [mgsm]}\n")
    proc = subprocess.run([sys.executable, "-m", "pgscore", "run", str(exp), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "formulation.mgsm: number" in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "r" / "synthetic.parquet").exists()


@pytest.mark.parametrize("scope", ["joint", "per_language"])
def test_task_sft_reference_is_one_joint_model_or_one_per_language(tmp_path, monkeypatch, scope):
    """The quickstart's task-sft reference: one model trained on both languages' GSM8K pairs (joint), or one
    per language; the trained model is handed to the in-memory evaluation hook (training faked here)."""
    import pgscore.student.train as train_mod
    from pgscore.config import load_experiment
    from pgscore.stages.context import StageContext
    from pgscore.stages.students import references

    calls = []

    def fake_train(pairs, base, path, cfg, teacher=None, language=None, raw_prompts=False, on_trained=None):
        calls.append({"n": len(pairs), "folder": path.name, "language": language, "raw": raw_prompts,
                      "ids": set(pairs["id"].str.split("/").str[0]), "hook": callable(on_trained)})
        return path

    monkeypatch.setattr(train_mod, "train_student", fake_train)
    exp = load_experiment(REPO / "examples" / "quickstart.yaml")
    exp.student.task_sft_scope = scope
    ctx = StageContext(exp, tmp_path / "res")
    base = exp.student.resolved_bases()[0]
    refs = references(ctx, base, [])
    per = exp.student.task_sft_examples
    if scope == "joint":
        assert calls == [{"n": 2 * per, "folder": "_reference-task-sft-joint", "language": "de,ja", "raw": True,
                          "ids": {"de", "ja"}, "hook": True}]
        assert refs["de"] == refs["ja"] and refs["de"].endswith("_reference-task-sft-joint")
    else:
        assert [(c["folder"], c["n"], c["ids"]) for c in calls] == [
            ("_reference-task-sft-de", per, {"de"}), ("_reference-task-sft-ja", per, {"ja"})]
        assert refs["de"].endswith("-de") and refs["ja"].endswith("-ja")
