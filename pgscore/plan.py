"""``pgscore plan``: what an experiment will cost before it runs, without calling any model.

Counts the model calls each stage will make (the stages' own row plans: synthesis rows from
:func:`pgscore.synthesis.stage.plan_rows` rendered with the synthesis prompts; perplexity and judge calls per
ok row as :mod:`pgscore.metrics.measure` makes them; benchmark requests from the evaluation registry), with
prompt tokens counted on the rendered prompts by the model's own tokenizer where it is local (tiny / hf /
vllm with a local folder), else estimated as characters / ``chars_per_token`` (pricing.yaml). Completion
tokens are ``max_tokens`` (an upper bound) until a preview or an earlier run has observed real lengths and
parse rates in the results folder; each row says which (``basis``). Cost comes from ``pricing.yaml``, time
from ``throughput.yaml`` (package data under ``pgscore/resources/plan/``; user files are tried first), and
``done`` from the synthesis shards and the run ledger.

Pure arithmetic (:func:`estimate_seconds`, :func:`estimate_cost`, :func:`match_entry`) is kept apart from
the I/O (:func:`plan_experiment`).
"""

from __future__ import annotations

import fnmatch
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import yaml

from pgscore.errors import PgScoreError
from pgscore.models.base import ModelSpec
from pgscore.paths import resource

PLAN_COLUMNS = ["stage", "model", "kind", "calls", "done", "todo", "prompt_tokens", "completion_tokens",
                "cost_usd", "seconds", "throughput", "basis"]
LOCAL_BACKENDS = ("tiny", "hf", "vllm")
JUDGE_SCORES = 5  # constrained judging scores each of 1..5 as a continuation
PLAN_FILE = "plan.json"  # pgscore.results.FILES["plan"]: written by `pgscore plan --save`, read by ledger stats


# ------------------------------------------------------------------------------------ tables (YAML)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PgScoreError(f"file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise PgScoreError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PgScoreError(f"{path}: expected a mapping at the top level")
    return data


def load_table(name: str, user: str | Path | None = None) -> dict:
    """``pricing`` or ``throughput``: the package table with a user file's entries tried first (its other
    top-level keys override the package's)."""
    base = _read_yaml(resource("plan", f"{name}.yaml"))
    key = "models" if name == "pricing" else "entries"  # throughput, parse_rates: "entries"
    if user is None:
        return base
    extra = _read_yaml(Path(user))
    entries = extra.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "match" in e for e in entries):
        raise PgScoreError(f"{user}: '{key}' must be a list of mappings, each with a 'match' pattern")
    merged = {**base, **{k: v for k, v in extra.items() if k != key}}
    merged[key] = entries + list(base.get(key, []))
    return merged


from pgscore.families import model_size_b  # noqa: E402  (``Llama-3.1-8B`` -> 8, ``gemma3-270m`` -> 0.27)


def match_entry(entries: Iterable[dict], short: str, engine: str | None = None) -> dict | None:
    """First entry whose ``match`` pattern fits ``backend:model`` (and ``engine``, ``max_params_b``)."""
    size = model_size_b(short)
    for e in entries:
        if not fnmatch.fnmatchcase(short.lower(), str(e["match"]).lower()):
            continue
        if engine is not None and e.get("engine") not in (None, engine):
            continue
        if "max_params_b" in e and (size is None or size > float(e["max_params_b"])):
            continue
        return e
    return None


PARSE_RATE_SETTINGS = ("structured_output", "max_tokens", "templates")  # what an entry may pin


def prior_parse_rate(entries: Iterable[dict], short: str, method: str,
                     settings: dict | None = None) -> tuple[float, str]:
    """(rate, source) of the first ``parse_rates.yaml`` entry for this teacher model and method whose pinned
    settings (``structured_output``, ``max_tokens``, ``templates``: a rate holds for the setting it was
    measured in) equal ``settings``; (1.0, upper bound) when none matches."""
    settings = settings or {}
    for e in entries:
        if not fnmatch.fnmatchcase(short.lower(), str(e["match"]).lower()) or e.get("method") not in (None, method):
            continue
        if any(k in e and settings.get(k) != e[k] for k in PARSE_RATE_SETTINGS):
            continue
        return float(e["rate"]), str(e.get("source", "parse_rates.yaml"))
    return 1.0, "upper bound: every row assumed to parse"


def estimate_seconds(kind: str, prompt_tokens: float, completion_tokens: float, entry: dict | None) -> float:
    """Time from aggregate throughput: prompt (and log-likelihood) tokens at ``prefill_tps``, generated
    tokens at ``decode_tps``. NaN without an entry."""
    if entry is None:
        return math.nan
    pre = float(entry.get("prefill_tps") or math.nan)
    dec = float(entry.get("decode_tps") or math.nan)
    secs = prompt_tokens / pre
    if kind != "loglikelihood":
        secs += completion_tokens / dec
    return secs


def estimate_cost(kind: str, prompt_tokens: float, completion_tokens: float, entry: dict | None) -> float:
    """USD from per-million-token prices; NaN without a price. Log-likelihood requests are priced as input."""
    if entry is None:
        return math.nan
    cost = prompt_tokens * float(entry.get("input_per_mtok", 0)) / 1e6
    if kind != "loglikelihood":
        cost += completion_tokens * float(entry.get("output_per_mtok", 0)) / 1e6
    return cost


def engine_of(spec: ModelSpec) -> str:
    return {"tiny": "transformers", "hf": "transformers", "vllm": "vllm"}.get(spec.backend, "server")


# ------------------------------------------------------------------------------------ token counting


class TokenCounter:
    """Counts prompt tokens the way a backend sends them: the model's tokenizer where it is local (chat
    prompts rendered with its template, completion prompts with its special tokens), else an estimate."""

    def __init__(self, spec: ModelSpec, chars_per_token: float) -> None:
        self.spec = spec
        self.cpt = float(chars_per_token)
        self.tokenizer = None
        self.is_base = False
        self.why = ""
        if spec.backend in LOCAL_BACKENDS:
            try:
                self._load()
            except Exception as exc:  # noqa: BLE001 - any failure falls back to the documented estimate
                self.why = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        else:
            self.why = "no local tokenizer for a server backend"

    def _load(self) -> None:
        from transformers import AutoTokenizer

        from pgscore.models.hf_source import resolve_source as _resolve_source

        spec = self.spec if self.spec.backend != "vllm" else self.spec.model_copy(update={"backend": "hf"})
        source, local_only, extra = _resolve_source(spec)
        self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        tm = extra.get("tiny")
        self.is_base = bool(tm and tm.is_base)
        if spec.chat_template:
            self.tokenizer.chat_template = spec.chat_template

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    @property
    def basis(self) -> str:
        return "tokenizer" if self.exact else f"~{self.cpt:g} chars/token ({self.why})"

    @property
    def has_chat_template(self) -> bool:
        """Mirrors the local backend: base models get completion prompts unless a template is given."""
        if self.tokenizer is None:
            return True
        return bool(getattr(self.tokenizer, "chat_template", None)) and not (self.is_base and not self.spec.chat_template)

    def render_chat(self, messages: Sequence[dict]) -> str:
        if self.tokenizer is not None and self.has_chat_template:
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        from pgscore.models.plain_chat import plain_chat_prompt

        return plain_chat_prompt(list(messages))

    def chat(self, conversations: Sequence[Sequence[dict]]) -> list[int]:
        if self.tokenizer is None:
            return [math.ceil(sum(len(m.get("content", "")) for m in c) / self.cpt) + 4 * len(c) for c in conversations]
        texts = [self.render_chat(c) for c in conversations]
        special = not self.has_chat_template  # a rendered template already holds its special tokens
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=special)["input_ids"]] if texts else []

    def text(self, texts: Sequence[str], special: bool = True) -> list[int]:
        if not texts:
            return []
        if self.tokenizer is None:
            return [math.ceil(len(t) / self.cpt) for t in texts]
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=special)["input_ids"]]


# ------------------------------------------------------------------------------------ observations


@dataclass
class Observed:
    """What a preview or an earlier run has shown: synthesis rows written, ledger usage."""

    parts: pd.DataFrame
    ledger: pd.DataFrame  # model, stage, kind, stored, mean_completion

    def ok_rate(self, teacher: str, method: str) -> tuple[float, int]:
        """Expected share of rows that parse: (ok + 1) / (n + 2) over the rows seen for this teacher and
        method (rows retried after a generation error left out), the posterior mean under a uniform prior,
        so one or two preview rows move it without pinning it to 0 or 1; 1.0 (an upper bound) unseen."""
        p = self.parts
        if p.empty:
            return 1.0, 0
        g = p[(p["teacher"] == teacher) & (p["method"] == method)]
        g = g[~g["error"].fillna("").str.startswith("generation_error")]
        if g.empty:
            return 1.0, 0
        return (float((g["status"] == "ok").sum()) + 1.0) / (len(g) + 2.0), len(g)

    def completion(self, teacher: str, method: str) -> tuple[float | None, int]:
        p = self.parts
        if p.empty:
            return None, 0
        g = p[(p["teacher"] == teacher) & (p["method"] == method) & (p["completion_tokens"].fillna(0) > 0)]
        return (float(g["completion_tokens"].mean()), len(g)) if len(g) else (None, 0)

    def stored(self, label: str, stage: str, kind: str) -> int:
        g = self.ledger[(self.ledger["model"] == label) & (self.ledger["stage"] == stage) & (self.ledger["kind"] == kind)]
        return int(g["stored"].sum()) if len(g) else 0

    def mean_completion(self, label: str, stage: str, kinds: Sequence[str]) -> tuple[float | None, int]:
        g = self.ledger[(self.ledger["model"] == label) & (self.ledger["stage"] == stage) & self.ledger["kind"].isin(kinds)]
        g = g[g["stored"] > 0]
        if g.empty:
            return None, 0
        n = int(g["stored"].sum())
        return float((g["mean_completion"] * g["stored"]).sum() / n), n


def read_ledger_usage(results_dir: Path | None) -> pd.DataFrame:
    """Stored calls per (model, stage, kind) with their mean completion tokens, read-only."""
    cols = ["model", "stage", "kind", "stored", "mean_completion"]
    path = Path(results_dir) / "ledger.sqlite" if results_dir else None
    if path is None or not path.is_file():
        return pd.DataFrame(columns=cols)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return pd.read_sql_query("SELECT model, stage, kind, COUNT(*) AS stored, AVG(completion_tokens) AS "
                                 "mean_completion FROM calls GROUP BY model, stage, kind", db)
    except sqlite3.DatabaseError:
        return pd.DataFrame(columns=cols)
    finally:
        db.close()


def observe(results_dir: Path | None) -> Observed:
    from pgscore.synthesis.stage import read_parts

    parts = read_parts(results_dir) if results_dir and Path(results_dir).is_dir() else pd.DataFrame()
    return Observed(parts, read_ledger_usage(results_dir))


# ------------------------------------------------------------------------------------ the plan


@dataclass
class _Acc:
    calls: int = 0
    done: int = 0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    basis: list[str] = field(default_factory=list)


@dataclass
class Plan:
    table: pd.DataFrame
    notes: list[str]
    results_dir: Path | None

    def totals(self) -> dict[str, float]:
        t = self.table
        return {"calls": int(t["calls"].sum()), "todo": int(t["todo"].sum()),
                "cost_usd": float(t["cost_usd"].sum(min_count=1)) if t["cost_usd"].notna().any() else math.nan,
                "seconds": float(t["seconds"].sum(min_count=1)) if t["seconds"].notna().any() else math.nan}

    def to_json(self) -> dict:
        import json

        return {"rows": json.loads(self.table.to_json(orient="records")), "totals": self.totals(),
                "notes": self.notes, "results_dir": str(self.results_dir) if self.results_dir else None}


def _seed_tables(exp: Any, out: Path | None, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    from pgscore.seed.build import build_seed, load_seed_dir

    if out is not None and (out / "seed" / "seed.parquet").is_file():
        return load_seed_dir(out / "seed")
    res = build_seed(exp.languages, exp.seed, out_dir=None)  # local sources only read files: no model
    notes += [f"seed: {w}" for w in res.warnings]
    return res.seed, res.english_pool


def plan_experiment(exp: Any, results_dir: str | Path | None = None, *, pricing: str | Path | None = None,
                    throughput: str | Path | None = None, parse_rates: str | Path | None = None) -> Plan:
    """The plan of ``exp`` (see the module docstring); ``results_dir`` (default: the experiment's) is read
    for what is already done and for observed lengths and parse rates, never written."""
    from pgscore.synthesis.decoding import teacher_params
    from pgscore.synthesis.stage import done_ids, plan_rows, render_rows

    out = Path(results_dir) if results_dir else exp.results_dir()
    out = out if out.is_dir() else None
    prices, speeds = load_table("pricing", pricing), load_table("throughput", throughput)
    priors = load_table("parse_rates", parse_rates).get("entries", [])
    cpt = float(prices.get("chars_per_token", 3.5))
    notes: list[str] = []
    obs = observe(out)
    counters: dict[str, TokenCounter] = {}

    def counter(spec: ModelSpec) -> TokenCounter:
        k = spec.key()
        if k not in counters:
            counters[k] = TokenCounter(spec, cpt)
        return counters[k]

    acc: dict[tuple[str, str, str], _Acc] = {}

    def add(stage: str, label: str, kind: str, calls: float, done: int, pt: float, ct: float, basis: str) -> None:
        a = acc.setdefault((stage, label, kind), _Acc())
        a.calls += int(round(calls))
        a.done += int(done)
        a.prompt_tokens += pt
        a.completion_tokens += ct
        if basis and basis not in a.basis:
            a.basis.append(basis)

    # ---- synthesize: the stage's own row plan, rendered with its own prompt builder
    seed_df, pool_df = _seed_tables(exp, out, notes)
    cfg = exp.synthesis
    plan = plan_rows(exp.teachers, exp.languages, seed_df, pool_df, cfg)
    finished = done_ids(obs.parts, _templates_hash(cfg)) if not obs.parts.empty else set()
    lookup = {str(r["id"]): r for r in seed_df.to_dict(orient="records")}
    prior_used: set[str] = set()  # parse rates taken from parse_rates.yaml (no row of the teacher x method seen)
    expected_ok: list[dict] = []  # rows measure will see: (teacher, language, trial, method, weight, prompt, response)
    ok_parts = obs.parts[obs.parts["status"] == "ok"].set_index("id") if not obs.parts.empty else pd.DataFrame()
    parts_by_id = obs.parts.set_index("id") if not obs.parts.empty else pd.DataFrame()
    for teacher in exp.teachers:
        tc = counter(teacher.model)
        label = teacher.model.short()
        rendering = cfg.rendering if cfg.rendering != "auto" else ("chat" if tc.has_chat_template else "completion")
        max_tokens = teacher_params(teacher, cfg.max_tokens).max_tokens
        tplan = plan[plan["teacher"] == teacher.name]
        by_kind: dict[str, list] = {"chat": [], "complete": []}
        for row, r in zip(tplan.itertuples(index=False), render_rows(tplan, seed_df, pool_df, cfg, rendering)):
            if isinstance(r, str):
                continue  # no model call: the row fails before it (no seed pairs / no source)
            kind = "chat" if r.rendering == "chat" else "complete"
            by_kind[kind].append((row, r))
        for kind, items in by_kind.items():
            if not items:
                continue
            if kind == "chat":
                ptoks = tc.chat([r.messages for _, r in items])
            else:
                ptoks = tc.text([r.text for _, r in items])
            ctoks, done = 0.0, 0
            seen_basis = set()
            ptoks = list(ptoks)
            for i, ((row, _), pt) in enumerate(zip(items, ptoks)):
                obs_ct, n_ct = obs.completion(teacher.name, row.method)
                ct = min(obs_ct, max_tokens) if obs_ct is not None else max_tokens
                seen_basis.add(f"completion observed (n={n_ct})" if obs_ct is not None else "completion = max_tokens (upper bound)")
                if row.id in finished and row.id in parts_by_id.index:  # already generated: its real counts
                    got = parts_by_id.loc[row.id]
                    if int(got["prompt_tokens"] or 0) > 0:
                        ptoks[i] = int(got["prompt_tokens"])
                        ct = int(got["completion_tokens"] or 0)
                ctoks += ct
                if row.id in finished:
                    done += 1
                    if row.id in ok_parts.index:
                        o = ok_parts.loc[row.id]
                        expected_ok.append(dict(teacher=teacher.name, language=row.language, trial=row.trial,
                                                method=row.method, weight=1.0, prompt=str(o["prompt"]),
                                                response=str(o["response"]), observed=True))
                else:
                    rate, seen = obs.ok_rate(teacher.name, row.method)
                    if not seen:  # nothing of this teacher x method seen yet: the table's prior
                        rate, source = prior_parse_rate(priors, label, row.method, {
                            "structured_output": cfg.structured_output, "max_tokens": max_tokens,
                            "templates": cfg.templates})
                        if rate < 1.0:
                            prior_used.add(f"{label} {row.method} {rate:g} ({source})")
                    expected_ok.append(dict(teacher=teacher.name, language=row.language, trial=row.trial,
                                            method=row.method, weight=rate, prompt=None, response=None,
                                            observed=False, max_tokens=max_tokens, example_ids=row.example_ids,
                                            source_id=row.source_id))
            add("synthesize", label, kind, len(items), done, float(sum(ptoks)), ctoks,
                "; ".join([f"prompt: {tc.basis}", *sorted(seen_basis)]))

    if prior_used:
        notes.append("parse rates from parse_rates.yaml (no row seen yet): " + "; ".join(sorted(prior_used)))

    # ---- measure: one perplexity request and one judge call (+5 score requests) per ok row, plus the
    # judge / perplexity calibration on seed pairs the measure stage runs per language
    _plan_measure(exp, expected_ok, lookup, obs, counter, add, notes)
    _plan_calibration(exp, seed_df, counter, add)

    # ---- students: one training run per teacher x language x trial (+ seed-sft references); evaluation
    _plan_students(exp, out, add, notes)

    rows = []
    for (stage, label, kind), a in acc.items():
        spec = ModelSpec.parse(label)
        price = match_entry(prices.get("models", []), label)
        speed = match_entry(speeds.get("entries", []), label, engine_of(spec))
        todo_share = (a.calls - a.done) / a.calls if a.calls else 0.0
        basis = list(a.basis)
        if price is None and kind != "train":
            basis.append("no price in pricing.yaml (add one with --pricing)")
        if speed is None:
            basis.append("no throughput entry (add one with --throughput)")
        if kind == "benchmark":  # benchmark requests: counted, not timed (no token estimate)
            secs, cost = math.nan, 0.0
        elif kind == "train":
            secs = a.prompt_tokens / float(speed["train_tps"]) if speed and speed.get("train_tps") else math.nan
            cost = 0.0
        else:
            secs = estimate_seconds(kind, a.prompt_tokens, a.completion_tokens, speed)
            cost = estimate_cost(kind, a.prompt_tokens, a.completion_tokens, price)
        rows.append({"stage": stage, "model": label, "kind": kind, "calls": a.calls, "done": min(a.done, a.calls),
                     "todo": max(a.calls - a.done, 0), "prompt_tokens": int(round(a.prompt_tokens)),
                     "completion_tokens": int(round(a.completion_tokens)), "cost_usd": cost * todo_share,
                     "seconds": secs * todo_share, "throughput": speed.get("source", "") if speed else "",
                     "basis": "; ".join(basis)})
    table = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    return Plan(table, notes, out)


def _templates_hash(cfg: Any) -> str | None:
    """The synthesis template set's hash (rows written with another set are redone by the stage)."""
    try:
        from pgscore.synthesis.templates import load_templates

        return load_templates(cfg.templates).hash
    except (ImportError, AttributeError):
        return None


def _proxy_texts(row: dict, lookup: dict[str, dict]) -> tuple[str, str]:
    """Before a row exists, its prompt and response are stood in for by the seed pair it was planned from
    (respond: its source prompt), the response cut to the teacher's max_tokens by characters."""
    ex = [lookup[i] for i in (row.get("example_ids") or []) if i in lookup]
    src = lookup.get(row.get("source_id") or "")
    prompt = str(src["prompt"]) if src is not None and row["method"] == "respond" else (str(ex[0]["prompt"]) if ex else "")
    resp = str(ex[0]["response"]) if ex and ex[0].get("response") else ""
    return prompt, resp[: int(row.get("max_tokens") or 10**6) * 4]  # ~4 characters per token at most


def _plan_measure(exp: Any, rows: list[dict], lookup: dict, obs: Observed, counter, add, notes: list[str]) -> None:
    from pgscore.metrics.judge import build_prompt
    from pgscore.metrics.perplexity import context_for

    cfg = exp.metrics
    if not rows:
        return
    df = pd.DataFrame(rows)
    if cfg.max_examples:  # measure keeps the first max_examples ok rows per teacher x language x trial x method
        df["_cum"] = df.groupby(["teacher", "language", "trial", "method"])["weight"].cumsum()
        df = df[df["_cum"] - df["weight"] < cfg.max_examples]
    n_obs = int(df["observed"].sum())
    unobserved = df[~df["observed"]]
    if len(unobserved) and (unobserved["weight"] == 1.0).all() and obs.parts.empty:  # no prior below 1 either
        notes.append("measure assumes every synthesis row parses (an upper bound): run `pgscore run --preview 2` "
                     "first for observed parse rates and lengths")
    prompts, responses = [], []
    for r in df.to_dict(orient="records"):
        if r["observed"]:
            prompts.append(r["prompt"])
            responses.append(r["response"])
        else:
            p, s = _proxy_texts(r, lookup)
            prompts.append(p)
            responses.append(s)
    weights = df["weight"].to_numpy(dtype=float)
    n_ok = float(weights.sum())
    if obs.parts.empty and (df["weight"] == 1.0).all():
        basis = f"{len(df)} rows expected, all assumed to parse (upper bound)"
    elif obs.parts.empty:
        basis = f"{len(df)} rows expected, {n_ok:.1f} ok at parse_rates.yaml's rates"
    else:
        basis = f"{n_obs} ok rows seen, {len(df) - n_obs} to come ({n_ok - n_obs:.1f} ok at observed parse rates)"

    from pgscore.metrics.measure import perplexity_targets

    per_base, single, why = perplexity_targets(cfg, exp.student)
    notes += why
    targets = list(per_base.values()) if per_base else ([single] if single else [])
    for target in dict.fromkeys(ModelSpec.parse(t).short() for t in targets):
        spec = ModelSpec.parse(next(t for t in targets if ModelSpec.parse(t).short() == target))
        tc = counter(spec)
        label = spec.short()
        toks = tc.text([context_for(p, cfg.perplexity_template) + s for p, s in zip(prompts, responses)])
        add("measure.perplexity", label, "loglikelihood", n_ok, obs.stored(label, "measure.perplexity", "loglikelihood"),
            float((weights * toks).sum()) if len(toks) else 0.0, 0.0, f"{basis}; tokens: {tc.basis}")
    if cfg.judge:
        spec = ModelSpec.parse(cfg.judge)
        tc = counter(spec)
        label = spec.short()
        local = spec.backend in LOCAL_BACKENDS
        constrained = cfg.judge_mode == "constrained" or (cfg.judge_mode == "auto" and local)
        langs = df["language"].astype(str).tolist()
        texts = [build_prompt(p, s, lg, cfg.judge_structured and not constrained) for p, s, lg in zip(prompts, responses, langs)]
        kind = "chat" if tc.has_chat_template else "complete"
        ptoks = tc.chat([[{"role": "user", "content": t}] for t in texts]) if kind == "chat" else tc.text(texts)
        obs_ct, n_ct = obs.mean_completion(label, "measure.judge", ("chat", "complete"))
        ct = min(obs_ct, cfg.judge_max_tokens) if obs_ct is not None else cfg.judge_max_tokens
        cbasis = f"completion observed (n={n_ct})" if obs_ct is not None else "completion = judge_max_tokens (upper bound)"
        pt = float((weights * ptoks).sum()) if len(ptoks) else 0.0
        if constrained and cfg.judge_max_tokens == 0:
            ct = 0  # score-only verdicts: no feedback is generated
        else:
            add("measure.judge", label, kind, n_ok, obs.stored(label, "measure.judge", kind), pt, ct * n_ok,
                f"{basis}; tokens: {tc.basis}; {cbasis}")
        if constrained:
            add("measure.judge", label, "loglikelihood", JUDGE_SCORES * n_ok,
                obs.stored(label, "measure.judge", "loglikelihood"), JUDGE_SCORES * (pt + ct * n_ok), 0.0,
                f"constrained verdict: {JUDGE_SCORES} score continuations per row")


def _plan_calibration(exp: Any, seed_df: pd.DataFrame, counter, add) -> None:
    """The calibration calls of the measure stage (pgscore.metrics.calibration): per language, the judge
    grades the calibration set (matched + corrupted seed pairs) and the perplexity model scores each
    matched response and a word-shuffled copy. Built with the module's own ``build_calibration_set``."""
    try:
        from pgscore.metrics.calibration import DEFAULT_PAIRS, build_calibration_set
    except ImportError:  # a version without calibration
        return
    from pgscore.metrics.judge import build_prompt
    from pgscore.metrics.measure import perplexity_targets
    from pgscore.metrics.perplexity import context_for

    cfg = exp.metrics
    n = int(getattr(cfg, "calibration_pairs", DEFAULT_PAIRS) or 0)
    if n <= 0 or "response" not in seed_df.columns:
        return
    seed = seed_df[seed_df["response"].notna()]
    per_base, single, _ = perplexity_targets(cfg, exp.student)
    # the measure stage calibrates perplexity under the single model, else the first student base (bootstrap.py)
    first = next(iter(per_base.values()), None) if per_base else single
    ppl_spec = ModelSpec.parse(first) if first else None
    judge_spec = ModelSpec.parse(cfg.judge) if cfg.judge else None
    constrained = cfg.judge_mode == "constrained" or (
        cfg.judge_mode == "auto" and judge_spec is not None and judge_spec.backend in LOCAL_BACKENDS)
    for lang, pairs in seed.groupby("language", sort=True):
        try:
            cal = build_calibration_set(pairs, seed[seed["language"] != lang], n=n, seed=0)
        except PgScoreError:
            continue  # fewer than 2 pairs: the stage skips the language too
        basis = f"calibration ({lang}): {len(cal)} seed pairs (matched + corrupted)"
        if judge_spec is not None:
            tc = counter(judge_spec)
            texts = [build_prompt(p, r, str(lang)) for p, r in zip(cal["prompt"], cal["response"])]
            kind = "chat" if tc.has_chat_template else "complete"
            pt = float(sum(tc.chat([[{"role": "user", "content": t}] for t in texts]) if kind == "chat" else tc.text(texts)))
            ct = float(cfg.judge_max_tokens) * len(cal)
            if not (constrained and cfg.judge_max_tokens == 0):  # score-only verdicts generate nothing
                add("measure.judge", judge_spec.short(), kind, len(cal), 0, pt, ct, basis)
            if constrained:
                add("measure.judge", judge_spec.short(), "loglikelihood", JUDGE_SCORES * len(cal), 0,
                    JUDGE_SCORES * (pt + ct), 0.0, basis)
        if ppl_spec is not None:
            matched = cal[cal["label"] == 1]
            toks = counter(ppl_spec).text([context_for(p, cfg.perplexity_template) + r
                                           for p, r in zip(matched["prompt"], matched["response"])])
            add("measure.perplexity", ppl_spec.short(), "loglikelihood", 2 * len(matched), 0, 2.0 * sum(toks), 0.0,
                f"calibration ({lang}): each matched response and a shuffled copy")


def _plan_students(exp: Any, out: Path | None, add, notes: list[str]) -> None:
    bases = exp.student.resolved_bases() if hasattr(exp.student, "resolved_bases") else []
    if not bases:
        return
    t = exp.student.training
    n_teachers = min(exp.student.top_k or len(exp.teachers), len(exp.teachers))
    n_students = n_teachers * len(exp.languages) * exp.synthesis.trials
    for b in bases:
        base = ModelSpec.parse(b.base)
        label = base.short()
        from pgscore.student.config import TASK_SFT, TRAINED_REFERENCES

        joint = b.reference == TASK_SFT and exp.student.task_sft_scope == "joint"
        n_refs = (1 if joint else len(exp.languages)) if b.reference in TRAINED_REFERENCES else 0
        rt = exp.student.reference_training or t

        def steps_of(cfg, rows: int) -> int:
            return cfg.max_steps if cfg.max_steps else math.ceil(cfg.epochs * rows / cfg.effective_batch_size)

        rows = min(exp.synthesis.examples_per_cell, t.examples_per_dataset or exp.synthesis.examples_per_cell)
        steps = steps_of(t, rows)
        ref_rows = (exp.student.task_sft_examples * (len(exp.languages) if joint else 1)
                    if b.reference == TASK_SFT else rows)
        ref_steps = steps_of(rt, ref_rows) if n_refs else 0
        runs = n_students + n_refs
        train_tokens = (n_students * steps * t.effective_batch_size * t.max_length  # upper bound: sequences full
                        + n_refs * ref_steps * rt.effective_batch_size * rt.max_length)
        done = 0
        if out is not None and (out / "students").is_dir():
            done = sum(1 for p in (out / "students").iterdir() if (p / "pgscore_student.json").is_file())
        add("students", label, "train", runs, done, float(train_tokens), 0.0,
            f"{n_students} students x {steps} steps x {t.effective_batch_size} x max_length {t.max_length} tokens"
            + (f" + {n_refs} {b.reference} reference(s) x {ref_steps} steps x {rt.effective_batch_size} x "
               f"{rt.max_length}" if n_refs else "") + " (upper bound)")
        _plan_eval(exp, base, b.reference, n_students, out, add, notes)


def _plan_eval(exp: Any, base: ModelSpec, reference: Any, n_students: int, out: Path | None, add,
               notes: list[str]) -> None:
    from pgscore.evaluation.registry import TaskData, get_task
    from pgscore.evaluation.runner import configure_task, subsample

    ev = exp.evaluation
    per_lang: dict[str, int] = {lang: 0 for lang in exp.languages}
    for name in ev.benchmarks:
        try:
            task = get_task(name)
        except PgScoreError as exc:
            notes.append(str(exc))
            continue
        configure_task(task, ev.formulation, ev.hub_revisions, ev.signal, ev.max_new_tokens)  # as evaluate() does:
        for lang in exp.languages:  # the signal decides whether MGSM generates (2 requests a question) or not
            if not task.covers(lang):
                continue
            try:
                data = task.load(lang, hub=False, local=ev.data_files.get(name))
            except Exception as exc:  # noqa: BLE001 - missing data is reported, not fatal, in a plan
                notes.append(f"evaluation {name}/{lang}: no local data ({str(exc).splitlines()[0][:100]}); not counted")
                continue
            idx = subsample(len(data.examples), ev.limit, ev.seed)
            sub = TaskData([data.examples[i] for i in idx], data.source, data.standin, data.extra)
            per_lang[lang] += task.n_requests(sub)
    # students are evaluated in their own language; the base and the reference in every language
    per_student = n_students // max(len(exp.languages), 1)
    models = 1 + per_student + (1 if reference is not None else 0)
    calls = sum(per_lang.values()) * models
    done = 0
    if out is not None and (out / "eval").is_dir():
        done = sum(1 for _ in (out / "eval").glob("*/*.json"))  # cached task x language summaries
    add("evaluate", base.short(), "benchmark", calls, 0, 0.0, 0.0,
        "requests per model " + ", ".join(f"{k}: {v}" for k, v in per_lang.items()) + f"; base, reference and {per_student} student(s) per language; "
        f"{done} task x language results cached; tokens not estimated")


# ------------------------------------------------------------------------------------ plan vs actual

GENERATION_KINDS = ("chat", "complete")
VERSUS_COLUMNS = ["model", "stage", "plan_calls", "calls", "calls_ratio", "plan_tokens", "tokens", "tokens_ratio"]


def plan_vs_actual(plan: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Planned against actual calls and tokens per (model, stage). ``plan``: a plan table (or
    ``plan.json``'s rows); ``stats``: ``Ledger.stats()``. Tokens compare generation calls only (the ledger
    records no tokens for log-likelihood requests); ratios are actual / planned."""
    p = pd.DataFrame(plan)
    if p.empty:
        return pd.DataFrame(columns=VERSUS_COLUMNS)
    p = p[p["kind"].isin(("chat", "complete", "loglikelihood"))].copy()
    gen = p["kind"].isin(GENERATION_KINDS)
    p["plan_tokens"] = (p["prompt_tokens"] + p["completion_tokens"]).where(gen, 0)
    agg = p.groupby(["model", "stage"], as_index=False).agg(plan_calls=("calls", "sum"), plan_tokens=("plan_tokens", "sum"))
    s = pd.DataFrame(stats)
    if s.empty:
        s = pd.DataFrame(columns=["model", "stage", "calls", "prompt_tokens", "completion_tokens"])
    s = s.assign(tokens=s["prompt_tokens"] + s["completion_tokens"])[["model", "stage", "calls", "tokens"]]
    out = agg.merge(s, on=["model", "stage"], how="outer")
    for c in ("plan_calls", "calls", "plan_tokens", "tokens"):
        out[c] = out[c].fillna(0).astype(int)
    ratio = lambda a, b: (a / b).where(b > 0)  # noqa: E731
    out["calls_ratio"] = ratio(out["calls"].astype(float), out["plan_calls"].astype(float))
    out["tokens_ratio"] = ratio(out["tokens"].astype(float), out["plan_tokens"].astype(float))
    return out[VERSUS_COLUMNS].sort_values(["model", "stage"]).reset_index(drop=True)
