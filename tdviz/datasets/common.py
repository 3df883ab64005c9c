"""What every annotation reader shares: box checks, numbers and sizes from text, image lookup
and image ids. The conventions of all readers (see :mod:`tdviz.datasets`):

* boxes are float64 ``[K, 4]`` inclusive 0-based pixel indices ``[x0, y0, x1, y1]`` in the
  *original* image (as stored, before any EXIF rotation);
* a box with a non-finite coordinate or ``x1 < x0`` / ``y1 < y0`` is skipped; when the image size
  is known, a box entirely outside ``[0, W-1] x [0, H-1]`` is skipped and a box partly outside is
  clipped to it (both reported); without a size only negative coordinates are checked;
* ``image_id`` is the image file's stem, the same in every format; sources that give paths fall
  back to the relative path without suffix for the whole source when two images share a stem.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from ..imagefiles import IMAGEFOLDER_SUFFIXES, walk_files
from .records import BOX_CLIPPED, MISSING_IMAGE, Problem, Sample, make_sample

IMAGE_SUFFIXES = IMAGEFOLDER_SUFFIXES + (".gif",)


def fmt_box(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def check_box(box: list[float], width: int | None, height: int | None, where, item: str
              ) -> tuple[list[float] | None, Problem | None]:
    """One inclusive box, checked against the image size: (box or None if skipped, problem or None)."""
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        return None, Problem(where, f"{fmt_box(box)} has a non-numeric coordinate", "box skipped", item)
    if x1 < x0 or y1 < y0:
        return None, Problem(where, f"{fmt_box(box)} has x1 < x0 or y1 < y0", "box skipped", item)
    xmax = (width - 1) if width else math.inf
    ymax = (height - 1) if height else math.inf
    size = f"{width}x{height} image" if width and height else "image"
    if x1 < 0 or y1 < 0 or x0 > xmax or y0 > ymax:
        return None, Problem(where, f"{fmt_box(box)} lies entirely outside the {size}", "box skipped", item)
    clipped = [max(x0, 0.0), max(y0, 0.0), min(x1, xmax), min(y1, ymax)]
    if clipped != box:
        return clipped, Problem(where, f"{fmt_box(box)} extends outside the {size}",
                                f"box clipped to {fmt_box(clipped)}", item, kind=BOX_CLIPPED)
    return box, None


def collect_objects(pairs, classes: dict[str, int], width, height, where, item: str, box_item: str, problems: list
                    ) -> tuple[int | None, list, list]:
    """(label, boxes, box labels) of one image's ``(synset, box)`` pairs, reporting each problem.

    The image's label is its first object's class: an unknown synset there skips the image
    (label ``None``), elsewhere only that box. ``item`` and ``box_item`` name object k and its box
    in messages (``"object {k}"`` and ``"object {k} box"`` for XML, ``"box {k}"`` twice for the CSV).
    """
    label, boxes, labels = None, [], []
    for k, (synset, box) in enumerate(pairs):
        name = item.format(k=k)
        if synset not in classes:
            problems.append(Problem(where, f"has unknown synset {synset!r}",
                                    "image skipped (its label is unknown)" if k == 0 else "box skipped", name,
                                    kind="image skipped" if k == 0 else "box skipped"))
            if k == 0:
                break
            continue
        if k == 0:
            label = classes[synset]
        box, problem = check_box(box, width, height, where, box_item.format(k=k))
        if problem:
            problems.append(problem)
        if box is not None:
            boxes.append(box)
            labels.append(classes[synset])
    return label, boxes, labels


def image_size(path: Path) -> tuple[int | None, int | None]:
    """(width, height) from the image header (stored size, no decoding), or (None, None)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except Exception:  # noqa: BLE001 - unreadable images are reported where they are loaded
        return None, None


class ImageIndex:
    """Image files under a root, found by stem (built on first use; sorted walk)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._by_stem: dict[str, list[Path]] | None = None
        self.walk_problems: list[str] = []  # link loops and unreadable folders met by the walk

    def find(self, stem: str) -> tuple[Path | None, str | None]:
        if self.root is None:
            return None, None
        if self._by_stem is None:
            self._by_stem = {}
            files, self.walk_problems = walk_files(self.root, IMAGE_SUFFIXES)
            for path in files:
                self._by_stem.setdefault(os.path.splitext(path.name)[0], []).append(path)
        hits = self._by_stem.get(stem, [])
        if len(hits) > 1:
            return hits[0], (f"image id {stem!r} matches {len(hits)} files under {str(self.root)!r}; "
                             f"using {str(hits[0])!r}")
        return (hits[0] if hits else None), None


def resolve_image(index: ImageIndex, image_id: str, require_images: bool, where, problems: list) -> Path | None:
    """The image file of ``image_id`` under the index's root (``None``, reported, when missing)."""
    path, note = index.find(image_id)
    for p in index.walk_problems:
        problems.append(Problem(str(index.root), p.rstrip("."), "image search went on"))
    index.walk_problems = []
    if note:
        problems.append(Problem(where, note, ""))
    if path is not None:
        return path
    if index.root is None or not require_images:
        return (index.root / image_id) if index.root is not None else Path(image_id)
    problems.append(Problem(where, f"no image named {image_id!r} (any image suffix) under {str(index.root)!r}",
                            "image skipped", code=MISSING_IMAGE))
    return None


def unique_ids(keys: list[str]) -> list[str]:
    """File stems; when two keys share a stem (or a stem is empty, as for ``.``), the relative paths
    without suffix for the whole source; ids still equal after that (a file listed twice) get
    ``#2``, ``#3``..."""
    paths = [PurePosixPath(k.replace("\\", "/")) for k in keys]
    ids = [p.stem for p in paths]
    if len(set(ids)) != len(ids) or not all(ids):
        ids = [str(p.parent / p.stem) if p.stem and p.stem not in (".", "..") else k for p, k in zip(paths, keys)]
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    return out


def is_int(value) -> bool:
    """A JSON integer (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def number(text) -> float:
    """A coordinate from text (or a JSON number); NaN when missing, not a number or beyond float."""
    if isinstance(text, bool):
        return math.nan
    try:
        return float(text.strip() if isinstance(text, str) else text) if text is not None else math.nan
    except (ValueError, TypeError, OverflowError):
        return math.nan


def size(text) -> int | None:
    """An image side from an annotation: a whole number of pixels in 1..10^6, else ``None``."""
    value = number(text)  # NaN for text that is no number, and for a number beyond float
    if not math.isfinite(value) or value != int(value) or not 0 < value <= 1_000_000:
        return None
    return int(value)


def is_file(path: Path) -> bool:
    """``path.is_file()`` that is ``False`` (not an exception) for a name no file can have (NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def finish(where, image_id: str, path: Path | None, label: int | None, boxes: list, labels: list, width, height,
           problems: list, samples: list[Sample], read_sizes: bool) -> None:
    """Append the sample when it has an image, a label and at least one box."""
    if path is None or label is None:  # already reported
        return
    if not boxes:
        problems.append(Problem(where, f"image {image_id!r} has no usable box", "image skipped"))
        return
    if read_sizes and (width is None or height is None) and is_file(path):
        width, height = image_size(path)
    samples.append(make_sample(image_id, path, label, boxes, labels, width, height))


def metadata_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of a text file."""
    return [(i, ln.strip()) for i, ln in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                                  .splitlines(), start=1) if ln.strip()]
