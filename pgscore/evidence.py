"""Prior evidence: the Polyglot Score paper's published tables, teacher/student name parsing and
language profiles (resource class, script, family) for similarity between languages.

Source of the shipped tables: Miranda, Vulić, Korhonen 2026, "Polyglot Teachers: Evaluating Language
Models for Multilingual Synthetic Data Generation" (arXiv 2604.11290).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from pgscore.errors import PgScoreError
from pgscore.families import ModelInfo, model_family, model_size_b, parse_model_name  # noqa: F401 (re-exported)
from pgscore.paths import resource

# The one citation string of the method (reports, recommendations, model cards point here).
CITATION = "Miranda, Vulić, Korhonen 2026, Polyglot Teachers, arXiv 2604.11290"

PAPER_TABLES = (
    "pg_scores_by_language.csv",
    "pg_scores_by_student_base.csv",
    "pg_scores_by_method.csv",
    "pg_scores_32b_student.csv",
    "teachers.csv",
    "languages.csv",
    "family_matching_gain.csv",
    "best_method_gain.csv",
    "filbench_tagalog.csv",
)

@lru_cache(maxsize=None)
def paper_table(name: str) -> pd.DataFrame:
    """One shipped table of the paper (pgscore/resources/paper_evidence/NAME)."""
    if name not in PAPER_TABLES:
        raise PgScoreError(f"unknown paper table {name!r}; one of {', '.join(PAPER_TABLES)}")
    path = resource("paper_evidence", name)
    if not path.is_file():
        raise PgScoreError(f"paper evidence table missing from the install: {path}")
    return pd.read_csv(path)


def paper_teachers() -> pd.DataFrame:
    """teachers.csv with a coarse ``family_coarse`` column (gemma, llama, ...)."""
    df = paper_table("teachers.csv").copy()
    df["family_coarse"] = [model_family(t) for t in df["teacher"]]
    return df


# --- languages -----------------------------------------------------------------------------------------

# Small built-in table for languages the paper did not measure: resource class 0-5 after Joshi et al.
# (2020, "The State and Fate of Linguistic Diversity"), language family and ISO 15924 script.
# Approximate by nature; languages.csv (the paper's Table 8) takes precedence where it has a row.
_BUILTIN_LANGS: dict[str, tuple[int, str, str]] = {
    "en": (5, "Indo-European", "Latn"),
    "fr": (5, "Indo-European", "Latn"),
    "zh": (5, "Sino-Tibetan", "Hans"),
    "ru": (4, "Indo-European", "Cyrl"),
    "it": (4, "Indo-European", "Latn"),
    "pt": (4, "Indo-European", "Latn"),
    "nl": (4, "Indo-European", "Latn"),
    "pl": (4, "Indo-European", "Latn"),
    "sv": (4, "Indo-European", "Latn"),
    "fi": (4, "Uralic", "Latn"),
    "hu": (4, "Uralic", "Latn"),
    "ko": (4, "Koreanic", "Kore"),
    "vi": (4, "Austroasiatic", "Latn"),
    "tr": (4, "Turkic", "Latn"),
    "fa": (4, "Indo-European", "Arab"),
    "hi": (4, "Indo-European", "Deva"),
    "ca": (4, "Indo-European", "Latn"),
    "uk": (3, "Indo-European", "Cyrl"),
    "he": (3, "Afro-Asiatic", "Hebr"),
    "el": (3, "Indo-European", "Grek"),
    "ro": (3, "Indo-European", "Latn"),
    "th": (3, "Kra-Dai", "Thai"),
    "bn": (3, "Indo-European", "Beng"),
    "ur": (3, "Indo-European", "Arab"),
    "ta": (3, "Dravidian", "Taml"),
    "ms": (3, "Austronesian", "Latn"),
    "tl": (3, "Austronesian", "Latn"),
    "fil": (3, "Austronesian", "Latn"),
    "sw": (2, "Niger-Congo", "Latn"),
    "zu": (2, "Niger-Congo", "Latn"),
    "yo": (2, "Niger-Congo", "Latn"),
    "am": (2, "Afro-Asiatic", "Ethi"),
    "ga": (2, "Indo-European", "Latn"),
    "mt": (2, "Afro-Asiatic", "Latn"),
    "ceb": (1, "Austronesian", "Latn"),
    "te": (1, "Dravidian", "Telu"),
    "mr": (2, "Indo-European", "Deva"),
    "ha": (2, "Afro-Asiatic", "Latn"),
    "ig": (1, "Niger-Congo", "Latn"),
}

# Paper's languages.csv spells scripts as words; map to ISO 15924 for comparison.
_SCRIPT_WORDS = {"latin": "Latn", "arabic": "Arab", "japanese": "Jpan", "cyrillic": "Cyrl"}


@dataclass(frozen=True)
class LanguageProfile:
    """Typology and resources of a language, with where each fact came from."""

    code: str
    name: str
    resource_class: int | None  # 0 (least) .. 5 (most), Joshi et al. 2020
    family: str | None
    script: str | None  # ISO 15924
    common_crawl_pct: float | None
    source: str  # "paper (Table 8)", "built-in table", or "langcodes only"

    @property
    def high_resource(self) -> bool | None:
        """High-resource in the paper's sense: class 5 and (where known) >= 2% of Common Crawl."""
        if self.common_crawl_pct is not None and not math.isnan(self.common_crawl_pct):
            return self.common_crawl_pct >= 2.0
        if self.resource_class is None:
            return None
        return self.resource_class >= 5


def normalize_language(code: str) -> str:
    """The code as the paper's tables spell it ('Tagalog' -> 'tl'): :func:`pgscore.languages.paper_code`."""
    from pgscore.languages import paper_code

    return paper_code(code)


def language_profile(code: str) -> LanguageProfile:
    """Profile of a language from the paper's Table 8, else the built-in table, else langcodes alone."""
    import langcodes

    tag = normalize_language(code)
    lang = langcodes.Language.get(tag, normalize=False)
    name = lang.display_name()
    try:
        script = lang.maximize().script
    except Exception:  # noqa: BLE001 - langcodes has no likely-subtags for some tags
        script = None
    langs = paper_table("languages.csv").set_index("language")
    if tag in langs.index:
        row = langs.loc[tag]
        return LanguageProfile(
            code=tag,
            name=str(row["name"]),
            resource_class=int(row["resource_class_1_5"]),
            family=str(row["family"]),
            script=_SCRIPT_WORDS.get(str(row["script"]).lower(), script),
            common_crawl_pct=float(row["common_crawl_pct"]),
            source="paper (Table 8)",
        )
    if tag in _BUILTIN_LANGS:
        rc, fam, scr = _BUILTIN_LANGS[tag]
        return LanguageProfile(tag, name, rc, fam, scr or script, None, "built-in table (Joshi et al. 2020 classes)")
    return LanguageProfile(tag, name, None, None, script, None, "langcodes only (resource class unknown)")


def language_similarity(a: LanguageProfile, b: LanguageProfile) -> float:
    """Similarity in (0, 1]: resource-class closeness x shared script x shared family.

    ``exp(-|class difference|) * (1 + same script) * (1 + same family) / 4``; an unknown resource class
    counts as a difference of 1.
    """
    if a.resource_class is None or b.resource_class is None:
        d = 1.0
    else:
        d = abs(a.resource_class - b.resource_class)
    same_script = bool(a.script and b.script and _script_group(a.script) == _script_group(b.script))
    same_family = bool(a.family and b.family and a.family == b.family)
    return math.exp(-d) * (1 + same_script) * (1 + same_family) / 4.0


def _script_group(script: str) -> str:
    # Japanese (Jpan) mixes Han and kana; Chinese scripts share Han
    return {"Hans": "Hani", "Hant": "Hani", "Jpan": "Hani"}.get(script, script)
