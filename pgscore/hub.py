"""``pgscore push RESULTS --repo ORG/NAME``: the synthetic datasets (and students) on the Hugging Face Hub,
with generated cards.

:func:`build_bundle` writes exactly what would be uploaded into a folder (``--dry-run DIR``):

- ``dataset/``: one Parquet file per teacher x language (ok rows only) under ``data/<teacher>/<lang>/``,
  declared as configs ``<teacher>--<lang>`` in the card's YAML (``datasets.load_dataset(folder, config)``
  reads it), and ``README.md``: YAML metadata (license from the seed sources' licenses, language tags,
  size category, task categories) and provenance (teacher, method mix, decoding parameters, template
  preset, seed sources with licenses and counts, pgscore version), intrinsic metrics and PG-Score with
  their intervals where the scored table has them (``*_low``/``*_high``).
- ``models/<student>/`` (with ``students=True``): each trained student's files and a model card (base,
  training parameters, scores), uploaded to ``ORG/NAME-<student>``.

:func:`push_bundle` uploads a bundle with ``huggingface_hub`` (``create_repo`` + ``create_commit``). The token
is read from ``HF_TOKEN`` only, handed to the client in memory and never written or printed; ``HF_ENDPOINT``
points the client at another Hub (a mirror, or the tests' loopback stand-in).

Seed sources under a non-commercial license (e.g. LLM-Zoo, HPLT OASST, SEA MT-Bench prompts: CC BY-NC) are
flagged in the card, the dataset's license becomes ``cc-by-nc-4.0``, and a permissive ``--license`` for
such data is refused.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pgscore.errors import PgScoreError

DATA_COLUMNS = ["id", "teacher", "model", "language", "method", "trial", "prompt", "response", "task_type",
                "seed_ids", "source_id"]
# seed source (preset, source name, or a folder name in its path) -> license (Hub license identifiers)
SOURCE_LICENSES = {
    "builtin": "apache-2.0", "pgscore-pairs": "apache-2.0",
    "vicuna80": "apache-2.0", "vicuna80_en": "apache-2.0", "vicuna80-en": "apache-2.0",
    "vicuna80_multilingual_sift": "apache-2.0",
    "cendol": "apache-2.0", "cendol_v2_small": "apache-2.0",
    "seahelm_ifeval": "cc-by-4.0", "gsm8k": "mit", "mgsm": "cc-by-4.0",
    "aya": "apache-2.0", "wildchat": "odc-by", "tulu3": "odc-by",
    "cidar": "cc-by-nc-4.0", "cendol_v2": "apache-2.0", "cendol-v2": "apache-2.0",
    "llmzoo": "cc-by-nc-4.0", "llmzoo_multilingual100": "cc-by-nc-4.0",
    "hplt_oasst": "cc-by-nc-4.0", "hplt_oasst_test_prompts": "cc-by-nc-4.0",
    "seahelm_mt_bench": "cc-by-nc-sa-4.0", "sea_mt_bench": "cc-by-nc-sa-4.0",
}
NON_COMMERCIAL = {"cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0",
                  "cc-by-nc-sa-3.0"}
CARD_METRICS = [("prompt_diversity", "prompt diversity", ".3f"), ("response_diversity", "response diversity", ".3f"),
                ("perplexity", "perplexity", ".1f"), ("judge_score", "judge score (1-5)", ".2f"),
                ("prompt_len", "prompt tokens", ".0f"), ("response_len", "response tokens", ".0f")]
SCORE_COLUMNS = [("intrinsic_z", "intrinsic Z", ".3f"), ("pgr", "PGR", ".3f"), ("pg_score", "PG-Score", ".3f")]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


def is_non_commercial(lic: str | None) -> bool:
    return bool(lic) and (lic.lower() in NON_COMMERCIAL or "-nc" in lic.lower())


def source_license(name: str, path: str | None = None, preset: str | None = None,
                   overrides: dict[str, str] | None = None) -> str:
    """License of a seed source: an explicit override, its preset/name, or a known folder in its path."""
    overrides = overrides or {}
    for key in (name, preset):
        if key and key in overrides:
            return overrides[key]
    if path and "seahelm_prompts" in path:
        return "cc-by-nc-sa-4.0" if "mt_bench" in path.lower() or "mt-bench" in path.lower() else "cc-by-4.0"
    for key in (preset, name):
        if key and key in SOURCE_LICENSES:
            return SOURCE_LICENSES[key]
    for part in Path(path or "").parts:
        if part in SOURCE_LICENSES:
            return SOURCE_LICENSES[part]
    return "unknown"


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for n rows."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "n>10M"


def _fmt(v: Any, fmt: str) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(x) else format(x, fmt)


def with_interval(row: dict | pd.Series, col: str, fmt: str) -> str:
    """``value [low, high]`` when the table has ``col_low``/``col_high`` for it, else ``value``."""
    v = _fmt(row.get(col), fmt)
    lo, hi = row.get(f"{col}_low"), row.get(f"{col}_high")
    if v != "-" and lo is not None and hi is not None and _fmt(lo, fmt) != "-" and _fmt(hi, fmt) != "-":
        return f"{v} [{_fmt(lo, fmt)}, {_fmt(hi, fmt)}]"
    return v


# ------------------------------------------------------------------------------------ reading a results folder


@dataclass
class Bundle:
    folder: Path
    repo_id: str
    license: str
    configs: list[dict] = field(default_factory=list)  # config_name, teacher, language, rows, path
    students: list[dict] = field(default_factory=list)  # name, repo_id, folder
    sources: pd.DataFrame | None = None  # source, license, rows_using_it, non_commercial
    warnings: list[str] = field(default_factory=list)


def _experiment(results: Path) -> dict:
    import yaml

    p = results / "experiment.yaml"
    return (yaml.safe_load(p.read_text(encoding="utf-8")) or {}) if p.is_file() else {}


def _seed_sources(exp: dict) -> dict[str, dict]:
    seed = exp.get("seed") or {}
    out = {}
    for s in (seed.get("sources") or []) + (seed.get("english_sources") or []):
        if isinstance(s, dict) and s.get("name"):
            out[s["name"]] = s
    return out


def _source_of(row_id: str) -> str:
    """Seed and pool ids are ``<source>:<language>:<hash>`` (pgscore.seed.build.row_id)."""
    rid = str(row_id)
    return rid.split(":", 1)[0] if ":" in rid else "(source not recorded)"


def seed_sources_by_id(results: Path) -> dict[str, str]:
    """Seed row id -> its ``source`` column (``seed/seed.parquet`` and ``seed/english_pool.parquet``)."""
    out: dict[str, str] = {}
    for name in ("seed.parquet", "english_pool.parquet"):
        p = results / "seed" / name
        if p.is_file():
            df = pd.read_parquet(p, columns=["id", "source"])
            out.update(zip(df["id"].astype(str), df["source"].astype(str)))
    return out


def source_table(ok: pd.DataFrame, exp: dict, overrides: dict[str, str] | None = None,
                 by_id: dict[str, str] | None = None) -> pd.DataFrame:
    """Each seed source the rows drew on (in-context examples or the source prompt), its license and how
    many published rows used it. ``by_id``: seed id -> source (else the id's ``<source>:`` prefix)."""
    declared = _seed_sources(exp)
    by_id = by_id or {}
    uses: dict[str, set] = {}
    for rid, seeds, src in zip(ok["id"], ok["seed_ids"], ok["source_id"]):
        names = {by_id.get(str(s)) or _source_of(s) for s in (list(seeds) if seeds is not None else [])}
        if isinstance(src, str) and src:
            names.add(by_id.get(src) or _source_of(src))
        for n in names:
            uses.setdefault(n, set()).add(rid)
    rows = []
    for name, ids in sorted(uses.items()):
        d = declared.get(name, {})
        lic = source_license(name, d.get("path"), d.get("preset"), overrides)
        rows.append({"source": name, "license": lic, "rows": len(ids), "non_commercial": is_non_commercial(lic)})
    return pd.DataFrame(rows, columns=["source", "license", "rows", "non_commercial"])


def dataset_license(sources: pd.DataFrame, requested: str | None) -> tuple[str, list[str]]:
    """The dataset's license and warnings; a permissive ``requested`` license over non-commercial sources
    is refused."""
    warnings: list[str] = []
    nc = sources[sources["non_commercial"]] if len(sources) else sources
    unknown = sources[sources["license"] == "unknown"]["source"].tolist() if len(sources) else []
    if unknown:
        warnings.append(f"license unknown for seed source(s) {', '.join(unknown)}: pass --source-license NAME=LICENSE")
    if len(nc):
        names = ", ".join(f"{r.source} ({r.license})" for r in nc.itertuples())
        if requested and not is_non_commercial(requested):
            raise PgScoreError(f"refusing license {requested!r}: rows draw on non-commercial seed source(s) {names}; "
                               "use a non-commercial license (e.g. cc-by-nc-4.0) or drop those sources")
        return requested or "cc-by-nc-4.0", warnings
    if requested:
        return requested, warnings
    lics = sorted(set(sources["license"]) - {"unknown"}) if len(sources) else []
    if len(lics) == 1 and not unknown:
        return lics[0], warnings
    return "other", warnings


def build_bundle(results_dir: str | Path, out_dir: str | Path, repo_id: str, *, license: str | None = None,
                 students: bool = False, source_licenses: dict[str, str] | None = None,
                 private: bool = False) -> Bundle:
    """Write everything ``push`` would upload into ``out_dir`` (see the module docstring)."""
    results = Path(results_dir)
    check_repo_id(repo_id)
    syn_path = results / "synthetic.parquet"
    if not syn_path.is_file():
        raise PgScoreError(f"no synthetic.parquet in {results}: run the synthesize stage first")
    synthetic = pd.read_parquet(syn_path)
    ok = synthetic[synthetic["status"] == "ok"].copy()
    if ok.empty:
        raise PgScoreError(f"{syn_path} has no ok rows: nothing to publish")
    exp = _experiment(results)
    sources = source_table(ok, exp, source_licenses, seed_sources_by_id(results))
    lic, warnings = dataset_license(sources, license)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise PgScoreError(f"{out} exists and is not empty: give a new folder for the bundle")
    ds = out / "dataset"
    configs = []
    for (teacher, lang), g in ok.groupby(["teacher", "language"], sort=True):
        name = f"{_slug(teacher)}--{_slug(lang)}"
        rel = f"data/{_slug(teacher)}/{_slug(lang)}/train.parquet"
        frame = g[[c for c in DATA_COLUMNS if c in g.columns]].reset_index(drop=True)
        frame["seed_ids"] = frame["seed_ids"].map(lambda v: [str(x) for x in v] if v is not None else [])
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(ds / rel, index=False)
        mix = g["method"].value_counts().sort_index().to_dict()
        params = _decoding(g)
        configs.append({"config_name": name, "teacher": teacher, "model": str(g["model"].iloc[0]), "language": lang,
                        "rows": len(g), "path": rel, "methods": mix, "params": params,
                        "failed": int(((synthetic["teacher"] == teacher) & (synthetic["language"] == lang)
                                       & (synthetic["status"] != "ok")).sum())})
    bundle = Bundle(out, repo_id, lic, configs, sources=sources, warnings=warnings)
    (ds / "README.md").write_text(dataset_card(bundle, exp, results), encoding="utf-8")
    if students:
        _student_bundles(bundle, results, repo_id)
    (out / "push.json").write_text(json.dumps({"dataset_repo": repo_id, "private": private, "license": lic,
                                               "students": [{k: str(v) for k, v in s.items()} for s in bundle.students]},
                                              indent=1), encoding="utf-8")
    return bundle


def check_repo_id(repo_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*", repo_id or "") or len(repo_id) > 96:
        raise PgScoreError(f"--repo must be ORG/NAME (letters, digits, . _ -), got {repo_id!r}")


def _decoding(g: pd.DataFrame) -> dict:
    """The teacher's decoding parameters (per-chunk seed and stop strings left out)."""
    try:
        p = json.loads(g["params"].dropna().iloc[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    return {k: v for k, v in p.items() if k not in ("seed", "stop", "json_schema") and v is not None}


# ------------------------------------------------------------------------------------ cards


def _metrics_rows(results: Path) -> pd.DataFrame | None:
    p = results / "metrics.parquet"
    if not p.is_file():
        return None
    m = pd.read_parquet(p)
    from pgscore.results import DATASET_METHOD

    m = m[m["method"].astype(str) == DATASET_METHOD] if "method" in m.columns else m
    if "student" in m.columns:  # perplexity per student base: the first base's row (named in the card)
        m = m[m["student"] == m["student"].dropna().iloc[0]] if m["student"].notna().any() else m
    num = [c for c in m.columns if c not in ("teacher", "language", "trial", "method", "student")
           and pd.api.types.is_numeric_dtype(m[c])]
    return m.groupby(["teacher", "language"], as_index=False)[num].mean()


def dataset_card(b: Bundle, exp: dict, results: Path) -> str:
    import yaml

    from pgscore import __version__
    from pgscore.evidence import CITATION

    langs = sorted({c["language"] for c in b.configs})
    total = sum(c["rows"] for c in b.configs)
    meta: dict[str, Any] = {
        "license": b.license,
        "language": langs,
        "size_categories": [size_category(total)],
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "pgscore", "instruction-tuning", "multilingual"],
        "pretty_name": f"pgscore synthetic SFT data ({exp.get('name') or results.name})",
        "configs": [{"config_name": c["config_name"], "data_files": [{"split": "train", "path": c["path"]}]}
                    for c in b.configs],
    }
    if b.license == "other":
        meta["license_name"] = "mixed"
        meta["license_details"] = "See 'Licenses of the seed sources' in this card."
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "",
             f"# {meta['pretty_name']}", "",
             f"Synthetic instruction-response pairs written by teacher models with pgscore (Polyglot Score; {CITATION}): "
             "Generate (new pairs from in-context seed examples), Translate "
             "(English prompts translated, then answered) and Respond (seed prompts answered). One config per "
             "teacher x language; only rows that parsed (`status == ok`) are included.", "",
             "```python", "from datasets import load_dataset",
             f"ds = load_dataset(\"{b.repo_id}\", \"{b.configs[0]['config_name']}\", split=\"train\")", "```", ""]
    nc = b.sources[b.sources["non_commercial"]] if b.sources is not None and len(b.sources) else pd.DataFrame()
    if len(nc):
        lines += ["> **Non-commercial:** rows draw on seed data under non-commercial licenses ("
                  + ", ".join(f"{r.source}: {r.license}" for r in nc.itertuples())
                  + "). This dataset may not be used commercially.", ""]
    lines += ["## Configs", "", "| config | teacher | model | language | rows | failed rows | method mix |",
              "|---|---|---|---|---|---|---|"]
    for c in b.configs:
        mix = ", ".join(f"{k} {v}" for k, v in c["methods"].items())
        lines.append(f"| `{c['config_name']}` | {c['teacher']} | `{c['model']}` | {c['language']} | {c['rows']} | "
                     f"{c['failed']} | {mix} |")
    syn = exp.get("synthesis") or {}
    lines += ["", "## Provenance", "",
              f"- pgscore version: {__version__}; experiment `{exp.get('name', '-')}`",
              f"- template preset: `{syn.get('templates', 'default')}`; rendering: `{syn.get('rendering', 'auto')}`; "
              f"k-shot: {syn.get('k_shot', '-')}; trials: {syn.get('trials', '-')}; "
              f"rows per teacher x language x trial: {syn.get('examples_per_cell', '-')}",
              "- decoding parameters per teacher:"]
    seen = set()
    for c in b.configs:
        if c["teacher"] in seen:
            continue
        seen.add(c["teacher"])
        lines.append(f"  - {c['teacher']} (`{c['model']}`): `{json.dumps(c['params'], sort_keys=True)}`")
    lines += ["- outputs of each teacher are also subject to that model's own terms of use", "",
              "### Licenses of the seed sources", "", "| source | license | rows using it | non-commercial |",
              "|---|---|---|---|"]
    for r in (b.sources.itertuples() if b.sources is not None else []):
        lines.append(f"| {r.source} | {r.license} | {r.rows} | {'yes' if r.non_commercial else 'no'} |")
    lines += ["", "## Intrinsic metrics and PG-Score", ""]
    metrics = _metrics_rows(results)
    scored = pd.read_parquet(results / "scored.parquet") if (results / "scored.parquet").is_file() else None
    if metrics is None and scored is None:
        lines.append("Not measured in this run.")
    else:
        cols = [c for c in CARD_METRICS if metrics is not None and c[0] in metrics.columns]
        scols = [c for c in SCORE_COLUMNS if scored is not None and c[0] in scored.columns]
        head = ["teacher", "language"] + [c[1] for c in cols] + [c[1] for c in scols]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in b.configs:
            mrow = (metrics[(metrics["teacher"] == c["teacher"]) & (metrics["language"] == c["language"])]
                    if metrics is not None else pd.DataFrame())
            srow = (scored[(scored["teacher"] == c["teacher"]) & (scored["language"] == c["language"])]
                    if scored is not None else pd.DataFrame())
            mr = mrow.iloc[0].to_dict() if len(mrow) else {}
            sr = srow.iloc[0].to_dict() if len(srow) else {}
            cells = [with_interval(mr, k, f) for k, _, f in cols] + [with_interval(sr, k, f) for k, _, f in scols]
            lines.append(f"| {c['teacher']} | {c['language']} | " + " | ".join(cells) + " |")
        lines += ["", "Means over trials. Brackets: the 95% interval where the scored table has one. PG-Score = "
                  "λ·PGR + (1-λ)·Z, Z the mean z-score of prompt and response diversity, judge score and "
                  "-log(1+perplexity) over all teacher x language rows of this study (so it compares teachers "
                  "within the study, not across studies). '-': undefined (e.g. no student reference)."]
    lines += ["", "## Citation", "", "```", "@article{miranda2026polyglot,",
              "  title={Polyglot Teachers: Evaluating Language Models for Multilingual Synthetic Data Generation},",
              "  author={Miranda, Lester James V. and Vuli{\\'c}, Ivan and Korhonen, Anna},",
              "  journal={arXiv preprint arXiv:2604.11290}, year={2026}", "}", "```", ""]
    return "\n".join(lines)


def _student_bundles(b: Bundle, results: Path, repo_id: str) -> None:
    sdir = results / "students"
    if not sdir.is_dir():
        b.warnings.append("no students folder: no student model to publish")
        return
    ext = pd.read_parquet(results / "extrinsic.parquet") if (results / "extrinsic.parquet").is_file() else None
    for folder in sorted(p for p in sdir.iterdir() if (p / "pgscore_student.json").is_file()):
        info = json.loads((folder / "pgscore_student.json").read_text(encoding="utf-8"))
        name = _slug(folder.name.lstrip("_"))
        dest = b.folder / "models" / name
        dest.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            if f.is_file() and f.name not in ("README.md", "training_args.bin") and not f.name.startswith("."):
                shutil.copy2(f, dest / f.name)
        row = None
        if ext is not None and "student_model" in ext.columns:
            hit = ext[ext["student_model"].astype(str).str.endswith(folder.name)]
            row = hit.iloc[0].to_dict() if len(hit) else None
        elif ext is not None:
            hit = ext[(ext["teacher"] == info.get("teacher")) & (ext["language"] == info.get("language"))]
            row = hit.iloc[0].to_dict() if len(hit) else None
        srepo = f"{repo_id}-{name}"[:96]
        (dest / "README.md").write_text(student_card(info, row, b, srepo), encoding="utf-8")
        b.students.append({"name": name, "repo_id": srepo, "folder": dest})


def student_card(info: dict, scores: dict | None, b: Bundle, repo_id: str) -> str:
    import yaml

    from pgscore.evidence import CITATION

    base = str(info.get("base", ""))
    meta = {"library_name": "transformers", "tags": ["pgscore", "sft", "trl", "synthetic-data"],
            "datasets": [b.repo_id], "license": b.license if is_non_commercial(b.license) else "other",
            "license_name": None if is_non_commercial(b.license) else "base model terms"}
    if info.get("language"):
        meta["language"] = [info["language"]]
    if "/" in base.split(":", 1)[-1] and not base.startswith(("tiny:", "hf:/", "hf:.")):
        meta["base_model"] = base.split(":", 1)[-1]
    meta = {k: v for k, v in meta.items() if v is not None}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "",
             f"# {repo_id.split('/')[-1]}", "",
             f"A student fine-tuned by pgscore on {info.get('teacher') or 'synthetic'} data "
             f"({info.get('language') or '-'}), to measure that teacher's PGR (performance gap recovered).", "",
             "| field | value |", "|---|---|", f"| base model | `{base}` |",
             f"| teacher | {info.get('teacher') or '-'} |", f"| language | {info.get('language') or '-'} |",
             f"| training data | [{b.repo_id}](https://huggingface.co/datasets/{b.repo_id}) |",
             f"| examples | {info.get('n_examples', '-')} (methods: {', '.join(info.get('methods') or [])}) |",
             f"| steps | {info.get('steps', '-')} |",
             f"| final train loss | {_fmt(info.get('final_loss'), '.4f')} |"]
    if scores:
        lines += [f"| student score | {with_interval(scores, 'student_score', '.3f')} |",
                  f"| base score | {with_interval(scores, 'base_score', '.3f')} |",
                  f"| reference score | {with_interval(scores, 'reference_score', '.3f')} |",
                  f"| PGR | {with_interval(scores, 'pgr', '.3f')}"
                  + (f" ({scores['pgr_note']})" if scores.get("pgr_note") else "") + " |"]
    lines += ["", "## Training parameters", "", "```json",
              json.dumps(info.get("hyperparameters", {}), indent=1, sort_keys=True, default=str), "```", "",
              f"Trained with TRL SFTTrainer (loss on the response only) by pgscore (Polyglot Score, {CITATION}). "
              "A student trained to measure its teacher's data, not tuned for use.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ upload


def hub_token() -> str:
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise PgScoreError("set HF_TOKEN in the environment (a Hugging Face write token); it is never written to disk")
    return token


def push_bundle(b: Bundle, *, private: bool = False, commit_message: str | None = None, log=print) -> list[str]:
    """Upload the bundle: the dataset repo, then one model repo per student. Returns the repo URLs."""
    from huggingface_hub import CommitOperationAdd, HfApi

    token = hub_token()
    endpoint = os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    targets = [(b.repo_id, "dataset", b.folder / "dataset")] + [(s["repo_id"], "model", Path(s["folder"]))
                                                                 for s in b.students]
    urls = []
    for repo_id, repo_type, folder in targets:
        try:
            url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
            ops = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
                   for p in sorted(folder.rglob("*")) if p.is_file()]
            api.create_commit(repo_id, ops, repo_type=repo_type,
                              commit_message=commit_message or f"pgscore push ({len(ops)} files)")
        except Exception as exc:  # noqa: BLE001 - one line, never the request (it may carry the token)
            msg = (str(exc).splitlines() or [type(exc).__name__])[0].replace(token, "***")
            raise PgScoreError(f"upload of {repo_type} {repo_id} failed: {msg}") from None
        urls.append(str(url))
        log(f"pushed {repo_type} {repo_id}: {len(ops)} files")
    return urls
