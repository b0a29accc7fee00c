"""Per-teacher decoding settings, with the paper's recommended settings per model family."""

from __future__ import annotations

from typing import Any

from pgscore.families import decoding_family
from pgscore.models.base import SamplingParams

# Recommended sampling per family (Miranda et al. 2026, following each model's own recommendation).
# Fields left out keep the SamplingParams defaults (temperature 0.8, top-p 0.9, no top-k).
FAMILY_SETTINGS: dict[str, dict[str, Any]] = {
    "gemma3": {"temperature": 1.0, "top_p": 0.95, "top_k": 64},
    "llama3.1": {"temperature": 0.6, "top_p": 0.9},
    "command-a": {"temperature": 0.3},
    "aya-expanse": {"temperature": 0.3},
    "granite": {"temperature": 0.0},
    "default": {"temperature": 0.8, "top_p": 0.9},
}

def infer_family(*names: str | None) -> str:
    """The family a model name belongs to (``"default"`` when none matches): ``pgscore.families``."""
    return decoding_family(*names)


def recommended_params(family: str, base: SamplingParams | None = None) -> SamplingParams:
    """``base`` (or the defaults) with the family's recommended settings applied."""
    base = base or SamplingParams()
    return SamplingParams.model_validate({**base.model_dump(), **FAMILY_SETTINGS.get(family, {})})


def teacher_params(teacher: Any, max_tokens: int | None = None) -> SamplingParams:
    """A teacher's decoding settings: its own ``sampling`` when given explicitly, else its family's
    recommendation (``family`` or inferred from the model name), else the defaults."""
    if "sampling" in teacher.model_fields_set:
        params = teacher.sampling
    else:
        params = recommended_params(infer_family(teacher.family, teacher.model.model, teacher.name))
    if max_tokens is not None:
        params = SamplingParams.model_validate({**params.model_dump(), "max_tokens": max_tokens})
    return params
