"""Sampling warpers of the transformers backend: temperature, then top-k, then top-p, in the order and with
the arithmetic of transformers' own ``TemperatureLogitsWarper`` / ``TopKLogitsWarper`` /
``TopPLogitsWarper``, except that the nucleus is found among a top-k candidate set instead of by sorting
the whole vocabulary.

Why our own top-p: transformers' ``TopPLogitsWarper`` sorts the full vocabulary at every decoding step.
For Gemma 3's 262,144-token vocabulary that sort costs about as much as the 270M model's own forward pass
on 2 CPU cores (``benchmarks/bench_sampling.py`` measures both, same run). The nucleus (the smallest set
of most likely tokens whose probability reaches ``top_p``) only needs the most likely tokens: ``topk``
over ``candidates`` tokens finds them, and a row whose candidates hold less than ``top_p`` of the mass
falls back to the full sort. The kept set is transformers' set: a token is kept when the probability
mass strictly above it is below ``top_p`` (transformers: when the mass at or below it exceeds
``1 - top_p``; the same condition). The two can differ only at the nucleus boundary, where a token's
cumulative mass is within transformers' rounding of ``top_p``: it sums the whole vocabulary in float32,
smallest first (an error of ~1e-5 over 262k terms), we sum the candidates in float64, largest first.
Tests compare the two on random and real logits of both tiny models, and sampled generations token for
token.

:func:`sampling_processors` builds the list that ``generate`` gets as ``logits_processor``, with its own
temperature/top-k/top-p switched off (:func:`neutral_sampling_kwargs`), so constraint processors (JSON
grammars) still act before the warpers, as in transformers' own ordering.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers import LogitsProcessor

#: candidates for the nucleus; the nucleus of a sampled LM is rarely wider (rows that need more fall back).
NUCLEUS_CANDIDATES = 1024


class NucleusWarper(LogitsProcessor):
    """Top-p filtering, same kept set as transformers' ``TopPLogitsWarper`` (``min_tokens_to_keep`` too)."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1, candidates: int = NUCLEUS_CANDIDATES,
                 filter_value: float = -float("inf")):
        top_p = float(top_p)
        if not 0.0 <= top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1], got {top_p}")
        self.top_p = top_p
        self.min_tokens_to_keep = max(1, int(min_tokens_to_keep))
        self.candidates = max(int(candidates), self.min_tokens_to_keep)
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.top_p >= 1.0:
            return scores
        vocab = scores.shape[-1]
        k = min(self.candidates, vocab)
        probs = scores.softmax(dim=-1)
        top, idx = probs.topk(k, dim=-1)  # descending
        top64 = top.double()  # float64 sums of <= 1024 terms: exact to ~1e-16 (transformers': float32 over the vocabulary)
        above = top64.cumsum(dim=-1) - top64  # mass strictly above each candidate
        keep = above < self.top_p
        keep[..., : self.min_tokens_to_keep] = True
        remove = torch.ones_like(scores, dtype=torch.bool).scatter_(-1, idx, ~keep)
        short = top64.sum(dim=-1) < self.top_p  # the nucleus reaches past the candidates: sort those rows
        if k < vocab and bool(short.any()):
            rows = short.nonzero(as_tuple=True)[0]
            remove[rows] = full_sort_remove(scores[rows], self.top_p, self.min_tokens_to_keep)
        return scores.masked_fill(remove, self.filter_value)


def full_sort_remove(scores: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """transformers' ``TopPLogitsWarper`` mask (ascending sort of the whole vocabulary)."""
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_remove = cumulative <= (1 - top_p)
    sorted_remove[..., -min_tokens_to_keep:] = False
    return sorted_remove.scatter(1, sorted_indices, sorted_remove)


def sampling_processors(temperature: float, top_k: int | None, top_p: float | None,
                        before: Sequence[Any] = ()) -> list[Any]:
    """``before`` (e.g. a JSON grammar's processor), then temperature, top-k and top-p, as transformers
    orders its own. For ``generate(..., logits_processor=LogitsProcessorList(this), **neutral_sampling_kwargs())``."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper

    procs = list(before)
    if temperature is not None and temperature != 1.0:
        procs.append(TemperatureLogitsWarper(float(temperature)))
    if top_k:
        procs.append(TopKLogitsWarper(top_k=int(top_k), min_tokens_to_keep=1))
    if top_p is not None and top_p < 1.0:
        procs.append(NucleusWarper(top_p))
    return procs


def neutral_sampling_kwargs() -> dict[str, Any]:
    """``generate`` sampling with its own warpers off (the model's generation_config defaults included)."""
    return {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
