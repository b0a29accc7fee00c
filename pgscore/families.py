"""What a model's name says: its family, its size, its key for matching names across tables.

The one place model names are read (issue 13): the paper evidence (``pgscore.evidence``: coarse families
such as ``gemma`` for family matching), the decoding settings (``pgscore.synthesis.decoding``: the finer
families whose recommended sampling differs, such as ``gemma3``), the analyses' metadata joins
(``pgscore.analysis``: ``normalize_teacher``) and the cost plan (``pgscore.plan``: the size).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Coarse families recognised in names; order matters (first match wins).
FAMILY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("gemma", r"gemma"),
    ("llama", r"llama"),
    ("qwen", r"qwen|qwq"),
    ("olmo", r"olmo"),
    ("cohere", r"aya|command[\s_-]?[ar]|cohere|\bcommand\b"),
    ("gpt", r"gpt|openai|\bo[134](-mini)?\b"),
    ("granite", r"granite"),
    ("mistral", r"mistral|ministral|mixtral"),
    ("smollm", r"smollm"),
    ("phi", r"\bphi"),
    ("deepseek", r"deepseek"),
    ("claude", r"claude"),
)

# Decoding families: the model lines whose recommended sampling the paper follows (Miranda et al. 2026).
DECODING_FAMILIES = ("gemma3", "llama3.1", "command-a", "aya-expanse", "granite")
DEFAULT_DECODING = "default"
# loose family names people write in experiment files
DECODING_ALIASES = {"gemma": "gemma3", "gemma-3": "gemma3", "llama": "llama3.1", "llama3": "llama3.1",
                    "aya": "aya-expanse", "command": "command-a", "cohere": "command-a", "granite3": "granite"}
DECODING_PATTERNS = (
    ("gemma3", re.compile(r"gemma[-_ ]?3", re.I)),
    ("llama3.1", re.compile(r"llama[-_ ]?3(\.[1-3])?(?![0-9])", re.I)),  # Llama 3.1-3.3 ship the same 0.6 / 0.9
    ("command-a", re.compile(r"command[-_ ]?a(?![a-z])", re.I)),
    ("aya-expanse", re.compile(r"aya[-_ ]?expanse", re.I)),
    ("granite", re.compile(r"granite", re.I)),
)


def model_family(name: str) -> str | None:
    """Coarse model family from a display name or model id ('google/gemma-3-4b-pt' -> 'gemma')."""
    low = str(name).lower()
    for family, pattern in FAMILY_PATTERNS:
        if re.search(pattern, low):
            return family
    return None


def decoding_family(*names: str | None) -> str:
    """The decoding family of the first name that tells (``"default"`` when none does): an explicit
    family (``gemma3``, or an alias such as ``gemma``), else a pattern in a model id or name."""
    for name in names:
        if not name:
            continue
        key = name.strip().lower()
        if key in DECODING_FAMILIES or key == DEFAULT_DECODING:
            return key
        if key in DECODING_ALIASES:
            return DECODING_ALIASES[key]
        for family, pat in DECODING_PATTERNS:
            if pat.search(name):
                return family
    return DEFAULT_DECODING


def model_size_b(name: str) -> float | None:
    """Parameter count in billions parsed from a name ('Gemma 3 4B' -> 4.0, 'gemma3-270m' -> 0.27,
    'Mixtral 8x7B' -> 56)."""
    low = str(name).lower().replace("_", "-")
    m = re.search(r"(\d+)x(\d+(?:\.\d+)?)\s*b\b", low)
    if m:
        return float(m.group(1)) * float(m.group(2))
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", low)
    if not m:
        return None
    value = float(m.group(1))
    return value / 1000.0 if m.group(2) == "m" else value


@dataclass(frozen=True)
class ModelInfo:
    """What a name tells about a model."""

    name: str
    family: str | None
    size_b: float | None
    paper_name: str | None = None  # the matching teacher/student name in the paper's tables


def _match_key(s: str) -> str:
    s = str(s).lower().split("/")[-1]
    s = re.sub(r"\b(inst|instruct|it|pt|chat|base|hf)\b\.?", " ", s)
    return re.sub(r"[^a-z0-9.]+", "", s)


def parse_model_name(name: str, candidates: list[str] | None = None) -> ModelInfo:
    """Parse a model name leniently and match it to one of ``candidates`` (paper names) if possible.

    A candidate matches when the normalised names are equal, or when family and size agree.
    """
    family, size = model_family(name), model_size_b(name)
    match = None
    for cand in candidates or []:
        if _match_key(cand) == _match_key(name):
            match = cand
            break
    if match is None and family is not None:
        for cand in candidates or []:
            cf, cs = model_family(cand), model_size_b(cand)
            if cf == family and cs is not None and size is not None and math.isclose(cs, size, rel_tol=0.05):
                match = cand
                break
    return ModelInfo(name=str(name), family=family, size_b=size, paper_name=match)


def normalize_name(name) -> str:
    """Lower-case alphanumerics only: 'Gemma 3 27B Inst.' == 'gemma-3-27b-inst'."""
    return re.sub(r"[^0-9a-z]+", "", str(name).lower())


_TEACHER_SUFFIX = re.compile(r"(instruct|inst|it|chat)$")


def normalize_teacher(name) -> str:
    """Teacher key: the model id without org prefix and instruct suffix, lower-case alphanumerics.

    'google/gemma-3-27b-it', 'Gemma 3 27B Inst.' and 'gemma-3-27b-instruct' all give 'gemma327b'.
    """
    base = str(name).strip().rsplit("/", 1)[-1]
    return _TEACHER_SUFFIX.sub("", normalize_name(base))
