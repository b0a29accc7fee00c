"""Global-MMLU Lite MCF: pgscore's accuracy vs lighteval's prompt + a plain log-likelihood loop.

Run: ``python benchmarks/bench_lighteval_mmlu.py [--n 120] [--lang id] [--model tiny:smollm2-135m]``
(needs lighteval: ``scripts/install_lighteval.sh``).

Both sides use the same weights (the model pgscore loads) on the first ``--n`` items of the offline
SEA-HELM copy of Global-MMLU Lite:

- ``pgscore``: the task's scorer under ``formulation: mcf`` (what ``evaluate`` runs), batched, left-padded;
- ``lighteval``: the authors' prompt function (``get_mcq_prompt_function(Language, adapter,
  MCFFormulation())`` from ljvmiranda921/polyglot-teachers ``scripts/lighteval_tasks.py``), lighteval's own
  context/continuation tokenisation (``LightevalModel.tok_encode_pair``), then one unpadded forward per
  (query, letter) and ``argmax`` of the summed letter log-probabilities (``LogLikelihoodAccMetric``
  without normalisation, what ``get_metrics_for_formulation`` picks for MCF).

Prints both accuracies, the per-item agreement and the largest log-probability difference; writes
``benchmarks/results/lighteval_mmlu.json``. Exit status 1 when the accuracies differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from string import ascii_uppercase

import numpy as np
import torch

from pgscore.evaluation.mcf import LIGHTEVAL_LANGUAGE
from pgscore.evaluation.registry import TaskData, get_task
from pgscore.models import load_model


def lighteval_side(lm, examples, lang: str) -> tuple[list[int], list[list[float]]]:
    from lighteval.models.abstract_model import LightevalModel
    from lighteval.tasks.templates.multichoice import get_mcq_prompt_function
    from lighteval.tasks.templates.utils.formulation import MCFFormulation
    from lighteval.utils.language import Language

    class Tok:  # lighteval's own pair encoding, on pgscore's tokenizer
        tokenizer = lm.tokenizer
        add_special_tokens = True
        tok_encode = LightevalModel.tok_encode
        tok_encode_pair = LightevalModel.tok_encode_pair

    fn = get_mcq_prompt_function(
        getattr(Language, LIGHTEVAL_LANGUAGE[lang]),
        lambda line: {"question": line["question"],
                      "choices": [line["option_a"], line["option_b"], line["option_c"], line["option_d"]],
                      "gold_idx": ascii_uppercase.index(line["answer"])},
        formulation=MCFFormulation(),
    )
    model = lm.model
    preds, all_lps = [], []
    for e in examples:
        row = {"question": e["question"], "answer": "ABCD"[e["gold"]],
               **{f"option_{c}": o for c, o in zip("abcd", e["options"])}}
        doc = fn(row, f"global_mmlu_lite:{lang}")
        ctx_encs, cont_encs = Tok().tok_encode_pair(doc.query, list(doc.choices))
        lps = []
        if all(len(c) == 1 and list(x) == list(ctx_encs[0]) for c, x in zip(cont_encs, ctx_encs)):
            # one-token letters after the same context: a causal LM's logits at the last context position do
            # not depend on the continuation, so one unpadded forward of the context serves all four
            with torch.inference_mode():
                logits = model(torch.tensor([list(ctx_encs[0])]), logits_to_keep=1).logits[0, -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            lps = [float(logp[c[0]]) for c in cont_encs]
        else:
            for ctx, cont in zip(ctx_encs, cont_encs):
                ids = torch.tensor([list(ctx) + list(cont)])
                with torch.inference_mode():
                    logits = model(ids).logits[0].float()
                logp = torch.log_softmax(logits, dim=-1)
                n = len(ctx)
                lps.append(float(sum(logp[n - 1 + i, t] for i, t in enumerate(cont))))
        preds.append(int(np.argmax(lps)))
        all_lps.append(lps)
        if len(preds) % 10 == 0:
            print(f"lighteval loop: {len(preds)}/{len(examples)}", flush=True)
    return preds, all_lps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--lang", default="id")
    ap.add_argument("--model", default="tiny:smollm2-135m")
    args = ap.parse_args()

    t0 = time.perf_counter()
    lm = load_model(args.model)
    print(f"loaded {args.model} in {time.perf_counter() - t0:.1f}s", flush=True)
    task = get_task("global_mmlu_lite")
    data = task.load(args.lang, hub=False)
    examples = data.examples[: args.n]
    golds = [e["gold"] for e in examples]
    # the task's own scorer (what evaluate() calls) on the first n items, batched as in a run
    t0 = time.perf_counter()
    task.set_formulation("mcf")
    df = task.score(lm, TaskData(examples, data.source), args.lang, batch_size=16, seed=0)
    t_pg = time.perf_counter() - t0
    print(f"pgscore side: {t_pg:.1f}s", flush=True)
    t0 = time.perf_counter()
    le_preds, le_lps = lighteval_side(lm, examples, args.lang)
    t_le = time.perf_counter() - t0
    pg_preds = df["pred_acc"].tolist()
    pg_acc = float(np.mean([p == g for p, g in zip(pg_preds, golds)]))
    le_acc = float(np.mean([p == g for p, g in zip(le_preds, golds)]))
    agree = float(np.mean([a == b for a, b in zip(pg_preds, le_preds)]))
    diff = float(max(abs(a - b) for x, y in zip(df["logprobs"], le_lps) for a, b in zip(x, y)))
    out = {"model": args.model, "language": args.lang, "n": len(examples), "source": data.source,
           "pgscore_acc": pg_acc, "lighteval_acc": le_acc, "item_agreement": agree, "max_abs_logprob_diff": diff,
           "seconds_pgscore": round(t_pg, 2), "seconds_lighteval_loop": round(t_le, 2),
           "equal": pg_acc == le_acc}
    print(json.dumps(out, indent=1))
    path = Path(__file__).parent / "results" / "lighteval_mmlu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    return 0 if out["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
