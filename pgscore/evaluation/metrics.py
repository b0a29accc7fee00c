"""Pure benchmark metrics: multiple choice by log-likelihood, weighted accuracy, graded signals, bootstrap.

No model or file access here: inputs are arrays of log-likelihoods, token and character counts.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

MC_METRICS = ("acc", "acc_norm_tokens", "acc_norm_chars")


def choose_option(logprobs: Sequence[float], n_tokens: Sequence[int], n_chars: Sequence[int]) -> dict[str, int]:
    """Index of the chosen option under three rules: raw sum, per-token mean, per-character mean.

    Ties go to the first option (``argmax``), like lm-eval-harness.
    """
    lp = np.asarray(logprobs, dtype=float)
    tok = np.maximum(np.asarray(n_tokens, dtype=float), 1.0)
    ch = np.maximum(np.asarray(n_chars, dtype=float), 1.0)
    return {
        "acc": int(np.argmax(lp)),
        "acc_norm_tokens": int(np.argmax(lp / tok)),
        "acc_norm_chars": int(np.argmax(lp / ch)),
    }


def gold_probability(logprobs: Sequence[float], n_tokens: Sequence[int], gold: int) -> float:
    """Graded signal: softmax over per-token mean log-probabilities, mass on the gold option.

    Chance level is 1/len(options); unlike accuracy it moves smoothly as the model improves.
    """
    x = np.asarray(logprobs, dtype=float) / np.maximum(np.asarray(n_tokens, dtype=float), 1.0)
    x = x - x.max()
    p = np.exp(x) / np.exp(x).sum()
    return float(p[gold])


def per_token_probability(logprob: float, n_tokens: int) -> float:
    """Geometric-mean token probability of a gold string: exp(logprob / n_tokens), in [0, 1]."""
    return float(np.exp(logprob / max(int(n_tokens), 1)))


def category_accuracy(correct: Sequence[bool], categories: Sequence[str | None]) -> dict[str, float]:
    """Accuracy per category (rows with no category are dropped)."""
    df = pd.DataFrame({"c": np.asarray(correct, dtype=float), "k": list(categories)}).dropna(subset=["k"])
    return {str(k): float(v) for k, v in df.groupby("k")["c"].mean().items()}


def weighted_accuracy(correct: Sequence[bool], categories: Sequence[str | None]) -> float:
    """M-RewardBench score: the unweighted mean of the per-category accuracies (NaN when empty)."""
    per = category_accuracy(correct, categories)
    return float(np.mean(list(per.values()))) if per else float("nan")


def subset_to_category(subsets: Sequence[str], mapping: Mapping[str, Sequence[str]]) -> list[str | None]:
    """Map RewardBench subset names to their category (``SUBSET_MAPPING``); unknown subsets -> None."""
    inv = {s: cat for cat, subs in mapping.items() for s in subs}
    return [inv.get(s) for s in subsets]


def bootstrap_se(
    values: pd.DataFrame | np.ndarray,
    statistic: Callable[[np.ndarray], float] | Callable[[pd.DataFrame], float],
    n_boot: int = 1000,
    seed: int = 0,
) -> float:
    """Standard error of ``statistic`` by resampling rows with replacement (seeded, deterministic)."""
    n = len(values)
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        sample = values.iloc[idx] if isinstance(values, pd.DataFrame) else values[idx]
        stats[b] = statistic(sample)
    return float(np.nanstd(stats, ddof=1))


# ------------------------------------------------------------------ RewardBench weighted accuracy
def rewardbench_weighted_accuracy(
    correct: Sequence[float],
    subsets: Sequence[str],
    counts: Mapping[str, float],
    mapping: Mapping[str, Sequence[str]],
) -> float:
    """Upstream (allenai/reward-bench ``calculate_scores_per_section``) corpus score of M-RewardBench.

    Accuracy per subset; per category the subsets' accuracies averaged with weights ``counts``
    (``EXAMPLE_COUNTS``; math-prm counts 983 so it weighs as much as the code subsets); then the plain
    mean over *all* categories of ``mapping`` (a category without rows counts 0, as upstream does).
    """
    if len(correct) == 0:
        return float("nan")
    spec = RewardBenchSpec.build(subsets, counts, mapping)
    return float(spec.score(np.asarray(correct, dtype=float)[None, :], np.arange(len(correct))[None, :])[0])


class RewardBenchSpec:
    """Vectorised upstream weighting for bootstrap resamples: subset codes, their weights and categories."""

    def __init__(self, codes: np.ndarray, weights: np.ndarray, category: np.ndarray, n_categories: int):
        self.codes, self.weights, self.category, self.n_categories = codes, weights, category, n_categories

    @classmethod
    def build(cls, subsets: Sequence[str], counts: Mapping[str, float],
              mapping: Mapping[str, Sequence[str]]) -> "RewardBenchSpec":
        cats = list(mapping)
        names = [s for c in cats for s in mapping[c]]
        index = {s: i for i, s in enumerate(names)}
        unknown = sorted({s for s in subsets if s not in index})
        if unknown:
            raise ValueError(f"subsets not in the category mapping: {', '.join(unknown)}")
        codes = np.array([index[s] for s in subsets], dtype=np.int64)
        weights = np.array([float(counts.get(s, 0.0)) for s in names])
        category = np.array([cats.index(c) for c in cats for _ in mapping[c]], dtype=np.int64)
        return cls(codes, weights, category, len(cats))

    def score(self, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Score per resample: ``values`` (n,) or (B, n) per-example 0/1 (or graded), ``idx`` (B, n) rows."""
        n_sub = len(self.weights)
        b = idx.shape[0]
        x = values[idx] if values.ndim == 1 else np.take_along_axis(values, idx, axis=1)
        flat = (np.arange(b)[:, None] * n_sub + self.codes[idx]).ravel()
        cnt = np.bincount(flat, minlength=b * n_sub).reshape(b, n_sub)
        tot = np.bincount(flat, weights=x.ravel(), minlength=b * n_sub).reshape(b, n_sub)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)
        w = np.where(cnt > 0, self.weights[None, :], 0.0)
        num = np.zeros((b, self.n_categories))
        den = np.zeros((b, self.n_categories))
        for s in range(n_sub):
            num[:, self.category[s]] += acc[:, s] * w[:, s]
            den[:, self.category[s]] += w[:, s]
        with np.errstate(invalid="ignore", divide="ignore"):
            per_cat = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        return per_cat.mean(axis=1)
