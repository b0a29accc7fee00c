"""Supervised fine-tuning of a student on synthetic data with TRL's ``SFTTrainer``.

Prompt-completion records (user prompt -> assistant response) so the loss covers the response only;
the student's chat template when it has one, else the plain template of :mod:`pgscore.student.template`.
Full fine-tuning, LoRA, or QLoRA (4-bit, GPU only). The result is a plain Hugging Face folder
(safetensors; LoRA adapters merged) with a model card ``README.md`` written last: a folder with a card
is finished and is skipped on re-runs. Trainer checkpoints under ``<out>/checkpoints`` resume long runs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

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
    raw_prompts: bool = False,
    on_trained: Callable[[Path, Any, Any], None] | None = None,
) -> Path:
    """Fine-tune ``base_spec`` on the synthetic rows; returns the saved student folder.

    ``raw_prompts``: prompts are used verbatim, with no chat or plain template (benchmark-format training
    pairs of a ``task-sft`` reference, scored later on the same raw prompts). ``on_trained(folder, model,
    tokenizer)`` is called once the student is saved, with the trained model still in memory (the students
    stage evaluates it there instead of loading the folder again); not called for a folder already trained."""
    cfg = cfg or TrainingConfig()
    out = Path(out_dir)
    spec = ModelSpec.parse(base_spec)
    df = select_examples(synthetic_df, cfg.examples_per_dataset, cfg.seed, cfg.balance_methods)
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
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    from pgscore.models.local import load_tokenizer

    tok = load_tokenizer(source, local_only)  # parsed once per process (the base's, for every student)
    chat = (bool(getattr(tok, "chat_template", None)) and not is_base and spec.chat_template != "plain"
            and not raw_prompts)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    # a CPU base that runs in bfloat16 (native bf16 CPUs, pgscore.models.precision) trains with bf16
    # autocast: float32 master weights and optimizer state, bf16 matmuls (a step is ~1.7x faster)
    from pgscore.models.precision import dtype_name

    cpu_bf16 = not cuda and not cfg.qlora and dtype_name(spec) == "bfloat16"
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
        optim="adamw_torch_fused",  # torch's fused AdamW (CPU too): 0.06 s a step vs 0.16 s on 94M parameters
        max_length=cfg.max_length,
        completion_only_loss=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to=[],
        bf16=bf16 or cpu_bf16,
        use_cpu=not cuda,
        activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )
    train_ds = Dataset.from_list(to_prompt_completion(df, chat, raw=raw_prompts))
    if cfg.freeze_embeddings:
        freeze_input_embeddings(model)
    with unhashed_in_memory_datasets():
        trainer = make_sft_trainer(model, args, train_ds, tok, peft_config=peft_config,
                                   selective_logits=cfg.selective_logits)
    trainer.add_callback(no_final_checkpoint())
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
    hp.update({"gradient_accumulation_steps": accum, "world_size": world, "bf16": bf16 or cpu_bf16,
               "precision": "bf16" if bf16 else "bf16 autocast (CPU)" if cpu_bf16 else "float32",
               "selective_logits_used": bool(getattr(trainer, "selective_logits_used", False)),
               "selective_logits_fallback": getattr(trainer, "selective_logits_fallback", None)})
    info = {
        "base": spec.short(), "base_spec": json.loads(spec.key()), "teacher": teacher, "language": language,
        "methods": methods, "n_examples": len(df), "per_method": int(df.groupby("method").size().min()),
        "data_hash": data_hash(df), "template": "raw" if raw_prompts else "chat" if chat else "plain", "steps": int(result.global_step),
        "final_loss": losses[-1] if losses else None, "losses": losses, "train_seconds": seconds,
        "hyperparameters": hp,
    }
    (out / INFO).write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
    (out / CARD).write_text(model_card(info), encoding="utf-8")  # last: marks the student finished
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # resume points are useless once the student is saved
    if on_trained is not None:
        trained = trainer.model if peft_config is None else None  # a LoRA student is loaded from its merged folder
        del trainer
        if trained is not None:
            on_trained(out, trained, tok)
    return out


@contextlib.contextmanager
def unhashed_in_memory_datasets():
    """TRL's SFTTrainer tokenizes its dataset with ``Dataset.map(..., fn_kwargs={"processing_class": tok})``,
    and ``datasets`` fingerprints every map by dill-hashing its arguments: the whole tokenizer, 4.4 s for
    Gemma 3's 262k-token vocabulary on 2 CPU cores, once per student (22 of the quickstart's 23.5 s of
    trainer set-up, measured with py-spy). The fingerprint only names cache files, and a dataset built
    with ``Dataset.from_list`` is in memory and writes none, so inside this block fingerprints are random
    (what ``datasets`` itself falls back to for unhashable transforms). The tokenized rows are unchanged."""
    import datasets.arrow_dataset as ad
    import datasets.fingerprint as fp

    import datasets.utils.logging as ds_logging

    modules = [m for m in (fp, ad) if hasattr(m, "update_fingerprint")]  # arrow_dataset imports it by name
    stock = [m.update_fingerprint for m in modules]
    for m in modules:
        m.update_fingerprint = lambda fingerprint, transform, transform_args: fp.generate_random_fingerprint()
    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()  # TRL's five sub-second maps per student ("Adding EOS", ...): noise
    try:
        yield
    finally:
        for m, f in zip(modules, stock):
            m.update_fingerprint = f
        if bars:
            ds_logging.enable_progress_bar()


def no_final_checkpoint():
    """A ``TrainerCallback``: transformers writes a full checkpoint (weights, optimizer state, RNG) at the
    last step whenever ``save_strategy`` is ``steps``; the finished student is saved right after and the
    checkpoints deleted, so that one is written only to be removed (~2 GB for Gemma 3 270M in float32).
    Checkpoints at multiples of ``save_steps`` (the resume points of long runs) are written as before."""
    from transformers import TrainerCallback

    class NoFinalCheckpoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps and args.save_steps and state.global_step % int(args.save_steps):
                control.should_save = False
            return control

    return NoFinalCheckpoint()


def freeze_input_embeddings(model) -> None:
    """``freeze_embeddings``: no gradient for the input embedding; with tied weights the LM head is the same
    Parameter, so it is frozen too (the Trainer's optimiser only takes parameters that require grad)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None or getattr(emb, "weight", None) is None:
        raise PgScoreError(f"freeze_embeddings: {type(model).__name__} has no input embedding to freeze")
    emb.weight.requires_grad_(False)


# --- completion-only logits -------------------------------------------------------------------------------
#
# Why it is faster: TRL 1.16's SFTTrainer projects hidden states through its fused LM head in tiles, but it
# compacts to the labelled positions only on CUDA/XPU with Triton (`trl.kernels.chunked_logprob._use_triton`);
# on CPU it scores every position of the batch (prompt and padding included: B x (T-1) rows of a 262k-word
# head for Gemma 3) and masks the prompt afterwards, and it recomputes every tile again in the backward pass.
# Here the decoder's hidden states are selected where the shifted label is not -100 *before* the LM head,
# so the head's three GEMMs (forward, grad of the hidden states, grad of the weight) and the log-softmax run
# on the response tokens only; nothing is recomputed. Same sum of token NLLs, same divisor
# (`num_items_in_batch` under gradient accumulation), so the same loss and gradients up to float32 rounding
# (tests/test_student_fast.py). Cost: the selected logits are materialised (N_selected x vocab floats).

_SCALE_ATTRS = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def selective_logits_fallback(model) -> str | None:
    """Why completion-only logits cannot be used for ``model`` (None: they can)."""
    if hasattr(model, "peft_config") or type(model).__name__.startswith("Peft"):
        return "PEFT model (TRL's compute_loss)"
    for name in ("get_decoder", "get_output_embeddings"):
        if not callable(getattr(model, name, None)):
            return f"{type(model).__name__} has no {name}()"
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except Exception as exc:  # noqa: BLE001 - some models raise instead of returning None
        return f"{type(model).__name__}: no decoder/LM head split ({type(exc).__name__})"
    if decoder is None or decoder is model or head is None or getattr(head, "weight", None) is None:
        return f"{type(model).__name__} has no decoder/LM head split"
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    scaled = [a for a in _SCALE_ATTRS if getattr(cfg, a, None) not in (None, 1, 1.0)]
    if scaled:
        return f"{type(model).__name__} scales its logits ({scaled[0]})"
    if getattr(cfg, "output_router_logits", False):
        return "MoE router aux loss (TRL's compute_loss)"
    return None


def selected_head_stats(model, labels, backbone_kwargs: dict):
    """(sum of NLL, #labelled, sum of entropy, #top-1 correct) over positions whose shifted label != -100.

    Decoder -> hidden states at labelled positions -> LM head -> final-logit softcapping (if the config has
    one, as the model's own forward applies it) -> float32 log-softmax. Only the NLL carries gradient.
    """
    import torch

    backbone_kwargs["use_cache"] = False
    hidden = model.get_decoder()(**backbone_kwargs).last_hidden_state[:, :-1]
    head = model.get_output_embeddings()
    shifted = labels[:, 1:].to(head.weight.device)
    keep = shifted != -100
    targets = shifted[keep]
    logits = head(hidden.to(head.weight.device)[keep])  # (N_selected, vocab)
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll_sum = -logp.gather(-1, targets.unsqueeze(-1)).sum()
    with torch.no_grad():  # TRL's logged metrics, on the same selected positions
        lp = logp.detach()
        entropy_sum = -(lp.exp() * lp).sum()
        correct = (lp.argmax(-1) == targets).sum()  # argmax = first maximum, as TRL's is_top1
    return nll_sum, keep.sum(), entropy_sum, correct


def add_selective_head(model) -> None:
    """Let ``model(..., pgscore_labels=labels)`` return :func:`selected_head_stats`. Going through the model's
    own ``forward`` (not its decoder directly) keeps DDP's forward bookkeeping; without the keyword the
    forward (TRL's patched one) is unchanged, so generation and saving are too."""
    import functools
    import types

    original = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, pgscore_labels=None, **kwargs):
        if pgscore_labels is None:
            return original(*args, **kwargs)
        if args:
            kwargs["input_ids"] = args[0]
        return selected_head_stats(self, pgscore_labels, kwargs)

    model.forward = types.MethodType(forward, model)


_TRAINER_CLS = None


def selective_trainer_class():
    """SFTTrainer subclass whose training loss uses completion-only logits when ``selective_logits_used``."""
    global _TRAINER_CLS
    if _TRAINER_CLS is not None:
        return _TRAINER_CLS
    import torch
    from trl import SFTTrainer

    class SelectiveLogitsSFTTrainer(SFTTrainer):
        selective_logits_used = False
        selective_logits_fallback: str | None = None

        def _selective_ok(self, inputs, return_outputs: bool) -> bool:
            return (self.selective_logits_used and not return_outputs and "labels" in inputs
                    and "shift_labels" not in inputs and self.compute_loss_func is None
                    and self.label_smoother is None and self.args.loss_type == "nll"
                    and not self.aux_loss_enabled)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self._selective_ok(inputs, return_outputs):
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            backbone = {k: v for k, v in inputs.items() if k != "labels"}
            nll_sum, n_valid, entropy_sum, n_correct = model(**backbone, pgscore_labels=inputs["labels"])
            # TRL's / transformers' causal-LM reduction: summed token NLL / num_items_in_batch (all micro-batches
            # of the optimiser step, all ranks) or, without it, / this batch's labelled tokens
            num_tokens = n_valid if num_items_in_batch is None else num_items_in_batch
            loss = nll_sum / torch.as_tensor(num_tokens, device=nll_sum.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            # logging exactly as TRL's compute_loss does, from the selected logits
            gather = self.accelerator.gather_for_metrics
            num_valid = gather(n_valid).sum()
            ent = gather(entropy_sum).sum()
            num_correct = gather(n_correct).sum()
            self._metrics[mode]["entropy"].append((ent / num_valid).item() if num_valid > 0 else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append(
                (num_correct / num_valid).item() if num_valid > 0 else 0.0)
            if mode == "train":
                if "attention_mask" in inputs:
                    n_tok = gather(inputs["attention_mask"].sum()).sum().item()
                else:
                    pos = inputs["position_ids"]
                    n_tok = gather(torch.tensor(pos.size(1), device=pos.device)).sum().item()
                self._total_train_tokens += n_tok // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    _TRAINER_CLS = SelectiveLogitsSFTTrainer
    return _TRAINER_CLS


def make_sft_trainer(model, args, train_dataset, processing_class, *, peft_config=None,
                     selective_logits: bool = True):
    """The student's SFTTrainer; ``trainer.selective_logits_used`` says whether completion-only logits are on
    (``selective_logits_fallback``: why not, when asked for but not possible)."""
    cls = selective_trainer_class()
    trainer = cls(model=model, args=args, train_dataset=train_dataset, processing_class=processing_class,
                  peft_config=peft_config)
    if not selective_logits:
        return trainer
    reason = selective_logits_fallback(trainer.model)
    if reason is None:
        from trl.kernels.chunked_logprob import _use_triton

        if _use_triton(next(trainer.model.parameters()).device):
            reason = "TRL's fused LM head already scores only labelled positions on this device"
        elif trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
            reason = "DeepSpeed/FSDP shard the LM head (TRL's compute_loss gathers it)"
    if reason is None:
        add_selective_head(trainer.model)
        trainer.selective_logits_used = True
    else:
        trainer.selective_logits_fallback = reason
    return trainer


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
