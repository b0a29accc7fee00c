"""The vLLM backend on vLLM's CPU build, checked against the transformers backend on both tiny models.

Runs in ``.venv-vllm`` (``bash scripts/install_vllm.sh``); elsewhere the module skips with the reason.
With ``PGSCORE_REQUIRE_VLLM=1`` (set by ``.ci/run``) a missing vLLM is a failure, not a skip.
The independent reference is the transformers backend (itself tested against a direct forward pass in
tests/test_models_local.py): log-likelihoods must agree to 1e-4 and greedy text must be identical.
One engine per model for the whole module (loading costs seconds to a minute on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest

if os.environ.get("PGSCORE_REQUIRE_VLLM") != "1" and importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not importable here: run in .venv-vllm (bash scripts/install_vllm.sh)",
                allow_module_level=True)

from pgscore.models import SamplingParams, load_model  # noqa: E402

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0.0, max_tokens=12)


@pytest.fixture(scope="module")
def v_smollm():
    lm = load_model("vllm:tiny:smollm2-135m")
    yield lm
    lm.close()


@pytest.fixture(scope="module")
def v_gemma():
    lm = load_model("vllm:tiny:gemma3-270m")
    yield lm
    lm.close()


LL_REQUESTS = {
    "smollm": [("The capital of France is", " Paris."), ("Hello", " world, how are you today?"),
               ("", "An empty context is conditioned on BOS."), ("2 + 2 =", " 4")],
    "gemma": [("Die Hauptstadt von Deutschland ist", " Berlin."), ("Hallo", " Welt, wie geht es dir heute?"),
              ("", "Selamat pagi, apa kabar?"), ("Question: 2 + 2 = ?\nAnswer:", " 4")],
}


def test_engine_uses_the_cpu_settings(v_smollm):
    from pgscore.models.vllm_backend import cpu_ranges

    assert v_smollm.on_cpu
    args = v_smollm.engine_args
    assert args["dtype"] == "float32" and args["enforce_eager"] is True and args["max_model_len"] == 2048
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == cpu_ranges(sorted(os.sched_getaffinity(0)))
    assert type(v_smollm).__name__ == "VLLMModel"


@pytest.mark.parametrize("which", ["smollm", "gemma"])
def test_converted_model_is_not_garbage_in_vllm(which, v_smollm, v_gemma):
    """The old converter's folders loaded with a zero embedding: every token had logprob -ln(vocab)."""
    lm = v_smollm if which == "smollm" else v_gemma
    vocab = len(lm.tokenizer)
    s = lm.loglikelihood([LL_REQUESTS[which][1]])[0]
    assert s.n_tokens >= 5
    uniform = -math.log(vocab)
    assert max(abs(x - uniform) for x in s.token_logprobs) > 1.0
    assert len({round(x, 3) for x in s.token_logprobs}) > 1
    g = lm.complete(["The capital of France is"], GREEDY)[0]
    assert g.text.strip() and g.completion_tokens > 0


@pytest.mark.parametrize("which", ["smollm", "gemma"])
def test_loglikelihood_equals_transformers(which, v_smollm, v_gemma, smollm_model, gemma_model):
    vlm, tlm = (v_smollm, smollm_model) if which == "smollm" else (v_gemma, gemma_model)
    reqs = LL_REQUESTS[which]
    got, ref = vlm.loglikelihood(reqs), tlm.loglikelihood(reqs)
    for g, r in zip(got, ref):
        assert g.n_tokens == r.n_tokens and g.truncated == r.truncated
        assert g.logprob == pytest.approx(r.logprob, abs=1e-4)
        assert g.token_logprobs == pytest.approx(r.token_logprobs, abs=1e-4)
        assert g.is_greedy == r.is_greedy


def test_chat_greedy_text_identical_to_transformers(v_smollm, smollm_model):
    convs = [[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
             [{"role": "system", "content": "You answer briefly."},
              {"role": "user", "content": "Name a colour of the sky."}]]
    got, ref = v_smollm.chat(convs, GREEDY), smollm_model.chat(convs, GREEDY)
    assert [g.text for g in got] == [r.text for r in ref]
    assert "Paris" in got[0].text
    assert [g.prompt_tokens for g in got] == [r.prompt_tokens for r in ref]
    assert v_smollm.render_chat(convs[0]) == smollm_model.render_chat(convs[0])


def test_completion_greedy_text_identical_and_stops(v_gemma, gemma_model):
    assert not v_gemma.has_chat_template  # the pretrained base model, like the transformers backend says
    prompts = ["Die Hauptstadt von Deutschland ist", "Once upon a time"]
    got, ref = v_gemma.complete(prompts, GREEDY), gemma_model.complete(prompts, GREEDY)
    assert [g.text for g in got] == [r.text for r in ref]
    stop = SamplingParams(temperature=0.0, max_tokens=24, stop=(",",))
    g = v_gemma.complete(["Once upon a time"], stop)[0]
    assert "," not in g.text and g.finish_reason == "stop"
    assert v_gemma.count_tokens(prompts) == gemma_model.count_tokens(prompts)


def test_per_prompt_params_in_one_call_equal_the_transformers_backend(v_gemma, gemma_model):
    """accepts_per_prompt_params: rows with their own stop strings in one vLLM generate call, greedy, write
    what the transformers backend writes for each (synthesis merges Gemma's Translate rows this way)."""
    assert v_gemma.accepts_per_prompt_params and gemma_model.accepts_per_prompt_params
    prompts = ["Once upon a time", "Die Hauptstadt von Deutschland ist", "1, 2, 3,"]
    plist = [SamplingParams(temperature=0.0, max_tokens=24, stop=s) for s in ((",",), (".",), ("\n",))]
    got, ref = v_gemma.complete(prompts, plist), gemma_model.complete(prompts, plist)
    assert [g.text for g in got] == [r.text for r in ref]
    assert "," not in got[0].text and "." not in got[1].text


def test_guided_json(v_smollm):
    schema = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5},
                                               "colour": {"type": "string", "enum": ["red", "blue"]}},
              "required": ["score", "colour"], "additionalProperties": False}
    params = SamplingParams(temperature=0.0, max_tokens=40, json_schema=schema)
    out = v_smollm.chat([[{"role": "user", "content": "Rate the sky from 1 to 5 and give its colour as JSON."}]],
                        params)[0]
    data = json.loads(out.text)
    assert set(data) == {"score", "colour"} and 1 <= data["score"] <= 5 and data["colour"] in ("red", "blue")


def test_sampling_with_a_request_seed_does_not_crash_and_engine_seed_repeats(v_smollm):
    """Per-request seeds crashed the CPU engine once a batch took several steps; they are not sent."""
    prompts = [f"Write a sentence about the number {i}." for i in range(12)]
    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=32, seed=3)
    convs = [[{"role": "user", "content": p}] for p in prompts]
    out = v_smollm.chat(convs, params)
    assert len(out) == 12 and all(g.completion_tokens > 0 for g in out)
    assert len({g.text for g in out}) > 6  # real sampling, not greedy copies


def test_perplexity_and_judge_stage_equal_transformers(tmp_path, v_smollm, v_gemma, smollm_model, gemma_model):
    """The measure stage (perplexity under Gemma, constrained judge with SmolLM2) on ``backend: vllm``
    gives the transformers backend's numbers: perplexity to 1e-4 (relative), the same feedback text and
    verdicts."""
    from pathlib import Path

    from pgscore.io import read_table
    from pgscore.metrics.config import MetricsConfig
    from pgscore.metrics.measure import run_measure

    fixture = Path(__file__).parent / "fixtures" / "metrics" / "synthetic.jsonl"
    df = read_table(fixture)
    df = df[(df["teacher"] == "alpha") & (df["language"] == "de")].reset_index(drop=True)
    cfg = MetricsConfig(judge_max_tokens=16, judge_mode="constrained", bootstrap=0, calibration_pairs=0)
    runs = {}
    for name, (ppl, judge) in {"vllm": (v_gemma, v_smollm), "hf": (gemma_model, smollm_model)}.items():
        ex, m, _ = run_measure(df, tmp_path / name, cfg, progress=False, embedder=None, perplexity_model=ppl,
                               judge=judge, detector=None, counter=None)
        runs[name] = ex.sort_values("id").reset_index(drop=True)
    v, h = runs["vllm"], runs["hf"]
    assert v["id"].tolist() == h["id"].tolist() and len(v) >= 4  # the rows the stage keeps (status ok)
    assert v["perplexity"].notna().all()
    for a, b in zip(v["perplexity"], h["perplexity"]):
        assert a == pytest.approx(b, rel=1e-4)
    assert v["judge_score"].tolist() == h["judge_score"].tolist()
    assert v["judge_feedback"].tolist() == h["judge_feedback"].tolist()
