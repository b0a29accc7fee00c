"""Supervised fine-tuning of a student on synthetic data with TRL's ``SFTTrainer``.

Prompt-completion records (user prompt -> assistant response) so the loss covers the response only;
the student's chat template when it has one, else the plain template of :mod:`pgscore.student.template`.
Full fine-tuning, LoRA, or QLoRA (4-bit, GPU only). The result is a plain Hugging Face folder
(safetensors; LoRA adapters merged) with a model card ``README.md`` written last: a folder with a card
is finished and is skipped on re-runs. Trainer checkpoints under ``<out>/checkpoints`` resume long runs.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from pgscore.errors import PgScoreError
from pgscore.models.base import ModelSpec
from pgscore.student.config import TrainingConfig
from pgscore.student.data import data_hash, select_examples, to_prompt_completion

CARD = "README.md"
INFO = "pgscore_student.json"


def is_trained(out_dir: str | Path) -> bool:
    """A student folder is finished when its model card and weights exist."""
    p = Path(out_dir)
    return (p / CARD).is_file() and (p / INFO).is_file() and any(p.glob("*.safetensors"))


def world_size() -> int:
    """Processes in this training job: ``WORLD_SIZE`` set by ``torchrun`` / ``accelerate launch`` (1 alone)."""
    import os

    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise PgScoreError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not a number") from None


def resolve_base(spec: ModelSpec) -> tuple[str, bool, bool]:
    """(from_pretrained source, local files only, is a base model without chat template) for a spec.

    ``tiny:`` and GGUF specs resolve to the local backend's converted safetensors copy (GGUF-loaded
    models cannot be saved or trained directly).
    """
    if spec.backend not in ("tiny", "hf"):
        raise PgScoreError(f"cannot fine-tune {spec.short()}: students must be local models (tiny: or hf:)")
    from pgscore.models.hf_source import resolve_source as _resolve_source  # GGUF -> safetensors

    source, local_only, extra = _resolve_source(spec)
    tm = extra.get("tiny")
    return source, local_only, bool(tm and tm.is_base)


def model_card(info: dict[str, Any]) -> str:
    """Markdown model card with the facts a reader needs to reproduce the student."""
    hp = info["hyperparameters"]
    lines = [
        "---", "library_name: transformers", "tags: [pgscore, sft, trl]", "---", "",
        f"# pgscore student: {info['base']} trained on {info.get('teacher') or 'synthetic'} data",
        "",
        "| field | value |", "|---|---|",
        f"| base model | `{info['base']}` |",
        f"| teacher | {info.get('teacher') or '-'} |",
        f"| language | {info.get('language') or '-'} |",
        f"| methods | {', '.join(info['methods'])} |",
        f"| examples | {info['n_examples']} ({info['per_method']} per method) |",
        f"| data sha256 | `{info['data_hash']}` |",
        f"| template | {info['template']} |",
        f"| steps | {info['steps']} |",
        f"| final train loss | {info['final_loss']:.4f} |" if info.get("final_loss") is not None else "| final train loss | - |",
        f"| train seconds | {info['train_seconds']:.1f} |",
        "", "## Hyperparameters", "", "```json", json.dumps(hp, indent=1, sort_keys=True), "```", "",
        "Trained with TRL SFTTrainer (loss on the response only) by pgscore "
        "(Polyglot Score, Miranda, Vulić, Korhonen 2026, arXiv 2604.11290).", "",
    ]
    return "\n".join(lines)


def train_student(
    synthetic_df: pd.DataFrame,
    base_spec: ModelSpec | str | dict,
    out_dir: str | Path,
    cfg: TrainingConfig | None = None,
    *,
    teacher: str | None = None,
    language: str | None = None,
) -> Path:
    """Fine-tune ``base_spec`` on the synthetic rows; returns the saved student folder."""
    cfg = cfg or TrainingConfig()
    out = Path(out_dir)
    spec = ModelSpec.parse(base_spec)
    df = select_examples(synthetic_df, cfg.examples_per_dataset, cfg.seed)
    if is_trained(out):
        done = json.loads((out / INFO).read_text(encoding="utf-8"))
        if done.get("data_hash") != data_hash(df):
            raise PgScoreError(f"{out} holds a student trained on different data; remove it or choose another --out")
        return out
    if cfg.qlora:
        import torch

        if not torch.cuda.is_available():
            raise PgScoreError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit); use --lora or full fine-tuning on CPU")
    world = world_size()  # before any model loads: a bad batch split fails at once
    if world > 1 and cfg.effective_batch_size % (cfg.per_device_batch_size * world):
        raise PgScoreError(f"effective_batch_size {cfg.effective_batch_size} is not a multiple of per_device_batch_size "
                           f"{cfg.per_device_batch_size} x {world} processes")
    methods = sorted(df["method"].unique())
    source, local_only, is_base = resolve_base(spec)

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    chat = bool(getattr(tok, "chat_template", None)) and not is_base and spec.chat_template != "plain"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    load_kw: dict[str, Any] = {"local_files_only": local_only,
                               "dtype": torch.bfloat16 if bf16 else torch.float32}
    if cfg.qlora:
        from transformers import BitsAndBytesConfig

        load_kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float16)
    # Seed before the model and any adapter exist: LoRA's random init (and anything else drawn before the
    # Trainer seeds) is then the same in every process and in a single-process run of the same config.
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(source, **load_kw)
    peft_config = None
    if cfg.lora or cfg.qlora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")

    accum = max(1, cfg.effective_batch_size // (cfg.per_device_batch_size * world))
    ckpt_dir = out / "checkpoints"
    args = SFTConfig(
        output_dir=str(ckpt_dir),
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps else -1,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler,
        optim="adamw_torch",
        max_length=cfg.max_length,
        completion_only_loss=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to=[],
        bf16=bf16,
        use_cpu=not cuda,
        activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )
    train_ds = Dataset.from_list(to_prompt_completion(df, chat))
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tok,
                         peft_config=peft_config)
    resume = ckpt_dir.is_dir() and any(ckpt_dir.glob("checkpoint-*"))
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - t0

    tmp = out / ".final.tmp"
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    if peft_config is None:
        trainer.save_model(str(tmp))  # gathers DDP/FSDP weights; writes on the main process only
    elif main:
        _merge_adapter(trainer, source, local_only, out, cfg).save_pretrained(tmp, safe_serialization=True)
    if not main:
        return out
    tok.save_pretrained(tmp)
    for f in tmp.iterdir():
        if f.name != "training_args.bin":
            f.replace(out / f.name)
    shutil.rmtree(tmp, ignore_errors=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    hp = cfg.model_dump()
    hp.update({"gradient_accumulation_steps": accum, "world_size": world, "bf16": bf16})
    info = {
        "base": spec.short(), "base_spec": json.loads(spec.key()), "teacher": teacher, "language": language,
        "methods": methods, "n_examples": len(df), "per_method": int(df.groupby("method").size().min()),
        "data_hash": data_hash(df), "template": "chat" if chat else "plain", "steps": int(result.global_step),
        "final_loss": losses[-1] if losses else None, "losses": losses, "train_seconds": seconds,
        "hyperparameters": hp,
    }
    (out / INFO).write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
    (out / CARD).write_text(model_card(info), encoding="utf-8")  # last: marks the student finished
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # resume points are useless once the student is saved
    return out


def _merge_adapter(trainer, source: str, local_only: bool, out: Path, cfg: TrainingConfig):
    """LoRA: merge into the trained weights. QLoRA: save the adapter, merge into a full-precision base."""
    adapter_dir = out / "adapter"
    trainer.model.save_pretrained(adapter_dir)
    if not cfg.qlora:
        return trainer.model.merge_and_unload()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, dtype=torch.bfloat16)
    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
