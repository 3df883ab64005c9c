"""What a dataset reader returns: images with their ground truth, and problems as typed data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["BOX_CLIPPED", "BOX_SKIPPED", "IMAGE_SKIPPED", "MISSING_IMAGE", "NOTE", "Dataset", "Problem", "Sample", "count_problems"]

#: what a problem cost (:attr:`Problem.kind`)
IMAGE_SKIPPED, BOX_SKIPPED, BOX_CLIPPED, NOTE = "image skipped", "box skipped", "box clipped", "other"
#: :attr:`Problem.code` of an image file that is not where the annotations say
MISSING_IMAGE = "missing-image"
_KINDS = {"image skipped": IMAGE_SKIPPED, "line skipped": IMAGE_SKIPPED, "entry skipped": IMAGE_SKIPPED,
          "box skipped": BOX_SKIPPED, "annotation skipped": BOX_SKIPPED}


class Problem(str):
    """One thing wrong with an input, as data: ``where`` (the file, and line or entry), ``item``
    (e.g. ``object 2``), ``what`` was wrong and the ``consequence`` (``image skipped``, ``box
    clipped to [...]``, ...), with ``kind`` the consequence's class (:data:`IMAGE_SKIPPED`,
    :data:`BOX_SKIPPED`, :data:`BOX_CLIPPED` or :data:`NOTE`: nothing was dropped).

    It is also its own one-line message (a ``str``: ``"<where>: <item> <what>; <consequence>"``),
    so it prints, compares and serialises as the messages always did; nothing parses it back.
    """

    where: str
    item: str
    what: str
    consequence: str
    kind: str
    code: str  # a name for problems that code looks for, e.g. MISSING_IMAGE; "" otherwise

    def __new__(cls, where, what: str, consequence: str, item: str = "", kind: str | None = None,
                code: str = ""):
        text = f"{where}: {item + ' ' if item else ''}{what}" + (f"; {consequence}" if consequence else "")
        self = super().__new__(cls, text)
        self.where, self.item, self.what, self.consequence = str(where), item, what, consequence
        self.kind = kind or _KINDS.get(consequence, NOTE)
        self.code = code
        return self

    def __reduce__(self):
        return Problem, (self.where, self.what, self.consequence, self.item, self.kind, self.code)

    def to_dict(self) -> dict:
        """The fields (for state files)."""
        return {"where": self.where, "item": self.item, "what": self.what, "consequence": self.consequence,
                "kind": self.kind, "code": self.code}

    @classmethod
    def from_dict(cls, d: dict) -> Problem:
        return cls(d["where"], d["what"], d["consequence"], d.get("item", ""), d.get("kind"), d.get("code", ""))


def count_problems(problems: Iterable) -> dict[str, int]:
    """How many problems of each kind (``image skipped``, ``box skipped``, ``box clipped``,
    ``other``), from their :attr:`Problem.kind`; a plain string counts as ``other``."""
    counts = {IMAGE_SKIPPED: 0, BOX_SKIPPED: 0, BOX_CLIPPED: 0, NOTE: 0}
    for p in problems:
        counts[getattr(p, "kind", NOTE)] += 1
    return counts


@dataclass(eq=False)
class Sample:
    """One evaluation image and its ground truth (original-image pixels).

    Attributes:
        image_id: file stem, identical across annotation formats.
        path: the image file.
        label: class index of the image (its first object's class).
        boxes: float64 [K, 4] inclusive ``[x0, y0, x1, y1]`` (K may be 0 for mask-only sources).
        box_labels: int64 [K] class of each box.
        width, height: image size when the source (or the image header) gives it, else ``None``.
        mask_paths: binary instance masks (wsolevaluation mask metadata), else empty.
        ignore_path: wsolevaluation's ignore mask for the image, if any.
    """

    image_id: str
    path: Path
    label: int
    boxes: np.ndarray
    box_labels: np.ndarray
    width: int | None = None
    height: int | None = None
    mask_paths: list[Path] = field(default_factory=list)
    ignore_path: Path | None = None

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (for records written next to results)."""
        return {"image_id": self.image_id, "path": str(self.path), "label": int(self.label),
                "boxes": self.boxes.tolist(), "box_labels": self.box_labels.tolist(),
                "width": self.width, "height": self.height,
                "mask_paths": [str(p) for p in self.mask_paths],
                "ignore_path": None if self.ignore_path is None else str(self.ignore_path)}

    @classmethod
    def from_dict(cls, d: dict) -> Sample:
        """Inverse of :meth:`to_dict`."""
        return cls(d["image_id"], Path(d["path"]), int(d["label"]),
                   np.asarray(d["boxes"], np.float64).reshape(-1, 4),
                   np.asarray(d["box_labels"], np.int64).reshape(-1), d.get("width"), d.get("height"),
                   [Path(p) for p in d.get("mask_paths", [])],
                   None if d.get("ignore_path") is None else Path(d["ignore_path"]))


def make_sample(image_id, path, label, boxes, box_labels, width, height, mask_paths=None, ignore_path=None) -> Sample:
    """A :class:`Sample` from plain values (boxes as any [K, 4] sequence)."""
    return Sample(image_id, Path(path), int(label), np.asarray(boxes, np.float64).reshape(-1, 4),
                  np.asarray(box_labels, np.int64).reshape(-1), width, height, list(mask_paths or []), ignore_path)


@dataclass
class Dataset:
    """What :func:`tdviz.datasets.load_dataset` found: the format, the records and the problems."""

    kind: str
    source: Path
    samples: list[Sample]
    problems: list[Problem]
    images_root: Path | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def problem_counts(self) -> dict[str, int]:
        """How many records each kind of problem cost (see :func:`count_problems`)."""
        return count_problems(self.problems)
