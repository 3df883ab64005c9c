"""PxAP (pixel average precision), exactly as clovaai/wsolevaluation's ``MaskEvaluator``, and
reading its ground-truth masks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ...errors import TdvizError
from ...imagefiles import check_pixel_budget
from ..scoremaps import WSOL_SIZE, cam_threshold_grid, wsol_scoremap
from .base import Meter, MetricSpec, meter_kind, register

__all__ = ["PxAPMeter", "PxAPResult", "load_gt_mask"]


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


@meter_kind
class PxAPMeter(Meter):
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
            cam: raw class map (or :func:`~tdviz.wsol.scoremaps.wsol_scoremap`'s output with
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

    def rows(self, ev) -> np.ndarray:
        """[N, T, 2, bins]: each image's foreground and background histograms per step (-1 rows
        for an image without masks)."""
        bins = len(self.edges) - 1
        out = np.full((len(ev.images), ev.steps, 2, bins), -1, np.int64)
        maps = ev.scoremaps()
        for b, masks in enumerate(ev.masks):
            if masks is None:
                continue
            for t in range(ev.steps):
                out[b, t, 0], out[b, t, 1] = self.histograms(maps[b, t], *masks)
        return out

    def add_rows(self, rows: np.ndarray) -> None:
        self.add_histograms(rows[:, 0], rows[:, 1])

    def report(self) -> dict:
        if not self.n:
            return {}
        return {"pxap": self.result().pxap, "n_masks": self.n}

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


register(MetricSpec("pxap", "wsol", lambda o: PxAPMeter(o.cam_curve_interval), (("pxap", "PxAP"),),
                    needs_masks=True))
