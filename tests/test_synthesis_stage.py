"""The synthesis stage: row plan, decoding settings, batching, persistence/resume, failure records;
orchestration on a small fake model, plus one real tiny-model run on CPU."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pgscore.config import TeacherConfig
from pgscore.errors import PgScoreError
from pgscore.models.base import Generation, LanguageModel, ModelSpec
from pgscore.synthesis.config import SynthesisConfig
from pgscore.synthesis.decoding import FAMILY_SETTINGS, infer_family, teacher_params
from pgscore.synthesis.stage import PARTS_DIR, SYNTHETIC_COLUMNS, plan_rows, split_counts, synthesize


def _seed() -> tuple[pd.DataFrame, pd.DataFrame]:
    pairs = [{"id": f"s:de:{i}", "language": "de", "prompt": f"Frage Nummer {i}?", "response": f"Antwort {i}.",
              "source": "s", "task": "math", "prompt_en": f"Question number {i}?"} for i in range(6)]
    prompts = [{"id": f"v:de:{i}", "language": "de", "prompt": f"Offene Frage {i}?", "response": None,
                "source": "v", "task": None, "prompt_en": None} for i in range(4)]
    ja = [{"id": f"s:ja:{i}", "language": "ja", "prompt": f"質問{i}ですか？", "response": f"答え{i}です。",
           "source": "s", "task": None, "prompt_en": None} for i in range(4)]
    pool = pd.DataFrame([{"id": f"en:{i}", "language": "en", "prompt": f"English question {i}?", "source": "g"}
                         for i in range(5)])
    return pd.DataFrame(pairs + prompts + ja), pool


class FakeLM(LanguageModel):
    """Answers every chat with JSON built from the input, every completion in the few-shot format."""

    log: list = []

    def __init__(self, spec: ModelSpec, chat_template: bool = True, fail: str | None = None):
        self.spec, self._tpl, self.fail, self.closed = spec, chat_template, fail, False
        FakeLM.log.append(("load", spec.model))

    @property
    def has_chat_template(self) -> bool:
        return self._tpl

    def chat(self, conversations, params):
        FakeLM.log.append(("chat", self.spec.model, len(conversations), params))
        if self.fail == "raise":
            raise RuntimeError("server exploded\nsecond line")
        out = []
        for conv in conversations:
            user = conv[-1]["content"]
            if self.fail == "gen_error":
                out.append(Generation(text="", error="timeout"))
            elif "JSON" in user:
                out.append(Generation(text=f'Sure:\n```json\n{{"prompt": "Neu {len(user)}?", "response": "Ja."}}\n```',
                                      prompt_tokens=len(user), completion_tokens=7, finish_reason="stop"))
            else:
                out.append(Generation(text=f"Antwort auf: {user}", prompt_tokens=3, completion_tokens=4))
        return out

    def complete(self, prompts, params):
        FakeLM.log.append(("complete", self.spec.model, len(prompts), params))
        return [Generation(text=" Eine neue Frage?\nAnswer: Eine Antwort.\nEnglish: y" if "\nEnglish: " in p
                           else " Eine neue Frage?\nResponse: Eine Antwort.\nPrompt: y") for p in prompts]

    def loglikelihood(self, requests):
        raise NotImplementedError

    def close(self):
        FakeLM.log.append(("close", self.spec.model))


def _loader(**kw):
    def load(spec):
        spec = ModelSpec.parse(spec)
        return FakeLM(spec, chat_template=spec.model != "base", **kw)
    return load


@pytest.fixture(autouse=True)
def _clear_log():
    FakeLM.log = []


T_CHAT = TeacherConfig(name="chatty", model="fake:chat")
T_BASE = TeacherConfig(name="basey", model="fake:base")


def test_split_counts_hand_computed():
    assert split_counts(7, {"generate": 1, "translate": 1, "respond": 1}) == {"generate": 3, "translate": 2, "respond": 2}
    assert split_counts(6, {"generate": 2, "respond": 1}) == {"generate": 4, "respond": 2}
    assert split_counts(5, {"generate": 1, "translate": 0, "respond": 3}) == {"generate": 1, "respond": 4}
    assert split_counts(1, {"generate": 1, "translate": 1, "respond": 1}) == {"generate": 1, "translate": 0, "respond": 0}
    assert sum(split_counts(31, {"generate": 0.2, "translate": 0.3, "respond": 0.5}).values()) == 31


def test_plan_is_deterministic_and_shared_across_teachers():
    seed, pool = _seed()
    cfg = SynthesisConfig(examples_per_cell=7, trials=2, seed=3)
    a = plan_rows([T_CHAT, T_BASE], ["de", "ja"], seed, pool, cfg)
    b = plan_rows([T_CHAT, T_BASE], ["de", "ja"], seed, pool, cfg)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 2 * 2 * 2 * 7 and a["id"].is_unique
    assert a.groupby(["teacher", "language", "trial", "method"]).size().unstack()[
        ["generate", "translate", "respond"]].iloc[0].tolist() == [3, 2, 2]
    assert "chatty/de/t1/respond/0001" in set(a["id"])
    cols = ["language", "trial", "method", "index", "example_ids", "source_id", "task_type"]
    ta = a[a.teacher == "chatty"][cols].reset_index(drop=True)
    tb = a[a.teacher == "basey"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(ta, tb)  # teachers compared on the same inputs
    gen = a[a.method == "generate"]
    assert all(len(set(x)) == 3 for x in gen["example_ids"])  # k = 3 distinct seed pairs
    assert gen["task_type"].isin(cfg.task_types).all()
    resp = a[(a.method == "respond") & (a.teacher == "chatty")]
    for r in resp.itertuples():  # few-shot blocks never include the prompt being answered
        assert r.source_id not in r.example_ids
    tr = a[(a.method == "translate")]
    assert tr["source_id"].str.startswith("en:").all()
    # within a cell, sources are distinct (drawn without replacement)
    assert not resp.groupby(["language", "trial"])["source_id"].apply(lambda s: s.duplicated().any()).any()
    other = plan_rows([T_CHAT], ["de"], seed, pool, SynthesisConfig(examples_per_cell=7, trials=2, seed=4))
    assert other["example_ids"].tolist() != a[(a.teacher == "chatty") & (a.language == "de")]["example_ids"].tolist()


def test_decoding_settings_per_family():
    assert infer_family("tiny:gemma3-270m") == "gemma3"
    assert infer_family(None, "meta-llama/Llama-3.1-8B-Instruct") == "llama3.1"
    assert infer_family("CohereLabs/c4ai-command-a-03-2025") == "command-a"
    assert infer_family("CohereForAI/aya-expanse-32b") == "aya-expanse"
    assert infer_family("ibm-granite/granite-3.1-8b-instruct") == "granite"
    assert infer_family("smollm2-135m") == "default"
    assert infer_family("gemma", "whatever") == "gemma3" and infer_family("aya") == "aya-expanse"
    assert infer_family("meta-llama/Llama-3.3-70B-Instruct") == "llama3.1"
    assert infer_family("Llama-2-7b", "llama-30b") == "default"
    g = teacher_params(TeacherConfig(name="g", model="tiny:gemma3-270m"))
    assert (g.temperature, g.top_p, g.top_k) == (1.0, 0.95, 64)
    l3 = teacher_params(TeacherConfig(name="l", model="hf:meta-llama/Llama-3.1-8B-Instruct"))
    assert (l3.temperature, l3.top_p) == (0.6, 0.9)
    assert teacher_params(TeacherConfig(name="c", model="openai:command-a", family="command-a")).temperature == 0.3
    assert teacher_params(TeacherConfig(name="gr", model="hf:granite-3.1-2b")).temperature == 0.0
    d = teacher_params(TeacherConfig(name="s", model="tiny:smollm2-135m"), max_tokens=40)
    assert (d.temperature, d.top_p, d.top_k, d.max_tokens) == (0.8, 0.9, None, 40)
    explicit = TeacherConfig(name="g2", model="tiny:gemma3-270m", sampling={"temperature": 0.2, "max_tokens": 50})
    assert (teacher_params(explicit).temperature, teacher_params(explicit).top_k) == (0.2, None)
    assert set(FAMILY_SETTINGS) >= {"gemma3", "llama3.1", "command-a", "aya-expanse", "granite", "default"}


def test_synthesize_writes_schema_records_and_loads_each_teacher_once(tmp_path):
    seed, pool = _seed()
    cfg = SynthesisConfig(examples_per_cell=7, batch_size=4, seed=1)
    df = synthesize([T_CHAT, T_BASE], ["de"], seed, pool, cfg, tmp_path, load=_loader(), progress=False)
    assert list(df.columns) == SYNTHETIC_COLUMNS
    assert len(df) == 14 and df["id"].tolist() == plan_rows([T_CHAT, T_BASE], ["de"], seed, pool, cfg)["id"].tolist()
    loads = [e for e in FakeLM.log if e[0] in ("load", "close")]
    assert loads == [("load", "chat"), ("close", "chat"), ("load", "base"), ("close", "base")]
    calls = [e for e in FakeLM.log if e[0] in ("chat", "complete")]
    assert all(n <= 4 for _, _, n, _ in calls)
    # chunks of 4 + 3 rows; chat: one call per chunk; base: one per stop list in each chunk
    assert [n for _, m, n, _ in calls if m == "chat"] == [4, 3]
    assert [n for _, m, n, _ in calls if m == "base"] == [3, 1, 1, 2]  # (gen x3 | tr), (tr | resp x2)
    assert {e[0] for e in calls if e[1] == "chat"} == {"chat"} and {e[0] for e in calls if e[1] == "base"} == {"complete"}
    chat = df[df.teacher == "chatty"].set_index("method")
    assert (df.loc[df.teacher == "chatty", "status"] == "ok").all()
    assert chat.loc["generate", "prompt"].iloc[0].startswith("Neu ") and chat.loc["generate", "response"].iloc[0] == "Ja."
    r = chat.loc["respond"].iloc[0]
    assert r["prompt"] == seed.set_index("id").loc[r["source_id"], "prompt"]
    # paper preset: the seed prompt inside the Respond meta-instruction
    assert r["response"].startswith("Antwort auf: You are a data generator") and list(r["seed_ids"]) == []
    assert r["response"].endswith("The request:\n" + r["prompt"])
    assert chat.loc["generate", "task_type"].isna().all()  # the paper's Generate lets the teacher choose
    assert chat.loc["generate", "seed_ids"].map(len).eq(3).all()
    assert chat.loc["generate", "raw_output"].iloc[0].startswith("Sure:")
    assert chat.loc["generate", "prompt_tokens"].gt(0).all()
    params = json.loads(chat.loc["generate", "params"].iloc[0])
    assert params["temperature"] == 0.8 and isinstance(params["seed"], int)
    base = df[df.teacher == "basey"].set_index("method")
    assert (base.loc["generate", "prompt"] == "Eine neue Frage?").all()
    assert (base.loc["generate", "response"] == "Eine Antwort.").all()  # cut at the next "\nPrompt:"
    assert (base.loc["respond", "response"] == "Eine neue Frage?\nResponse: Eine Antwort.").all()
    tr = base.loc["translate"]
    assert (tr["prompt"] == "Eine neue Frage?").all() and (tr["response"] == "Eine Antwort.").all()
    assert (base["rendering"] == "completion").all() and (base["status"] == "ok").all()
    saved = pd.read_parquet(tmp_path / "synthetic.parquet")
    assert saved["id"].tolist() == df["id"].tolist() and list(saved.columns) == SYNTHETIC_COLUMNS


@pytest.mark.parametrize("preset", ["paper", "legacy"])
def test_failures_are_records_and_copies_rejected(tmp_path, preset):
    seed, pool = _seed()
    cfg = SynthesisConfig(examples_per_cell=6, batch_size=8, methods={"generate": 1, "translate": 4, "respond": 1},
                          templates=preset)

    class Copier(FakeLM):
        def chat(self, conversations, params):
            outs = []
            for conv in conversations:
                user = conv[-1]["content"]
                if "Example 1: " in user:  # legacy: echo the first in-context example
                    line = [x for x in user.splitlines() if x.startswith("Example 1: ")][0]
                    outs.append(Generation(text=line.removeprefix("Example 1: ")))
                elif "do not copy them):\n\nPrompt: " in user:  # paper: echo the first Prompt/Response block
                    block = user.split("do not copy them):\n\nPrompt: ")[1].split("\n\n")[0]
                    p, r = block.split("\nResponse: ")
                    outs.append(Generation(text=json.dumps({"prompt": p + " ", "response": r})))
                elif "English question 0?" in user or "English question 1?" in user:
                    outs.append(Generation(text='{"prompt": "Halb', finish_reason="length"))
                elif "English prompt" in user:  # echoes the English source instead of translating
                    src = user.split("English prompt:\n")[1].split("\n")[0]
                    outs.append(Generation(text=json.dumps({"prompt": src, "response": "Ja."})))
                else:
                    outs.append(Generation(text="   "))
            return outs

    df = synthesize([T_CHAT], ["de"], seed, pool, cfg, tmp_path, load=lambda s: Copier(ModelSpec.parse(s)),
                    progress=False)
    by = df.set_index("id")
    assert by.loc["chatty/de/t0/generate/0000", "error"] == "copied_example"
    assert by.loc["chatty/de/t0/respond/0000", "error"] == "empty_output"
    assert by.loc["chatty/de/t0/generate/0000", "task_type"] == (None if preset == "paper" else
                                                                  plan_rows([T_CHAT], ["de"], seed, pool, cfg)
                                                                  .set_index("id").loc["chatty/de/t0/generate/0000",
                                                                                       "task_type"])
    pool_text = pool.set_index("id")["prompt"]
    tr = df[df.method == "translate"]
    assert len(tr) == 4
    for row in tr.itertuples():
        expected = ("truncated_json: hit max_tokens" if pool_text[row.source_id] in
                    ("English question 0?", "English question 1?") else "untranslated")
        assert row.error == expected
    assert (tr["error"] == "untranslated").sum() >= 2  # at most 2 of the 4 sources are questions 0/1
    assert (df["status"] == "failed").all()
    assert df["raw_output"].notna().all()


def test_missing_seed_data_fails_rows_without_calling_the_model(tmp_path):
    seed, _ = _seed()
    empty_pool = pd.DataFrame(columns=["id", "language", "prompt", "source"])
    df = synthesize([T_CHAT], ["ja", "id"], seed, empty_pool, SynthesisConfig(examples_per_cell=3),
                    tmp_path, load=_loader(), progress=False)
    by = df.set_index("id")
    assert by.loc["chatty/id/t0/generate/0000", "error"].startswith("no_seed_pairs")
    assert by.loc["chatty/ja/t0/translate/0000", "error"] == "no_source: English prompt pool is empty"
    assert by.loc["chatty/id/t0/respond/0000", "error"].startswith("no_source")
    assert by.loc["chatty/ja/t0/generate/0000", "status"] == "ok"
    sent = sum(n for kind, _, n, _ in [e for e in FakeLM.log if e[0] == "chat"])
    assert sent == 2  # ja generate + ja respond only


def test_resume_skips_done_rows_and_retries_generation_errors(tmp_path):
    seed, pool = _seed()
    cfg = SynthesisConfig(examples_per_cell=6, batch_size=2)
    first = synthesize([T_CHAT], ["de"], seed, pool, cfg, tmp_path, load=_loader(fail="gen_error"), progress=False)
    assert (first["status"] == "failed").all() and first["error"].str.startswith("generation_error: timeout").all()
    n_parts = len(list((tmp_path / PARTS_DIR).glob("*.parquet")))
    assert n_parts == 3  # one append-only shard per batch
    second = synthesize([T_CHAT], ["de"], seed, pool, cfg, tmp_path, load=_loader(), progress=False)
    assert (second["status"] == "ok").all() and second["id"].tolist() == first["id"].tolist()
    FakeLM.log = []
    third = synthesize([T_CHAT], ["de"], seed, pool, cfg, tmp_path, load=_loader(fail="raise"), progress=False)
    assert FakeLM.log == []  # everything done: the model is not even loaded
    pd.testing.assert_frame_equal(third, second)


def test_interrupted_run_resumes_only_missing_rows(tmp_path):
    seed, pool = _seed()
    cfg = SynthesisConfig(examples_per_cell=6, batch_size=2)

    class Dies(FakeLM):
        def chat(self, conversations, params):
            if sum(1 for e in FakeLM.log if e[0] == "chat") >= 2:
                raise KeyboardInterrupt
            return super().chat(conversations, params)

    with pytest.raises(KeyboardInterrupt):
        synthesize([T_CHAT], ["de"], seed, pool, cfg, tmp_path, load=lambda s: Dies(ModelSpec.parse(s)),
                   progress=False)
    assert ("close", "chat") in FakeLM.log  # freed even on interruption
    FakeLM.log = []
    df = synthesize([T_CHAT], ["de"], seed, pool, cfg, tmp_path, load=_loader(), progress=False)
    sent = sum(e[2] for e in FakeLM.log if e[0] == "chat")
    assert sent == 2 and len(df) == 6 and (df["status"] == "ok").all()


def test_backend_exception_becomes_failure_records(tmp_path):
    seed, pool = _seed()
    df = synthesize([T_CHAT], ["de"], seed, pool, SynthesisConfig(examples_per_cell=3), tmp_path,
                    load=_loader(fail="raise"), progress=False)
    assert (df["error"] == "generation_error: RuntimeError: server exploded").all()


def test_structured_output_and_stop_passed_to_backend(tmp_path):
    seed, pool = _seed()
    cfg = SynthesisConfig(examples_per_cell=3, structured_output=True, max_tokens=33)
    synthesize([T_CHAT, T_BASE], ["de"], seed, pool, cfg, tmp_path, load=_loader(), progress=False)
    chats = [e[3] for e in FakeLM.log if e[0] == "chat"]
    assert any(p.json_schema and p.json_schema["required"] == ["prompt", "response"] for p in chats)
    assert all(p.max_tokens == 33 for p in chats)
    completes = [e[3] for e in FakeLM.log if e[0] == "complete"]
    assert {p.stop for p in completes} == {("\nPrompt:",), ("\nEnglish:",)}
    assert all(p.json_schema is None for p in completes)


class _NoClose:
    """Lends the session's tiny model to the stage without letting it close it."""

    def __init__(self, model):
        self._m = model

    def __getattr__(self, name):
        return getattr(self._m, name)

    def close(self):
        pass


@pytest.mark.slow
def test_real_tiny_model_generation_on_cpu(smollm_model, tmp_path):
    seed, pool = _seed()
    teacher = TeacherConfig(name="smollm2", model="tiny:smollm2-135m")
    cfg = SynthesisConfig(examples_per_cell=3, max_tokens=16, batch_size=3)
    df = synthesize([teacher], ["de"], seed, pool, cfg, tmp_path, load=lambda spec: _NoClose(smollm_model),
                    progress=False)
    assert df["method"].tolist() == ["generate", "translate", "respond"]
    assert df["raw_output"].map(lambda t: isinstance(t, str) and len(t) > 0).all()
    assert (df["completion_tokens"] > 0).all() and (df["completion_tokens"] <= 16).all()
    assert (df["rendering"] == "chat").all()
    assert df["status"].isin(["ok", "failed"]).all()
    assert (df.loc[df.status == "failed", "error"].str.len() > 0).all()
    respond = df.iloc[2]
    assert respond["status"] == "ok" and respond["response"].strip()


def test_cli_synthesize_with_registered_fake_backend(tmp_path, monkeypatch, capsys):
    import pgscore.models as models
    from pgscore.cli import main

    seed, pool = _seed()
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    seed.to_parquet(seed_dir / "seed.parquet")
    pool.to_parquet(seed_dir / "english_pool.parquet")
    monkeypatch.setitem(models._BACKENDS, "fake", lambda spec: FakeLM(spec))
    main(["synthesize", "-t", "fake:chat", "-t", "other=fake:chat2", "-l", "de", "--seed-dir", str(seed_dir),
          "--out", str(tmp_path / "out"), "--n", "4", "--methods", "generate=1,respond=1"])
    df = pd.read_parquet(tmp_path / "out" / "synthetic.parquet")
    assert sorted(df["teacher"].unique()) == ["chat", "other"]
    assert df.groupby("teacher")["method"].value_counts().unstack().to_dict("list") == {"generate": [2, 2],
                                                                                          "respond": [2, 2]}
    assert "wrote 8 rows (8 ok)" in capsys.readouterr().out


def test_cli_synthesize_templates_option(tmp_path, monkeypatch, capsys):
    import pgscore.models as models
    from pgscore.cli import main

    seed, pool = _seed()
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    seed.to_parquet(seed_dir / "seed.parquet")
    pool.to_parquet(seed_dir / "english_pool.parquet")
    monkeypatch.setitem(models._BACKENDS, "fake", lambda spec: FakeLM(spec))
    args = ["synthesize", "-t", "fake:chat", "-l", "de", "--seed-dir", str(seed_dir), "--n", "2",
            "--methods", "generate=1,respond=1"]
    with pytest.raises(SystemExit) as exit_:
        main(args + ["--out", str(tmp_path / "bad"), "--templates", str(tmp_path / "nowhere")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "template directory not found" in err and "Traceback" not in err
    assert not (tmp_path / "bad" / "synthetic.parquet").exists()
    main(args + ["--out", str(tmp_path / "legacy"), "--templates", "legacy"])
    df = pd.read_parquet(tmp_path / "legacy" / "synthetic.parquet")
    resp = df[df["method"] == "respond"].iloc[0]
    assert resp["response"] == "Antwort auf: " + resp["prompt"]  # legacy Respond: the bare seed prompt
    assert df.loc[df["method"] == "generate", "task_type"].notna().all()  # legacy dictates the task type


def test_broken_user_template_fails_before_any_model_loads(tmp_path):
    seed, pool = _seed()
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "respond_completion.j2").write_text("Prompt: {{ source_prompt }}\n{{ typo_variable }}\n")
    cfg = SynthesisConfig(examples_per_cell=3, templates=str(tdir))
    with pytest.raises(PgScoreError, match="respond_completion.j2.*typo_variable"):
        synthesize([T_CHAT], ["de"], seed, pool, cfg, tmp_path / "out", load=_loader(), progress=False)
    (tdir / "respond_completion.j2").write_text("{% if %}")
    with pytest.raises(PgScoreError, match="respond_completion.j2: TemplateSyntaxError"):
        synthesize([T_CHAT], ["de"], seed, pool, cfg, tmp_path / "out", load=_loader(), progress=False)
    assert FakeLM.log == []  # no model was loaded


def test_a_parser_crash_on_one_output_becomes_that_rows_failure(tmp_path, monkeypatch):
    import pgscore.synthesis.stage as stage

    real = stage.parse_json_pair

    def flaky(text):
        if "Neu 1" in text or "Neu 2" in text:  # some generate rows' outputs
            raise TypeError("unhashable type: 'set'")
        return real(text)

    monkeypatch.setattr(stage, "parse_json_pair", flaky)
    seed, pool = _seed()
    df = synthesize([T_CHAT], ["de"], seed, pool, SynthesisConfig(examples_per_cell=6), tmp_path, load=_loader(),
                    progress=False)
    crashed = df["error"] == "parse_error: TypeError"
    assert crashed.any() and len(df) == 6 and (df.loc[~crashed, "status"] == "ok").all()
    assert (df.loc[crashed, "status"] == "failed").all() and df.loc[crashed, "raw_output"].str.contains("Neu").all()
