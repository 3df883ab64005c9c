"""What passes from the models to the metrics: per image its ground truth, per model and chunk of
images the classes, boxes and maps of every step. No torch here (the box workers use it).

* :class:`ImageEntry`: one image's id, label, decoded size and ground truth (original pixels);
* :class:`ModelPart`: one model on a chunk of images, as the main process hands it over;
* :class:`Evidence`: what the metrics read (:meth:`tdviz.wsol.metrics.Meter.rows`), with the
  costly common parts (wsolevaluation's score maps and the IoUs at every threshold) computed
  once, on first use, for the whole chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import InputFrame
from .boxes import largest_component_box
from .scoremaps import WSOL_SIZE, resize_boxes_wsol, wsol_best_ious_batch, wsol_scoremap

__all__ = ["Evidence", "ImageEntry", "ModelPart"]


@dataclass
class ImageEntry:
    """One image: id, label, size as decoded, GT boxes [K, 4] (inclusive, original pixels) with their
    classes, and its mask files (``None`` without masks)."""

    image_id: str
    label: int
    width: int
    height: int
    boxes: np.ndarray
    box_labels: np.ndarray
    mask_paths: list[str] | None = None
    ignore_path: str | None = None

    @classmethod
    def of(cls, sample, width: int, height: int) -> ImageEntry:
        return cls(sample.image_id, int(sample.label), int(width), int(height),
                   np.asarray(sample.boxes, np.float64).reshape(-1, 4),
                   np.asarray(sample.box_labels, np.int64).reshape(-1),
                   [str(p) for p in sample.mask_paths] or None,
                   None if sample.ignore_path is None else str(sample.ignore_path))


@dataclass
class ModelPart:
    """One model on a chunk of N images with T steps and K top classes (+1 for the GT label).

    * ``mc`` [N]: the most confident step (index); ``frame``/``size``: the cam protocol's input;
    * ``class_ids`` / ``scores`` [N, T, K+1] and either ``cam_boxes`` [N, T, K+1, 4] (the Grad-CAM
      rule's boxes in input pixels, -1: none; found on the GPU) or ``cam_masks`` [N, T, K+1, bytes]
      (its masks packed into bits, for OpenCV here);
    * ``wsol_raw`` [N, T, h, w]: the GT class's raw map for the wsol protocol;
    * ``save`` / ``meta``: what ``--save-maps`` keeps (float32 arrays per image, and notes).
    """

    steps: int
    frame: InputFrame
    size: tuple[int, int]
    mc: np.ndarray
    class_ids: np.ndarray | None = None
    scores: np.ndarray | None = None
    cam_boxes: np.ndarray | None = None
    cam_masks: np.ndarray | None = None
    wsol_raw: np.ndarray | None = None
    save: dict[str, np.ndarray] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def has_cam(self) -> bool:
        return self.class_ids is not None

    def rows(self, sl: slice) -> ModelPart:
        """The part of images ``sl`` (a chunk of the batch)."""
        cut = lambda a: None if a is None else a[sl]
        return ModelPart(self.steps, self.frame, self.size, self.mc[sl], cut(self.class_ids), cut(self.scores),
                         cut(self.cam_boxes), cut(self.cam_masks), cut(self.wsol_raw),
                         None if self.save is None else {k: v[sl] for k, v in self.save.items()}, self.meta)

    def input_boxes(self) -> np.ndarray:
        """[N, T, K+1, 4] the Grad-CAM rule's boxes in input pixels (-1: no box), from the GPU's
        boxes or found here from the packed masks."""
        if self.cam_boxes is not None:
            return np.asarray(self.cam_boxes)
        if self.cam_masks is None:  # classification only: no map, so no box
            return np.full((*self.class_ids.shape, 4), -1, np.int64)
        h, w = self.size
        packed = self.cam_masks
        out = np.full((*packed.shape[:3], 4), -1, np.int64)
        for b in range(packed.shape[0]):
            for t in range(packed.shape[1]):
                for k in range(packed.shape[2]):
                    found = largest_component_box(np.unpackbits(packed[b, t, k], count=h * w).reshape(h, w))
                    if len(found):
                        out[b, t, k] = found[0]
        return out


def to_original(boxes: np.ndarray, frame: InputFrame, width: int, height: int) -> np.ndarray:
    """Inclusive input-frame boxes [..., 4] (-1: none) -> inclusive original pixels (NaN: none).

    A box covers the continuous span [x0, x1 + 1); it is mapped through the preprocessing and
    turned back into inclusive pixels by rounding the span's ends."""
    flat = np.asarray(boxes).reshape(-1, 4)
    out = np.full(flat.shape, np.nan)
    for i, box in enumerate(flat.tolist()):
        if box[0] < 0:
            continue
        x0, y0, x1, y1 = frame.box_to_original([box[0], box[1], box[2] + 1, box[3] + 1], width, height)
        out[i] = [round(x0), round(y0), max(round(x1) - 1, round(x0)), max(round(y1) - 1, round(y0))]
    return out.reshape(*np.shape(boxes))


class Evidence:
    """What the metrics read for a chunk of images and one model (see the module docstring).

    ``class_ids`` [N, T, K+1] and ``cam_boxes`` [N, T, K+1, 4] (original pixels, NaN: no box) for
    the cam protocol; ``wsol_raw`` [N, T, h, w] for the wsol protocol; ``masks`` per image:
    (foreground, ignore) at 224², or ``None``.
    """

    def __init__(self, images: list[ImageEntry], part: ModelPart, thresholds: np.ndarray | None,
                 masks: list | None = None) -> None:
        self.images, self.steps, self.thresholds = images, part.steps, thresholds
        self.class_ids = part.class_ids
        self.cam_boxes = None
        if part.has_cam:
            inside = part.input_boxes()
            self.input_boxes = inside
            self.cam_boxes = np.stack([to_original(inside[b], part.frame, im.width, im.height)
                                       for b, im in enumerate(images)]) if images else inside.astype(float)
        self.wsol_raw = part.wsol_raw
        self.masks = masks if masks is not None else [None] * len(images)
        self._scoremaps = None
        self._ious: dict[bool, tuple[np.ndarray, np.ndarray]] = {}

    def scoremaps(self) -> np.ndarray:
        """[N, T, 224, 224] wsolevaluation's score maps of the GT class's raw maps."""
        if self._scoremaps is None:
            n, t = self.wsol_raw.shape[:2]
            self._scoremaps = np.stack([wsol_scoremap(m) for m in self.wsol_raw.reshape(n * t, *self.wsol_raw.shape[2:])]
                                       ).reshape(n, t, WSOL_SIZE, WSOL_SIZE)
        return self._scoremaps

    def best_ious(self, inclusive: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(v1, v2) [N, T, thresholds]: MaxBoxAcc's largest contour's and MaxBoxAccV2's best IoUs
        at every threshold (NaN for an image without GT boxes), for all maps at once."""
        if inclusive not in self._ious:
            maps = self.scoremaps()
            n, t = maps.shape[:2]
            gts = [resize_boxes_wsol(im.boxes, im.width, im.height) for im in self.images for _ in range(t)]
            v1, v2 = wsol_best_ious_batch(maps.reshape(n * t, *maps.shape[2:]), gts, self.thresholds,
                                          "inclusive" if inclusive else "wsolevaluation")
            self._ious[inclusive] = (v1.reshape(n, t, -1), v2.reshape(n, t, -1))
        return self._ious[inclusive]
