"""What each computation step localizes, as a figure, and the per-image CSV of `tdviz shift`."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["shift_figure", "write_shift_csv"]

KINDS = (("labelled object", "#1565c0"), ("another object", "#ef6c00"), ("no object", "#bdbdbd"))
CSV_COLUMNS = ("image_id", "model", "step", "localized_object", "localized_class", "is_labelled_object", "best_iou",
               "box_x0", "box_y0", "box_x1", "box_y1")

def shift_figure(records: Sequence, models: Sequence[str]) -> Figure:
    """Per model and step, the fraction of images whose step localizes the labelled object,
    another object, or none (stacked bars, one group of bars per model), a paper column wide."""

    bars = []
    for model in models:
        steps = sorted({r.step for r in records if r.model == model})
        for t in steps:
            rows = [r for r in records if r.model == model and r.step == t]
            n = max(len(rows), 1)
            bars.append((f"{model} · t={t}", [sum(r.is_label is True for r in rows) / n,
                                             sum(r.is_label is False for r in rows) / n,
                                             sum(r.localized is None for r in rows) / n]))
    fig = Figure(figsize=(3.4, 0.3 * len(bars) + 1.3), layout="constrained")
    ax = fig.subplots()
    for k, (kind, colour) in enumerate(KINDS):
        left = [sum(b[1][:k]) for b in bars]
        ax.barh(range(len(bars)), [b[1][k] for b in bars], left=left, color=colour, label=kind, height=0.7)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels([b[0] for b in bars], fontsize=7)
    ax.set_ylim(len(bars) - 0.4, -0.6)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of images (box IoU ≥ 0.5)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    fig.legend(loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    ax.set_title("what each step localizes", fontsize=9)
    return fig

def write_shift_csv(records: Sequence, path: str | Path) -> Path:
    """One line per image, model and step (:class:`tdviz.shift.ShiftRecord`)."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in records:
            box = r.box or ["", "", "", ""]
            w.writerow([r.image_id, r.model, r.step, "" if r.localized is None else r.localized,
                        "" if r.localized_class is None else r.localized_class,
                        "" if r.is_label is None else int(r.is_label), f"{r.iou:.4f}", *box])
    return path
