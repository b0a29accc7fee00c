"""``pgscore run EXPERIMENT.yaml``: kept as the import path of the run's entry points.

The stages live in :mod:`pgscore.stages` (stages as data, the stage context, the runner); this module
re-exports what callers use: ``run_experiment``, ``cached_loader``, ``RunResult``, ``StageStatus``,
``STAGES`` (stage names), ``SEED_SFT``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pgscore.stages.base import StageStatus
from pgscore.stages.builtin import STAGE_NAMES as STAGES
from pgscore.stages.runner import RunResult, run_experiment
from pgscore.stages.students import SEED_SFT

__all__ = ["STAGES", "SEED_SFT", "RunResult", "StageStatus", "cached_loader", "run_experiment"]


def cached_loader(results_dir: Path, stage: str) -> Callable[[Any], Any]:
    """A ``spec -> LanguageModel`` loader whose models serve repeated calls from the folder's run ledger
    (a :class:`~pgscore.stages.context.StageContext` of its own: each spec is loaded once)."""
    from pgscore.stages.context import StageContext

    return StageContext(None, results_dir).loader(stage)
