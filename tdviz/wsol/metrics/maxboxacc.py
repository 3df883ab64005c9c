"""MaxBoxAcc and MaxBoxAccV2, exactly as clovaai/wsolevaluation's ``BoxEvaluator``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..scoremaps import cam_threshold_grid, resize_boxes_wsol, wsol_best_ious, wsol_scoremap
from .base import Meter, MetricSpec, meter_kind, register

__all__ = ["MaxBoxAccMeter", "MaxBoxAccResult"]


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


@meter_kind
class MaxBoxAccMeter(Meter):
    """MaxBoxAcc / MaxBoxAccV2 exactly as clovaai/wsolevaluation's ``BoxEvaluator``.

    Per image, the map is made wsolevaluation's score map (:func:`~tdviz.wsol.scoremaps.wsol_scoremap`:
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
            preprocessed: ``cam`` is already :func:`~tdviz.wsol.scoremaps.wsol_scoremap`'s output.
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

    def rows(self, ev) -> np.ndarray:
        """[N, T, thresholds] best IoUs per image and step (NaN: no GT box), from the evidence's
        one pass over every threshold."""
        if ev.thresholds is not None and not np.array_equal(ev.thresholds, self.thresholds):
            raise ValueError("the evidence was computed on another threshold grid")
        v1, v2 = ev.best_ious(inclusive=self.box_convention == "inclusive")
        return v2 if self.multi_contour else v1

    def add_rows(self, rows: np.ndarray) -> None:
        self.add_ious(rows)

    def report(self) -> dict:
        if not self.n:
            return {}
        r = self.result()
        row = {self.name: r.value, "n_boxes": r.n}
        if len(self.deltas) > 1:
            row[f"{self.name}_per_delta"] = r.per_delta
        return row

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


register(MetricSpec("maxboxacc_v2", "wsol", lambda o: MaxBoxAccMeter((30, 50, 70), True, o.cam_curve_interval),
                    (("maxboxacc_v2", "MaxBoxAccV2"),)))
register(MetricSpec("maxboxacc", "wsol", lambda o: MaxBoxAccMeter((50,), False, o.cam_curve_interval),
                    (("maxboxacc", "MaxBoxAcc"),)))
