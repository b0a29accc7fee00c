"""Measure the embedded models' throughput for `pgscore plan`'s time column (pgscore/resources/plan/throughput.yaml).

Run: ``python benchmarks/bench_plan_throughput.py [--batch 8] [--max-tokens 64]``. Prints, per tiny model, the
aggregate decode tokens/s of one batched generation (prefill included, as a run sees it) and the tokens/s of
batched log-likelihood scoring, as YAML entries to paste into your own ``--throughput`` file.
"""

from __future__ import annotations

import argparse
import time


def measure(name: str, batch: int, max_tokens: int) -> dict:
    from pgscore.models import load_model
    from pgscore.models.base import SamplingParams

    model = load_model(name)
    model.batch_size = batch  # one batch of --batch rows (the backend's default batches 8 at a time)
    text = "Schreibe eine kurze Antwort auf Deutsch: Was ist die Hauptstadt von Indonesien und warum? " * 4
    params = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=max_tokens, seed=1)
    t0 = time.perf_counter()
    gens = model.complete([f"{text}{i}" for i in range(batch)], params)
    gen_s = time.perf_counter() - t0
    reqs = [(text, " Jakarta ist die Hauptstadt, weil die Regierung dort sitzt. " * 3 + str(i)) for i in range(2 * batch)]
    n_ll = sum(model.count_tokens([a + b for a, b in reqs]))
    t0 = time.perf_counter()
    model.loglikelihood(reqs)
    ll_s = time.perf_counter() - t0
    model.close()
    return {"decode_tps": sum(g.completion_tokens for g in gens) / gen_s, "prefill_tps": n_ll / ll_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    print("entries:")
    for name in ("tiny:smollm2-135m", "tiny:gemma3-270m"):
        r = measure(name, args.batch, args.max_tokens)
        print(f'  - {{match: "{name}", engine: transformers, prefill_tps: {r["prefill_tps"]:.0f}, '
              f'decode_tps: {r["decode_tps"]:.1f}, source: "measured, bench_plan_throughput.py"}}')


if __name__ == "__main__":
    main()
