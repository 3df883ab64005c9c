"""A gallery of several models' per-step CAMs: one card per image, a paper figure per image, and
an offline ``index.html`` to browse and compare them.

Per image and model, the CAM of each step's top-1 class (the paper's Fig. 4). When the image has
ground-truth boxes, the GT boxes (green) and the CAM box (Grad-CAM's rule at 15 %, orange) are
drawn and each step gets its box IoU (best over the GT boxes, inclusive pixels as ``box_iou``).
All boxes live in each model's own input frame (its record's preprocessing).

Written under ``out``: ``figures/<image>.png|.pdf`` (a row per model, a column per step,
:func:`tdviz.figures.step_grid_figure`), ``cells/<image>/<model>_<kind>.jpg`` (the input, and per
step the overlay and the map alone, at the input's native resolution, for the page), a contact
sheet, and ``index.html`` (:mod:`tdviz.gallery_html`).

Per card: ``class`` = the GT class name when known (else the last model's final prediction),
``correct`` = *every* model's final-step top-1 equals the label (``False`` without a label),
``change`` = the largest mean absolute difference between consecutive steps' maps over all
models (``None`` when no model has two steps).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from .cam import check_method, step_cams
from .classnames import class_names_for
from .figures import StepRow, save_figure, step_grid_figure
from .gallery_html import contact_sheet, write_gallery_page
from .images import ImageError, Preprocess, read_image
from .outputs import safe_name, unique_names
from .progress import image_progress
from .viz import model_view, overlay
from .wsol.boxes import box_iou, cam_boxes

CAM_RATIO = 0.15
#: the gallery's figures: 150 dpi puts 262 px on each 224 px input (print quality, half the bytes of 200)
GALLERY_DPI = 150


@dataclass
class GalleryFigure:
    """One image's figure: files, grid shape (rows, columns incl. the input column) and
    per-model results (``predictions[model]`` = [(class name, confidence)] per step;
    ``ious[model]`` = IoU per step, ``None`` when the image has no GT box or the map
    gives no box)."""

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
    """What :func:`build_gallery` wrote; ``problems`` has one sentence per skipped image."""

    out_dir: Path
    index_html: Path | None
    method: str = "gradcam"
    figures: list[GalleryFigure] = field(default_factory=list)
    contact_sheet: Path | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class ModelRow:
    """One model on one image: the view it saw, its maps [T, H, W], per step the top-1 class id,
    name and score, the CAM box (or ``None``) and its IoU, and the GT boxes in its frame."""

    view: np.ndarray
    maps: np.ndarray
    ids: list[int]
    names: list[str]
    scores: list[float]
    boxes: list[list[int] | None]
    ious: list[float | None]
    gt: np.ndarray | None
    class_names: list[str]


def _inclusive_gt(pre: Preprocess, boxes, width: int, height: int) -> np.ndarray:
    """Inclusive original-pixel boxes -> inclusive boxes in the model input frame."""
    out = []
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        a0, b0, a1, b1 = pre.box_to_input([x0, y0, x1 + 1, y1 + 1], width, height)
        out.append([round(a0), round(b0), max(round(a1) - 1, round(a0)), max(round(b1) - 1, round(b0))])
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)


def model_row(model: nn.Module, image: np.ndarray, gt, method: str, layer: str | None = None) -> ModelRow:
    """:class:`ModelRow` of ``model`` on ``image`` (RGB uint8) with GT boxes ``gt`` (original pixels);
    maps at ``layer`` (default: the model record's feature layer)."""
    pre = Preprocess.for_model(model)
    device = next(model.parameters()).device
    cams = step_cams(model, pre(image)[None].to(device), layer=layer, method=method, classes="topk", k=1)
    names = class_names_for(model, cams.logits.shape[-1])
    ids = cams.class_ids[0, :, 0].tolist()
    maps = cams.maps[0, :, 0].detach().cpu().numpy()
    gt_in = None if gt is None or len(gt) == 0 else _inclusive_gt(pre, gt, image.shape[1], image.shape[0])
    boxes, ious = [], []
    for m in maps:
        pred = cam_boxes(m, CAM_RATIO) if gt_in is not None else np.zeros((0, 4))
        boxes.append([int(v) for v in pred[0]] if len(pred) else None)
        ious.append(float(box_iou(pred[:1], gt_in).max()) if len(pred) else None)
    return ModelRow(model_view(image, pre), maps, ids, [names[i] for i in ids],
                    [float(v) for v in cams.scores[0, :, 0].tolist()], boxes, ious, gt_in, names)


def _jpeg(rgb: np.ndarray, path: Path) -> str:
    Image.fromarray(rgb).save(path, quality=92)
    return path.name


def _cells(row: ModelRow, folder: Path, slug: str) -> dict:
    """The page's images of one model row (input, per step overlay and map alone) and its data."""
    view8 = np.uint8(np.clip(row.view * 255 + 0.5, 0, 255))
    steps = []
    for t, m in enumerate(row.maps):
        heat = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * m), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        steps.append({"overlay": _jpeg(overlay(row.view, m), folder / f"{slug}_s{t + 1}.jpg"),
                      "map": _jpeg(heat, folder / f"{slug}_s{t + 1}_map.jpg"),
                      "class": row.names[t], "score": row.scores[t], "iou": row.ious[t], "box": row.boxes[t]})
    return {"input": _jpeg(view8, folder / f"{slug}_input.jpg"), "size": list(row.view.shape[1::-1]),
            "gt": None if row.gt is None else row.gt.astype(int).tolist(), "steps": steps}


def _with_groups(rows: dict[str, ModelRow], folder: Path, slugs: dict[str, str]) -> list[dict]:
    """The card's rows; ``group`` names the first row with the same input, so the page shows an
    input once for the models that saw it alike."""
    out, seen = [], []
    for m, r in rows.items():
        group = next((i for i, v in enumerate(seen) if v.shape == r.view.shape and np.array_equal(v, r.view)), len(seen))
        if group == len(seen):
            seen.append(r.view)
        out.append({"model": m, "group": group, **_cells(r, folder, slugs[m])})
    return out


def build_gallery(models: dict[str, nn.Module], images: Sequence[tuple], out_dir: str | os.PathLike,
                  method: str = "gradcam", title: str = "", progress: bool = True,
                  layer: str | None = None) -> GalleryReport:
    """One card (and one paper figure) per image comparing ``models`` step by step, plus
    ``index.html`` and a contact sheet.

    ``images``: ``(path, label or None, gt_boxes or None)``; GT boxes are inclusive
    ``[x0, y0, x1, y1]`` in original pixels. Unreadable images are skipped with one sentence
    each in ``problems``. Names are made safe and distinct (:func:`tdviz.outputs.safe_name`).
    """
    method = check_method(method)
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    report = GalleryReport(out_dir=out_dir, index_html=None, method=method)
    cards = []
    stems = unique_names(safe_name(Path(path).stem) for path, _, _ in images)
    slugs = dict(zip(models, unique_names(safe_name(m, "model") for m in models)))
    with image_progress("gallery", len(images), progress) as advance:
        for (path, label, gt), stem in zip(images, stems):
            advance(1)
            try:
                image = read_image(path, exif=gt is None)  # boxes are in the stored frame
            except ImageError as err:
                report.problems.append(f"{err} Skipped.")
                continue
            rows = {m: model_row(model, image, gt, method, layer) for m, model in models.items()}
            names = next(iter(rows.values())).class_names
            gt_name = names[label] if label is not None and 0 <= label < len(names) else None
            head = Path(path).name + (f" (GT: {gt_name})" if gt_name else "") + f" | {method}"
            fig = step_grid_figure([StepRow(m, r.view, r.maps, [f"step {t + 1}: {n}\n{100 * s:.0f}%"
                                                                 + (f" · IoU {i:.2f}" if i is not None else "")
                                                                 for t, (n, s, i) in enumerate(zip(r.names, r.scores, r.ious))],
                                            r.boxes, r.gt) for m, r in rows.items()],
                                   f"{title + ': ' if title else ''}{head}")
            png, pdf = save_figure(fig, out_dir / "figures" / stem, dpi=GALLERY_DPI)
            correct = label is not None and all(r.ids[-1] == label for r in rows.values())
            diffs = [float(np.abs(r.maps[t + 1] - r.maps[t]).mean()) for r in rows.values()
                     for t in range(len(r.maps) - 1)]
            steps = max(len(r.maps) for r in rows.values())
            report.figures.append(GalleryFigure(stem, png, pdf, (len(rows), steps + 1),
                                                {m: list(zip(r.names, r.scores)) for m, r in rows.items()},
                                                {m: r.ious for m, r in rows.items()}, correct,
                                                max(diffs) if diffs else None))
            folder = out_dir / "cells" / stem
            folder.mkdir(parents=True, exist_ok=True)
            cards.append({"name": stem, "file": Path(path).name, "class": gt_name or rows[list(models)[-1]].names[-1],
                          "gt_known": gt_name is not None, "correct": correct,
                          "change": max(diffs) if diffs else None, "png": f"figures/{stem}.png",
                          "pdf": f"figures/{stem}.pdf", "cells": f"cells/{stem}/",
                          "rows": _with_groups(rows, folder, slugs)})
    if report.figures:
        report.contact_sheet = contact_sheet([f.png for f in report.figures], out_dir / "contact_sheet.png",
                                             thumb_width=300)
    report.index_html = write_gallery_page(out_dir, cards, list(models), title or "tdviz gallery", method)
    return report


def demo_gallery(out_dir: str | os.PathLike, n: int = 12, seed: int = 0, progress: bool = True,
                 models: dict[str, nn.Module] | None = None, two_objects: bool = False,
                 method: str = "gradcam", layer: str | None = None) -> GalleryReport:
    """A gallery of the whole demo zoo (or ``models``) on the first ``n`` images of the cached
    demo validation split, with the split's GT boxes."""
    from .datasets import demo_class_index, load_dataset
    from .demo import make_demo_split
    from .models.demo_zoo import DEMO_MODELS, load_demo_model

    split = make_demo_split(n=n, seed=seed, two_objects=two_objects, workers=1)
    data = load_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())
    images = [(s.path, s.label, s.boxes) for s in sorted(data.samples, key=lambda s: s.image_id)[:n]]
    models = models or {name: load_demo_model(name) for name in DEMO_MODELS}
    kind = "two-object demo split" if two_objects else "demo split"
    with torch.enable_grad():
        return build_gallery(models, images, out_dir, method=method, title=f"{kind} (seed {seed})", progress=progress,
                             layer=layer)
