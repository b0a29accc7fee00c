"""vLLM (CPU build) vs transformers on the two tiny models, and pgscore's vLLM backend vs raw ``vllm.LLM``.

Run in the vLLM environment (it has both engines):
``.venv-vllm/bin/python benchmarks/bench_vllm.py [--n-gen 32] [--max-tokens 96] [--n-score 64]``.

Every figure comes from one run, each engine × model in a fresh subprocess (so load time includes the
imports and the engine start-up a user pays), one after the other on the same cores:

- ``load_s``: process start -> model ready (converted cache present; torch/transformers/vLLM imports,
  vLLM's engine start-up and KV-cache allocation included);
- ``gen_tok_s``: greedy generation of ``--n-gen`` prompts × up to ``--max-tokens`` new tokens in one call
  (chat for SmolLM2-Instruct, completion for the Gemma 3 base model); transformers with batch size = n;
- ``score_tok_s``: ``loglikelihood`` of ``--n-score`` (prompt, response) pairs from GSM8K train, tokens of
  context + continuation per second;
- vLLM only: ``raw_gen_tok_s``: ``vllm.LLM.generate`` / ``LLM.chat`` on the same prompts (text in, the
  backend's own engine) vs pgscore's backend (token ids in): ``backend_vs_raw`` = ratio of medians over
  ``$BENCH_VLLM_ROUNDS`` (3) interleaved rounds after a warm-up call (goal >= 0.95).

Ratios (vLLM / transformers) are within this run. Writes ``benchmarks/results/vllm.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

T0 = time.monotonic()
RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("smollm2-135m", "gemma3-270m")
ROUNDS = int(os.environ.get("BENCH_VLLM_ROUNDS", "3"))


def _prompts(n: int) -> list[str]:
    topics = ["the sea", "a small town", "bread", "rain", "a train", "trees", "music", "a cat", "mountains",
              "the moon", "coffee", "a library", "bicycles", "winter", "a market", "rivers"]
    return [f"Request {i}: write a short paragraph about {topics[i % len(topics)]}." for i in range(n)]


def _pairs(n: int) -> list[tuple[str, str]]:
    from pgscore.paths import data_dir

    rows = [json.loads(x) for x in (data_dir() / "gsm8k" / "train.jsonl").open()]
    rng = random.Random(0)
    out = []
    for i in range(n):
        r = rng.choice(rows)
        out.append((f"Problem {i}. {r['question']}\n\n", r["answer"]))  # unique prefix: no prefix-cache reuse
    return out


def worker(engine: str, model: str, n_gen: int, max_tokens: int, n_score: int) -> dict:
    from pgscore.models import SamplingParams, load_model

    spec = ({"backend": "tiny", "model": model, "batch_size": max(n_gen, n_score)} if engine == "transformers"
            else {"backend": "vllm", "model": f"tiny:{model}", "options": {"fallback": False}})
    lm = load_model(spec)
    load_s = time.monotonic() - T0
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    prompts = _prompts(n_gen)
    out: dict = {"engine": engine, "model": model, "load_s": round(load_s, 2)}
    t = time.monotonic()
    if lm.has_chat_template:
        gens = lm.chat([[{"role": "user", "content": p}] for p in prompts], params)
    else:
        gens = lm.complete(prompts, params)
    dt = time.monotonic() - t
    n_tok = sum(g.completion_tokens for g in gens)
    out.update(gen_s=round(dt, 2), gen_tokens=n_tok, gen_tok_s=round(n_tok / dt, 1))
    if engine == "vllm":
        import statistics

        import vllm

        sp = vllm.SamplingParams(temperature=0.0, max_tokens=max_tokens)
        chats = [[{"role": "user", "content": p}] for p in prompts]

        def raw_call():
            if lm.has_chat_template:
                return lm.llm.chat(chats, sp, use_tqdm=False)
            return lm.llm.generate(prompts, sp, use_tqdm=False)

        def ours_call():
            return lm.chat(chats, params) if lm.has_chat_template else lm.complete(prompts, params)

        # interleaved rounds (after the timed first call above warmed the engine): load changes hit both alike
        ours_tps, raw_tps = [], []
        for _ in range(ROUNDS):
            t = time.monotonic()
            raw = raw_call()
            raw_tps.append(sum(len(o.outputs[0].token_ids) for o in raw) / (time.monotonic() - t))
            t = time.monotonic()
            again = ours_call()
            ours_tps.append(sum(g.completion_tokens for g in again) / (time.monotonic() - t))
        out.update(rounds=ROUNDS, ours_round_tok_s=[round(x, 1) for x in ours_tps],
                   raw_gen_tok_s=round(statistics.median(raw_tps), 1),
                   raw_round_tok_s=[round(x, 1) for x in raw_tps])
        out["backend_vs_raw"] = round(statistics.median(ours_tps) / statistics.median(raw_tps), 3)
        out["same_text_as_raw"] = sum(g.text == o.outputs[0].text for g, o in zip(gens, raw)) / len(gens)
    pairs = _pairs(n_score)
    n_ctx_tok = sum(lm.count_tokens([c + r for c, r in pairs]))
    t = time.monotonic()
    scores = lm.loglikelihood(pairs)
    dt = time.monotonic() - t
    out.update(score_s=round(dt, 2), score_tokens=n_ctx_tok, score_tok_s=round(n_ctx_tok / dt, 1),
               score_sum=round(sum(s.logprob for s in scores), 3))
    lm.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-gen", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--n-score", type=int, default=64)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--engines", nargs="+", default=["transformers", "vllm"])
    ap.add_argument("--out", default="vllm.json", help="file name under benchmarks/results/")
    ap.add_argument("--worker", nargs=2, metavar=("ENGINE", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(*args.worker, args.n_gen, args.max_tokens, args.n_score)), flush=True)
        return
    rows, load_before = [], os.getloadavg()
    for model in args.models:
        for engine in args.engines:
            cmd = [sys.executable, __file__, "--worker", engine, model, "--n-gen", str(args.n_gen),
                   "--max-tokens", str(args.max_tokens), "--n-score", str(args.n_score)]
            env = {**os.environ, "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
            if r.returncode != 0 or not line:
                sys.exit(f"{engine} {model} failed:\n{r.stderr[-3000:]}")
            rows.append(json.loads(line[-1][7:]))
            print(rows[-1], flush=True)
    by = {(r["engine"], r["model"]): r for r in rows}
    ratios = {}
    for m in (args.models if set(args.engines) >= {"vllm", "transformers"} else []):
        v, h = by[("vllm", m)], by[("transformers", m)]
        ratios[m] = {"gen_vllm_over_transformers": round(v["gen_tok_s"] / h["gen_tok_s"], 2),
                     "score_vllm_over_transformers": round(v["score_tok_s"] / h["score_tok_s"], 2),
                     "load_vllm_minus_transformers_s": round(v["load_s"] - h["load_s"], 1),
                     "backend_vs_raw_vllm": v["backend_vs_raw"],
                     "score_sum_abs_diff": round(abs(v["score_sum"] - h["score_sum"]), 4)}
    result = {"settings": vars(args) | {"worker": None}, "cpu_count": os.cpu_count(),
              "loadavg_before": [round(x, 1) for x in load_before],
              "loadavg_after": [round(x, 1) for x in os.getloadavg()], "rows": rows, "ratios": ratios}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(ratios, indent=2))


if __name__ == "__main__":
    main()
