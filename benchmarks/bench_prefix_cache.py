"""Shared-prefix KV cache in ``TransformersLM.loglikelihood``: MGSM graded scoring with and without it.

Run: ``python benchmarks/bench_prefix_cache.py [--n 24] [--language de] [--model tiny:gemma3-270m]``.

MGSM's graded signal (``evaluation.signal: graded``) scores only the gold number after the 5-shot
context, so every request starts with the same ~570 exemplar tokens. Both passes run ``MGSM.score`` exactly
as ``pgscore evaluate --benchmarks mgsm --signal graded`` does (requests in calls of ``--batch-size`` 16,
model batches of 8), in one process on one loaded model; only ``prefix_cache`` differs. The passes
alternate (``--rounds``) so load changes on a shared machine hit both alike; the ratio is taken from the
medians. Also checks that both give the same ``gold_logprob`` (max abs difference). Writes
``benchmarks/results/prefix_cache.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from pgscore.evaluation.mgsm import MGSM
from pgscore.models import load_model

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny:gemma3-270m")
    ap.add_argument("--language", default="de")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16, help="requests per loglikelihood call (evaluate's)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "prefix_cache.json"))
    args = ap.parse_args()

    lm = load_model(args.model)
    task = MGSM()
    task.generate = False  # the graded signal
    data = task.load(args.language, hub=False)
    data.examples = data.examples[: args.n]
    prep = lm.prepare_loglikelihood([(p, "") for p in task.prompts(data)[0]])
    n_tokens = sum(len(f) for f, _, _ in prep)

    times: dict[str, list[float]] = {"uncached": [], "cached": []}
    frames = {}
    for _ in range(args.rounds):
        for name, on in (("uncached", False), ("cached", True)):
            lm.prefix_cache = on
            t0 = time.perf_counter()
            frames[name] = task.score(lm, data, args.language, batch_size=args.batch_size, seed=0)
            times[name].append(time.perf_counter() - t0)
            print(f"{name}: {times[name][-1]:.2f} s", flush=True)
    lm.prefix_cache = True
    diff = float((frames["cached"]["gold_logprob"] - frames["uncached"]["gold_logprob"]).abs().max())
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "model": args.model, "language": args.language, "n_items": len(data.examples),
        "prompt_tokens": n_tokens, "batch_size_calls": args.batch_size, "model_batch_size": lm.batch_size,
        "prefix_cache_min_tokens": lm.prefix_cache_min_tokens, "seconds": times, "median_seconds": med,
        "speedup_cached": med["uncached"] / med["cached"], "max_abs_diff_gold_logprob": diff,
        "torch_threads": os.environ.get("PGSCORE_TORCH_THREADS"), "load_average": os.getloadavg(),
    }
    print(f"uncached {med['uncached']:.2f} s, cached {med['cached']:.2f} s: speed-up "
          f"{res['speedup_cached']:.2f}x; max |diff| gold_logprob {diff:.2e}; load average {res['load_average']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
