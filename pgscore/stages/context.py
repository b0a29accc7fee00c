"""The stage context: what every stage (and every CLI verb) gets to do its work.

``StageContext(exp, results)`` holds the experiment, the :class:`~pgscore.results.ResultsFolder`, the
console, the run ledger and the models of the run (contract 4): ``ctx.model(spec, stage=...)`` loads a
spec once per run (through :func:`pgscore.engine.load_engine_model`, so an ``engine:`` section puts it on
Ray) and hands it out wrapped by :class:`pgscore.ledger.CachedModel`, labelled with the stage, so the
same Gemma 3 270M serves as teacher, perplexity model and student base without a second load, and
every call of every stage lands in ``ledger.sqlite``. ``ctx.loader(stage)`` is the same as a
``spec -> LanguageModel`` callable for stage functions that take ``load=``.

:class:`RunLock` keeps two runs out of one results folder (``run.lock`` holds the pid of its holder; a
lock left by a killed run is taken over).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rich.console import Console

from pgscore.errors import PgScoreError
from pgscore.results import ResultsFolder

if TYPE_CHECKING:
    from pgscore.config import Experiment
    from pgscore.ledger import Ledger
    from pgscore.models.base import LanguageModel, ModelSpec


def local_model_identity(spec: "ModelSpec") -> str | None:
    """For a model in a local folder or file (``hf:/path``), a fingerprint of its files (names, sizes,
    modification times), so a student retrained at the same path never gets the old model's cached
    results. None for hub ids, servers and tiny models (their spec names them exactly)."""
    if spec.backend != "hf":
        return None
    p = Path(spec.model).expanduser()
    if not p.exists():
        return None
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and "checkpoint-" not in str(f))
    parts = []
    for f in files:
        st = f.stat()
        parts.append(f"{f.relative_to(p) if p.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns}")
    from pgscore.models.base import content_hash

    return content_hash(spec.key(), parts)


class StageContext:
    """Experiment + results folder + console + ledger + the run's models, shared by all stages."""

    def __init__(self, exp: "Experiment | None", results: ResultsFolder | str | Path, console: Console | None = None,
                 *, loader: Callable[[Any], "LanguageModel"] | None = None) -> None:
        self.exp = exp
        self.results = results if isinstance(results, ResultsFolder) else ResultsFolder(results)
        self.console = console or Console()
        self.notes: list[str] = []
        self._load = loader  # spec -> LanguageModel (tests); default: pgscore.engine.load_engine_model
        self._ledger: Ledger | None = None
        self._models: dict[str, LanguageModel] = {}  # spec key -> loaded model (unwrapped), once per run
        self._shared: set[str] | None = None
        self.loads: list[str] = []  # spec short names in load order (what was loaded, once each)

    @classmethod
    def for_folder(cls, folder: str | Path, console: Console | None = None) -> "StageContext":
        """A context for a CLI verb that works on a results folder without an experiment."""
        return cls(None, folder, console)

    # ---- the run ledger --------------------------------------------------------------------------
    @property
    def ledger(self) -> "Ledger":
        if self._ledger is None:
            from pgscore.ledger import Ledger

            self._ledger = Ledger(self.results.root)
        return self._ledger

    # ---- models (contract 4) ---------------------------------------------------------------------
    @property
    def shared_specs(self) -> set[str] | None:
        """Keys of the specs the experiment names (teachers, metric models, student bases, references):
        loaded once and kept for the whole run. Other models (trained students) are loaded on demand and
        freed by whoever closes them. None (no experiment: a CLI verb) = share every spec."""
        if self.exp is None:
            return None
        if self._shared is None:
            from pgscore.models.base import ModelSpec
            from pgscore.stages.validate import experiment_models

            specs = [spec for _, spec in experiment_models(self.exp)]
            try:  # the perplexity model when it is not named (metrics.perplexity_model: student, no student)
                from pgscore.metrics.measure import perplexity_targets

                specs.append(perplexity_targets(self.exp.metrics, self.exp.student)[1])
            except (ImportError, AttributeError):
                pass
            self._shared = {ModelSpec.parse(s).key() for s in specs if s is not None}
        return self._shared

    def _load_spec(self, spec: "ModelSpec", stage: str) -> "LanguageModel":
        if self._load is not None:
            return self._load(spec)
        from pgscore.engine import load_engine_model

        return load_engine_model(spec, self.exp.engine if self.exp is not None else None, stage=stage)

    def _raw_model(self, spec: "ModelSpec", stage: str) -> tuple["LanguageModel", bool]:
        """(model, shared): a shared spec's one loaded model, else a fresh load."""
        key = spec.key()
        shared = self.shared_specs is None or key in self.shared_specs
        if not shared:
            self.loads.append(spec.short())
            return self._load_spec(spec, stage), False
        if key not in self._models:
            self._models[key] = self._load_spec(spec, stage)
            self.loads.append(spec.short())
        return self._models[key], True

    def model(self, spec: Any, stage: str, chunk_size: int = 64) -> "LanguageModel":
        """The model ``spec`` names (loaded once per run when the experiment names it), wrapped by the
        ledger under ``stage``. Closing the wrapper of a shared model leaves the model open for later stages."""
        from pgscore.ledger import CachedModel
        from pgscore.models.base import ModelSpec

        if isinstance(spec, CachedModel):
            return spec
        if not isinstance(spec, (str, dict, ModelSpec)):  # an already loaded LanguageModel
            return CachedModel(spec, self.ledger, stage=stage, chunk_size=chunk_size)
        spec = ModelSpec.parse(spec)
        model, shared = self._raw_model(spec, stage)
        return CachedModel(model, self.ledger, stage=stage, chunk_size=chunk_size,
                           identity=local_model_identity(spec), owns_model=not shared)

    def loader(self, stage: str, chunk_size: int = 64) -> Callable[[Any], "LanguageModel"]:
        """``spec -> LanguageModel`` for stage functions that take ``load=`` (synthesize, run_measure, ...)."""
        return lambda spec: self.model(spec, stage=stage, chunk_size=chunk_size)

    def shared_loader(self, stage: str) -> Callable[[Any], "LanguageModel"]:
        """Like :meth:`loader` but the models come unwrapped (still loaded once per run), for stage functions
        that wrap them in the ledger themselves under finer labels (``run_measure``: ``measure.perplexity``,
        ``measure.judge``)."""
        from pgscore.models.base import ModelSpec

        return lambda spec: self._raw_model(ModelSpec.parse(spec), stage)[0]

    def forget_model(self, spec: Any) -> None:
        """Drop a loaded model (e.g. before retraining the folder it was loaded from)."""
        from pgscore.models.base import ModelSpec

        m = self._models.pop(ModelSpec.parse(spec).key(), None)
        if m is not None:
            m.close()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def close(self) -> None:
        for m in self._models.values():
            try:
                m.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._models.clear()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def __enter__(self) -> "StageContext":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- lock
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``run.lock`` in a results folder: JSON with the holder's pid, host and start time.

    Acquire refuses (one-line :class:`PgScoreError`) while a live process on this host holds it; a lock
    whose holder is gone (killed run) is taken over. Created with O_EXCL, so two runs starting together
    cannot both get it. Locks held from another host are respected unless older than ``stale_after_s``.
    """

    def __init__(self, path: str | Path, stale_after_s: float = 7 * 24 * 3600) -> None:
        self.path = Path(path)
        self.stale_after_s = stale_after_s
        self.held = False

    def _holder(self) -> dict | None:
        try:
            info = json.loads(self.path.read_text())
            return info if isinstance(info, dict) else {}
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError):
            return {}  # torn or empty: treated as stale

    def _stale(self, info: dict) -> bool:
        pid, host = info.get("pid"), info.get("host")
        if not isinstance(pid, int):
            return True
        if host not in (None, socket.gethostname()):
            return time.time() - float(info.get("started", 0)) > self.stale_after_s
        return pid != os.getpid() and not _alive(pid)

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self._holder()
                if info is None:
                    continue  # released in between: try again
                if info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
                    raise PgScoreError(f"{self.path.parent} is already locked by this process")
                if not self._stale(info):
                    raise PgScoreError(
                        f"results folder {self.path.parent} is in use by another pgscore run (pid {info.get('pid')} "
                        f"on {info.get('host')}); wait for it to finish, or delete {self.path} if that run is gone")
                # stale: take it over (replace atomically, then re-check that we won)
                tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
                tmp.write_text(payload)
                tmp.replace(self.path)
                if (self._holder() or {}).get("pid") == os.getpid():
                    self.held = True
                    return self
                continue
            with os.fdopen(fd, "w") as f:
                f.write(payload)
            self.held = True
            return self
        raise PgScoreError(f"could not lock {self.path}: another run keeps taking it")

    def release(self) -> None:
        if self.held and (self._holder() or {}).get("pid") == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
