"""Final-number extraction for MGSM-style answers (pure string code, no I/O).

Handles any Unicode decimal digits (Arabic-Indic, Persian, full-width, Bengali, Telugu, Thai, ...),
full-width punctuation, Unicode minus signs, thousands separators where unambiguous and the
"The answer is N" phrase (English or a localised phrase passed by the caller).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Iterable

# languages that write 1.234,5 (decimal comma) and those that group with spaces (1 234,5)
DECIMAL_COMMA = {"de", "es", "fr", "ru", "id", "it", "pt", "nl", "cs", "pl", "tr", "uk", "ro", "el", "da",
                 "sv", "fi", "no", "nb", "vi", "sw", "tl", "bg", "hr", "sk", "sl", "hu"}
SPACE_GROUPING = {"fr", "ru", "cs", "pl", "uk", "sv", "fi", "no", "nb", "sk", "bg", "hu"}

_PUNCT = {
    "，": ",", "．": ".", "－": "-", "−": "-", "–": "-", "‐": "-", "‑": "-", "＋": "+",
    "٫": ".",  # Arabic decimal separator
    "٬": ",",  # Arabic thousands separator
    "、": ",",
    "\u00a0": "\u2009", "\u202f": "\u2009",  # no-break spaces -> thin space (always grouping)
}

ANSWER_PHRASES = ("the answer is", "answer:", "answer is")

_NUM = re.compile(
    r"(?<![A-Za-z0-9.,])"  # not glued to a Latin word or another number
    r"(?P<sign>-)?"
    r"(?P<body>\d+(?:[.,\u2009 ]\d+)*)"
)


def normalize_digits(text: str) -> str:
    """Map every Unicode decimal digit to ASCII and full-width/Arabic punctuation to ASCII."""
    out = []
    for ch in text:
        if ch in _PUNCT:
            out.append(_PUNCT[ch])
            continue
        d = unicodedata.decimal(ch, None) if not ch.isascii() else None
        out.append(str(d) if d is not None else ch)
    return "".join(out)


def _parse_body(body: str, lang: str | None) -> Decimal | None:
    """Turn '1,234.5' / '1.234,5' / '1 234' / '3,5' into a Decimal, or None when ambiguous."""
    seps = [c for c in body if c in ".,\u2009 "]
    if not seps:
        return Decimal(body)
    groups = re.split(r"[.,\u2009 ]", body)
    kinds = set(seps)
    base = (lang or "").split("-")[0].lower()
    dec_sep = "," if base in DECIMAL_COMMA else "."
    # a plain space groups digits only in space-grouping languages, with 3-digit groups
    if " " in kinds and (base not in SPACE_GROUPING or any(len(g) != 3 for g in groups[1:])):
        return None
    three = all(len(g) == 3 for g in groups[1:]) and 1 <= len(groups[0]) <= 3
    if len(kinds - {"\u2009", " "}) == 2:  # both . and , : the last one is the decimal separator
        last = seps[-1]
        thousands = "," if last == "." else "."
        int_part, _, frac = body.rpartition(last)
        int_groups = re.split(r"[.,\u2009 ]", int_part)
        if seps.count(last) != 1 or not all(len(g) == 3 for g in int_groups[1:]):
            return None
        return Decimal(re.sub(r"[.,\u2009 ]", "", int_part) + "." + frac)
    sep = next(iter(kinds - {"\u2009", " "}), None)
    if sep is None:  # only spaces / thin spaces
        return Decimal("".join(groups)) if three else None
    if seps.count(sep) > 1 or ("\u2009" in kinds or " " in kinds):
        # repeated separator (1.234.567) or mixed with spaces: grouping only
        return Decimal("".join(groups)) if three else None
    int_part, frac = groups[0], groups[1]
    if len(frac) == 3 and three:
        # 1,234 or 1.234: thousands unless the language uses this mark as its decimal separator
        if lang is None or sep != dec_sep:
            return Decimal(int_part + frac)
        return Decimal(int_part + "." + frac)
    return Decimal(int_part + "." + frac)


def find_numbers(text: str, lang: str | None = None) -> list[Decimal]:
    """All numbers in reading order (after digit normalisation); ambiguous groupings split apart."""
    norm = normalize_digits(text)
    found: list[Decimal] = []
    for m in _NUM.finditer(norm):
        body = m.group("body").rstrip(".,\u2009 ")
        val = _parse_body(body, lang)
        if val is None:  # ambiguous grouping: read the pieces as separate numbers
            pieces = [Decimal(p) for p in re.split(r"[\u2009 ]", body) if p and re.fullmatch(r"\d+", p)]
            if not pieces:
                pieces = [Decimal(p) for p in re.findall(r"\d+(?:[.,]\d+)?", body.replace(",", "."))]
            found.extend(pieces)
            continue
        if m.group("sign") == "-":
            val = -val
        found.append(val)
    return found


def extract_final_number(text: str, lang: str | None = None, phrases: Iterable[str] = ()) -> Decimal | None:
    """The model's final answer: the first number after the last answer phrase, else the last number."""
    if not text:
        return None
    low = normalize_digits(text).lower()
    best = -1
    for phrase in (*phrases, *ANSWER_PHRASES):
        p = normalize_digits(phrase).strip().lower()
        if p:
            best = max(best, low.rfind(p) + len(p) if low.rfind(p) >= 0 else -1)
    if best >= 0:
        after = find_numbers(low[best:], lang)
        if after:
            return after[0]
    nums = find_numbers(text, lang)
    return nums[-1] if nums else None


def extract_first_number(text: str, lang: str | None = None) -> Decimal | None:
    """The first number of a short answer (MGSM's ``number`` formulation: upstream's first-match extraction)."""
    nums = find_numbers(text or "", lang)
    return nums[0] if nums else None


def format_number(value: Decimal | None) -> str | None:
    """Canonical string: '1234', '-5', '3.5' (trailing zeros dropped)."""
    if value is None:
        return None
    try:
        norm = value.normalize()
    except InvalidOperation:
        return None
    s = format(norm, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def numbers_equal(pred: Decimal | None, gold: str | int | float | Decimal) -> bool:
    """Exact match of a parsed prediction with the gold number."""
    if pred is None:
        return False
    try:
        g = gold if isinstance(gold, Decimal) else Decimal(normalize_digits(str(gold)).replace(",", ""))
    except InvalidOperation:
        return False
    return pred == g
