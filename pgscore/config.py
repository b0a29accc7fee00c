"""The experiment file (``pgscore run EXPERIMENT.yaml``), validated by pydantic.

Each stage owns its section model (``pgscore/<stage>/config.py``); this module assembles them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pgscore.errors import PgScoreError
from pgscore.engine import EngineConfig
from pgscore.evaluation.config import EvaluationConfig
from pgscore.metrics.config import MetricsConfig
from pgscore.models.base import ModelSpec, SamplingParams
from pgscore.seed.config import SeedConfig
from pgscore.student.config import StudentConfig
from pgscore.synthesis.config import SynthesisConfig


class TeacherConfig(BaseModel):
    """A teacher: a display name, the model spec, and its decoding settings."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: ModelSpec
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    family: str | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _parse_model(cls, v: Any) -> ModelSpec:
        return ModelSpec.parse(v)


class ScoringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float = Field(0.5, ge=0.0, le=1.0)  # lambda: PG = w*PGR + (1-w)*Z
    # lenient: keep a PGR whose reference-base gap is inside 2 SE (flagged pgr_reliable=false); strict: blank it
    pgr_guard: Literal["lenient", "strict"] = "lenient"


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    output_dir: str | None = None  # default: results/<name>
    languages: list[str] = Field(min_length=1)
    teachers: list[TeacherConfig] = Field(min_length=1)
    seed: SeedConfig = Field(default_factory=SeedConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    engine: EngineConfig | None = None  # where model calls run (pgscore/engine.py); None = this process

    @field_validator("languages")
    @classmethod
    def _check_languages(cls, v: list[str]) -> list[str]:
        from pgscore.languages import experiment_tag

        out = []
        for code in v:
            try:
                out.append(experiment_tag(code))
            except PgScoreError as exc:
                raise ValueError(str(exc)) from None
        if len(set(out)) != len(out):
            raise ValueError("languages repeat")
        return out

    @field_validator("teachers")
    @classmethod
    def _unique_teachers(cls, v: list[TeacherConfig]) -> list[TeacherConfig]:
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"teacher names repeat: {', '.join(dup)}")
        return v

    def results_dir(self, base: Path | None = None) -> Path:
        return Path(self.output_dir) if self.output_dir else (base or Path("results")) / self.name


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{loc}: {msg}{more}"


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment YAML; any problem is a one-line :class:`PgScoreError`."""
    p = Path(path)
    if not p.is_file():
        raise PgScoreError(f"experiment file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PgScoreError(f"{p}: not valid YAML{where}") from exc
    if not isinstance(raw, dict):
        raise PgScoreError(f"{p}: expected a mapping at the top level")
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        raise PgScoreError(f"{p}: {_first_error(exc)}") from exc
