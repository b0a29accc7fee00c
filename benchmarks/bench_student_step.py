"""Student SFT step time: TRL's stock compute_loss vs completion-only logits vs that + frozen embeddings.

Run: ``python benchmarks/bench_student_step.py [--model tiny:gemma3-270m] [--steps 3]``.

One process, the same fixed batch (``--batch`` x ``--tokens`` random token ids, the first ``--prompt`` positions
of each row masked with -100 as completion-only SFT does) and the same initial weights for every mode. A step is
what ``Trainer.training_step`` + the optimiser do: the trainer's ``compute_loss`` (``num_items_in_batch`` given),
backward, AdamW step (``adamw_torch``, the Trainer's own optimiser), zero grad. Modes:

- ``stock``: ``make_sft_trainer(..., selective_logits=False)``: TRL 1.16's compute_loss (its fused LM head
  scores every position on CPU);
- ``selective``: pgscore's completion-only logits (LM head at labelled positions only);
- ``selective_frozen``: that + ``freeze_embeddings`` (tied: the LM head is frozen too).

The first step's loss and gradients of stock vs selective are compared (relative difference) as the exactness
check on this model. Writes ``benchmarks/results/student_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run_mode(mode: str, source: str, batch: dict, n_items, steps: int, tmp: str):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from pgscore.student.train import freeze_input_embeddings, make_sft_trainer

    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    if mode == "selective_frozen":
        freeze_input_embeddings(model)
    args = SFTConfig(output_dir=os.path.join(tmp, mode), per_device_train_batch_size=batch["input_ids"].shape[0],
                     learning_rate=1e-5, optim="adamw_torch", completion_only_loss=True, report_to=[],
                     use_cpu=True, save_strategy="no", max_steps=1, dataloader_num_workers=0)
    ds = Dataset.from_list([{"prompt": "Hallo", "completion": " Welt"}])
    trainer = make_sft_trainer(model, args, ds, tok, selective_logits=(mode != "stock"))
    assert trainer.selective_logits_used == (mode != "stock"), trainer.selective_logits_fallback
    model.train()
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    opt = trainer.optimizer
    times, losses, first_grads = [], [], None
    for i in range(steps):
        t0 = time.perf_counter()
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i == 0:
            first_grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        times.append({"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "step": t3 - t0})
        losses.append(float(loss))
        print(mode, i, {k: round(v, 2) for k, v in times[-1].items()}, round(losses[-1], 6), flush=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del trainer, model, opt
    return times, losses, first_grads, trainable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny:gemma3-270m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=160)
    ap.add_argument("--prompt", type=int, default=60)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()

    import torch

    from pgscore.models.base import ModelSpec
    from pgscore.student.train import resolve_base

    source = resolve_base(ModelSpec.parse(args.model))[0]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 20000, (args.batch, args.tokens), generator=g)
    labels = ids.clone()
    labels[:, : args.prompt] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    n_items = (labels[:, 1:] != -100).sum()
    res = {"model": args.model, "batch": args.batch, "tokens": args.tokens, "prompt_tokens": args.prompt,
           "labelled_positions": int(n_items), "torch_threads": torch.get_num_threads(), "modes": {}}
    grads = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("stock", "selective", "selective_frozen"):
            torch.manual_seed(0)
            times, losses, g0, trainable = run_mode(mode, source, batch, n_items, args.steps, tmp)
            grads[mode] = g0
            later = times[1:] or times  # the first step warms up allocators and AdamW state
            res["modes"][mode] = {"step_s_median": statistics.median(t["step"] for t in later),
                                  "parts_median": {k: statistics.median(t[k] for t in later)
                                                   for k in ("forward", "backward", "optimizer")},
                                  "steps": times, "losses": losses, "trainable_params": trainable}
    base = res["modes"]["stock"]["step_s_median"]
    for mode, r in res["modes"].items():
        r["speedup_vs_stock"] = base / r["step_s_median"]

    def rel(a, b):
        return float((a - b).norm() / b.norm().clamp(min=1e-30))

    ls, lsel = res["modes"]["stock"]["losses"][0], res["modes"]["selective"]["losses"][0]
    res["first_step_loss_rel_diff_selective_vs_stock"] = abs(lsel - ls) / abs(ls)
    res["first_step_grad_max_rel_diff_selective_vs_stock"] = max(
        rel(grads["selective"][n], grads["stock"][n]) for n in grads["stock"])
    per = {n: rel(grads["selective"][n], grads["stock"][n]) for n in grads["stock"]}
    worst = max(per, key=per.get)
    res["first_step_grad_worst_param"] = {"name": worst, "rel_diff": per[worst],
                                          "grad_norm": float(grads["stock"][worst].norm())}
    res["first_step_grad_median_rel_diff"] = statistics.median(per.values())
    res["first_step_grad_global_rel_diff"] = float(
        torch.sqrt(sum((grads["selective"][n] - grads["stock"][n]).pow(2).sum() for n in per))
        / torch.sqrt(sum(grads["stock"][n].pow(2).sum() for n in per)))
    print("worst parameter", res["first_step_grad_worst_param"], "median", res["first_step_grad_median_rel_diff"],
          "global", res["first_step_grad_global_rel_diff"])
    res["first_step_grad_max_rel_diff_frozen_vs_stock"] = max(
        rel(grads["selective_frozen"][n], grads["stock"][n]) for n in grads["selective_frozen"])
    res["load_avg_1min"] = os.getloadavg()[0]
    print(f"{'mode':<18}{'step s':>8}{'fwd':>7}{'bwd':>7}{'opt':>7}{'x stock':>9}")
    for mode, r in res["modes"].items():
        p = r["parts_median"]
        print(f"{mode:<18}{r['step_s_median']:8.2f}{p['forward']:7.2f}{p['backward']:7.2f}{p['optimizer']:7.2f}"
              f"{r['speedup_vs_stock']:9.2f}")
    print("first step, selective vs stock: loss rel diff %.2e, max grad rel diff %.2e (frozen vs stock %.2e)" % (
        res["first_step_loss_rel_diff_selective_vs_stock"], res["first_step_grad_max_rel_diff_selective_vs_stock"],
        res["first_step_grad_max_rel_diff_frozen_vs_stock"]))
    print(f"load average {res['load_avg_1min']:.1f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "student_step.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
