"""The sliced LM head (pgscore/models/head.py): bit-identical to ``F.linear``, used only where it was measured
to win, restored after decoding, and decoding with it gives the same tokens as without it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pgscore.models import head
from pgscore.models.head import MAX_ROWS, MIN_ROWS, MIN_VOCAB, head_linear, sliced, sliced_head


@pytest.mark.parametrize("bias", [False, True])
def test_head_linear_is_bit_identical_to_f_linear_at_every_row_count(bias):
    """Vocabularies in whole slices (both embedded models: 49,152 and 262,144 = 96 and 512 slices of 512)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(MIN_VOCAB + 4 * head.SLICE, 96, generator=g)
    b = torch.randn(w.shape[0], generator=g) if bias else None
    with torch.inference_mode():
        for rows in range(1, MAX_ROWS + 3):
            x = torch.randn(rows, 96, generator=g)
            assert torch.equal(head_linear(x, w, b), F.linear(x, w, b)), rows
        x3 = torch.randn(4, 1, 96, generator=g)  # (batch, position, hidden) as a decoding step has it
        out = head_linear(x3, w, b)
        assert out.shape == (4, 1, w.shape[0]) and torch.equal(out, F.linear(x3, w, b))


def test_head_linear_with_a_partial_last_slice_agrees_to_float32_rounding():
    """A last slice of another width may take another MKL kernel (seen: 188 columns at 4 rows): the same
    dot products summed in another order, so equal to float32 rounding, not bit for bit."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(MIN_VOCAB + 700, 96, generator=g)
    with torch.inference_mode():
        for rows in range(MIN_ROWS, MAX_ROWS + 1):
            x = torch.randn(rows, 96, generator=g)
            torch.testing.assert_close(head_linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_sliced_only_where_it_was_measured_to_win(monkeypatch):
    w = torch.zeros(MIN_VOCAB, 8)
    with torch.inference_mode():
        assert sliced(torch.zeros(MIN_ROWS, 8), w) and sliced(torch.zeros(MAX_ROWS, 1, 8), w)
        assert not sliced(torch.zeros(MIN_ROWS - 1, 8), w)  # one or two rows: F.linear is as fast
        assert not sliced(torch.zeros(MAX_ROWS + 1, 8), w)  # MKL's blocked path from 16 rows
        assert not sliced(torch.zeros(8, 8), torch.zeros(MIN_VOCAB - 1, 8))  # not an LM head
        assert not sliced(torch.zeros(8, 8, dtype=torch.bfloat16), w.bfloat16())  # measured in float32 only
        monkeypatch.setenv(head.ENV, "0")
        assert not sliced(torch.zeros(8, 8), w)
    assert not sliced(torch.zeros(8, 8), w.requires_grad_())  # training keeps autograd's F.linear


def test_sliced_head_switches_the_output_embedding_and_restores_it(smollm_model):
    model = smollm_model.model
    lm_head = model.get_output_embeddings()
    x = torch.randn(5, 1, lm_head.in_features)
    with torch.inference_mode():
        ref = lm_head(x)
        with sliced_head(model) as switched:
            assert switched and "forward" in vars(lm_head)
            assert torch.equal(lm_head(x), ref)
    assert "forward" not in vars(lm_head)
    with sliced_head(torch.nn.Linear(3, 3)) as switched:  # no output embedding: nothing to switch
        assert not switched


@pytest.mark.slow
def test_decoding_gives_the_same_tokens_with_and_without_slices(smollm_model, monkeypatch):
    """Six sampled rows (each row's own stream, 24 tokens): the sliced head changes no token."""
    from pgscore.models.base import SamplingParams

    lm = smollm_model
    convs = [[{"role": "user", "content": f"Write a short sentence about the number {i}."}] for i in range(6)]
    params = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=24, seed=3)
    calls = []
    real = head.head_linear

    def counting(x, w, b=None):
        calls.append(head.sliced(x, w))
        return real(x, w, b)

    monkeypatch.setattr(head, "head_linear", counting)
    with_slices = [g.text for g in lm.chat(convs, params)]
    assert any(calls)  # the sliced path ran
    monkeypatch.setenv(head.ENV, "0")
    without = [g.text for g in lm.chat(convs, params)]
    assert with_slices == without
