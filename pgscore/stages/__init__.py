"""The stages of ``pgscore run`` as data (issue 13).

- :mod:`pgscore.stages.base`: ``Stage`` (name, config sections, outputs, ``run(ctx)``), ``StageOutcome``,
  ``Status``, ``StageBook`` (``stages.json``)
- :mod:`pgscore.stages.context`: ``StageContext`` (models loaded once per run, ledger-wrapped), ``RunLock``
- :mod:`pgscore.stages.builtin`: the six stages, ``STAGES``
- :mod:`pgscore.stages.students`: the students stage (train, reference, evaluate; per student base)
- :mod:`pgscore.stages.runner`: ``run_stages``, ``run_experiment``
- :mod:`pgscore.stages.validate`: checks before the first stage
"""

from pgscore.stages.base import Stage, StageBook, StageOutcome, StageStatus, Status
from pgscore.stages.context import RunLock, StageContext

__all__ = ["Stage", "StageBook", "StageContext", "StageOutcome", "StageStatus", "Status", "RunLock"]
