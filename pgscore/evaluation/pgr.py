"""Performance Gap Recovered: PGR = (student - base) / (reference - base), as the paper computes it.

Pure functions over numbers and per-example arrays; no model or file access.

- PGR is a number whenever reference > base, however small the gap (the paper's Table 12 has values
  like -2.1 and 3.1); reference <= base, no reference, or a missing score leave it NaN with a note
  starting ``undefined:``.
- Every PGR carries a seeded paired bootstrap: examples are resampled with the same indices for student,
  base and reference (they answered the same items), and trials are resampled too where a group has
  several. ``pgr_low``/``pgr_high`` are the percentile 95% interval, ``pgr_se`` the bootstrap SD.
- ``pgr_reliable``: the reference-base gap is at least ``k`` (default 2) bootstrap SEs of that gap.
  Unreliable PGRs keep their value; ``scoring.pgr_guard: strict`` blanks them later (scoring.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from pgscore.evaluation.metrics import bootstrap_se

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (values (n,), idx (B, n)) -> scores (B,)


def mean_score(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.nanmean(values[idx], axis=1)


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pgr_value(student: float | None, base: float | None, reference: float | None,
              has_reference: bool = True) -> tuple[float, str]:
    """PGR and a note; NaN with a note starting ``undefined:`` only where there is no gap to recover."""
    nan = float("nan")
    if not has_reference:
        return nan, "undefined: no reference model configured"
    for name, v in (("student", student), ("base", base), ("reference", reference)):
        if _missing(v):
            return nan, f"undefined: no {name} score"
    gap = float(reference) - float(base)
    if gap == 0:
        return nan, "undefined: reference equals base (no gap to recover)"
    if gap < 0:
        return nan, f"undefined: reference below base (r-b={gap:.4g}), no gap to recover"
    return (float(student) - float(base)) / gap, "ok"


@dataclass
class BenchSamples:
    """Per-example values of one benchmark on the examples all models answered (same order).

    ``student`` is (T, n): one row per trial of the same teacher x language (T = 1 for one student).
    """

    name: str
    student: np.ndarray
    base: np.ndarray
    reference: np.ndarray
    score: ScoreFn = mean_score

    def __post_init__(self):
        self.student = np.atleast_2d(np.asarray(self.student, dtype=float))
        self.base = np.asarray(self.base, dtype=float)
        self.reference = np.asarray(self.reference, dtype=float)

    @property
    def n(self) -> int:
        return len(self.base)


@dataclass
class PGRInterval:
    pgr_se: float
    pgr_low: float
    pgr_high: float
    gap_se: float
    n_boot: int
    level: float = 0.95


def bootstrap_pgr(benches: Sequence[BenchSamples], n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> PGRInterval:
    """Paired bootstrap of PGR over examples (and trials when ``student`` has several rows).

    Each resample draws example indices per benchmark (shared by student, base and reference) and trial
    indices (shared by all benchmarks), scores each benchmark with its own corpus metric, averages the
    benchmarks and forms PGR. Resamples whose reference-base gap is exactly 0 are dropped.
    """
    nan = float("nan")
    benches = [b for b in benches if b.n >= 2]
    if not benches:
        return PGRInterval(nan, nan, nan, nan, 0, level)
    rng = np.random.default_rng(seed)
    t = benches[0].student.shape[0]
    tidx = rng.integers(0, t, (n_boot, t)) if t > 1 else np.zeros((n_boot, 1), dtype=np.int64)
    s_tot = np.zeros(n_boot)
    b_tot = np.zeros(n_boot)
    r_tot = np.zeros(n_boot)
    for bench in benches:
        idx = rng.integers(0, bench.n, (n_boot, bench.n))
        per_trial = np.stack([bench.score(bench.student[j], idx) for j in range(bench.student.shape[0])], axis=1)
        s_tot += np.take_along_axis(per_trial, tidx, axis=1).mean(axis=1)
        b_tot += bench.score(bench.base, idx)
        r_tot += bench.score(bench.reference, idx)
    m = len(benches)
    s, b, r = s_tot / m, b_tot / m, r_tot / m
    gap = r - b
    ok = gap != 0
    pgr = (s[ok] - b[ok]) / gap[ok]
    alpha = (1 - level) / 2
    if len(pgr) < 2:
        return PGRInterval(nan, nan, nan, float(np.std(gap, ddof=1)), n_boot, level)
    return PGRInterval(
        pgr_se=float(np.std(pgr, ddof=1)),
        pgr_low=float(np.quantile(pgr, alpha)),
        pgr_high=float(np.quantile(pgr, 1 - alpha)),
        gap_se=float(np.std(gap, ddof=1)),
        n_boot=n_boot,
        level=level,
    )


def point_scores(benches: Sequence[BenchSamples]) -> dict[str, tuple[float, float, float]]:
    """(student mean over trials, base, reference) corpus score per benchmark on the shared examples."""
    out = {}
    for bench in benches:
        ident = np.arange(bench.n)[None, :]
        s = float(np.mean([bench.score(row, ident)[0] for row in bench.student]))
        out[bench.name] = (s, float(bench.score(bench.base, ident)[0]), float(bench.score(bench.reference, ident)[0]))
    return out


@dataclass
class LanguagePGR:
    student_score: float
    base_score: float
    reference_score: float
    pgr: float
    pgr_note: str
    benchmarks: str
    gap_se: float
    pgr_se: float = float("nan")
    pgr_low: float = float("nan")
    pgr_high: float = float("nan")
    pgr_reliable: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def language_pgr(
    student: Mapping[str, float],
    base: Mapping[str, float],
    reference: Mapping[str, float] | None,
    interval: PGRInterval | None = None,
    not_covered: Sequence[str] = (),
    k: float = 2.0,
) -> LanguagePGR:
    """Average each model's per-benchmark scores over the benchmarks all three have, then PGR, its
    interval (``interval``, from ``bootstrap_pgr`` on the same benchmarks) and the reliability flag.

    Benchmarks left out (not covered, or missing for some model) are named in the note.
    """
    nan = float("nan")
    has_ref = reference is not None
    ref = reference or {}
    names = [b for b in student if not _missing(student.get(b)) and not _missing(base.get(b))
             and (not has_ref or not _missing(ref.get(b)))]
    every = set(student) | set(base) | set(ref)
    dropped = sorted(every - set(names))
    extra = []
    if not_covered:
        extra.append("not covered: " + ", ".join(not_covered))
    if dropped:
        extra.append("missing scores: " + ", ".join(dropped))
    suffix = ("; " + "; ".join(extra)) if extra else ""
    if not names:
        return LanguagePGR(nan, nan, nan, nan, "undefined: no benchmark scored for this language" + suffix, "", nan)
    s = float(np.mean([student[b] for b in names]))
    b_ = float(np.mean([base[b] for b in names]))
    r = float(np.mean([ref[b] for b in names])) if has_ref else nan
    value, note = pgr_value(s, b_, r, has_reference=has_ref)
    iv = interval or PGRInterval(nan, nan, nan, nan, 0)
    reliable = False
    if not math.isnan(value):
        gap = r - b_
        if math.isnan(iv.gap_se):
            note = "unreliable: no per-example outputs to bootstrap the reference-base gap"
        elif gap + 1e-12 >= k * iv.gap_se:  # float tolerance: 0.42 - 0.40 < 0.02
            reliable = True
            note = f"ok (r-b={gap:.4g}, {k:g}x SE={k * iv.gap_se:.4g})"
        else:
            note = (f"unreliable: reference-base gap {gap:.4g} is below {k:g}x its bootstrap SE ({iv.gap_se:.4g}); "
                    f"PGR {value:.3g} has 95% interval [{iv.pgr_low:.3g}, {iv.pgr_high:.3g}]")
    else:
        iv = PGRInterval(nan, nan, nan, iv.gap_se, iv.n_boot)
    return LanguagePGR(s, b_, r, value, note + suffix, ",".join(names), iv.gap_se, iv.pgr_se, iv.pgr_low,
                       iv.pgr_high, reliable)


# ----------------------------------------------------------------------------- older helpers (kept)
def aggregate(df: pd.DataFrame, column: str) -> float:
    """Mean of per-category means when a ``category`` column is present, else the plain mean."""
    if df.empty or column not in df:
        return float("nan")
    if "category" in df and df["category"].notna().any():
        return float(df.dropna(subset=["category"]).groupby("category")[column].mean().mean())
    return float(df[column].astype(float).mean())


def paired_gap_se(base: pd.DataFrame, reference: pd.DataFrame, column: str, n_boot: int = 500,
                  seed: int = 0) -> float:
    """Bootstrap SE of aggregate(reference) - aggregate(base) over examples both models answered."""
    cols = ["example_id", column] + (["category"] if "category" in base else [])
    joined = base[cols].merge(reference[["example_id", column]], on="example_id", suffixes=("_b", "_r"))
    if len(joined) < 2:
        return float("nan")

    def stat(d: pd.DataFrame) -> float:
        return aggregate(d.rename(columns={f"{column}_r": column}), column) - \
            aggregate(d.rename(columns={f"{column}_b": column}), column)

    return bootstrap_se(joined, stat, n_boot=n_boot, seed=seed)
