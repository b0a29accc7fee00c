"""Response perplexity under a *base* LM: exp(mean NLL of the response tokens given the prompt).

Per example, only response tokens count and padding never does (the backend's ``loglikelihood``
scores each ``(context, continuation)`` pair exactly, batching by length). The dataset figure is the
mean over examples, with the median alongside (perplexity is heavy-tailed). Pairs longer than the
model's window are cut on the left (context first) by the backend; they are flagged and counted.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

from pgscore.models.base import ContinuationScore, LanguageModel

#: how the prompt becomes the context; the response follows it directly
DEFAULT_TEMPLATE = "{prompt}\n\n"
#: named templates for ``metrics.perplexity_template``. ``paper``: prompt and response concatenated with no
#: separator, as the authors' ``scripts/get_intrinsic_metrics.py`` feeds them to the base model.
TEMPLATES = {"default": DEFAULT_TEMPLATE, "paper": "{prompt}"}
ProgressFn = Callable[[int], None]


def resolve_template(template: str | None) -> str:
    """A template name (``default``, ``paper``) or a literal template holding ``{prompt}``."""
    if template is None:
        return DEFAULT_TEMPLATE
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{prompt}" not in template:
        from pgscore.errors import PgScoreError

        raise PgScoreError(f"metrics.perplexity_template {template!r} has no {{prompt}} and is not one of "
                           f"{', '.join(TEMPLATES)}")
    return template


@dataclass(frozen=True)
class ExamplePerplexity:
    perplexity: float  # NaN when the response has no token
    mean_nll: float
    n_tokens: int
    truncated: bool


def context_for(prompt: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The context string for a prompt (``{prompt}`` is replaced literally; other braces are kept;
    a template name from :data:`TEMPLATES` is looked up first)."""
    return resolve_template(template).replace("{prompt}", prompt)


def from_score(score: ContinuationScore) -> ExamplePerplexity:
    """Per-example perplexity from a continuation score."""
    if score.n_tokens <= 0:
        return ExamplePerplexity(math.nan, math.nan, 0, score.truncated)
    nll = -score.logprob / score.n_tokens
    ppl = math.exp(nll) if nll < 700 else math.inf
    return ExamplePerplexity(ppl, nll, score.n_tokens, score.truncated)


def response_perplexity(
    model: LanguageModel,
    prompts: Sequence[str],
    responses: Sequence[str],
    template: str = DEFAULT_TEMPLATE,
    chunk_size: int = 256,
    progress: ProgressFn | None = None,
) -> list[ExamplePerplexity]:
    """Perplexity of each response given its prompt, in chunks of ``chunk_size`` pairs (progress per chunk)."""
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses differ in length")
    out: list[ExamplePerplexity] = []
    for s in range(0, len(prompts), chunk_size):
        reqs = [(context_for(p, template), r) for p, r in zip(prompts[s : s + chunk_size], responses[s : s + chunk_size])]
        out += [from_score(sc) for sc in model.loglikelihood(reqs)]
        if progress:
            progress(len(reqs))
    return out


@dataclass(frozen=True)
class PerplexitySummary:
    mean: float
    median: float
    n: int  # examples with a defined perplexity
    n_truncated: int
    n_undefined: int  # empty responses


def summarize(values: Sequence[ExamplePerplexity]) -> PerplexitySummary:
    """Mean and median over examples with a defined perplexity; counts of truncated and undefined ones."""
    good = [v.perplexity for v in values if not math.isnan(v.perplexity)]
    return PerplexitySummary(
        mean=statistics.fmean(good) if good else math.nan,
        median=statistics.median(good) if good else math.nan,
        n=len(good),
        n_truncated=sum(v.truncated for v in values),
        n_undefined=len(values) - len(good),
    )
