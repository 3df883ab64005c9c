"""A gallery of several models' per-step CAMs: one figure per image, an ``index.html``
and a contact sheet.

Each figure is a grid with a row per model and a column per computation step (after a
first column with the image as that model saw it); models with fewer steps leave their
later cells blank. A cell shows the CAM of that step's top-1 class, titled ``step t:
<class> <conf>%``; when the image has ground-truth boxes, the GT box (green) and the CAM
box (``cam_boxes`` at 15 %, orange) are drawn and the cell's title adds the box IoU
(best over the GT boxes, inclusive-pixel IoU as ``box_iou``). All boxes live in each
model's own input frame (its record's preprocessing).

The page's item per figure: ``models`` = every model, ``class`` = the GT class name when
known (else the last model's final prediction), ``correct`` = *every* model's final-step
top-1 equals the label (``False`` when there is no label), ``change`` = the largest mean
absolute difference between consecutive steps' maps over all models (``None`` when no
model has two steps).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from torch import nn

from .cam import check_method, step_cams
from .classnames import class_names_for
from .gallery_html import contact_sheet, write_gallery_page
from .images import ImageError, Preprocess, read_image
from .outputs import safe_name, unique_names, with_ext
from .progress import image_progress
from .viz import model_view, overlay
from .wsol.boxes import box_iou, cam_boxes

DPI = 80
CAM_RATIO = 0.15
# pixels of each drawn image (coordinates stay the input frame's via ``extent``)
SHOWN = 96


@dataclass
class GalleryFigure:
    """One image's figure: files, grid shape (rows, columns incl. the input column) and
    per-model results (``predictions[model]`` = [(class name, confidence)] per step;
    ``ious[model]`` = IoU per step, ``None`` when the image has no GT box or the map
    gives no box).
    """

    name: str
    png: Path
    pdf: Path
    grid: tuple[int, int]
    predictions: dict[str, list[tuple[str, float]]]
    ious: dict[str, list[float | None]]
    correct: bool
    change: float | None


@dataclass
class GalleryReport:
    """What :func:`build_gallery` wrote; ``problems`` has one sentence per skipped
    image.
    """

    out_dir: Path
    index_html: Path | None
    method: str = "gradcam"
    figures: list[GalleryFigure] = field(default_factory=list)
    contact_sheet: Path | None = None
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"GalleryReport({len(self.figures)} figures in {self.out_dir}, "
            f"index {self.index_html}, "
            f"contact sheet {self.contact_sheet}, {len(self.problems)} problem(s))"
        )


def _inclusive_gt(pre: Preprocess, boxes, width: int, height: int) -> np.ndarray:
    """Inclusive original-pixel boxes -> inclusive boxes in the model input frame."""
    out = []
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        a0, b0, a1, b1 = pre.box_to_input([x0, y0, x1 + 1, y1 + 1], width, height)
        out.append(
            [
                round(a0),
                round(b0),
                max(round(a1) - 1, round(a0)),
                max(round(b1) - 1, round(b0)),
            ]
        )
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)


def _show(ax, rgb: np.ndarray) -> None:
    """Draw ``rgb`` (input frame) at most SHOWN pixels wide, axes still in input-frame
    pixel coordinates.
    """
    h, w = rgb.shape[:2]
    small = cv2.resize(
        rgb, (min(w, SHOWN), min(h, SHOWN)), interpolation=cv2.INTER_AREA
    )
    ax.imshow(small, extent=(-0.5, w - 0.5, h - 0.5, -0.5))


def _rect(ax, box, color: str) -> None:
    x0, y0, x1, y1 = box
    ax.add_patch(
        plt.Rectangle(
            (x0 - 0.5, y0 - 0.5),
            x1 - x0 + 1,
            y1 - y0 + 1,
            fill=False,
            color=color,
            lw=1.3,
        )
    )


def _model_row(model: nn.Module, image: np.ndarray, gt, method: str):
    """One model on one image: (view, maps [T,H,W], names, scores [T], class ids [T], gt
    boxes in frame).
    """
    pre = Preprocess.for_model(model)
    device = next(model.parameters()).device
    cams = step_cams(
        model, pre(image)[None].to(device), method=method, classes="topk", k=1
    )
    names = class_names_for(model, cams.logits.shape[-1])
    ids = cams.class_ids[0, :, 0].cpu().numpy()
    gt_in = (
        None
        if gt is None or len(gt) == 0
        else _inclusive_gt(pre, gt, image.shape[1], image.shape[0])
    )
    return (
        model_view(image, pre),
        cams.maps[0, :, 0].detach().cpu().numpy(),
        [names[i] for i in ids],
        cams.scores[0, :, 0].detach().cpu().numpy(),
        ids,
        gt_in,
        names,
    )


def _figure(
    rows: dict, steps: int, title: str, out: Path, pdf: bool = True
) -> tuple[dict, tuple[int, int]]:
    """Draw the grid (one row per model) and save PNG (+ PDF); returns per-model IoUs and
    the grid shape.
    """
    n = len(rows)
    fig, axes = plt.subplots(
        n, steps + 1, figsize=(1.8 * (steps + 1) + 0.6, 1.8 * n + 0.4), squeeze=False
    )
    ious = {}
    for r, (mname, (view, maps, names, scores, _, gt_in, _)) in enumerate(rows.items()):
        _show(axes[r, 0], view)
        axes[r, 0].set_title("input" if r == 0 else "", fontsize=7)
        axes[r, 0].set_ylabel(mname, fontsize=7)
        for box in gt_in if gt_in is not None else []:
            _rect(axes[r, 0], box, "lime")
        ious[mname] = []
        for t in range(steps):
            ax = axes[r, t + 1]
            if t >= len(maps):
                ax.axis("off")
                continue
            _show(ax, overlay(view, maps[t]))
            label = f"step {t + 1}: {names[t]} {100 * float(scores[t]):.0f}%"
            iou = None
            if gt_in is not None:
                for box in gt_in:
                    _rect(ax, box, "lime")
                pred = cam_boxes(maps[t], CAM_RATIO)
                if len(pred):
                    _rect(ax, pred[0], "orange")
                    iou = float(box_iou(pred[:1], gt_in).max())
                label += f"\nIoU {iou:.2f}" if iou is not None else "\nno box"
            ious[mname].append(iou)
            ax.set_title(label, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    if pdf:
        fig.savefig(with_ext(out, "pdf"), dpi=DPI)
    # PNG: a 256-colour palette (a third of an RGB PNG's size for these noisy images)
    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT).save(
        with_ext(out, "png"), optimize=True
    )
    plt.close(fig)
    return ious, (n, steps + 1)


def _model_items(rows, stem, head, title, out_dir, label, gt_name, path) -> list[dict]:
    """One single-row PNG and page item per model, so the page's model filter selects them (the
    item's PDF is the image's combined figure, which holds the same row)."""
    items = []
    for m, row in rows.items():
        slug = safe_name(m, "model")
        _figure({m: row}, len(row[1]), f"{title + ': ' if title else ''}{head}",
                out_dir / "figures" / f"{stem}__{slug}", pdf=False)
        diffs = [float(np.abs(row[1][t + 1] - row[1][t]).mean()) for t in range(len(row[1]) - 1)]
        final_name, final_score = row[2][-1], float(row[3][-1])
        items.append({"image": f"figures/{stem}__{slug}.png", "pdf": f"figures/{stem}.pdf", "model": m,
                      "models": [m], "class": gt_name or final_name,
                      "correct": label is not None and int(row[4][-1]) == label,
                      "change": max(diffs) if diffs else None,
                      "caption": f"{Path(path).name} - {m}: {final_name} {100 * final_score:.0f}%",
                      "name": f"{stem} {m}"})
    return items


def build_gallery(
    models: dict[str, nn.Module],
    images: Sequence[tuple],
    out_dir: str | os.PathLike,
    method: str = "gradcam",
    title: str = "",
    progress: bool = True,
) -> GalleryReport:
    """One figure per image comparing ``models`` step by step, plus ``index.html`` and a
    contact sheet.

    ``images``: ``(path, label or None, gt_boxes or None)``; GT boxes are inclusive
    ``[x0, y0, x1, y1]`` in original pixels. Unreadable images are skipped with one
    sentence each in ``problems``. Figures go to ``out_dir/figures/<stem>.png|.pdf`` (a
    ``-2``, ``-3``... suffix keeps equal names apart; names are made safe by
    :func:`tdviz.outputs.safe_name`).
    """
    method = check_method(method)
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    report = GalleryReport(out_dir=out_dir, index_html=None, method=method)
    items = []
    stems = unique_names(safe_name(Path(path).stem) for path, _, _ in images)
    with image_progress("gallery", len(images), progress) as advance, torch.no_grad():
        for (path, label, gt), stem in zip(images, stems):
            advance(1)
            try:
                image = read_image(path)
            except ImageError as err:
                report.problems.append(f"{err} Skipped.")
                continue
            with torch.enable_grad():
                rows = {
                    m: _model_row(model, image, gt, method)
                    for m, model in models.items()
                }
            steps = max(len(r[1]) for r in rows.values())
            preds = {
                m: [(n, float(s)) for n, s in zip(r[2], r[3])] for m, r in rows.items()
            }
            names = next(iter(rows.values()))[6]
            gt_name = (
                names[label] if label is not None and 0 <= label < len(names) else None
            )
            head = f"{Path(path).name}" + (f" (GT: {gt_name})" if gt_name else "") + f" | {method}"
            ious, grid = _figure(
                rows,
                steps,
                f"{title + ': ' if title else ''}{head}",
                out_dir / "figures" / stem,
            )
            correct = label is not None and all(
                int(r[4][-1]) == label for r in rows.values()
            )
            diffs = [
                float(np.abs(r[1][t + 1] - r[1][t]).mean())
                for r in rows.values()
                for t in range(len(r[1]) - 1)
            ]
            fig = GalleryFigure(
                stem,
                out_dir / "figures" / f"{stem}.png",
                out_dir / "figures" / f"{stem}.pdf",
                grid,
                preds,
                ious,
                correct,
                max(diffs) if diffs else None,
            )
            report.figures.append(fig)
            final = "; ".join(
                f"{m}: {p[-1][0]} {100 * p[-1][1]:.0f}%" for m, p in preds.items()
            )
            items.append(
                {
                    "image": f"figures/{stem}.png",
                    "pdf": f"figures/{stem}.pdf",
                    "model": ", ".join(models),
                    "models": list(models),
                    "class": gt_name or preds[list(models)[-1]][-1][0],
                    "correct": correct,
                    "change": fig.change,
                    "caption": f"{Path(path).name} - {final}",
                    "name": stem,
                }
            )
            if len(models) > 1:
                items += _model_items(rows, stem, head, title, out_dir, label, gt_name, path)
    if report.figures:
        report.contact_sheet = contact_sheet(
            [f.png for f in report.figures],
            out_dir / "contact_sheet.png",
            thumb_width=200,
        )
    report.index_html = write_gallery_page(out_dir, items, title or "tdviz gallery")
    return report


def demo_gallery(
    out_dir: str | os.PathLike, n: int = 12, seed: int = 0, progress: bool = True,
    models: dict[str, nn.Module] | None = None, two_objects: bool = False, method: str = "gradcam",
) -> GalleryReport:
    """A gallery of the whole demo zoo (or ``models``) on the first ``n`` images of the cached
    demo validation split, with the split's GT boxes.
    """
    from .datasets import demo_class_index, load_dataset
    from .demo import make_demo_split
    from .models.demo_zoo import DEMO_MODELS, load_demo_model

    out_dir = Path(out_dir)
    split = make_demo_split(n=n, seed=seed, two_objects=two_objects, workers=1)
    data = load_dataset(
        split / "boxes_xml",
        images_root=split / "images",
        class_index=demo_class_index(),
    )
    images = [
        (s.path, s.label, s.boxes)
        for s in sorted(data.samples, key=lambda s: s.image_id)
    ]
    models = models or {name: load_demo_model(name) for name in DEMO_MODELS}
    return build_gallery(
        models,
        images,
        out_dir,
        method=method,
        title=f"demo zoo, {n} images (seed {seed})",
        progress=progress,
    )
