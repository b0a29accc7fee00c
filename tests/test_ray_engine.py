"""The experiment's `engine:` section, the loader stages use, and RayModel's retry logic (no cluster needed)."""

from __future__ import annotations

import time

import pytest
import yaml

pytest.importorskip("ray", reason="Ray Data not installed (pip install 'pgscore[dist]')")

from pgscore.config import load_experiment  # noqa: E402
from pgscore.dist import (  # noqa: E402
    RayLLMModel,
    RayModel,
    _free_port,
    llm_result,
    llm_rows,
    llm_sampling_params,
)
from pgscore.engine import EngineConfig, check_engine, load_engine_model, use_llm_processor  # noqa: E402
from pgscore.errors import PgScoreError  # noqa: E402
from pgscore.models import ModelSpec, SamplingParams, load_model  # noqa: E402

FAKE = {"backend": "openai", "model": "fake", "base_url": "http://127.0.0.1:9/v1"}


def _exp(tmp_path, engine):
    raw = {"name": "e", "languages": ["de"], "teachers": [{"name": "t", "model": FAKE}], "engine": engine}
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_engine_section_in_the_experiment(tmp_path):
    exp = load_experiment(_exp(tmp_path, {"ray": {"address": "auto", "replicas": 4, "num_gpus": 1,
                                                  "batch_size": 16}}))
    r = exp.engine.ray
    assert (r.address, r.replicas, r.num_gpus, r.num_cpus, r.batch_size, r.max_retries) == ("auto", 4, 1, 1, 16, 3)
    assert load_experiment(_exp(tmp_path, None)).engine is None
    with pytest.raises(PgScoreError, match=r"engine\.ray\.replicas: Input should be greater than or equal to 1"):
        load_experiment(_exp(tmp_path, {"ray": {"replicas": 0}}))
    with pytest.raises(PgScoreError, match=r"engine\.ray\.adress: Extra inputs are not permitted"):
        load_experiment(_exp(tmp_path, {"ray": {"adress": "auto"}}))
    with pytest.raises(PgScoreError, match=r"engine\.ray\.stages: unknown stage 'synthesis'; stages with model calls"):
        load_experiment(_exp(tmp_path, {"ray": {"stages": ["synthesis"]}}))


def test_loader_without_engine_is_load_model():
    a, b = load_engine_model(FAKE), load_model(FAKE)
    assert type(a) is type(b) and a.spec == b.spec
    assert type(load_engine_model(FAKE, EngineConfig())) is type(b)  # engine: {} (no ray) = this process


def test_loader_with_ray_places_models_on_replicas():
    eng = {"ray": {"address": "127.0.0.1:6379", "replicas": 3, "batch_size": 8, "num_cpus": 0.5,
                   "stages": ["synthesize"], "max_retries": 5}}
    m = load_engine_model(FAKE, eng, stage="synthesize")
    assert isinstance(m, RayModel) and not isinstance(m, RayLLMModel)
    assert (m.replicas, m.batch_size, m.num_cpus, m.num_gpus, m.address, m.max_retries) == (
        3, 8, 0.5, 0.0, "127.0.0.1:6379", 5)
    assert m.spec == ModelSpec.parse(FAKE)
    assert not isinstance(load_engine_model(FAKE, eng, stage="measure"), RayModel)  # not listed: local
    # vLLM on GPU workers goes through Ray Data's LLM processor; on CPU-only replicas it stays a replica
    vllm = {"backend": "vllm", "model": "google/gemma-3-1b-it"}
    assert isinstance(load_engine_model(vllm, {"ray": {"num_gpus": 1}}), RayLLMModel)
    assert type(load_engine_model(vllm, {"ray": {"num_gpus": 0}})) is RayModel
    assert not use_llm_processor(FAKE, EngineConfig.model_validate({"ray": {"num_gpus": 1}}).ray)
    with pytest.raises(PgScoreError, match="processor: vllm needs vllm model specs"):
        load_engine_model(FAKE, {"ray": {"processor": "vllm"}})


def test_check_engine_bad_address_is_one_line_and_fast():
    assert check_engine(None) is None and check_engine({}) is None
    port = _free_port()  # nobody listens there
    t0 = time.perf_counter()
    with pytest.raises(PgScoreError) as err:
        check_engine({"ray": {"address": f"127.0.0.1:{port}"}})
    assert time.perf_counter() - t0 < 15
    msg = str(err.value)
    assert msg.startswith(f"cannot connect to Ray at 127.0.0.1:{port}") and "\n" not in msg
    with pytest.raises(PgScoreError, match="is not 'auto', 'HOST:PORT' or 'ray://HOST:PORT'"):
        check_engine({"ray": {"address": "my-cluster"}})


# ---- RayModel's own retry layer, driven by a scripted _stream (what Ray Data would yield) ----------------

class Scripted(RayModel):
    """_stream yields results for the items it is given and raises a Ray error after ``fail_after``."""

    def __init__(self, fail_plan, **kw):
        super().__init__(FAKE, **kw)
        self.fail_plan = list(fail_plan)  # per try: yield this many results then raise (None = no failure)
        self.sent: list[list[int]] = []

    def _stream(self, kind, items, params, call=""):
        import json

        from ray.exceptions import ActorDiedError

        self.sent.append([it["i"] for it in items])
        fail_after = self.fail_plan.pop(0) if self.fail_plan else None
        for n, it in enumerate(items):
            if fail_after is not None and n == fail_after:
                raise ActorDiedError()
            conv = json.loads(it["request"])
            yield [(it["i"], json.dumps({"text": "echo " + conv[-1]["content"]}))]


@pytest.fixture
def no_connect(monkeypatch):
    monkeypatch.setattr("pgscore.dist.connect", lambda *a, **k: None)


def test_retry_resends_only_what_did_not_arrive(no_connect):
    m = Scripted([3, None], max_retries=2)
    got: list[int] = []
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
    out = m.chat(convs, SamplingParams(), on_result=lambda i, g: got.append(i))
    assert [g.text for g in out] == [f"echo q{i}" for i in range(6)]
    assert m.sent == [[0, 1, 2, 3, 4, 5], [3, 4, 5]]  # the second try carries only the 3 lost ones
    assert sorted(got) == list(range(6)) and len(got) == 6  # each result handed to the ledger once
    assert len(m.failed_tries) == 1 and m.failed_tries[0].startswith("ActorDiedError")


def test_gave_up_rows_come_back_failed_with_a_reason(no_connect):
    m = Scripted([1, 0, 0], max_retries=2)
    out = m.chat([[{"role": "user", "content": f"q{i}"}] for i in range(3)], SamplingParams())
    assert out[0].text == "echo q0" and out[0].error is None
    assert [g.error.split(":")[0] for g in out[1:]] == ["ray", "ray"]
    assert "gave up after 3 tries: ActorDiedError" in out[1].error
    assert m.sent == [[0, 1, 2], [1, 2], [1, 2]]


def test_failed_rows_are_recorded_not_stored(no_connect, tmp_path):
    from pgscore.ledger import CachedModel, Ledger

    ledger = Ledger(tmp_path)
    inner = Scripted([1, 0], max_retries=1)
    model = CachedModel(inner, ledger, stage="synthesis")
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    params = SamplingParams(temperature=0)
    model.chat(convs, params)
    assert len(ledger) == 1  # only the result that arrived is stored
    st = ledger.stats().set_index("stage").loc["synthesis"]
    assert st["failures"] == 2
    inner.fail_plan = [None]
    again = model.chat(convs, params)  # a re-run sends only the failed ones
    assert inner.sent[-1] == [0, 1] and [g.text for g in again] == ["echo q0", "echo q1", "echo q2"]


# ---- Ray Data LLM processor (vLLM on GPU workers): what can be checked without a GPU ----------------------

def test_llm_rows_and_results():
    p = SamplingParams(temperature=0.0, top_p=1.0, top_k=5, max_tokens=7, seed=3, stop=("\n",),
                       json_schema={"type": "object"})
    assert llm_sampling_params(p) == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 7, "top_k": 5, "seed": 3,
                                      "stop": ["\n"], "structured_outputs": {"json": {"type": "object"}}}
    rows = llm_rows("chat", [[{"role": "user", "content": "hi"}]], p)
    assert rows[0]["i"] == 0 and rows[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert llm_rows("complete", ["Once upon"], p)[0]["prompt"] == "Once upon"
    with pytest.raises(PgScoreError, match="not loglikelihood"):
        llm_rows("loglikelihood", [], p)
    ok = llm_result({"generated_text": "hello", "num_input_tokens": 4, "num_generated_tokens": 7,
                     "__inference_error__": ""}, max_tokens=7)
    assert (ok.text, ok.prompt_tokens, ok.completion_tokens, ok.finish_reason, ok.error) == ("hello", 4, 7, "length", None)
    bad = llm_result({"generated_text": "", "__inference_error__": "ValueError: prompt too long"})
    assert bad.error == "ray.data.llm: ValueError: prompt too long" and bad.text == ""


def test_llm_processor_config():
    pytest.importorskip("ray.data.llm", reason="ray.data.llm needs aiohttp (pip install 'ray[data,llm]')")
    from pgscore.dist import llm_processor_config

    spec = {"backend": "vllm", "model": "google/gemma-3-27b-it", "max_context": 8192,
            "options": {"engine_args": {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.9}}}
    cfg = llm_processor_config(spec, replicas=4, batch_size=32, num_gpus=2)
    assert cfg.model_source == "google/gemma-3-27b-it" and cfg.concurrency == 4 and cfg.batch_size == 32
    assert cfg.should_continue_on_error is True  # one bad row must not kill the job
    assert cfg.engine_kwargs["tensor_parallel_size"] == 2 and cfg.engine_kwargs["max_model_len"] == 8192
    assert cfg.engine_kwargs["gpu_memory_utilization"] == 0.9
    with pytest.raises(PgScoreError, match="parallel size 2 needs num_gpus >= 2"):
        llm_processor_config(spec, num_gpus=1)
