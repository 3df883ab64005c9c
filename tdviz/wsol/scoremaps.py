"""wsolevaluation's protocol: raw map -> score map -> boxes at every threshold -> best IoUs.

Matching clovaai/wsolevaluation (``inference.py``, ``evaluation.py``, ``util.py``):

* the raw map is cast to float64 (their ``t2n``: ``.astype(np.float)``), resized to 224x224
  with ``cv2.resize(..., interpolation=cv2.INTER_CUBIC)`` (skipped when already 224x224, which
  OpenCV does anyway), then min-max normalized in place order ``cam -= cam.min(); cam /= cam.max()``;
  a map containing NaN or a constant map becomes all zeros (``normalize_scoremap``). As theirs,
  "constant" means bit-exactly constant *after* the resize: a constant low-resolution map whose
  bicubic upsampling has 1e-16 ripples (e.g. 7x7 of 0.4; 0.5 stays exact) is min-max stretched
  like any other map;
* it is quantized as ``(scoremap * 255).astype(np.uint8)`` (truncation);
* at threshold ``tau`` the mask is ``q > int(tau * q.max())`` (``cv2.threshold`` with
  ``THRESH_BINARY``), for ``tau`` in ``np.arange(0, 1, interval)`` (``interval=0.01`` as their
  ``evaluation.py`` CLI; their ``config.py`` default is 0.001);
* contours come from ``cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)`` (hole
  contours included); v1 keeps the contour with the largest ``cv2.contourArea`` (first one on
  ties, like Python's ``max``), V2 (``multi_contour=True``) keeps every contour;
* a contour's box is ``[x, y, min(x + w, W - 1), min(y + h, H - 1)]`` from ``cv2.boundingRect``:
  **one pixel wider and taller** than the inclusive extent unless clipped at the border; this is
  their convention and it is kept for exactness (``box_convention="inclusive"`` gives
  ``x + w - 1`` instead);
* no contour (only when the map is all zeros) gives the single box ``[0, 0, 0, 0]``, which is
  scored like any other box;
* ground-truth boxes are mapped to 224x224 with ``int(v * 224 / W)`` per coordinate
  (:func:`resize_boxes_wsol`, their ``resize_bbox``).

A quantized map has at most 256 levels, so the masks over all thresholds are at most 256 distinct
sets; each distinct mask is contoured once and its boxes reused for every threshold that yields it
(exact: the mask depends only on the smallest level kept). With the 0.001 grid 1000 thresholds
cost at most 256 contour passes, and :func:`wsol_best_ious` serves v1 and V2 from the same pass
and one IoU call (about 4 ms per 7x7 map on one CPU core with the 0.01 grid).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .boxes import _as_boxes, box_iou

__all__ = [
    "WSOL_SIZE",
    "cam_threshold_grid",
    "resize_boxes_wsol",
    "wsol_best_ious",
    "wsol_best_ious_batch",
    "wsol_best_ious_opencv",
    "wsol_boxes",
    "wsol_quantize",
    "wsol_scoremap",
]

#: Side of the square frame wsolevaluation evaluates in (its ``_RESIZE_LENGTH``).
WSOL_SIZE = 224


def cam_threshold_grid(interval: float = 0.01) -> np.ndarray:
    """wsolevaluation's threshold grid ``np.arange(0, 1, interval)`` (float64, values as theirs)."""
    if not 0 < interval < 1:
        raise ValueError("interval must be in (0, 1)")
    return np.arange(0, 1, interval)


def wsol_scoremap(cam: np.ndarray, size: int = WSOL_SIZE) -> np.ndarray:
    """A raw map -> wsolevaluation's evaluated score map: float64 [size, size] in [0, 1].

    Float64 cast, ``cv2.resize(INTER_CUBIC)`` to ``size`` x ``size`` unless already that size,
    then min-max normalization with their operation order; NaN anywhere or a map that is constant
    after the resize -> zeros (see the module docstring for near-constant maps).
    """
    m = np.array(cam, dtype=np.float64)  # a copy: normalization is in place
    if m.ndim != 2:
        raise ValueError(f"cam must be 2-D, got shape {m.shape}")
    if m.shape != (size, size):
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_CUBIC)
    if np.isnan(m).any() or m.min() == m.max():
        return np.zeros_like(m)
    m -= m.min()
    m /= m.max()
    return m


def wsol_quantize(scoremap: np.ndarray) -> np.ndarray:
    """``(scoremap * 255).astype(np.uint8)``: the 8-bit map wsolevaluation thresholds (truncation)."""
    s = np.asarray(scoremap, dtype=np.float64)
    if s.ndim != 2 or np.isnan(s).any() or (s < 0).any() or (s > 1).any():
        raise ValueError("scoremap must be a 2-D array in [0, 1] without NaN (see wsol_scoremap)")
    return (s * 255).astype(np.uint8)


def _level_boxes(scoremap: np.ndarray, thresholds, inclusive: bool):
    """Contour boxes of each distinct mask over the thresholds.

    Returns (inverse [T]: threshold -> mask index, boxes per mask (int64 [K, 4]), index of the
    largest-area contour per mask). A mask is ``q > int(tau * q.max())``; thresholds giving the same
    set of pixels share one ``findContours`` call.

    Each mask is contoured inside the bounding box of its pixels grown by one (background) pixel,
    with ``offset`` putting the contours back in map coordinates: the contours, their order and
    their areas are those of the whole map, and the high thresholds' small masks cost little.
    """
    taus = cam_threshold_grid() if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    q = wsol_quantize(scoremap)
    levels = np.flatnonzero(np.bincount(q.ravel(), minlength=256))  # = np.unique(q), 5x faster
    cut = (taus * float(q.max())).astype(np.int64)  # int(tau * qmax): truncation, as int()
    keys = np.searchsorted(levels, cut, side="right")  # smallest kept level; len(levels): empty
    uniq, inverse = np.unique(keys, return_inverse=True)
    height, width = q.shape
    kept = levels[np.minimum(uniq, len(levels) - 1)]
    rows_in = q.max(axis=1)[None, :] >= kept[:, None]  # [U, H]: rows holding pixels of mask u
    cols_in = q.max(axis=0)[None, :] >= kept[:, None]
    y0s = np.maximum(rows_in.argmax(1) - 1, 0).tolist()
    y1s = np.minimum(height - rows_in[:, ::-1].argmax(1) + 1, height).tolist()
    x0s = np.maximum(cols_in.argmax(1) - 1, 0).tolist()
    x1s = np.minimum(width - cols_in[:, ::-1].argmax(1) + 1, width).tolist()
    rects, largest = [], []
    n_levels = len(levels)
    for u, (k, level) in enumerate(zip(uniq.tolist(), kept.tolist())):
        if k >= n_levels:  # nothing kept: no contour
            rects.append(None)
            largest.append(0)
            continue
        y0, x0 = y0s[u], x0s[u]
        # q >= level as 0/1, by OpenCV (a quarter of numpy's time for this)
        binary = cv2.threshold(q[y0:y1s[u], x0:x1s[u]], level - 1, 1, cv2.THRESH_BINARY)[1]
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))[-2]
        # the first maximum, like Python's max(contours, key=cv2.contourArea)
        if len(contours) > 1:
            areas = [cv2.contourArea(c) for c in contours]
            largest.append(areas.index(max(areas)))
        else:
            largest.append(0)
        rects.append([cv2.boundingRect(c) for c in contours])
    counts = [1 if r is None else len(r) for r in rects]
    flat = np.array([b for r in rects for b in (r if r is not None else [(0, 0, 1, 1)])], np.int64).reshape(-1, 4)
    x, y, w, h = flat.T
    if inclusive:
        boxes = np.stack([x, y, x + w - 1, y + h - 1], axis=1)
    else:
        boxes = np.stack([x, y, np.minimum(x + w, width - 1), np.minimum(y + h, height - 1)], axis=1)
    # wsolevaluation's placeholder box where no contour was found
    starts = np.cumsum([0] + counts[:-1])
    for i, r in enumerate(rects):
        if r is None:
            boxes[starts[i]] = 0
    return inverse.reshape(-1), np.split(boxes, starts[1:]), largest


def _check_convention(box_convention: str) -> bool:
    if box_convention not in ("wsolevaluation", "inclusive"):
        raise ValueError("box_convention must be 'wsolevaluation' or 'inclusive'")
    return box_convention == "inclusive"


def wsol_boxes(scoremap: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None,
               multi_contour: bool = False, box_convention: str = "wsolevaluation") -> list[np.ndarray]:
    """Boxes at each threshold, as wsolevaluation's ``compute_bboxes_from_scoremaps``.

    Args:
        scoremap: normalized map in [0, 1] (the output of :func:`wsol_scoremap`).
        thresholds: the tau grid; default :func:`cam_threshold_grid` (0.01 steps).
        multi_contour: V2 (every contour) instead of v1 (largest ``cv2.contourArea``).
        box_convention: ``"wsolevaluation"`` (``min(x + w, W - 1)``) or ``"inclusive"``
            (``x + w - 1``).

    Returns:
        one int64 [K, 4] array per threshold (``[[0, 0, 0, 0]]`` where nothing is kept).
    """
    inverse, boxes, largest = _level_boxes(scoremap, thresholds, _check_convention(box_convention))
    per_mask = boxes if multi_contour else [b[i:i + 1] for b, i in zip(boxes, largest)]
    return [per_mask[i] for i in inverse.tolist()]


def wsol_best_ious(scoremap: np.ndarray, gt_boxes, thresholds: Sequence[float] | np.ndarray | None = None,
                   box_convention: str = "wsolevaluation") -> tuple[np.ndarray, np.ndarray]:
    """Best IoU per threshold of the map's boxes against ``gt_boxes`` (already in the map's frame).

    Returns ``(v1, v2)``, two float64 [T] arrays: the IoU of the largest contour's box with its
    best-matching GT box, and the best IoU over every contour box x every GT box (wsolevaluation's
    ``multi_contour_eval``). With no GT box both are NaN (not measurable; meters do not count
    them). Computed from component trees in compiled code (:mod:`tdviz.wsol.native`) when it is
    available, else by :func:`wsol_best_ious_opencv`; the two are equal (tested).
    """
    v1, v2 = wsol_best_ious_batch(np.asarray(scoremap, np.float64)[None], [gt_boxes], thresholds, box_convention)
    return v1[0], v2[0]


def wsol_best_ious_batch(scoremaps: np.ndarray, gt_boxes: Sequence, thresholds=None,
                         box_convention: str = "wsolevaluation") -> tuple[np.ndarray, np.ndarray]:
    """:func:`wsol_best_ious` of many score maps [N, H, W] at once (one call into the compiled
    trees); ``gt_boxes`` has one [K, 4] array per map. Returns (v1, v2), each float64 [N, T]."""
    from . import native

    inclusive = _check_convention(box_convention)
    taus = cam_threshold_grid() if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    maps = np.asarray(scoremaps, np.float64)
    n = len(maps)
    gts = [_as_boxes(g) for g in gt_boxes]
    v1 = np.full((n, len(taus)), np.nan)
    v2 = np.full((n, len(taus)), np.nan)
    rows = [i for i in range(n) if len(gts[i])]
    if not rows:
        return v1, v2
    q = np.stack([wsol_quantize(maps[i]) for i in rows])
    cuts = (taus[None, :] * q.reshape(len(rows), -1).max(axis=1)[:, None].astype(np.float64)).astype(np.int64)
    if len(taus) and (np.diff(cuts, axis=1) >= 0).all():
        found = native.best_ious(q, cuts, [gts[i] for i in rows], inclusive)
        if found is not None:
            v1[rows], v2[rows] = found
            return v1, v2
    for k, i in enumerate(rows):  # no compiled trees (or an unsorted grid): OpenCV's contours
        v1[i], v2[i] = wsol_best_ious_opencv(maps[i], gts[i], taus, box_convention)
    return v1, v2


def wsol_best_ious_opencv(scoremap: np.ndarray, gt_boxes, thresholds: Sequence[float] | np.ndarray | None = None,
                          box_convention: str = "wsolevaluation") -> tuple[np.ndarray, np.ndarray]:
    """:func:`wsol_best_ious` by ``cv2.findContours`` on each distinct mask (the reference path,
    and the fallback without a C compiler): one contour pass per distinct mask and one IoU
    computation serve v1 and V2."""
    gt = _as_boxes(gt_boxes)
    if len(gt) == 0:
        n = len(cam_threshold_grid() if thresholds is None else np.asarray(thresholds))
        return np.full(n, np.nan), np.full(n, np.nan)
    inverse, boxes, largest = _level_boxes(scoremap, thresholds, _check_convention(box_convention))
    starts = np.cumsum([0] + [len(b) for b in boxes[:-1]])
    best = box_iou(np.concatenate(boxes), gt).max(axis=1)  # per predicted box, over the GT boxes
    v1 = best[starts + np.asarray(largest)]
    v2 = np.maximum.reduceat(best, starts)
    return v1[inverse], v2[inverse]


def resize_boxes_wsol(boxes, width: int, height: int, size: int = WSOL_SIZE) -> np.ndarray:
    """Original-pixel boxes -> the ``size`` x ``size`` frame by wsolevaluation's ``resize_bbox``:
    ``int(v * size / W)`` for x and ``int(v * size / H)`` for y (float64, truncation) -> int64 [N, 4]."""
    b = _as_boxes(boxes)
    sx = np.array([size, size, size, size], dtype=np.float64)
    den = np.array([width, height, width, height], dtype=np.float64)
    return (b * sx / den).astype(np.int64)
