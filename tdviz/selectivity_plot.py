"""Plots of channel selectivity: one figure per metric sized for a paper column, and an overview.

Each figure shows one box (with the violin of the distribution behind it) per model and step,
horizontally, coloured by model; the value axis spans the data (its 0.5th to 99.5th percentile,
padded), not the metric's theoretical range, so values near 0.1 are not squeezed against an axis
that runs to 0.9. Functions return :class:`matplotlib.figure.Figure` (no backend is chosen).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .figures import save_figure

__all__ = ["plot_distributions", "selectivity_figure"]

COLUMN_IN = 3.4  # a paper column


def _groups(results) -> list[tuple[str, int]]:
    return list(dict.fromkeys((model, step) for model, _, step in results))


def _panel(ax, results, metric: str, layer: str, colours: dict, label: str) -> None:
    groups = _groups(results)
    data, pos, cols = [], [], []
    for i, (model, step) in enumerate(groups):
        res = results.get((model, layer, step))
        vals = res.values(metric) if res is not None else np.zeros(0)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            data.append(vals)
            pos.append(i)
            cols.append(colours[model])
    ax.set_xlabel(label, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    if not data:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey", fontsize=8)
        _ticks(ax, groups)
        return
    varied = [j for j, d in enumerate(data) if d.size > 2 and np.ptp(d) > 0]
    if varied:
        vp = ax.violinplot([data[j] for j in varied], positions=[pos[j] for j in varied], widths=0.8,
                           showextrema=False, orientation="horizontal")
        for body, j in zip(vp["bodies"], varied):
            body.set_facecolor(cols[j])
            body.set_alpha(0.25)
    bp = ax.boxplot(data, positions=pos, widths=0.4, showfliers=False, patch_artist=True, orientation="horizontal")
    for box, c in zip(bp["boxes"], cols):
        box.set_facecolor(c)
        box.set_alpha(0.85)
    for med in bp["medians"]:
        med.set_color("black")
    allv = np.concatenate(data)
    lo, hi = np.percentile(allv, [0.5, 99.5])
    pad = 0.06 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-3)
    ax.set_xlim(lo - pad, hi + pad)
    _ticks(ax, groups)


def _ticks(ax, groups) -> None:
    """Labels set after plotting: boxplot resets the ticks of its positions axis."""
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([f"{m} · t={t}" for m, t in groups], fontsize=7)
    ax.set_ylim(len(groups) - 0.4, -0.6)


def _colours(results) -> dict:
    models = list(dict.fromkeys(model for model, _, _ in results))
    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(models)}


def selectivity_figure(results: Mapping, metric: str, layer: str | None = None) -> Figure:
    """One metric at one layer (default: the first), a box per model and step: a column wide."""
    from .selectivity import METRIC_LABELS

    layer = layer or next(iter(results))[1]
    groups = _groups(results)
    fig = Figure(figsize=(COLUMN_IN, 0.26 * len(groups) + 1.0), layout="constrained")
    ax = fig.subplots()
    _panel(ax, results, metric, layer, _colours(results), METRIC_LABELS[metric].replace("\n", " "))
    ax.set_title(f"{layer}", fontsize=8)
    return fig


def overview_figure(results: Mapping, layer: str, metrics: Sequence[str]) -> Figure:
    """Every metric at one layer side by side: two paper columns wide."""
    from .selectivity import METRIC_LABELS

    groups = _groups(results)
    ncols = 3
    nrows = -(-len(metrics) // ncols)
    fig = Figure(figsize=(2 * COLUMN_IN + 0.2, (0.22 * len(groups) + 1.0) * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = _colours(results)
    for k, metric in enumerate(metrics):
        ax = axes[k // ncols, k % ncols]
        _panel(ax, results, metric, layer, colours, METRIC_LABELS[metric])
        if k % ncols:
            ax.set_yticklabels([])
    for k in range(len(metrics), nrows * ncols):
        axes[k // ncols, k % ncols].axis("off")
    fig.suptitle(f"channel selectivity at {layer}", fontsize=9)
    return fig


def plot_distributions(results: Mapping, out_path_without_suffix: str | Path,
                       formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """``<stem>.png|.pdf`` (all metrics of the first layer) and, per layer and metric,
    ``<stem>_<metric>`` (or ``<stem>_<layer>_<metric>`` with several layers), each a column wide."""
    from .selectivity import METRICS

    if not results:
        raise ValueError("no results to plot")
    stem = Path(out_path_without_suffix)
    layers = list(dict.fromkeys(layer for _, layer, _ in results))
    written = save_figure(overview_figure(results, layers[0], METRICS), stem, formats)
    for layer in layers:
        for metric in METRICS:
            name = f"{stem.name}_{metric}" if len(layers) == 1 else f"{stem.name}_{layer}_{metric}"
            written += save_figure(selectivity_figure(results, metric, layer), stem.with_name(name), formats)
    return written
