"""The LM head for a few rows on a CPU: the vocabulary in slices, same numbers, less time.

Why: a decoding step (and the score-only judge) multiplies a few hidden states (the rows still in the batch)
by the whole output embedding. For 3 to 15 rows, MKL's float32 ``sgemm`` takes a path whose cost grows by
about a full read of the weight per row when the output dimension is large: on the project's 2-core Intel
Xeon (AVX-512, no bf16), Gemma 3's 262k x 640 head took 120 ms at 12 rows against 27 ms at 1 and 58 ms at
16. Multiplying the same rows by slices of 512 vocabulary rows (``torch.mm`` into slices of one output
tensor) took 61 ms at 12 rows (docs/performance.md, "LM head for a few rows"). Each logit is the same dot
product over the hidden size, only the order in which output columns are visited changes: with the
vocabulary in whole slices (both embedded models: 49,152 and 262,144 tokens) every logit was bit-identical
to ``F.linear``'s at every row count (tests/test_head.py), so sampled texts do not change; a last, narrower
slice may take another MKL kernel and agree to float32 rounding only. ``benchmarks/bench_head.py`` measures
it per row count and on the quickstart's real decoding.

Only float32 CPU inputs with ``MIN_ROWS``..``MAX_ROWS`` rows and an output of at least ``MIN_VOCAB``, in a
torch built with MKL, take the sliced path (where it was measured to win); everything else is ``F.linear``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Iterator

import torch

MIN_ROWS, MAX_ROWS = 3, 15  # below: F.linear is as fast; from 16 rows on MKL's blocked path is used anyway
MIN_VOCAB = 16384  # output dimensions at least this large (LM heads); smaller products gain nothing
SLICE = 512  # vocabulary rows per product (512-1024 measured best; 2048 already loses a third of the gain)
ENV = "PGSCORE_SLICED_HEAD"  # "0" turns the sliced path off (for comparisons)


@functools.lru_cache(maxsize=None)
def _mkl() -> bool:
    return torch.backends.mkl.is_available()  # measured with MKL's sgemm only (other BLAS: F.linear)


def sliced(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`head_linear` takes the sliced path for input ``x`` and ``weight`` (out x in)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 or not _mkl():
        return False
    if weight.shape[0] < MIN_VOCAB or torch.is_grad_enabled() or os.environ.get(ENV, "1") == "0":
        return False
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    return MIN_ROWS <= rows <= MAX_ROWS


def head_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, computed over slices of ``weight``'s rows when :func:`sliced` says so."""
    if not sliced(x, weight):
        return torch.nn.functional.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])
    out = torch.empty(flat.shape[0], weight.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, weight.shape[0], SLICE):
        if bias is None:
            torch.mm(flat, weight[s : s + SLICE].t(), out=out[:, s : s + SLICE])
        else:
            torch.addmm(bias[s : s + SLICE], flat, weight[s : s + SLICE].t(), out=out[:, s : s + SLICE])
    return out.reshape(*x.shape[:-1], weight.shape[0])


@contextlib.contextmanager
def sliced_head(model: Any) -> Iterator[bool]:
    """Inside the block, ``model``'s output embedding (a plain ``nn.Linear``) runs through :func:`head_linear`;
    yields whether it was switched (False: no such head, or it already has its own forward)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if type(head) is not torch.nn.Linear or "forward" in vars(head):
        yield False
        return
    head.forward = lambda x: head_linear(x, head.weight, head.bias)
    try:
        yield True
    finally:
        vars(head).pop("forward", None)
