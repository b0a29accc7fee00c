"""The README's main job, end to end: ``pgscore plan`` then ``pgscore run examples/quickstart.yaml`` as shipped,
on real tiny models and the real offline data (one full run, minutes on 2 CPU cores).

Checks what issues 14 and 16 ask of it:
- the plan made before anything ran is within 10% of the run ledger's model calls per stage and 25% of its
  tokens (synthesis, perplexity, judge; the evaluation's benchmark requests too);
- every teacher x language gets a finite PG-Score with its interval, and students train on more than a
  handful of rows;
- a re-run resumes every stage and makes no model call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "quickstart.yaml"

pytestmark = pytest.mark.slow


def _cli(*args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PGSCORE_CPU_DTYPE"}  # the README's run: dtype auto
    return subprocess.run([sys.executable, "-m", "pgscore", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart") / "results"
    plan = _cli("plan", str(QUICKSTART), "--out", str(out), "--json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    t0 = time.perf_counter()
    run = _cli("run", str(QUICKSTART), "--out", str(out))
    seconds = time.perf_counter() - t0
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    print(f"quickstart: {seconds:.0f} s")
    yield {"out": out, "plan": json.loads(plan.stdout), "stdout": run.stdout, "seconds": seconds}
    shutil.rmtree(out, ignore_errors=True)  # five 1 GB float32 students: not kept in pytest's temp folders


def _ledger(out: Path) -> pd.DataFrame:
    from pgscore.ledger import Ledger

    with Ledger(out, create=False) as led:
        return pd.DataFrame(led.stats())


def test_plan_before_the_run_is_within_10_percent_of_the_ledger(quickstart):
    from pgscore.plan import plan_vs_actual

    rows = quickstart["plan"]["rows"]
    stats = _ledger(quickstart["out"])
    versus = plan_vs_actual(rows, stats)
    report = {}
    for stage in ("synthesize", "measure.perplexity", "measure.judge"):
        g = versus[versus["stage"] == stage]
        assert len(g), (stage, versus.to_dict(orient="records"))
        calls = g["calls"].sum() / g["plan_calls"].sum()
        report[stage] = {"calls": round(calls, 3)}
        assert 0.9 <= calls <= 1.1, (stage, versus.to_dict(orient="records"))
        if g["plan_tokens"].sum():
            tokens = g["tokens"].sum() / g["plan_tokens"].sum()
            report[stage]["tokens"] = round(tokens, 3)
            assert 0.75 <= tokens <= 1.25, (stage, versus.to_dict(orient="records"))
    # benchmark requests: planned per student base ("evaluate"), recorded under each evaluated model
    planned = sum(r["calls"] for r in rows if r["stage"] == "evaluate")
    actual = int(stats.loc[stats["stage"] == "students", "calls"].sum())
    report["evaluate"] = {"calls": round(actual / planned, 3)}
    assert 0.9 <= actual / planned <= 1.1, (planned, actual)
    print(json.dumps(report))


def test_every_teacher_and_language_has_a_finite_pg_score_with_an_interval(quickstart):
    out = quickstart["out"]
    scored = pd.read_parquet(out / "scored.parquet")
    rows = scored
    cells = {(r.teacher, r.language) for r in rows.itertuples()}
    assert cells == {(t, lang) for t in ("gemma3-270m", "smollm2-135m") for lang in ("de", "ja")}
    for col in ("pg_score", "pg_score_low", "pg_score_high"):
        assert rows[col].notna().all() and (rows[col].abs() < float("inf")).all(), rows[[col]]
    assert (rows["pg_score_low"] <= rows["pg_score"]).all() and (rows["pg_score"] <= rows["pg_score_high"]).all()
    assert "leaderboard" in quickstart["stdout"].lower()
    # students learn from the synthetic rows, not from two of them, in the precision dtype auto picks here
    from pgscore.models.precision import cpu_has_native_bf16

    precision = "bf16 autocast (CPU)" if cpu_has_native_bf16() else "float32"
    for card in (out / "students").glob("*/pgscore_student.json"):
        info = json.loads(card.read_text())
        assert info["hyperparameters"]["precision"] == precision, (card.parent.name, info["hyperparameters"])
        if info["teacher"] in ("gemma3-270m", "smollm2-135m"):
            assert info["n_examples"] >= 6, (card.parent.name, info["n_examples"])


def test_a_rerun_resumes_and_calls_no_model(quickstart):
    before = _ledger(quickstart["out"])["calls"].sum()
    again = _cli("run", str(QUICKSTART), "--out", str(quickstart["out"]))
    assert again.returncode == 0, again.stderr[-2000:]
    assert _ledger(quickstart["out"])["calls"].sum() == before
