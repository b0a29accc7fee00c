"""Continuation log-likelihoods from a server's prompt logprobs, and how its positions line up.

Servers score a prompt by echoing it (``/completions`` with ``echo=true, logprobs=1``: vLLM, llama.cpp)
or by vLLM's ``prompt_logprobs``; the continuation's score is the sum over the tokens that start at or
after the context. Some servers report token ``i``'s logprob at index ``i - 1``: ``alignment_shift``
finds the shift from one probe (a generated token's logprob, then the same text echoed). Pure functions.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from pgscore.models.base import ContinuationScore

PROBE_TEXT = "The quick brown fox jumps over the lazy dog. The capital of France is"


def text_offsets(tokens: Sequence[str]) -> Iterator[int]:
    """Character offset of each token when the server gives none (tokens concatenated)."""
    pos = 0
    for t in tokens:
        yield pos
        pos += len(t)


def continuation_from_echo(logprobs: dict[str, Any], context: str, full: str, n_prompt: int | None,
                           shift: int = 0) -> ContinuationScore:
    """Sum the echoed prompt logprobs of the tokens that start at or after ``len(context)``.

    ``shift`` corrects a server that reports token ``i``'s logprob at index ``i - shift``.
    """
    tokens = list(logprobs.get("tokens") or [])
    lps = list(logprobs.get("token_logprobs") or [])
    offsets = logprobs.get("text_offset")
    if not offsets or len(offsets) != len(tokens):
        offsets = list(text_offsets(tokens))
    if n_prompt is None or n_prompt > len(tokens):
        n_prompt = sum(1 for o in offsets if o < len(full))
    cut = len(context)
    idx = [i for i in range(n_prompt) if offsets[i] >= cut]
    if not idx:
        raise ValueError("no continuation tokens in the echoed prompt")
    vals = []
    for i in idx:
        j = i - shift
        v = lps[j] if 0 <= j < len(lps) else None
        if v is None:
            raise ValueError(f"no logprob for continuation token {i}")
        vals.append(float(v))
    return ContinuationScore(logprob=float(sum(vals)), n_tokens=len(vals), token_logprobs=vals,
                             truncated=False)


def continuation_from_prompt_logprobs(entries: list[Any], context: str, full: str) -> ContinuationScore:
    """vLLM ``prompt_logprobs`` (one dict per prompt token, the first None) -> continuation score.

    Token positions are counted back from the end of ``full`` (the first token's text is not given).
    """
    chosen = []
    for e in entries:
        if e is None:
            continue
        lp = next(iter(e.values())) if len(e) == 1 else min(e.values(), key=lambda d: d.get("rank", 1))
        chosen.append(lp)
    pos = len(full) - sum(len(lp.get("decoded_token") or "") for lp in chosen)
    vals = []
    for lp in chosen:
        if pos >= len(context):
            vals.append(float(lp["logprob"]))
        pos += len(lp.get("decoded_token") or "")
    if not vals:
        raise ValueError("no continuation tokens in prompt_logprobs")
    return ContinuationScore(logprob=float(sum(vals)), n_tokens=len(vals), token_logprobs=vals)


def last_token_index(echo_logprobs: dict[str, Any], text_len: int) -> int:
    """Index of the echoed token covering the last character of a ``text_len``-long prompt (-1: none)."""
    offs = echo_logprobs.get("text_offset") or list(text_offsets(echo_logprobs["tokens"]))
    return max(i for i, o in enumerate(offs) if o < text_len) if offs else -1


def alignment_shift(target: float, echoed: Sequence[float | None], j: int, tol: float = 0.05) -> int | None:
    """The shift (0, 1 or -1) at which ``echoed[j - shift]`` carries the generated token's logprob
    ``target`` (closest within ``tol``); None when no position matches."""
    best = None
    for shift in (0, 1, -1):
        k = j - shift
        if 0 <= k < len(echoed) and echoed[k] is not None:
            d = abs(float(echoed[k]) - target)
            if d < tol and (best is None or d < best[1]):
                best = (shift, d)
    return None if best is None else best[0]
