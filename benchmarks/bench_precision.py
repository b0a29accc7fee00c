"""float32 vs bfloat16 for the local (transformers) backend on this CPU, in one process and one run.

Run: ``python benchmarks/bench_precision.py [--questions 96] [--out benchmarks/results/precision.json]``.
Emulate a CPU without native bfloat16 (AVX2 only) with
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_precision.py
--questions 48 --skip-train --out benchmarks/results/precision_avx2.json`` (there one bf16 autocast training
step ran for minutes against 4.6 s in float32, so ``--skip-train``).

Three workloads of the quickstart, each timed in both dtypes on the same inputs:

- ``mgsm_loglikelihood``: the graded MGSM signal (``number`` formulation, German, ``--questions``
  questions) through ``TransformersLM.loglikelihood`` of Gemma 3 270M, the student base;
- ``train_step``: one forward + backward of Gemma 3 270M on 4 x 140 tokens with the embedding frozen and
  the loss on the last 60 positions, float32 vs bfloat16 autocast (what TrainingArguments(bf16=True)
  does on CPU);
- ``judge_loglikelihood``: the score-only judge's five continuations on 8 real ~600-token judge prompts
  through SmolLM2-135M.

Also the agreement: mean and max |log-prob difference| and the mean |probability difference| of the
MGSM gold numbers. ``auto`` in ``pgscore.models.precision`` picks bfloat16 only where this CPU has
native bfloat16 (``native_bf16`` in the output).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, repeats: int = 2) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=96)
    ap.add_argument("--out", default=str(RESULTS / "precision.json"))
    ap.add_argument("--skip-train", action="store_true",
                    help="no training step (under AVX2 emulation a bf16 autocast step takes minutes)")
    args = ap.parse_args()

    import numpy as np
    import torch

    import pgscore.evaluation.mgsm as mgsm
    from pgscore.metrics.judge import build_raw
    from pgscore.models import load_model
    from pgscore.models.precision import cpu_has_native_bf16
    from pgscore.paths import data_dir

    with open(data_dir() / "mgsm" / "mgsm_de.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))[: args.questions]
    mgsm_reqs = [(mgsm.number_prompt(q, "de"), " " + a) for q, a in rows]
    seed = [r for r in csv.reader(open(data_dir() / "mgsm" / "mgsm_en.tsv", encoding="utf-8"), delimiter="\t")][:8]
    judge_ctx = [build_raw(q, f"Die Antwort ist {a}.", "German") + "[RESULT] " for q, a in seed]
    judge_reqs = [(c, str(s)) for c in judge_ctx for s in range(1, 6)]

    out: dict = {"native_bf16": cpu_has_native_bf16(),  # what dtype auto sees (False under the AVX2 hold) "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                 "questions": len(mgsm_reqs), "workloads": {}}
    lps = {}
    for dt in ("float32", "bfloat16"):
        gemma = load_model({"backend": "tiny", "model": "gemma3-270m", "dtype": dt})
        res = {}

        def mgsm_ll():
            res["mgsm"] = [s.logprob for s in gemma.loglikelihood(mgsm_reqs)]

        w = out["workloads"]
        w.setdefault("mgsm_loglikelihood", {})[dt] = round(timed(mgsm_ll, 1), 2)
        lps[dt] = np.array(res["mgsm"])
        del gemma

        smol = load_model({"backend": "tiny", "model": "smollm2-135m", "dtype": dt})
        w.setdefault("judge_loglikelihood", {})[dt] = round(timed(lambda: smol.loglikelihood(judge_reqs)), 2)
        del smol

    base = load_model({"backend": "tiny", "model": "gemma3-270m", "dtype": "float32"}).model
    base.train()
    base.get_input_embeddings().weight.requires_grad_(False)
    x = torch.randint(100, 5000, (4, 140), generator=torch.Generator().manual_seed(0))

    def step(autocast: bool):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                h = base.model(input_ids=x).last_hidden_state
                logits = base.lm_head(h[:, -60:])
                loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                         x[:, -60:].reshape(-1))
            loss.backward()
            base.zero_grad(set_to_none=True)
        return run

    if not args.skip_train:
        out["workloads"]["train_step"] = {"float32": round(timed(step(False)), 2),
                                          "bfloat16": round(timed(step(True)), 2)}
    for w in out["workloads"].values():
        w["speedup_bf16"] = round(w["float32"] / w["bfloat16"], 2)
    a, b = lps["float32"], lps["bfloat16"]
    out["agreement_mgsm_gold_logprob"] = {"mean_abs_diff": round(float(np.abs(a - b).mean()), 4),
                                          "max_abs_diff": round(float(np.abs(a - b).max()), 4),
                                          "mean_abs_prob_diff": round(float(np.abs(np.exp(a) - np.exp(b)).mean()), 6),
                                          "corr": round(float(np.corrcoef(a, b)[0, 1]), 5)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
