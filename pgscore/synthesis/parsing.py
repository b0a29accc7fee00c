"""Reading teacher output back: lenient JSON pairs, few-shot completion pairs, plain responses.

Nothing here raises on bad output: every function returns a :class:`Parsed` whose ``error`` names the
reason (``empty_output``, ``no_json_object``, ``truncated_json``, ``invalid_json``, ``missing_field:<f>``,
``invalid_field:<f>``, ``empty_field:<f>``, ``missing_label:<l>``).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

_ALIASES = {
    "prompt": ("prompt", "instruction", "question", "input", "query", "user", "translated_prompt",
               "translation", "prompt_translation"),
    "response": ("response", "answer", "output", "completion", "reply", "assistant"),
}
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


class SyntheticPair(BaseModel):
    """A validated prompt/response pair: both non-empty strings (numbers are read as text)."""

    model_config = ConfigDict(extra="ignore")

    prompt: str
    response: str

    @field_validator("prompt", "response", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ValueError("not a string")
        s = str(v).strip()
        if not s:
            raise ValueError("empty")
        return s


@dataclass
class Parsed:
    prompt: str | None = None
    response: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _balanced_objects(text: str) -> tuple[list[str], bool]:
    """Every top-level balanced ``{...}`` in order (quotes respected), and whether one was left open."""
    found, depth, start, quote, esc = [], 0, -1, None, False
    for i, ch in enumerate(text):
        if quote:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'" and depth > 0:
            if ch == "'" and i > 0 and text[i - 1].isalnum() and i + 1 < len(text) and text[i + 1].isalnum():
                continue  # an apostrophe inside a word (don't, l'eau), not a quote
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                found.append(text[start:i + 1])
    return found, depth > 0


def _loads(chunk: str) -> Any:
    """json, then json without trailing commas, then a Python literal (single quotes)."""
    for attempt in (chunk, _TRAILING_COMMA.sub(r"\1", chunk)):
        try:
            return json.loads(attempt, strict=False)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            pass
    py = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", chunk)))
    try:
        return ast.literal_eval(_TRAILING_COMMA.sub(r"\1", py))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # TypeError: {{"a"}}, {[1]: 2}
        return None


def _pick(obj: dict, field: str) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for alias in _ALIASES[field]:
        if alias in lowered:
            return lowered[alias]
    return None


def _validate(obj: dict) -> Parsed:
    values = {f: _pick(obj, f) for f in ("prompt", "response")}
    for f, v in values.items():
        if v is None:
            return Parsed(error=f"missing_field:{f}")
    try:
        pair = SyntheticPair.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        kind = "empty_field" if "empty" in err["msg"] else "invalid_field"
        return Parsed(error=f"{kind}:{err['loc'][0]}")
    return Parsed(pair.prompt, pair.response)


def parse_json_pair(text: str | None) -> Parsed:
    """The first JSON object with a prompt and a response in ``text`` (fences, chatter, single quotes
    and trailing commas tolerated)."""
    if not text or not text.strip():
        return Parsed(error="empty_output")
    bodies = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    first_error, open_left = None, False
    for body in bodies:
        objects, unterminated = _balanced_objects(body)
        open_left = open_left or unterminated
        for chunk in objects:
            obj = _loads(chunk)
            if not isinstance(obj, dict):
                first_error = first_error or "invalid_json"
                continue
            parsed = _validate(obj)
            if parsed.ok:
                return parsed
            first_error = first_error or parsed.error
    if first_error:
        return Parsed(error=first_error)
    if open_left:
        return Parsed(error="truncated_json")
    return Parsed(error="no_json_object")


def _cut(text: str, stops: Sequence[str]) -> str:
    """Text up to the first stop sequence (backends that ignore ``stop`` still parse right)."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def parse_completion_pair(text: str | None, response_label: str = "Response:",
                          stops: Sequence[str] = ("\nPrompt:",)) -> Parsed:
    """A continuation of a few-shot document: ``<prompt>\\n<response_label> <response>``."""
    if not text or not text.strip():
        return Parsed(error="empty_output")
    body = _cut(text, stops)
    marker = "\n" + response_label
    i = body.find(marker)
    if i == -1:
        return Parsed(error=f"missing_label:{response_label.rstrip(':')}")
    prompt, response = body[:i].strip(), body[i + len(marker):].strip()
    if not prompt:
        return Parsed(error="empty_field:prompt")
    if not response:
        return Parsed(error="empty_field:response")
    return Parsed(prompt, response)


def parse_plain(text: str | None, stops: Sequence[str] = ()) -> Parsed:
    """A plain-text answer (Respond): the text up to any stop sequence, stripped."""
    if not text or not text.strip():
        return Parsed(error="empty_output")
    body = _cut(text, stops).strip()
    if not body:
        return Parsed(error="empty_field:response")
    return Parsed(None, body)
