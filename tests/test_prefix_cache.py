"""Shared-prefix KV caching in the transformers backend's ``loglikelihood``.

Every cached score is compared with the same model's uncached path (``prefix_cache=False``: left-padded
whole sequences, itself tested against direct forward passes in test_models_local.py), on both real tiny
models: real MGSM de 5-shot prompts and synthetic prompts longer than Gemma 3's 512-token sliding window,
with left truncation, the one-token shared-context groups and batches of mixed suffix lengths.
"""

from __future__ import annotations

import pytest

from pgscore.errors import PgScoreError
from pgscore.models.base import ModelSpec
from pgscore.models.sequences import common_prefix_length, shared_prefix_groups

TOL = 1e-4  # float32 on CPU; observed differences are ~1e-5


# ------------------------------------------------------------------------------------------ pure helpers


def test_common_prefix_length():
    assert common_prefix_length([]) == 0
    assert common_prefix_length([[1, 2, 3]]) == 3
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3], [1, 2, 5]]) == 2
    assert common_prefix_length([[1, 2], [3, 2]]) == 0


def test_shared_prefix_groups_threshold_start_cap_and_outliers():
    base = list(range(100, 200))  # 100 shared tokens
    seqs = [base + [1, 2, 3], base + [4, 5], base[:80] + [9] * 30, base + [7], list(range(500, 600)), base[:70]]
    starts = [101, 100, 95, 100, 90, 60]
    groups = shared_prefix_groups(seqs, starts, min_len=64)
    # seqs 0-3 share their first 64 tokens; seq 2 departs at 80, so the group's prefix is 80 tokens;
    # seq 4 has a different head and no partner; seq 5 starts scoring before token 64
    assert groups == [(80, [0, 1, 2, 3])]
    # the prefix ends before every member's first scored position (start - 1 predicts token start)
    assert shared_prefix_groups([base + [1], base + [2]], [90, 101], min_len=64) == [(89, [0, 1])]
    assert shared_prefix_groups([base + [1], base + [2]], [60, 101], min_len=64) == []  # 60 - 1 < 64
    assert shared_prefix_groups([base + [1], base + [2]], [100, 100], min_len=100) == []  # 99 < 100
    assert shared_prefix_groups([base + [1]], [100], min_len=64) == []
    assert shared_prefix_groups([base + [1]], [100], min_len=64, min_members=1) == [(99, [0])]
    with pytest.raises(ValueError):
        shared_prefix_groups([base], [50], min_len=0)


# ----------------------------------------------------------------------------------------- real models


def _variant(lm, spec_kw=None, prefix_cache=None):
    """The same weights and tokenizer behind another TransformersLM (spec options, window, switch)."""
    from pgscore.models.local import TransformersLM

    spec = lm.spec.model_copy(update=spec_kw or {})
    return TransformersLM.from_objects(lm.model, lm.tokenizer, spec, is_base=not lm.has_chat_template,
                                       prefix_cache=prefix_cache)


def _count_prefix_encodes(lm, monkeypatch) -> list[int]:
    calls: list[int] = []
    orig = lm._prefix_cache

    def spy(ids):
        calls.append(len(ids))
        return orig(ids)

    monkeypatch.setattr(lm, "_prefix_cache", spy)
    return calls


def _assert_same(cached, plain):
    assert len(cached) == len(plain)
    for c, p in zip(cached, plain):
        assert c.n_tokens == p.n_tokens and c.truncated == p.truncated
        assert max(abs(a - b) for a, b in zip(c.token_logprobs, p.token_logprobs)) <= TOL
        assert abs(c.logprob - p.logprob) <= TOL
        assert c.is_greedy == p.is_greedy


def _mgsm_requests(n: int):
    from pgscore.evaluation.mgsm import MGSM

    task = MGSM()
    data = task.load("de", hub=False)
    data.examples = data.examples[:n]
    prompts, _, phrase = task.prompts(data)
    # exactly the graded signal's requests (mgsm.score): the gold number after the answer phrase
    return [(p + " " + phrase, str(e["answer"])) for p, e in zip(prompts, data.examples)]


def _long_text(n_sentences: int) -> str:
    return " ".join(f"Satz {i}: Anna kauft {i % 7 + 2} Äpfel und {i * 3 % 11} Birnen für {i + 5} Euro." for i in
                    range(n_sentences))


def _synthetic_requests():
    long_a, long_b = _long_text(24), "Question. " + _long_text(22)
    judge = long_a + "\nRate the answer from 1 to 5. Score:"
    return [
        (long_a + "\nFrage: Wie viele Äpfel?", " 4"),  # one token after a group's prefix
        (long_a + "\nFrage: Wie viele Birnen kauft Anna insgesamt?", " Anna kauft insgesamt 213 Birnen."),
        (long_a, "\nEnde."),
        *[(judge, f" {k}") for k in range(1, 6)],  # one-token shared-context group (one forward pass)
        (long_b + "\nAntwort:", " 17"),  # a second group with its own prefix
        (long_b + "\nAntwort:", " siebzehn Äpfel und drei Birnen"),
        ("Die Hauptstadt von Deutschland ist", " Berlin."),  # short: no shared prefix, uncached path
        ("", long_a[:200]),  # scores from the first token: never grouped
    ]


@pytest.fixture(params=["gemma", "smollm"])
def real_lm(request):
    return request.getfixturevalue("gemma_model" if request.param == "gemma" else "smollm_model")


@pytest.mark.slow
def test_mgsm_de_graded_requests_cached_equals_uncached(real_lm, monkeypatch):
    reqs = _mgsm_requests(6)
    lm = _variant(real_lm, {"batch_size": 4})  # 6 requests: batches of 4 and 2 with mixed suffix lengths
    assert lm.prefix_cache  # on by default
    calls = _count_prefix_encodes(lm, monkeypatch)
    cached = lm.loglikelihood(reqs)
    assert len(calls) == 1 and calls[0] > 512  # the 5-shot exemplars, encoded once for both batches
    plain = _variant(real_lm, {"batch_size": 4}, prefix_cache=False).loglikelihood(reqs)
    _assert_same(cached, plain)


@pytest.mark.slow
def test_synthetic_long_prompts_groups_one_token_trick_and_fallbacks(real_lm, monkeypatch):
    reqs = _synthetic_requests()
    lm = _variant(real_lm, {"batch_size": 3})
    prepared = lm.prepare_loglikelihood(reqs)
    assert min(len(prepared[i][0]) for i in range(10)) > 520  # past Gemma 3's 512-token sliding window
    calls = _count_prefix_encodes(lm, monkeypatch)
    cached = lm.loglikelihood(reqs)
    assert len(calls) == 2 and min(calls) > 512  # one prefix per group (long_a..., long_b...)
    plain = _variant(real_lm, {"batch_size": 3}, prefix_cache=False).loglikelihood(reqs)
    _assert_same(cached, plain)


@pytest.mark.slow
def test_left_truncated_requests_share_the_kept_tail(real_lm, monkeypatch):
    ctx = _long_text(24) + "\nFrage: Wer kauft Äpfel?"
    names = ["Anna", "Berta", "Carla", "Dora", "Emil", "Fritz"]
    full = real_lm.prepare_loglikelihood([(ctx, f" {n} kauft sie.") for n in names] + [(ctx, " Anna")])
    # truncation keeps the last tokens, so requests share the kept context tail when their continuations
    # have the same token count: take the most common count (and one one-token continuation)
    n_cont = [len(f) - st for f, st, _ in full[:-1]]
    common = max(set(n_cont), key=n_cont.count)
    conts = [f" {n} kauft sie." for n, k in zip(names, n_cont) if k == common]
    assert len(conts) >= 2
    window = len(full[0][0]) - 40
    lm = _variant(real_lm, {"max_context": window, "batch_size": 2})
    reqs = [(ctx, c) for c in conts] + [(ctx, " Anna"), (ctx, " Berta")]
    prepared = lm.prepare_loglikelihood(reqs)
    assert all(t for _, _, t in prepared)
    calls = _count_prefix_encodes(lm, monkeypatch)
    cached = lm.loglikelihood(reqs)
    assert calls and calls[0] > 512  # BOS (if any) + the same kept tail of the context
    plain = _variant(real_lm, {"max_context": window, "batch_size": 2}, prefix_cache=False).loglikelihood(reqs)
    _assert_same(cached, plain)


@pytest.mark.slow
def test_early_continuation_caps_the_prefix(gemma_model, monkeypatch):
    text = _long_text(12)
    reqs = [(text[:400], text[400:]), (text, " Ende."), (text, " Schluss jetzt.")]
    lm = _variant(gemma_model, {"batch_size": 8})
    prepared = lm.prepare_loglikelihood(reqs)
    calls = _count_prefix_encodes(lm, monkeypatch)
    cached = lm.loglikelihood(reqs)
    assert calls == [prepared[0][1] - 1]  # the prefix stops before the first request's first scored token
    _assert_same(cached, _variant(gemma_model, prefix_cache=False).loglikelihood(reqs))


def test_switch_and_bad_options(gemma_model, monkeypatch):
    off = _variant(gemma_model, {"options": {"prefix_cache": False}})
    assert not off.prefix_cache
    assert _variant(gemma_model, {"options": {"prefix_cache": False}}, prefix_cache=True).prefix_cache
    calls = _count_prefix_encodes(off, monkeypatch)
    long_a = _long_text(12)
    off.loglikelihood([(long_a, " 1 2"), (long_a, " 3")])
    assert calls == []
    small = _variant(gemma_model, {"options": {"prefix_cache_min_tokens": 8}})
    assert small.prefix_cache_min_tokens == 8
    for opts in ({"prefix_cache": "no"}, {"prefix_cache_min_tokens": 0}, {"prefix_cache_min_tokens": "64"}):
        with pytest.raises(PgScoreError) as err:
            _variant(gemma_model, {"options": opts})
        assert "\n" not in str(err.value) and "prefix_cache" in str(err.value)
    assert ModelSpec.parse({"backend": "tiny", "model": "gemma3-270m", "options": {"prefix_cache": False}})
