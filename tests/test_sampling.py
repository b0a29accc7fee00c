"""The transformers backend's own top-p (pgscore/models/sampling.py) keeps exactly transformers' nucleus,
and sampled generation through it is token-for-token what transformers' stock warpers give."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from pgscore.models.base import SamplingParams
from pgscore.models.sequences import length_batches
from pgscore.models.sampling import NucleusWarper, full_sort_remove, neutral_sampling_kwargs, sampling_processors


def _stock(scores, temperature, top_k, top_p):
    procs = LogitsProcessorList()
    if temperature != 1.0:
        procs.append(TemperatureLogitsWarper(temperature))
    if top_k:
        procs.append(TopKLogitsWarper(top_k))
    procs.append(TopPLogitsWarper(top_p))
    return procs(None, scores.clone())


def _ours(scores, temperature, top_k, top_p, candidates=1024):
    out = scores.clone()
    for p in sampling_processors(temperature, top_k, None):
        out = p(None, out)
    return NucleusWarper(top_p, candidates=candidates)(None, out)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 0.5), (1.0, 0, 0.9), (0.8, 0, 0.95), (1.0, 64, 0.95),
                                                     (1.5, 0, 0.99)])
def test_same_kept_set_as_transformers_on_random_logits(top_p, temperature, top_k):
    g = torch.Generator().manual_seed(7)
    # logits over a Gemma-sized vocabulary, from flat rows (nucleus past the candidates) to peaked ones
    scores = torch.randn(8, 262_144, generator=g) * torch.tensor([0.5, 2.0, 6.0, 12.0]).repeat(2)[:, None]
    a, b = _stock(scores, temperature, top_k, top_p), _ours(scores, temperature, top_k, top_p)
    _same_nucleus(_pre_top_p(scores, temperature, top_k), a, b, top_p)


def _pre_top_p(scores, temperature, top_k):
    out = scores.clone()
    for p in sampling_processors(temperature, top_k, None):
        out = p(None, out)
    return out


def _same_nucleus(pre, a, b, top_p):
    """Equal kept sets, but for at most one token per row at the boundary, whose cumulative mass (float64,
    from the distribution top-p filters) is within transformers' float32 rounding (1e-4) of top_p; kept
    logits unchanged."""
    differ = torch.isinf(a) != torch.isinf(b)
    for row in differ.any(-1).nonzero(as_tuple=True)[0].tolist():
        assert differ[row].sum() == 1
        p = pre[row].double().softmax(-1)
        j = differ[row].nonzero(as_tuple=True)[0].item()
        assert abs(p[p > p[j]].sum().item() - top_p) < 1e-4
    both = ~torch.isinf(a) & ~torch.isinf(b)
    assert torch.equal(a[both], b[both])


def test_flat_rows_fall_back_to_the_full_sort():
    """A nearly uniform row needs more than the candidates: the fallback keeps transformers' set."""
    scores = torch.zeros(2, 5000)
    scores[0, :10] = 5.0
    scores[1] += torch.linspace(0, 1e-3, 5000)  # flat: the 0.9 nucleus holds ~4500 tokens
    a, b = _stock(scores, 1.0, 0, 0.9), _ours(scores, 1.0, 0, 0.9, candidates=64)
    assert torch.equal(torch.isinf(a), torch.isinf(b))
    assert (~torch.isinf(b[1])).sum() > 64
    ref = full_sort_remove(scores, 0.9)
    assert torch.equal(ref, torch.isinf(a))


def test_min_tokens_to_keep_and_edges():
    scores = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert (~torch.isinf(NucleusWarper(0.5)(None, scores))).sum() == 1
    assert (~torch.isinf(NucleusWarper(0.5, min_tokens_to_keep=3)(None, scores))).sum() == 3
    assert torch.equal(NucleusWarper(1.0)(None, scores), scores)
    with pytest.raises(ValueError):
        NucleusWarper(1.5)


def _real_logits(lm, texts):
    ids, mask = lm._left_pad([lm._encode(t) for t in texts])
    with torch.inference_mode():
        return lm.model(input_ids=ids, attention_mask=mask).logits[:, -1, :].float()


@pytest.mark.parametrize("fixture,temperature,top_k,top_p", [("gemma_model", 1.0, 64, 0.95),
                                                            ("smollm_model", 0.8, 0, 0.9)])
def test_same_kept_set_on_the_tiny_models_logits(request, fixture, temperature, top_k, top_p):
    lm = request.getfixturevalue(fixture)
    texts = ["Die Hauptstadt von Deutschland ist", "日本の首都は", "Write a short poem about the sea:", "1, 2, 3,"]
    scores = _real_logits(lm, texts)
    a, b = _stock(scores, temperature, top_k, top_p), _ours(scores, temperature, top_k, top_p)
    _same_nucleus(_pre_top_p(scores, temperature, top_k), a, b, top_p)


@pytest.mark.parametrize("fixture", ["gemma_model", "smollm_model"])
def test_greedy_generation_equals_stock_transformers_while_rows_drop_out(request, fixture):
    """Greedy: the backend's loop (models/generate_loop.py), which drops rows as they stop, writes transformers'
    ``generate`` tokens; a stop string ends some rows early, so the batch shrinks mid-generation."""
    lm = request.getfixturevalue(fixture)
    prompts = ["Der Himmel ist heute", "Eine kurze Geschichte über einen Hund:", "今日はとても", "1, 2, 3,"]
    got = lm.complete(prompts, SamplingParams(temperature=0.0, max_tokens=24, stop=("\n", ".")))
    enc = [lm._encode(p) for p in prompts]
    ids, mask = lm._left_pad(enc)
    with torch.inference_mode():
        seqs = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=24, pad_token_id=lm.pad_id,
                                 eos_token_id=lm.eos_ids or None, do_sample=False, temperature=None, top_p=None,
                                 top_k=None)
    want = [lm._finish(row, 0, 24, ("\n", ".")).text for row in seqs[:, ids.shape[1]:].tolist()]
    assert [g.text for g in got] == want
    lengths = [g.completion_tokens for g in got]
    assert min(lengths) < 24 and len(set(lengths)) > 1  # rows did stop at different steps


@pytest.mark.parametrize("fixture,params", [
    ("gemma_model", dict(temperature=1.0, top_p=0.95, top_k=64)),
    ("smollm_model", dict(temperature=0.8, top_p=0.9)),
])
def test_sampled_rows_do_not_depend_on_their_batch(request, fixture, params):
    """One random stream per row (seed, row index): a row's sample is the same in a batch of 3, alone, and
    with rows dropping out around it; and the same seed gives the same text again."""
    lm = request.getfixturevalue(fixture)
    prompts = ["Der Himmel ist heute", "Eine kurze Geschichte über einen Hund:", "今日はとても"]
    sp = SamplingParams(max_tokens=24, seed=11, stop=(".",), **params)
    batch = lm.complete(prompts, sp)
    old = lm.batch_size
    try:
        lm.batch_size = 1
        alone = lm.complete(prompts, sp)
    finally:
        lm.batch_size = old
    assert [g.text for g in batch] == [g.text for g in alone]
    assert [g.text for g in lm.complete(prompts, sp)] == [g.text for g in batch]
    assert len({g.text for g in batch}) == 3
    other = lm.complete(prompts, SamplingParams(max_tokens=24, seed=12, stop=(".",), **params))
    assert [g.text for g in other] != [g.text for g in batch]


def test_neutral_kwargs_switch_transformers_warpers_off():
    kw = neutral_sampling_kwargs()
    assert kw["do_sample"] and kw["temperature"] == 1.0 and kw["top_k"] == 0 and kw["top_p"] == 1.0
