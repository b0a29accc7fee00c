"""pgscore run --preview: bad input is one line before any work; the preview's rows are the full run's
first rows (the real preview run is in tests/test_plan.py::test_preview_then_full_run_matches_plan)."""

from __future__ import annotations

import subprocess
import sys

import yaml


def test_preview_needs_a_positive_count(tmp_path):
    exp = {"name": "p", "output_dir": str(tmp_path / "res"), "languages": ["de"],
           "teachers": [{"name": "t", "model": "tiny:smollm2-135m"}]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    r = subprocess.run([sys.executable, "-m", "pgscore", "run", str(path), "--preview", "0"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "positive" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "res").exists()  # refused before any work


def test_preview_rows_are_a_prefix_of_the_full_plan():
    """The preview filters the stage's own row plan: same ids, same in-context examples and sources."""
    from pgscore.seed.build import build_seed
    from pgscore.synthesis.config import SynthesisConfig
    from pgscore.synthesis.stage import plan_rows
    from pgscore.config import TeacherConfig

    teachers = [TeacherConfig(name="a", model="tiny:smollm2-135m"), TeacherConfig(name="b", model="tiny:gemma3-270m")]
    seed = build_seed(["de", "id"])
    cfg = SynthesisConfig(examples_per_cell=9, trials=2)
    full = plan_rows(teachers, ["de", "id"], seed.seed, seed.english_pool, cfg)
    first = full[(full["trial"] == 0) & (full["index"] < 2)]
    assert len(first) == 2 * 2 * 3 * 2  # teachers x languages x methods x N
    assert first.groupby(["teacher", "language", "method"]).size().eq(2).all()
    # each (teacher, language, method)'s first rows are its indices 0..N-1 of trial 0, in plan order
    assert (first["index"].groupby([first["teacher"], first["language"], first["method"]]).apply(list)
            .map(lambda v: v == [0, 1])).all()
