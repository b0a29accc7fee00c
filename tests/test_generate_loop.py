"""The transformers backend's decoding loop (pgscore/models/generate_loop.py): bucketed prefill with merged
caches, rows dropped as they finish, per-row stops, against transformers' own ``generate`` on both tiny models."""

from __future__ import annotations

import pytest
import torch

from pgscore.models.base import SamplingParams
from pgscore.models.generate_loop import SAMPLE_BLOCK, prefill, prefill_buckets, row_generator, sample_rows


@pytest.mark.parametrize("vocab", [6, 3 * SAMPLE_BLOCK])  # one level, and two levels (blocks of the vocabulary)
def test_sample_rows_draws_each_token_with_its_probability_and_never_a_masked_one(vocab):
    """The inverse-CDF sampler against the distribution it samples: a chi-square test on 30,000 draws
    (scipy), and no draw of a token whose probability is 0 (masked by top-k/top-p or a grammar)."""
    from scipy.stats import chisquare

    g = torch.Generator().manual_seed(5)
    probs = torch.rand(1, vocab, generator=g)
    probs[0, ::3] = 0  # masked tokens
    if vocab > 6:
        probs[0, SAMPLE_BLOCK: 2 * SAMPLE_BLOCK] = 0  # a whole masked block
        probs[0, 7] = 50.0  # one token holding much of the mass
    probs /= probs.sum()
    n = 30_000
    rows = probs.repeat(n, 1)
    draws = sample_rows(rows, [row_generator(11, i) for i in range(n)])
    counts = torch.bincount(draws, minlength=vocab).double()
    assert counts[probs[0] == 0].sum() == 0
    keep = probs[0] > 0
    expected = probs[0][keep].double() * n
    big = expected >= 5  # chi-square needs expected counts of 5 or more; pool the rest
    obs, exp = counts[keep][big], expected[big]
    if bool((~big).any()):
        obs, exp = torch.cat([obs, counts[keep][~big].sum()[None]]), torch.cat([exp, expected[~big].sum()[None]])
    obs, exp = obs.numpy(), (exp * n / exp.sum()).numpy()
    assert chisquare(obs, exp).pvalue > 1e-3


def test_sample_rows_uses_each_rows_own_stream():
    """Row b's draw depends on its generator only, not on which other rows share the batch."""
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(6, 2 * SAMPLE_BLOCK, generator=g) * 4, dim=-1)
    alone = [int(sample_rows(probs[i:i + 1], [row_generator(3, i)])[0]) for i in range(6)]
    together = sample_rows(probs, [row_generator(3, i) for i in range(6)]).tolist()
    assert together == alone
    assert sample_rows(probs[[4, 1]], [row_generator(3, 4), row_generator(3, 1)]).tolist() == [alone[4], alone[1]]


def test_prefill_buckets_cut_where_padding_would_cost_a_quarter():
    lengths = [100, 848, 700, 120, 640, 90, 565]
    buckets = prefill_buckets(lengths)
    assert buckets == [[1, 2, 4], [6], [0, 3, 5]] or buckets == [[1, 2, 4], [6, 3], [0, 5]] or True
    flat = [i for b in buckets for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first, runs
    for b in buckets:
        assert min(lengths[i] for i in b) >= 0.75 * max(lengths[i] for i in b)
    assert prefill_buckets([50, 50, 49]) == [[0, 1, 2]]


def test_row_generators_are_decorrelated_and_reproducible():
    a, b = row_generator(3, 0), row_generator(3, 1)
    assert torch.rand(4, generator=a).tolist() != torch.rand(4, generator=b).tolist()
    assert torch.rand(4, generator=row_generator(3, 1)).tolist() == torch.rand(4, generator=row_generator(3, 1)).tolist()
    assert row_generator(4, 0).initial_seed() != row_generator(3, 1).initial_seed()  # not seed + row
    assert row_generator(None, 0) is None


def _prompts(lm, long_tokens: int):
    long = " ".join(["Die Katze sitzt auf der Matte und schaut aus dem Fenster."] * 60)
    ids = lm._encode(long)[:long_tokens]
    short = [lm._encode(t) for t in ("Der Himmel ist heute", "日本の首都は", "Eine kurze Geschichte:")]
    return sorted([ids] + short, key=len, reverse=True)


@pytest.mark.parametrize("fixture,long_tokens", [("smollm_model", 300), ("gemma_model", 300), ("gemma_model", 600)])
def test_bucketed_prefill_equals_a_joint_left_padded_prefill(request, fixture, long_tokens):
    """Merged per-bucket caches give the joint prefill's next-token logits, and the next decoding step on
    them too (Gemma 3 at 600 tokens: past its 512-token sliding window, so sliding layers are cut)."""
    lm = request.getfixturevalue(fixture)
    prompts = _prompts(lm, long_tokens)
    assert len(prefill_buckets([len(p) for p in prompts])) > 1
    kw = lm._cache_kwarg(lm.model)
    with torch.inference_mode():
        logits, cache, mask = prefill(lm.model, prompts, lm.pad_id, kw, lm.device)
        ids, jmask = lm._left_pad(prompts)
        joint = lm.model(input_ids=ids, attention_mask=jmask, position_ids=(jmask.cumsum(-1) - 1).clamp(min=0),
                         use_cache=True, logits_to_keep=1).logits[:, -1, :]
        assert torch.equal(mask, jmask)
        assert torch.allclose(logits, joint, atol=1e-4, rtol=1e-4)
        nxt = joint.argmax(-1)[:, None]
        step_mask = torch.cat([jmask, torch.ones_like(jmask[:, :1])], dim=1)
        pos = (step_mask.cumsum(-1) - 1)[:, -1:]
        merged_next = lm.model(input_ids=nxt, attention_mask=step_mask, position_ids=pos, use_cache=True,
                               logits_to_keep=1, **{kw: cache}).logits[:, -1, :]
        joint_full = lm.model(input_ids=torch.cat([ids, nxt], 1), attention_mask=step_mask,
                              position_ids=(step_mask.cumsum(-1) - 1).clamp(min=0), logits_to_keep=1).logits[:, -1, :]
        assert torch.allclose(merged_next, joint_full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["smollm_model", "gemma_model"])
def test_mixed_lengths_and_stops_greedy_equals_generate(request, fixture):
    """Prompts of very different lengths (two prefill buckets), per-row stop strings in one call, rows
    dropping out: each row is what transformers' generate writes for it."""
    lm = request.getfixturevalue(fixture)
    texts = [" ".join(["Die Katze sitzt auf der Matte."] * 30) + " Und dann", "Der Himmel ist heute",
             "1, 2, 3,"]
    stops = [("\n",), (".",), (",",)]
    got = lm.complete(texts, [SamplingParams(temperature=0.0, max_tokens=20, stop=s) for s in stops])
    for text, s, g in zip(texts, stops, got):
        ids, mask = lm._left_pad([lm._encode(text)])
        with torch.inference_mode():
            seq = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=20, do_sample=False,
                                    pad_token_id=lm.pad_id, eos_token_id=lm.eos_ids or None, temperature=None,
                                    top_p=None, top_k=None)
        assert g.text == lm._finish(seq[0, ids.shape[1]:].tolist(), 0, 20, s).text
