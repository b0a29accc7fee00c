"""Experiment-file section ``evaluation`` (owned by the evaluation stage)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    benchmarks: list[str] = Field(default_factory=lambda: ["global_mmlu_lite", "m_rewardbench", "mgsm"])
    limit: int | None = None  # examples per benchmark x language (None = all)
    seed: int = 0
    # which score feeds PGR: "accuracy" (each benchmark's primary metric, the paper) or "graded"
    # (probability of the gold answer, normalised per token: a smooth signal for tiny students)
    signal: Literal["accuracy", "graded"] = "accuracy"
    # pgr_reliable = (reference - base) >= pgr_k x its bootstrap SE; unreliable PGRs keep their value
    pgr_k: float = Field(2.0, ge=0.0)
    bootstrap: int = Field(1000, ge=10)  # paired bootstrap resamples for the PGR interval
    # benchmark -> prompt formulation: global_mmlu_lite / m_rewardbench: "mcf" (default, the paper) or "cloze";
    # mgsm: "cot" (default, the paper's 5-shot chain of thought) or "number" (the authors' 0-shot number-only)
    formulation: dict[str, Literal["mcf", "cloze", "cot", "number"]] = Field(default_factory=dict)
    # benchmark -> hub revision (commit sha or branch) passed to datasets.load_dataset; default "main"
    hub_revisions: dict[str, str] = Field(default_factory=dict)
    hub: bool = True  # load missing benchmark data from the Hugging Face hub when reachable
    data_files: dict[str, str] = Field(default_factory=dict)  # benchmark -> local file in its hub schema
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int = Field(256, ge=1)  # generation budget for MGSM chain of thought
