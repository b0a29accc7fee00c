"""Model inputs for the three methods, rendered from a Jinja2 template set (``pgscore/synthesis/templates.py``):
chat messages for instruct models, few-shot completion documents for base models without a chat template.

The wording lives in the template files; this module decides which template a row needs, what variables it
gets, how its answer is parsed (``json`` pair, few-shot ``pair``, ``plain``) and where a completion stops.
Stop sequences and labels are code, not template text: completion templates must keep the ``Prompt:`` /
``Response:`` (Generate, Respond) and ``English:`` / ``<Language>:`` / ``Answer:`` (Translate) labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pgscore.languages import autonym, language_name
from pgscore.models.base import Conversation
from pgscore.synthesis.config import TASK_TYPES
from pgscore.synthesis.templates import TemplateSet, load_templates

PAIR_SCHEMA = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}, "response": {"type": "string"}},
    "required": ["prompt", "response"],
    "additionalProperties": False,
}

GENERATE_STOP = ("\nPrompt:",)
TRANSLATE_STOP = ("\nEnglish:",)


@dataclass(frozen=True)
class Example:
    """A seed pair shown in context."""

    id: str
    prompt: str
    response: str
    prompt_en: str | None = None


@dataclass
class Rendered:
    """What to send to the model and how to read its answer back."""

    rendering: str  # "chat" | "completion"
    parse: str  # "json" | "pair" (completion Prompt/Response) | "plain"
    messages: Conversation | None = None
    text: str | None = None
    stop: tuple[str, ...] = ()
    response_label: str = ""  # for parse == "pair": the label separating prompt and response
    seed_ids: list[str] = field(default_factory=list)
    source_text: str | None = None  # the English (translate) or target-language (respond) source prompt
    task_type: str | None = None  # the task category the prompt dictated (None: none, or the teacher chooses)
    template: str = ""  # the template file used


def sample_indices(rng: np.random.Generator, n: int, k: int, exclude: int | None = None) -> list[int]:
    """k distinct indices of n (fewer if n is small), never ``exclude``; O(k), no full shuffle."""
    avail = n - (exclude is not None and 0 <= exclude < n)
    k = min(k, max(avail, 0))
    if k == 0:
        return []
    if exclude is None:
        return [int(i) for i in rng.choice(n, size=k, replace=False)]
    picked = [int(i) for i in rng.choice(n, size=min(k + 1, n), replace=False) if int(i) != exclude]
    return picked[:k]


def lang_label(lang: str) -> str:
    name, own = language_name(lang), autonym(lang)
    return name if own.casefold() == name.casefold() else f"{name} ({own})"


def language_vars(lang: str) -> dict[str, str]:
    """Variables every template gets: ``language`` (English name), ``language_label`` (with the autonym),
    ``autonym`` and ``code``."""
    return {"language": language_name(lang), "language_label": lang_label(lang), "autonym": autonym(lang),
            "code": lang}


def system_prompt(lang: str, templates: str | TemplateSet | None = None) -> str:
    return load_templates(templates).render("system.j2", **language_vars(lang))


def _example_vars(ex: Example) -> dict[str, str | None]:
    return {"id": ex.id, "prompt": ex.prompt, "response": ex.response, "prompt_en": ex.prompt_en,
            "json": json.dumps({"prompt": ex.prompt, "response": ex.response}, ensure_ascii=False)}


def _chat(t: TemplateSet, lang: str, user: str) -> Conversation:
    system = t.render("system.j2", **language_vars(lang)).strip()
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def render(method: str, rendering: str, lang: str, *, examples: Sequence[Example] = (),
           task_type: str | None = None, source_prompt: str | None = None,
           templates: str | TemplateSet | None = None, task_types: Sequence[str] = TASK_TYPES,
           respond_instruction: bool = True) -> Rendered:
    """One row's model input. ``source_prompt``: the English prompt (translate) or the target-language
    prompt (respond). ``examples``: in-context pairs (generate) or few-shot blocks (completion).
    ``task_type``: the category drawn for this row (templates that list ``task_types`` and let the teacher
    choose ignore it); ``respond_instruction``: Respond with the meta-instruction template or the bare prompt."""
    t = load_templates(templates)
    v = language_vars(lang)
    shots = [_example_vars(e) for e in examples]
    if method == "generate":
        ids = [e.id for e in examples]
        if rendering == "chat":
            name = "generate_chat.j2"
            dictated = (task_type or "any") if t.uses(name, "task_type") else None
            user = t.render(name, examples=shots, task_type=task_type or "any", task_types=list(task_types), **v)
            return Rendered("chat", "json", messages=_chat(t, lang, user), seed_ids=ids, task_type=dictated,
                            template=name)
        text = t.render("generate_completion.j2", examples=shots, **v)
        return Rendered("completion", "pair", text=text, stop=GENERATE_STOP, response_label="Response:",
                        seed_ids=ids, template="generate_completion.j2")
    if source_prompt is None:
        raise ValueError(f"{method} needs a source_prompt")
    if method == "translate":
        if rendering == "chat":
            user = t.render("translate_chat.j2", source_prompt=source_prompt, **v)
            return Rendered("chat", "json", messages=_chat(t, lang, user), template="translate_chat.j2")
        with_en = [e for e in examples if e.prompt_en]
        text = t.render("translate_completion.j2", examples=[_example_vars(e) for e in with_en],
                        source_prompt=source_prompt, **v)
        return Rendered("completion", "pair", text=text, stop=TRANSLATE_STOP, response_label="Answer:",
                        seed_ids=[e.id for e in with_en], template="translate_completion.j2")
    if method == "respond":
        if rendering == "chat":
            name = "respond_chat.j2" if respond_instruction else "respond_bare_chat.j2"
            user = t.render(name, source_prompt=source_prompt, **v)
            return Rendered("chat", "plain", messages=_chat(t, lang, user), template=name)
        text = t.render("respond_completion.j2", examples=shots, source_prompt=source_prompt, **v)
        return Rendered("completion", "plain", text=text, stop=GENERATE_STOP, seed_ids=[e.id for e in examples],
                        template="respond_completion.j2")
    raise ValueError(f"unknown method {method!r}")
