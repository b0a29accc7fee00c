"""Language fidelity: the share of texts whose detected language is the target language.

Detection is offline. Default ``langid`` (langid.py: 97 languages, loads instantly, ~2 ms/text);
``lingua`` (lingua-language-detector: 75 languages, slightly more accurate on close pairs, ~20 s and
~1 GB to load) is the alternative. See docs/metrics.md for the check on the Vicuna-80 prompts.
Close languages the detectors confuse on short texts (Indonesian/Malay, Norwegian written forms,
Tagalog/Filipino, Croatian/Bosnian/Serbian) count as a match; texts with fewer than ``MIN_LETTERS`` letters are undetermined
(``"und"``) and left out of the share.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence

from pgscore.errors import PgScoreError

# one definition of the short-text rule and the close-language groups, shared with the seed filter
from pgscore.langid import CLOSE_GROUPS, MIN_LETTERS, UNDETERMINED  # noqa: F401 (re-exported)


from pgscore.languages import base_code  # noqa: E402,F401  (``"id-ID" -> "id"``; re-exported)


def same_language(detected: str | None, target: str) -> bool:
    """True when ``detected`` is ``target`` (or in the same close group)."""
    if not detected or detected == UNDETERMINED:
        return False
    a, b = base_code(detected), base_code(target)
    return a == b or any(a in g and b in g for g in CLOSE_GROUPS)


def language_fidelity(detected: Sequence[str | None], target: str) -> float:
    """Share of determined texts detected as ``target`` (NaN when none is determined)."""
    known = [d for d in detected if d and d != UNDETERMINED]
    if not known:
        return math.nan
    return sum(same_language(d, target) for d in known) / len(known)


def _letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


class LanguageDetector(ABC):
    name: str

    def detect(self, texts: Sequence[str]) -> list[str]:
        """ISO 639-1 code (or ``"und"``) per text."""
        out = [UNDETERMINED] * len(texts)
        idx = [i for i, t in enumerate(texts) if t and _letters(str(t)) >= MIN_LETTERS]
        for i, code in zip(idx, self._detect([str(texts[i]) for i in idx])):
            out[i] = code or UNDETERMINED
        return out

    @abstractmethod
    def _detect(self, texts: list[str]) -> list[str | None]: ...


class LangidDetector(LanguageDetector):
    name = "langid"

    def __init__(self) -> None:
        from pgscore.langid import identifier  # one langid model per process (the label ignores norm_probs)

        self._ident = identifier()

    def _detect(self, texts: list[str]) -> list[str | None]:
        return [self._ident.classify(t)[0] for t in texts]


class LinguaDetector(LanguageDetector):
    name = "lingua"

    def __init__(self) -> None:
        try:
            from lingua import LanguageDetectorBuilder
        except ImportError as exc:
            raise PgScoreError("lingua is not installed: pip install lingua-language-detector") from exc
        self._det = LanguageDetectorBuilder.from_all_languages().build()

    def _detect(self, texts: list[str]) -> list[str | None]:
        res = self._det.detect_languages_in_parallel_of(texts)
        return [r.iso_code_639_1.name.lower() if r is not None else None for r in res]


def load_detector(name: str | None = None) -> LanguageDetector:
    """``"langid"`` (default) or ``"lingua"``."""
    name = (name or "langid").lower()
    if name == "langid":
        return LangidDetector()
    if name == "lingua":
        return LinguaDetector()
    raise PgScoreError(f"unknown language detector {name!r}; use langid or lingua")
