"""Synthesis decoding: transformers' ``generate`` (one call per stop list and schema, every row kept until the
last one ends) vs pgscore's loop (``pgscore/models/generate_loop.py``: one call, per-row stops and schemas,
finished rows dropped from the batch).

Run: ``python benchmarks/bench_decoding.py [--config examples/quickstart.yaml] [--teacher gemma3-270m]``.

The prompts are the experiment's real synthesis inputs for one teacher (its first trial, every language and
method, rendered from the seed stage as ``pgscore run`` renders them) with that teacher's decoding; both paths
run in one process on one loaded model, each timed once after a warm-up call, same seed. ``stock`` is what
the backend did before: rows grouped by (stop strings, schema), ``model.generate(stop_strings=...)`` with the
same logits processors (xgrammar, temperature, top-k, nucleus). Sampled text differs between the two (the
loop gives every row its own random stream), so the benchmark reports the work each path did: generated
tokens, and token slots computed (rows x steps). Writes ``benchmarks/results/decoding_<teacher>.json``.

``--kv [--repeats 5]``: the loop alone, with and without ``generate_loop.preallocate`` (KV buffers written in
place vs transformers' ``DynamicLayer``, which concatenates the whole cache at every step), in turn, same
seed; reports each one's median seconds and the paired ratios, checks the two generate the same token ids,
and writes ``benchmarks/results/decoding_kv_<teacher>.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def teacher_inputs(config: Path, teacher_name: str | None):
    from pgscore.config import load_experiment
    from pgscore.pipeline import run_experiment
    from pgscore.seed.build import load_seed_dir
    from pgscore.synthesis.prompts import PAIR_SCHEMA
    from pgscore.synthesis.decoding import teacher_params
    from pgscore.synthesis.stage import plan_rows

    exp = load_experiment(config)
    teacher = next(t for t in exp.teachers if teacher_name in (None, t.name))
    out = Path(tempfile.mkdtemp(prefix="bench-decoding-"))
    run_experiment(exp, out, only=["seed"])
    seed_df, pool = load_seed_dir(out / "seed")
    plan = plan_rows([teacher], exp.languages, seed_df, pool, exp.synthesis)
    plan = plan[plan["trial"] == plan["trial"].min()].head(exp.synthesis.batch_size)
    return exp, teacher, plan, seed_df, pool, teacher_params(teacher, exp.synthesis.max_tokens), PAIR_SCHEMA


def encoded_rows(exp, lm, plan, seed_df, pool, params, schema, limit: int | None = None):
    """The plan's rows as the backend receives them: ``[(prompt ids, stops, uses the schema)]`` and each row's
    ``SamplingParams`` (the teacher's decoding, seed 7, its stops and schema); the first ``limit`` rows."""
    from pgscore.models.base import SamplingParams
    from pgscore.synthesis.stage import render_rows

    rendering = exp.synthesis.rendering if exp.synthesis.rendering != "auto" else (
        "chat" if lm.has_chat_template else "completion")
    rendered = [r for r in render_rows(plan, seed_df, pool, exp.synthesis, rendering) if not isinstance(r, str)]
    rows = []
    for r in rendered[:limit]:
        ids = lm._encode(lm.render_chat(r.messages), special=not lm._has_template) if r.rendering == "chat" \
            else lm._encode(r.text)
        use_schema = exp.synthesis.structured_output and r.parse == "json"
        rows.append((ids, tuple(r.stop), use_schema))
    per_row = [SamplingParams.model_validate({**params.model_dump(), "seed": 7, "stop": stop,
                                              **({"json_schema": schema} if s else {})}) for _, stop, s in rows]
    return rows, per_row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "quickstart.yaml")
    ap.add_argument("--teacher", default=None, help="teacher name (default: the first)")
    ap.add_argument("--kv", action="store_true", help="the loop with and without preallocated KV buffers")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch
    from transformers import LogitsProcessorList

    from pgscore.models import load_model
    from pgscore.models.base import ModelSpec
    from pgscore.models.constrained import json_constraint, output_vocab_size
    from pgscore.models.sampling import neutral_sampling_kwargs, sampling_processors
    from pgscore.models.sequences import length_batches

    exp, teacher, plan, seed_df, pool, params, schema = teacher_inputs(args.config, args.teacher)
    lm = load_model(teacher.model)
    rows, per_row = encoded_rows(exp, lm, plan, seed_df, pool, params, schema)

    def ours():
        gens = lm._generate([ids for ids, _, _ in rows], per_row, ())
        n = sum(g.completion_tokens for g in gens)
        return n, n  # a row leaves the batch at its last token: it computes exactly its own tokens

    def stock():
        groups: dict[tuple, list[int]] = {}
        for i, (_, stop, s) in enumerate(rows):
            groups.setdefault((stop, s), []).append(i)
        tokens = slots = 0
        for (stop, s), idx in groups.items():
            for b in length_batches([len(rows[i][0]) for i in idx], lm.batch_size):
                ids, mask = lm._left_pad([rows[idx[j]][0] for j in b])
                procs = []
                if s:
                    procs += list(json_constraint(lm.tokenizer, output_vocab_size(lm.model), lm.eos_ids,
                                                  schema).processors())
                procs += sampling_processors(params.temperature, params.top_k, params.top_p)
                kw = dict(neutral_sampling_kwargs())
                if stop:
                    kw.update(stop_strings=list(stop), tokenizer=lm.tokenizer)
                torch.manual_seed(7)
                with torch.inference_mode():
                    seqs = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=params.max_tokens,
                                             pad_token_id=lm.pad_id, eos_token_id=lm.eos_ids or None,
                                             logits_processor=LogitsProcessorList(procs), **kw)
                new = seqs[:, ids.shape[1]:]
                slots += new.numel()
                for j, row in enumerate(new.tolist()):
                    g = lm._finish(row, 0, params.max_tokens, stop)
                    tokens += len(lm._encode(g.text, special=False)) if g.text else 0
        return tokens, slots

    if args.kv:
        return kv_bench(lm, rows, per_row, teacher, args.repeats)
    ours(), stock()  # warm-up: grammar compilation, transformers' stop-string tables, allocator
    res = {}
    for name, fn in (("stock", stock), ("pgscore", ours)):
        t = time.perf_counter()
        tokens, slots = fn()
        res[name] = {"seconds": round(time.perf_counter() - t, 2), "generated_tokens": tokens,
                     "token_slots": slots}
    res["speedup"] = round(res["stock"]["seconds"] / res["pgscore"]["seconds"], 2)
    res.update(teacher=teacher.name, model=ModelSpec.parse(teacher.model).short(), rows=len(rows), max_tokens=params.max_tokens,
               batch_size=lm.batch_size, calls_stock=len({(s, j) for _, s, j in rows}), calls_pgscore=1,
               threads=torch.get_num_threads())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"decoding_{teacher.name}.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


def kv_bench(lm, rows, per_row, teacher, repeats: int) -> None:
    import statistics

    import torch

    import pgscore.models.generate_loop as loop

    real = loop.preallocate
    prompts = [ids for ids, _, _ in rows]

    def run(prealloc: bool):
        loop.preallocate = real if prealloc else (lambda cache, room: cache)
        try:
            t = time.perf_counter()
            gens = lm._generate(prompts, per_row, ())
            return time.perf_counter() - t, [g.text for g in gens]
        finally:
            loop.preallocate = real

    run(True)  # warm-up: grammar compilation, allocator
    times: dict[str, list[float]] = {"dynamic": [], "preallocated": []}
    texts = {}
    for _ in range(repeats):
        for name in ("dynamic", "preallocated"):
            dt, texts[name] = run(name == "preallocated")
            times[name].append(dt)
    res = {"teacher": teacher.name, "rows": len(rows), "repeats": repeats, "threads": torch.get_num_threads(),
           "dynamic_median_s": round(statistics.median(times["dynamic"]), 2),
           "preallocated_median_s": round(statistics.median(times["preallocated"]), 2),
           "paired_ratio_preallocated_over_dynamic": [round(p / d, 3) for p, d in
                                                      zip(times["preallocated"], times["dynamic"])],
           "same_texts": texts["dynamic"] == texts["preallocated"]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"decoding_kv_{teacher.name}.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
