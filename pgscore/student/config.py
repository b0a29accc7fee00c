"""Experiment-file section ``student`` (owned by the student stage)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SEED_SFT = "seed-sft"  # reference = the base fine-tuned on the seed data (same budget as the students)
TASK_SFT = "task-sft"  # reference = the base fine-tuned on the benchmarks' own training splits
TRAINED_REFERENCES = (SEED_SFT, TASK_SFT)  # references the students stage trains itself


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = 5e-5
    effective_batch_size: int = 32
    per_device_batch_size: int = 4
    epochs: float = 2.0
    max_steps: int | None = None  # overrides epochs when set (embedded default: a few steps)
    weight_decay: float = 0.001
    lr_scheduler: str = "linear"
    max_length: int = 1024
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)  # 0 makes multi-process and single-process runs match
    qlora: bool = False
    examples_per_dataset: int | None = 10000
    # equal rows per method (the paper); false: every usable row, whatever the method mix
    balance_methods: bool = True
    seed: int = 0
    logging_steps: int = 1
    save_steps: int = 200  # Trainer checkpoints (resume of long runs)
    gradient_checkpointing: bool = False
    # Freeze the input embedding (with tied weights, e.g. Gemma 3 and SmolLM2, the LM head too): the 262k x 640
    # embedding is ~63% of Gemma 3 270M, so its gradient and AdamW update are most of a step on CPU.
    # With LoRA/QLoRA the base weights, embeddings included, are frozen anyway (then it changes nothing).
    freeze_embeddings: bool = False
    # Full fine-tuning: compute the LM head only at positions that carry a label (the response tokens),
    # same loss and gradients as TRL's path; False = TRL's own compute_loss (see docs/training.md).
    selective_logits: bool = True


def spec_short_name(spec: "str | dict") -> str:
    """A model's short name for tables: ``tiny:gemma3-270m`` -> ``gemma3-270m``,
    ``hf:google/gemma-3-1b-pt`` -> ``gemma-3-1b-pt``, ``/models/olmo.gguf`` -> ``olmo``."""
    from pgscore.models.base import ModelSpec

    model = ModelSpec.parse(spec).model.rstrip("/\\")
    name = PurePosixPath(model.replace("\\", "/")).name or model
    for ext in (".gguf", ".safetensors", ".bin"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name or model


class StudentBase(BaseModel):
    """One student base model and its reference (contract 3). ``name`` is the ``student`` key in tables."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""  # "" = the base model's short name (filled by StudentConfig.resolved_bases)
    base: str | dict
    # instruct model of the same family, "seed-sft", "task-sft" (pgscore/stages/students.py), or None (PGR undefined)
    reference: str | dict | None = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        v = v.strip()
        if v and (v == "all" or "/" in v or "\\" in v):
            raise ValueError(f"student base name {v!r} must not be 'all' nor contain a slash")
        return v

    def resolved(self) -> "StudentBase":
        return self if self.name else self.model_copy(update={"name": spec_short_name(self.base)})


def parse_student_bases(items: "list[str]") -> list[StudentBase]:
    """``NAME=SPEC`` or ``SPEC`` strings (CLI) -> resolved StudentBase list; names must be distinct."""
    from pgscore.errors import PgScoreError

    out = []
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or ":" in name or "/" in name:  # a bare spec (its own ':' or '/' come before any '=')
            name, spec = "", item
        if not spec.strip():
            raise PgScoreError(f"--student-base takes NAME=SPEC or SPEC, got {item!r}")
        try:
            out.append(StudentBase(name=name.strip(), base=spec.strip()).resolved())
        except ValueError as exc:
            raise PgScoreError(f"--student-base {item!r}: {str(exc).splitlines()[-1].strip()}") from exc
    names = [b.name for b in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PgScoreError(f"--student-base names repeat: {', '.join(dup)} (write NAME=SPEC)")
    return out


class StudentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str | dict | None = None  # student base model spec; None = no student stage
    reference: str | dict | None = None  # instruct model of the same family
    # several student bases (paper §3.2: perplexity and PG per base); exclusive with base/reference
    bases: list[StudentBase] | None = None
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    # reference "seed-sft" / "task-sft" trained here: its own settings (None = the students' `training`)
    reference_training: TrainingConfig | None = None
    task_sft_examples: int = Field(256, ge=2)  # "task-sft": training pairs per benchmark and language
    # "task-sft": one reference trained on every language's pairs together ("joint", like the one instruct
    # model the paper uses for all languages), or one per language ("per_language")
    task_sft_scope: Literal["joint", "per_language"] = "joint"
    top_k: int | None = None  # train students only for the top-k teachers predicted by `screen`

    @model_validator(mode="after")
    def _bases_ok(self) -> "StudentConfig":
        if self.bases is not None:
            if self.base is not None or self.reference is not None:
                raise ValueError("set either student.base/student.reference or student.bases, not both")
            if not self.bases:
                raise ValueError("student.bases is empty (remove it or list at least one base)")
            names = [b.resolved().name for b in self.bases]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"student.bases names repeat: {', '.join(dup)} (give each base a distinct name)")
        return self

    def resolved_bases(self) -> list[StudentBase]:
        """Every student base with its name filled: ``bases`` if given, else the single ``base``/``reference``
        pair (``[]`` when there is no student)."""
        if self.bases is not None:
            return [b.resolved() for b in self.bases]
        if self.base is None:
            return []
        return [StudentBase(base=self.base, reference=self.reference).resolved()]
