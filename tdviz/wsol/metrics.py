"""Streaming WSOL metrics: one ``update`` per image, ``result()`` at any time.

Every meter keeps only counts (never per-image maps), so 50 000 images cost a few kilobytes; its
``to_state()`` is a JSON-serialisable dict and ``from_state()`` rebuilds it, so a run can be
checkpointed and resumed; ``merge()`` adds the counts of a meter filled in another process. When
``update`` gets an ``image_id``, an id seen before is ignored (``update`` returns ``False``): a
resumed run may safely replay the batch it was interrupted in.

Meters:

* :class:`CamProtocolMeter`: top-1 / top-5 classification, top-1 / top-5 / GT-known localization
  from one box per predicted class (the Grad-CAM / ILSVRC protocol, the TDAM paper's Table 3).
* :class:`MaxBoxAccMeter`: MaxBoxAcc (v1) and MaxBoxAccV2 exactly as clovaai/wsolevaluation's
  ``BoxEvaluator``.
* :class:`PxAPMeter`: pixel average precision exactly as wsolevaluation's ``MaskEvaluator``.

All accuracies are reported in percent, as wsolevaluation does. An image whose ground truth
cannot give a metric (no GT box for the localization metrics, no mask for PxAP) is not counted by
that metric: each result carries its own image count, and a metric no image could give is ``None``
(reported as absent, never as 0).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import TdvizError
from ..imagefiles import check_pixel_budget
from .boxes import (
    WSOL_SIZE,
    box_iou,
    cam_threshold_grid,
    resize_boxes_wsol,
    wsol_best_ious,
    wsol_scoremap,
)

__all__ = [
    "CamProtocolMeter",
    "CamProtocolResult",
    "MaxBoxAccMeter",
    "MaxBoxAccResult",
    "PxAPMeter",
    "PxAPResult",
    "load_gt_mask",
    "meter_from_state",
]

_STATE_VERSION = 2


class _Meter:
    """Shared bookkeeping: image count, optional seen ids, state and merging."""

    def __init__(self) -> None:
        self.n = 0
        self._seen: set[str] = set()

    def _admit(self, image_id: str | None) -> bool:
        if image_id is None:
            return True
        if image_id in self._seen:
            return False
        self._seen.add(str(image_id))
        return True

    def _config(self) -> dict:
        raise NotImplementedError

    def _counts(self) -> dict:
        raise NotImplementedError

    def _set_counts(self, counts: dict) -> None:
        raise NotImplementedError

    def to_state(self) -> dict:
        """A JSON-serialisable snapshot (config, counts, seen image ids)."""
        return {"kind": type(self).__name__, "version": _STATE_VERSION, "config": self._config(),
                "n": self.n, "counts": self._counts(), "seen": sorted(self._seen)}

    @classmethod
    def from_state(cls, state: dict):
        """Rebuild a meter from :meth:`to_state`'s dict."""
        if state.get("kind") != cls.__name__ or state.get("version") != _STATE_VERSION:
            raise TdvizError(f"Saved meter state is a {state.get('kind')!r} v{state.get('version')}, "
                             f"not a {cls.__name__} v{_STATE_VERSION}: resume with the same tdviz version "
                             "and metric, or start the run again.")
        meter = cls(**state["config"])
        meter.n = int(state["n"])
        meter._seen = set(state.get("seen", []))
        meter._set_counts(state["counts"])
        return meter

    def merge(self, other: _Meter) -> None:
        """Add another meter's counts (same class and config; disjoint image ids)."""
        if type(other) is not type(self) or other._config() != self._config():
            raise ValueError("can only merge meters of the same kind and configuration")
        if self._seen & other._seen:
            raise ValueError(f"{len(self._seen & other._seen)} image ids were counted by both meters")
        mine, theirs = self._counts(), other._counts()
        self._set_counts({k: (np.asarray(mine[k]) + np.asarray(theirs[k])).tolist() for k in mine})
        self.n += other.n
        self._seen |= other._seen


# --------------------------------------------------------------------------- CAM (Grad-CAM / ILSVRC) protocol


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


class CamProtocolMeter(_Meter):
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


# --------------------------------------------------------------------------- MaxBoxAcc (v1 / V2)


@dataclass
class MaxBoxAccResult:
    """MaxBoxAcc per IoU threshold delta (percent), the tau attaining it, and their mean.

    ``value`` is wsolevaluation's reported number: the mean over the deltas (MaxBoxAccV2 for
    deltas 30/50/70 with multi-contour boxes; MaxBoxAcc v1 for delta 50 alone, largest contour).
    """

    n: int
    value: float
    per_delta: dict[int, float]
    best_threshold: dict[int, float]
    curves: dict[int, list[float]] = field(repr=False)
    thresholds: list[float] = field(repr=False)
    multi_contour: bool = True


class MaxBoxAccMeter(_Meter):
    """MaxBoxAcc / MaxBoxAccV2 exactly as clovaai/wsolevaluation's ``BoxEvaluator``.

    Per image, the map is made wsolevaluation's score map (:func:`~tdviz.wsol.boxes.wsol_scoremap`:
    float64, bicubic to 224², min-max) unless ``preprocessed=True``; at every tau of
    ``np.arange(0, 1, cam_curve_interval)`` its boxes are extracted (largest contour, or every
    contour with ``multi_contour``); the image is correct at (delta, tau) when the best IoU over
    its boxes x GT boxes is ``>= delta / 100``. ``result()``: for each delta, the maximum over tau
    of ``correct * 100 / n``; the reported value is their mean over the deltas.

    ``MaxBoxAccMeter.v2()`` = deltas (30, 50, 70) + multi-contour (their ``multi_iou_eval`` and
    ``multi_contour_eval``); ``MaxBoxAccMeter.v1()`` = delta 50 + largest contour.
    """

    def __init__(self, deltas: Sequence[int] = (30, 50, 70), multi_contour: bool = True,
                 cam_curve_interval: float = 0.01, box_convention: str = "wsolevaluation") -> None:
        super().__init__()
        self.deltas = [int(d) for d in deltas]
        if not self.deltas or any(not 0 < d <= 100 for d in self.deltas):
            raise ValueError("deltas must be IoU thresholds in percent, e.g. (30, 50, 70)")
        self.multi_contour = bool(multi_contour)
        self.cam_curve_interval = float(cam_curve_interval)
        self.box_convention = box_convention
        self.thresholds = cam_threshold_grid(self.cam_curve_interval)
        self.correct = np.zeros((len(self.deltas), len(self.thresholds)), np.int64)

    @classmethod
    def v1(cls, cam_curve_interval: float = 0.01) -> MaxBoxAccMeter:
        """MaxBoxAcc: IoU 0.5, largest contour only."""
        return cls(deltas=(50,), multi_contour=False, cam_curve_interval=cam_curve_interval)

    @classmethod
    def v2(cls, cam_curve_interval: float = 0.01) -> MaxBoxAccMeter:
        """MaxBoxAccV2: mean over IoU 0.3/0.5/0.7, every contour."""
        return cls(deltas=(30, 50, 70), multi_contour=True, cam_curve_interval=cam_curve_interval)

    def _config(self) -> dict:
        return {"deltas": list(self.deltas), "multi_contour": self.multi_contour,
                "cam_curve_interval": self.cam_curve_interval, "box_convention": self.box_convention}

    def _counts(self) -> dict:
        return {"correct": self.correct.tolist()}

    def _set_counts(self, counts: dict) -> None:
        self.correct = np.asarray(counts["correct"], np.int64).reshape(len(self.deltas), len(self.thresholds))

    def update(self, cam: np.ndarray, gt_boxes, image_size: tuple[int, int] | None = None, *,
               preprocessed: bool = False, image_id: str | None = None) -> bool:
        """Count one image.

        Args:
            cam: the raw class map at any resolution (or the 224² score map with ``preprocessed``).
            gt_boxes: [K, 4] GT boxes; in original pixels when ``image_size=(width, height)`` is
                given (mapped by wsolevaluation's ``resize_bbox``), else already in the 224² frame
                (e.g. through :meth:`tdviz.images.Preprocess.box_to_input` for a center crop).
            preprocessed: ``cam`` is already :func:`~tdviz.wsol.boxes.wsol_scoremap`'s output.
            image_id: skip the image if this id was counted already.
        """
        if image_id is not None and image_id in self._seen:
            return False
        scoremap = np.asarray(cam, np.float64) if preprocessed else wsol_scoremap(cam)
        gt = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        if image_size is not None:
            gt = resize_boxes_wsol(gt, image_size[0], image_size[1], size=scoremap.shape[1])
        v1, v2 = wsol_best_ious(scoremap, gt, self.thresholds, box_convention=self.box_convention)
        return self.update_ious(v2 if self.multi_contour else v1, image_id=image_id)

    def update_ious(self, best_ious: np.ndarray, *, image_id: str | None = None) -> bool:
        """Count one image from its best IoU per threshold (one of :func:`wsol_best_ious`'s arrays),
        so that v1 and V2 meters can share one box extraction. NaN IoUs (no GT box) count nothing
        and return ``False``."""
        ious = np.asarray(best_ious, np.float64).reshape(-1)
        if len(ious) != len(self.thresholds):
            raise ValueError(f"expected {len(self.thresholds)} IoUs (one per threshold), got {len(ious)}")
        if np.isnan(ious).any() or not self._admit(image_id):
            return False
        self.add_ious(ious[None])
        return True

    def add_ious(self, best_ious: np.ndarray) -> None:
        """Count images from their best IoU per threshold, [N, thresholds] (many :meth:`update_ious`);
        a row of NaN (an image without GT boxes) is not counted."""
        ious = np.asarray(best_ious, np.float64).reshape(-1, len(self.thresholds))
        ious = ious[~np.isnan(ious).any(axis=1)]
        for i, delta in enumerate(self.deltas):
            self.correct[i] += (ious >= (delta / 100)).sum(axis=0)
        self.n += len(ious)

    def result(self) -> MaxBoxAccResult:
        """MaxBoxAcc per delta and their mean, in percent (NaN before the first image)."""
        taus = self.thresholds.tolist()
        if not self.n:
            nan = {d: float("nan") for d in self.deltas}
            return MaxBoxAccResult(0, float("nan"), nan, dict(nan), {d: [] for d in self.deltas}, taus,
                                   self.multi_contour)
        acc = self.correct * 100.0 / float(self.n)
        best = acc.max(axis=1)
        return MaxBoxAccResult(
            n=self.n, value=float(np.average(best)),
            per_delta={d: float(best[i]) for i, d in enumerate(self.deltas)},
            best_threshold={d: taus[int(np.argmax(acc[i]))] for i, d in enumerate(self.deltas)},
            curves={d: acc[i].tolist() for i, d in enumerate(self.deltas)}, thresholds=taus,
            multi_contour=self.multi_contour)


# --------------------------------------------------------------------------- PxAP


@dataclass
class PxAPResult:
    """Pixel average precision (percent) and the PR curve it integrates (highest threshold first)."""

    n: int
    pxap: float
    precision: list[float] = field(repr=False)
    recall: list[float] = field(repr=False)
    thresholds: list[float] = field(repr=False)


def load_gt_mask(mask_paths: Sequence[str | os.PathLike], ignore_path: str | os.PathLike | None = None,
                 size: int = WSOL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and ignore masks at ``size`` x ``size``, as wsolevaluation's ``get_mask``.

    Each PNG is read as grayscale float32, resized with ``cv2.INTER_NEAREST`` and binarized at
    ``> 0.5``; the foreground is the union of the instances, the ignore region is the ignore mask
    minus the foreground. ``ignore_path=None``: nothing is ignored. Returns two bool arrays.
    """
    def read(path) -> np.ndarray:
        if not Path(path).is_file():
            raise TdvizError(f"Mask {str(path)!r} is missing: check the mask root.")
        check_pixel_budget(path, "Mask")  # before OpenCV decodes it
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise TdvizError(f"Mask {str(path)!r} is not an image OpenCV can read: re-export it as a PNG.")
        return cv2.resize(np.float32(img), (size, size), interpolation=cv2.INTER_NEAREST) > 0.5

    if not mask_paths:
        raise TdvizError("No mask paths were given for the image: its metadata needs at least one mask line.")
    fg = np.stack([read(p) for p in mask_paths]).any(axis=0)
    ignore = read(ignore_path) & ~fg if ignore_path is not None else np.zeros_like(fg)
    return fg, ignore


class PxAPMeter(_Meter):
    """PxAP exactly as clovaai/wsolevaluation's ``MaskEvaluator``.

    Bins are ``np.append(np.arange(0, 1, interval), [1, 2, 3])``; per image the score map values
    (the float map, not the quantized one) at foreground pixels and at background pixels (the
    ignore region excluded) are histogrammed with ``np.histogram`` into them. At the end, from the
    highest bin down, ``tp`` / ``fp`` are the cumulative counts, ``precision = tp / (tp + fp)``,
    ``recall = tp / n_pos``, and PxAP = ``100 * sum(precision[1:] * diff(recall))`` over entries
    with ``tp + fp != 0``. With no foreground pixel at all the result is NaN (they raise).
    """

    def __init__(self, cam_curve_interval: float = 0.01) -> None:
        super().__init__()
        self.cam_curve_interval = float(cam_curve_interval)
        self.thresholds = cam_threshold_grid(self.cam_curve_interval)
        self.edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self.hist_true = np.zeros(len(self.edges) - 1, np.int64)
        self.hist_false = np.zeros(len(self.edges) - 1, np.int64)

    def _config(self) -> dict:
        return {"cam_curve_interval": self.cam_curve_interval}

    def _counts(self) -> dict:
        return {"hist_true": self.hist_true.tolist(), "hist_false": self.hist_false.tolist()}

    def _set_counts(self, counts: dict) -> None:
        self.hist_true = np.asarray(counts["hist_true"], np.int64)
        self.hist_false = np.asarray(counts["hist_false"], np.int64)

    def update(self, cam: np.ndarray, gt_mask: np.ndarray, ignore_mask: np.ndarray | None = None, *,
               preprocessed: bool = False, image_id: str | None = None) -> bool:
        """Count one image.

        Args:
            cam: raw class map (or :func:`~tdviz.wsol.boxes.wsol_scoremap`'s output with
                ``preprocessed``).
            gt_mask: bool foreground mask in the score map's frame (224², see :func:`load_gt_mask`).
            ignore_mask: bool region to leave out (its foreground pixels are kept), or ``None``.
            image_id: skip the image if this id was counted already.
        """
        if image_id is not None and image_id in self._seen:
            return False
        scoremap = np.asarray(cam, np.float64) if preprocessed else wsol_scoremap(cam)
        return self.update_histograms(*self.histograms(scoremap, gt_mask, ignore_mask), image_id=image_id)

    def histograms(self, scoremap: np.ndarray, gt_mask: np.ndarray, ignore_mask: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray]:
        """One image's (foreground, background) score histograms over this meter's bins, from an
        already preprocessed score map; a worker process can compute them for
        :meth:`update_histograms`."""
        scoremap = np.asarray(scoremap, np.float64)
        fg = np.asarray(gt_mask).astype(bool)
        if fg.shape != scoremap.shape:
            raise ValueError(f"gt_mask shape {fg.shape} differs from the score map's {scoremap.shape}")
        ignore = np.zeros_like(fg) if ignore_mask is None else np.asarray(ignore_mask).astype(bool) & ~fg
        return (np.histogram(scoremap[fg], bins=self.edges)[0],
                np.histogram(scoremap[~fg & ~ignore], bins=self.edges)[0])

    def update_histograms(self, hist_true: np.ndarray, hist_false: np.ndarray, *,
                          image_id: str | None = None) -> bool:
        """Count one image from :meth:`histograms`' output."""
        if not self._admit(image_id):
            return False
        self.add_histograms(np.asarray(hist_true)[None], np.asarray(hist_false)[None])
        return True

    def add_histograms(self, hist_true: np.ndarray, hist_false: np.ndarray) -> None:
        """Count images from their :meth:`histograms`, each [N, bins]; a row of -1 (an image
        without a mask) is not counted."""
        bins = len(self.edges) - 1
        true = np.asarray(hist_true, np.int64).reshape(-1, bins)
        false = np.asarray(hist_false, np.int64).reshape(-1, bins)
        keep = (true >= 0).all(axis=1) & (false >= 0).all(axis=1)
        self.hist_true += true[keep].sum(axis=0)
        self.hist_false += false[keep].sum(axis=0)
        self.n += int(keep.sum())

    def result(self) -> PxAPResult:
        """PxAP in percent and the PR curve (NaN PxAP without any foreground pixel)."""
        true = self.hist_true.astype(np.float64)
        false = self.hist_false.astype(np.float64)
        tp = true[::-1].cumsum()
        fp = false[::-1].cumsum()
        fn = true.sum() - tp
        taus = self.edges[:-1][::-1].tolist()
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
        if not ((tp + fn) > 0).any() or not ((tp + fp) > 0).any():
            return PxAPResult(self.n, float("nan"), precision.tolist(), recall.tolist(), taus)
        valid = (tp + fp) != 0
        pxap = float((precision[1:] * np.diff(recall))[valid[1:]].sum() * 100)
        return PxAPResult(self.n, pxap, precision.tolist(), recall.tolist(), taus)


def meter_from_state(state: dict):
    """Any meter from its :meth:`to_state` dict (dispatch on ``state["kind"]``)."""
    kinds = {c.__name__: c for c in (CamProtocolMeter, MaxBoxAccMeter, PxAPMeter)}
    if state.get("kind") not in kinds:
        raise TdvizError(f"Saved meter state of kind {state.get('kind')!r} is unknown: expected one of "
                         f"{', '.join(kinds)}.")
    return kinds[state["kind"]].from_state(state)

