"""Sampled generation: transformers' stock top-k/top-p warpers vs pgscore's (``pgscore/models/sampling.py``).

Run: ``python benchmarks/bench_sampling.py [--model tiny:gemma3-270m] [--batch 12] [--tokens 48]``.

One process, one loaded model, the same prompts and seed for both modes (each timed twice, alternating,
the best of the two kept):

- ``stock``: ``model.generate(do_sample=True, temperature, top_k, top_p)``: transformers' TopPLogitsWarper
  sorts the whole vocabulary at every step;
- ``pgscore``: the backend's path (``TransformersLM.complete``): the same warpers, the nucleus found among
  the top 1024 candidates.

Also times one warper call on the model's vocabulary at this batch (stock vs ours) and checks that the two
generations are token-for-token equal (the exactness check). Writes ``benchmarks/results/sampling.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DECODING = {"tiny:gemma3-270m": dict(temperature=1.0, top_p=0.95, top_k=64),  # the quickstart's teachers
            "tiny:smollm2-135m": dict(temperature=0.8, top_p=0.9, top_k=None)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny:gemma3-270m")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args()

    import torch
    from transformers import TopPLogitsWarper

    from pgscore.models import load_model
    from pgscore.models.base import SamplingParams
    from pgscore.models.sampling import NucleusWarper
    from pgscore.models.sequences import length_batches

    dec = DECODING.get(args.model, dict(temperature=1.0, top_p=0.95, top_k=None))
    lm = load_model(args.model)
    lm.batch_size = args.batch
    prompts = [f"Schreibe eine kurze Geschichte Nummer {i} über" for i in range(args.batch)]
    enc = [lm._encode(p) for p in prompts]
    (order,) = length_batches([len(e) for e in enc], args.batch)
    ids, mask = lm._left_pad([enc[i] for i in order])
    params = SamplingParams(max_tokens=args.tokens, seed=3, **dec)

    def stock():
        torch.manual_seed(3)  # the backend seeds its (single) length batch with seed + 0
        with torch.inference_mode():
            seqs = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.tokens,
                                     pad_token_id=lm.pad_id, eos_token_id=lm.eos_ids or None, do_sample=True,
                                     temperature=dec["temperature"], top_p=dec["top_p"], top_k=dec["top_k"] or 0)
        out = [""] * len(prompts)
        for row, i in zip(seqs[:, ids.shape[1]:].tolist(), order):
            out[i] = lm._finish(row, len(enc[i]), args.tokens, ()).text
        return out

    def ours():
        return [g.text for g in lm.complete(prompts, params)]

    times = {"stock": [], "pgscore": []}
    outputs = {}
    for _ in range(2):
        for name, fn in (("stock", stock), ("pgscore", ours)):
            t0 = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    equal = sum(a == b for a, b in zip(outputs["stock"], outputs["pgscore"]))
    n_tokens = sum(len(lm._encode(t, special=False)) for t in outputs["pgscore"])

    vocab = lm.model.get_output_embeddings().weight.shape[0]
    scores = torch.randn(args.batch, vocab) * 4
    warp = {}
    for name, w in (("stock", TopPLogitsWarper(dec["top_p"])), ("pgscore", NucleusWarper(dec["top_p"]))):
        w(None, scores.clone())
        t0 = time.perf_counter()
        for _ in range(5):
            w(None, scores.clone())
        warp[name] = (time.perf_counter() - t0) / 5
    res = {
        "model": args.model, "batch": args.batch, "tokens": args.tokens, "decoding": dec, "vocab": vocab,
        "threads": torch.get_num_threads(),
        "generate_s": {k: min(v) for k, v in times.items()},
        "generate_ratio_stock_over_pgscore": min(times["stock"]) / min(times["pgscore"]),
        "top_p_call_s": warp, "top_p_call_ratio": warp["stock"] / warp["pgscore"],
        "identical_generations": f"{equal}/{len(prompts)}", "generated_tokens": n_tokens,
    }
    RESULTS.mkdir(exist_ok=True)
    slug = args.model.split(":")[-1]
    (RESULTS / f"sampling_{slug}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
