"""The transformers backend's decoding loop: a batch that drops its finished rows, with per-row stop strings,
per-row JSON grammars and per-row random streams.

Why our own loop instead of ``model.generate``: ``generate`` keeps every row of a batch in every forward pass
until the *last* row finishes, padding the finished ones. Sampled synthesis rows end at very different lengths
(on the quickstart Gemma 3 270M's 24 rows used 1,028 of 1,920 token slots, SmolLM2's 2,376 of 3,840), so on a
CPU, where a forward pass costs a fixed weight read plus an amount per row, most of that per-row work was
spent on padding. Here a row leaves the batch (and its KV cache rows are dropped, ``Cache.batch_select_indices``)
as soon as it ends. ``benchmarks/bench_decoding.py`` measures both paths on the same prompts.

What stays transformers': the model's forward pass and KV cache, its logits processors (temperature, top-k,
our nucleus, the xgrammar mask), in transformers' order. What is ours:

- **stops per row**: a row ends at EOS, at ``max_new_tokens``, or once its generated text contains one of
  *its* stop strings (checked on the decoded tail of the row, as ``cut_at_stop`` later cuts the text); so
  rows with different stop strings share one batch. transformers' ``StopStringCriteria`` takes one list per
  call and pre-processes the whole vocabulary for it.
- **one random stream per row** (``torch.Generator`` seeded from the call's seed and the row's index): a
  row's sample does not depend on which other rows share its batch or when they finish. Greedy decoding
  (``temperature 0``) takes the arg-max, as ``generate`` does; a test checks both paths give the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch

from pgscore.models.head import sliced_head


SAMPLE_BLOCK = 1024  # tokens per block of the two-level sampler (a vocabulary not a multiple: one level)


@dataclass
class RowSpec:
    """One row of a batch: its prompt ids, its stop strings, and its random stream: the call's ``seed`` (None:
    torch's global generator) and the row's index in the call."""

    prompt: list[int]
    stops: tuple[str, ...] = ()
    seed: int | None = None
    index: int = 0


def row_generator(seed: int | None, row: int) -> torch.Generator | None:
    """A CPU generator for row ``row`` of a call seeded ``seed`` (decorrelated streams, not ``seed + row``)."""
    if seed is None:
        return None
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(row)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFFFFFFFFFFFFFF)


def sample_rows(probs: torch.Tensor, gens: Sequence[torch.Generator | None]) -> torch.Tensor:
    """One token per row of ``probs`` (B, V), row ``b`` drawn with ``gens[b]`` (None: torch's global
    generator): inverse-CDF sampling, one uniform per row, in two levels (which block of ``SAMPLE_BLOCK``
    tokens, then which token in it), sums in float64.

    Why not ``torch.multinomial`` row by row: on Gemma 3's 262k-token vocabulary each call costs ~6 ms, 140 ms
    a step at batch 24 (as much as the model's body); here one pass over the batch's probabilities (block
    sums) and one over B blocks (``benchmarks/bench_decoding.py`` times the loop with it). The draw is exact:
    with ``v = u * total``, the block b with ``cum[b-1] <= v < cum[b]`` and then the token i in it with
    ``c[i-1] <= v' < c[i]`` are chosen, so a token of probability 0 (cut by top-k/top-p or a grammar) is
    never drawn (a float64 rounding at a block's very top falls back to the row's arg-max)."""
    b, vocab = probs.shape
    block = SAMPLE_BLOCK if vocab % SAMPLE_BLOCK == 0 else 1
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in gens]).to(probs.device)
    blocks = probs.view(b, vocab // block, block)
    cum = blocks.sum(dim=-1, dtype=torch.float64).cumsum(dim=-1)  # (B, V / block)
    v = u * cum[:, -1]
    k = torch.searchsorted(cum, v[:, None], right=True)[:, 0].clamp_(max=cum.shape[1] - 1)
    rows = torch.arange(b, device=probs.device)
    below = torch.where(k > 0, cum[rows, (k - 1).clamp(min=0)], torch.zeros_like(v))
    inner = blocks[rows, k].double().cumsum(dim=-1)  # (B, block)
    j = torch.searchsorted(inner, (v - below)[:, None], right=True)[:, 0].clamp_(max=block - 1)
    idx = k * block + j
    zero = probs[rows, idx] <= 0
    if bool(zero.any()):
        idx[zero] = probs[zero].argmax(dim=-1)
    return idx


class _StopTail:
    """Does a row's generated text contain one of its stop strings? Checked on the decoded last tokens: a stop
    of L characters spans at most 4L tokens (byte-fallback tokens carry a single byte)."""

    def __init__(self, tokenizer: Any, stops: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = tuple(s for s in stops if s)
        self.window = 4 * max((len(s) for s in self.stops), default=0) + 1

    def hit(self, generated: list[int]) -> bool:
        if not self.stops:
            return False
        tail = self.tokenizer.decode(generated[-self.window:], skip_special_tokens=True)
        return any(s in tail for s in self.stops)


#: a prompt joins the current prefill bucket while padding it to the bucket's longest prompt costs < 25%
BUCKET_MIN_FILL = 0.75


def prefill_buckets(lengths: Sequence[int]) -> list[list[int]]:
    """Row indices, longest first, cut into runs whose prompts need little padding (``BUCKET_MIN_FILL``)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets and lengths[i] >= BUCKET_MIN_FILL * lengths[buckets[-1][0]]:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


def left_pad(prompts: Sequence[Sequence[int]], width: int, pad_id: int, device: Any):
    """(ids, attention mask) of ``prompts`` left padded to ``width`` with ``pad_id``, on ``device``."""
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def _mergeable(cache: Any) -> bool:
    """A cache whose layers are plain dynamic (full or sliding-window) key/value layers."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers)


def _merge_caches(caches: Sequence[Any], width: int) -> Any:
    """One batch cache from per-bucket prefill caches, laid out as a joint left-padded prefill of ``width``
    tokens would leave it: each bucket's keys/values left-padded with zeros (masked, as pad positions are),
    a sliding-window layer holding its last ``window - 1`` positions, its position count set to ``width``."""
    from transformers.cache_utils import DynamicSlidingWindowLayer

    merged = caches[0]
    for li, layer in enumerate(merged.layers):
        sliding = isinstance(layer, DynamicSlidingWindowLayer)
        target = min(width, layer.sliding_window - 1) if sliding else width
        keys, values = [], []
        for c in caches:
            k, v = c.layers[li].keys, c.layers[li].values
            if k.shape[-2] < target:
                pad = (0, 0, target - k.shape[-2], 0)  # left of the sequence dimension
                k, v = torch.nn.functional.pad(k, pad), torch.nn.functional.pad(v, pad)
            keys.append(k[:, :, -target:, :])
            values.append(v[:, :, -target:, :])
        layer.keys, layer.values = torch.cat(keys, dim=0), torch.cat(values, dim=0)
        if sliding:
            layer.cumulative_length = width
    return merged


@lru_cache(maxsize=1)
def _preallocated_layer_class():
    """``PreallocatedLayer``, defined on first use (transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """A full-attention KV layer whose keys and values live in buffers with room for the tokens still to
        come: ``update`` writes a step's key/value into the next free position instead of concatenating
        (``DynamicLayer.update`` copies the whole cache at every step, as much memory traffic as reading it
        once more). ``keys``/``values`` are views of the filled part, so everything transformers reads
        (sequence length, mask sizes, attention) sees what a ``DynamicLayer`` would hold, value for value.
        A method of the base class that replaces ``keys`` (crop, reorder) is noticed at the next update, which
        then starts new buffers from the replaced tensors."""

        def __init__(self, keys: Any, values: Any, room: int):
            super().__init__()
            self.is_initialized, self.device, self.room = True, keys.device, max(int(room), 1)
            self._adopt(keys, values, self.room)

        def _adopt(self, keys: Any, values: Any, room: int) -> None:
            b, h, n, _ = keys.shape
            self._kbuf = keys.new_empty(b, h, n + room, keys.shape[-1])
            self._vbuf = values.new_empty(b, h, n + room, values.shape[-1])
            self._kbuf[:, :, :n].copy_(keys)
            self._vbuf[:, :, :n].copy_(values)
            self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

        def _ours(self) -> bool:
            return (self.keys.data_ptr() == self._kbuf.data_ptr() and self.keys.shape[0] == self._kbuf.shape[0]
                    and self.values.data_ptr() == self._vbuf.data_ptr())

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any):
            n, add = self.keys.shape[-2], key_states.shape[-2]
            if not self._ours() or n + add > self._kbuf.shape[-2]:
                self._adopt(self.keys, self.values, max(add, self.room))
            self._kbuf[:, :, n : n + add].copy_(key_states)
            self._vbuf[:, :, n : n + add].copy_(value_states)
            self.keys, self.values = self._kbuf[:, :, : n + add], self._vbuf[:, :, : n + add]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            n = self.keys.shape[-2]
            if not self._ours():
                self._adopt(self.keys, self.values, self.room)
            self._kbuf, self._vbuf = self._kbuf[indices], self._vbuf[indices]
            self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

    return PreallocatedLayer


def preallocate(cache: Any, room: int) -> Any:
    """Give each plain full-attention layer of ``cache`` (a ``DynamicLayer``; sliding-window layers keep
    theirs: they hold at most their window) buffers with ``room`` free positions: ``decode`` writes each
    step in place. Same tokens; a decoding step of SmolLM2 at 8-12 rows and ~800 cached positions took
    17-18% less time (median of 5 paired runs), and the quickstart's 24-row calls (prefill included) 2-13%
    less for SmolLM2, 2-7% for Gemma 3, whose sliding-window layers keep their own cache
    (``benchmarks/bench_decoding.py --kv``)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None) or []
    cls = _preallocated_layer_class()
    for i, layer in enumerate(layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys is not None and layer.keys.numel():
            layers[i] = cls(layer.keys, layer.values, room)
    return cache


def prefill(model: Any, prompts: Sequence[Sequence[int]], pad_id: int, cache_kwarg: str, device: Any):
    """(last-position logits, KV cache, attention mask) of a left-padded batch of ``prompts`` (rows longest
    first). Prompts of very different lengths are encoded in buckets of similar length and their caches
    merged (``_merge_caches``): a joint prefill would run every short prompt at the longest one's width
    (on the quickstart SmolLM2's 24 synthesis prompts are 118 to 848 tokens: 60% of a joint prefill is
    padding). The merged cache is the joint one's up to the pad positions' values, which the mask hides."""
    from transformers import DynamicCache

    lengths = [len(p) for p in prompts]
    width = max(lengths)
    full_mask = left_pad(prompts, width, pad_id, device)[1]
    buckets = prefill_buckets(lengths)
    if any(b != list(range(b[0], b[0] + len(b))) for b in buckets):
        raise ValueError("prefill expects its rows longest first")

    def run(idx: list[int]):
        w = max(lengths[i] for i in idx)
        ids, mask = left_pad([prompts[i] for i in idx], w, pad_id, device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                       **{cache_kwarg: cache}).logits[:, -1, :]
        return logits, cache

    if len(buckets) > 1:
        parts = [run(b) for b in buckets]
        if all(_mergeable(c) for _, c in parts):
            return torch.cat([lg for lg, _ in parts]), _merge_caches([c for _, c in parts], width), full_mask
    logits, cache = run(list(range(len(prompts))))
    return logits, cache, full_mask


def decode(model: Any, tokenizer: Any, rows: Sequence[RowSpec], *, max_new_tokens: int, eos_ids: Sequence[int],
           pad_id: int, greedy: bool, processors: Sequence[Any] = (), cache_kwarg: str = "past_key_values",
           device: Any = "cpu") -> list[list[int]]:
    """Generate for a batch of prompts; each row's new token ids (EOS included when it ended on one), in the
    order of ``rows``. ``processors``: logits processors (``(input_ids, scores) -> scores``) in order; one with
    a ``select(rows)`` method keeps per-row state and is told which rows remain after each drop (its rows
    are in the batch's internal order: longest prompt first)."""
    n = len(rows)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: -len(rows[i].prompt))  # longest first: prefill buckets are runs
    rows = [rows[i] for i in order]
    eos = {int(e) for e in eos_ids}
    stops = [_StopTail(tokenizer, r.stops) for r in rows]
    gens = [row_generator(r.seed, r.index) for r in rows]
    out: list[list[int]] = [[] for _ in range(n)]
    active = list(range(n))  # batch position -> row
    with torch.inference_mode(), sliced_head(model):  # a few rows x a large vocabulary: head.py
        logits, cache, mask = prefill(model, [r.prompt for r in rows], pad_id, cache_kwarg, device)
        preallocate(cache, max_new_tokens)
        seq = left_pad([r.prompt for r in rows], mask.shape[1], pad_id, device)[0]  # what processors see
        pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -1:]
        for step in range(max_new_tokens):
            scores = logits.float()
            for p in processors:
                scores = p(seq, scores)
            if greedy:
                nxt = scores.argmax(dim=-1)
            else:
                nxt = sample_rows(torch.softmax(scores, dim=-1), [gens[row] for row in active])
            toks = nxt.tolist()
            done = []
            for b, row in enumerate(active):
                out[row].append(toks[b])
                if toks[b] in eos or stops[row].hit(out[row]):
                    done.append(b)
            if step == max_new_tokens - 1 or len(done) == len(active):
                break
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            pos = pos + 1
            step_ids = nxt[:, None]
            if done:  # drop finished rows: from the batch, the KV cache and the processors' state
                gone = set(done)
                keep = [b for b in range(len(active)) if b not in gone]
                sel = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(sel)
                seq, mask, pos, step_ids = seq[sel], mask[sel], pos[sel], step_ids[sel]
                for p in processors:
                    if hasattr(p, "select"):
                        p.select(keep)
                active = [active[b] for b in keep]
            logits = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, use_cache=True,
                           logits_to_keep=1, **{cache_kwarg: cache}).logits[:, -1, :]
    result: list[list[int]] = [[] for _ in range(n)]
    for k, i in enumerate(order):
        result[i] = out[k]
    return result
