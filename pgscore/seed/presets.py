"""Column mappings for known seed corpora. ``SeedSource(preset=...)`` starts from these.

Offline ones read ``{data}`` (the shared data folder, never copied into the package); hub ones need
Hugging Face access and are loaded with ``datasets`` (streamed, stopping once quotas are met). Any hub
preset also reads a local copy in the same schema (``path:`` with the preset, no ``hf_dataset``).

Schemas are today's hub schemas (checked against the dataset cards and the paper authors'
``scripts/create_seed_dataset.py``). None of the hub presets is gated: WildChat (1M and 4.8M) needs no
access request any more; HelpSteer3, OASST2, CIDAR, Cendol v2, EuroBlocks, Magpie and Aya are open (licences
below; CIDAR's is non-commercial).
"""

from __future__ import annotations

from typing import Any

from pgscore.errors import PgScoreError
from pgscore.seed.config import SeedSource

PRESETS: dict[str, dict[str, Any]] = {
    # --- shipped with pgscore (Apache-2.0, written for pgscore) ---
    "builtin": {"path": "builtin", "kind": "pairs"},
    # --- offline data folder (permissive licenses) ---
    "vicuna80": {  # Apache-2.0; ar de es id ja en; prompts only
        "path": "{data}/vicuna80_multilingual_sift/questions_{lang}.jsonl",
        "columns": {"prompt": "text"},
        "kind": "prompts",
    },
    "vicuna80_en": {
        "path": "{data}/vicuna80_multilingual_sift/questions_en.jsonl",
        "columns": {"prompt": "text"},
        "language": "en",
        "kind": "english_prompts",
    },
    "cendol": {  # Apache-2.0; Indonesian identity/safety prompt-answer pairs
        "path": "{data}/cendol_v2_small/*.csv",
        "columns": {"prompt": "Prompt", "response": "Answer"},
        "language": "id",
        "kind": "pairs",
    },
    "seahelm_ifeval": {  # CC BY 4.0; id tl en; prompts only
        "path": "{data}/seahelm_prompts/{lang}_sea_ifeval.jsonl",
        "columns": {"prompt": "prompts.0.text"},
        "kind": "prompts",
    },
    "gsm8k": {  # MIT; English questions for Translate
        "path": "{data}/gsm8k/train.jsonl",
        "columns": {"prompt": "question"},
        "language": "en",
        "kind": "english_prompts",
    },
    # --- Hugging Face hub (need network access) ---
    "aya": {  # Apache-2.0; inputs/targets, ISO 639-3 language_code (deu, ind, jpn, arb...; Filipino is "fil" -> tl)
        "hf_dataset": "CohereLabs/aya_dataset",  # formerly CohereForAI/ (the old name redirects)
        "columns": {"prompt": "inputs", "response": "targets", "language": "language_code"},
        "kind": "pairs",
    },
    "wildchat": {  # ODC-BY; conversation = [{role, content, ...}], language = English name ("German")
        "hf_dataset": "allenai/WildChat-1M",
        "columns": {"messages": "conversation", "language": "language"},
        "kind": "pairs",
    },
    "tulu3": {  # ODC-BY; messages = [{role, content}], no language column: labelled by langid
        "hf_dataset": "allenai/tulu-3-sft-mixture",
        "columns": {"messages": "messages"},
        "language": "auto",
        "kind": "pairs",
    },
    "wildchat_4_8m": {  # ODC-BY, not gated; same row schema as WildChat-1M (conversation, language name)
        "hf_dataset": "allenai/WildChat-4.8M",
        "columns": {"messages": "conversation", "language": "language"},
        # API-call prompts that are no user instruction (the authors drop them from Japanese; we everywhere)
        "exclude_contains": {"conversation.0.content": ["EnglishTitle", "KatakanaOfTitle"]},
        "kind": "pairs",
    },
    "euroblocks": {  # utter-project synthetic SFT; conversations = [{from, value}], language = English name,
        # dataset = the row's origin: its Magpie rows are dropped (as the paper's authors do: Magpie is a
        # separate source)
        "hf_dataset": "utter-project/EuroBlocks-SFT-Synthetic-1124",
        "columns": {"messages": "conversations", "language": "language"},
        "exclude_contains": {"dataset": "Magpie"},
        "kind": "pairs",
    },
    "helpsteer3": {  # CC-BY-4.0; preference config: domain, language (lowercase English name), context
        # [{role, content}], response1, response2, overall_preference (-3..3; < 0 prefers response1)
        "hf_dataset": "nvidia/HelpSteer3",
        "hf_config": "preference",
        "columns": {"prompt": "context.0.content", "language": "language"},
        "where": {"domain": ["multilingual"]},
        "transform": "helpsteer3_preferred",
        "kind": "pairs",
    },
    "oasst2": {  # Apache-2.0; one row per message: text, role (prompter/assistant), lang (BCP-47)
        "hf_dataset": "OpenAssistant/oasst2",
        "columns": {"prompt": "text", "language": "lang"},
        "where": {"role": ["prompter"]},
        "kind": "prompts",  # the paper uses them for Respond
    },
    "cidar": {  # CC-BY-NC-4.0 (dataset card); 10,000 Arabic rows: instruction, output, index (int); no
        # language column (all Arabic). The paper's Table 6 takes 6,000 of them (Arabic pairs).
        "hf_dataset": "arbml/CIDAR",
        "columns": {"prompt": "instruction", "response": "output"},
        "language": "ar",
        "kind": "pairs",
    },
    "cendol_v2": {  # Apache-2.0; IndoNLP's Cendol instruction collection v2 (Indonesian and regional
        # languages): dataset_name, subset_name, prompt_id, template_name, dataset_key, input, output; no
        # language column: rows are labelled Indonesian and the language-ID filter drops other languages
        "hf_dataset": "indonlp/cendol_collection_v2",
        "columns": {"prompt": "input", "response": "output"},
        "language": "id",
        "kind": "pairs",
    },
    "magpie_pro": {  # Llama 3 licence terms; English: conversations = [{from, value}]; for Translate
        "hf_dataset": "Magpie-Align/Magpie-Pro-300K-Filtered",
        "columns": {"messages": "conversations"},
        "language": "en",
        "kind": "english_prompts",
    },
    "gsm8k_hub": {  # MIT; the hub copy of the offline gsm8k preset
        "hf_dataset": "openai/gsm8k",
        "hf_config": "main",
        "columns": {"prompt": "question", "response": "answer"},
        "language": "en",
        "kind": "english_prompts",
    },
}


def resolve(source: SeedSource) -> SeedSource:
    """The source with its preset's defaults filled in (explicit fields win)."""
    if not source.preset:
        if source.path is None and source.hf_dataset is None:
            if source.name in PRESETS:
                return resolve(source.model_copy(update={"preset": source.name}))
            raise PgScoreError(f"seed source {source.name!r}: give a path, an hf_dataset or a preset")
        return source
    if source.preset not in PRESETS:
        raise PgScoreError(f"seed source {source.name!r}: unknown preset {source.preset!r}; known: "
                           f"{', '.join(sorted(PRESETS))}")
    merged = dict(PRESETS[source.preset])
    explicit = source.model_dump(include=source.model_fields_set)
    if "path" in explicit and "hf_dataset" not in explicit and merged.get("hf_dataset"):
        # a local file in the hub corpus's schema: read it with the same column mapping
        merged.pop("hf_dataset")
    if "columns" in explicit:
        explicit["columns"] = {**merged.get("columns", {}), **explicit["columns"]}
    merged.update(explicit)
    merged["name"] = source.name
    return SeedSource.model_validate(merged)
