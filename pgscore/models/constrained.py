"""JSON-schema constrained decoding for the transformers backend, with xgrammar (what vLLM's guided decoding uses).

``SamplingParams.json_schema`` becomes a ``transformers`` logits processor: the schema is compiled once per
(schema, tokenizer) into an xgrammar grammar, and every ``generate()`` call gets a fresh processor with one
grammar matcher per batch row. Each step the matcher accepts the row's last token and masks the logits to the
tokens the grammar allows next; the tokenizer's stop tokens are allowed only once the JSON is complete. The
mask must run before temperature/top-k/top-p (local.py puts it ahead of the sampling warpers), so sampling
and greedy decoding both stay inside the grammar.

Without xgrammar installed, :func:`json_constraint` warns once and returns None: generation is unconstrained
and the caller's parser reports what it cannot read.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from typing import Any, Sequence

import torch

XGRAMMAR_MISSING = ("xgrammar is not installed: the transformers backend generates unconstrained text for "
                    "json_schema requests (install it: pip install --no-deps xgrammar==0.2.8 apache-tvm-ffi)")

log = logging.getLogger(__name__)
_warned = False
_lock = threading.Lock()
# tokenizer -> {(vocab size, stop ids): _Compiler}; weak keys: a dropped model drops its grammars
_compilers: "weakref.WeakKeyDictionary[Any, dict[tuple, _Compiler]]" = weakref.WeakKeyDictionary()


def _xgrammar():
    """The xgrammar module, or None (warning once) when it cannot be imported."""
    global _warned
    try:
        import xgrammar

        return xgrammar
    except ImportError:
        if not _warned:
            _warned = True
            log.warning(XGRAMMAR_MISSING)
        return None


class _Compiler:
    """An xgrammar GrammarCompiler for one tokenizer, with its compiled schemas."""

    def __init__(self, xgr: Any, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]):
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                  stop_token_ids=list(stop_ids) or None)
        self.xgr = xgr
        self.vocab_size = vocab_size
        self.compiler = xgr.GrammarCompiler(info, max_threads=2)
        self.grammars: dict[str, Any] = {}

    def compile(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        grammar = self.grammars.get(key)
        if grammar is None:
            # one-line JSON, ", " / ": " separators, no free whitespace: a small model cannot stall in
            # endless newlines, and the text is what json.dumps writes
            grammar = self.compiler.compile_json_schema(key, any_whitespace=False)
            self.grammars[key] = grammar
        return grammar


def json_constraint(tokenizer: Any, vocab_size: int, stop_ids: Sequence[int],
                    schema: dict[str, Any]) -> "JsonConstraint | None":
    """A factory of logits processors that keep generations inside ``schema`` (None without xgrammar)."""
    xgr = _xgrammar()
    if xgr is None:
        return None
    key = (int(vocab_size), tuple(stop_ids))
    with _lock:
        per_tok = _compilers.setdefault(tokenizer, {})
        comp = per_tok.get(key)
        if comp is None:
            comp = per_tok[key] = _Compiler(xgr, tokenizer, int(vocab_size), stop_ids)
        grammar = comp.compile(schema)
    return JsonConstraint(xgr, grammar, comp.vocab_size)


class JsonConstraint:
    """A compiled schema; :meth:`processors` gives the ``logits_processor`` for one ``generate()`` call."""

    def __init__(self, xgr: Any, grammar: Any, vocab_size: int):
        self.xgr, self.grammar, self.vocab_size = xgr, grammar, vocab_size

    def processors(self):
        from transformers import LogitsProcessorList

        return LogitsProcessorList([_GrammarProcessor(self.xgr, self.grammar, self.vocab_size)])


def row_grammars(constraints: Sequence["JsonConstraint | None"]) -> "_GrammarProcessor | None":
    """One processor for a batch whose rows have their own schema or none (None: the row is free); None
    when no row is constrained. Rows are in the batch's order; see :meth:`_GrammarProcessor.select`."""
    first = next((c for c in constraints if c is not None), None)
    if first is None:
        return None
    return _GrammarProcessor(first.xgr, [c.grammar if c is not None else None for c in constraints],
                             first.vocab_size)


class _GrammarProcessor:
    """One matcher per row; used for a single generation (it keeps the rows' grammar state).

    ``grammar``: one grammar for every row, or a list with one per row (None: that row is unconstrained).
    :meth:`select` keeps only some rows, for a decoding loop that drops finished rows from the batch."""

    def __init__(self, xgr: Any, grammar: Any, vocab_size: int):
        self.xgr, self.vocab_size = xgr, vocab_size
        self.grammars: list[Any] | None = list(grammar) if isinstance(grammar, (list, tuple)) else None
        self.grammar = None if self.grammars is not None else grammar
        self.matchers: list[Any] | None = None
        self.live: list[bool] = []
        self.bitmask = None

    def select(self, rows: Sequence[int]) -> None:
        """Keep the matchers of ``rows`` (indices into the current batch), in that order."""
        if self.matchers is not None:
            self.matchers = [self.matchers[i] for i in rows]
            self.live = [self.live[i] for i in rows]
        elif self.grammars is not None:
            self.grammars = [self.grammars[i] for i in rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        xgr = self.xgr
        if self.matchers is None:  # first step: nothing generated yet
            n = input_ids.shape[0]
            grammars = self.grammars if self.grammars is not None else [self.grammar] * n
            if len(grammars) != n:
                raise ValueError(f"{len(grammars)} row grammars for a batch of {n}")
            self.matchers = [xgr.GrammarMatcher(g) if g is not None else None for g in grammars]
            self.live = [m is not None for m in self.matchers]
            self.bitmask = xgr.allocate_token_bitmask(n, self.vocab_size)
        else:
            last = input_ids[:, -1].tolist()
            for i, m in enumerate(self.matchers):
                # a row stops being constrained once its JSON took a stop token, or once transformers
                # finished it another way (a stop string) and pads it with a token the grammar refuses
                if self.live[i] and (not m.accept_token(int(last[i])) or m.is_terminated()):
                    self.live[i] = False
        rows = [i for i, m in enumerate(self.matchers) if self.live[i] and m.fill_next_token_bitmask(self.bitmask, i)]
        if rows:
            bitmask = self.bitmask[: scores.shape[0]]  # the loop may have dropped rows since allocation
            if scores.device.type == "cpu":
                xgr.apply_token_bitmask_inplace(scores, bitmask, vocab_size=self.vocab_size, indices=rows)
            else:  # torch kernel: the triton one is not installed with pgscore
                xgr.apply_token_bitmask_inplace(scores, bitmask.to(scores.device), vocab_size=self.vocab_size,
                                                indices=rows, backend="torch_native")
        return scores


def output_vocab_size(model: Any) -> int:
    """Width of the model's logits (the LM head), which can differ from the tokenizer's vocabulary."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(cfg.vocab_size)
