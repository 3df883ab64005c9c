"""Attention shift across computation steps (TDAM's multi-object analysis).

For an image with several ground-truth objects, each computation step's map (its own
top-1 class, Grad-CAM by default) gives one box by the Grad-CAM rule
(:func:`tdviz.wsol.boxes.cam_boxes`); the step *localizes* the GT object whose box it
overlaps best when that IoU is >= 0.5. A model "shifts" its attention when different
steps localize different objects.

Conventions (all IoUs are the inclusive ``+1`` :func:`~tdviz.wsol.boxes.box_iou`):

* a step with no box (an all-zero map) is a NaN row; it localizes nothing, IoU 0;
* ``frac_changed``: among images where **at least two steps localize some object**
  (``n_multi_localized`` of them), the fraction whose localized objects are not all
  the same; 0.0 when there is no such image (e.g. one-step models).
  ``frac_changed_all`` is the same count over **all** images;
* ``frac_cover_all``: images whose steps together localize every GT object (over all
  images);
* ``frac_unique_maps``: images with at least one pair of steps whose boxes have
  IoU < 0.5 with each other (the paper's "unique maps" rule); only steps that have a
  box are paired, so a one-step model, or one with at most one box, never counts;
* ``mean_iou_per_step[t]``: mean over images of step t's best IoU with any GT object;
* ``localized_per_step[t]``: fraction of images where step t localizes some object.

All fractions except ``frac_changed`` are over ``n_images``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .wsol.boxes import box_iou, cam_boxes

__all__ = [
    "ShiftMeter",
    "ShiftRecord",
    "ShiftStats",
    "attention_shift",
    "localized_objects",
    "run_shift_demo",
]


def _step_gt_iou(step_boxes, gt_boxes) -> np.ndarray:
    """IoU [T, G] of every step box with every GT box (NaN rows -> 0)."""
    return box_iou(
        np.asarray(step_boxes, np.float64).reshape(-1, 4),
        np.asarray(gt_boxes).reshape(-1, 4),
    )


def localized_objects(
    step_boxes: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float = 0.5
) -> list[int | None]:
    """Per step, the GT object its box overlaps most, if that IoU >= ``iou_threshold``.

    ``step_boxes`` [T, 4] (a NaN row = the step has no box), ``gt_boxes`` [G, 4], both
    inclusive pixel boxes in one frame. Returns a list of T entries: an int in
    ``0..G-1`` or ``None``.
    """
    iou = _step_gt_iou(step_boxes, gt_boxes)
    if iou.shape[1] == 0:
        return [None] * iou.shape[0]
    best = iou.argmax(1)
    return [int(g) if iou[t, g] >= iou_threshold else None for t, g in enumerate(best)]


@dataclass
class ShiftStats:
    """Attention-shift statistics (denominators: see the module docstring)."""

    n_images: int
    n_multi_localized: int
    frac_changed: float
    frac_changed_all: float
    frac_cover_all: float
    frac_unique_maps: float
    mean_iou_per_step: list[float] = field(default_factory=list)
    localized_per_step: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return asdict(self)


class ShiftMeter:
    """Streaming :class:`ShiftStats`: ``update`` per image, then ``result``."""

    def __init__(
        self, iou_threshold: float = 0.5, unique_threshold: float = 0.5
    ) -> None:
        self.iou_threshold = iou_threshold
        self.unique_threshold = unique_threshold
        self.n = self.multi = self.changed = self.cover = self.unique = 0
        self.iou_sum: np.ndarray | None = None
        self.loc_sum: np.ndarray | None = None

    def update(self, step_boxes: np.ndarray, gt_boxes: np.ndarray) -> list[int | None]:
        """Add one image: ``step_boxes`` [T, 4] (NaN row = no box), ``gt_boxes`` [G, 4].
        Returns the image's localized object per step."""
        boxes = np.asarray(step_boxes, np.float64).reshape(-1, 4)
        gt = np.asarray(gt_boxes).reshape(-1, 4)
        iou = _step_gt_iou(boxes, gt)
        loc = localized_objects(boxes, gt, self.iou_threshold)
        if self.iou_sum is None:
            self.iou_sum = np.zeros(len(boxes))
            self.loc_sum = np.zeros(len(boxes))
        elif len(boxes) != len(self.iou_sum):
            raise ValueError(
                f"every image needs {len(self.iou_sum)} steps, got {len(boxes)}"
            )
        self.n += 1
        self.iou_sum += iou.max(1) if iou.shape[1] else 0.0
        self.loc_sum += [g is not None for g in loc]
        found = [g for g in loc if g is not None]
        if len(found) >= 2:
            self.multi += 1
            self.changed += len(set(found)) > 1
        self.cover += len(gt) > 0 and set(found) == set(range(len(gt)))
        have = boxes[~np.isnan(boxes).any(1)]
        if len(have) >= 2:
            pair = box_iou(have, have)[np.triu_indices(len(have), 1)]
            self.unique += bool((pair < self.unique_threshold).any())
        return loc

    def result(self) -> ShiftStats:
        """The statistics so far (all zeros before any update)."""
        n = max(self.n, 1)
        steps = self.iou_sum if self.iou_sum is not None else np.zeros(0)
        locs = self.loc_sum if self.loc_sum is not None else np.zeros(0)
        return ShiftStats(
            n_images=self.n,
            n_multi_localized=self.multi,
            frac_changed=self.changed / self.multi if self.multi else 0.0,
            frac_changed_all=self.changed / n,
            frac_cover_all=self.cover / n,
            frac_unique_maps=self.unique / n,
            mean_iou_per_step=[float(v) / n for v in steps],
            localized_per_step=[float(v) / n for v in locs],
        )


def attention_shift(
    model: torch.nn.Module,
    images_tensor: torch.Tensor,
    gt_boxes,
    method: str = "gradcam",
    ratio: float = 0.15,
    iou_threshold: float = 0.5,
    layer: str | None = None,
):
    """Which GT object each computation step localizes, for a batch.

    Each step's map is its own top-1 class's CAM
    (``step_cams(..., classes="topk", k=1)``) and its box is :func:`cam_boxes`
    (``ratio`` of the max, largest component). ``gt_boxes``: per image a [G, 4] array of
    inclusive boxes in the input frame. Returns ``(localized, boxes)``: per image a list
    of T entries (GT index or ``None``), and float64 step boxes [B, T, 4] (NaN rows =
    no box). Maps at ``layer`` (default: the model record's feature layer).
    """
    from .cam import step_cams

    maps = step_cams(model, images_tensor, layer=layer, method=method, classes="topk", k=1).maps[
        :, :, 0
    ]
    maps = maps.detach().float().cpu().numpy()
    b, t = maps.shape[:2]
    boxes = np.full((b, t, 4), np.nan)
    for i in range(b):
        for s in range(t):
            found = cam_boxes(maps[i, s], ratio=ratio)
            if len(found):
                boxes[i, s] = found[0]
    localized = [
        localized_objects(boxes[i], gt_boxes[i], iou_threshold) for i in range(b)
    ]
    return localized, boxes


def run_shift_demo(
    model_names: list[str],
    n: int = 200,
    seed: int = 0,
    batch_size: int = 32,
    method: str = "gradcam",
    device: str | None = None,
) -> dict[str, ShiftStats]:
    """:class:`ShiftStats` of demo-zoo models on the first ``n`` two-object val canvases
    (``seed``), rendered in memory and batched; every model sees the same images."""
    from .demo.canvas import load_source
    from .demo.dataset import to_tensor
    from .demo.generators import render_sample
    from .models.demo_zoo import load_demo_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    images, labels = load_source("val")
    samples = [
        render_sample("val", i, seed, images, labels, two_objects=True)
        for i in range(n)
    ]
    results = {}
    for name in model_names:
        model = load_demo_model(name, device)
        meter = ShiftMeter()
        for start in range(0, n, batch_size):
            chunk = samples[start : start + batch_size]
            x = torch.stack([to_tensor(s.image) for s in chunk]).to(device)
            _, boxes = attention_shift(
                model, x, [s.boxes for s in chunk], method=method
            )
            for s, step_boxes in zip(chunk, boxes):
                meter.update(step_boxes, s.boxes)
        results[name] = meter.result()
    return results


@dataclass
class ShiftRecord:
    """One image, model and step: the GT object its box localizes (index, class, and whether it
    is the image's labelled object; ``None`` when it localizes none), the best IoU with any GT
    object, and its box (inclusive, model input pixels; ``None``: the map gave no box)."""

    image_id: str
    model: str
    step: int
    localized: int | None
    localized_class: int | None
    is_label: bool | None
    iou: float
    box: list[float] | None


def run_shift(models: dict, samples, batch_size: int = 16, method: str = "gradcam",
              progress: bool = True, records: list | None = None,
              layer: str | None = None) -> tuple[dict[str, ShiftStats], list[str]]:
    """:class:`ShiftStats` of ``models`` on annotated images with several objects each
    (``samples``: :class:`tdviz.datasets.Sample` records, e.g. from a COCO json or ILSVRC XML).
    GT boxes are mapped into each model's input frame; images with fewer than two boxes are
    skipped and counted, as are unreadable ones. ``records``, when given, receives a
    :class:`ShiftRecord` per image, model and step. ``layer``: the CAM layer of every model
    (default: each model record's feature layer)."""
    from .images import ImageError, Preprocess, read_image
    from .progress import image_progress

    meters = {name: ShiftMeter() for name in models}
    skipped: list[str] = []
    usable = []
    for s in samples:
        if len(s.boxes) < 2:
            skipped.append(f"{s.path}: {len(s.boxes)} object(s); the shift analysis needs two or more.")
        else:
            usable.append(s)
    with image_progress("attention shift", len(usable), progress) as advance:
        for start in range(0, len(usable), batch_size):
            batch = []
            for s in usable[start:start + batch_size]:
                try:
                    batch.append((s, read_image(s.path, exif=False)))  # the boxes' frame
                except ImageError as exc:
                    skipped.append(str(exc))
            for name, model in models.items():
                if not batch:
                    break
                pre = Preprocess.for_model(model)
                x = torch.stack([pre(img) for _, img in batch]).to(next(model.parameters()).device)
                gts = [np.asarray([pre.box_to_input([b[0], b[1], b[2] + 1, b[3] + 1], img.shape[1], img.shape[0])
                                   for b in s.boxes]) - np.array([0, 0, 1, 1]) for s, img in batch]
                _, boxes = attention_shift(model, x, gts, method=method, layer=layer)
                for i, gt in enumerate(gts):
                    loc = meters[name].update(boxes[i], gt)
                    if records is not None:
                        records += _records(batch[i][0], name, boxes[i], gt, loc)
            advance(min(batch_size, len(usable) - start))
    return {name: m.result() for name, m in meters.items()}, skipped


def _records(sample, model: str, boxes: np.ndarray, gt: np.ndarray, loc: list[int | None]) -> list[ShiftRecord]:
    iou = _step_gt_iou(boxes, gt)
    labels = np.asarray(sample.box_labels).reshape(-1)
    out = []
    for t, g in enumerate(loc):
        cls = int(labels[g]) if g is not None and len(labels) > g else None
        out.append(ShiftRecord(sample.image_id, model, t + 1, g, cls, None if cls is None else cls == int(sample.label),
                               float(iou[t].max()) if iou.shape[1] else 0.0,
                               None if np.isnan(boxes[t]).any() else [float(v) for v in boxes[t]]))
    return out
