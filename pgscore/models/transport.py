"""HTTP transport for server backends: which client library, retry rules, API keys, sync-over-async.

Shared by the OpenAI-compatible client (``openai_compat``), the Batch API backend (``openai_batch``) and
server embedders (``embedders``). Nothing here knows about requests' content.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import os
import random
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from pgscore.errors import PgScoreError
from pgscore.models.base import ModelSpec

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RequestFailed(Exception):
    """A request that will not succeed (permanent error or retries exhausted)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


def read_api_key(spec: ModelSpec) -> str | None:
    """The key from ``spec.api_key_file`` or the env var ``spec.api_key_env`` (default OPENAI_API_KEY)."""
    if spec.api_key_file:
        p = Path(spec.api_key_file).expanduser()
        if not p.is_file():
            raise PgScoreError(f"api_key_file not found: {p}")
        return p.read_text(encoding="utf-8").strip() or None
    return os.environ.get(spec.api_key_env or "OPENAI_API_KEY") or None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/invalid."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    r = rng or random
    return r.uniform(0.0, min(cap, base * 2 ** max(attempt - 1, 0)))


def error_message(resp: Any) -> str:
    """A server's error text from a response (JSON ``error.message`` / ``message`` / ``detail``, else the
    body), on one line, at most 300 characters."""
    try:
        data = resp.json()
        msg = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else data.get("error")
        msg = msg or data.get("message") or data.get("detail")
    except (ValueError, AttributeError):
        msg = resp.text
    return " ".join(str(msg or "").split())[:300]


def http_lib():
    """``httpx2`` (the openai SDK's faster-pooling successor of httpx) when present, else ``httpx``."""
    try:
        import httpx2

        return httpx2
    except ImportError:
        import httpx

        return httpx


def run_coroutine(factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from sync code, also when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(lambda: asyncio.run(factory())).result()
