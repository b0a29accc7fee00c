"""The synthesis stage: plan rows (teacher x language x trial x method), call each teacher once,
parse, persist as it goes (append-only Parquet shards), resume, consolidate to ``synthetic.parquet``."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from pgscore.errors import PgScoreError
from pgscore.io import write_table
from pgscore.models import load_model
from pgscore.models.base import Generation, LanguageModel, SamplingParams
from pgscore.seed.build import stable_seed
from pgscore.synthesis.config import METHODS, SynthesisConfig
from pgscore.synthesis.decoding import teacher_params
from pgscore.synthesis.parsing import Parsed, parse_completion_pair, parse_json_pair, parse_plain
from pgscore.synthesis.prompts import PAIR_SCHEMA, Example, Rendered, render, sample_indices
from pgscore.synthesis.templates import TemplateSet, load_templates

SYNTHETIC_COLUMNS = [
    "id", "teacher", "model", "language", "method", "trial", "prompt", "response", "status", "error",
    "raw_output", "seed_ids", "source_id", "params", "prompt_tokens", "completion_tokens",
    "task_type", "rendering", "finish_reason",
]
PLAN_COLUMNS = ["id", "teacher", "model", "language", "method", "trial", "index", "row_seed", "task_type",
                "example_ids", "source_id"]
PARTS_DIR = "synthetic_parts"
RETRY_PREFIX = "generation_error"  # failed rows with this error are retried on a re-run
TEMPLATES_COLUMN = "templates_hash"  # in the shards: the template set a row was rendered with


def split_counts(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Split n rows across methods by weight (largest remainder; ties in METHODS order)."""
    methods = [m for m in METHODS if weights.get(m, 0) > 0]
    total = sum(weights[m] for m in methods)
    exact = {m: n * weights[m] / total for m in methods}
    counts = {m: int(np.floor(exact[m])) for m in methods}
    rest = n - sum(counts.values())
    for m in sorted(methods, key=lambda m: (-(exact[m] - counts[m]), METHODS.index(m)))[:rest]:
        counts[m] += 1
    return counts


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "teacher"


@dataclass
class _LangData:
    pairs: pd.DataFrame  # rows with a response (Generate examples, few-shot blocks)
    prompts: pd.DataFrame  # every row (Respond sources)


def _by_language(seed_df: pd.DataFrame, languages: Sequence[str]) -> dict[str, _LangData]:
    out = {}
    for lang in languages:
        part = seed_df[seed_df["language"] == lang].reset_index(drop=True)
        has_resp = part["response"].notna() & (part["response"].astype(str).str.strip() != "")
        out[lang] = _LangData(part[has_resp].reset_index(drop=True), part)
    return out


def plan_rows(teachers: Sequence[Any], languages: Sequence[str], seed_df: pd.DataFrame,
              english_pool: pd.DataFrame, cfg: SynthesisConfig) -> pd.DataFrame:
    """Every row to synthesise, deterministic given the config and seed data. Example and source
    choices depend on (language, trial, method, index), not on the teacher, so teachers are compared
    on the same inputs."""
    data = _by_language(seed_df, languages)
    counts = split_counts(cfg.examples_per_cell, cfg.methods)
    rows = []
    for lang in languages:
        d = data[lang]
        for trial in range(cfg.trials):
            for method, m in counts.items():
                cell_rng = np.random.default_rng(stable_seed(cfg.seed, lang, trial, method, "cell"))
                pool = {"respond": d.prompts, "translate": english_pool}.get(method)
                sources = (cell_rng.choice(len(pool), size=m, replace=m > len(pool)).tolist()
                           if pool is not None and len(pool) else [None] * m)
                for i in range(m):
                    rseed = stable_seed(cfg.seed, lang, trial, method, i)
                    rng = np.random.default_rng(rseed)
                    src = sources[i]
                    exclude = None
                    source_id = None if src is None or pool is None else str(pool.iloc[src]["id"])
                    if method == "respond" and source_id is not None:
                        hit = np.flatnonzero(d.pairs["id"].to_numpy() == source_id)
                        exclude = int(hit[0]) if len(hit) else None
                    ex_idx = sample_indices(rng, len(d.pairs), cfg.k_shot, exclude=exclude)
                    task = str(rng.choice(cfg.task_types)) if method == "generate" else None
                    rows.append({"language": lang, "method": method, "trial": trial, "index": i,
                                 "row_seed": rseed, "task_type": task,
                                 "example_ids": [str(d.pairs.iloc[j]["id"]) for j in ex_idx],
                                 "source_id": source_id})
    base = pd.DataFrame(rows, columns=["language", "method", "trial", "index", "row_seed", "task_type",
                                       "example_ids", "source_id"])
    out = []
    for t in teachers:
        p = base.copy()
        p["teacher"], p["model"] = t.name, t.model.short()
        p["id"] = [f"{t.name}/{r.language}/t{r.trial}/{r.method}/{r.index:04d}" for r in p.itertuples()]
        out.append(p)
    if not out:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    return pd.concat(out, ignore_index=True)[PLAN_COLUMNS]


# --- persistence ------------------------------------------------------------------------------------

def read_parts(results_dir: str | Path) -> pd.DataFrame:
    """All rows written so far (last write of an id wins)."""
    parts = sorted((Path(results_dir) / PARTS_DIR).glob("*.parquet"))
    if not parts:
        return pd.DataFrame(columns=SYNTHETIC_COLUMNS)
    df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return df.drop_duplicates("id", keep="last").reset_index(drop=True)


def done_ids(parts: pd.DataFrame, templates_hash: str | None = None) -> set[str]:
    """Ids that need no new call: not a retryable failure and, when ``templates_hash`` is given, written
    with that template set (a row from other templates, or from a shard without the column, is redone;
    behind the run ledger an unchanged prompt costs no call)."""
    if parts.empty:
        return set()
    retry = (parts["status"] == "failed") & parts["error"].fillna("").str.startswith(RETRY_PREFIX)
    if templates_hash is not None:
        made_with = parts[TEMPLATES_COLUMN] if TEMPLATES_COLUMN in parts else pd.Series(None, index=parts.index)
        retry |= made_with.fillna("") != templates_hash
    return set(parts.loc[~retry, "id"])


def _write_shard(records: list[dict], results_dir: Path, teacher: str, chunk: int,
                 templates_hash: str | None = None) -> None:
    if records:
        name = f"{time.time_ns():020d}-{slug(teacher)}-{chunk:05d}.parquet"
        df = pd.DataFrame.from_records(records, columns=SYNTHETIC_COLUMNS)
        df[TEMPLATES_COLUMN] = templates_hash  # shard-only provenance; synthetic.parquet keeps its schema
        write_table(df, results_dir / PARTS_DIR / name)


def consolidate(plan: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """``synthetic.parquet``: the planned rows written so far, in plan order."""
    parts = read_parts(results_dir)
    order = {rid: i for i, rid in enumerate(plan["id"])}
    df = parts[parts["id"].isin(order)].copy()
    df["_o"] = df["id"].map(order)
    df = df.sort_values("_o").drop(columns="_o").reset_index(drop=True)[SYNTHETIC_COLUMNS]
    write_table(df, Path(results_dir) / "synthetic.parquet")
    return df


# --- one row ----------------------------------------------------------------------------------------

def _opt(v: Any) -> Any:
    """None for missing values (pandas may hand back NaN for None)."""
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def _examples(ids: Sequence[str], lookup: dict[str, dict]) -> list[Example]:
    return [Example(i, lookup[i]["prompt"], lookup[i]["response"], _opt(lookup[i].get("prompt_en"))) for i in ids]


def _render_row(row: Any, rendering: str, lookup: dict[str, dict], pool: dict[str, str],
                cfg: SynthesisConfig | None = None, templates: TemplateSet | None = None) -> Rendered | str:
    """The model input for a planned row, or the reason it cannot be built (``cfg``: the synthesis section,
    default settings when None; ``templates``: its loaded template set, loaded from ``cfg`` when None)."""
    cfg = cfg or SynthesisConfig()
    templates = templates or load_templates(cfg.templates)
    examples = _examples(row.example_ids, lookup)
    opts = {"templates": templates, "task_types": cfg.task_types, "respond_instruction": cfg.respond_instruction}
    if row.method == "generate":
        if not examples:
            return f"no_seed_pairs: no seed prompt-response pairs for {row.language}"
        return render("generate", rendering, row.language, examples=examples, task_type=_opt(row.task_type), **opts)
    source_id = _opt(row.source_id)
    if source_id is None:
        what = "English prompt pool is empty" if row.method == "translate" else f"no seed prompts for {row.language}"
        return f"no_source: {what}"
    text = pool[source_id] if row.method == "translate" else lookup[source_id]["prompt"]
    out = render(row.method, rendering, row.language, examples=examples, source_prompt=text, **opts)
    out.source_text = text
    return out


def _parse(r: Rendered, gen: Generation) -> Parsed:
    if r.parse == "json":
        parsed = parse_json_pair(gen.text)
        if parsed.error == "truncated_json" or (parsed.error == "no_json_object" and gen.finish_reason == "length"):
            parsed.error = "truncated_json: hit max_tokens" if gen.finish_reason == "length" else "truncated_json"
        return parsed
    if r.parse == "pair":
        return parse_completion_pair(gen.text, r.response_label, r.stop)
    return parse_plain(gen.text, r.stop)


def _norm(s: str) -> str:
    """Letters and digits only, case-folded: catches copies that differ in spacing, quotes or escapes."""
    return "".join(ch for ch in s.casefold() if ch.isalnum())


def _record(row: Any, rendering: str, params: SamplingParams, r: Rendered | None, gen: Generation | None,
            error: str | None, lookup: dict[str, dict], reject_copies: bool) -> dict:
    rec = {c: None for c in SYNTHETIC_COLUMNS}
    rec.update(id=row.id, teacher=row.teacher, model=row.model, language=row.language, method=row.method,
               trial=int(row.trial), source_id=_opt(row.source_id), task_type=r.task_type if r else None,
               rendering=rendering,
               seed_ids=list(r.seed_ids) if r else [], params=json.dumps(params.model_dump(mode="json"),
                                                                         sort_keys=True),
               prompt_tokens=0, completion_tokens=0)
    if gen is not None:
        rec.update(raw_output=gen.text, prompt_tokens=int(gen.prompt_tokens or 0),
                   completion_tokens=int(gen.completion_tokens or 0), finish_reason=gen.finish_reason)
        if gen.error:
            error = f"{RETRY_PREFIX}: {gen.error}"
    if error is None and r is not None and gen is not None:
        try:
            parsed = _parse(r, gen)
        except Exception as exc:  # noqa: BLE001 - one odd output must not stop a long run
            parsed = Parsed(error=f"parse_error: {type(exc).__name__}")
        if parsed.ok:
            prompt = parsed.prompt if row.method != "respond" else lookup[row.source_id]["prompt"]
            if reject_copies and row.method == "generate" and _norm(prompt) in {
                    _norm(lookup[i]["prompt"]) for i in r.seed_ids}:
                error = "copied_example"
            elif reject_copies and row.method == "translate" and _norm(prompt) == _norm(r.source_text or ""):
                error = "untranslated"
            rec.update(prompt=prompt, response=parsed.response)
        else:
            error = parsed.error
    rec["status"] = "failed" if error else "ok"
    rec["error"] = error
    return rec


# --- the stage --------------------------------------------------------------------------------------

def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled)


def synthesize(teachers: Sequence[Any], languages: Sequence[str], seed_df: pd.DataFrame,
               english_pool: pd.DataFrame, cfg: SynthesisConfig, results_dir: str | Path,
               load: Callable[[Any], LanguageModel] = load_model, progress: bool = True,
               limit_per_method: int | None = None) -> pd.DataFrame:
    """Run the synthesis stage and return the consolidated ``synthetic.parquet`` table.

    Rows already written under ``results_dir/synthetic_parts`` are skipped (except generation errors,
    which are retried, and rows rendered with another template set, which are redone); each teacher is loaded once and closed after its rows. ``limit_per_method``
    (``pgscore run --preview N``): only the plan's first N rows per teacher x language x method of the
    first trial (the same rows the full run plans), written to the shards; ``synthetic.parquet`` is left
    alone and those rows are returned."""
    if not teachers:
        raise PgScoreError("no teachers given")
    results_dir = Path(results_dir)
    templates = load_templates(cfg.templates).check()
    plan = plan_rows(teachers, languages, seed_df, english_pool, cfg)
    if limit_per_method is not None:
        plan = plan[(plan["trial"] == plan["trial"].min()) & (plan["index"] < limit_per_method)]
    done = done_ids(read_parts(results_dir), templates.hash)
    lookup = {str(r["id"]): r for r in seed_df.to_dict(orient="records")}
    pool = dict(zip(english_pool["id"].astype(str), english_pool["prompt"])) if len(english_pool) else {}
    _preflight(plan, cfg, lookup, pool, templates)  # a broken template fails here, before any model loads
    with _progress(progress) as bar:
        for teacher in teachers:
            tplan = plan[plan["teacher"] == teacher.name].reset_index(drop=True)
            todo_mask = ~tplan["id"].isin(done)
            task = bar.add_task(f"synthesize {teacher.name}", total=len(tplan), completed=int((~todo_mask).sum()))
            if not todo_mask.any():
                continue
            model = load(teacher.model)
            try:
                rendering = cfg.rendering if cfg.rendering != "auto" else (
                    "chat" if model.has_chat_template else "completion")
                params = teacher_params(teacher, cfg.max_tokens)
                for chunk_no, start in enumerate(range(0, len(tplan), cfg.batch_size)):
                    chunk = tplan.iloc[start:start + cfg.batch_size]
                    chunk = chunk[~chunk["id"].isin(done)]
                    if chunk.empty:
                        continue
                    records = _run_chunk(model, chunk, rendering, params, cfg, lookup, pool,
                                         chunk_seed=int(tplan.iloc[start]["row_seed"]), templates=templates)
                    _write_shard(records, results_dir, teacher.name, chunk_no, templates.hash)
                    bar.advance(task, len(chunk))
            finally:
                model.close()
    if limit_per_method is not None:
        parts = read_parts(results_dir)
        order = {rid: i for i, rid in enumerate(plan["id"])}
        rows = parts[parts["id"].isin(order)].copy()
        return rows.sort_values("id", key=lambda c: c.map(order)).reset_index(drop=True)[SYNTHETIC_COLUMNS]
    return consolidate(plan, results_dir)


def _preflight(plan: pd.DataFrame, cfg: SynthesisConfig, lookup: dict[str, dict], pool: dict[str, str],
               templates: TemplateSet) -> None:
    """Render the first planned row of each method in every rendering it may get (template errors such
    as an undefined variable surface before a model is loaded)."""
    renderings = ("chat", "completion") if cfg.rendering == "auto" else (cfg.rendering,)
    for row in plan.drop_duplicates("method").itertuples(index=False):
        for rendering in renderings:
            _render_row(row, rendering, lookup, pool, cfg, templates)


def render_rows(plan: pd.DataFrame, seed_df: pd.DataFrame, english_pool: pd.DataFrame, cfg: SynthesisConfig,
                rendering: str) -> list[Rendered | str]:
    """The model input of each planned row (or the reason it has none) exactly as the stage builds it,
    without calling a model (``pgscore plan`` counts tokens on these)."""
    templates = load_templates(cfg.templates)
    lookup = {str(r["id"]): r for r in seed_df.to_dict(orient="records")}
    pool = dict(zip(english_pool["id"].astype(str), english_pool["prompt"])) if len(english_pool) else {}
    return [_render_row(row, rendering, lookup, pool, cfg, templates) for row in plan.itertuples(index=False)]


def _run_chunk(model: LanguageModel, chunk: pd.DataFrame, rendering: str, params: SamplingParams,
               cfg: SynthesisConfig, lookup: dict[str, dict], pool: dict[str, str], chunk_seed: int,
               templates: TemplateSet | None = None) -> list[dict]:
    records: dict[str, dict] = {}
    groups: dict[tuple, list[tuple[Any, Rendered, SamplingParams]]] = {}
    templates = templates or load_templates(cfg.templates)
    per_prompt = bool(getattr(model, "accepts_per_prompt_params", False))
    made: dict[tuple, SamplingParams] = {}

    def row_params(stop: tuple[str, ...], schema: bool) -> SamplingParams:
        """The call's parameters for a row with this stop list and schema (one object per combination)."""
        if (stop, schema) not in made:
            update: dict[str, Any] = {"seed": chunk_seed, "stop": stop}
            if schema:
                update["json_schema"] = PAIR_SCHEMA
            made[(stop, schema)] = SamplingParams.model_validate({**params.model_dump(), **update})
        return made[(stop, schema)]

    for row in chunk.itertuples(index=False):
        r = _render_row(row, rendering, lookup, pool, cfg, templates)
        if isinstance(r, str):
            records[row.id] = _record(row, rendering, params, None, None, r, lookup, cfg.reject_copies)
        else:
            # one call per rendering where the backend takes per-prompt parameters (rows keep their own stop
            # strings and schema in one batch); otherwise one per rendering, stop list and schema
            schema = cfg.structured_output and r.parse == "json"
            key = (r.rendering,) if per_prompt else (r.rendering, r.stop, schema)
            groups.setdefault(key, []).append((row, r, row_params(tuple(r.stop), schema)))
    for key, items in groups.items():
        kind = key[0]
        call_params: Any = [p for _, _, p in items] if per_prompt else items[0][2]
        try:
            if kind == "chat":
                gens = model.chat([r.messages for _, r, _ in items], call_params)
            else:
                gens = model.complete([r.text for _, r, _ in items], call_params)
            if len(gens) != len(items):
                raise RuntimeError(f"backend returned {len(gens)} generations for {len(items)} inputs")
        except Exception as exc:  # noqa: BLE001 - a failed call becomes failure records, retried on re-run
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            gens = [Generation(text="", error=f"{type(exc).__name__}: {first}") for _ in items]
        for (row, r, row_p), gen in zip(items, gens):
            records[row.id] = _record(row, rendering, row_p, r, gen, None, lookup, cfg.reject_copies)
    return [records[i] for i in chunk["id"] if i in records]
