"""Where a run's model calls execute: in this process, or on a Ray cluster (the experiment's ``engine:``).

``load_engine_model(spec, engine)`` is the one loader the stage context uses (contract 4): with no
engine config it is :func:`pgscore.models.load_model`; with ``engine.ray`` set the model becomes a
:class:`pgscore.dist.RayModel` (replicas of the configured backend on the cluster's actors), or, for a
``vllm`` spec on GPU replicas, a :class:`pgscore.dist.RayLLMModel` (Ray Data's LLM processor). The stage
context wraps whatever comes back in :class:`pgscore.ledger.CachedModel`, so results stream back to the
driver and are committed to its ledger as they arrive.

``check_engine(engine)`` runs before any stage: it connects, checks the cluster has the CPUs/GPUs the
replicas need, and returns a one-line description of the cluster for the run's console.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pgscore.errors import PgScoreError
from pgscore.models.base import LanguageModel, ModelSpec


MODEL_STAGES = ("synthesize", "measure", "students")  # the stages of `pgscore run` that call models


class RayEngineConfig(BaseModel):
    """``engine.ray``: run model calls as Ray Data ``map_batches`` over ``replicas`` actors."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = None  # "auto" (after `ray start`), "ray://host:10001", "host:port"; None = local Ray
    replicas: int = Field(2, ge=1)
    num_gpus: float = Field(0.0, ge=0.0)  # per replica
    num_cpus: float = Field(1.0, ge=0.0)  # per replica
    batch_size: int = Field(32, ge=1)  # requests per map_batches call
    max_retries: int = Field(3, ge=0)  # whole-batch retries when an actor or node dies
    stages: list[str] | None = None  # stages whose models go on Ray; None = every stage
    processor: Literal["auto", "replicas", "vllm"] = "auto"  # vllm on GPU workers: ray.data.llm

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, v: list[str] | None) -> list[str] | None:
        bad = [s for s in v or [] if s not in MODEL_STAGES]
        if bad:
            raise ValueError(f"unknown stage {bad[0]!r}; stages with model calls: {', '.join(MODEL_STAGES)}")
        return v


class EngineConfig(BaseModel):
    """The experiment's ``engine:`` section. No section (or ``ray: null``) = everything in this process."""

    model_config = ConfigDict(extra="forbid")

    ray: RayEngineConfig | None = None


def _as_config(engine: "EngineConfig | dict | None") -> EngineConfig | None:
    if engine is None or isinstance(engine, EngineConfig):
        return engine
    return EngineConfig.model_validate(engine)


def uses_ray(engine: "EngineConfig | dict | None", stage: str | None = None) -> bool:
    engine = _as_config(engine)
    if engine is None or engine.ray is None:
        return False
    return engine.ray.stages is None or stage is None or stage in engine.ray.stages


def load_engine_model(spec: "ModelSpec | str | dict", engine: "EngineConfig | dict | None" = None, *,
                      stage: str | None = None) -> LanguageModel:
    """The model ``spec`` names, placed where ``engine`` says (contract 4)."""
    from pgscore.models import load_model

    engine = _as_config(engine)
    if not uses_ray(engine, stage):
        return load_model(spec)
    from pgscore.dist import RayLLMModel, RayModel

    r = engine.ray
    spec = ModelSpec.parse(spec)
    cls = RayLLMModel if use_llm_processor(spec, r) else RayModel
    return cls(spec, replicas=r.replicas, batch_size=r.batch_size, num_cpus=r.num_cpus, num_gpus=r.num_gpus,
               address=r.address, max_retries=r.max_retries)


def use_llm_processor(spec: "ModelSpec | str | dict", ray_cfg: RayEngineConfig) -> bool:
    """Whether ``spec`` runs through Ray Data's LLM processor (``ray.data.llm``, vLLM engines on GPU
    workers) rather than replicas of its own backend: ``processor: vllm``, or ``auto`` with a ``vllm``
    spec and GPUs per replica."""
    spec = ModelSpec.parse(spec)
    if ray_cfg.processor == "vllm":
        if spec.backend != "vllm":
            raise PgScoreError(f"engine.ray.processor: vllm needs vllm model specs, not {spec.short()}")
        return True
    return ray_cfg.processor == "auto" and spec.backend == "vllm" and ray_cfg.num_gpus > 0


def check_engine(engine: "EngineConfig | dict | None", specs: "list[ModelSpec | str | dict] | None" = None) -> str | None:
    """Up-front check, before any stage: connect to the cluster and verify that one replica fits on some
    node (CPUs, GPUs) and that Ray Data's LLM processor is importable where ``specs`` need it. Problems
    are a one-line :class:`PgScoreError`; returns a one-line description of the cluster (``None``
    without ``engine.ray``)."""
    engine = _as_config(engine)
    if engine is None or engine.ray is None:
        return None
    from pgscore.dist import cluster_summary, connect

    r = engine.ray
    where = r.address or "local"
    llm = [s for s in (specs or []) if use_llm_processor(s, r)]
    if llm:
        try:
            import ray.data.llm  # noqa: F401
        except ImportError as exc:
            raise PgScoreError(f"engine.ray: {ModelSpec.parse(llm[0]).short()} needs Ray Data's LLM processor, which "
                               f"is not importable ({exc.name or exc}): pip install 'ray[data,llm]' vllm") from None
    connect(r.address)
    c = cluster_summary()
    if c["max_node_cpus"] < r.num_cpus:
        raise PgScoreError(f"Ray cluster at {where} has no node with {r.num_cpus:g} CPUs for one replica "
                           f"(largest node: {c['max_node_cpus']:g}); lower engine.ray.num_cpus")
    if r.num_gpus > 0 and c["max_node_gpus"] < r.num_gpus:
        raise PgScoreError(f"Ray cluster at {where} has no node with {r.num_gpus:g} GPUs for one replica "
                           f"(largest node: {c['max_node_gpus']:g} GPUs); lower engine.ray.num_gpus or add GPU nodes")
    fit = [int(n["cpus"] // r.num_cpus) if r.num_cpus > 0 else r.replicas for n in c["per_node"]]
    if r.num_gpus > 0:
        fit = [min(f, int(n["gpus"] // r.num_gpus)) for f, n in zip(fit, c["per_node"])]
    at_once = min(r.replicas, sum(fit))
    note = "" if at_once >= r.replicas else f" (only {at_once} fit at once)"
    return (f"Ray cluster {where}: {c['nodes']} nodes, {c['cpus']:g} CPUs, {c['gpus']:g} GPUs; "
            f"{r.replicas} replicas x ({r.num_cpus:g} CPU, {r.num_gpus:g} GPU){note}")


def describe(engine: "EngineConfig | dict | None") -> dict[str, Any]:
    engine = _as_config(engine)
    return {} if engine is None else engine.model_dump(mode="json")
