"""OpenAI-compatible backend against the fault-injecting fake server (tests/fake_openai_server.py)."""

from __future__ import annotations

import asyncio
import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAIServer, reply_text, word_logprob  # noqa: E402

from pgscore.errors import PgScoreError  # noqa: E402
from pgscore.models import ModelSpec, SamplingParams, load_model  # noqa: E402
from pgscore.models.openai_compat import (  # noqa: E402
    OpenAICompatModel,
    backoff_delay,
    chat_body,
    continuation_from_echo,
    continuation_from_prompt_logprobs,
    cost_of,
    parse_price,
    retry_after_seconds,
)

GREEDY = SamplingParams(temperature=0.0, max_tokens=64)


@pytest.fixture()
def server():
    with FakeOpenAIServer(max_seconds=120) as srv:
        yield srv


def model_for(srv: FakeOpenAIServer, **options) -> OpenAICompatModel:
    opts = {"backoff_base": 0.01, "backoff_max": 0.05, **options}
    return load_model(ModelSpec(backend="openai", model="fake", base_url=srv.url, concurrency=8, options=opts))


def user(text: str):
    return [{"role": "user", "content": text}]


def test_survives_every_fault_and_counts_retries(server):
    m = model_for(server, max_retries=4, price={"input": 1.0, "output": 2.0})
    prompts = ["a [[429x2]]", "b [[500x1]]", "c [[dropx1]]", "d [[badjsonx1]]", "e [[slow:150]]", "plain"]
    out = m.chat([user(p) for p in prompts], GREEDY)
    assert [g.error for g in out] == [None] * 6
    assert [g.text for g in out] == [reply_text(p) for p in prompts]
    # 2 (429) + 1 (500) + 1 (drop) + 1 (bad json) retries
    assert m.usage.retries == 5
    assert m.usage.failures == 0 and m.usage.requests == 6
    # fake usage: prompt tokens = words of the prompt (2 or 1), completion = words of the reply (4 or 3)
    assert m.usage.prompt_tokens == 2 * 5 + 1
    assert m.usage.completion_tokens == 4 * 5 + 3
    assert out[0].cost_usd == pytest.approx((2 * 1.0 + 4 * 2.0) / 1e6)
    assert m.usage.cost_usd == pytest.approx((11 * 1.0 + 23 * 2.0) / 1e6)


def test_unrecoverable_failures_are_recorded_with_reasons(server):
    m = model_for(server, max_retries=2)
    out = m.chat([user("x [[400]]"), user("y [[500x9]]"), user("z [[429x9]]"), user("ok")], GREEDY)
    assert out[0].error == "HTTP 400: bad request: permanent"
    assert out[1].error == "HTTP 500: internal error (gave up after 3 attempts)"
    assert out[2].error == "HTTP 429: rate limited (gave up after 3 attempts)"
    assert out[3].error is None and out[3].text == reply_text("ok")
    assert m.usage.failures == 3 and m.usage.retries == 4
    assert len(m.failure_reasons) == 3


def test_connection_refused_is_an_error_not_an_exception():
    m = load_model(ModelSpec(backend="openai", model="x", base_url="http://127.0.0.1:9/v1",
                             options={"max_retries": 1, "backoff_base": 0.01}))
    out = m.chat([user("hi")], GREEDY)
    assert out[0].text == "" and out[0].error.startswith("connection error (ConnectError)")


def test_timeout_is_retried_then_recorded(server):
    m = model_for(server, timeout=0.1, max_retries=1)
    out = m.chat([user("s [[slow:400]]")], GREEDY)
    assert out[0].error == "timeout after 0.1s (gave up after 2 attempts)"


def test_retry_after_is_honoured(server):
    # Retry-After: 0.05 on each of 3 429s: at least 0.15 s even though the jittered backoff would be ~0
    import time

    m = model_for(server, backoff_base=0.0001, backoff_max=0.0001)
    t0 = time.perf_counter()
    out = m.chat([user("q [[429x3]]")], GREEDY)
    assert out[0].error is None
    assert time.perf_counter() - t0 >= 0.15


def test_order_concurrency_and_seed(server):
    m = model_for(server)
    prompts = [f"prompt {i}" for i in range(50)]
    out = m.chat([user(p) for p in prompts], SamplingParams(seed=7, max_tokens=64))
    assert [g.text for g in out] == [reply_text(p) + " (seed 7)" for p in prompts]


def test_max_tokens_reaches_server(server):
    m = model_for(server)
    out = m.chat([user("hello world")], SamplingParams(max_tokens=2))
    assert out[0].finish_reason == "length" and out[0].completion_tokens == 2
    assert out[0].text == " ".join(reply_text("hello world").split()[:2])


def test_json_schema_structured_output_and_fallback():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    p = SamplingParams(temperature=0.0, json_schema=schema)
    with FakeOpenAIServer() as srv:
        out = model_for(srv).chat([user("q")], p)
        assert out[0].text == '{"answer": "%s"}' % reply_text("q")
    with FakeOpenAIServer(supports_json_schema=False) as srv:
        m = model_for(srv)
        out = m.chat([user("q"), user("r")], p)
        assert [g.text for g in out] == [reply_text("q"), reply_text("r")]
        assert m._schema_modes == []
        strict = model_for(srv, structured_output="true").chat([user("q")], p)[0]
        assert strict.error == "HTTP 400: response_format is not supported"


def test_loglikelihood_echo_hand_computed(server):
    m = model_for(server)
    [s] = m.loglikelihood([("Hello there", " general kenobi")])
    # "general": 103+101+110+101+114+97+108 = 734, 734 % 97 = 55 -> -0.56
    # "kenobi": 107+101+110+111+98+105 = 632, 632 % 97 = 50 -> -0.51
    assert word_logprob(" general") == pytest.approx(-0.56)
    assert word_logprob(" kenobi") == pytest.approx(-0.51)
    assert s.n_tokens == 2 and s.logprob == pytest.approx(-1.07)
    assert m._shift == 0


def test_shifted_echo_logprobs_are_detected_and_corrected():
    with FakeOpenAIServer(shift=1) as srv:
        m = load_model(ModelSpec(backend="llamacpp", model="fake", base_url=srv.url))
        [s] = m.loglikelihood([("Hello there", " general kenobi")])
        assert m.verify_alignment() == 1
        assert s.logprob == pytest.approx(-1.07)
        # trusting the buggy server would give the wrong number
        t = load_model(ModelSpec(backend="llamacpp", model="fake", base_url=srv.url,
                                 options={"logprobs_alignment": "trust"}))
        assert t.loglikelihood([("Hello there", " general kenobi")])[0].logprob != pytest.approx(-1.07)


def test_sync_api_inside_running_event_loop(server):
    m = model_for(server)

    async def inside():
        return m.chat([user("inside")], GREEDY)

    assert asyncio.run(inside())[0].text == reply_text("inside")


def test_api_key_from_env_and_file_never_in_repr(server, tmp_path, monkeypatch):
    secret = "sk-test-SECRET-123"
    with FakeOpenAIServer(api_key=secret) as srv:
        monkeypatch.setenv("MY_KEY", secret)
        m = load_model(ModelSpec(backend="openai", model="fake", base_url=srv.url, api_key_env="MY_KEY"))
        assert m.chat([user("a")], GREEDY)[0].error is None
        assert secret not in repr(m) and secret not in str(m.__getstate__())
        kf = tmp_path / "key.txt"
        kf.write_text(secret + "\n")
        m2 = load_model(ModelSpec(backend="openai", model="fake", base_url=srv.url, api_key_file=str(kf)))
        assert m2.chat([user("a")], GREEDY)[0].error is None
        monkeypatch.delenv("MY_KEY")
        m3 = load_model(ModelSpec(backend="openai", model="fake", base_url=srv.url, api_key_env="MY_KEY"))
        bad = m3.chat([user("a")], GREEDY)[0]
        assert bad.error == "HTTP 401: invalid api key" and secret not in bad.error
        assert srv.auth_failures == 1
    with pytest.raises(PgScoreError, match="api_key_file not found"):
        load_model(ModelSpec(backend="openai", model="x", api_key_file=str(tmp_path / "nope")))


def test_count_tokens_falls_back_to_approximation(server):
    assert model_for(server).count_tokens(["abcdefgh", "abcdefghijkl"]) == [2, 3]


# ---- pure helpers ---------------------------------------------------------------------------------
def test_retry_after_parsing():
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


def test_backoff_is_jittered_exponential_and_capped():
    rng = random.Random(0)
    d = [backoff_delay(a, 0.5, 4.0, rng) for a in range(1, 8) for _ in range(50)]
    assert all(0 <= x <= 4.0 for x in d)
    assert max(backoff_delay(1, 0.5, 4.0, rng) for _ in range(200)) <= 0.5
    assert max(backoff_delay(6, 0.5, 4.0, rng) for _ in range(200)) > 2.0


def test_price_and_cost():
    assert parse_price({"input": 0.15, "output": 0.6}) == (0.15, 0.6)
    assert cost_of(1000, 500, (0.15, 0.6)) == pytest.approx(0.00045)
    with pytest.raises(PgScoreError):
        parse_price({"prompt": 1})


def test_chat_body_translation():
    p = SamplingParams(temperature=0.3, top_p=0.5, top_k=20, max_tokens=9, seed=3, stop=("\n",),
                       json_schema={"type": "object"})
    b = chat_body("m", user("x"), p, send_top_k=False)
    assert b == {"model": "m", "messages": user("x"), "temperature": 0.3, "top_p": 0.5, "max_tokens": 9,
                 "seed": 3, "stop": ["\n"], "response_format": {"type": "json_schema", "json_schema": {
                     "name": "output", "schema": {"type": "object"}, "strict": False}}}
    assert chat_body("m", user("x"), p)["top_k"] == 20


def test_continuation_from_echo_and_prompt_logprobs():
    lp = {"tokens": ["A", " b", " c", " d"], "token_logprobs": [None, -1.0, -2.0, -0.5], "text_offset": [0, 1, 3, 5]}
    s = continuation_from_echo(lp, "A b", "A b c", n_prompt=3)  # " d" is the generated token
    assert s.logprob == -2.0 and s.n_tokens == 1
    shifted = {**lp, "token_logprobs": [-1.0, -2.0, -0.5, -9.0]}
    assert continuation_from_echo(shifted, "A b", "A b c", 3, shift=1).logprob == -2.0
    entries = [None, {"5": {"logprob": -1.0, "decoded_token": " b"}}, {"7": {"logprob": -0.25, "decoded_token": " c"}}]
    assert continuation_from_prompt_logprobs(entries, "A b", "A b c").logprob == -0.25
    assert math.isclose(continuation_from_prompt_logprobs(entries, "A", "A b c").logprob, -1.25)


# ---- vLLM offline backend: its pure helpers are tested in tests/test_vllm_units.py ------------------


# ---- OpenAI Batch API -----------------------------------------------------------------------------
def test_batch_api_submit_poll_collect_and_resume(server, tmp_path):
    from pgscore.ledger import CachedModel, Ledger

    spec = ModelSpec(backend="openai-batch", model="fake", base_url=server.url,
                     options={"poll_interval": 0.01, "state_dir": str(tmp_path / "state"), "max_batch_requests": 2,
                              "price": {"input": 0.5, "output": 1.0}})
    m = load_model(spec)
    prompts = ["one", "two", "three [[400]]"]
    led = Ledger(tmp_path)
    out = CachedModel(m, led, stage="judge").chat([user(p) for p in prompts], GREEDY)
    assert [g.text for g in out[:2]] == [reply_text("one"), reply_text("two")]
    assert out[2].error == "HTTP 400: bad request: permanent"
    assert out[0].cost_usd == pytest.approx((1 * 0.5 + 3 * 1.0) / 1e6)
    assert len(server.batches) == 2 and len(led) == 2  # two chunks of <= 2 requests
    # a new process with the same requests finds the state file and does not submit again
    m2 = load_model(spec)
    again = m2.chat([user(p) for p in prompts], GREEDY)
    assert [g.text for g in again] == [g.text for g in out] and len(server.batches) == 2
    with pytest.raises(PgScoreError, match="chat only"):
        m2.complete(["x"], GREEDY)


def test_example_vllm_experiment_builds_clients():
    from pgscore.config import load_experiment

    exp = load_experiment(Path(__file__).parents[1] / "examples" / "experiment_vllm.yaml")
    models = [load_model(t.model) for t in exp.teachers]
    assert [type(m).__name__ for m in models] == ["OpenAICompatModel"] * 4
    assert models[0].base_url == "http://127.0.0.1:8001/v1" and models[0].concurrency == 128
    assert models[3].base_url == "https://api.openai.com/v1" and models[3].send_top_k is False
    assert models[3].price == (0.15, 0.60)
