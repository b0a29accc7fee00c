"""Stages as data (issue 13): the runner's rules with fake stages (seconds, no models), the stage context's
model sharing through the ledger, the run lock, and validation before the first stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import pytest
import yaml

from pgscore.config import Experiment
from pgscore.errors import PgScoreError
from pgscore.models.base import ContinuationScore, Generation, LanguageModel, ModelSpec, SamplingParams
from pgscore.results import ResultsFolder
from pgscore.stages import RunLock, Stage, StageContext, StageOutcome, Status
from pgscore.stages.runner import run_experiment, run_stages

REPO = Path(__file__).resolve().parents[1]
BASE = {"name": "t", "languages": ["de"], "teachers": [{"name": "a", "model": "tiny:smollm2-135m"}]}


def experiment(**change) -> Experiment:
    return Experiment.model_validate({**BASE, **change})


class Recorder:
    """Fake stages A -> B -> C: each writes its output file and records that it ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.fail: set[str] = set()
        self.skip: set[str] = set()

    def stage(self, name: str, sections: tuple[str, ...], output: str, extra=None) -> Stage:
        def run(ctx: StageContext) -> StageOutcome:
            self.ran.append(name)
            if name in self.fail:
                raise PgScoreError(f"{name} broke")
            if name in self.skip:
                return StageOutcome.skipped(f"{name}: nothing to do")
            path = ctx.results.path(output)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(name)
            return StageOutcome.done(f"{name} wrote {output}", notes=[f"note from {name}"])

        return Stage(name, sections, (output,), run, extra=extra)

    def stages(self, extra=None) -> list[Stage]:
        return [self.stage("a", ("languages",), "seed"),
                self.stage("b", ("languages", "synthesis"), "synthetic", extra=extra),
                self.stage("c", ("scoring",), "report")]


def run(rec: Recorder, exp: Experiment, folder: Path, stages=None, **kw):
    rec.ran.clear()
    with StageContext(exp, folder) as ctx:
        return run_stages(stages or rec.stages(), ctx, **kw)


def statuses(result) -> dict[str, str]:
    return {s.name: s.status for s in result.stages}


def test_fingerprints_reuse_and_invalidate_later_stages(tmp_path):
    rec, exp = Recorder(), experiment()
    first = run(rec, exp, tmp_path)
    assert rec.ran == ["a", "b", "c"] and statuses(first) == {"a": "done", "b": "done", "c": "done"}
    assert first.notes == ["note from a", "note from b", "note from c"]
    book = json.loads((tmp_path / "stages.json").read_text())
    assert set(book) == {"a", "b", "c"} and all(len(v) == 16 for v in book.values())

    again = run(rec, exp, tmp_path)
    assert rec.ran == [] and set(statuses(again).values()) == {"reused"}

    # a section only b depends on changed: b re-runs, c (after it) re-runs although its section did not change
    changed = run(rec, experiment(synthesis={"examples_per_cell": 3}), tmp_path)
    assert rec.ran == ["b", "c"] and statuses(changed) == {"a": "reused", "b": "done", "c": "done"}

    # a missing output re-runs its stage even with the same fingerprint
    (tmp_path / "synthetic.parquet").unlink()
    run(rec, experiment(synthesis={"examples_per_cell": 3}), tmp_path)
    assert rec.ran == ["b", "c"]


def test_extra_fingerprint_input(tmp_path):
    rec, exp = Recorder(), experiment()
    version = {"v": 1}
    run(rec, exp, tmp_path, stages=rec.stages(extra=lambda e: version["v"]))
    run(rec, exp, tmp_path, stages=rec.stages(extra=lambda e: version["v"]))
    assert rec.ran == []
    version["v"] = 2  # e.g. a template file's content hash changed
    run(rec, exp, tmp_path, stages=rec.stages(extra=lambda e: version["v"]))
    assert rec.ran == ["b", "c"]


def test_fingerprint_without_extra_is_the_sections_hash():
    """Folders written before stages were data keep their fingerprints (no needless re-runs)."""
    from pgscore.models.base import content_hash

    exp = experiment()
    stage = Stage("x", ("languages", "seed"), ("seed",), lambda ctx: StageOutcome.done())
    dump = exp.model_dump(mode="json")
    assert stage.fingerprint(exp) == content_hash(dump["languages"], dump["seed"])[:16]


def test_only_and_force(tmp_path):
    rec, exp = Recorder(), experiment()
    only = run(rec, exp, tmp_path, only=["b"])
    assert rec.ran == ["b"] and list(statuses(only)) == ["b"]
    # a had not run: running it invalidates b (after it), so b runs again, then c
    run(rec, exp, tmp_path)
    assert rec.ran == ["a", "b", "c"]
    run(rec, exp, tmp_path, only=["c"])
    assert rec.ran == []  # c is done for this configuration

    forced = run(rec, exp, tmp_path, force=["b"])
    assert rec.ran == ["b", "c"] and statuses(forced)["a"] == "reused"
    with pytest.raises(PgScoreError, match="unknown stage 'nope'; stages: a, b, c"):
        run(rec, exp, tmp_path, only=["nope"])


def test_failed_stage_then_resume(tmp_path):
    rec, exp = Recorder(), experiment()
    rec.fail = {"b"}
    with pytest.raises(PgScoreError, match="b broke"):
        run(rec, exp, tmp_path)
    assert rec.ran == ["a", "b"]
    assert set(json.loads((tmp_path / "stages.json").read_text())) == {"a"}
    rec.fail = set()
    resumed = run(rec, exp, tmp_path)
    assert rec.ran == ["b", "c"] and statuses(resumed) == {"a": "reused", "b": "done", "c": "done"}


def test_skipped_is_a_typed_status_not_recorded_as_done(tmp_path):
    rec, exp = Recorder(), experiment()
    rec.skip = {"b"}
    res = run(rec, exp, tmp_path)
    assert [s.status for s in res.stages] == [Status.DONE.value, Status.SKIPPED.value, Status.DONE.value]
    assert res.stages[1].note == "b: nothing to do"  # no "skipped:" prefix to strip
    run(rec, exp, tmp_path)
    assert rec.ran == ["b"]  # a skipped stage is asked again next time; c is still valid


def test_run_experiment_writes_summary_and_lock_is_released(tmp_path):
    rec, exp = Recorder(), experiment()
    res = run_experiment(exp, tmp_path, stages=rec.stages(), validate=False)
    assert [s.status for s in res.stages] == ["done"] * 3
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["a", "b", "c"] and summary["experiment"] == "t"
    assert yaml.safe_load((tmp_path / "experiment.yaml").read_text())["name"] == "t"
    assert not (tmp_path / "run.lock").exists()
    rec.fail = {"c"}
    with pytest.raises(PgScoreError):
        run_experiment(exp, tmp_path, stages=rec.stages(), force=["c"], validate=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stages"][-1]["status"] == "failed" and summary["stages"][-1]["note"] == "c broke"
    assert not (tmp_path / "run.lock").exists()


# ---- the run lock --------------------------------------------------------------------------------


def test_second_run_on_a_folder_in_use_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = ResultsFolder(tmp_path).lock
        lock.write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename, "started": time.time()}))
        rec = Recorder()
        with pytest.raises(PgScoreError) as exc:
            run_experiment(experiment(), tmp_path, stages=rec.stages(), validate=False)
        assert f"in use by another pgscore run (pid {holder.pid}" in str(exc.value) and "\n" not in str(exc.value)
        assert rec.ran == [] and lock.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed): its stale lock is taken over
    rec = Recorder()
    run_experiment(experiment(), tmp_path, stages=rec.stages(), validate=False)
    assert rec.ran == ["a", "b", "c"] and not lock.exists()


def test_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "run.lock"
    with RunLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(PgScoreError, match="already locked by this process"):
            RunLock(path).acquire()
    assert not path.exists()
    path.write_text("{torn")  # a half-written lock from a crash is stale
    with RunLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()


# ---- the stage context: one load per spec, every call through the ledger -------------------------


class CountingModel(LanguageModel):
    """A deterministic model: the reply is the prompt reversed; counts calls that reach it."""

    loads = 0

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.calls = 0
        CountingModel.loads += 1

    def chat(self, conversations, params):
        self.calls += len(conversations)
        return [Generation(c[-1]["content"][::-1]) for c in conversations]

    def complete(self, prompts: Sequence[str], params: SamplingParams):
        self.calls += len(prompts)
        return [Generation(p[::-1]) for p in prompts]

    def loglikelihood(self, requests):
        self.calls += len(requests)
        return [ContinuationScore(-float(len(c)), len(c)) for _, c in requests]


class ClosableModel(CountingModel):
    def close(self):
        self.closed = True


GEMMA_RUN = {"teachers": [{"name": "g", "model": "tiny:gemma3-270m"}],
             "metrics": {"perplexity_model": "tiny:gemma3-270m"}, "student": {"base": "tiny:gemma3-270m"}}


def test_context_loads_each_spec_once_and_caches_calls(tmp_path):
    """The embedded run's Gemma 3 270M is teacher, perplexity model and student base: loaded once."""
    CountingModel.loads = 0
    params = SamplingParams(temperature=0.0, max_tokens=8)
    with StageContext(experiment(**GEMMA_RUN), tmp_path, loader=CountingModel) as ctx:
        teacher = ctx.model("tiny:gemma3-270m", stage="synthesize")
        ppl = ctx.loader("measure")("tiny:gemma3-270m")  # the same model as perplexity model
        assert CountingModel.loads == 1 and ctx.loads == ["tiny:gemma3-270m"]
        assert teacher.model is ppl.model
        assert [g.text for g in teacher.complete(["abc", "xyz"], params)] == ["cba", "zyx"]
        assert [g.text for g in ppl.complete(["abc"], params)] == ["cba"]  # served by the ledger
        assert teacher.model.calls == 2
        assert ppl.loglikelihood([("q", "four")])[0].logprob == -4.0
        stats = ctx.ledger.stats().set_index("stage")
        assert stats.loc["synthesize", "stored"] == 2 and stats.loc["measure", "hits"] == 1
        assert ctx.model("tiny:gemma3-270m", stage="students").model is teacher.model
        assert CountingModel.loads == 1
    # a new run (new context) resumes from the ledger: nothing reaches the model again
    with StageContext(experiment(**GEMMA_RUN), tmp_path, loader=CountingModel) as ctx:
        m = ctx.model("tiny:gemma3-270m", stage="synthesize")
        m.complete(["abc", "xyz"], params)
        assert m.model.calls == 0


def test_shared_models_survive_a_stage_closing_them(tmp_path):
    """synthesize closes each teacher when done; the shared model must stay open for measure and students,
    while a model the experiment does not name (a trained student) is loaded per use and really closed."""
    with StageContext(experiment(**GEMMA_RUN), tmp_path, loader=ClosableModel) as ctx:
        teacher = ctx.model("tiny:gemma3-270m", stage="synthesize")
        teacher.close()
        assert not hasattr(teacher.model, "closed")
        student = ctx.model(f"hf:{tmp_path}/students/g-de-0", stage="students")
        again = ctx.model(f"hf:{tmp_path}/students/g-de-0", stage="students")
        assert student.model is not again.model
        student.close()
        assert student.model.closed
        shared = teacher.model
    assert shared.closed  # the context closes what it shared when the run ends


def test_retrained_local_model_is_not_served_stale_results(tmp_path):
    folder = tmp_path / "students" / "s"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"v1")
    params = SamplingParams(temperature=0.0)
    spec = f"hf:{folder}"
    with StageContext(experiment(), tmp_path, loader=CountingModel) as ctx:
        ctx.model(spec, stage="students").complete(["abc"], params)
    (folder / "model.safetensors").write_bytes(b"v2, retrained")
    with StageContext(experiment(), tmp_path, loader=CountingModel) as ctx:
        m = ctx.model(spec, stage="students")
        m.complete(["abc"], params)
        assert m.model.calls == 1  # a new model: asked again


# ---- validation before the first stage ------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"teachers": [{"name": "a", "model": "tiny:no-such-model"}]}, "teachers[0].model (a): unknown tiny model 'no-such-model'"),
    ({"student": {"base": "tiny:gemma3-270m"}, "evaluation": {"benchmarks": ["mmlu_typo"]}},
     "evaluation.benchmarks: unknown benchmark(s) mmlu_typo"),
    ({"metrics": {"judge": "hf:/nonexistent/judge"}}, "metrics.judge: model path not found: /nonexistent/judge"),
    ({"student": {"base": "tiny:gemma3-270m", "reference": "hf:./no-such-instruct"}},
     "student.reference: model path not found: ./no-such-instruct"),
    ({"seed": {"sources": [{"name": "mine", "path": "/nonexistent/seed.jsonl"}]}},
     "seed.sources[0] (mine): file not found: /nonexistent/seed.jsonl"),
])
def test_bad_specs_are_reported_before_the_first_stage(tmp_path, change, message):
    from pgscore.stages.validate import validate_experiment

    exp = experiment(**change)
    with pytest.raises(PgScoreError) as exc:
        validate_experiment(exp)
    assert message in str(exc.value), str(exc.value)
    with pytest.raises(PgScoreError):
        run_experiment(exp, tmp_path / "out")
    assert not (tmp_path / "out" / "seed").exists()  # no stage ran


def test_good_experiment_validates():
    from pgscore.stages.validate import validate_experiment

    exp = Experiment.model_validate(yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text()))
    assert validate_experiment(exp) == []


def test_cli_unknown_tiny_model_fails_fast(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text(yaml.safe_dump({**BASE, "output_dir": str(tmp_path / "out"),
                                   "teachers": [{"name": "a", "model": "tiny:gemma-typo"}]}))
    proc = subprocess.run([sys.executable, "-m", "pgscore", "run", str(exp)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown tiny model 'gemma-typo'" in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "out" / "seed").exists()


# ---- CLI verbs share the context: `pgscore synthesize` goes through the ledger ------------------------


def test_cli_synthesize_goes_through_the_ledger(tmp_path, monkeypatch):
    """Re-running `pgscore synthesize` on the same folder sends no request again (it used to bypass the ledger).
    The teacher is a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/fake_openai_server.py)."""
    import pandas as pd
    from typer.testing import CliRunner

    import pgscore.engine
    from pgscore.cli import app
    from pgscore.models import load_model
    from tests.fake_openai_server import FakeOpenAIServer

    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    pd.DataFrame([{"id": f"s{i}", "language": "sw", "prompt": f"Swali namba {i}?", "response": f"Jibu {i}.",
                   "source": "test"} for i in range(12)]).to_parquet(seed_dir / "seed.parquet")
    pd.DataFrame([{"id": f"e{i}", "language": "en", "prompt": f"English question {i}?", "source": "test"}
                  for i in range(12)]).to_parquet(seed_dir / "english_pool.parquet")
    with FakeOpenAIServer(max_seconds=120) as srv:
        def load_engine_model(spec, engine=None, *, stage=None):  # the CLI's spec, pointed at the local server
            return load_model(ModelSpec(backend="openai", model=spec.model, base_url=srv.url))

        monkeypatch.setattr(pgscore.engine, "load_engine_model", load_engine_model)
        args = ["synthesize", "--teacher", "t=openai:fake", "--languages", "sw", "--seed-dir", str(seed_dir),
                "--out", str(tmp_path / "out"), "--n", "6", "--methods", "generate,respond"]
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0, first.output
        sent = sum(srv.attempts.values())
        assert sent > 0
        from pgscore.ledger import Ledger

        with Ledger(tmp_path / "out", create=False) as led:
            stats = led.stats()
        assert set(stats["stage"]) == {"synthesize"} and stats["stored"].sum() > 0
        import shutil

        shutil.rmtree(tmp_path / "out" / "synthetic_parts")  # not the synthesis shards: the ledger must answer
        (tmp_path / "out" / "synthetic.parquet").unlink()
        second = CliRunner().invoke(app, args)
        assert second.exit_code == 0, second.output
        assert sum(srv.attempts.values()) == sent  # every call answered by the ledger
        assert pd.read_parquet(tmp_path / "out" / "synthetic.parquet")["status"].eq("ok").sum() > 0


# ---- the students stage's orchestration (training and evaluation replaced by recorders) ------------------


def test_students_stage_loops_over_student_bases(tmp_path, monkeypatch):
    import pandas as pd

    import pgscore.evaluation.stage as ev_stage
    import pgscore.student.train as train_mod
    from pgscore.stages.students import run_students

    trained: list[tuple[str, str]] = []
    evaluated: list[dict] = []

    def fake_train(rows, base, path, cfg, teacher=None, language=None, on_trained=None):
        assert callable(on_trained)  # the stage scores each trained model in memory through this hook
        Path(path).mkdir(parents=True, exist_ok=True)
        trained.append((str(base), Path(path).name))

    def fake_extrinsic(students, base, reference, cfg, eval_dir, load=None, student_name=None):
        students = list(students)
        evaluated.append({"base": base, "reference": reference, "n": len(students), "name": student_name,
                          "load": load is not None})
        return pd.DataFrame([{**s, "pgr": 0.5, "pgr_note": "ok"} for s in students])

    monkeypatch.setattr(train_mod, "train_student", fake_train)
    monkeypatch.setattr(ev_stage, "extrinsic_table", fake_extrinsic)
    exp = experiment(languages=["de", "id"], student={"bases": [
        {"base": "tiny:gemma3-270m", "reference": "seed-sft"},
        {"name": "smol", "base": "tiny:smollm2-135m", "reference": "hf:/models/smol-instruct"}]})
    rf = ResultsFolder(tmp_path)
    rows = [{"teacher": "a", "language": lang, "trial": t, "status": "ok", "prompt": "p", "response": "r"}
            for lang in ("de", "id") for t in (0, 1) for _ in range(2)]
    pd.DataFrame(rows).to_parquet(rf.synthetic)
    rf.seed.parent.mkdir(parents=True)
    pd.DataFrame([{"language": lang, "prompt": "p", "response": "r"} for lang in ("de", "id") for _ in range(3)]
                 ).to_parquet(rf.seed)
    with StageContext(exp, rf) as ctx:
        outcome = run_students(ctx)
    assert outcome.status is Status.DONE and outcome.note == "8 students evaluated, PGR defined for 8"
    # 2 bases x 2 languages x 2 trials students, each base's folders apart; seed-sft only for the first base
    names = sorted(n for _, n in trained)
    assert names == sorted(["gemma3-270m--a-de-0", "gemma3-270m--a-de-1", "gemma3-270m--a-id-0", "gemma3-270m--a-id-1",
                            "_reference-seed-sft-gemma3-270m--de", "_reference-seed-sft-gemma3-270m--id",
                            "smol--a-de-0", "smol--a-de-1", "smol--a-id-0", "smol--a-id-1"])
    assert [(e["base"], e["name"], e["n"], e["load"]) for e in evaluated] == [
        ("tiny:gemma3-270m", "gemma3-270m", 2, True), ("tiny:gemma3-270m", "gemma3-270m", 2, True),
        ("tiny:smollm2-135m", "smol", 2, True), ("tiny:smollm2-135m", "smol", 2, True)]
    assert evaluated[0]["reference"].endswith("_reference-seed-sft-gemma3-270m--de")
    assert evaluated[2]["reference"] == "hf:/models/smol-instruct"
    ext = pd.read_parquet(rf.extrinsic_path)
    assert set(ext["student"]) == {"gemma3-270m", "smol"} and ext["student_model"].str.startswith("hf:").all()
