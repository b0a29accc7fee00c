"""The run ledger: every model call's result, keyed by a content hash, in SQLite (WAL) in the results folder.

``Ledger(results_dir)`` opens ``results_dir/ledger.sqlite``. ``CachedModel(model, ledger, stage=...)`` wraps
any :class:`~pgscore.models.base.LanguageModel`: hits come from the ledger, only misses reach the model, and
each result is committed as soon as it returns, so a run killed at any point (Ctrl-C, ``kill -9``, node loss)
resumes with nothing lost and no stored request sent again. Several processes (Ray workers) may append to
one ledger at once; readers never block writers (WAL).

Key = ``content_hash(spec.key(), kind, params, request, seed)``. Identical requests in one batch are sent
once when decoding is deterministic (``temperature == 0`` or a ``seed``); with unseeded sampling the n-th
repeat of a request gets its own key (``#n``), so repeated samples stay distinct and are still resumable.
Failed calls are not cached (a re-run retries them) but are counted with their reasons.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from pgscore.errors import PgScoreError
from pgscore.models.base import (
    ContinuationScore,
    Conversation,
    Generation,
    LanguageModel,
    SamplingParams,
    content_hash,
    params_per_prompt,
)

LEDGER_NAME = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
  key TEXT PRIMARY KEY, model TEXT NOT NULL, stage TEXT NOT NULL, kind TEXT NOT NULL,
  request TEXT, result TEXT NOT NULL, prompt_tokens INTEGER DEFAULT 0, completion_tokens INTEGER DEFAULT 0,
  cost_usd REAL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, model TEXT NOT NULL, stage TEXT NOT NULL,
  kind TEXT NOT NULL, error TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS lookups (
  id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, stage TEXT NOT NULL, kind TEXT NOT NULL,
  hits INTEGER NOT NULL, misses INTEGER NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS calls_model_stage ON calls(model, stage);
"""

STATS_COLUMNS = ["model", "stage", "calls", "stored", "hits", "failures", "prompt_tokens", "completion_tokens",
                 "cost_usd"]


class Ledger:
    """SQLite ledger at ``path`` (a results folder or a ``.sqlite`` file). Thread-safe; one per process."""

    def __init__(self, path: str | Path, *, store_requests: bool = True, create: bool = True) -> None:
        p = Path(path)
        self.path = p if p.suffix in (".sqlite", ".db") else p / LEDGER_NAME
        if not create and not self.path.is_file():
            raise PgScoreError(f"no run ledger at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store_requests = store_requests
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise PgScoreError(f"cannot open run ledger {self.path}: {exc}") from exc

    # ---- writes (each one its own committed transaction) ----------------------------------------
    def put(self, key: str, *, model: str, stage: str, kind: str, result: dict[str, Any],
            request: Any = None, prompt_tokens: int = 0, completion_tokens: int = 0, cost_usd: float = 0.0) -> None:
        req = json.dumps(request, ensure_ascii=False, sort_keys=True) if self.store_requests else None
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?)",
                (key, model, stage, kind, req, json.dumps(result, ensure_ascii=False), int(prompt_tokens),
                 int(completion_tokens), float(cost_usd), time.time()),
            )

    def put_failure(self, key: str, *, model: str, stage: str, kind: str, error: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO failures (key, model, stage, kind, error, created) VALUES (?,?,?,?,?,?)",
                             (key, model, stage, kind, error, time.time()))

    def record_lookup(self, *, model: str, stage: str, kind: str, hits: int, misses: int) -> None:
        with self._lock:
            self._db.execute("INSERT INTO lookups (model, stage, kind, hits, misses, created) VALUES (?,?,?,?,?,?)",
                             (model, stage, kind, int(hits), int(misses), time.time()))

    # ---- reads ----------------------------------------------------------------------------------
    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored results for the keys that have one."""
        out: dict[str, dict[str, Any]] = {}
        keys = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(keys), 900):
                chunk = keys[i : i + 900]
                q = f"SELECT key, result FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
                for k, r in self._db.execute(q, chunk):
                    out[k] = json.loads(r)
        return out

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM calls WHERE key=?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def stored_times(self) -> dict[str, float]:
        """key -> time its result was stored."""
        with self._lock:
            return dict(self._db.execute("SELECT key, created FROM calls"))

    def failures(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT key, model, stage, kind, error, created FROM failures ORDER BY id")
            return [dict(zip(("key", "model", "stage", "kind", "error", "created"), r)) for r in cur]

    def stats(self):
        """Rollup per (model, stage): calls sent, stored, hits, failures, tokens, cost (a DataFrame)."""
        import pandas as pd

        with self._lock:
            stored = pd.read_sql_query(
                "SELECT model, stage, COUNT(*) AS stored, SUM(prompt_tokens) AS prompt_tokens, "
                "SUM(completion_tokens) AS completion_tokens, SUM(cost_usd) AS cost_usd FROM calls "
                "GROUP BY model, stage", self._db)
            fails = pd.read_sql_query("SELECT model, stage, COUNT(*) AS failures FROM failures GROUP BY model, stage",
                                      self._db)
            hits = pd.read_sql_query("SELECT model, stage, SUM(hits) AS hits FROM lookups GROUP BY model, stage",
                                     self._db)
        df = stored.merge(fails, on=["model", "stage"], how="outer").merge(hits, on=["model", "stage"], how="outer")
        if df.empty:
            return pd.DataFrame(columns=STATS_COLUMNS)
        num = ["stored", "failures", "hits", "prompt_tokens", "completion_tokens"]
        df[num] = df[num].fillna(0).astype(int)
        df["cost_usd"] = df["cost_usd"].fillna(0.0).astype(float)
        df["calls"] = df["stored"] + df["failures"]
        return df[STATS_COLUMNS].sort_values(["model", "stage"]).reset_index(drop=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def request_keys(spec_key: str, kind: str, params: SamplingParams | Sequence[SamplingParams] | None,
                 requests: Sequence[Any]) -> list[str]:
    """Ledger keys for a batch (see the module docstring for how repeats are keyed). ``params``: one set for
    the batch, or one per request (a request's key is the same either way)."""
    plist = params_per_prompt(params, len(requests))
    seen: Counter[str] = Counter()
    keys = []
    dumped: dict[int, Any] = {}
    for req, p in zip(requests, plist):
        if id(p) not in dumped:
            dumped[id(p)] = p.model_dump(mode="json") if p is not None else None
        seed = p.seed if p is not None else None
        base = content_hash(spec_key, kind, dumped[id(p)], req, seed)
        if p is None or p.temperature == 0 or p.seed is not None:  # deterministic: repeats share a key
            keys.append(base)
        else:
            keys.append(base if seen[base] == 0 else content_hash(base, f"#{seen[base]}"))
            seen[base] += 1
    return keys


class CachedModel(LanguageModel):
    """A LanguageModel that serves stored results and sends only misses (in order) to ``model``.

    It offers the :class:`LanguageModel` interface and nothing else (no attribute falls through to the
    wrapped model: code that needs the backend itself, e.g. its tokenizer, asks ``cached.model``).

    ``stage`` and ``label`` (default: the model's ``backend:model``) name the rows in ``ledger.stats()``.
    ``identity`` replaces ``spec.key()`` in the ledger keys where the spec alone does not pin the model
    (a local folder that may be retrained: the stage context passes a fingerprint of its files).
    ``owns_model=False``: ``close()`` leaves the wrapped model open (it is shared by the run's stages).
    """

    accepts_on_result = False  # results are committed here, not streamed further

    @property
    def accepts_per_prompt_params(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.model, "accepts_per_prompt_params", False))

    def __init__(self, model: LanguageModel, ledger: Ledger, stage: str = "default", label: str | None = None,
                 chunk_size: int = 64, identity: str | None = None, owns_model: bool = True) -> None:
        self.model, self.ledger, self.stage = model, ledger, stage
        self.owns_model = owns_model  # False: the model is shared (the stage context closes it), close() leaves it
        self.spec = model.spec
        self.identity = identity or model.spec.key()
        self.label = label or model.spec.short()
        self.chunk_size = max(1, int(chunk_size))
        self.hits = 0
        self.misses = 0

    @property
    def has_chat_template(self) -> bool:
        return self.model.has_chat_template

    @property
    def usage(self) -> Any:
        return getattr(self.model, "usage", None)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.model.count_tokens(texts)

    def render_chat(self, conversation: Conversation) -> str | None:
        return self.model.render_chat(conversation)

    def close(self) -> None:
        if self.owns_model:
            self.model.close()

    def _run(self, kind: str, requests: Sequence[Any], params: SamplingParams | Sequence[SamplingParams] | None,
             send: Callable[..., list[Any]], decode: Callable[[dict[str, Any]], Any],
             encode: Callable[[Any], tuple[dict[str, Any] | None, str | None, int, int, float]]) -> list[Any]:
        """``send(requests, params, **kw)`` gets the misses and their params (one set, or one per miss)."""
        keys = request_keys(self.identity, kind, params, requests)
        per_row = isinstance(params, (list, tuple))
        found = self.ledger.get_many(keys)
        todo: dict[str, Any] = {}
        todo_params: dict[str, Any] = {}
        for i, (k, req) in enumerate(zip(keys, requests)):
            if k not in found and k not in todo:
                todo[k] = req
                todo_params[k] = params[i] if per_row else params
        n_hits = sum(1 for k in keys if k in found)
        self.hits += n_hits
        self.misses += len(todo)
        self.ledger.record_lookup(model=self.label, stage=self.stage, kind=kind, hits=n_hits, misses=len(todo))
        results: dict[str, Any] = {k: decode(v) for k, v in found.items()}
        miss_keys, miss_reqs = list(todo), list(todo.values())
        miss_params = [todo_params[k] for k in miss_keys]

        def store(i: int, res: Any) -> None:
            key = miss_keys[i]
            results[key] = res
            payload, error, pt, ct, cost = encode(res)
            if error is None:
                self.ledger.put(key, model=self.label, stage=self.stage, kind=kind, result=payload,
                                request=miss_reqs[i], prompt_tokens=pt, completion_tokens=ct, cost_usd=cost)
            else:
                self.ledger.put_failure(key, model=self.label, stage=self.stage, kind=kind, error=error)

        if miss_reqs:
            part = (lambda a, b: miss_params[a:b]) if per_row else (lambda a, b: params)
            if getattr(self.model, "accepts_on_result", False):
                send(miss_reqs, part(0, len(miss_reqs)), on_result=store)
            else:
                group = (lambda r: r[0]) if kind == "loglikelihood" else None
                for start, stop in chunk_bounds(miss_reqs, self.chunk_size, group):
                    out = send(miss_reqs[start:stop], part(start, stop))
                    for j, res in enumerate(out):
                        store(start + j, res)
        return [results[k] for k in keys]

    def chat(self, conversations: Sequence[Conversation],
             params: SamplingParams | Sequence[SamplingParams]) -> list[Generation]:
        reqs = [[dict(m) for m in c] for c in conversations]
        return self._run("chat", reqs, params, lambda r, p, **kw: self.model.chat(r, p, **kw),
                         _gen_decode, _gen_encode)

    def complete(self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]) -> list[Generation]:
        return self._run("complete", list(prompts), params, lambda r, p, **kw: self.model.complete(r, p, **kw),
                         _gen_decode, _gen_encode)

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[ContinuationScore]:
        reqs = [list(r) for r in requests]
        return self._run("loglikelihood", reqs, None,
                         lambda r, p, **kw: self.model.loglikelihood([tuple(x) for x in r], **kw),
                         lambda d: ContinuationScore(**d), _score_encode)


def chunk_bounds(requests: Sequence[Any], size: int,
                 group: Callable[[Any], Any] | None = None) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of ``requests``, each holding at most ``size`` groups.

    Without ``group`` a request is its own group (chunks of ``size`` requests). With it, consecutive requests
    of equal ``group(request)`` form one group that is never split: log-likelihood requests that share a
    context (a judge's five scores, a question's answer options) reach the model in one call, which scores
    them with one forward pass; split across two calls, the context would be encoded twice."""
    bounds: list[tuple[int, int]] = []
    start, n_groups, last = 0, 0, object()
    for i, req in enumerate(requests):
        g = group(req) if group is not None else i
        if g != last:
            if n_groups == size:
                bounds.append((start, i))
                start, n_groups = i, 0
            n_groups += 1
            last = g
    if start < len(requests):
        bounds.append((start, len(requests)))
    return bounds


def _gen_decode(d: dict[str, Any]) -> Generation:
    return Generation(**d)


def _gen_encode(g: Generation):
    if g.error is not None:
        return None, g.error, 0, 0, 0.0
    return g.to_dict(), None, g.prompt_tokens, g.completion_tokens, g.cost_usd


def _score_encode(s: ContinuationScore):
    if s.logprob is None or (isinstance(s.logprob, float) and math.isnan(s.logprob)):
        return None, "no log-likelihood", 0, 0, 0.0
    d = {"logprob": s.logprob, "n_tokens": s.n_tokens, "is_greedy": s.is_greedy, "truncated": s.truncated,
         "token_logprobs": list(s.token_logprobs)}
    return d, None, 0, 0, 0.0
