"""The cam protocol (the TDAM paper's Table 3, Grad-CAM's rule): top-1 / top-k classification
and top-1 / top-k / GT-known localization, one box per predicted class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..boxes import box_iou
from .base import Meter, MetricSpec, meter_kind, register

__all__ = ["CamProtocolMeter", "CamProtocolResult"]


@dataclass
class CamProtocolResult:
    """Accuracies in percent: classification over ``n`` images, localization over the ``n_loc`` of
    them that have GT boxes (``None`` when none has)."""

    n: int
    top1_cls: float
    top5_cls: float
    top1_loc: float | None
    top5_loc: float | None
    gt_known_loc: float | None
    iou_threshold: float
    topk: int
    n_loc: int = 0  # images with GT boxes: the denominator of the three localization accuracies


@meter_kind
class CamProtocolMeter(Meter):
    """Top-1/top-k classification and localization accuracy (ILSVRC localization protocol).

    Per image: the top-k predicted classes (best first), one predicted box per predicted class
    (from that class's map), the GT label and GT boxes.

    * top-1 loc: the top-1 class is the GT label **and** its box has IoU >= ``iou_threshold`` with
      at least one GT box;
    * top-k loc: some of the k predictions is the GT label with such a box;
    * GT-known loc: the box from the GT class's map has such an IoU (class prediction ignored);
    * IoU: inclusive ``+1`` formula (:func:`~tdviz.wsol.boxes.box_iou`); ``>=`` by default
      (ILSVRC and wsolevaluation), ``strict=True`` uses ``>``; a missing box (NaN row or ``None``)
      never localizes.

    When ``gt_box_labels`` is given, only GT boxes of the GT label count (images with objects of
    several classes); otherwise every GT box counts, as on ILSVRC val where all boxes share the
    image's class. GT and predicted boxes must be in the same frame (input or original pixels).
    """

    def __init__(self, iou_threshold: float = 0.5, strict: bool = False, topk: int = 5) -> None:
        super().__init__()
        self.iou_threshold = float(iou_threshold)
        self.strict = bool(strict)
        self.topk = int(topk)
        self.hits = np.zeros(5, np.int64)  # top1_cls, topk_cls, top1_loc, topk_loc, gt_known_loc
        self.n_loc = 0  # images with GT boxes (the localization columns' denominator)

    def _config(self) -> dict:
        return {"iou_threshold": self.iou_threshold, "strict": self.strict, "topk": self.topk}

    def _counts(self) -> dict:
        return {"hits": self.hits.tolist(), "n_loc": self.n_loc}

    def _set_counts(self, counts: dict) -> None:
        self.hits = np.asarray(counts["hits"], np.int64)
        self.n_loc = int(counts["n_loc"])

    def _ok(self, iou: np.ndarray) -> np.ndarray:
        return iou > self.iou_threshold if self.strict else iou >= self.iou_threshold

    def update(self, topk_classes: Sequence[int], pred_boxes, gt_label: int, gt_boxes, *,
               gt_known_box=None, gt_box_labels=None, image_id: str | None = None) -> bool:
        """Count one image.

        Args:
            topk_classes: predicted classes, best first (``topk`` of them; more are cut).
            pred_boxes: [k, 4] boxes, row i from class ``topk_classes[i]``'s map; a NaN row or
                ``None`` entry means no box.
            gt_label: the image's class.
            gt_boxes: [K, 4] GT boxes.
            gt_known_box: the box from the GT class's map; needed only when ``gt_label`` is not
                among ``topk_classes`` (otherwise that row of ``pred_boxes`` is used).
            gt_box_labels: [K] class of each GT box (optional, see the class docstring).
            image_id: skip the image if this id was counted already.

        Returns:
            whether the image was counted.
        """
        if not self._admit(image_id):
            return False
        self.add_hits(self.hits_of(topk_classes, pred_boxes, gt_label, gt_boxes, gt_known_box=gt_known_box,
                                   gt_box_labels=gt_box_labels))
        return True

    def hits_of(self, topk_classes: Sequence[int], pred_boxes, gt_label: int, gt_boxes, *,
                gt_known_box=None, gt_box_labels=None) -> np.ndarray:
        """One image's int64 [5] hits (top-1 cls, top-k cls, top-1 loc, top-k loc, GT-known loc)
        without counting it: :meth:`update`'s arguments; a worker process can compute them for
        :meth:`add_hits`. The three localization entries are -1 (not measurable) when the image
        has no GT box (of its label, with ``gt_box_labels``)."""
        classes = [int(c) for c in list(topk_classes)[: self.topk]]
        boxes = _boxes_or_nan(pred_boxes, len(classes))
        gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        if gt_box_labels is not None:
            gt = gt[np.asarray(gt_box_labels).reshape(-1) == int(gt_label)]
        correct = np.array([c == int(gt_label) for c in classes], bool)
        if not len(gt):
            return np.array([correct[:1].any(), correct.any(), -1, -1, -1], np.int64)
        if gt_known_box is None:
            if int(gt_label) not in classes:
                raise ValueError("gt_known_box is needed when the GT label is not among the top-k classes")
            known = boxes[classes.index(int(gt_label))][None]
        else:
            known = _boxes_or_nan([gt_known_box], 1)
        good = self._ok(box_iou(boxes, gt).max(axis=1))
        known_ok = bool(self._ok(box_iou(known, gt).max(axis=1))[0])
        return np.array([correct[:1].any(), correct.any(), (correct & good)[:1].any(),
                         (correct & good).any(), known_ok], np.int64)

    def add_hits(self, hits: np.ndarray) -> None:
        """Count images from their :meth:`hits_of` rows, int [N, 5] (localization entries -1: the
        image has no GT box and counts for classification only)."""
        hits = np.asarray(hits, np.int64).reshape(-1, 5)
        located = hits[:, 2] >= 0
        self.hits[:2] += hits[:, :2].sum(axis=0)
        self.hits[2:] += hits[located, 2:].sum(axis=0)
        self.n += len(hits)
        self.n_loc += int(located.sum())

    def rows(self, ev) -> np.ndarray:
        """[N, T, 5] hits per image and step (:meth:`hits_of`) from the evidence's boxes."""
        k = self.topk
        out = np.zeros((len(ev.images), ev.steps, 5), np.int64)
        for b, image in enumerate(ev.images):
            for t in range(ev.steps):
                boxes = ev.cam_boxes[b, t]
                out[b, t] = self.hits_of(ev.class_ids[b, t, :k], boxes[:k], image.label, image.boxes,
                                         gt_known_box=boxes[-1], gt_box_labels=image.box_labels)
        return out

    def add_rows(self, rows: np.ndarray) -> None:
        self.add_hits(rows)

    def report(self) -> dict:
        if not self.n:
            return {}
        r = self.result()
        row = {"top1_cls": r.top1_cls, "top5_cls": r.top5_cls, "n": r.n}
        if r.n_loc:
            row.update(top1_loc=r.top1_loc, top5_loc=r.top5_loc, gt_known_loc=r.gt_known_loc, n_boxes=r.n_loc)
        return row

    def result(self) -> CamProtocolResult:
        """Accuracies so far, in percent (NaN before the first image; localization ``None``
        while no image with a GT box was counted)."""
        cls = self.hits[:2] * 100.0 / self.n if self.n else np.full(2, np.nan)
        loc = [float(v) for v in self.hits[2:] * 100.0 / self.n_loc] if self.n_loc else [None] * 3
        return CamProtocolResult(self.n, float(cls[0]), float(cls[1]), *loc, iou_threshold=self.iou_threshold,
                                 topk=self.topk, n_loc=self.n_loc)


def _boxes_or_nan(boxes, k: int) -> np.ndarray:
    if boxes is None:
        return np.full((k, 4), np.nan)
    rows = [np.full(4, np.nan) if b is None or np.size(b) == 0 else np.asarray(b, np.float64).reshape(4)
            for b in list(boxes)]
    out = np.asarray(rows, np.float64).reshape(-1, 4)
    if len(out) < k:
        raise ValueError(f"pred_boxes has {len(out)} rows for {k} classes")
    return out[:k]


register(MetricSpec("cam", "cam", lambda o: CamProtocolMeter(iou_threshold=o.iou_threshold, topk=o.topk),
                    (("top1_cls", "top-1 cls"), ("top5_cls", "top-5 cls"), ("top1_loc", "top-1 loc"),
                     ("top5_loc", "top-5 loc"), ("gt_known_loc", "GT-known loc"))))
