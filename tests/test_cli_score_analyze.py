"""`pgscore score` and `pgscore analyze` end to end through `python -m pgscore` in a subprocess."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.test_scoring import HAND_PGR, HAND_Z, hand_table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "metrics_example.csv"
PAPER = ROOT / "pgscore" / "resources" / "paper_evidence"


def pgscore(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pgscore", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def assert_user_error(res: subprocess.CompletedProcess, fragment: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert lines[0].startswith("error:") and fragment in lines[0], lines[0]


def test_score_hand_table_csv_out(tmp_path):
    src = tmp_path / "m.csv"
    hand_table().to_csv(src, index=False)
    out = tmp_path / "scored.csv"
    res = pgscore("score", "--metrics", src, "--weight", "0.25", "--out", out)
    assert res.returncode == 0, res.stderr
    scored = pd.read_csv(out)
    assert scored["pg_score"].tolist() == pytest.approx([0.25 * p + 0.75 * z for p, z in zip(HAND_PGR, HAND_Z)])
    assert {"teacher", "language", "intrinsic_z", "pgr", "pg_score", "prompt_diversity", "perplexity"} <= set(scored)
    # leaderboard: B (PGR 0.5, Z -0.177) > A > C? PG(λ=.25): A -0.070, B -0.008, C 0.297 -> C, B, A
    order = [line.split("│")[2].strip() for line in res.stdout.splitlines() if line.startswith("│")]
    assert order == ["C", "B", "A"]
    assert f"wrote 3 rows to {out}" in res.stdout.replace("\n", "")


def test_score_example_json_and_parquet(tmp_path):
    res = pgscore("score", "--metrics", EXAMPLE, "--out", tmp_path / "s.json")
    assert res.returncode == 0, res.stderr
    assert "google/gemma-3-27b-it" in res.stdout and "mean of up to 2 trials" in res.stdout
    scored = pd.DataFrame(json.loads((tmp_path / "s.json").read_text()))
    assert len(scored) == 12 and scored["n_trials"].eq(2).all()
    # each output row is the mean of its two trials' PG = 0.5*PGR + 0.5*Z (PGR from raw scores)
    raw = pd.read_csv(EXAMPLE)
    pgr = (raw.student_score - raw.base_score) / (raw.reference_score - raw.base_score)
    mean_pgr = pgr.groupby([raw.teacher, raw.language]).mean()
    got = scored.set_index(["teacher", "language"])["pgr"]
    assert got.loc[mean_pgr.index].to_numpy() == pytest.approx(mean_pgr.to_numpy())

    # parquet in -> parquet out gives the same scores
    raw.to_parquet(tmp_path / "m.parquet")
    res = pgscore("score", "--metrics", tmp_path / "m.parquet", "--out", tmp_path / "s.parquet")
    assert res.returncode == 0, res.stderr
    again = pd.read_parquet(tmp_path / "s.parquet")
    assert again["pg_score"].to_numpy() == pytest.approx(scored["pg_score"].to_numpy())


def test_score_jsonl_input(tmp_path):
    src = tmp_path / "m.jsonl"
    hand_table().drop(columns=["student_score", "base_score", "reference_score"]).assign(pgr=HAND_PGR).to_json(
        src, orient="records", lines=True)
    res = pgscore("score", "--metrics", src, "--weight", "1")
    assert res.returncode == 0, res.stderr
    order = [line.split("│")[2].strip() for line in res.stdout.splitlines() if line.startswith("│")]
    assert order == ["B", "A", "C"]  # λ=1: PG = PGR = 0.5, 0.25, 0.125


@pytest.mark.parametrize(
    "make, args, fragment",
    [
        (lambda d: d.drop(columns=["perplexity"]), (), "missing column(s): perplexity"),
        (lambda d: d.assign(judge_score=[1.0, None, 3.0]), (), "'judge_score' has missing values"),
        (lambda d: d.assign(teacher=["A", "A", "C"]), (), "duplicate teacher × language rows"),
        (lambda d: d.assign(reference_score=0.4), (), "base_score == reference_score"),
        (lambda d: d, ("--weight", "1.5"), "weight λ must be a number in [0, 1]"),
        (lambda d: d, ("--out", "x.xlsx"), "unknown output format '.xlsx'"),
    ],
)
def test_score_errors(tmp_path, make, args, fragment):
    src = tmp_path / "m.csv"
    make(hand_table()).to_csv(src, index=False)
    assert_user_error(pgscore("score", "--metrics", src, *args), fragment)


def test_score_file_errors(tmp_path):
    (tmp_path / "m.xlsx").write_text("x")
    assert_user_error(pgscore("score", "--metrics", tmp_path / "m.xlsx"), "unknown table format '.xlsx'")
    assert_user_error(pgscore("score", "--metrics", tmp_path / "none.csv"), "file not found")


def test_analyze_example_metrics(tmp_path):
    out = tmp_path / "a.json"
    res = pgscore("analyze", EXAMPLE, "--out-json", out)
    assert res.returncode == 0, res.stderr
    for title in ("Spearman: intrinsic Z vs PGR", "PCA of intrinsic metrics", "linear regression PGR ~ PCs",
                  "Ranking robustness", "Mixed effects", "common_crawl_pct", "Skipped statistics"):
        assert title in res.stdout, title
    payload = json.loads(out.read_text())
    r = payload["results"]
    assert set(r) == {"intrinsic_vs_extrinsic", "pca_regression", "weight_robustness", "mixed_effects",
                      "language_property_correlation"}
    assert "one student model" in payload["skipped"]["teacher_rank_correlations"]
    assert len(r["weight_robustness"]["adjacent"]) == 10
    assert math.isclose(sum(r["pca_regression"]["explained_variance_ratio"]), 1.0, rel_tol=1e-9)
    # gpt-4o-mini has no size in the paper metadata: 3 teachers × 3 languages
    assert r["mixed_effects"]["n"] == 9
    assert any("teachers.csv: 4 of 4 teachers matched" in n for n in payload["notes"])


def test_analyze_scored_table_and_metadata(tmp_path):
    scored = tmp_path / "scored.parquet"
    assert pgscore("score", "--metrics", EXAMPLE, "--out", scored).returncode == 0
    meta = pd.DataFrame({"teacher": ["google/gemma-3-27b-it", "CohereLabs/aya-expanse-32b", "openai/gpt-4o-mini",
                                     "meta-llama/Llama-3.1-8B-Instruct"], "params": [27, 32, 8, 8]})
    meta.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "a.json"
    res = pgscore("analyze", scored, "--teacher-meta", tmp_path / "t.csv", "--teacher-property", "params",
                  "--out-json", out)
    assert res.returncode == 0, res.stderr
    payload = json.loads(out.read_text())
    assert payload["source"] == "scored table"
    assert payload["results"]["mixed_effects"]["n"] == 12


def test_analyze_paper_table_skips_what_it_cannot_compute(tmp_path):
    out = tmp_path / "a.json"
    res = pgscore("analyze", PAPER / "pg_scores_by_language.csv", "--out-json", out)
    assert res.returncode == 0, res.stderr
    payload = json.loads(out.read_text())
    assert payload["results"]["language_property_correlation"]["rho"] == pytest.approx(1 - 60 / 210)
    assert payload["results"]["mixed_effects"]["n"] == 54
    assert set(payload["skipped"]) == {"intrinsic_vs_extrinsic", "pca_regression", "weight_robustness",
                                       "teacher_rank_correlations"}


def test_analyze_one_language_skips_mixed_effects(tmp_path):
    one = pd.read_csv(EXAMPLE).query("language == 'de'")
    one.to_csv(tmp_path / "de.csv", index=False)
    out = tmp_path / "a.json"
    res = pgscore("analyze", tmp_path / "de.csv", "--out-json", out)
    assert res.returncode == 0, res.stderr
    skipped = json.loads(out.read_text())["skipped"]
    assert "at least two language groups" in skipped["mixed_effects"]
    assert "at least 3 paired values" in skipped["language_property_correlation"]


def test_analyze_bad_input(tmp_path):
    pd.DataFrame({"teacher": ["A"], "x": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    assert_user_error(pgscore("analyze", tmp_path / "bad.csv"), "neither a scored table")


def test_score_results_folder(tmp_path):
    """A results folder: metrics.parquet (method 'all' + per-method rows) joined with extrinsic.parquet;
    scored.parquet is written into the folder."""
    hand = hand_table()
    intrinsic = hand[["teacher", "language", "prompt_diversity", "response_diversity", "perplexity", "judge_score"]]
    per_method = intrinsic.assign(method="generate", prompt_diversity=[9.0, 0.0, 5.0])  # must be ignored
    metrics = pd.concat([intrinsic.assign(method="all"), per_method], ignore_index=True).assign(trial=0, n=50)
    metrics.to_parquet(tmp_path / "metrics.parquet")
    ext = hand[["teacher", "language", "student_score", "base_score", "reference_score"]].assign(
        trial=0, student="olmo", pgr=HAND_PGR, pgr_note="ok")
    ext.to_parquet(tmp_path / "extrinsic.parquet")
    res = pgscore("score", "--metrics", tmp_path)
    assert res.returncode == 0, res.stderr
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert scored["pg_score"].tolist() == pytest.approx([0.5 * p + 0.5 * z for p, z in zip(HAND_PGR, HAND_Z)])
    res = pgscore("analyze", tmp_path, "--out-json", tmp_path / "a.json")
    assert res.returncode == 0, res.stderr
    payload = json.loads((tmp_path / "a.json").read_text())
    assert payload["source"] == "scored.parquet of a results folder"
    assert payload["results"]["intrinsic_vs_extrinsic"]["n"] == 3
    assert "PCA regression needs more rows: 3" in payload["skipped"]["pca_regression"]

    ext.assign(pgr=[0.25, None, 0.125], pgr_note=["ok", "undefined: reference below base (r-b=-0.1)", "ok"]).to_parquet(
        tmp_path / "extrinsic.parquet")
    # A results folder is scored the way `pgscore run` scores it (issue 13): an undefined PGR leaves that
    # row's PG-Score NaN with its reason; Z is still taken over all three rows, so it is unchanged.
    res = pgscore("score", "--metrics", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "1 of 3 teacher × language rows have no PG-Score" in res.stdout
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert scored["intrinsic_z"].tolist() == pytest.approx(HAND_Z)
    assert math.isnan(scored["pg_score"].iloc[1]) and "reference below base" in scored["pgr_note"].iloc[1]
    assert scored["pg_score"].iloc[[0, 2]].tolist() == pytest.approx(
        [0.5 * 0.25 + 0.5 * HAND_Z[0], 0.5 * 0.125 + 0.5 * HAND_Z[2]])
    # no students stage (no extrinsic.parquet): intrinsic Z only, ranked by Z
    (tmp_path / "extrinsic.parquet").unlink()
    res = pgscore("score", "--metrics", tmp_path)
    assert res.returncode == 0, res.stderr
    assert pd.read_parquet(tmp_path / "scored.parquet")["pg_score"].isna().all()
    assert "PGR is undefined for every row" in res.stdout
    (tmp_path / "metrics.parquet").unlink()
    assert_user_error(pgscore("score", "--metrics", tmp_path), "no metrics.parquet; run `pgscore measure` first")
