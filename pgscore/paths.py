"""Where things live: shared benchmark/seed data, the model cache, packaged resources."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from pgscore.errors import DataMissingError

PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(required: bool = True) -> Path | None:
    """The offline data root (index: its README.md).

    Order: $PGSCORE_DATA_DIR, then ``../shared/data`` next to the current directory or the repository.
    """
    candidates = []
    if os.environ.get("PGSCORE_DATA_DIR"):
        candidates.append(Path(os.environ["PGSCORE_DATA_DIR"]))
    candidates += [Path.cwd() / ".." / "shared" / "data", PACKAGE_DIR.parent.parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if required:
        raise DataMissingError(
            "offline data folder not found: set PGSCORE_DATA_DIR to the folder holding mgsm/, gsm8k/, ... "
            "(default ../shared/data)"
        )
    return None


def cache_dir() -> Path:
    """pgscore's cache (converted models, etc.): $PGSCORE_CACHE or ~/.cache/pgscore."""
    p = Path(os.environ.get("PGSCORE_CACHE", Path.home() / ".cache" / "pgscore"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def read_pickle_cache(path: Path) -> Any:
    """The object :func:`write_pickle_cache` left at ``path``, or None when it is absent, damaged or was
    written by another Python or library version (the caller then rebuilds it: these caches only save time)."""
    import pickle

    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception:
        return None


def write_pickle_cache(path: Path, obj: Any) -> None:
    """Pickle ``obj`` to ``path`` through a private temporary file renamed into place (a concurrent reader
    sees the old file or the new one, never half of one); a failure is ignored, as a missing cache is."""
    import pickle

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except Exception:
        pass


def resource(*parts: str) -> Path:
    """A file shipped inside the package (pgscore/resources/...)."""
    return Path(str(resources.files("pgscore").joinpath("resources", *parts)))
