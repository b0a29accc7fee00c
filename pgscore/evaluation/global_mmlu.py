"""Global-MMLU Lite: 4-way multiple choice, 0-shot.

Formulations (``evaluation.formulation.global_mmlu_lite``):

- ``mcf`` (default, the paper's Appendix E.2 choice): lighteval's multiple-choice formulation, question and
  lettered options in the prompt, the letters scored as continuations, accuracy of the raw argmax
  (``pgscore.evaluation.mcf``; prompt identical to lighteval's, tested);
- ``cloze``: ``Question: ...\nAnswer:`` (localised words) and each option *text* scored as continuation.

Sources, in order: the SEA-HELM copy under ``data_dir()/global_mmlu_lite_seahelm`` (en, id, tl; the
option order was reshuffled by SEA-HELM, so per-example predictions differ from the hub copy while the
questions and gold answers are the same); the hub (``CohereLabs/Global-MMLU-Lite``, formerly
``CohereForAI/``, one config per language, split ``test``); then flagged stand-ins: Global-MMLU *dev* in
the hub row layout (en, ja), JMMLU (ja) and AceGPT's Arabic MMLU (ar).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pgscore.errors import DataMissingError
from pgscore.evaluation.mc import score_multiple_choice
from pgscore.evaluation.mcf import mcf_prompt
from pgscore.evaluation.registry import HubSource, HubOfflineError, Task, TaskData, load_hub, register_task
from pgscore.paths import data_dir

HUB = HubSource("CohereLabs/Global-MMLU-Lite", aliases=("CohereForAI/Global-MMLU-Lite",))
HUB_ID = HUB.repo
LETTERS = "ABCD"
# configs the hub serves (no ms, tl, vi there); tl comes from the SEA-HELM copy, ms/vi only from a local copy
HUB_LANGUAGES = ("ar", "bn", "cs", "cy", "de", "en", "es", "fr", "hi", "id", "it", "ja", "ko", "my", "pt",
                 "sw", "yo", "zh")
LOCAL_ONLY = ("ms", "tl", "vi")  # SEA-HELM has them; offered only where the copy is present
LANGUAGES = HUB_LANGUAGES + LOCAL_ONLY


def _seahelm_file(lang: str, split: str = "test") -> Path | None:
    root = data_dir(required=False)
    f = root / "global_mmlu_lite_seahelm" / f"global_mmlu_lite_{lang}_{split}.jsonl" if root else None
    return f if f is not None and f.is_file() else None

# "Question" / "Answer" words for the cloze prompt; English elsewhere
PROMPT_WORDS = {
    "en": ("Question", "Answer"), "id": ("Pertanyaan", "Jawaban"), "tl": ("Tanong", "Sagot"),
    "ja": ("質問", "答え"), "ar": ("سؤال", "الإجابة"), "de": ("Frage", "Antwort"), "es": ("Pregunta", "Respuesta"),
    "cs": ("Otázka", "Odpověď"), "fr": ("Question", "Réponse"), "zh": ("问题", "答案"), "ru": ("Вопрос", "Ответ"),
}


def mc_context(question: str, language: str) -> str:
    q, a = PROMPT_WORDS.get(language, PROMPT_WORDS["en"])
    colon = "：" if language in ("ja", "zh") else ":"
    return f"{q}{colon} {question.strip()}\n{a}{colon}"


def _example(eid: str, question: str, options: list[str], answer: str, **meta: Any) -> dict[str, Any]:
    letter = str(answer).strip().upper()
    if letter not in LETTERS:
        raise DataMissingError(f"Global-MMLU row {eid}: answer {answer!r} is not one of A-D")
    return {"example_id": eid, "question": question, "options": [str(o).strip() for o in options],
            "gold": LETTERS.index(letter), **meta}


def parse_seahelm_row(row: dict[str, Any]) -> dict[str, Any]:
    """SEA-HELM nested layout: {metadata:{sample_id,...}, prompts:[{question, option_a..d}], label}."""
    p = row["prompts"][0]
    meta = row.get("metadata", {})
    return _example(meta.get("sample_id", str(row.get("id"))), p["question"],
                    [p[f"option_{c}"] for c in "abcd"], row["label"],
                    subject=meta.get("subject"), cultural_label=meta.get("cultural_sensitivity_label"))


def parse_hub_row(row: dict[str, Any]) -> dict[str, Any]:
    """Flat hub layout: {sample_id, question, option_a..option_d, answer, subject, ...}."""
    return _example(row["sample_id"], row["question"], [row[f"option_{c}"] for c in "abcd"], row["answer"],
                    subject=row.get("subject"), cultural_label=row.get("cultural_sensitivity_label"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_mmlu_csvs(files: list[Path]) -> list[dict[str, Any]]:
    """Headerless MMLU CSVs (question, A, B, C, D, answer letter), subject = file stem."""
    out = []
    for f in sorted(files):
        subject = f.stem.removesuffix("_test").removesuffix("_dev")
        with open(f, encoding="utf-8-sig", newline="") as fh:
            for i, rec in enumerate(csv.reader(fh)):
                if len(rec) < 6:
                    continue
                out.append(_example(f"{subject}/{i}", rec[0], rec[1:5], rec[5], subject=subject))
    return out


@register_task("global_mmlu_lite")
class GlobalMMLULite(Task):
    languages = LANGUAGES
    primary_metric = "acc"
    metrics = ("acc", "acc_norm_tokens", "acc_norm_chars", "gold_prob")
    formulations = ("mcf", "cloze")
    formulation = "mcf"
    revision: str | None = None  # evaluation.hub_revisions pin

    def covers(self, language: str) -> bool:
        lang = language.split("-")[0].lower()
        return lang in HUB_LANGUAGES or (lang in LOCAL_ONLY and _seahelm_file(lang) is not None)

    def load(self, language: str, hub: bool = True, local: str | None = None) -> TaskData:
        lang = language.split("-")[0].lower()
        offline_cause = ""
        if local:  # a file in the flat hub row layout
            from pgscore.io import read_table

            return TaskData([parse_hub_row(r) for r in read_table(local).to_dict("records")],
                            source=f"local:{Path(local).name}")
        root = data_dir(required=False)
        if root is not None:
            f = root / "global_mmlu_lite_seahelm" / f"global_mmlu_lite_{lang}_test.jsonl"
            if f.is_file():
                return TaskData([parse_seahelm_row(r) for r in read_jsonl(f)],
                                source=f"local:{f.parent.name}/{f.name} (SEA-HELM, options reshuffled)")
        if hub and lang in HUB_LANGUAGES:
            try:
                rows = load_hub(HUB, lang, "test", revision=self.revision)
            except HubOfflineError as exc:  # fall back to the stand-ins below, keep the cause
                rows, offline_cause = None, f" ({exc})"
            if rows:
                return TaskData([parse_hub_row(r) for r in rows],
                                source=f"hub:{HUB_ID}/{lang}@{self.revision or HUB.revision}")
        if root is not None:
            dev = {"ja": "ja_dev_edited.jsonl", "en": "global_mmlu_dev_en.jsonl"}.get(lang)
            if dev and (root / "global_mmlu_dev_ja_en" / dev).is_file():
                f = root / "global_mmlu_dev_ja_en" / dev
                return TaskData([parse_hub_row(r) for r in read_jsonl(f)], source=f"local:global_mmlu_dev_ja_en/{dev}",
                                standin="Global-MMLU dev split (285 rows), not the Lite test set")
            if lang == "ja" and (root / "jmmlu_ja_standin").is_dir():
                return TaskData(read_mmlu_csvs(list((root / "jmmlu_ja_standin").glob("*.csv"))),
                                source="local:jmmlu_ja_standin", standin="JMMLU, not Global-MMLU Lite")
            if lang == "ar" and (root / "acegpt_mmlu_arabic_standin" / "test").is_dir():
                return TaskData(read_mmlu_csvs(list((root / "acegpt_mmlu_arabic_standin" / "test").glob("*.csv"))),
                                source="local:acegpt_mmlu_arabic_standin/test",
                                standin="AceGPT Arabic MMLU translation, not Global-MMLU Lite")
        raise DataMissingError(
            f"Global-MMLU Lite for {lang!r} is not available offline; with network access it is loaded from the "
            f"hub ({HUB_ID}, config {lang!r}, split 'test') - unset HF_HUB_OFFLINE and keep evaluation hub on"
            + offline_cause
        )

    def train_pairs(self, language, limit, seed=0, hub=True):
        """Global-MMLU Lite *dev* rows (never test) in the current formulation: context -> the gold option."""
        import numpy as np

        lang = language.split("-")[0].lower()
        f = _seahelm_file(lang, "dev")
        if f is not None:
            rows, source = [parse_seahelm_row(r) for r in read_jsonl(f)], f"local:{f.parent.name}/{f.name}"
        elif hub and lang in HUB_LANGUAGES:
            rows = [parse_hub_row(r) for r in (load_hub(HUB, lang, "dev", revision=self.revision) or [])]
            source = f"hub:{HUB_ID}/{lang}/dev"
        else:
            raise DataMissingError(f"Global-MMLU Lite dev for {lang!r} (the task-sft data) is not available offline")
        rows = [rows[i] for i in sorted(np.random.default_rng(seed).permutation(len(rows))[:limit])]
        contexts, options = self.prompts(TaskData(rows, source=source), lang)
        return [(c, o[e["gold"]]) for c, o, e in zip(contexts, options, rows)], source

    def n_requests(self, data: TaskData) -> int:
        return sum(len(e["options"]) for e in data.examples)

    def prompts(self, data: TaskData, language: str) -> tuple[list[str], list[list[str]]]:
        """(contexts, continuations) per example under the current formulation."""
        lang = language.split("-")[0].lower()
        if self.formulation == "mcf":
            built = [mcf_prompt(e["question"], e["options"], lang) for e in data.examples]
            return [q for q, _ in built], [c for _, c in built]
        return ([mc_context(e["question"], lang) for e in data.examples],
                [[" " + o for o in e["options"]] for e in data.examples])

    def score(self, model, data, language, batch_size, seed, progress=None):
        ex = data.examples
        contexts, options = self.prompts(data, language)
        df = score_multiple_choice(model, [e["example_id"] for e in ex], contexts, options,
                                   [e["gold"] for e in ex], batch_size, progress)
        df["subject"] = [e.get("subject") for e in ex]
        df["formulation"] = self.formulation
        return df
