"""Token-sequence arithmetic for local backends (transformers, vLLM): where a continuation starts, left
truncation to the model window, length-sorted batches. Pure Python, no torch."""

from __future__ import annotations

from typing import Sequence


def continuation_start(ctx_ids: Sequence[int], full_ids: Sequence[int]) -> int:
    """Index in ``full_ids`` (tokens of context+continuation) where the continuation starts.

    Normally the context's own token count; when the tokenizer merged the last context characters with the
    first continuation characters, the merged token (it holds continuation text) counts as continuation.
    """
    n = 0
    for a, b in zip(ctx_ids, full_ids):
        if a != b:
            break
        n += 1
    return min(n, len(ctx_ids))


def left_truncate(ids: list[int], start: int, max_len: int, keep_first: bool) -> tuple[list[int], int, bool]:
    """Cut ``ids`` on the left to ``max_len`` tokens (keeping a leading BOS if ``keep_first``).

    Returns (ids, new continuation start, truncated). At least one context token is kept so the first
    scored token has something to condition on; continuation tokens past the window are cut from its start.
    """
    if len(ids) <= max_len:
        return ids, start, False
    head = ids[:1] if keep_first else []
    tail = ids[len(ids) - (max_len - len(head)) :]
    new_start = max(start - (len(ids) - len(tail) - len(head)), len(head))
    new_ids = head + tail
    if new_start < 1:
        new_start = 1
    return new_ids, new_start, True


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of pad positions in the padded batches."""
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return 1.0 - sum(lengths) / total if total else 0.0


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all ``seqs`` (0 for none)."""
    if not seqs:
        return 0
    lo, hi = min(seqs), max(seqs)  # lexicographic extremes: their common prefix is everyone's
    n = 0
    for a, b in zip(lo, hi):
        if a != b:
            break
        n += 1
    return n


def shared_prefix_groups(
    seqs: Sequence[Sequence[int]], starts: Sequence[int], min_len: int, min_members: int = 2
) -> list[tuple[int, list[int]]]:
    """Groups of sequence indices that share a leading run of at least ``min_len`` tokens.

    Returns ``(prefix length, indices)`` per group, where the prefix is the group's longest common prefix cut
    so that it ends before every member's first scored position (``start - 1``: the logits there predict the
    first continuation token, so that position must be re-run with the suffix). Sequences whose first scored
    position is before ``min_len`` and groups smaller than ``min_members`` are left out (scored without a
    prefix cache). Grouping is by the first ``min_len`` tokens, so one outlier in a group only shortens that
    group's prefix.
    """
    if min_len < 1:
        raise ValueError("min_len must be >= 1")
    by_head: dict[tuple[int, ...], list[int]] = {}
    for i, (s, st) in enumerate(zip(seqs, starts)):
        if st - 1 >= min_len:
            by_head.setdefault(tuple(s[:min_len]), []).append(i)
    groups = []
    for idx in by_head.values():
        if len(idx) < min_members:
            continue
        n = min(common_prefix_length([seqs[i] for i in idx]), min(starts[i] - 1 for i in idx))
        if n >= min_len:
            groups.append((n, idx))
    return groups
