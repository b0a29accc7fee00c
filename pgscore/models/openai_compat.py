"""OpenAI-compatible HTTP backend (vLLM / SGLang / llama.cpp / Ollama servers, hosted APIs).

``backend: openai`` (default base URL https://api.openai.com/v1) and ``backend: llamacpp`` (default
http://127.0.0.1:8080/v1) share :class:`OpenAICompatModel`. Requests run on ``httpx.AsyncClient`` with at
most ``spec.concurrency`` (default 16) in flight, retries with exponential backoff and full jitter on
429/5xx/timeouts/connection errors/malformed JSON (a ``Retry-After`` header wins), and per-model token and
cost accounting in ``model.usage``. A request that fails for good becomes ``Generation(error=reason)``.

``spec.options`` (all optional):

- ``timeout`` (s, 120), ``max_retries`` (6), ``backoff_base`` (0.5 s), ``backoff_max`` (30 s)
- ``price``: ``{"input": usd_per_1M_prompt_tokens, "output": usd_per_1M_completion_tokens}``
- ``structured_output``: ``auto`` (send ``response_format=json_schema``; on a 400 retry plain and stop
  sending it), ``true``, ``false``
- ``logprobs``: ``echo`` (``/completions`` with ``echo=true, logprobs=1``; vLLM, llama.cpp),
  ``prompt_logprobs`` (vLLM's extra field) or ``none``
- ``logprobs_alignment``: ``verify`` (default: probe once, see :meth:`OpenAICompatModel.verify_alignment`),
  ``trust``, or an integer shift
- ``send_top_k`` (default: true except for api.openai.com), ``extra_body`` (dict merged into each request)
- ``progress``: a tqdm bar per batched call (default false: the stages draw their own)

The API key comes only from the env var ``spec.api_key_env`` (default ``OPENAI_API_KEY``) or the file
``spec.api_key_file``; it is never logged, never put in errors, reprs or artifacts.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Awaitable, Callable, Sequence

from pgscore.errors import PgScoreError
from pgscore.models import register_backend
from pgscore.models.base import (
    ContinuationScore,
    Conversation,
    Generation,
    LanguageModel,
    ModelSpec,
    OnResult,
    SamplingParams,
)
# The seams of this client, re-exported here (their old home): retry + transport, pricing, echo alignment.
from pgscore.models.echo_logprobs import (  # noqa: F401
    PROBE_TEXT,
    alignment_shift,
    continuation_from_echo,
    continuation_from_prompt_logprobs,
    last_token_index,
    text_offsets,
)
from pgscore.models.pricing import Usage, cost_of, parse_price  # noqa: F401
from pgscore.models.transport import (  # noqa: F401
    RETRY_STATUS,
    RequestFailed,
    backoff_delay,
    error_message,
    http_lib,
    read_api_key,
    retry_after_seconds,
    run_coroutine,
)

OPENAI_URL = "https://api.openai.com/v1"
LLAMACPP_URL = "http://127.0.0.1:8080/v1"
_error_message = error_message  # older name
_cumulative = text_offsets  # older name


# ---- request bodies -------------------------------------------------------------------------------
def sampling_body(params: SamplingParams, *, send_top_k: bool) -> dict[str, Any]:
    """OpenAI request fields for SamplingParams (json_schema handled by the caller)."""
    body: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens}
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop:
        body["stop"] = list(params.stop)
    if params.top_k is not None and send_top_k:
        body["top_k"] = params.top_k
    return body


def chat_body(model: str, conv: Conversation, params: SamplingParams, *, send_top_k: bool = True,
              schema_mode: str | None = "json_schema") -> dict[str, Any]:
    """A chat request. ``schema_mode``: ``json_schema`` (OpenAI, vLLM, SGLang), ``json_object`` with a
    ``schema`` (llama-cpp-python's server), or None (plain)."""
    body = {"model": model, "messages": [dict(m) for m in conv], **sampling_body(params, send_top_k=send_top_k)}
    if params.json_schema is not None and schema_mode == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": params.json_schema, "strict": False},
        }
    elif params.json_schema is not None and schema_mode == "json_object":
        body["response_format"] = {"type": "json_object", "schema": params.json_schema}
    return body


# ---- the model ------------------------------------------------------------------------------------
class OpenAICompatModel(LanguageModel):
    """A model behind an OpenAI-compatible server. Batched calls run concurrently; order is kept."""

    accepts_on_result = True  # chat/complete/loglikelihood take on_result(i, result) as each one returns

    def __init__(self, spec: ModelSpec, default_base_url: str = OPENAI_URL) -> None:
        self.spec = spec
        o = dict(spec.options)
        self.base_url = (spec.base_url or o.get("base_url") or default_base_url).rstrip("/")
        self.timeout = float(o.get("timeout", 120))
        self.max_retries = int(o.get("max_retries", 6))
        self.backoff_base = float(o.get("backoff_base", 0.5))
        self.backoff_max = float(o.get("backoff_max", 30))
        self.concurrency = int(spec.concurrency or o.get("concurrency", 16))
        if self.concurrency < 1:
            raise PgScoreError(f"{spec.short()}: concurrency must be >= 1")
        self.price = parse_price(o.get("price"))
        self.structured = str(o.get("structured_output", "auto")).lower()
        self.logprobs_mode = str(o.get("logprobs", "echo"))
        self.alignment = o.get("logprobs_alignment", "verify")
        self.send_top_k = bool(o.get("send_top_k", "api.openai.com" not in self.base_url))
        self.extra_body = dict(o.get("extra_body") or {})
        self.progress = bool(o.get("progress", False))  # stages draw their own bars; true = a tqdm bar per call
        self._api_key = read_api_key(spec)
        self._schema_modes = {"auto": ["json_schema", "json_object"], "true": ["json_schema"],
                              "false": []}.get(self.structured, ["json_schema"])
        self._shift: int | None = None if self.alignment == "verify" else (0 if self.alignment == "trust"
                                                                           else int(self.alignment))
        self._tokenize_route: str | None = None
        self.usage = Usage()
        self.failure_reasons: list[str] = []

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatModel({self.spec.short()!r}, base_url={self.base_url!r})"

    def __getstate__(self) -> dict[str, Any]:  # Ray replicas re-read the key from their own env
        d = dict(self.__dict__)
        d["_api_key"] = None
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self._api_key = read_api_key(self.spec)

    # ---- transport ----------------------------------------------------------------------------
    def _client(self):
        httpx = http_lib()

        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(self.timeout))

    async def _post(self, client, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; returns the JSON answer or raises :class:`RequestFailed`."""
        httpx = http_lib()

        payload = json.dumps({**self.extra_body, **body}, ensure_ascii=False).encode()
        attempt = 0
        while True:
            wait = None
            try:
                resp = await client.post(path, content=payload)
            except httpx.TimeoutException:
                reason = f"timeout after {self.timeout:g}s"
            except httpx.TransportError as exc:
                reason = f"connection error ({type(exc).__name__})"
            else:
                if resp.status_code == 200:
                    try:
                        data = json.loads(resp.content)
                        if not data.get("choices"):
                            raise ValueError("no choices")
                        return data
                    except (ValueError, AttributeError):
                        reason = "malformed JSON response"
                elif resp.status_code in RETRY_STATUS:
                    reason = f"HTTP {resp.status_code}: {error_message(resp)}"
                    if "response_format" in reason:  # llama.cpp answers 500 to an unknown response_format
                        raise RequestFailed(reason, resp.status_code)
                    wait = retry_after_seconds(resp.headers.get("retry-after"))
                else:
                    raise RequestFailed(f"HTTP {resp.status_code}: {error_message(resp)}", resp.status_code)
            attempt += 1
            if attempt > self.max_retries:
                raise RequestFailed(f"{reason} (gave up after {attempt} attempts)")
            self.usage.retries += 1
            delay = backoff_delay(attempt, self.backoff_base, self.backoff_max) if wait is None else min(wait, 300.0)
            await asyncio.sleep(delay)

    def _account(self, data: dict[str, Any]) -> tuple[int, int, float]:
        u = data.get("usage") or {}
        pt, ct = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
        cost = cost_of(pt, ct, self.price)
        self.usage.prompt_tokens += pt
        self.usage.completion_tokens += ct
        self.usage.cost_usd += cost
        return pt, ct, cost

    def _gather(self, items: Sequence[Any], one: Callable[[Any, Any], Awaitable[Any]],
                on_result: OnResult | None, desc: str) -> list[Any]:
        """Run ``one(client, item)`` over items, at most ``concurrency`` at a time, in order."""
        if not items:
            return []

        async def main() -> list[Any]:
            from tqdm.auto import tqdm

            sem = asyncio.Semaphore(self.concurrency)
            show = self.progress and len(items) > 1
            bar = tqdm(total=len(items), desc=f"{self.spec.short()} {desc}", disable=not show or None,
                       mininterval=0.5, leave=False)
            out: list[Any] = [None] * len(items)
            async with self._client() as client:

                async def run(i: int, item: Any) -> None:
                    async with sem:
                        self.usage.requests += 1
                        res = await one(client, item)
                    out[i] = res
                    bar.update(1)
                    if on_result is not None:
                        on_result(i, res)

                await asyncio.gather(*(run(i, it) for i, it in enumerate(items)))
            bar.close()
            return out

        return run_coroutine(main)

    def _fail(self, reason: str) -> str:
        self.usage.failures += 1
        if len(self.failure_reasons) < 1000:
            self.failure_reasons.append(reason)
        return reason

    # ---- LanguageModel ------------------------------------------------------------------------
    def chat(self, conversations: Sequence[Conversation], params: SamplingParams,
             on_result: OnResult | None = None) -> list[Generation]:
        async def one(client, conv: Conversation) -> Generation:
            modes: list[str | None] = list(self._schema_modes) if params.json_schema is not None else []
            if not modes or self.structured == "auto":
                modes.append(None)
            try:
                for mode in modes:
                    body = chat_body(self.spec.model, conv, params, send_top_k=self.send_top_k, schema_mode=mode)
                    try:
                        data = await self._post(client, "/chat/completions", body)
                        break
                    except RequestFailed as exc:
                        rejected = exc.status in (400, 422) or "response_format" in exc.reason
                        if mode is None or self.structured != "auto" or not rejected:
                            raise
                        if mode in self._schema_modes:  # the server lacks this mode: stop sending it
                            self._schema_modes.remove(mode)
                choice = data["choices"][0]
                text = (choice.get("message") or {}).get("content") or ""
                pt, ct, cost = self._account(data)
                return Generation(text=text, prompt_tokens=pt, completion_tokens=ct,
                                  finish_reason=choice.get("finish_reason"), cost_usd=cost)
            except RequestFailed as exc:
                return Generation(text="", error=self._fail(exc.reason))
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                return Generation(text="", error=self._fail(f"unexpected response shape ({type(exc).__name__})"))

        return self._gather(list(conversations), one, on_result, "chat")

    def complete(self, prompts: Sequence[str], params: SamplingParams,
                 on_result: OnResult | None = None) -> list[Generation]:
        async def one(client, prompt: str) -> Generation:
            try:
                body = {"model": self.spec.model, "prompt": prompt, **sampling_body(params, send_top_k=self.send_top_k)}
                data = await self._post(client, "/completions", body)
                choice = data["choices"][0]
                pt, ct, cost = self._account(data)
                return Generation(text=choice.get("text") or "", prompt_tokens=pt, completion_tokens=ct,
                                  finish_reason=choice.get("finish_reason"), cost_usd=cost)
            except RequestFailed as exc:
                return Generation(text="", error=self._fail(exc.reason))
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                return Generation(text="", error=self._fail(f"unexpected response shape ({type(exc).__name__})"))

        return self._gather(list(prompts), one, on_result, "complete")

    def _echo_body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.spec.model, "prompt": text, "max_tokens": 1, "temperature": 0.0}
        if self.logprobs_mode == "prompt_logprobs":
            body["prompt_logprobs"] = 0
        else:
            body.update(echo=True, logprobs=1)
        return body

    def verify_alignment(self) -> int:
        """Find how the server aligns echoed logprobs: 0 (correct) or a shift of +-1 token.

        Greedy-generate one token ``g`` after a probe text ``P`` and read its logprob; then echo ``P + g``
        and find which echoed position carries that logprob. llama.cpp servers were seen reporting each
        token's logprob one position early (shift 1). No match -> :class:`PgScoreError`.
        """
        if self._shift is not None:
            return self._shift

        async def probe(client, _: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            gen = await self._post(client, "/completions", {"model": self.spec.model, "prompt": PROBE_TEXT,
                                                            "max_tokens": 1, "temperature": 0.0, "logprobs": 1})
            g = gen["choices"][0]
            full = PROBE_TEXT + (g.get("text") or "")
            echo = await self._post(client, "/completions", {**self._echo_body(full), "echo": True, "logprobs": 1})
            return g, echo

        try:
            g, echo = self._gather([None], probe, None, "probe")[0]
            target = float(g["logprobs"]["token_logprobs"][0])
            lp = echo["choices"][0]["logprobs"]
            vals = lp["token_logprobs"]
            j = last_token_index(lp, len(PROBE_TEXT) + len(g.get("text") or ""))
        except RequestFailed as exc:
            raise PgScoreError(f"{self.spec.short()}: logprob probe failed: {exc.reason}") from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PgScoreError(f"{self.spec.short()}: server gives no usable echo logprobs "
                               f"({type(exc).__name__}); set options.logprobs: none") from exc
        shift = alignment_shift(target, vals, j)
        if shift is None:
            raise PgScoreError(f"{self.spec.short()}: echoed logprobs do not match generated ones; "
                               "cannot trust this server's loglikelihood (options.logprobs_alignment)")
        self._shift = shift
        return self._shift

    def loglikelihood(self, requests: Sequence[tuple[str, str]],
                      on_result: OnResult | None = None) -> list[ContinuationScore]:
        if self.logprobs_mode == "none":
            raise PgScoreError(f"{self.spec.short()}: loglikelihood disabled (options.logprobs: none)")
        shift = self.verify_alignment() if self.logprobs_mode == "echo" else 0

        async def one(client, req: tuple[str, str]) -> ContinuationScore:
            ctx, cont = req
            full = ctx + cont
            try:
                data = await self._post(client, "/completions", self._echo_body(full))
                choice = data["choices"][0]
                self._account(data)
                if self.logprobs_mode == "prompt_logprobs":
                    return continuation_from_prompt_logprobs(choice.get("prompt_logprobs") or [], ctx, full)
                n_prompt = (data.get("usage") or {}).get("prompt_tokens")
                return continuation_from_echo(choice["logprobs"], ctx, full, n_prompt, shift)
            except RequestFailed as exc:
                self._fail(exc.reason)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                self._fail(f"unusable logprobs ({exc})")
            return ContinuationScore(logprob=math.nan, n_tokens=0)

        return self._gather(list(requests), one, on_result, "loglikelihood")

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Server tokenizer (vLLM ``/tokenize``, llama-cpp-python ``/extras/tokenize``); else ~4 chars/token."""
        root = self.base_url.removesuffix("/v1")
        routes = [self._tokenize_route] if self._tokenize_route else [f"{root}/tokenize", f"{root}/extras/tokenize"]

        async def one(client, text: str) -> int:
            for route in routes:
                if route == "approx":
                    break
                try:
                    body = {"model": self.spec.model, "prompt": text} if route.endswith("/v1/tokenize") or \
                        route.endswith(f"{root}/tokenize") else {"input": text}
                    r = await client.post(route, json=body)
                    if r.status_code == 200:
                        d = r.json()
                        self._tokenize_route = route
                        return int(d.get("count") or len(d.get("tokens") or []))
                except Exception:  # noqa: BLE001 - any failure means "no tokenizer endpoint"
                    continue
            self._tokenize_route = "approx"
            return max(1, round(len(text) / 4))

        return self._gather(list(texts), one, None, "tokenize")


@register_backend("openai")
def _openai(spec: ModelSpec) -> LanguageModel:
    return OpenAICompatModel(spec, OPENAI_URL)


@register_backend("llamacpp")
def _llamacpp(spec: ModelSpec) -> LanguageModel:
    return OpenAICompatModel(spec, LLAMACPP_URL)
