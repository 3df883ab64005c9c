"""Score map -> box(es), and box IoU, under two protocols.

Boxes everywhere in this module are integer pixel indices ``[x0, y0, x1, y1]``; their IoU is
computed with the inclusive ``+1`` formula (:func:`box_iou`), as ILSVRC and clovaai/wsolevaluation
score them.

**Grad-CAM protocol** (:func:`cam_boxes`; Selvaraju et al.'s "15 % of the max, largest segment"
rule, used for the TDAM paper's Table 3; neither has public code, so these are tdviz's choices,
each an option):

* the map is a 2-D float array at the model's input resolution, already scaled to [0, 1] per map
  as pytorch-grad-cam returns it (``normalize="none"``); ``"minmax"`` rescales it first;
* a pixel is kept when ``value >= ratio * max`` (``ratio=0.15``; ``strict=True`` uses ``>``),
  ``max`` over the finite pixels; NaN pixels are never kept;
* an all-zero (or all-negative, or all-NaN) map has ``max <= 0`` and gives **no box** (an empty
  ``[0, 4]`` array); a constant positive map keeps every pixel, so its box is the whole map;
* the kept pixels are split into connected components with
  ``cv2.connectedComponentsWithStats`` (8-connectivity; option 4); when ``cv2.findContours``
  finds a single outer border the kept pixels are one component and its box is read from that
  border instead (same box, about 10x faster);
* the chosen component is the largest by pixel count (``select="pixels"``; ties -> the component
  whose first pixel comes first in raster order), or by ``cv2.contourArea`` of its outer contour
  (``select="contour"``; ties -> the contour OpenCV lists first);
* its box is the inclusive extent of its pixels: ``[x, y, x + w - 1, y + h - 1]``, so a filled
  rectangle gives exactly that rectangle; ``all_components=True`` returns every component's box,
  largest first.

The wsolevaluation protocol (score maps, every threshold's contour boxes) is in
:mod:`tdviz.wsol.scoremaps`; its names are still importable from here.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["box_iou", "cam_boxes", "largest_component_box"]

_MOVED = {"WSOL_SIZE", "cam_threshold_grid", "resize_boxes_wsol", "wsol_best_ious", "wsol_best_ious_batch", "wsol_best_ious_opencv", "wsol_boxes", "wsol_quantize", "wsol_scoremap"}


def __getattr__(name: str):
    """The wsolevaluation protocol's names, moved to :mod:`tdviz.wsol.scoremaps` (0.2)."""
    if name in _MOVED:
        from . import scoremaps

        return getattr(scoremaps, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _as_boxes(boxes) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 4) if arr.size else arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {arr.shape}")
    return arr


def box_iou(a, b) -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4] -> float64 [N, M].

    Boxes are inclusive pixel indices ``[x0, y0, x1, y1]``: a box's area is
    ``(x1 - x0 + 1) * (y1 - y0 + 1)`` and the intersection is ``max(0, ix1 - ix0 + 1) * ...``,
    as wsolevaluation's ``calculate_multiple_iou``. Where the union is ``<= 0`` (degenerate boxes)
    the IoU is 0, as theirs; a row containing NaN (a missing box) has IoU 0 with everything.
    """
    a = _as_boxes(a)
    b = _as_boxes(b)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(0.0, ix1 - ix0 + 1) * np.maximum(0.0, iy1 - iy0 + 1)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.nan_to_num(iou, nan=0.0)


# --------------------------------------------------------------------------- Grad-CAM protocol


def cam_boxes(cam: np.ndarray, ratio: float = 0.15, *, strict: bool = False, select: str = "pixels",
              all_components: bool = False, connectivity: int = 8, normalize: str = "none") -> np.ndarray:
    """Box(es) of a map by the Grad-CAM rule (see the module docstring for every convention).

    Args:
        cam: 2-D map at input resolution, in [0, 1] as pytorch-grad-cam returns it.
        ratio: keep pixels at or above ``ratio * max`` (0.15 in the Grad-CAM paper).
        strict: use ``> ratio * max`` instead of ``>=``.
        select: ``"pixels"`` (largest component by pixel count) or ``"contour"`` (by
            ``cv2.contourArea`` of its outer contour; needs ``connectivity=8``).
        all_components: return every component's box, largest first (by ``select``'s measure).
        connectivity: 8 or 4.
        normalize: ``"none"`` (use the map as given), ``"minmax"`` (rescale to [0, 1] first; a
            constant map becomes zeros, hence no box).

    Returns:
        int64 [K, 4] inclusive boxes: K = 0 when nothing is kept (``max <= 0``), else 1, or the
        number of components with ``all_components``.
    """
    if select not in ("pixels", "contour"):
        raise ValueError("select must be 'pixels' or 'contour'")
    if connectivity not in (4, 8) or (select == "contour" and connectivity != 8):
        raise ValueError("connectivity must be 8 (or 4 with select='pixels')")
    if normalize not in ("none", "minmax"):
        raise ValueError("normalize must be 'none' or 'minmax'")
    m = np.asarray(cam, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"cam must be 2-D, got shape {m.shape}")
    finite = np.isfinite(m)
    if not finite.any():
        return np.zeros((0, 4), np.int64)
    m = np.where(finite, m, -np.inf)
    if normalize == "minmax":
        lo, hi = m[finite].min(), m[finite].max()
        m = (m - lo) / (hi - lo) if hi > lo else np.where(finite, 0.0, -np.inf)
    peak = m[finite].max()
    if not peak > 0:
        return np.zeros((0, 4), np.int64)
    thr = ratio * peak
    binary = ((m > thr) if strict else (m >= thr)).astype(np.uint8)
    if select == "pixels":
        if connectivity == 8 and not all_components:
            return largest_component_box(binary)
        n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=connectivity)
        if n <= 1:
            return np.zeros((0, 4), np.int64)
        stats = stats[1:]
        order = np.argsort(-stats[:, cv2.CC_STAT_AREA], kind="stable")
        if not all_components:
            order = order[:1]
        x, y = stats[order, cv2.CC_STAT_LEFT], stats[order, cv2.CC_STAT_TOP]
        w, h = stats[order, cv2.CC_STAT_WIDTH], stats[order, cv2.CC_STAT_HEIGHT]
        return np.stack([x, y, x + w - 1, y + h - 1], axis=1).astype(np.int64)
    contours = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if not contours:
        return np.zeros((0, 4), np.int64)
    areas = np.array([cv2.contourArea(c) for c in contours])
    order = np.argsort(-areas, kind="stable")
    if not all_components:
        order = order[:1]
    rects = np.array([cv2.boundingRect(contours[i]) for i in order], dtype=np.int64).reshape(-1, 4)
    return np.stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2] - 1,
                     rects[:, 1] + rects[:, 3] - 1], axis=1)


def largest_component_box(binary: np.ndarray) -> np.ndarray:
    """Inclusive box of the largest 8-connected component of a uint8 0/1 mask: int64 [1, 4], or
    [0, 4] for an empty mask (ties: the component whose first pixel comes first in raster order)."""
    single = _single_component_box(binary)
    if single is not None:
        return single
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return np.zeros((0, 4), np.int64)
    x, y, w, h = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), :4]
    return np.array([[x, y, x + w - 1, y + h - 1]], np.int64)


def _single_component_box(binary: np.ndarray) -> np.ndarray | None:
    """The inclusive box of the kept pixels when they form one 8-connected component, else None.

    ``cv2.findContours`` (Suzuki-Abe: 8-connected foreground) with ``RETR_CCOMP`` puts the outer
    border of every component, islands inside holes included, at the top level, so one top-level
    contour means one component, whose box is its outer border's ``boundingRect``. This is exact
    and about 10x cheaper than ``connectedComponentsWithStats`` (which computes every
    component's statistics) on a 224x224 map, and one component is the usual case for CAMs.
    """
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[-2:]
    if hierarchy is None:
        return None
    top = np.flatnonzero(hierarchy[0, :, 3] == -1)
    if len(top) != 1:
        return None
    x, y, w, h = cv2.boundingRect(contours[top[0]])
    return np.array([[x, y, x + w - 1, y + h - 1]], np.int64)


# --------------------------------------------------------------------------- wsolevaluation protocol
