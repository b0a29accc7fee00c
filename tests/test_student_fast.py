"""Completion-only logits and frozen embeddings for student SFT: same loss as TRL's own path, and the loss and
gradients of an independent full-logits reference (TRL 1.16's CPU path is itself off that reference by up to
~5% on single small gradient tensors, so its gradients get a loose guard only).

Real tiny model (SmolLM2-135M, tied embeddings, 49k vocabulary), one optimiser step of 2 micro-batches
(gradient accumulation 2, so ``num_items_in_batch`` decides the divisor). Three computations of the same
step: TRL's stock ``compute_loss``, pgscore's selective one, and an independent full-logits reference written
here (each example alone, unpadded, plain cross-entropy over all its completion tokens / all completion tokens
of the step).
"""

import json

import pandas as pd
import pytest

from pgscore.student.config import TrainingConfig

PAIRS = [
    ("Was ist die Hauptstadt von Deutschland?", "Die Hauptstadt von Deutschland ist Berlin, eine große Stadt."),
    ("Nenne drei Farben.", "Rot, Grün und Blau."),
    ("Wie viele Tage hat eine Woche?", "Eine Woche hat sieben Tage: Montag bis Sonntag."),
    ("Was ist 2 plus 3?", "2 plus 3 ist 5."),
]
REL = 1e-5


def _source():
    pytest.importorskip("trl")
    from pgscore.models.base import ModelSpec
    from pgscore.student.train import resolve_base

    try:
        return resolve_base(ModelSpec.parse("tiny:smollm2-135m"))[0]
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"tiny:smollm2-135m not available: {exc}")


def _records():
    from pgscore.student.data import to_prompt_completion

    df = pd.DataFrame([{"prompt": p, "response": r} for p, r in PAIRS])
    return to_prompt_completion(df, chat=False)


def _model(source):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)


def _trainer(source, tmp_path, *, selective, freeze=False, model=None, peft_config=None):
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig

    from pgscore.student.train import freeze_input_embeddings, make_sft_trainer

    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = model or _model(source)
    if freeze:
        freeze_input_embeddings(model)
    args = SFTConfig(output_dir=str(tmp_path / f"ck-{selective}-{freeze}"), learning_rate=1e-3,
                     per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=1,
                     max_grad_norm=0.0, optim="adamw_torch", max_length=64, completion_only_loss=True,
                     seed=0, data_seed=0, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                     dataloader_num_workers=0, lr_scheduler_type="constant")
    grads = {}

    class Grab(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            for n, p in model.named_parameters():
                if p.grad is not None:
                    grads[n] = p.grad.detach().clone()

    trainer = make_sft_trainer(model, args, Dataset.from_list(_records()), tok, peft_config=peft_config,
                               selective_logits=selective)
    trainer.add_callback(Grab())
    return trainer, grads


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def _reference(trainer):
    """Full logits of the step's own micro-batches: plain cross-entropy summed over all completion tokens of
    both micro-batches / their count (the reduction gradient accumulation must reproduce).

    Computed on the trainer's model just before the optimiser step (weights not yet updated), with
    ``torch.autograd.grad`` so the trainer's ``.grad`` stay untouched. The micro-batches are recorded from
    ``training_step``. (Inside ``train()`` is where it has to be: measured, the same weights and batch give a
    0.1-0.3% different loss there than in a fresh process state, for TRL's stock path too.)
    """
    import torch
    import torch.nn.functional as F
    from transformers import TrainerCallback

    out, seen = {}, []
    step = trainer.training_step

    def recording_step(model, inputs, *a, **kw):
        seen.append({k: v.detach().clone() for k, v in inputs.items()})
        return step(model, inputs, *a, **kw)

    trainer.training_step = recording_step

    class Ref(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            model = trainer.model
            total, count = 0.0, 0
            for batch in seen:
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                shifted = batch["labels"][:, 1:]
                total = total + F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                                shifted.reshape(-1), ignore_index=-100, reduction="sum")
                count += int((shifted != -100).sum())
            total = total / count
            named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            grads = torch.autograd.grad(total, [p for _, p in named])
            out.update(loss=float(total), grads={n: g for (n, _), g in zip(named, grads)}, count=count,
                       batches=len(seen))

    trainer.add_callback(Ref())
    return out


def test_selective_logits_equal_stock_and_reference(tmp_path):
    source = _source()
    stock, g_stock = _trainer(source, tmp_path, selective=False)
    sel, g_sel = _trainer(source, tmp_path, selective=True)
    assert not stock.selective_logits_used and sel.selective_logits_used and sel.selective_logits_fallback is None
    ref = _reference(sel)
    r_stock, r_sel = stock.train(), sel.train()
    ref_loss, g_ref, n_tok = ref["loss"], ref["grads"], ref["count"]
    assert len(sel.train_dataset) == 4 and n_tok > 20 and ref["batches"] == 2
    for r in sel.train_dataset:  # completion-only masking: the prompt's tokens carry no loss
        n_prompt = len(sel.processing_class(r["prompt"], add_special_tokens=False)["input_ids"])
        assert r["labels"] == [-100] * n_prompt + r["input_ids"][n_prompt:]
    # loss: stock path vs selective vs the independent reference
    assert abs(r_sel.training_loss - r_stock.training_loss) <= REL * abs(r_stock.training_loss)
    assert abs(r_sel.training_loss - ref_loss) <= REL * abs(ref_loss)
    assert abs(r_stock.training_loss - ref_loss) <= 1e-4 * abs(ref_loss)  # guards the reference itself
    # gradients of every parameter (the tied embedding/LM head included) after the 2 accumulated micro-batches
    assert set(g_sel) == set(g_stock) == set(g_ref) and len(g_sel) > 100
    assert max(_rel(g_sel[n], g_ref[n]) for n in g_sel) <= REL  # exact: plain autograd of the full logits
    # TRL 1.16's fused CPU head (all positions, tiles recomputed in backward) is itself off the reference by up
    # to ~5% on single small tensors (measured: layers.2.input_layernorm 4.9%); only a same-step guard here
    assert max(_rel(g_stock[n], g_ref[n]) for n in g_sel) <= 0.1
    # TRL's logged metrics survive, computed on the selected logits, equal to the stock path's
    h_stock = next(h for h in stock.state.log_history if "loss" in h)
    h_sel = next(h for h in sel.state.log_history if "loss" in h)
    for key in ("mean_token_accuracy", "entropy", "num_tokens"):
        assert key in h_sel
        assert abs(h_sel[key] - h_stock[key]) <= 1e-5 * max(1.0, abs(h_stock[key])), key


def test_freeze_embeddings_selective_equals_stock(tmp_path):
    import torch

    source = _source()
    stock, g_stock = _trainer(source, tmp_path, selective=False, freeze=True)
    sel, g_sel = _trainer(source, tmp_path, selective=True, freeze=True)
    emb_before = sel.model.get_input_embeddings().weight.detach().clone()
    layer = next(n for n, _ in sel.model.named_parameters() if "layers.0." in n and n.endswith("q_proj.weight"))
    q_before = dict(sel.model.named_parameters())[layer].detach().clone()
    ref = _reference(sel)
    r_stock, r_sel = stock.train(), sel.train()
    assert abs(r_sel.training_loss - r_stock.training_loss) <= REL * abs(r_stock.training_loss)
    assert abs(r_sel.training_loss - ref["loss"]) <= REL * abs(ref["loss"])
    emb_name = next(n for n, p in sel.model.named_parameters() if p is sel.model.get_input_embeddings().weight)
    assert emb_name not in g_sel and emb_name not in g_stock  # tied: no embedding / LM-head gradient at all
    assert set(g_sel) == set(g_stock) and len(g_sel) > 100
    assert set(ref["grads"]) == set(g_sel) and max(_rel(g_sel[n], ref["grads"][n]) for n in g_sel) <= REL
    assert max(_rel(g_stock[n], ref["grads"][n]) for n in g_sel) <= 0.1
    emb = sel.model.get_input_embeddings().weight
    assert torch.equal(emb, emb_before) and emb is sel.model.get_output_embeddings().weight
    assert not torch.equal(dict(sel.model.named_parameters())[layer], q_before)  # the rest trains


def test_softcapping_and_fallbacks(tmp_path):
    """Final-logit softcapping is applied like the model's forward; PEFT models keep TRL's compute_loss."""
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig

    from pgscore.student.train import selected_head_stats, selective_logits_fallback

    source = _source()
    model = _model(source).eval()
    ids = torch.tensor([[1, 504, 3458, 314, 260, 1345, 30, 2, 2]])
    labels = ids.clone()
    labels[0, :4] = -100
    labels[0, -1] = -100
    cap = 3.0
    with torch.no_grad():
        full = model(input_ids=ids).logits[0, :-1].float()
        capped = torch.tanh(full / cap) * cap
        lab = labels[0, 1:]
        want = F.cross_entropy(capped, lab, ignore_index=-100, reduction="sum")
        model.config.final_logit_softcapping = cap
        nll, n, ent, correct = selected_head_stats(model, labels, {"input_ids": ids})
    assert int(n) == int((lab != -100).sum()) == 4
    assert abs(float(nll) - float(want)) <= REL * abs(float(want))
    lp = torch.log_softmax(capped[lab != -100], -1)
    assert abs(float(ent) - float(-(lp.exp() * lp).sum())) <= 1e-4
    assert int(correct) == int((capped[lab != -100].argmax(-1) == lab[lab != -100]).sum())
    model.config.final_logit_softcapping = None
    model.config.logit_scale = 0.5
    assert "scales its logits" in selective_logits_fallback(model)
    # LoRA: TRL's compute_loss, and the reason is recorded
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    tr, _ = _trainer(source, tmp_path, selective=True, peft_config=lora)
    assert not tr.selective_logits_used and "PEFT" in tr.selective_logits_fallback


def test_train_student_records_choices(tmp_path):
    """End to end through train_student: hyperparameters in the info file and the card."""
    from pgscore.student.train import train_student

    _source()
    df = pd.DataFrame([{"id": f"x{i}", "method": "generate", "prompt": p, "response": r, "status": "ok"}
                       for i, (p, r) in enumerate(PAIRS)])
    cfg = TrainingConfig(max_steps=1, max_length=64, per_device_batch_size=2, effective_batch_size=4,
                         save_steps=1000, freeze_embeddings=True)
    out = train_student(df, "tiny:smollm2-135m", tmp_path / "s", cfg, teacher="t", language="de")
    info = json.loads((out / "pgscore_student.json").read_text())
    hp = info["hyperparameters"]
    assert hp["freeze_embeddings"] is True and hp["selective_logits"] is True
    assert hp["selective_logits_used"] is True and hp["selective_logits_fallback"] is None
    assert hp["gradient_accumulation_steps"] == 2 and info["final_loss"] > 0
    assert '"freeze_embeddings": true' in (out / "README.md").read_text()
