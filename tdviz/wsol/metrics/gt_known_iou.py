"""GT-known localization at several IoU thresholds (30, 50, 70 %), as wsolevaluation reports
its boxes at δ 30/50/70: the box of the ground-truth class's map (the cam protocol's rule) is
correct at δ when its IoU with a GT box of that class is >= δ / 100. Ask for it by name
(``tdviz wsol --metric gt_known_iou``); images without a GT box are not counted."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..boxes import box_iou
from .base import Meter, MetricSpec, meter_kind, register

__all__ = ["GTKnownIoUMeter"]


@meter_kind
class GTKnownIoUMeter(Meter):
    """GT-known loc (percent) at each IoU threshold in ``deltas`` (percent)."""

    def __init__(self, deltas: Sequence[int] = (30, 50, 70)) -> None:
        super().__init__()
        self.deltas = [int(d) for d in deltas]
        self.correct = np.zeros(len(self.deltas), np.int64)

    def _config(self) -> dict:
        return {"deltas": list(self.deltas)}

    def _counts(self) -> dict:
        return {"correct": self.correct.tolist()}

    def _set_counts(self, counts: dict) -> None:
        self.correct = np.asarray(counts["correct"], np.int64)

    def rows(self, ev) -> np.ndarray:
        """[N, T, deltas] 1/0 per threshold (-1: the image has no GT box of its class)."""
        out = np.full((len(ev.images), ev.steps, len(self.deltas)), -1, np.int64)
        cuts = np.asarray(self.deltas) / 100
        for b, image in enumerate(ev.images):
            gt = image.boxes[np.asarray(image.box_labels).reshape(-1) == image.label]
            if not len(gt):
                continue
            iou = box_iou(ev.cam_boxes[b, :, -1], gt).max(axis=1)  # [T]: the GT class's box per step
            out[b] = iou[:, None] >= cuts[None, :]
        return out

    def add_rows(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64).reshape(-1, len(self.deltas))
        counted = rows[:, 0] >= 0
        self.correct += rows[counted].sum(axis=0)
        self.n += int(counted.sum())

    def report(self) -> dict:
        if not self.n:
            return {}
        return {f"gt_known_loc_{d}": float(c * 100.0 / self.n) for d, c in zip(self.deltas, self.correct)}


register(MetricSpec("gt_known_iou", "cam", lambda o: GTKnownIoUMeter(),
                    tuple((f"gt_known_loc_{d}", f"GT-known@{d}") for d in (30, 50, 70)), default=False))
