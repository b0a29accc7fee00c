"""SFT data from a synthetic table: keep good rows, balance methods, hash, format for TRL (pure pandas)."""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from pgscore.errors import PgScoreError
from pgscore.student.template import plain_prompt


def select_examples(df: pd.DataFrame, per_dataset: int | None, seed: int = 0,
                    balance_methods: bool = True) -> pd.DataFrame:
    """Rows with status ok and non-empty prompt/response, subsampled to equal counts per method.

    Each method gets ``min(smallest method count, per_dataset // n_methods)`` rows (the paper: 10k
    examples per dataset, equal samples per method). Without a ``method`` column all rows form one group.
    ``balance_methods=False``: every usable row (the first ``per_dataset`` after a seeded shuffle), whatever
    the method mix; for teachers whose methods fail unevenly, where balancing would keep only a few rows.
    """
    for col in ("prompt", "response"):
        if col not in df:
            raise PgScoreError(f"synthetic data lacks a {col!r} column (has: {', '.join(map(str, df.columns))})")
    d = df
    if "status" in d:
        d = d[d["status"].fillna("ok") == "ok"]
    d = d[d["prompt"].fillna("").str.strip().ne("") & d["response"].fillna("").str.strip().ne("")]
    if d.empty:
        raise PgScoreError("no usable synthetic rows (status ok with a prompt and a response)")
    d = d.assign(method=d["method"] if "method" in d else "all")
    if not balance_methods:
        if per_dataset is not None and len(d) > per_dataset:
            d = d.sample(n=per_dataset, random_state=seed)
        return d.sort_values(["method"] + (["id"] if "id" in d else [])).reset_index(drop=True)
    groups = {m: g for m, g in d.groupby("method", sort=True)}
    n = min(len(g) for g in groups.values())
    if per_dataset is not None:
        n = min(n, max(1, per_dataset // len(groups)))
    parts = [g.sample(n=n, random_state=seed) if len(g) > n else g for g in groups.values()]
    return pd.concat(parts).sort_values(["method"] + (["id"] if "id" in d else [])).reset_index(drop=True)


def data_hash(df: pd.DataFrame) -> str:
    """sha256 over the (prompt, response) pairs in row order: identifies the exact training data."""
    h = hashlib.sha256()
    for p, r in zip(df["prompt"], df["response"]):
        h.update(str(p).encode())
        h.update(b"\x1f")
        h.update(str(r).encode())
        h.update(b"\x1e")
    return h.hexdigest()


def to_prompt_completion(df: pd.DataFrame, chat: bool, raw: bool = False) -> list[dict[str, Any]]:
    """TRL prompt-completion records: conversational (the model's chat template), plain-template strings, or
    (``raw``) the prompt and completion verbatim.

    Either way TRL computes the loss on the completion (the response) only.
    """
    if raw:
        return [{"prompt": str(p), "completion": str(r)} for p, r in zip(df["prompt"], df["response"])]
    if chat:
        return [{"prompt": [{"role": "user", "content": str(p)}],
                 "completion": [{"role": "assistant", "content": str(r)}]}
                for p, r in zip(df["prompt"], df["response"])]
    return [{"prompt": plain_prompt(str(p)), "completion": str(r).strip()} for p, r in zip(df["prompt"], df["response"])]
