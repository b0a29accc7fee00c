"""Ray Data: the same model calls spread over many replicas, GPUs and nodes.

:class:`RayModel` is a :class:`~pgscore.models.base.LanguageModel` whose batched calls become one Ray
Data ``map_batches`` over the batch, run by ``replicas`` actors that each hold one model (an
OpenAI-compatible client, a local model, a vLLM engine: any ``ModelSpec``). Results stream back to
the driver in order of completion and are handed to ``on_result``, so wrapping it in
:class:`~pgscore.ledger.CachedModel` commits each result to the driver's ledger as it arrives: the
ledger never needs a shared file system and a killed run resumes like a local one::

    from pgscore.dist import RayModel, connect
    connect("auto")                          # a `ray start` cluster; None = local mode
    model = CachedModel(RayModel(spec, replicas=8, num_gpus=1), Ledger(results_dir), stage="synthesis")

:class:`RayLLMModel` puts a ``vllm`` spec on GPU workers through Ray Data's LLM processor
(``ray.data.llm``); :func:`vllm_processor` builds such a processor for whole datasets when a stage is
written directly against Ray Data. :class:`LocalCluster` starts a real head + worker nodes on this machine
(tests, benchmarks). ``pgscore.engine`` picks among these from the experiment's ``engine:`` section.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Sequence

from pgscore.errors import PgScoreError
from pgscore.models.base import (
    ContinuationScore,
    Conversation,
    Generation,
    LanguageModel,
    ModelSpec,
    SamplingParams,
)


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise PgScoreError("Ray Data is not installed: pip install 'pgscore[dist]'") from exc
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join a Ray cluster (``"auto"`` after ``ray start``, ``HOST:PORT``, or ``ray://host:10001``) or start
    local mode.

    ``address=None`` uses ``$RAY_ADDRESS`` when set, else a local Ray on this machine. A cluster that cannot
    be reached is a one-line :class:`PgScoreError` within ``$PGSCORE_RAY_CONNECT_TIMEOUT`` seconds (30).
    """
    ray = _ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
    if address is None and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    if address is not None and not address.startswith("ray://") and address != "auto":
        _probe_gcs(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PgScoreError(f"cannot connect to Ray at {address or 'local'}: {first}") from exc
    ray.data.DataContext.get_current().enable_progress_bars = os.environ.get("PGSCORE_RAY_PROGRESS", "1") != "0"


def _probe_gcs(address: str) -> None:
    """Fail fast on a ``HOST:PORT`` nobody listens on (``ray.init`` would retry for a minute)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise PgScoreError(f"Ray address {address!r} is not 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    timeout = float(os.environ.get("PGSCORE_RAY_CONNECT_TIMEOUT", "30"))
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=min(timeout, 10)):
            pass
    except OSError as exc:
        raise PgScoreError(f"cannot connect to Ray at {address}: {exc.strerror or exc} (is `ray start --head` "
                           "running there?)") from exc


def cluster_summary() -> dict[str, Any]:
    """Alive nodes and their resources: ``{nodes, cpus, gpus, max_node_cpus, max_node_gpus, per_node}``."""
    ray = _ray()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    per = [{"ip": n.get("NodeManagerAddress"), "cpus": float(n["Resources"].get("CPU", 0.0)),
            "gpus": float(n["Resources"].get("GPU", 0.0))} for n in alive]
    return {"nodes": len(per), "cpus": sum(p["cpus"] for p in per), "gpus": sum(p["gpus"] for p in per),
            "max_node_cpus": max((p["cpus"] for p in per), default=0.0),
            "max_node_gpus": max((p["gpus"] for p in per), default=0.0), "per_node": per}


class _Replica:
    """One model per Ray actor; ``__call__`` runs one batch of requests."""

    def __init__(self, spec: dict[str, Any], kind: str, params: dict[str, Any] | None, progress: Any = None,
                 call: str = "") -> None:
        from pgscore.models import load_model

        self.model = load_model(ModelSpec.model_validate(spec))
        self.kind = kind
        self.params = SamplingParams.model_validate(params) if params is not None else None
        self.progress, self.call = progress, call

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        idx = [int(i) for i in batch["i"]]
        reqs = [json.loads(r) for r in batch["request"]]
        keep = list(range(len(idx)))
        if self.progress is not None:
            # A batch Ray runs again (its node died, a lost block is rebuilt) skips what already reached the
            # driver: a request whose result is stored is never sent twice.
            import ray

            todo = set(ray.get(self.progress.todo.remote(self.call, idx)))
            keep = [j for j, i in enumerate(idx) if i in todo]
        results = ["null"] * len(idx)
        if keep:
            for j, r in zip(keep, self.run(self.kind, [reqs[j] for j in keep], self.params)):
                results[j] = json.dumps(r)
        return {"i": batch["i"], "result": results}

    def run(self, kind: str, reqs: list[Any], params: SamplingParams | None) -> list[Any]:
        if kind == "chat":
            return [g.to_dict() for g in self.model.chat(reqs, params)]
        if kind == "complete":
            return [g.to_dict() for g in self.model.complete(reqs, params)]
        if kind == "loglikelihood":
            return [_score_dict(s) for s in self.model.loglikelihood([tuple(r) for r in reqs])]
        if kind == "count_tokens":
            return list(self.model.count_tokens(reqs))
        if kind == "render_chat":
            return [self.model.render_chat(c) for c in reqs]
        if kind == "has_chat_template":
            return [bool(self.model.has_chat_template)]
        raise ValueError(f"unknown call kind {kind!r}")


class _Progress:
    """Which requests of each batched call have reached the driver; one actor per :class:`RayModel`,
    pinned to the driver's node (if that node dies, the driver dies with it and resumes from its ledger)."""

    def __init__(self) -> None:
        self.done: dict[str, set[int]] = {}

    def mark(self, call: str, idx: list[int]) -> int:
        self.done.setdefault(call, set()).update(idx)
        return len(self.done[call])

    def todo(self, call: str, idx: list[int]) -> list[int]:
        done = self.done.get(call, set())
        return [i for i in idx if i not in done]

    def forget(self, call: str) -> None:
        self.done.pop(call, None)


class _Helper(_Replica):
    """A long-lived actor for the small per-item calls (render_chat, count_tokens, has_chat_template)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec, "helper", None)


def _score_dict(s: ContinuationScore) -> dict[str, Any]:
    return {"logprob": s.logprob, "n_tokens": s.n_tokens, "is_greedy": s.is_greedy, "truncated": s.truncated,
            "token_logprobs": list(s.token_logprobs)}


# Exceptions from Ray meaning "this try failed, the next may not" (a node or actor died, an object was lost)
def _retryable() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rex

    return (rex.RayError, ConnectionError, TimeoutError)


class RayModel(LanguageModel):
    """Fan a model's batched calls out over ``replicas`` Ray actors (``map_batches``); order is kept.

    Results are handed to ``on_result`` batch by batch as they reach the driver (so a
    :class:`~pgscore.ledger.CachedModel` commits them at once). Ray Data restarts actors that die with
    their node and retries their batches; if the whole job still fails (``max_retries`` times), only the
    requests whose results never arrived are sent again, and after the last try they come back as failed
    results carrying the reason (``Generation.error``), never silently lost.
    """

    accepts_on_result = True

    def __init__(self, spec: ModelSpec | str | dict, *, replicas: int = 2, batch_size: int = 32,
                 num_cpus: float = 1.0, num_gpus: float = 0.0, address: str | None = None,
                 max_retries: int = 3) -> None:
        self.spec = ModelSpec.parse(spec)
        if replicas < 1 or batch_size < 1:
            raise PgScoreError("RayModel: replicas and batch_size must be >= 1")
        self.replicas, self.batch_size = replicas, batch_size
        self.num_cpus, self.num_gpus, self.address = num_cpus, num_gpus, address
        self.max_retries = max(0, int(max_retries))
        self.failed_tries: list[str] = []  # one reason per whole-job failure that was retried
        self._helper = None
        self._progress = None
        self._has_template: bool | None = None

    def _progress_actor(self):
        if self._progress is None:
            ray = _ray()
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()
            self._progress = ray.remote(_Progress).options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote()
        return self._progress

    def _mark(self, call: str, idx: list[int]) -> None:
        """Record that these results reached the driver (before they are handed on to be stored)."""
        if self._progress is not None and call:
            _ray().get(self._progress.mark.remote(call, idx))

    def _stream(self, kind: str, items: list[dict[str, Any]], params: SamplingParams | None, call: str = ""):
        """Yield one list of ``(index, result JSON)`` per block as blocks reach the driver."""
        ray = _ray()
        blocks = max(1, math.ceil(len(items) / self.batch_size))
        ds = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            _Replica,
            fn_constructor_kwargs={"spec": self.spec.model_dump(mode="json"), "kind": kind,
                                   "params": params.model_dump(mode="json") if params is not None else None,
                                   "progress": self._progress_actor() if call else None, "call": call},
            batch_size=self.batch_size,
            compute=ray.data.ActorPoolStrategy(size=min(self.replicas, blocks)),
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            batch_format="numpy",
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield list(zip(batch["i"], batch["result"]))

    def _map(self, kind: str, requests: Sequence[Any], params: SamplingParams | None,
             decode: Callable[[dict[str, Any]], Any], on_result: Callable[[int, Any], None] | None,
             failed: Callable[[str], Any] | None = None) -> list[Any]:
        if not requests:
            return []
        connect(self.address)
        import uuid

        call = uuid.uuid4().hex
        encoded = [json.dumps(r, ensure_ascii=False) for r in requests]
        out: list[Any] = [None] * len(requests)
        done = [False] * len(requests)
        reason = ""
        for _attempt in range(self.max_retries + 1):
            items = [{"i": i, "request": encoded[i]} for i in range(len(requests)) if not done[i]]
            if not items:
                break
            try:
                for block in self._stream(kind, items, params, call):
                    # a rerun batch returns "null" for what already arrived: keep the first result
                    fresh = [(int(i), r) for i, r in block if not done[int(i)] and r != "null"]
                    if not fresh:
                        continue
                    self._mark(call, [i for i, _ in fresh])  # marked before stored: see _Replica.__call__
                    for i, r in fresh:
                        res = decode(json.loads(r))
                        out[i], done[i] = res, True
                        if on_result is not None:
                            on_result(i, res)
            except _retryable() as exc:
                reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
                self.failed_tries.append(reason)
        if self._progress is not None:
            self._progress.forget.remote(call)
        if not all(done):
            if failed is None:
                raise PgScoreError(f"Ray job for {self.spec.short()} failed {self.max_retries + 1} times: {reason}")
            for i in range(len(requests)):
                if not done[i]:
                    out[i] = failed(f"ray: gave up after {self.max_retries + 1} tries: {reason}")
                    if on_result is not None:
                        on_result(i, out[i])
        return out

    def chat(self, conversations: Sequence[Conversation], params: SamplingParams,
             on_result: Callable[[int, Any], None] | None = None) -> list[Generation]:
        return self._map("chat", [list(c) for c in conversations], params, lambda d: Generation(**d), on_result,
                         lambda why: Generation(text="", error=why))

    def complete(self, prompts: Sequence[str], params: SamplingParams,
                 on_result: Callable[[int, Any], None] | None = None) -> list[Generation]:
        return self._map("complete", list(prompts), params, lambda d: Generation(**d), on_result,
                         lambda why: Generation(text="", error=why))

    def loglikelihood(self, requests: Sequence[tuple[str, str]],
                      on_result: Callable[[int, Any], None] | None = None) -> list[ContinuationScore]:
        return self._map("loglikelihood", [list(r) for r in requests], None, lambda d: ContinuationScore(**d),
                         on_result, lambda why: ContinuationScore(logprob=float("nan"), n_tokens=0))

    # ---- small calls: one long-lived helper actor (not a Ray Data job per call) -----------------
    def _call_helper(self, kind: str, reqs: list[Any]) -> list[Any]:
        ray = _ray()
        connect(self.address)
        if self._helper is None:
            self._helper = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_Helper).remote(
                self.spec.model_dump(mode="json"))
        return ray.get(self._helper.run.remote(kind, reqs, None))

    @property
    def has_chat_template(self) -> bool:
        if self._has_template is None:
            self._has_template = bool(self._call_helper("has_chat_template", [None])[0])
        return self._has_template

    def render_chat(self, conversation: Conversation) -> str | None:
        return self._call_helper("render_chat", [list(conversation)])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [int(n) for n in self._call_helper("count_tokens", list(texts))]

    def close(self) -> None:
        for name in ("_helper", "_progress"):
            actor = getattr(self, name)
            if actor is not None:
                try:
                    _ray().kill(actor)
                except Exception:  # pragma: no cover - cluster already gone
                    pass
                setattr(self, name, None)


def llm_sampling_params(params: SamplingParams) -> dict[str, Any]:
    """``SamplingParams`` as the ``sampling_params`` dict of a ``ray.data.llm`` vLLM row (vLLM's own names;
    structured output as ``structured_outputs: {json: schema}``, the form Ray >= 2.50 passes to vLLM)."""
    out: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p,
                           "max_tokens": params.max_tokens}
    if params.top_k is not None:
        out["top_k"] = params.top_k
    if params.seed is not None:
        out["seed"] = params.seed
    if params.stop:
        out["stop"] = list(params.stop)
    if params.json_schema is not None:
        out["structured_outputs"] = {"json": params.json_schema}
    return out


def llm_processor_config(spec: ModelSpec | str | dict, *, replicas: int = 1, batch_size: int = 64,
                         num_gpus: float = 1.0, chat: bool = True):
    """The ``ray.data.llm.vLLMEngineProcessorConfig`` for ``spec`` (a ``vllm`` spec: ``spec.model`` is the
    model source; ``options.engine_args`` go to the engine). ``should_continue_on_error`` is on: Ray Data's
    LLM processor otherwise fails the whole job on one bad row (ray-project/ray#52449); here a failed row
    comes back with ``__inference_error__`` and becomes a failed result with that reason."""
    _ray()
    try:
        from ray.data.llm import vLLMEngineProcessorConfig
    except ImportError as exc:
        raise PgScoreError(f"ray.data.llm is not available ({exc.name or exc}): pip install 'ray[data,llm]'") from exc
    spec = ModelSpec.parse(spec)
    engine_kwargs = dict(spec.options.get("engine_args") or {})
    if spec.max_context and "max_model_len" not in engine_kwargs:
        engine_kwargs["max_model_len"] = spec.max_context
    if spec.dtype and "dtype" not in engine_kwargs:
        engine_kwargs["dtype"] = spec.dtype
    tp = int(engine_kwargs.get("tensor_parallel_size", 1)) * int(engine_kwargs.get("pipeline_parallel_size", 1))
    if num_gpus and tp > 1 and num_gpus < tp:
        raise PgScoreError(f"{spec.short()}: tensor/pipeline parallel size {tp} needs num_gpus >= {tp} per replica")
    return vLLMEngineProcessorConfig(
        model_source=spec.model, engine_kwargs=engine_kwargs, concurrency=replicas, batch_size=batch_size,
        should_continue_on_error=True, chat_template_stage=chat, tokenize_stage=chat, detokenize_stage=True)


def llm_rows(kind: str, requests: Sequence[Any], params: SamplingParams) -> list[dict[str, Any]]:
    """Input rows for the LLM processor: ``i`` (position), ``messages`` (chat) or ``prompt`` (complete)."""
    sampling = llm_sampling_params(params)
    if kind == "chat":
        return [{"i": i, "messages": [dict(m) for m in c], "sampling_params": sampling}
                for i, c in enumerate(requests)]
    if kind == "complete":
        return [{"i": i, "prompt": str(p), "sampling_params": sampling} for i, p in enumerate(requests)]
    raise PgScoreError(f"the Ray Data LLM processor runs chat and complete, not {kind}")


def llm_result(row: dict[str, Any], max_tokens: int | None = None) -> Generation:
    """One processor output row as a :class:`Generation` (an ``__inference_error__`` becomes ``error``)."""
    err = row.get("__inference_error__") or None
    if err:
        return Generation(text="", error=f"ray.data.llm: {str(err)[:500]}")
    n_out = int(row.get("num_generated_tokens") or 0)
    finish = "length" if max_tokens is not None and n_out >= max_tokens else "stop"
    return Generation(text=str(row.get("generated_text") or ""), prompt_tokens=int(row.get("num_input_tokens") or 0),
                      completion_tokens=n_out, finish_reason=finish)


def vllm_processor(spec: ModelSpec | str | dict, params: SamplingParams, *, replicas: int = 1,
                   batch_size: int = 64, messages_column: str = "messages"):
    """A ``ray.data.llm`` vLLM processor: ``processor(ds)`` adds ``response`` to each row of ``ds``.

    Rows need ``messages_column`` (OpenAI chat messages). Engine options come from
    ``spec.options["engine_args"]``. Needs GPUs on the Ray workers and vllm installed there.
    """
    from ray.data.llm import build_processor

    config = llm_processor_config(spec, replicas=replicas, batch_size=batch_size)
    sampling = llm_sampling_params(params)
    return build_processor(
        config,
        preprocess=lambda row: dict(messages=row[messages_column], sampling_params=sampling),
        postprocess=lambda row: dict(response=row["generated_text"], error=row.get("__inference_error__") or "",
                                     **row),
    )


class RayLLMModel(RayModel):
    """A ``vllm`` spec on GPU workers through Ray Data's LLM processor (``ray.data.llm``): chat and
    complete run as one processor job per batched call, ``replicas`` vLLM engines with ``num_gpus``
    each; log-likelihoods (perplexity, graded evaluation) run on :class:`RayModel` replicas of the
    ``vllm`` backend (``prompt_logprobs``). Failed rows are failed results with their reason; a job that
    dies (an engine or node lost) is retried for the rows that did not come back.
    """

    def _llm_map(self, kind: str, requests: Sequence[Any], params: SamplingParams,
                 on_result: Callable[[int, Any], None] | None) -> list[Generation]:
        if not requests:
            return []
        ray = _ray()
        from ray.data.llm import build_processor

        connect(self.address)
        processor = build_processor(
            llm_processor_config(self.spec, replicas=self.replicas, batch_size=self.batch_size,
                                 num_gpus=self.num_gpus, chat=kind == "chat"),
            postprocess=lambda row: {"i": row["i"], "generated_text": row.get("generated_text"),
                                     "num_input_tokens": row.get("num_input_tokens"),
                                     "num_generated_tokens": row.get("num_generated_tokens"),
                                     "__inference_error__": row.get("__inference_error__") or ""})
        rows = llm_rows(kind, requests, params)
        out: list[Any] = [None] * len(requests)
        done = [False] * len(requests)
        reason = ""
        for _attempt in range(self.max_retries + 1):
            todo = [r for r in rows if not done[r["i"]]]
            if not todo:
                break
            try:
                ds = processor(ray.data.from_items(todo))
                for row in ds.iter_rows():
                    i = int(row["i"])
                    if done[i]:
                        continue
                    out[i], done[i] = llm_result(row, params.max_tokens), True
                    if on_result is not None:
                        on_result(i, out[i])
            except _retryable() as exc:
                reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
                self.failed_tries.append(reason)
        for i in range(len(requests)):
            if not done[i]:
                out[i] = Generation(text="", error=f"ray.data.llm: gave up after {self.max_retries + 1} tries: {reason}")
                if on_result is not None:
                    on_result(i, out[i])
        return out

    def chat(self, conversations: Sequence[Conversation], params: SamplingParams,
             on_result: Callable[[int, Any], None] | None = None) -> list[Generation]:
        return self._llm_map("chat", [list(c) for c in conversations], params, on_result)

    def complete(self, prompts: Sequence[str], params: SamplingParams,
                 on_result: Callable[[int, Any], None] | None = None) -> list[Generation]:
        return self._llm_map("complete", list(prompts), params, on_result)

    # small calls from the model's tokenizer in the driver (a helper actor would need a GPU for vLLM)
    def _tokenizer(self):
        if getattr(self, "_tok", None) is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.spec.model)
        return self._tok

    @property
    def has_chat_template(self) -> bool:
        if self._has_template is None:
            self._has_template = bool(getattr(self._tokenizer(), "chat_template", None))
        return self._has_template

    def render_chat(self, conversation: Conversation) -> str | None:
        if not self.has_chat_template:
            return None
        return self._tokenizer().apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self._tokenizer()(list(texts), add_special_tokens=False)["input_ids"]]


class LocalCluster:
    """A real multi-node Ray cluster on this machine: a head and ``workers`` worker nodes, each its own
    ``ray start --block`` (own raylet, object store and workers), on loopback addresses 127.0.0.1,
    127.0.0.2, ... (for tests, benchmarks and trying a cluster on one box).

    Every node runs in its own process group, so :meth:`stop` and :meth:`kill_worker` signal only the
    processes this object started (never ``ray stop``, which stops every Ray on the machine). Worker
    nodes start one after another: raylets started at the same moment on one host race for the same
    socket name in the shared session folder.
    """

    def __init__(self, workers: int = 2, *, cpus_per_worker: int = 1, head_cpus: int = 0,
                 object_store_mb: int = 100, temp_dir: str | None = None, port: int | None = None) -> None:
        import tempfile

        self.n_workers, self.cpus_per_worker, self.head_cpus = workers, cpus_per_worker, head_cpus
        self.object_store = int(object_store_mb) * 1_000_000
        # a short path: unix socket paths are limited to ~107 bytes
        self.temp_dir = temp_dir or tempfile.mkdtemp(prefix="pgray", dir="/tmp")
        self.port = port or _free_port()
        self.head: Any = None
        self.workers: list[Any] = []  # Popen per worker node (None once killed)
        self._next_ip = 2
        self.logs: list[str] = []
        self._keep_logs = False  # set when a node failed to start: its logs stay for reading

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for the nodes and for drivers that join them. Ray >= 2.52 turns token auth on for a
        ``ray start`` when ``~/.ray/auth_token`` exists (any local ``ray.init()`` writes one), and a driver
        that does not send the token is refused; this loopback-only cluster says the mode explicitly
        (``$RAY_AUTH_MODE`` if set, else ``disabled``)."""
        return {"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}

    def _ray_bin(self) -> str:
        import shutil
        import sys

        cand = os.path.join(os.path.dirname(sys.executable), "ray")
        return cand if os.path.exists(cand) else (shutil.which("ray") or "ray")

    def _popen(self, args: list[str], log_name: str):
        import subprocess

        log = os.path.join(self.temp_dir, log_name)
        self.logs.append(log)
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **self.env)
        with open(log, "ab") as fh:
            return subprocess.Popen([self._ray_bin(), "start", "--block", "--disable-usage-stats", *args],
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def _alive_nodes(self) -> int:
        import subprocess
        import sys

        code = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))")
        try:
            r = subprocess.run([sys.executable, "-c", code, self.address], capture_output=True, text=True,
                               timeout=60, env=dict(os.environ, **self.env))
            return int(r.stdout.strip().splitlines()[-1])
        except Exception:
            return -1

    def _wait_nodes(self, n: int, proc: Any = None, timeout: float | None = None) -> None:
        import time

        timeout = timeout if timeout is not None else float(os.environ.get("PGSCORE_RAY_START_TIMEOUT", "300"))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                raise PgScoreError(f"local Ray cluster: `ray start` exited with {proc.returncode}: {self._log_tail()}")
            if self._alive_nodes() >= n:
                return
            time.sleep(1.0)
        raise PgScoreError(f"local Ray cluster: {n} nodes did not come up in {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        """The last meaningful line of the newest node log (kept: stop() then leaves the folder)."""
        self._keep_logs = True
        for log in reversed(self.logs):
            try:
                lines = [ln.strip() for ln in open(log, encoding="utf-8", errors="replace") if ln.strip()]
            except OSError:
                continue
            if lines:
                return f"{lines[-1][:300]} (logs: {os.path.dirname(log)})"
        return f"(no log output; logs: {self.temp_dir})"

    def start(self) -> "LocalCluster":
        self.head = self._popen(["--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}",
                                 f"--object-store-memory={self.object_store}", "--include-dashboard=false",
                                 f"--dashboard-port={_free_port()}", f"--temp-dir={self.temp_dir}",
                                 "--node-ip-address=127.0.0.1"], "head.log")
        self._wait_nodes(1, self.head)
        for _ in range(self.n_workers):
            self.add_worker()
        return self

    def add_worker(self) -> int:
        """Start one more worker node; returns its index in :attr:`workers`."""
        ip = f"127.0.0.{self._next_ip}"
        self._next_ip += 1
        alive = sum(1 for w in self.workers if w is not None and w.poll() is None) + 1
        self.workers.append(self._popen([f"--address={self.address}", f"--num-cpus={self.cpus_per_worker}",
                                         f"--object-store-memory={self.object_store}",
                                         f"--node-ip-address={ip}"], f"worker-{ip}.log"))
        self._wait_nodes(alive + 1, self.workers[-1])
        return len(self.workers) - 1

    def raylet_pid(self, index: int) -> int | None:
        """The pid of worker ``index``'s raylet (a child of its ``ray start`` process)."""
        import psutil

        w = self.workers[index]
        if w is None:
            return None
        for child in psutil.Process(w.pid).children(recursive=True):
            try:
                if os.path.basename(child.exe()) == "raylet" or child.name() == "raylet":
                    return child.pid
            except psutil.Error:
                continue
        return None

    def kill_worker(self, index: int) -> int:
        """SIGKILL worker ``index``'s raylet (the node dies; ``ray start --block`` then ends its other
        processes), then its whole process group. Returns the raylet pid that was killed."""
        import signal

        pid = self.raylet_pid(index)
        if pid is None:
            raise PgScoreError(f"worker {index} has no raylet")
        os.kill(pid, signal.SIGKILL)
        w = self.workers[index]
        try:
            w.wait(timeout=30)
        except Exception:
            pass
        self._killpg(w)
        self.workers[index] = None
        return pid

    @staticmethod
    def _killpg(proc: Any) -> None:
        import signal

        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this object created (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=30)
        except Exception:
            pass

    def stop(self) -> None:
        import shutil

        for w in self.workers:
            self._killpg(w)
        self.workers = []
        self._killpg(self.head)
        self.head = None
        if not self._keep_logs:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
