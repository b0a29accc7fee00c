"""Experiment-file section ``seed`` (owned by the seed stage)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SEED_KINDS = ("pairs", "prompts", "english_prompts")


class SeedSource(BaseModel):
    """One seed source: a local file (JSONL/CSV/Parquet), a Hugging Face dataset id, or ``builtin``.

    ``preset`` fills in the rest for known corpora (``aya``, ``wildchat``, ``tulu3``, ``euroblocks``,
    ``vicuna80``, ``cendol``, ``seahelm_ifeval``, ``gsm8k``...; see ``pgscore.seed.presets``); fields given
    explicitly override it. ``path`` may hold ``{data}`` (the offline data folder), ``{lang}`` (one file per
    language) and glob patterns. ``columns`` maps our names (``prompt``, ``response``, ``language``,
    ``messages``, ``prompt_en``) to source columns; dotted paths reach into nested fields
    (``prompts.0.text``). ``language: auto`` labels rows with langid.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str | None = None  # local file/folder, or "builtin" for pgscore's own shipped pairs
    hf_dataset: str | None = None  # e.g. "CohereForAI/aya_dataset" (needs hub access)
    hf_config: str | None = None
    split: str = "train"
    columns: dict[str, str] = Field(default_factory=dict)  # our name -> source column (prompt, response, language)
    language: str | None = None  # fixed language for sources with one language and no column
    quota: int | None = Field(None, ge=1)  # max rows per language from this source
    kind: str = "pairs"  # "pairs" (prompt+response), "prompts" (prompt only), "english_prompts"
    preset: str | None = None
    optional: bool = False  # a missing file/data folder is a warning, not an error
    max_scan: int | None = Field(None, ge=1)  # hub sources: stop streaming after this many rows
    quotas: dict[str, int] = Field(default_factory=dict)  # per-language quotas (override ``quota``)
    # source filters (rows failing them are counted as ``source_filter`` drops): keep rows whose field
    # equals one of the values; drop rows whose field contains one of the texts, case-insensitively
    # (EuroBlocks' Magpie rows, WildChat's "EnglishTitle" API-call prompts)
    where: dict[str, list[str]] = Field(default_factory=dict)
    exclude_contains: dict[str, str | list[str]] = Field(default_factory=dict)
    # a built-in record transform: ``helpsteer3_preferred`` picks the preferred of response1/response2
    transform: Literal["helpsteer3_preferred"] | None = None

    def quota_for(self, language: str) -> int | None:
        return self.quotas.get(language, self.quota)


def _default_sources() -> list[SeedSource]:
    return [
        SeedSource(name="pgscore-pairs", path="builtin"),
        SeedSource(name="vicuna80", preset="vicuna80", optional=True),
    ]


def _default_english() -> list[SeedSource]:
    return [
        SeedSource(name="gsm8k", preset="gsm8k", quota=80, optional=True),
        SeedSource(name="vicuna80-en", preset="vicuna80_en", optional=True),
    ]


class SeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # "paper": the paper's seed recipe (Table 6 sources and per-language quotas, pgscore.seed.recipes);
    # it replaces ``sources`` and ``english_sources``
    recipe: Literal["paper"] | None = None
    recipe_dir: str | None = None  # recipe sources read local copies DIR/<preset>.{jsonl,json,parquet,csv}
    # recipe source name -> quota for every language, or {language: quota} for some (0: none)
    recipe_quotas: dict[str, int | dict[str, int]] = Field(default_factory=dict)
    sources: list[SeedSource] = Field(default_factory=_default_sources)
    english_sources: list[SeedSource] = Field(default_factory=_default_english)
    per_language: int | None = Field(None, ge=1)
    langid_filter: bool = True
    dedupe: bool = True
    langid_min_prob: float = Field(0.01, ge=0.0, le=1.0)  # drop rows whose claimed language is below this
    seed: int = 0  # quota sampling
