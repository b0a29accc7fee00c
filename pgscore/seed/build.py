"""The seed stage: sources -> filtered, de-duplicated, quota-limited seed table and English pool."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pgscore.errors import DataMissingError, PgScoreError
from pgscore.io import write_table
from pgscore.languages import normalize
from pgscore.seed.config import SEED_KINDS, SeedConfig, SeedSource
from pgscore.seed.presets import resolve
from pgscore.seed.sources import load_source

SEED_COLUMNS = ["id", "language", "prompt", "response", "source", "task", "prompt_en"]
POOL_COLUMNS = ["id", "language", "prompt", "source"]
DROP_REASONS = ("source_filter", "empty", "wrong_language", "duplicate", "quota", "per_language_cap")


def normalize_prompt(text: str) -> str:
    """Key for de-duplication: NFKC, case-folded, whitespace collapsed, edge punctuation stripped."""
    t = unicodedata.normalize("NFKC", text).casefold()
    t = re.sub(r"\s+", " ", t)
    return t.strip(" \t.,;:!?¿¡。、？！・\"'«»“”„")


def _str(v: object) -> str | None:
    return v if isinstance(v, str) and v.strip() else None


def stable_seed(*parts: object) -> int:
    """A 32-bit seed from arbitrary parts (same value on every machine and run)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little")


def row_id(source: str, language: str, prompt: str) -> str:
    digest = hashlib.sha1(f"{source}\x1f{language}\x1f{normalize_prompt(prompt)}".encode()).hexdigest()[:10]
    return f"{source}:{language}:{digest}"


@dataclass
class SeedResult:
    seed: pd.DataFrame
    english_pool: pd.DataFrame
    report: pd.DataFrame  # source x language: loaded, kept, and one column per drop reason
    warnings: list[str] = field(default_factory=list)


def _select(df: pd.DataFrame, language: str, source: SeedSource, cfg: SeedConfig, seen: set[str],
            cap: int | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Walk one source's rows for one language (seeded order when a limit applies), keeping rows
    until the limit; every examined row that is not kept gets one drop reason."""
    from pgscore.langid import claimed_prob

    quota = source.quota_for(language)
    limit = min(x for x in (quota, cap) if x is not None) if (quota is not None or cap is not None) else None
    counts = {r: 0 for r in DROP_REASONS}
    order = np.arange(len(df))
    if limit is not None and limit < len(df):
        order = np.random.default_rng(stable_seed(cfg.seed, source.name, language)).permutation(len(df))
    filtered = df["filtered"].to_numpy() if "filtered" in df.columns else np.zeros(len(df), dtype=bool)
    kept: list[int] = []
    local_seen: set[str] = set()
    for pos in order:
        if filtered[pos]:  # the source's own filters (e.g. EuroBlocks' Magpie rows, HelpSteer3's domain)
            counts["source_filter"] += 1
            continue
        if limit is not None and len(kept) >= limit:
            counts["quota" if quota is not None and len(kept) >= quota else "per_language_cap"] += 1
            continue
        prompt, response = _str(df["prompt"].iat[pos]), _str(df["response"].iat[pos])
        if not prompt or (source.kind == "pairs" and not response):
            counts["empty"] += 1
            continue
        key = normalize_prompt(prompt)
        if cfg.dedupe and (key in seen or key in local_seen):
            counts["duplicate"] += 1
            continue
        if cfg.langid_filter:  # the prompt carries the claimed language (a translation task's answer may not)
            p = claimed_prob([prompt], language)[0]
            if p is not None and p < cfg.langid_min_prob:
                counts["wrong_language"] += 1
                continue
        local_seen.add(key)
        kept.append(pos)
    seen |= local_seen
    return df.iloc[sorted(kept)], counts


def _collect(sources: list[SeedSource], languages: list[str], cfg: SeedConfig, per_language: int | None,
             warnings: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    frames, report = [], []
    seen = {lang: set() for lang in languages}
    taken = {lang: 0 for lang in languages}
    for raw in sources:
        src = resolve(raw)
        if src.kind not in SEED_KINDS:
            raise PgScoreError(f"seed source {src.name!r}: kind must be one of {', '.join(SEED_KINDS)}")
        quotas = [q for q in (src.quota, *src.quotas.values()) if q is not None]
        need = 3 * max(quotas) if quotas else None
        try:
            df = load_source(src, languages, need=need)
        except DataMissingError as exc:
            if not src.optional:
                raise
            warnings.append(f"skipped optional source {src.name!r}: {exc}")
            continue
        for lang in languages:
            part = df[df["language"] == lang].reset_index(drop=True)
            if part.empty:
                continue
            cap = None if per_language is None else max(per_language - taken[lang], 0)
            kept, counts = _select(part, lang, src, cfg, seen[lang], cap)
            taken[lang] += len(kept)
            report.append({"source": src.name, "language": lang, "kind": src.kind, "loaded": len(part),
                           "kept": len(kept), **counts})
            if len(kept):
                kept = kept.assign(source=src.name)
                if src.kind != "pairs":
                    kept = kept.assign(response=None)
                frames.append(kept)
    cols = ["prompt", "response", "language", "prompt_en", "task", "source"]
    out = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    out.insert(0, "id", [row_id(s, lang, p) for s, lang, p in zip(out["source"], out["language"], out["prompt"])])
    return out, report


def build_seed(languages: list[str], cfg: SeedConfig | None = None, out_dir: str | Path | None = None
               ) -> SeedResult:
    """Build ``seed.parquet`` (target-language pairs and prompts) and ``english_pool.parquet``."""
    cfg = cfg or SeedConfig()
    langs = [normalize(lang) for lang in languages]
    langs = [{"fil": "tl"}.get(lang, lang) for lang in langs]  # the paper's tag for Tagalog/Filipino
    if not langs:
        raise PgScoreError("no languages given")
    warnings: list[str] = []
    if cfg.recipe:
        from pgscore.seed.recipes import apply_recipe

        cfg, recipe_notes = apply_recipe(cfg)
        warnings += recipe_notes
    seed, rep = _collect(cfg.sources, langs, cfg, cfg.per_language, warnings)
    seed = seed[SEED_COLUMNS].reset_index(drop=True)
    pool, rep_en = _collect(cfg.english_sources, ["en"], cfg, None, warnings)
    pool = pool[POOL_COLUMNS].reset_index(drop=True)
    report = pd.DataFrame(rep + rep_en, columns=["source", "language", "kind", "loaded", "kept", *DROP_REASONS])
    for lang in langs:
        if not (seed["language"] == lang).any():
            warnings.append(f"no seed rows for {lang}: Generate and Respond cannot run for it")
        elif not ((seed["language"] == lang) & seed["response"].notna()).any():
            warnings.append(f"no seed pairs (prompt + response) for {lang}: Generate cannot run for it")
    if pool.empty and cfg.english_sources:
        warnings.append("the English prompt pool is empty: Translate cannot run")
    if out_dir is not None:
        out = Path(out_dir)
        write_table(seed, out / "seed.parquet")
        write_table(pool, out / "english_pool.parquet")
        write_table(report, out / "seed_report.csv")
    return SeedResult(seed, pool, report, warnings)


def load_seed_dir(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a seed folder written by :func:`build_seed` (``pgscore seed --out``)."""
    p = Path(path)
    if not (p / "seed.parquet").is_file():
        raise PgScoreError(f"no seed.parquet in {p}: run `pgscore seed --out {p}` first")
    seed = pd.read_parquet(p / "seed.parquet")
    pool_path = p / "english_pool.parquet"
    pool = pd.read_parquet(pool_path) if pool_path.is_file() else pd.DataFrame(columns=POOL_COLUMNS)
    return seed, pool
