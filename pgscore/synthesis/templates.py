"""Prompt templates as Jinja2 files: the ``paper`` preset (default), the ``legacy`` preset (pgscore's
prompts before the paper preset existed), or a user directory.

A template set is a folder of ``*.j2`` files (``pgscore/resources/templates/<preset>/``). A user directory
(``synthesis.templates: path/to/dir``) overrides the ``paper`` preset file by file: a file it has replaces
the preset's file of the same name, every other file comes from the preset. :func:`template_hash` is a
content hash of the resolved set; the experiment's ``synthesis`` section carries it, so editing a
template changes the synthesize stage's fingerprint (the stage re-runs) while parsing code, which is not
part of any template, never does.

Files (each rendered with the variables listed in ``docs/templates.md``):

===========================  ====================================================================
``system.j2``                teacher system prompt (chat renderings)
``generate_chat.j2``         Generate: k seed pairs in, one new JSON pair out
``generate_completion.j2``   Generate for base models: a few-shot ``Prompt:/Response:`` document
``translate_chat.j2``        Translate: English prompt in, JSON pair (translated prompt, answer) out
``translate_completion.j2``  Translate for base models: ``English:/<Language>:/Answer:`` blocks
``respond_chat.j2``          Respond with a meta-instruction around the seed prompt
``respond_bare_chat.j2``     Respond with the seed prompt alone as the user turn
``respond_completion.j2``    Respond for base models: few-shot document ending in ``Response:``
``judge_system.j2``          judge system prompt
``judge.j2``                 judge user prompt (absolute grading, ``Feedback: ... [RESULT] N``)
``judge_json.j2``            judge user prompt asking for JSON (servers with structured output)
``judge_raw.j2``             the whole judge input as one document (judges without a chat template)
``judge_rubric.j2``          the score rubric (included by the judge templates)
``_<name>.j2``               partials a user directory may add for ``{% include %}``
===========================  ====================================================================
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pgscore.errors import PgScoreError
from pgscore.paths import resource

PRESETS = ("paper", "legacy")
DEFAULT_PRESET = "paper"
SUFFIX = ".j2"
TEMPLATE_FILES = (
    "system.j2", "generate_chat.j2", "generate_completion.j2", "translate_chat.j2", "translate_completion.j2",
    "respond_chat.j2", "respond_bare_chat.j2", "respond_completion.j2",
    "judge_system.j2", "judge.j2", "judge_json.j2", "judge_raw.j2", "judge_rubric.j2",
)


def preset_dir(name: str) -> Path:
    return resource("templates", name)


def resolve_dirs(spec: str | Path | None) -> tuple[Path, ...]:
    """Directories searched in order for a template set: ``(user_dir, paper)`` or ``(preset,)``."""
    spec = DEFAULT_PRESET if spec is None else spec
    if isinstance(spec, str) and spec in PRESETS:
        return (preset_dir(spec),)
    p = Path(spec).expanduser()
    if not p.is_dir():
        raise PgScoreError(f"template directory not found: {p} (use one of {', '.join(PRESETS)} or a folder "
                           f"of *{SUFFIX} files)")
    files = sorted(f.name for f in p.glob(f"*{SUFFIX}"))
    unknown = [f for f in files if f not in TEMPLATE_FILES and not f.startswith("_")]  # _x.j2: partials
    if not files:
        raise PgScoreError(f"template directory {p} has no *{SUFFIX} files; names: {', '.join(TEMPLATE_FILES)}")
    if unknown:
        raise PgScoreError(f"unknown template file(s) in {p}: {', '.join(unknown)}; "
                           f"names: {', '.join(TEMPLATE_FILES)}")
    return (p.resolve(), preset_dir(DEFAULT_PRESET))


def resolved_files(spec: str | Path | None) -> dict[str, Path]:
    """Template name -> the file that provides it (user directory first, then the preset)."""
    out: dict[str, Path] = {}
    for d in reversed(resolve_dirs(spec)):
        for f in sorted(d.glob(f"*{SUFFIX}")):
            if f.name in TEMPLATE_FILES or f.name.startswith("_"):
                out[f.name] = f
    missing = [n for n in TEMPLATE_FILES if n not in out]
    if missing:  # a broken install: presets ship every file
        raise PgScoreError(f"template set {spec!r} lacks {', '.join(missing)}")
    return out


def template_hash(spec: str | Path | None) -> str:
    """Content hash (16 hex) of the resolved template set: changes when any template's text changes."""
    h = hashlib.sha256()
    for name, path in sorted(resolved_files(spec).items()):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


class TemplateSet:
    """A resolved template set: ``render(name, **variables)`` with strict undefined variables."""

    def __init__(self, spec: str | Path | None = None) -> None:
        import jinja2

        self.spec = DEFAULT_PRESET if spec is None else str(spec)
        self.dirs = resolve_dirs(spec)
        self.files = resolved_files(spec)
        self.hash = template_hash(spec)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.dirs]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self._names: dict[str, frozenset[str]] = {}

    def render(self, name: str, **variables: Any) -> str:
        import jinja2

        try:
            return self.env.get_template(name).render(**variables)
        except jinja2.TemplateError as exc:
            where = self.files.get(name, name)
            raise PgScoreError(f"template {where}: {type(exc).__name__}: {exc}") from exc

    def check(self) -> "TemplateSet":
        """Compile every file (syntax errors as one-line :class:`PgScoreError`); returns self."""
        import jinja2

        for name in self.files:
            try:
                self.env.get_template(name)
            except jinja2.TemplateError as exc:
                raise PgScoreError(f"template {self.files[name]}: {type(exc).__name__}: {exc}") from exc
        return self

    def uses(self, name: str, variable: str) -> bool:
        """Whether template ``name`` itself (not its includes) refers to ``variable`` (e.g. does Generate
        dictate ``task_type``)."""
        import jinja2
        from jinja2 import meta

        if name not in self._names:
            try:
                source = self.env.loader.get_source(self.env, name)[0]
                self._names[name] = frozenset(meta.find_undeclared_variables(self.env.parse(source)))
            except jinja2.TemplateError:
                return False  # render() reports the error with the file name
        return variable in self._names[name]


@lru_cache(maxsize=32)
def _cached(spec: str, stamp: str) -> TemplateSet:
    return TemplateSet(spec)


def load_templates(spec: str | Path | TemplateSet | None = None) -> TemplateSet:
    """A :class:`TemplateSet` for a preset name or directory (cached while the files stay unchanged)."""
    if isinstance(spec, TemplateSet):
        return spec
    key = DEFAULT_PRESET if spec is None else str(spec)
    return _cached(key, template_hash(key))
