"""Offline language identification with ``langid`` (its model ships in the wheel)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

UNDETERMINED = "und"
MIN_LETTERS = 12  # shorter texts are too ambiguous to judge ("Siapa namamu?" reads as Estonian)

#: groups of codes treated as the same language (detector confusions, not real errors); one table for
#: the seed filter here and language fidelity in pgscore.metrics.fidelity
CLOSE_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"id", "ms"}),
    frozenset({"no", "nb", "nn"}),
    frozenset({"tl", "fil"}),
    frozenset({"hr", "bs", "sr"}),
)
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


@lru_cache(maxsize=1)
def identifier():
    try:
        from langid.langid import LanguageIdentifier, model
    except ModuleNotFoundError:
        from pgscore.errors import PgScoreError

        raise PgScoreError("language ID needs the langid package: pip install 'pgscore[local]' "
                           "(or turn the filter off: seed.langid_filter: false / --no-langid)") from None
    return _cached_identifier(LanguageIdentifier, model)


_PARTS = ("nb_ptc", "nb_pc", "nb_numfeats", "nb_classes", "tk_nextmove", "tk_output")


def _cached_identifier(cls, model: bytes):
    """langid's identifier (``norm_probs=True``) built from its model's parts (arrays and tables), kept as a
    pickle in ``cache_dir()/langid`` keyed by the model's hash and written on first use.

    Why: ``LanguageIdentifier.from_modelstring`` base64-decodes, bz2-decompresses and unpickles the 2.5 MB
    model string shipped in the wheel, 1.3 s on 2 cores, in every process that identifies a language (the
    seed filter, language fidelity); the cached parts load in milliseconds and make the same identifier.
    A damaged or unwritable cache falls back to the wheel's string."""
    import hashlib

    from pgscore.paths import cache_dir, read_pickle_cache, write_pickle_cache

    raw = model if isinstance(model, bytes) else str(model).encode()
    path = cache_dir() / "langid" / f"{hashlib.sha256(raw).hexdigest()[:32]}.pkl"
    parts = read_pickle_cache(path)
    if parts is not None:
        try:
            return cls(*parts, norm_probs=True)
        except Exception:  # parts of another shape: build it from the model string
            pass
    ident = cls.from_modelstring(model, norm_probs=True)
    write_pickle_cache(path, tuple(getattr(ident, a) for a in _PARTS))
    return ident


def detect(texts: Sequence[str]) -> list[str]:
    """Most likely language code per text; ``"und"`` for texts with fewer than ``MIN_LETTERS`` letters."""
    ident = identifier()
    out = []
    for t in texts:
        t = t or ""
        out.append(ident.classify(t)[0] if len(_LETTER.findall(t)) >= MIN_LETTERS else UNDETERMINED)
    return out


def _family(code: str) -> set[str]:
    base = code.split("-")[0].lower()
    return next((set(g) for g in CLOSE_GROUPS if base in g), {base})


def claimed_prob(texts: Sequence[str], claimed: str) -> list[float | None]:
    """Probability langid gives the claimed language (its close relatives summed, e.g. id + ms);
    ``None`` for texts too short to judge."""
    ident, fam = identifier(), _family(claimed)
    out: list[float | None] = []
    for t in texts:
        t = t or ""
        if len(_LETTER.findall(t)) < MIN_LETTERS:
            out.append(None)
        else:
            out.append(float(sum(p for lang, p in ident.rank(t) if lang in fam)))
    return out


def matches(texts: Sequence[str], claimed: str, min_prob: float = 0.01) -> list[bool]:
    """False only for texts that are clearly not in the claimed language (short texts pass)."""
    return [p is None or p >= min_prob for p in claimed_prob(texts, claimed)]
