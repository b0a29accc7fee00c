"""Experiment-file section ``synthesis`` (owned by the synthesis stage)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

METHODS = ("generate", "translate", "respond")
# The Generate task categories offered to the teacher (paper preset: the teacher picks one at random; legacy
# preset: one is drawn per row and dictated). The ten categories of the paper's Generate prompt (arXiv
# 2604.11290, Appendix J, Figure 10), in its order and with its names.
TASK_TYPES = (
    "Logical reasoning / error analysis",
    "Math or quantitative reasoning with explanation",
    "Classification or labeling",
    "Dialogue or role-play",
    "Translation or paraphrasing with constraints",
    "Procedural instructions (step-by-step)",
    "Grammar correction or linguistic analysis",
    "Short-form creative output (≤50 words)",
    "Knowledge recall with verification or correction",
    "Cultural or pragmatic judgment",
)
# The categories pgscore's first prompts used (the ``legacy`` template preset keeps them, so its prompts stay
# byte-identical to those of earlier pgscore versions).
LEGACY_TASK_TYPES = (
    "reasoning", "math", "classification", "dialogue", "translation with constraints", "procedure", "grammar",
    "short creative writing", "knowledge", "cultural judgment",
)


class SynthesisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    methods: dict[str, float] = Field(default_factory=lambda: {m: 1.0 for m in METHODS})  # relative weights
    examples_per_cell: int = Field(30, ge=1)  # per teacher x language x trial, split across methods
    trials: int = Field(1, ge=1)
    k_shot: int = Field(3, ge=1)
    seed: int = 0
    task_types: list[str] = Field(default_factory=lambda: list(TASK_TYPES))
    batch_size: int = Field(8, ge=1)  # rows per model call (and per persisted shard)
    max_tokens: int | None = Field(None, ge=1)  # overrides every teacher's max_tokens when set
    rendering: Literal["auto", "chat", "completion"] = "auto"  # auto: chat if the model has a chat template
    structured_output: bool = False  # pass a JSON schema to backends that support constrained decoding
    reject_copies: bool = True  # Generate repeating an example / Translate returning the English: failures
    # prompt templates: "paper" (default), "legacy" (pgscore's pre-paper prompts) or a folder of *.j2 files that
    # overrides the paper preset file by file (see docs/templates.md)
    templates: str = "paper"
    # Respond: wrap the seed prompt in the template's meta-instruction (respond_chat.j2) or send it alone
    # (respond_bare_chat.j2)
    respond_instruction: bool = True

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # a dumped config (results/<x>/experiment.yaml) carries the derived hash: accept it back
        if isinstance(data, dict) and "templates_hash" in data:
            data = {k: v for k, v in data.items() if k != "templates_hash"}
        return data

    @model_validator(mode="after")
    def _legacy_task_types(self) -> "SynthesisConfig":
        # the legacy preset dictates its own (pre-paper) categories unless the user lists task_types
        if self.templates == "legacy" and "task_types" not in self.model_fields_set:
            self.task_types = list(LEGACY_TASK_TYPES)
        return self

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, v: str) -> str:
        from pgscore.errors import PgScoreError
        from pgscore.synthesis.templates import resolved_files

        try:
            resolved_files(v)
        except PgScoreError as exc:
            raise ValueError(str(exc)) from None
        return v

    @computed_field  # in model_dump, hence in the synthesize stage's fingerprint
    @property
    def templates_hash(self) -> str:
        """Content hash of the resolved template files: editing a template re-runs synthesis."""
        from pgscore.errors import PgScoreError
        from pgscore.synthesis.templates import template_hash

        try:
            return template_hash(self.templates)
        except PgScoreError:  # the folder went away after validation: synthesis re-runs and says why
            return "missing"

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(set(v) - set(METHODS))
        if bad:
            raise ValueError(f"unknown synthesis method(s) {', '.join(bad)}; use {', '.join(METHODS)}")
        if any(w < 0 for w in v.values()) or not any(w > 0 for w in v.values()):
            raise ValueError("method weights must be >= 0 with at least one > 0")
        return v
