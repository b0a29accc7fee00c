"""Read one seed source (builtin pairs, local files, Hugging Face datasets) into a uniform table.

Output columns: prompt, response (None for prompt-only sources), language (normalised tag), task,
prompt_en, filtered (the row fails the source's ``where`` / ``exclude_contains`` filters; kept in the
table so the seed report can count it), row (position in the source, for stable ids).
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from pgscore.errors import DataMissingError, PgScoreError
from pgscore.io import TABLE_SUFFIXES, read_table
from pgscore.languages import normalize
from pgscore.paths import data_dir, resource
from pgscore.seed.config import SeedSource

OUR_COLUMNS = ("prompt", "response", "language", "messages", "prompt_en", "task")
#: language labels in seed corpora that stand for another tag (Aya labels Tagalog/Filipino "fil")
LANGUAGE_ALIASES = {"fil": "tl"}
HUB_SCAN_PER_LANGUAGE = 2000  # hub sources without quotas: rows kept per language before streaming stops
HUB_MAX_SCAN = 200_000  # hub sources: rows read at most unless max_scan says otherwise
_MISSING = object()


def get_path(record: Any, path: str) -> Any:
    """``record["a"]["b"][0]`` for ``"a.b.0"``; missing parts give None."""
    cur = record
    for part in path.split("."):
        if cur is None:
            return None
        if isinstance(cur, dict):
            cur = cur.get(part, _MISSING)
        elif isinstance(cur, (list, tuple)) or hasattr(cur, "__array__"):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                return None
        else:
            return None
        if cur is _MISSING:
            return None
    return cur


def first_exchange(messages: Any) -> tuple[str | None, str | None]:
    """First user turn and the assistant turn after it, from [{role, content}] or ShareGPT [{from, value}]."""
    if messages is None:
        return None, None
    prompt = None
    for m in list(messages):
        if not isinstance(m, dict):
            continue
        role = str(m.get("role", m.get("from", ""))).lower()
        text = m.get("content", m.get("value"))
        if prompt is None and role in ("user", "human"):
            prompt = text
        elif prompt is not None and role in ("assistant", "gpt", "model", "bot", "chatbot"):
            return prompt, text
    return prompt, None


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    s = str(v).strip()
    return s or None


def helpsteer3_preferred(record: Any) -> Any:
    """HelpSteer3's preferred response: ``overall_preference`` < 0 prefers response1, > 0 response2; a tie
    (0) is broken by a coin seeded with the prompt (the authors draw at random; ours repeats)."""
    import hashlib

    pref = get_path(record, "overall_preference")
    try:
        pref = float(pref)
    except (TypeError, ValueError):
        return None
    if pref == 0:
        prompt = str(get_path(record, "context.0.content") or "")
        pref = -1.0 if hashlib.sha256(prompt.encode()).digest()[0] % 2 == 0 else 1.0
    return get_path(record, "response1" if pref < 0 else "response2")


def passes_filters(record: Any, source: SeedSource) -> bool:
    """The source's ``where`` (field equals one of the values) and ``exclude_contains`` filters."""
    for field, allowed in source.where.items():
        v = get_path(record, field)
        if v is None or str(v) not in {str(a) for a in allowed}:
            return False
    for field, texts in source.exclude_contains.items():
        v = get_path(record, field)
        if v is None:
            continue
        low = str(v).casefold()
        if any(str(t).casefold() in low for t in ([texts] if isinstance(texts, str) else texts)):
            return False
    return True


def map_record(record: dict, source: SeedSource) -> dict:
    """One source record -> our fields, by the source's column mapping (missing columns give None)."""
    cols = {k: k for k in ("prompt", "response", "language", "prompt_en", "task")} | source.columns
    if "messages" in source.columns:
        prompt, response = first_exchange(get_path(record, source.columns["messages"]))
    else:
        prompt, response = get_path(record, cols["prompt"]), get_path(record, cols["response"])
    if source.transform == "helpsteer3_preferred":
        response = helpsteer3_preferred(record)
    out = {"prompt": _text(prompt), "response": _text(response)}
    for key in ("language", "prompt_en", "task"):
        out[key] = _text(get_path(record, cols[key]))
    out["filtered"] = not passes_filters(record, source)
    return out


def _norm_lang(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        tag = normalize(value)
    except PgScoreError:
        return None
    return LANGUAGE_ALIASES.get(tag, tag)


def _expand(pattern: str, source: SeedSource) -> list[Path]:
    if "{data}" in pattern:
        root = data_dir(required=False)
        if root is None:
            raise DataMissingError(
                f"seed source {source.name!r} reads the offline data folder, which was not found "
                "(set PGSCORE_DATA_DIR)")
        pattern = pattern.replace("{data}", str(root))
    p = Path(pattern).expanduser()
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.suffix.lower() in TABLE_SUFFIXES + (".tsv",))
    if any(ch in pattern for ch in "*?["):
        return [Path(f) for f in sorted(glob.glob(str(p)))]
    return [p] if p.exists() else []


def _files(source: SeedSource, languages: list[str]) -> list[tuple[Path, str | None]]:
    """(file, language the file stands for) pairs; a ``{lang}`` path gives one file per language."""
    assert source.path is not None
    if source.path == "builtin":
        root = resource("seed_pairs")
        return [(root / f"{lang}.jsonl", lang) for lang in languages if (root / f"{lang}.jsonl").is_file()]
    if "{lang}" in source.path:
        out = []
        for lang in languages:
            out += [(f, lang) for f in _expand(source.path.replace("{lang}", lang), source)]
        return out
    files = _expand(source.path, source)
    if not files:
        raise DataMissingError(f"seed source {source.name!r}: no file matches {source.path}")
    return [(f, None) for f in files]


def _finish(records: list[dict], source: SeedSource) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records, columns=["prompt", "response", "language", "prompt_en", "task",
                                                     "filtered"])
    df["filtered"] = df["filtered"].fillna(False).astype(bool)
    df["row"] = range(len(df))
    return df


def _label(rec: dict, source: SeedSource, file_lang: str | None) -> dict:
    if file_lang:
        rec["language"] = file_lang
    elif source.language and source.language != "auto":
        rec["language"] = _norm_lang(source.language) or normalize(source.language)
    elif source.language == "auto":
        from pgscore.langid import detect

        lab = detect([rec["prompt"] or ""])[0]
        rec["language"] = None if lab == "und" else lab
    else:
        rec["language"] = _norm_lang(rec["language"])
    return rec


def load_local(source: SeedSource, languages: list[str]) -> pd.DataFrame:
    """Rows of a local/builtin source, mapped and language-labelled (all languages; the caller filters)."""
    records = []
    for path, file_lang in _files(source, languages):
        table = read_table(path)
        if source.path != "builtin" and "messages" not in source.columns:
            want = source.columns.get("prompt", "prompt").split(".")[0]
            if want not in table.columns:
                raise PgScoreError(f"seed source {source.name!r}: {path.name} has no column {want!r} "
                                   f"(columns: {', '.join(map(str, table.columns))}); set columns: {{prompt: ...}}")
        for rec in table.to_dict(orient="records"):
            records.append(_label(map_record(rec, source), source, file_lang))
    return _finish(records, source)


def _hub_rows(source: SeedSource) -> Iterator[dict]:
    try:
        import datasets  # heavy; only for hub sources
    except ModuleNotFoundError:
        raise DataMissingError(f"seed source {source.name!r} reads the Hugging Face hub, which needs the datasets "
                               "package: pip install 'pgscore[eval]'") from None

    kwargs: dict[str, Any] = {"split": source.split, "streaming": True}
    if source.path:  # e.g. hf_dataset "json" with a local data file in the corpus's schema
        kwargs["data_files"] = source.path
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its retry chatter; a failure becomes one line below
    try:
        ds = datasets.load_dataset(source.hf_dataset, source.hf_config, **kwargs)
        yield from ds
    except Exception as exc:  # noqa: BLE001 - any hub failure is one line for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataMissingError(
            f"seed source {source.name!r}: Hugging Face dataset {source.hf_dataset!r} could not be loaded "
            f"({type(exc).__name__}: {first}); it needs hub access, or point path: at a local copy"
        ) from None
    finally:
        hub_log.setLevel(level)


def load_hub(source: SeedSource, languages: list[str], need: int | None,
             rows: Iterable[dict] | None = None) -> pd.DataFrame:
    """Stream a hub dataset, keeping rows of the requested languages until each has ``need`` rows."""
    need = need or HUB_SCAN_PER_LANGUAGE
    counts = {lang: 0 for lang in languages}
    records = []
    for i, raw in enumerate(rows if rows is not None else _hub_rows(source)):
        if i >= (source.max_scan or HUB_MAX_SCAN):
            break
        rec = _label(map_record(raw, source), source, None)
        lang = match_language(rec["language"], languages)
        if lang is None:
            continue
        rec["language"] = lang
        records.append(rec)
        if not rec["filtered"]:  # filtered rows are kept for the report but fill no quota
            counts[lang] += 1
        if all(c >= need for c in counts.values()):
            break
    return _finish(records, source)


def match_language(value: str | None, languages: list[str]) -> str | None:
    """The requested language a row's label stands for (exact tag, else same base language)."""
    if not isinstance(value, str) or not value:
        return None
    value = LANGUAGE_ALIASES.get(value, value)
    if value in languages:
        return value
    base = value.split("-")[0]
    for lang in languages:
        if lang.split("-")[0] == base:
            return lang
    return None


def load_source(source: SeedSource, languages: list[str], need: int | None = None) -> pd.DataFrame:
    """A resolved source's rows for the requested languages."""
    if source.hf_dataset:
        return load_hub(source, languages, need)
    df = load_local(source, languages)
    df["language"] = [match_language(v, languages) for v in df["language"]]
    return df[df["language"].notna()].reset_index(drop=True)
