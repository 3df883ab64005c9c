"""Figures for papers: CAMs per step (the paper's Fig. 4), the change between steps, searchlights.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so nothing here
picks a backend: in a notebook the figure displays, in a script :func:`save_figure` writes it.
Images are drawn at their native resolution (no resampling before matplotlib; ``interpolation=
"none"`` embeds the pixels as they are in the PDF), PNGs are RGB at 200 dpi, PDFs keep their text
as text (TrueType). Boxes: ground truth green, predicted orange, with a legend; heat maps carry a
colour bar.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from PIL import Image

from .viz import overlay

__all__ = ["GT_COLOR", "PRED_COLOR", "StepRow", "save_figure", "searchlight_figure", "step_grid_figure"]

GT_COLOR = "#00c853"
PRED_COLOR = "#ff8f00"
PANEL_IN = 1.75  # inches per image panel: 350 px at 200 dpi, above a 224 px input
DPI = 200


@dataclass
class StepRow:
    """One row of a step grid: a label (a class for `tdviz cam`, a model for the gallery), the
    image as that row's model saw it (float RGB [H, W, 3] in [0, 1]), its maps per step [T, H, W]
    in [0, 1], a title per step, the predicted box per step (inclusive [x0, y0, x1, y1] in the
    view's pixels, or ``None``) and the GT boxes [N, 4] (or ``None``)."""

    label: str
    view: np.ndarray
    maps: np.ndarray
    titles: Sequence[str]
    pred_boxes: Sequence | None = None
    gt_boxes: np.ndarray | None = None


def _image(ax, rgb) -> None:
    ax.imshow(rgb, interpolation="none")
    ax.set_xticks([])
    ax.set_yticks([])


def _box(ax, box, color: str) -> None:
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor=color, lw=1.6))


def _label_cell(ax, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, wrap=True, transform=ax.transAxes)


def step_grid_figure(rows: Sequence[StepRow], title: str = "", step_numbers: Sequence[int] | None = None,
                     diff: bool = False, colorbar: bool = True) -> Figure:
    """Rows x (input, step 1..T[, step t+1 - step t]): each row's maps over its image.

    The input is drawn once, in the first row (and again only in a row whose image differs, e.g.
    another model's crop); the other rows name themselves there. ``diff`` adds the change between
    consecutive steps beside the CAMs (diverging colours, one symmetric scale for the figure). Rows with fewer steps leave
    their later cells blank.
    """
    steps = max(len(r.maps) for r in rows)
    numbers = list(step_numbers) if step_numbers is not None else list(range(1, steps + 1))
    n_diff = steps - 1 if diff and steps > 1 else 0
    cols = 1 + steps + n_diff
    # one symmetric scale for every change map of the figure, so they compare with each other
    spread = max([float(np.abs(r.maps[t + 1] - r.maps[t]).max()) for r in rows for t in range(len(r.maps) - 1)]
                 or [1.0]) if n_diff else 1.0
    spread = max(0.05, np.ceil(spread * 20) / 20)
    fig = Figure(figsize=(PANEL_IN * cols + (0.9 if colorbar else 0.2), PANEL_IN * len(rows) + 0.9),
                 layout="constrained")
    axes = fig.subplots(len(rows), cols, squeeze=False)
    any_box = False
    previous = None
    for r, row in enumerate(rows):
        if previous is None or row.view.shape != previous.shape or not np.array_equal(row.view, previous):
            _image(axes[r, 0], row.view)
            axes[r, 0].set_title(f"input\n{row.label}" if len(rows) > 1 else "input", fontsize=8)
            for box in row.gt_boxes if row.gt_boxes is not None else []:
                _box(axes[r, 0], box, GT_COLOR)
        else:
            _label_cell(axes[r, 0], row.label)
        previous = row.view
        for t in range(steps):
            ax = axes[r, 1 + t]
            if t >= len(row.maps):
                ax.axis("off")
                continue
            _image(ax, overlay(row.view, row.maps[t]))
            ax.set_title(row.titles[t], fontsize=8)
            for box in row.gt_boxes if row.gt_boxes is not None else []:
                _box(ax, box, GT_COLOR)
                any_box = True
            pred = row.pred_boxes[t] if row.pred_boxes is not None else None
            if pred is not None:
                _box(ax, pred, PRED_COLOR)
                any_box = True
        for t in range(n_diff):
            ax = axes[r, 1 + steps + t]
            if t + 1 >= len(row.maps):
                ax.axis("off")
                continue
            ax.imshow(row.maps[t + 1] - row.maps[t], cmap="RdBu_r", vmin=-spread, vmax=spread, interpolation="none")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"step {numbers[t + 1]} − step {numbers[t]}", fontsize=8)
    if colorbar:
        cb = fig.colorbar(ScalarMappable(Normalize(0, 1), matplotlib.colormaps["jet"]), ax=axes[:, 1:1 + steps],
                          shrink=0.8, aspect=25, pad=0.01)
        cb.set_label("CAM (normalized per map)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
        if n_diff:
            cd = fig.colorbar(ScalarMappable(Normalize(-spread, spread), matplotlib.colormaps["RdBu_r"]),
                              ax=axes[:, 1 + steps:], shrink=0.8, aspect=25, pad=0.01)
            cd.set_label("change between steps", fontsize=8)
            cd.ax.tick_params(labelsize=7)
    if any_box or any(r.gt_boxes is not None and len(r.gt_boxes) for r in rows):
        fig.legend(handles=[Patch(facecolor="none", edgecolor=GT_COLOR, lw=1.6, label="ground truth"),
                            Patch(facecolor="none", edgecolor=PRED_COLOR, lw=1.6, label="predicted (CAM box)")],
                   loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def searchlight_figure(view: np.ndarray, searchlights: dict[str, np.ndarray], cams: np.ndarray | None = None,
                       cam_titles: Sequence[str] | None = None, title: str = "") -> Figure:
    """The searchlight maps A_t of TD blocks beside the CAMs: a first row with the input and the
    CAM of each step, then a row per block with its A_t (t = 1..T-1: the map that prepares step
    t+1), each normalized to [0, 1] and drawn in viridis over a faded input."""
    steps = 0 if cams is None else len(cams)
    passes = max((len(v) for v in searchlights.values()), default=0)
    cols = 1 + max(steps, passes)
    rows = 1 + len(searchlights)
    fig = Figure(figsize=(PANEL_IN * cols + 0.9, PANEL_IN * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    _image(axes[0, 0], view)
    axes[0, 0].set_title("input", fontsize=8)
    for t in range(cols - 1):
        ax = axes[0, 1 + t]
        if t < steps:
            _image(ax, overlay(view, cams[t]))
            ax.set_title(cam_titles[t] if cam_titles else f"CAM step {t + 1}", fontsize=8)
        else:
            ax.axis("off")
    faded = 0.35 * np.asarray(view, np.float32)
    for r, (name, maps) in enumerate(searchlights.items(), start=1):
        _label_cell(axes[r, 0], f"searchlight A_t\n{name}")
        for t in range(cols - 1):
            ax = axes[r, 1 + t]
            if t >= len(maps):
                ax.axis("off")
                continue
            m = np.asarray(maps[t], np.float32)
            ax.imshow(faded, interpolation="none")
            ax.imshow(m, cmap="viridis", vmin=0, vmax=1, alpha=0.75, interpolation="none")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"A_{t + 1} (prepares step {t + 2})", fontsize=8)
    if steps:  # the CAM row keeps its own scale: jet, as in the step grid
        cc = fig.colorbar(ScalarMappable(Normalize(0, 1), matplotlib.colormaps["jet"]), ax=axes[0, 1:], shrink=0.8,
                          aspect=12, pad=0.01)
        cc.set_label("CAM (normalized)", fontsize=8)
        cc.ax.tick_params(labelsize=7)
    if searchlights:
        cb = fig.colorbar(ScalarMappable(Normalize(0, 1), matplotlib.colormaps["viridis"]), ax=axes[1:, 1:],
                          shrink=0.8, aspect=25, pad=0.01)
        cb.set_label("searchlight (normalized)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _rgb_pixels(fig: Figure, dpi: int) -> np.ndarray:
    """The figure drawn by Agg at ``dpi`` as RGB [H, W, 3]: matplotlib's PNG has an alpha channel
    that holds nothing here, and decoding its PNG only to encode another costs 4x the drawing."""
    buf = io.BytesIO()
    fig.savefig(buf, format="raw", dpi=dpi)
    width, height = int(fig.get_figwidth() * dpi), int(fig.get_figheight() * dpi)  # Agg's canvas size
    raw = np.frombuffer(buf.getbuffer(), np.uint8)
    if raw.size != width * height * 4:  # a canvas size this arithmetic does not predict: go by PNG
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return np.asarray(Image.open(buf).convert("RGB"))
    return raw.reshape(height, width, 4)[..., :3]


def save_figure(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = DPI) -> list[Path]:
    """Write ``stem.<format>`` for each format: RGB PNG at ``dpi`` (at least 150 for print), PDF with
    TrueType (vector) text and its images at native resolution."""
    written = []
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            if fmt == "png":
                Image.fromarray(_rgb_pixels(fig, dpi)).save(path, dpi=(dpi, dpi))
            else:
                fig.savefig(path, dpi=dpi, metadata={"CreationDate": None})  # same input, same bytes
            written.append(path)
    return written
