"""`pgscore run`: experiment validation, scoring of a results folder, and the whole pipeline on real tiny models."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pgscore.config import load_experiment
from pgscore.errors import PgScoreError
from pgscore.scoring import score_results

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgscore", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout)


# ---- experiment validation ------------------------------------------------------------------------

GOOD = {
    "name": "t",
    "languages": ["de", "id"],
    "teachers": [{"name": "a", "model": "tiny:smollm2-135m"}],
}


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def test_quickstart_and_examples_validate():
    exp = load_experiment(REPO / "examples" / "quickstart.yaml")
    assert exp.languages == ["de", "ja"]  # both have MGSM offline
    assert [t.model.short() for t in exp.teachers] == ["tiny:gemma3-270m", "tiny:smollm2-135m"]
    assert exp.teachers[0].sampling.top_k == 64  # Gemma 3 family settings
    assert exp.student.reference == "task-sft" and exp.evaluation.formulation == {"mgsm": "number"}
    assert exp.student.training.freeze_embeddings and exp.student.reference_training.max_steps == 16
    # issue 16: JSON pairs under their schema, score-only verdicts, one joint reference, every usable row
    assert exp.synthesis.structured_output and exp.metrics.judge_max_tokens == 0
    assert exp.student.task_sft_scope == "joint" and not exp.student.training.balance_methods


@pytest.mark.parametrize(
    "change, message",
    [
        ({"languages": ["xx-not-a-code!"]}, "not a language code"),
        ({"languages": []}, "languages"),
        ({"teachers": [{"name": "a", "model": "tiny:x"}, {"name": "a", "model": "tiny:y"}]}, "teacher names repeat: a"),
        ({"synthesis": {"methods": {"summarise": 1}}}, "unknown synthesis method"),
        ({"scoring": {"weight": 1.5}}, "scoring.weight"),
        ({"teachers": [{"name": "a", "model": "tiny:x", "sampling": {"temperature": -1}}]}, "temperature"),
        ({"typo_section": 1}, "typo_section"),
    ],
)
def test_bad_experiment_is_one_line_error(tmp_path, change, message):
    with pytest.raises(PgScoreError) as exc:
        load_experiment(_write(tmp_path, {**GOOD, **change}))
    text = str(exc.value)
    assert message in text and "\n" not in text


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(PgScoreError, match="not valid YAML at line"):
        load_experiment(_write(tmp_path, "name: t\nlanguages: [de\n"))
    with pytest.raises(PgScoreError, match="experiment file not found"):
        load_experiment(tmp_path / "nope.yaml")


def test_run_cli_bad_input_exits_2_without_traceback(tmp_path):
    proc = _cli("run", str(_write(tmp_path, {**GOOD, "languages": ["de", "de"]})))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "languages repeat" in proc.stderr


def test_cli_version_help_and_usage_errors():
    from pgscore import __version__

    v = _cli("--version")
    assert v.returncode == 0 and v.stdout.strip() == __version__
    h = _cli()
    assert "run" in h.stdout and "score" in h.stdout and "Traceback" not in h.stderr  # help (click exits 2)
    for args in (("score", "--bogus"), ("no-such-command",)):
        bad = _cli(*args)
        assert bad.returncode == 2, args
        assert "Traceback" not in bad.stderr and "Error" in bad.stderr


# ---- scoring a results folder (PGR partly undefined) ----------------------------------------------


def test_score_results_keeps_undefined_pgr_rows():
    metrics = pd.DataFrame({
        "teacher": ["a", "a", "b", "b"], "language": ["de", "id", "de", "id"], "trial": 0, "method": "all",
        "prompt_diversity": [0.2, 0.4, 0.4, 0.2], "response_diversity": [0.3, 0.3, 0.1, 0.5],
        "perplexity": [math.e - 1, math.e**2 - 1, math.e - 1, math.e**2 - 1], "judge_score": [4.0, 2.0, 4.0, 2.0],
    })
    # a per-method row must be ignored
    metrics = pd.concat([metrics, metrics.iloc[:1].assign(method="generate", judge_score=1.0)], ignore_index=True)
    extrinsic = pd.DataFrame({"teacher": ["a", "a", "b", "b"], "language": ["de", "id", "de", "id"], "trial": 0,
                              "pgr": [0.5, np.nan, 1.0, 0.0],
                              "pgr_note": ["ok", "undefined: reference below base", "ok", "ok"]})
    scored, notes = score_results(metrics, extrinsic, weight=0.5)
    by = scored.set_index(["teacher", "language"])
    # By hand: each column has two values, so z = ±1 (population std); -log1p(ppl) is -1 or -2.
    # a/de: prompt_div 0.2 of {.2,.4,.4,.2} -> -1; resp 0.3 of {.3,.3,.1,.5} -> 0;
    #       judge 4 of {4,2,4,2} -> +1; -log1p(ppl) = -1 of {-1,-2,-1,-2} -> +1. Z = (-1 + 0 + 1 + 1)/4 = 0.25
    assert by.loc[("a", "de"), "intrinsic_z"] == pytest.approx(0.25)
    assert by.loc[("a", "de"), "pg_score"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.25)
    # b/id: prompt -1, resp (0.5-0.3)/0.1414 = +1.4142, judge -1, ppl -1 -> Z = -0.6464/4
    assert by.loc[("b", "id"), "intrinsic_z"] == pytest.approx((-1 + 2 / math.sqrt(2) - 1 - 1) / 4)
    # a/id: PGR undefined -> PG NaN, the reason kept, Z still computed over all four rows
    assert math.isnan(by.loc[("a", "id"), "pg_score"])
    assert "reference below base" in by.loc[("a", "id"), "pgr_note"]
    assert by.loc[("a", "id"), "intrinsic_z"] == pytest.approx((1 + 0 - 1 - 1) / 4)
    assert any("PGR undefined for 1 of 4" in n for n in notes)


def test_score_results_without_students():
    metrics = pd.DataFrame({"teacher": ["a", "b"], "language": ["de", "de"], "trial": 0,
                            "prompt_diversity": [0.1, 0.3], "response_diversity": [0.2, 0.2],
                            "perplexity": [10.0, 10.0], "judge_score": [np.nan, np.nan]})
    scored, notes = score_results(metrics, None)
    assert scored["pg_score"].isna().all()
    # judge missing everywhere: Z is the mean of the remaining components (prompt ±1, others 0)
    assert scored.set_index("teacher")["intrinsic_z"].to_dict() == pytest.approx({"a": -1 / 3, "b": 1 / 3})
    assert any("only intrinsic Z" in n for n in notes)


# ---- the whole method on real tiny models --------------------------------------------------------


@pytest.mark.slow
def test_run_end_to_end_on_tiny_models_and_resume(tmp_path):
    """Seed -> synthesis (real SmolLM2) -> metrics (real Gemma perplexity, SmolLM2 judge) -> a real student
    and a seed-SFT reference (a few steps each) -> evaluation -> score -> report; then a re-run reuses all."""
    pytest.importorskip("torch")
    exp = tmp_path / "e2e.yaml"
    exp.write_text(textwrap.dedent(f"""
        name: e2e
        output_dir: {tmp_path / 'results'}
        languages: [id]
        teachers:
          - name: smollm2
            model: tiny:smollm2-135m
            sampling: {{temperature: 0.8, top_p: 0.9, max_tokens: 40}}
        seed: {{per_language: 12}}
        synthesis: {{examples_per_cell: 6, trials: 1, batch_size: 6}}
        metrics: {{judge: tiny:smollm2-135m, judge_max_tokens: 24}}
        student:
          base: tiny:gemma3-270m
          reference: seed-sft
          training: {{max_steps: 1, per_device_batch_size: 2, effective_batch_size: 2, max_length: 96}}
        evaluation: {{benchmarks: [global_mmlu_lite], limit: 4, signal: graded}}
    """))
    proc = _cli("run", str(exp), timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "results"
    syn = pd.read_parquet(out / "synthetic.parquet")
    assert len(syn) == 6 and set(syn["method"]) == {"generate", "translate", "respond"}
    assert set(syn["status"]) <= {"ok", "failed"}
    assert syn.loc[syn["status"] == "failed", "error"].str.len().gt(0).all()  # failures keep a reason
    metrics = pd.read_parquet(out / "metrics.parquet")
    row = metrics[metrics["method"] == "all"].iloc[0]
    assert 0 <= row["prompt_diversity"] <= 2 and row["perplexity"] > 1
    ext = pd.read_parquet(out / "extrinsic.parquet")
    # contract 1: `student` names the student base, `student_model` the trained student
    assert len(ext) == 1 and ext["student"].iloc[0] == "gemma3-270m" and ext["student_model"].iloc[0].startswith("hf:")
    assert (out / "students" / "smollm2-id-0" / "README.md").is_file()
    assert (out / "students" / "_reference-seed-sft-id" / "README.md").is_file()
    assert not math.isnan(ext["base_score"].iloc[0]) and not math.isnan(ext["reference_score"].iloc[0])
    # PGR is a number or undefined with a reason, never a silent NaN
    assert not math.isnan(ext["pgr"].iloc[0]) or ext["pgr_note"].iloc[0].startswith("undefined")
    scored = pd.read_parquet(out / "scored.parquet")
    assert list(scored[["teacher", "language"]].itertuples(index=False, name=None)) == [("smollm2", "id")]
    html = (out / "report.html").read_text()
    assert "smollm2" in html and "<script" not in html.lower()
    assert "leaderboard" in proc.stdout.lower()

    calls_before = sqlite3.connect(out / "ledger.sqlite").execute("select count(*) from calls").fetchone()[0]
    again = _cli("run", str(exp), timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("reused") == 6  # every stage's outputs exist for this configuration
    calls_after = sqlite3.connect(out / "ledger.sqlite").execute("select count(*) from calls").fetchone()[0]
    assert calls_after == calls_before
