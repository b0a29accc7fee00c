"""JSON-schema constrained decoding in the transformers backend (xgrammar; pgscore/models/constrained.py).

The slow tests run the real SmolLM2-135M-Instruct on Generate prompts: unconstrained it does not write the
JSON pair at all; with ``json_schema`` every generation that stops is a valid pair.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys

import pytest

from pgscore.models import constrained
from pgscore.models.base import SamplingParams
from pgscore.synthesis.prompts import PAIR_SCHEMA, Example, render

needs_xgrammar = pytest.mark.skipif(importlib.util.find_spec("xgrammar") is None, reason="xgrammar not installed")

EX = [
    Example("s:de:1", "Wie spät ist es?", "Es ist drei Uhr.", "What time is it?"),
    Example("s:de:2", "Was ist 2 + 3?", "2 + 3 = 5.", "What is 2 + 3?"),
    Example("s:de:3", "Nenne eine Farbe.", "Blau.", None),
]
PAIR_START = '{"prompt": "'


def generate_prompts():
    """Three Generate chat inputs (the default template set), as synthesis sends them."""
    return [render("generate", "chat", lang, examples=EX).messages for lang in ("de", "fr", "es")]


def _constraint(lm, schema=PAIR_SCHEMA):
    return constrained.json_constraint(lm.tokenizer, constrained.output_vocab_size(lm.model), lm.eos_ids, schema)


@pytest.mark.slow
@needs_xgrammar
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_pair_schema_batch_generations_are_valid_pairs(smollm_model, temperature):
    jsonschema = pytest.importorskip("jsonschema")
    params = SamplingParams(temperature=temperature, top_p=0.9, max_tokens=40, seed=3, json_schema=PAIR_SCHEMA)
    gens = smollm_model.chat(generate_prompts(), params)
    assert len(gens) == 3
    for g in gens:
        assert g.text.startswith(PAIR_START), g.text  # forced from the first token on, every row
        if g.finish_reason == "stop":  # EOS is allowed only once the object is complete
            jsonschema.validate(json.loads(g.text), PAIR_SCHEMA)
        else:
            assert g.finish_reason == "length" and g.completion_tokens == 40
    if temperature == 0:  # greedy: these prompts close their pair well within 40 tokens
        assert [g.finish_reason for g in gens] == ["stop"] * 3


@pytest.mark.slow
def test_without_schema_generation_is_unconstrained(smollm_model, monkeypatch):
    def no_grammar(*a, **k):
        raise AssertionError("a grammar was built for a call without json_schema")

    monkeypatch.setattr(constrained, "json_constraint", no_grammar)
    gens = smollm_model.chat(generate_prompts(), SamplingParams(temperature=0.0, max_tokens=16))
    assert len(gens) == 3
    assert not all(g.text.startswith(PAIR_START) for g in gens)  # SmolLM2 alone does not write the pair


@pytest.mark.slow
def test_missing_xgrammar_warns_once_and_generates_unconstrained(smollm_model, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "xgrammar", None)  # import xgrammar -> ImportError
    monkeypatch.setattr(constrained, "_warned", False)
    params = SamplingParams(temperature=0.0, max_tokens=4, json_schema=PAIR_SCHEMA)
    with caplog.at_level(logging.WARNING, logger="pgscore.models.constrained"):
        first = smollm_model.chat(generate_prompts()[:2], params)
        second = smollm_model.chat(generate_prompts()[:1], params)
    assert len(first) == 2 and len(second) == 1
    warned = [r for r in caplog.records if "xgrammar is not installed" in r.getMessage()]
    assert len(warned) == 1 and "\n" not in warned[0].getMessage()
    assert not first[0].text.startswith(PAIR_START)  # same as the unconstrained call


@pytest.mark.slow
@needs_xgrammar
def test_processor_masks_each_row_and_releases_finished_rows(smollm_model):
    """Direct processor steps on made-up logits: EOS refused mid-object, rows tracked separately, a row that
    transformers finished another way (padded with a refused token) is no longer masked."""
    import torch

    lm = smollm_model
    c = _constraint(lm)
    assert _constraint(lm).grammar is c.grammar  # compiled once per (schema, tokenizer)
    eos = lm.eos_ids[0]
    vocab = constrained.output_vocab_size(lm.model)
    proc = c.processors()[0]
    prompt = torch.zeros((2, 3), dtype=torch.long)
    scores = torch.zeros((2, vocab))
    scores[:, eos] = 100.0
    out = proc(prompt, scores.clone())
    assert torch.isinf(out[:, eos]).all()  # nothing generated yet: EOS is masked
    brace = lm.tokenizer.convert_tokens_to_ids("{")
    assert torch.isfinite(out[:, brace]).all()
    # row 0 writes a whole pair token by token, row 1 gets EOS (as a finished row's padding would)
    ids = lm.tokenizer(json.dumps({"prompt": "Hallo", "response": "Welt"}), add_special_tokens=False)["input_ids"]
    seq = prompt
    for k, t in enumerate(ids):
        seq = torch.cat([seq, torch.tensor([[t], [eos if k == 0 else 0]])], dim=1)
        out = proc(seq, scores.clone())
        assert torch.isfinite(out[1]).all()  # row 1 refused a token: released, never masked again
    assert torch.isfinite(out[0, eos]) and torch.isinf(out[0, brace])  # complete: EOS (and only stops) allowed


@pytest.mark.slow
@needs_xgrammar
def test_rows_with_their_own_schema_and_stops_share_one_batch(smollm_model):
    """Per-prompt parameters (accepts_per_prompt_params): a JSON row, a free row and a row with its own stop
    string in one call give what each gives in its own call; only the JSON row is constrained."""
    lm = smollm_model
    assert lm.accepts_per_prompt_params
    convs = generate_prompts()
    pair = SamplingParams(temperature=0.0, max_tokens=40, seed=3, json_schema=PAIR_SCHEMA)
    free = SamplingParams(temperature=0.0, max_tokens=40, seed=3)
    stop = SamplingParams(temperature=0.0, max_tokens=40, seed=3, stop=("\n",))
    mixed = lm.chat(convs, [pair, free, stop])
    alone = [lm.chat([c], p)[0] for c, p in zip(convs, (pair, free, stop))]
    assert [g.text for g in mixed] == [g.text for g in alone]
    assert mixed[0].text.startswith(PAIR_START) and not mixed[1].text.startswith(PAIR_START)
    assert "\n" not in mixed[2].text
