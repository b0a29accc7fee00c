"""What a stage is: a name, the experiment sections it depends on, its outputs, and ``run(ctx)``.

A stage is data (:class:`Stage`), so the runner (``pgscore.stages.runner``) treats every stage alike:
it skips a stage whose outputs exist for the same fingerprint (``stages.json``), invalidates every later
stage when one re-runs, and records a typed :class:`StageOutcome` per stage.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pgscore.models.base import content_hash

if TYPE_CHECKING:
    from pgscore.config import Experiment
    from pgscore.results import ResultsFolder
    from pgscore.stages.context import StageContext


class Status(str, enum.Enum):
    """How a stage ended in this run."""

    DONE = "done"  # ran and wrote its outputs
    REUSED = "reused"  # outputs exist for this configuration: not run
    SKIPPED = "skipped"  # nothing to do for this experiment (e.g. no student base): not recorded as done
    FAILED = "failed"  # raised; the run stopped here

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class StageOutcome:
    """What ``Stage.run`` returns: a status (DONE or SKIPPED), a one-line note, and notes for the run."""

    status: Status
    note: str = ""
    notes: tuple[str, ...] = ()

    @classmethod
    def done(cls, note: str = "", notes: Sequence[str] = ()) -> "StageOutcome":
        return cls(Status.DONE, note, tuple(notes))

    @classmethod
    def skipped(cls, reason: str, notes: Sequence[str] = ()) -> "StageOutcome":
        return cls(Status.SKIPPED, reason, tuple(notes))


@dataclass
class StageStatus:
    """One line of a run's stage table (and of ``summary.json``)."""

    name: str
    status: str  # a Status value
    seconds: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class Stage:
    """A stage of ``pgscore run``.

    ``sections``: top-level experiment sections whose content decides whether outputs are still valid;
    ``outputs``: :data:`pgscore.results.FILES` names the stage writes (all must exist to reuse it);
    ``run``: does the work through the context; ``extra``: more fingerprint input computed from the
    experiment (e.g. a content hash of template files), None when the sections say everything.
    """

    name: str
    sections: tuple[str, ...]
    outputs: tuple[str, ...]
    run: Callable[["StageContext"], StageOutcome]
    extra: Callable[["Experiment"], Any] | None = None
    description: str = ""

    def extra_fingerprint(self, exp: "Experiment") -> Any:
        return self.extra(exp) if self.extra is not None else None

    def fingerprint(self, exp: "Experiment") -> str:
        """Hash of the stage's config sections (+ its extra input): a change re-runs the stage."""
        dump = exp.model_dump(mode="json")
        parts = [dump.get(s) for s in self.sections]
        extra = self.extra_fingerprint(exp)
        if extra is not None:
            parts.append({"extra": extra})
        return content_hash(*parts)[:16]

    def output_paths(self, results: "ResultsFolder") -> list[Path]:
        return [results.path(o) for o in self.outputs]


@dataclass
class StageBook:
    """Fingerprints of finished stages (``stages.json``): a stage re-runs when its inputs changed."""

    path: Path
    data: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> "StageBook":
        data: dict[str, str] = {}
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
                data = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
            except (json.JSONDecodeError, OSError):
                data = {}  # a torn file: every stage re-checks its outputs
        return cls(path, data)

    def is_done(self, name: str, fingerprint: str, outputs: list[Path]) -> bool:
        return self.data.get(name) == fingerprint and all(p.exists() for p in outputs)

    def mark(self, name: str, fingerprint: str) -> None:
        self.data[name] = fingerprint
        self.save()

    def forget(self, names: Sequence[str]) -> None:
        for n in names:
            self.data.pop(n, None)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)
