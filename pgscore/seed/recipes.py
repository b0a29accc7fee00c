"""Seed recipes: whole seed configurations by name (``seed.recipe: paper``).

The ``paper`` recipe rebuilds the seed data of the Polyglot Score paper (Miranda, Vulić, Korhonen 2026,
arXiv 2604.11290, Appendix B, Table 6 "Seed dataset statistics"): its ten sources, with Table 6's row counts
as per-language quotas (:data:`PAPER_QUOTAS`), filtered as the authors' ``scripts/create_seed_dataset.py``
(ljvmiranda921/polyglot-teachers) does:

- target-language prompt-response pairs (Generate's examples, Respond's prompts): Aya Dataset, WildChat-4.8M
  (``language`` column), HelpSteer3 (``preference`` config, ``domain == multilingual``, the preferred
  response), EuroBlocks (its own ``language`` column, its Magpie rows dropped), CIDAR (Arabic), Cendol v2
  (Indonesian);
- target-language prompts only (Respond): OpenAssistant 2 (``role == prompter``);
- English prompts (Translate): Tülu 3 SFT (English rows by language ID), WildChat-4.8M (English rows),
  GSM8K (train) and Magpie-Pro-300K-Filtered.

Table 6 has the six paper languages and English. There a "-" cell is a quota of 0 (the paper took no rows
of that source for that language); a language outside Table 6 gets pgscore's own per-source quota
(:data:`OTHER_LANGUAGE_QUOTAS`). ``seed.recipe_quotas`` overrides either: ``{source: n}`` sets n for every
language (0 drops the source), ``{source: {language: n}}`` only the languages given. A quota is a ceiling:
a source with fewer rows gives what it has (the seed report shows it). Sources read the Hugging Face hub,
or local copies in the hub schema from ``seed.recipe_dir`` (``DIR/<preset>.jsonl``, ``.json``, ``.parquet``
or ``.csv``); a source that cannot be read is skipped with a warning.
"""

from __future__ import annotations

from pathlib import Path

from pgscore.errors import PgScoreError
from pgscore.seed.config import SeedConfig, SeedSource

#: the paper recipe's sources, in the order they fill a language (earlier sources win duplicates)
PAPER_SOURCES: tuple[tuple[str, str], ...] = (  # (source name, preset)
    ("aya", "aya"),
    ("wildchat-4.8m", "wildchat_4_8m"),
    ("helpsteer3", "helpsteer3"),
    ("euroblocks", "euroblocks"),
    ("cidar", "cidar"),
    ("cendol-v2", "cendol_v2"),
    ("oasst2", "oasst2"),
)
#: the English pool's sources (Table 6's English column); WildChat-4.8M is in both lists, one quota table
PAPER_ENGLISH_SOURCES: tuple[tuple[str, str], ...] = (
    ("tulu3", "tulu3"),
    ("wildchat-4.8m", "wildchat_4_8m"),
    ("gsm8k", "gsm8k_hub"),
    ("magpie-pro", "magpie_pro"),
)
#: Table 6's columns: English (the Translate pool) and the paper's six target languages
PAPER_LANGUAGES: tuple[str, ...] = ("en", "ar", "cs", "de", "es", "id", "ja")

#: Rows per language from each source: the cells of Table 6 of the paper (arXiv 2604.11290 v1, Appendix B,
#: p. 17), read from two text extractions of the paper's PDF that agree cell by cell (PDF sha256
#: 950f84f96cba1a132f0633cbaa3a3097c08be70d7345f9aa11ee6dbafcd72363). A language of PAPER_LANGUAGES
#: missing from a source's entry is a "-" cell: 0 rows. The authors' create_seed_dataset.py (the stored
#: versions we could reach, e.g. commits 80027c14ad942fc4aaf6e6d82ba4fc87cdf80f9a and
#: 05e275a7e8798bbc24dca175292c56ca330bfbe6) has no per-source counts (it samples a 200k-row stream and keeps
#: what the language filter leaves) and loads neither CIDAR, Cendol nor Tülu 3, so the table is the only
#: source of these numbers. Table 6's own totals do not all add up (its English total says
#: 30,743 where the cells give 37,473; its grand total says 132,929): we follow the cells.
PAPER_QUOTAS: dict[str, dict[str, int]] = {
    "aya": {"cs": 5000, "de": 241, "es": 3854, "id": 2786, "ja": 6259},  # Table 6 "Aya Dataset"
    "tulu3": {"en": 10000},  # "Tülu 3 SFT"
    "wildchat-4.8m": {"en": 10000, "ar": 4660, "cs": 1266, "de": 5908, "es": 5900, "id": 7983, "ja": 602},
    "cidar": {"ar": 6000},  # "CIDAR"
    "cendol-v2": {"id": 3000},  # "Cendol v2"
    "oasst2": {"ar": 23, "cs": 4, "de": 2328, "es": 8785, "id": 3, "ja": 306},  # "OpenAssistant 2"
    "euroblocks": {"cs": 3813, "de": 12551, "es": 15641, "ja": 2893},  # "EuroBlocks SFT"
    "gsm8k": {"en": 7473},  # "GSM8k (train)": the whole train split
    "helpsteer3": {"de": 462, "es": 778, "id": 156, "ja": 534},  # "Helpsteer3 (chosen)"
    "magpie-pro": {"en": 10000},  # "Magpie Pro Filtered"
}
#: Rows per language for languages outside Table 6 (e.g. tl): pgscore's numbers, not the paper's.
OTHER_LANGUAGE_QUOTAS: dict[str, int] = {
    "aya": 2000, "wildchat-4.8m": 2000, "helpsteer3": 1000, "euroblocks": 2000, "cidar": 2000, "cendol-v2": 2000,
    "oasst2": 2000,
}
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
QuotaOverride = int | dict[str, int]


def _local_copy(recipe_dir: str, preset: str) -> str | None:
    root = Path(recipe_dir).expanduser()
    if not root.is_dir():
        raise PgScoreError(f"seed.recipe_dir {root} is not a folder")
    for suffix in LOCAL_SUFFIXES:
        if (root / f"{preset}{suffix}").is_file():
            return str(root / f"{preset}{suffix}")
    return None


def paper_quotas(name: str, override: QuotaOverride | None = None) -> tuple[int | None, dict[str, int]]:
    """(quota for languages outside Table 6, per-language quotas) of one recipe source."""
    if isinstance(override, int):
        return override, {}
    table = PAPER_QUOTAS[name]
    per_language = {lang: table.get(lang, 0) for lang in PAPER_LANGUAGES}
    per_language.update(override or {})
    return OTHER_LANGUAGE_QUOTAS.get(name), per_language


def _source(name: str, preset: str, kind: str | None, override: QuotaOverride | None, recipe_dir: str | None,
            missing: list[str]) -> SeedSource | None:
    if override == 0:
        return None  # recipe_quotas {source: 0}: leave the source out
    quota, quotas = paper_quotas(name, override)
    fields = {"name": name, "preset": preset, "quota": quota, "quotas": quotas, "optional": True}
    if kind:
        fields["kind"] = kind
    if recipe_dir is not None:
        path = _local_copy(recipe_dir, preset)
        if path is None:
            missing.append(f"{name} ({preset}.jsonl/.json/.parquet/.csv)")
            return None
        fields["path"] = path
    return SeedSource(**fields)


def _check_overrides(overrides: dict[str, QuotaOverride]) -> None:
    names = list(dict.fromkeys(n for n, _ in PAPER_SOURCES + PAPER_ENGLISH_SOURCES))
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise PgScoreError(f"seed.recipe_quotas: unknown source(s) {', '.join(unknown)}; the paper recipe has "
                           f"{', '.join(names)}")
    for name, value in overrides.items():
        values = value.values() if isinstance(value, dict) else [value]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
            raise PgScoreError(f"seed.recipe_quotas.{name}: quotas are whole numbers >= 0, got {value!r}")


def _language_key(code: str) -> str:
    from pgscore.languages import normalize

    tag = normalize(code)
    return {"fil": "tl"}.get(tag, tag)  # as the seed stage names Tagalog


def paper_recipe(quotas: dict[str, QuotaOverride] | None = None, recipe_dir: str | None = None
                 ) -> tuple[list[SeedSource], list[SeedSource], list[str]]:
    """(sources, english_sources, notes) of the paper recipe; ``quotas`` overrides Table 6 per source."""
    overrides = dict(quotas or {})
    _check_overrides(overrides)
    overrides = {n: {_language_key(k): v for k, v in o.items()} if isinstance(o, dict) else o
                 for n, o in overrides.items()}
    missing: list[str] = []
    sources = [s for n, p in PAPER_SOURCES if (s := _source(n, p, None, overrides.get(n), recipe_dir, missing))]
    english = [s for n, p in PAPER_ENGLISH_SOURCES
               if (s := _source(n, p, "english_prompts", overrides.get(n), recipe_dir, missing))]
    missing = list(dict.fromkeys(missing))
    notes = [f"recipe source(s) without a local copy in {recipe_dir}, skipped: {', '.join(missing)}"] if missing else []
    return sources, english, notes


def apply_recipe(cfg: SeedConfig) -> tuple[SeedConfig, list[str]]:
    """(the config with the recipe's sources in place of ``sources`` / ``english_sources``, notes)."""
    if cfg.recipe != "paper":
        raise PgScoreError(f"unknown seed.recipe {cfg.recipe!r}; known: paper")
    sources, english, notes = paper_recipe(cfg.recipe_quotas, cfg.recipe_dir)
    return cfg.model_copy(update={"sources": sources, "english_sources": english, "recipe": None}), notes
