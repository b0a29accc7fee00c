"""Language codes, names and scripts (via ``langcodes``)."""

from __future__ import annotations

from functools import lru_cache

import langcodes

from pgscore.errors import PgScoreError


@lru_cache(maxsize=None)
def normalize(code: str) -> str:
    """A BCP-47 tag in its shortest standard form (``deu`` -> ``de``, ``arb`` -> ``ar``); names work too."""
    text = str(code).strip()
    if not text:
        raise PgScoreError("empty language code")
    try:
        tag = langcodes.standardize_tag(text, macro=True)
        lang = langcodes.Language.get(tag)
        if lang.is_valid() and lang.language:
            return tag
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        pass
    try:  # a language name such as "German" (WildChat, Aya's `language` column)
        return langcodes.find(text).to_tag()
    except LookupError:
        raise PgScoreError(f"not a language code or name: {code!r}") from None


def base_language(code: str) -> str:
    """The language subtag only (``pt-BR`` -> ``pt``)."""
    return langcodes.Language.get(normalize(code)).language or normalize(code)


@lru_cache(maxsize=None)
def language_name(code: str) -> str:
    """English display name (``ja`` -> ``Japanese``)."""
    return langcodes.Language.get(normalize(code)).display_name()


@lru_cache(maxsize=None)
def autonym(code: str) -> str:
    """The language's name for itself (``ja`` -> ``日本語``)."""
    return langcodes.Language.get(normalize(code)).autonym()


@lru_cache(maxsize=None)
def script(code: str) -> str:
    """ISO 15924 script of the language's usual writing (``de`` -> ``Latn``, ``ja`` -> ``Jpan``)."""
    return langcodes.Language.get(normalize(code)).maximize().script or "Zyyy"


# ---- the other readings of a language code (each used by one kind of caller; all defined here) ------------
def experiment_tag(code: str) -> str:
    """A language of an experiment file: a valid BCP-47 code, standardised (``deu`` -> ``de``; names such as
    ``German`` are refused, so an experiment says exactly which language it means)."""
    try:
        tag = langcodes.standardize_tag(str(code))
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        raise PgScoreError(f"not a language code: {code!r}") from None
    if not langcodes.Language.get(tag).is_valid():
        raise PgScoreError(f"not a language code: {code!r}")
    return tag


def paper_code(code: str) -> str:
    """The language subtag as the paper's tables spell it: the code as written when valid (``tl`` stays
    ``tl``, not ``fil``), else a language name looked up (``Tagalog`` -> ``tl``)."""
    text = str(code).strip()
    if not text:
        raise PgScoreError("empty language code")
    try:
        lang = langcodes.Language.get(text, normalize=False)
        if not lang.is_valid() or lang.language is None:
            raise ValueError
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        try:
            lang = langcodes.find(text)
        except LookupError:
            raise PgScoreError(f"not a language code or name: {code!r}") from None
    return lang.language


def base_code(tag: str) -> str:
    """Language subtag of a tag, standardised and lenient (``id-ID`` -> ``id``, ``ind`` -> ``id``; an
    unreadable tag comes back lower-cased): for comparing detector output with expected languages."""
    try:
        return langcodes.Language.get(langcodes.standardize_tag(tag)).language or tag.lower()
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        return tag.lower()


def english_name(code: str) -> str:
    """English name of a code (``id`` -> ``Indonesian``), lenient: the code itself when unknown."""
    try:
        name = langcodes.Language.get(langcodes.standardize_tag(code)).display_name("en")
    except (ValueError, langcodes.tag_parser.LanguageTagError):
        return code
    return code if name.lower().startswith("unknown") else name
