"""One home for the results folder (issue 13): every reader joins and scores a folder the same way.

The folder below is shaped like the one `pgscore run examples/quickstart.yaml` writes: 2 teachers × 2
languages × 2 trials, per-method metric rows, and PGR undefined (reference <= base) for 6 of 8 students.
Expected values are worked independently with numpy (population-std z-scores) rather than with scoring.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pgscore.results import FILES, ResultsFolder, dataset_rows

REPO = Path(__file__).resolve().parents[1]
INTRINSIC = ("prompt_diversity", "response_diversity", "judge_score", "perplexity")


def quickstart_like(folder: Path, judge: bool = True) -> Path:
    rng = np.random.default_rng(3)
    keys = [(t, lang, trial) for t in ("gemma3-270m", "smollm2-135m") for lang in ("de", "id") for trial in (0, 1)]
    base = pd.DataFrame(keys, columns=["teacher", "language", "trial"])
    base["n"] = 9
    base["prompt_diversity"] = rng.uniform(0.2, 0.6, len(base)).round(3)
    base["response_diversity"] = rng.uniform(0.1, 0.5, len(base)).round(3)
    base["perplexity"] = rng.uniform(5, 40, len(base)).round(2)
    base["judge_score"] = rng.uniform(1, 5, len(base)).round(2) if judge else np.nan
    per_method = pd.concat([base.assign(method=m, prompt_diversity=9.0) for m in ("generate", "translate", "respond")])
    metrics = pd.concat([base.assign(method="all"), per_method], ignore_index=True)
    folder.mkdir(parents=True, exist_ok=True)
    metrics.to_parquet(folder / "metrics.parquet")
    ext = base[["teacher", "language", "trial"]].copy()
    ext["student"] = "gemma3-270m"
    ext["student_model"] = [f"hf:{folder}/students/{t}-{lang}-{trial}" for t, lang, trial in keys]
    ext["base_score"] = 0.40
    ext["reference_score"] = [0.38, 0.38, 0.39, 0.39, 0.38, 0.38, 0.50, 0.50]  # only smollm2/id has ref > base
    ext["student_score"] = [0.41, 0.42, 0.40, 0.41, 0.39, 0.40, 0.45, 0.43]
    defined = ext["reference_score"] > ext["base_score"]
    ext["pgr"] = np.where(defined, (ext["student_score"] - 0.40) / (ext["reference_score"] - 0.40), np.nan)
    ext["pgr_reliable"] = [False] * 6 + [True, False]
    ext["pgr_note"] = np.where(defined, "ok", "undefined: reference <= base (r-b=-0.02)")
    ext.to_parquet(folder / "extrinsic.parquet")
    (folder / "experiment.yaml").write_text("name: quickstart\nscoring: {weight: 0.5}\n")
    return folder


def by_hand(folder: Path, weight: float = 0.5, strict: bool = False) -> pd.DataFrame:
    """PG per teacher × language worked without scoring.py: z over the 8 dataset rows, PG per trial, mean."""
    m = pd.read_parquet(folder / "metrics.parquet")
    m = m[m["method"] == "all"].reset_index(drop=True)
    e = pd.read_parquet(folder / "extrinsic.parquet")
    df = m.merge(e[["teacher", "language", "trial", "pgr", "pgr_reliable"]], on=["teacher", "language", "trial"])
    if strict:
        df.loc[~df["pgr_reliable"], "pgr"] = np.nan
    cols = {c: df[c].to_numpy(float) for c in INTRINSIC}
    cols["perplexity"] = -np.log1p(cols["perplexity"])
    zs = []
    for x in cols.values():
        if np.isnan(x).all():
            continue
        zs.append((x - np.nanmean(x)) / np.nanstd(x))
    df["z"] = np.mean(zs, axis=0)
    df["pg"] = weight * df["pgr"] + (1 - weight) * df["z"]
    return df.groupby(["teacher", "language"]).agg(z=("z", "mean"), pg=("pg", "mean")).reset_index()


def test_file_names_are_the_documented_ones(tmp_path):
    rf = ResultsFolder(tmp_path)
    assert rf.seed == tmp_path / "seed" / "seed.parquet"
    assert rf.english_pool == tmp_path / "seed" / "english_pool.parquet"
    assert rf.metrics_path == tmp_path / "metrics.parquet" and rf.path("metrics") == rf.metrics_path
    assert (rf.synthetic.name, rf.metrics_examples.name, rf.extrinsic_path.name, rf.scored_path.name) == (
        "synthetic.parquet", "metrics_examples.parquet", "extrinsic.parquet", "scored.parquet")
    assert (rf.report.name, rf.figures.name, rf.stages.name, rf.summary.name, rf.ledger.name) == (
        "report.html", "figures", "stages.json", "summary.json", "ledger.sqlite")
    assert rf.eval_dir == tmp_path / "eval" and rf.students_dir == tmp_path / "students"
    doc = (REPO / "docs" / "architecture.md").read_text()
    for name in ("seed", "english_pool", "synthetic", "metrics_examples", "metrics", "extrinsic", "scored",
                 "stages", "summary", "ledger", "lock"):
        assert f"`{FILES[name]}" in doc, name
    with pytest.raises(AttributeError):
        rf.no_such_file  # noqa: B018


def test_score_cli_on_a_run_folder_with_undefined_pgr(tmp_path):
    """The issue's bug: `pgscore score --metrics RESULTS_DIR` exited 2 ("PGR is undefined ... (+3 more)")."""
    folder = quickstart_like(tmp_path / "quickstart")
    proc = subprocess.run([sys.executable, "-m", "pgscore", "score", "--metrics", str(folder)], capture_output=True,
                          text=True, cwd=REPO, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "3 of 4 teacher × language rows have no PG-Score" in proc.stdout
    scored = pd.read_parquet(folder / "scored.parquet").set_index(["teacher", "language"])
    hand = by_hand(folder).set_index(["teacher", "language"])
    assert scored["intrinsic_z"].to_numpy() == pytest.approx(hand.loc[scored.index, "z"].to_numpy())
    # smollm2/id: both trials defined -> PG their mean; the other three: NaN with the reason
    assert scored.loc[("smollm2-135m", "id"), "pg_score"] == pytest.approx(hand.loc[("smollm2-135m", "id"), "pg"])
    undefined = scored.drop(index=[("smollm2-135m", "id")])
    assert undefined["pg_score"].isna().all()
    assert undefined["pgr_note"].str.contains("reference <= base").all()


def test_score_stage_and_score_cli_agree(tmp_path):
    from pgscore.config import Experiment
    from pgscore.stages.builtin import run_score
    from pgscore.stages.context import StageContext

    folder = quickstart_like(tmp_path / "r")
    exp = Experiment.model_validate({"name": "q", "languages": ["de", "id"],
                                     "teachers": [{"name": "a", "model": "tiny:smollm2-135m"}]})
    with StageContext(exp, folder) as ctx:
        run_score(ctx)
    from_stage = pd.read_parquet(folder / "scored.parquet")
    from_folder = ResultsFolder(folder).scored()
    pd.testing.assert_frame_equal(from_stage.reset_index(drop=True), from_folder.reset_index(drop=True))


def test_strict_policy_blanks_unreliable_pgr(tmp_path):
    folder = quickstart_like(tmp_path / "r")
    lenient = ResultsFolder(folder).scored(policy="lenient").set_index(["teacher", "language"])
    strict = ResultsFolder(folder).scored(policy="strict").set_index(["teacher", "language"])
    key = ("smollm2-135m", "id")  # trial 0 reliable, trial 1 not: strict keeps trial 0 only
    assert lenient.loc[key, "pg_score"] == pytest.approx(by_hand(folder).set_index(["teacher", "language"]).loc[key, "pg"])
    assert strict.loc[key, "pgr"] == pytest.approx((0.45 - 0.40) / (0.50 - 0.40))
    assert strict.loc[key, "pg_score"] == pytest.approx(
        by_hand(folder, strict=True).set_index(["teacher", "language"]).loc[key, "pg"])
    with pytest.raises(Exception, match="unknown PGR policy"):
        ResultsFolder(folder).scored(policy="sloppy")


def test_every_reader_agrees(tmp_path):
    """score, analyze, screen, recommend and report read the same numbers from one folder."""
    from pgscore.commands.analyze import load_scored
    from pgscore.recommend import load_own_scores
    from pgscore.report.html import load_results
    from pgscore.screen import load_screen_input

    folder = quickstart_like(tmp_path / "r")
    hand = by_hand(folder).set_index(["teacher", "language"])
    analyzed, how = load_scored(folder, 0.5)
    assert how == "results folder scored with λ=0.5"
    own = load_own_scores([folder]).set_index(["teacher", "language"])  # rows with a PG-Score only
    report = load_results(folder)
    for table in (analyzed.set_index(["teacher", "language"]), report.scored.set_index(["teacher", "language"])):
        assert table["intrinsic_z"].to_numpy() == pytest.approx(hand.loc[table.index, "z"].to_numpy())
        assert table["pg_score"].isna().sum() == 3
    assert list(own.index) == [("smollm2-135m", "id")]
    assert own["pg_score"].iloc[0] == pytest.approx(hand.loc[("smollm2-135m", "id"), "pg"])
    screened = load_screen_input(folder)
    assert len(screened) == 8 and "method" not in screened.columns  # dataset rows only, one join
    assert screened["pgr"].notna().sum() == 2


def test_screen_tolerates_a_missing_judge(tmp_path):
    """student.top_k without metrics.judge: the judge score is NaN everywhere; Z uses the other three."""
    from pgscore.screen import load_screen_input, screen_teachers

    folder = quickstart_like(tmp_path / "r", judge=False)
    res = screen_teachers(load_screen_input(folder), top_k=1)
    hand = by_hand(folder)  # z over the three measured components
    z_teacher = hand.groupby("teacher")["z"].mean()
    got = res.teachers.set_index("teacher")["intrinsic_z"]
    assert got.to_numpy() == pytest.approx(z_teacher.loc[got.index].to_numpy())
    assert "judge_score" not in res.features and not res.fitted  # too few teachers to fit: ranked by Z


def test_dataset_rows():
    df = pd.DataFrame({"teacher": ["a", "a"], "method": ["all", "generate"], "x": [1, 2]})
    assert dataset_rows(df).to_dict("list") == {"teacher": ["a"], "x": [1]}
    assert dataset_rows(df.drop(columns="method")).shape == (2, 2)


def test_missing_tables_are_one_line_errors(tmp_path):
    from pgscore.errors import PgScoreError

    with pytest.raises(PgScoreError, match=r"has no metrics.parquet; run `pgscore measure` first"):
        ResultsFolder(tmp_path).metrics()
    assert ResultsFolder(tmp_path).extrinsic() is None
    with pytest.raises(PgScoreError, match="results folder not found"):
        ResultsFolder(tmp_path / "nope").require_dir()
    assert not math.isnan(ResultsFolder(tmp_path).default_weight())
