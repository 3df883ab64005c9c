"""What every demo canvas generator shares: the Sample record, boxes, the split rule and class balance.

* :class:`Sample`: one canvas (pixels, masks, inclusive boxes, labels, JSON recipe).
* Split rule: ``"train"`` canvases draw only Fashion-MNIST train items, ``"val"`` only test items
  (:func:`load_source`); :func:`source_index` picks each image's item class-balanced and seeded.
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .fashion import load_fashion

__all__ = ["SOURCE_SPLIT", "SPLIT_CODE", "Sample", "box_iou", "load_source", "mask_to_box", "numbered_sample",
           "rect_inside_fraction", "source_index"]

SPLIT_CODE = {"train": 0, "val": 1}
SOURCE_SPLIT = {"train": "train", "val": "test"}


@dataclass
class Sample:
    """One rendered canvas.

    Attributes:
        image: RGB ``uint8 [224, 224, 3]``.
        masks: ``bool [K, 224, 224]``, one per object (K = 1 or 2).
        boxes: ``int64 [K, 4]`` inclusive ``[x0, y0, x1, y1]``.
        labels: ``int64 [K]`` Fashion-MNIST class indices.
        meta: JSON-serialisable recipe (ids, source split/indices, placements).
    """

    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def image_id(self) -> str:
        """Identifier such as ``val_000012`` (also the file stem on disk)."""
        return self.meta["image_id"]

    @property
    def label(self) -> int:
        """Class of the (primary) object."""
        return int(self.labels[0])


def mask_to_box(mask: np.ndarray) -> list[int]:
    """Tight inclusive box ``[x0, y0, x1, y1]`` of a non-empty boolean mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        raise ValueError("empty mask has no box")
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """IoU of two inclusive boxes (pixel counts, as in wsolevaluation)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(0, iw) * max(0, ih)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / float(area_a + area_b - inter)



def rect_inside_fraction(rect: Sequence[int], box: Sequence[int]) -> float:
    """Fraction of the inclusive rectangle ``rect`` lying inside inclusive ``box``."""
    iw = min(rect[2], box[2]) - max(rect[0], box[0]) + 1
    ih = min(rect[3], box[3]) - max(rect[1], box[1]) + 1
    area = (rect[2] - rect[0] + 1) * (rect[3] - rect[1] + 1)
    return max(0, iw) * max(0, ih) / float(area)


@lru_cache(maxsize=64)
def _permutation(n: int, *entropy: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence(list(entropy))).permutation(n)


_MEMBERS: dict[int, tuple] = {}


def _class_members(labels: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Classes present and the item indices of each, cached per labels array (which must not
    be modified in place afterwards)."""
    hit = _MEMBERS.get(id(labels))
    if hit is not None and hit[0]() is labels:
        return hit[1], hit[2]
    classes = np.unique(labels)
    per_class = {int(c): np.flatnonzero(labels == c) for c in classes}
    if len(_MEMBERS) >= 8:
        _MEMBERS.clear()
    _MEMBERS[id(labels)] = (weakref.ref(labels), classes, per_class)
    return classes, per_class


def source_index(split: str, seed: int, i: int, labels: np.ndarray) -> int:
    """Source item of image ``i`` (class-balanced, seeded).

    Images come in blocks of ``K`` (the number of classes present): block
    ``b = i // K`` visits the classes in the order ``perm([seed, code, 1, b])``;
    the ``j``-th visit of class ``c`` takes item ``perm_c[j % N_c]`` of that
    class's items, ``perm_c`` drawn from ``[seed, code, 2, c, j // N_c]``.
    """
    code = SPLIT_CODE[split]
    classes, per_class = _class_members(labels)
    k = len(classes)
    c = int(classes[_permutation(k, int(seed), code, 1, i // k)[i % k]])
    members = per_class[c]
    j = i // k
    return int(members[_permutation(len(members), int(seed), code, 2, c, j // len(members))[j % len(members)]])


def load_source(split: str, fashion_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST arrays a canvas split draws from: train items for ``"train"``,
    the packaged test items for ``"val"`` (``fashion_dir`` is then ignored)."""
    if split == "val":
        return load_fashion("test")
    if split == "train":
        return load_fashion("train", fashion_dir)
    raise ValueError(f"split must be 'train' or 'val', not {split!r}")


def numbered_sample(make_sample, split: str, i: int, seed: int, images: np.ndarray, labels: np.ndarray,
                    two_objects: bool = False) -> Sample:
    """Image ``i`` of a split as a generator's ``make_sample`` draws it: every generator seeds image
    ``i`` from ``SeedSequence([seed, split code, 0, i])`` around the class-balanced item
    :func:`source_index` picks, so any image renders alone, in any order or process."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODE[split], 0, int(i)]))
    index = source_index(split, seed, i, labels)
    extra = {"seed": int(seed), "number": int(i), "two_objects": bool(two_objects)}
    return make_sample(rng, images, labels, index, two_objects=two_objects, split=split,
                       image_id=f"{split}_{i:06d}", extra_meta=extra)
