"""A small benchmark registry (lighteval style): ``@register_task("mgsm")`` on a :class:`Task` subclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import pandas as pd

from pgscore.errors import DataMissingError, PgScoreError

_TASKS: dict[str, type["Task"]] = {}


@dataclass
class TaskData:
    """Examples for one task x language, and where they came from."""

    examples: list[dict[str, Any]]
    source: str  # e.g. "local:mgsm/mgsm_de.tsv" or "hub:juletxara/mgsm"
    standin: str | None = None  # why this is not the real benchmark (None = the real one)
    extra: dict[str, Any] = field(default_factory=dict)  # few-shot exemplars and similar


class Task:
    """A benchmark: which languages it covers, how to load them and how to score a model.

    ``score`` returns one row per example with at least ``example_id``, the primary metric column
    (0/1) and ``gold_prob`` (the graded signal in [0, 1]); an optional ``category`` column makes the
    benchmark score a mean of per-category means.
    """

    name: ClassVar[str]
    languages: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]

    def covers(self, language: str) -> bool:
        return language.split("-")[0].lower() in self.languages

    def load(self, language: str, hub: bool = True, local: str | None = None) -> TaskData:  # pragma: no cover
        raise NotImplementedError

    def score(self, model, data: TaskData, language: str, batch_size: int, seed: int,
              progress: Callable[[int], None] | None = None) -> pd.DataFrame:  # pragma: no cover
        raise NotImplementedError

    def train_pairs(self, language: str, limit: int, seed: int = 0, hub: bool = True) -> tuple[list[tuple[str, str]], str]:
        """(up to ``limit`` (prompt, completion) pairs from the benchmark's own *training* split in the current
        formulation, where they come from): the ``task-sft`` reference is the base tuned on them. Never
        test items. Benchmarks without a training split raise DataMissingError."""
        raise DataMissingError(f"{self.name} has no training split for a task-sft reference")

    def n_requests(self, data: TaskData) -> int:
        """Model calls ``score`` will make (for the progress bar)."""
        return len(data.examples)

    # prompt formulations this task offers (first = default); the runner sets ``formulation``
    formulations: ClassVar[tuple[str, ...]] = ("default",)
    formulation: str = "default"
    generate: bool = True  # False: skip generation (graded signal only), where the task supports it

    def set_formulation(self, formulation: str | None) -> None:
        if formulation is None:
            self.formulation = self.formulations[0]
            return
        if formulation not in self.formulations:
            raise PgScoreError(f"{self.name}: unknown formulation {formulation!r}; choose one of "
                               f"{', '.join(self.formulations)}")
        self.formulation = formulation

    def score_matrix(self, df: pd.DataFrame, column: str, idx):
        """Benchmark score of per-example ``column`` for each row of resample indices ``idx`` (B, n):
        the plain mean by default (tasks with a weighted corpus metric override this)."""
        import numpy as np

        x = df[column].to_numpy(dtype=float)
        return np.nanmean(x[idx], axis=1)

    def corpus_score(self, df: pd.DataFrame, column: str) -> float:
        """The benchmark score of a per-example table (the same rule as ``score_matrix``)."""
        import numpy as np

        if df.empty or column not in df or df[column].isna().all():
            return float("nan")
        return float(self.score_matrix(df, column, np.arange(len(df))[None, :])[0])


def register_task(name: str):
    """Class decorator adding a task to the registry under ``name``."""

    def deco(cls: type[Task]) -> type[Task]:
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def _ensure_builtin() -> None:
    from pgscore.evaluation import global_mmlu, m_rewardbench, mgsm  # noqa: F401


def get_task(name: str) -> Task:
    _ensure_builtin()
    if name not in _TASKS:
        raise PgScoreError(f"unknown benchmark {name!r}; known: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]()


def task_names() -> list[str]:
    _ensure_builtin()
    return sorted(_TASKS)


def batched(items: Sequence, size: int):
    for i in range(0, len(items), max(size, 1)):
        yield items[i : i + size]


_HUB_OK: bool | None = None


def hub_available() -> bool:
    """Whether the Hugging Face hub can be reached (offline env vars, then a DNS probe; cached)."""
    global _HUB_OK
    import os
    import socket

    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    if _HUB_OK is None:
        try:
            socket.getaddrinfo("huggingface.co", 443)
            _HUB_OK = True
        except OSError:
            _HUB_OK = False
    return _HUB_OK


@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the hub: the current repository name, the revision read, old names.

    ``revision`` is what gets passed to ``datasets.load_dataset``; it can be pinned per benchmark with
    ``evaluation.hub_revisions`` (a commit sha). ``aliases`` are tried, in order, only when the current name
    does not exist (renamed organisations such as ``CohereForAI`` -> ``CohereLabs``).
    """

    repo: str
    revision: str = "main"
    aliases: tuple[str, ...] = ()


class HubError(PgScoreError):
    """The hub answered but the dataset cannot be read as asked (one line: what and how to fix it)."""


class HubGatedError(HubError):
    pass


class HubScriptError(HubError):
    pass


class HubConfigError(HubError):
    pass


class HubSplitError(HubError):
    pass


class HubNotFoundError(HubError):
    pass


class HubOfflineError(DataMissingError):
    """The hub could not be reached (no network, offline mode): callers may fall back to local copies."""


def classify_hub_error(exc: BaseException, repo: str, name: str | None, split: str, revision: str | None) -> PgScoreError:
    """Map an exception raised by ``datasets.load_dataset`` to one of pgscore's one-line hub errors."""
    msg = " ".join(str(exc).split())
    where = f"{repo}" + (f" (config {name!r}" if name else " (") + f", split {split!r}, revision {revision or 'main'!r})"
    low = msg.lower()
    if isinstance(exc, ConnectionError) or "couldn't reach" in low or "offline" in low or type(exc).__name__ in (
            "OfflineModeIsEnabled", "ConnectError", "ConnectTimeout", "TimeoutException"):
        return HubOfflineError(f"hub unreachable for {where}: {msg[:200]}; check the network or unset HF_HUB_OFFLINE")
    if "gated" in low:
        return HubGatedError(f"{repo} is gated on the hub: accept its terms on https://huggingface.co/datasets/{repo} "
                             "and log in (`hf auth login` or HF_TOKEN)")
    if "dataset scripts are no longer supported" in low or "trust_remote_code" in low:
        return HubScriptError(f"{repo} is a script-only dataset, which datasets>=4 cannot load; use a parquet "
                              "revision (evaluation.hub_revisions) or a local copy in its schema (--data)")
    if "builderconfig" in low and "not found" in low or "config name is missing" in low:
        return HubConfigError(f"{where}: no such config; {msg[:240]}")
    if "unknown split" in low or "bad split" in low:
        return HubSplitError(f"{where}: no such split; {msg[:240]}")
    if "revision" in low and ("doesn't exist" in low or "not found" in low):
        return HubNotFoundError(f"{where}: revision not found; {msg[:200]}")
    if "doesn't exist on the hub" in low or "cannot be accessed" in low or isinstance(exc, FileNotFoundError):
        return HubNotFoundError(f"{repo} not found on the hub (or private): {msg[:200]}")
    return HubError(f"loading {where} failed: {type(exc).__name__}: {msg[:240]}")


def load_hub(path: str | HubSource, name: str | None, split: str, revision: str | None = None):
    """``datasets.load_dataset`` -> list of row dicts; ``None`` when the hub is not reachable at all
    (offline env vars, no DNS) or ``datasets`` is missing. A failure with the hub reachable raises the
    matching ``HubError`` (gated, script-only, config, split, not found) or ``HubOfflineError``; a
    renamed repository is retried under its aliases."""
    src = path if isinstance(path, HubSource) else HubSource(str(path))
    if not hub_available():
        return None
    try:
        import datasets
    except ModuleNotFoundError:
        return None
    rev = revision or src.revision
    last: PgScoreError | None = None
    for repo in (src.repo, *src.aliases):
        try:
            ds = datasets.load_dataset(repo, name, split=split, revision=rev)
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
            last = classify_hub_error(exc, repo, name, split, rev)
            if isinstance(last, HubNotFoundError) and "revision" not in str(last):
                continue  # renamed organisation: try the old name
            raise last from None
        return [dict(r) for r in ds]
    assert last is not None
    raise last
