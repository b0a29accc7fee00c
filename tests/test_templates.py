"""Template sets in the experiment: ``synthesis.templates`` validation, the content hash in the config dump,
and in ``pgscore run``: a changed template file re-runs synthesis only (the seed stage is reused, and behind
the run ledger only the rows whose prompt changed reach the teacher); a parsing change re-reads the ledger
without a single new call."""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest
import yaml
from rich.console import Console

from pgscore.config import Experiment, load_experiment
from pgscore.errors import PgScoreError
from pgscore.models.base import Generation, LanguageModel, ModelSpec
from pgscore.synthesis.config import SynthesisConfig
from pgscore.synthesis.templates import preset_dir, template_hash


class CountingTeacher(LanguageModel):
    """Chat-only fake teacher: a JSON pair for prompts that ask for JSON, plain text otherwise. Counts the
    conversations that reach it (behind the ledger: only misses)."""

    sent: list[str] = []

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    @property
    def has_chat_template(self) -> bool:
        return True

    def chat(self, conversations, params):
        out = []
        for conv in conversations:
            user = conv[-1]["content"]
            CountingTeacher.sent.append(user)
            if "JSON" in user:
                out.append(Generation(text=json.dumps({"prompt": f"Neue Frage {len(user)}?", "response": "Ja, gut."}),
                                      prompt_tokens=5, completion_tokens=5, finish_reason="stop"))
            else:
                out.append(Generation(text=f"Antwort ({len(user)})", prompt_tokens=5, completion_tokens=3,
                                      finish_reason="stop"))
        return out

    def complete(self, prompts, params):
        raise AssertionError("chat teacher")

    def loglikelihood(self, requests):
        raise NotImplementedError


@pytest.fixture
def fake_backend(monkeypatch):
    import pgscore.models as models

    CountingTeacher.sent = []
    monkeypatch.setitem(models._BACKENDS, "fake", lambda spec: CountingTeacher(spec))
    return CountingTeacher


def _experiment(tmp_path, templates: str) -> dict:
    seed = tmp_path / "seed_de.jsonl"
    seed.write_text("".join(json.dumps({"prompt": f"Wie heißt die Stadt Nummer {i}?", "response": f"Stadt {i}."},
                                       ensure_ascii=False) + "\n" for i in range(8)), encoding="utf-8")
    en = tmp_path / "en.jsonl"
    en.write_text("".join(json.dumps({"prompt": f"What is the name of city number {i}?"}) + "\n" for i in range(8)))
    return {
        "name": "tpl",
        "output_dir": str(tmp_path / "out"),
        "languages": ["de"],
        "teachers": [{"name": "fake", "model": "fake:t"}],
        "seed": {"sources": [{"name": "s", "path": str(seed), "language": "de"}],
                 "english_sources": [{"name": "e", "path": str(en), "language": "en", "kind": "english_prompts"}],
                 "langid_filter": False},
        "synthesis": {"examples_per_cell": 6, "batch_size": 6, "templates": templates},
    }


def _run(exp: Experiment, **kw):
    from pgscore.pipeline import run_experiment

    res = run_experiment(exp, only=["seed", "synthesize"], console=Console(file=io.StringIO()), **kw)
    return {s.name: s.status for s in res.stages}


def test_config_carries_the_content_hash_and_round_trips(tmp_path):
    cfg = SynthesisConfig()
    assert cfg.templates == "paper" and cfg.respond_instruction is True
    dump = cfg.model_dump(mode="json")
    assert dump["templates_hash"] == template_hash("paper")
    assert SynthesisConfig.model_validate(dump) == cfg  # a dumped experiment.yaml loads back
    assert SynthesisConfig(templates="legacy").model_dump()["templates_hash"] == template_hash("legacy")


def test_bad_templates_value_is_a_one_line_error(tmp_path):
    data = _experiment(tmp_path, str(tmp_path / "nope"))
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(PgScoreError, match=r"synthesis\.templates: template directory not found: .*nope"):
        load_experiment(p)


def test_changed_template_reruns_synthesis_only(tmp_path, fake_backend):
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    shutil.copy(preset_dir("paper") / "respond_chat.j2", user_dir / "respond_chat.j2")
    data = _experiment(tmp_path, str(user_dir))
    exp = Experiment.model_validate(data)
    h1 = exp.synthesis.model_dump()["templates_hash"]  # computed when dumped (the run's fingerprint)
    assert h1 == template_hash("paper")  # same text as the preset

    assert _run(exp) == {"seed": "done", "synthesize": "done"}
    first = pd.read_parquet(tmp_path / "out" / "synthetic.parquet")
    assert len(first) == 6 and (first["status"] == "ok").all() and len(fake_backend.sent) == 6

    assert _run(Experiment.model_validate(data)) == {"seed": "reused", "synthesize": "reused"}
    assert len(fake_backend.sent) == 6

    # edit the user's Respond template: the experiment's synthesis section changes, the seed stage's does not
    (user_dir / "respond_chat.j2").write_text("Antworte bitte auf {{ language }}:\n{{ source_prompt }}\n")
    exp2 = Experiment.model_validate(data)
    assert exp2.synthesis.model_dump()["templates_hash"] != h1
    assert exp2.seed == exp.seed
    assert _run(exp2) == {"seed": "reused", "synthesize": "done"}
    # every row was re-rendered, but behind the ledger only the two Respond rows' prompts are new calls
    new = fake_backend.sent[6:]
    assert len(new) == 2 and all(u.startswith("Antworte bitte auf German:\n") for u in new)
    second = pd.read_parquet(tmp_path / "out" / "synthetic.parquet")
    resp = second[second["method"] == "respond"]
    assert resp["response"].str.startswith("Antwort (").all()
    assert not resp["response"].equals(first[first["method"] == "respond"]["response"])
    keep = second["method"] != "respond"
    pd.testing.assert_frame_equal(second[keep].reset_index(drop=True), first[keep].reset_index(drop=True))
    saved = yaml.safe_load((tmp_path / "out" / "experiment.yaml").read_text())
    assert saved["synthesis"]["templates_hash"] == exp2.synthesis.templates_hash


def test_parsing_change_is_served_from_the_ledger(tmp_path, fake_backend, monkeypatch):
    import pgscore.synthesis.stage as stage

    data = _experiment(tmp_path, "paper")
    assert _run(Experiment.model_validate(data)) == {"seed": "done", "synthesize": "done"}
    calls = len(fake_backend.sent)
    assert calls == 6
    # a stricter parser (code, not template): the ledger keys do not include parsing, so re-reading every
    # row costs no call and the new parser decides
    real = stage.parse_json_pair

    def picky(text):
        p = real(text)
        if p.ok and "Ja, gut." in p.response:
            p.prompt = p.response = None
            p.error = "invalid_field:response"
        return p

    monkeypatch.setattr(stage, "parse_json_pair", picky)
    shutil.rmtree(tmp_path / "out" / "synthetic_parts")
    assert _run(Experiment.model_validate(data), force=["synthesize"])["synthesize"] == "done"
    assert len(fake_backend.sent) == calls  # no new model call
    df = pd.read_parquet(tmp_path / "out" / "synthetic.parquet")
    json_rows = df["method"].isin(["generate", "translate"])
    assert (df.loc[json_rows, "error"] == "invalid_field:response").all()
    assert (df.loc[~json_rows, "status"] == "ok").all()
