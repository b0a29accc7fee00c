"""pgscore's OpenAI backend against a real OpenAI-compatible server: vLLM's, started here on 127.0.0.1.

Runs in ``.venv-vllm`` (skips with the reason elsewhere; ``PGSCORE_REQUIRE_VLLM=1`` makes that a failure).
One server for the session (SmolLM2-135M-Instruct, the converted tiny model), stopped at the end. The
reference for every number is the local transformers backend on the same weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

if os.environ.get("PGSCORE_REQUIRE_VLLM") != "1" and importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not importable here: run in .venv-vllm (bash scripts/install_vllm.sh)",
                allow_module_level=True)

from pgscore.models import ModelSpec, SamplingParams, load_model  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.server]

SERVED = "smollm2"
API_KEY = "sk-vllm-test-key-5523"  # the server requires it; it must never reach an artifact or the log
READY_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    """``python -m vllm.entrypoints.openai.api_server`` on loopback; yields its /v1 URL."""
    import httpx

    from pgscore.models import tiny
    from pgscore.models.vllm_backend import cpu_environment, server_command

    tm = tiny.tiny_model("smollm2-135m")
    folder = tiny.convert_gguf(tm.locate(), tm.sha256)
    port = _free_port()
    env = {**os.environ, **cpu_environment()}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the server's engine runs in its own process
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    log = open(log_path, "w")
    cmd = server_command(str(folder), port, SERVED, python=sys.executable)
    env["VLLM_API_KEY"] = API_KEY  # the server requires it (read from the environment: not in argv)
    proc = subprocess.Popen(cmd, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}:\n{Path(log_path).read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - start > READY_TIMEOUT_S:
                pytest.fail(f"vLLM server not ready in {READY_TIMEOUT_S} s:\n{Path(log_path).read_text()[-3000:]}")
            time.sleep(1)
        print(f"vLLM server ready in {time.monotonic() - start:.0f} s", file=sys.stderr)
        yield f"{base}/v1", log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture()
def url(vllm_server, monkeypatch):
    monkeypatch.setenv("VLLM_TEST_KEY", API_KEY)
    return vllm_server[0]


def _client(url: str, key_env: str = "VLLM_TEST_KEY", **options) -> object:
    return load_model(ModelSpec(backend="openai", model=SERVED, base_url=url, concurrency=32, api_key_env=key_env,
                                options={"max_retries": 1, "timeout": 300, **options}))


CONVS = [[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
         [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Name a colour of the sky."}]]
GREEDY = SamplingParams(temperature=0.0, max_tokens=12)
LL = [("The capital of France is", " Paris."), ("Hello", " world, how are you today?"),
      ("Question: 2 + 2 = ?\nAnswer:", " 4")]


def test_chat_greedy_equals_local(url, smollm_model):
    m = _client(url)
    got = m.chat(CONVS, GREEDY)
    assert all(g.error is None for g in got), [g.error for g in got]
    assert [g.text for g in got] == [g.text for g in smollm_model.chat(CONVS, GREEDY)]
    assert "Paris" in got[0].text and got[0].prompt_tokens > 5 and got[0].completion_tokens > 0


def test_completion_greedy_equals_local(url, smollm_model):
    m = _client(url)
    prompts = ["The capital of France is", "Once upon a time"]
    got = m.complete(prompts, GREEDY)
    assert all(g.error is None for g in got), [g.error for g in got]
    assert [g.text for g in got] == [g.text for g in smollm_model.complete(prompts, GREEDY)]


def test_structured_output(url):
    m = _client(url, structured_output="true")
    schema = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
              "required": ["score"], "additionalProperties": False}
    g = m.chat([[{"role": "user", "content": "Rate the sky from 1 to 5 as JSON."}]],
               SamplingParams(temperature=0.0, max_tokens=20, json_schema=schema))[0]
    assert g.error is None, g.error
    data = json.loads(g.text)
    assert set(data) == {"score"} and 1 <= data["score"] <= 5


@pytest.mark.parametrize("mode", ["prompt_logprobs", "echo"])
def test_loglikelihood_equals_local(url, smollm_model, mode):
    m = _client(url, logprobs=mode)
    got, ref = m.loglikelihood(LL), smollm_model.loglikelihood(LL)
    for g, r in zip(got, ref):
        assert g.n_tokens == r.n_tokens
        assert g.logprob == pytest.approx(r.logprob, abs=1e-4)
    if mode == "echo":
        assert m.verify_alignment() == 0  # vLLM aligns echoed logprobs correctly


def test_perplexity_through_the_server_equals_local(url, smollm_model):
    from pgscore.metrics.perplexity import response_perplexity

    prompts = ["Wie kann ich beim Kochen Energie sparen?", "Name three fruits."]
    responses = ["Benutze einen Deckel auf dem Topf.", "Apples, pears and plums."]
    # "{prompt}\n": the context's tokens are a prefix of the full text's. (With the default "{prompt}\n\n",
    # SmolLM2 tokenises "\n\n" as one token alone but as "\n", "\n" before text: the local backend then
    # scores both newlines as continuation, the server's text offsets only the response: 2 tokens apart.)
    template = "{prompt}\n"
    got = response_perplexity(_client(url, logprobs="prompt_logprobs"), prompts, responses, template=template)
    ref = response_perplexity(smollm_model, prompts, responses, template=template)
    for g, r in zip(got, ref):
        assert g.n_tokens == r.n_tokens
        assert g.perplexity == pytest.approx(r.perplexity, rel=1e-4)


def test_32_concurrent_seeded_requests(url):
    """32 sampled requests at once, each carrying the OpenAI backend's seed: all answer, server stays up."""
    import httpx

    m = _client(url)
    convs = [[{"role": "user", "content": f"Write one sentence about the number {i}."}] for i in range(32)]
    t = time.monotonic()
    out = m.chat(convs, SamplingParams(temperature=0.8, top_p=0.95, max_tokens=24, seed=1))
    wall = time.monotonic() - t
    assert all(g.error is None for g in out), [g.error for g in out if g.error][:3]
    assert all(g.completion_tokens > 0 for g in out) and len({g.text for g in out}) > 16
    assert m.usage.requests == 32 and m.usage.failures == 0
    assert httpx.get(url.removesuffix("/v1") + "/health", timeout=5).status_code == 200
    print(f"32 concurrent chats: {wall:.1f} s, {sum(g.completion_tokens for g in out) / wall:.0f} tok/s",
          file=sys.stderr)


def test_count_tokens_uses_the_server_tokenizer(url, smollm_model):
    m = _client(url)
    texts = ["Hello world", "Die Hauptstadt von Deutschland ist Berlin."]
    assert m.count_tokens(texts) == smollm_model.count_tokens(texts)


def test_key_is_required_and_never_written(url, vllm_server, tmp_path, monkeypatch):
    from pgscore.ledger import CachedModel, Ledger

    led = Ledger(tmp_path)
    m = CachedModel(_client(url), led, stage="synthesis")
    first = m.chat(CONVS[:1], GREEDY)[0]
    assert first.error is None and "Paris" in first.text
    assert m.chat(CONVS[:1], GREEDY)[0] == first  # the second answer comes from the ledger
    for p in list(tmp_path.rglob("*")) + [vllm_server[1]]:
        if p.is_file():
            assert API_KEY.encode() not in p.read_bytes()
    monkeypatch.setenv("WRONG_KEY", "wrong")
    g = _client(url, key_env="WRONG_KEY").chat(CONVS[:1], GREEDY)[0]
    assert g.text == "" and g.error.startswith("HTTP 401")
