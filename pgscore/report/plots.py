"""Figures for the HTML report: each function takes DataFrames and returns a matplotlib Figure (Agg,
no pyplot state). Mathtext is off so '$' in teacher names prints as-is."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

RC = {"text.parse_math": False, "font.size": 9, "axes.titlesize": 10, "figure.dpi": 110}


def _short(s: str, n: int = 28) -> str:
    s = str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


def heatmap(matrix: pd.DataFrame, title: str, cmap: str = "RdYlGn", fmt: str = "{:.2f}", center: float | None = None,
            xlabel: str = "", ylabel: str = "", vmin: float | None = None, vmax: float | None = None,
            annot: pd.DataFrame | None = None) -> Figure:
    """Annotated heatmap of a numeric DataFrame (rows × columns). ``annot``: cell texts (same shape) to
    print instead of the formatted values, e.g. a value with its interval."""
    values = matrix.to_numpy(dtype=float)
    texts = None if annot is None else annot.reindex(index=matrix.index, columns=matrix.columns).to_numpy(dtype=object)
    h = min(7.0, max(2.4, (0.65 if texts is not None else 0.45) * len(matrix) + 1.4))
    w = min(11.0, max(4.0, (1.25 if texts is not None else 0.75) * len(matrix.columns) + 3.2))
    fig = Figure(figsize=(w, h))
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    if center is not None and finite.size:
        lim = max(abs(finite.max() - center), abs(finite.min() - center)) or 1.0
        vmin, vmax = center - lim, center + lim
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(matrix.columns)), [_short(c, 14) for c in matrix.columns], rotation=30 if len(matrix.columns) > 6 else 0, ha="right" if len(matrix.columns) > 6 else "center")
    ax.set_yticks(range(len(matrix)), [_short(i) for i in matrix.index])
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            label = fmt.format(v) if texts is None or not isinstance(texts[r, c], str) else texts[r, c]
            ax.text(c, r, label, ha="center", va="center", fontsize=(8 if values.size <= 60 else 6.5) - (1 if texts is not None else 0))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def ranking(ranks: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars of mean rank per teacher with std over trials (columns: teacher, mean_rank, std_rank)."""
    ranks = ranks.sort_values("mean_rank", ascending=False)
    fig = Figure(figsize=(6.5, max(2.2, 0.4 * len(ranks) + 1.2)))
    ax = fig.add_subplot()
    ax.barh([_short(t) for t in ranks["teacher"]], ranks["mean_rank"], xerr=ranks["std_rank"].fillna(0),
            color="#4c72b0", capsize=3)
    ax.set_xlabel("mean rank over languages (1 = best); error bar = std over trials")
    ax.set_title(title)
    ax.set_xlim(0, max(ranks["mean_rank"].max() + ranks["std_rank"].fillna(0).max(), 1) + 0.5)
    fig.tight_layout()
    return fig


def scatter(df: pd.DataFrame, x: str, y: str, hue: str, title: str, xlabel: str, ylabel: str) -> Figure:
    """Scatter of x vs y, one colour per ``hue`` value, with a least-squares line."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    cmap = _colors(df[hue].unique())
    for key, g in df.groupby(hue, sort=False):
        ax.scatter(g[x], g[y], label=_short(key), color=cmap[key], s=36, edgecolor="k", linewidth=0.4)
    ok = df[[x, y]].dropna()
    if len(ok) >= 2 and ok[x].nunique() > 1:
        slope, icept = np.polyfit(ok[x], ok[y], 1)
        xs = np.linspace(ok[x].min(), ok[x].max(), 20)
        ax.plot(xs, slope * xs + icept, "--", color="grey", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    return fig


def metric_bars(df: pd.DataFrame, metrics: list[str], group: str = "teacher") -> Figure:
    """One small bar chart per metric: mean per ``group`` with std error bars."""
    n = len(metrics)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(3.4 * cols, 2.7 * rows))
    groups = list(dict.fromkeys(df[group]))
    cmap = _colors(groups)
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        stats = df.groupby(group, sort=False)[m].agg(["mean", "std"]).reindex(groups)
        ax.bar(range(len(groups)), stats["mean"], yerr=stats["std"].fillna(0), color=[cmap[g] for g in groups], capsize=2)
        ax.set_xticks(range(len(groups)), [_short(g, 12) for g in groups], rotation=35, ha="right", fontsize=7)
        ax.set_title(m)
    fig.tight_layout()
    return fig


def grouped_bars(wide: pd.DataFrame, title: str, ylabel: str, err: pd.DataFrame | None = None,
                 hlines: dict[str, float] | None = None, ax=None) -> Figure | None:
    """Bars for a wide table (index = x groups, columns = series)."""
    own = ax is None
    if own:
        fig = Figure(figsize=(max(5.5, 1.4 * len(wide) + 3), 3.6))
        ax = fig.add_subplot()
    cmap = _colors(wide.columns)
    n = len(wide.columns)
    width = 0.8 / max(n, 1)
    x = np.arange(len(wide))
    for j, c in enumerate(wide.columns):
        e = None if err is None else err[c].fillna(0).to_numpy()
        ax.bar(x + (j - (n - 1) / 2) * width, wide[c].to_numpy(dtype=float), width, yerr=e, label=_short(c, 20),
               color=cmap[c], capsize=2)
    for label, v in (hlines or {}).items():
        ax.axhline(v, linestyle="--", linewidth=1, color="black" if "base" in label else "tab:red", label=label)
    ax.set_xticks(x, [_short(i, 16) for i in wide.index])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, frameon=False, ncol=2)
    if own:
        fig.tight_layout()
        return fig
    return None


def student_scores(ext: pd.DataFrame) -> Figure:
    """Per language: student score per teacher (mean ± std over trials) with base and reference lines."""
    langs = list(dict.fromkeys(ext["language"]))
    cols = min(3, len(langs))
    rows = int(np.ceil(len(langs) / cols))
    fig = Figure(figsize=(4.4 * cols, 3.4 * rows))
    for i, lang in enumerate(langs):
        g = ext[ext["language"] == lang]
        ax = fig.add_subplot(rows, cols, i + 1)
        stats = g.groupby("teacher", sort=False)["student_score"].agg(["mean", "std"])
        cmap = _colors(stats.index)
        ax.bar(range(len(stats)), stats["mean"], yerr=stats["std"].fillna(0), capsize=2,
               color=[cmap[t] for t in stats.index])
        ax.axhline(float(g["base_score"].mean()), color="black", linestyle="--", linewidth=1, label="base")
        ax.axhline(float(g["reference_score"].mean()), color="tab:red", linestyle="--", linewidth=1, label="reference")
        ax.set_xticks(range(len(stats)), [_short(t, 12) for t in stats.index], rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{lang}")
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle("student benchmark score per teacher (dashed: base and reference models)")
    fig.tight_layout()
    return fig


def pca_figure(explained: np.ndarray, loadings: pd.DataFrame) -> Figure:
    """Explained variance (bars + cumulative line) next to the loadings heatmap."""
    fig = Figure(figsize=(10, max(3.2, 0.35 * len(loadings) + 1.5)))
    ax1 = fig.add_subplot(1, 2, 1)
    k = len(explained)
    pcs = [f"PC{i + 1}" for i in range(k)]
    ax1.bar(pcs, 100 * np.asarray(explained), color="#4c72b0")
    ax1.plot(pcs, 100 * np.cumsum(explained), "o-", color="tab:orange", label="cumulative")
    ax1.set_ylabel("% variance explained")
    ax1.set_ylim(0, 105)
    ax1.legend(frameon=False, fontsize=7)
    ax1.set_title("explained variance")
    ax2 = fig.add_subplot(1, 2, 2)
    v = loadings.to_numpy(dtype=float)
    im = ax2.imshow(v, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto")
    ax2.set_xticks(range(v.shape[1]), loadings.columns)
    ax2.set_yticks(range(v.shape[0]), loadings.index)
    for (r, c), x in np.ndenumerate(v):
        ax2.text(c, r, f"{x:.2f}", ha="center", va="center", fontsize=7)
    ax2.set_title("loadings")
    fig.colorbar(im, ax=ax2, fraction=0.04)
    fig.tight_layout()
    return fig


def stacked_bars(wide: pd.DataFrame, title: str, ylabel: str) -> Figure:
    """Stacked bars (index = x groups, columns = stacked parts)."""
    fig = Figure(figsize=(max(5.5, 0.9 * len(wide) + 3), 3.4))
    ax = fig.add_subplot()
    bottom = np.zeros(len(wide))
    palette = ["#c44e52", "#dd8452", "#8172b3", "#55a868", "#4c72b0"]
    for j, c in enumerate(wide.columns):
        vals = wide[c].to_numpy(dtype=float)
        ax.bar(range(len(wide)), vals, bottom=bottom, label=c, color=palette[j % len(palette)])
        bottom += vals
    ax.set_xticks(range(len(wide)), [_short(i, 14) for i in wide.index], rotation=25, ha="right")
    ax.set_ylim(0, max(float(bottom.max()), 1.0) * 1.25)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, frameon=False, ncol=min(4, len(wide.columns)), loc="upper left")
    fig.tight_layout()
    return fig


def _colors(keys) -> dict:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {k: cmap(i % 10) for i, k in enumerate(dict.fromkeys(keys))}
