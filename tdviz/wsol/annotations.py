"""Read WSOL ground truth from the formats users have, into one record type.

Every reader returns ``(samples, problems)``: a list of :class:`WsolSample` in the source's order
and a list of one-line messages, one per record that was skipped or changed, each naming the file
(and line, or JSON entry). A single bad record never raises; :class:`~tdviz.errors.TdvizError` is
raised only when the whole source is unusable (missing file or folder, unreadable JSON, a CSV
without its header).

Conventions shared by all readers:

* boxes are float64 ``[K, 4]`` inclusive 0-based pixel indices ``[x0, y0, x1, y1]`` in the
  *original* image (as stored, before any EXIF rotation). ILSVRC XML, the Kaggle CSV and
  wsolevaluation's ``localization.txt`` already use them and are read verbatim; COCO's
  ``[x, y, w, h]`` becomes ``[x, y, x + w - 1, y + h - 1]``;
* a box with a non-finite coordinate or ``x1 < x0`` / ``y1 < y0`` is skipped; when the image size
  is known, a box entirely outside ``[0, W-1] x [0, H-1]`` is skipped and a box partly outside is
  clipped to it (both reported); without a size only negative coordinates are checked;
* a box of an unknown synset/category is skipped; the image label is the class of its *first*
  object (ILSVRC val images have one class; the demo writes the primary object first), so an
  image whose first object is of an unknown class is skipped;
* an image with no usable box (or mask) is skipped; so is an image whose file is missing under
  the images root (``require_images=False`` keeps it, with the expected path);
* ``box_labels`` is each box's class; wsolevaluation's box metadata has no class per box, so
  there every box gets the image's label (their evaluation scores against all of an image's boxes);
* every problem message ends with its consequence after the last ``"; "`` (``image skipped``,
  ``box skipped``, ``box clipped to [...]``, ...), which :func:`count_problems` tallies;
* ``image_id`` is the image file's stem (``ILSVRC2012_val_00000001``, ``val_000000``), the same in
  every format; readers whose sources give paths (wsolevaluation, COCO, flat lists) fall back to
  the relative path without suffix for the whole source when two images share a stem.
"""
from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import TdvizError
from ..imagefiles import IMAGEFOLDER_SUFFIXES, class_folders, folder_key, walk_files

__all__ = [
    "WsolDataset",
    "WsolSample",
    "count_problems",
    "demo_class_index",
    "detect_annotation_kind",
    "imagefolder_class_index",
    "imagenet_class_index",
    "load_wsol_dataset",
    "read_coco",
    "read_flat_labels",
    "read_ilsvrc_xml",
    "read_imagefolder_labels",
    "read_loc_csv",
    "read_synset_mapping",
    "read_wsolevaluation",
]

IMAGEFOLDER_EXTENSIONS = IMAGEFOLDER_SUFFIXES
_IMAGE_SUFFIXES = IMAGEFOLDER_SUFFIXES + (".gif",)


@dataclass(eq=False)
class WsolSample:
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
    def from_dict(cls, d: dict) -> WsolSample:
        """Inverse of :meth:`to_dict`."""
        return cls(d["image_id"], Path(d["path"]), int(d["label"]),
                   np.asarray(d["boxes"], np.float64).reshape(-1, 4),
                   np.asarray(d["box_labels"], np.int64).reshape(-1), d.get("width"), d.get("height"),
                   [Path(p) for p in d.get("mask_paths", [])],
                   None if d.get("ignore_path") is None else Path(d["ignore_path"]))


@dataclass
class WsolDataset:
    """What :func:`load_wsol_dataset` found: the detected kind, the records and the problems."""

    kind: str
    source: Path
    samples: list[WsolSample]
    problems: list[str]
    images_root: Path | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def problem_counts(self) -> dict[str, int]:
        """How many records each kind of problem cost (see :func:`count_problems`)."""
        return count_problems(self.problems)


def count_problems(problems: Iterable[str]) -> dict[str, int]:
    """Count problem messages by their consequence: ``"image skipped"`` (also lines and entries
    that were a whole image), ``"box skipped"``, ``"box clipped"``, ``"other"`` (notes, nothing
    dropped). Every message ends with its consequence after the last ``"; "``."""
    counts = {"image skipped": 0, "box skipped": 0, "box clipped": 0, "other": 0}
    for msg in problems:
        tail = msg.rsplit("; ", 1)[-1]
        if tail.startswith("box clipped"):
            counts["box clipped"] += 1
        elif tail in ("box skipped", "annotation skipped"):
            counts["box skipped"] += 1
        elif tail.startswith(("image skipped", "line skipped", "entry skipped")):
            counts["image skipped"] += 1
        else:
            counts["other"] += 1
    return counts


# --------------------------------------------------------------------------- class indices


def read_synset_mapping(path: str | os.PathLike) -> dict[str, int]:
    """Kaggle's ``LOC_synset_mapping.txt`` (``"<wnid> <name>"``, line i = class i) -> {wnid: i}."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        raise TdvizError(f"Synset mapping {str(path)!r} cannot be read: pass an existing "
                         "LOC_synset_mapping.txt.") from None
    wnids = [ln.split()[0] for ln in lines if ln.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise TdvizError(f"Synset mapping {str(path)!r} is empty or repeats a synset: it needs one "
                         "'<wnid> <name>' line per class.")
    return {w: i for i, w in enumerate(wnids)}


def imagenet_class_index(mapping_file: str | os.PathLike | None = None) -> dict[str, int]:
    """ImageNet-1k synset (wnid) -> class index in torchvision's order.

    torchvision's index order is the 1000 ILSVRC2012 synsets sorted alphabetically (ImageFolder on
    the train set). The wnids are taken from ``mapping_file`` (Kaggle's ``LOC_synset_mapping.txt``,
    in index order) when given, else from the list timm ships (``timm/data/_info/imagenet_synsets.txt``,
    1000 sorted wnids; timm is a tdviz dependency), checked to be 1000 distinct sorted ids.
    """
    if mapping_file is not None:
        return read_synset_mapping(mapping_file)
    spec = importlib.util.find_spec("timm")
    listing = Path(spec.origin).parent / "data" / "_info" / "imagenet_synsets.txt" if spec and spec.origin else None
    wnids = []
    if listing is not None and listing.is_file():
        wnids = [w.strip() for w in listing.read_text().splitlines() if w.strip()]
    if len(wnids) != 1000 or len(set(wnids)) != 1000 or wnids != sorted(wnids):
        raise TdvizError("The ImageNet synset list is not available offline: pass the dataset's "
                         "LOC_synset_mapping.txt (Kaggle) as the synset mapping.")
    return {w: i for i, w in enumerate(wnids)}


def demo_class_index(num_classes: int = 10) -> dict[str, int]:
    """The demo split's pseudo-synsets: ``n00000003`` -> 3."""
    return {f"n{k:08d}": k for k in range(num_classes)}


def imagefolder_class_index(root: str | os.PathLike) -> dict[str, int]:
    """{class dir name: index} with torchvision ImageFolder's rule (sorted sub-directory names)."""
    root = Path(root)
    if not root.is_dir():
        raise TdvizError(f"Image folder {str(root)!r} does not exist: pass the directory holding one "
                         "sub-directory per class.")
    names, _ = class_folders(root)
    if not names:
        raise TdvizError(f"Image folder {str(root)!r} has no class sub-directories: ImageFolder layout "
                         "is root/<class>/<image>.")
    return {n: i for i, n in enumerate(names)}


# --------------------------------------------------------------------------- shared helpers


def _box_problem(box: list[float], width: int | None, height: int | None) -> tuple[list[float] | None, str | None]:
    """Validate one inclusive box; returns (box or None if skipped, message or None)."""
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        return None, f"{_fmt(box)} has a non-numeric coordinate; box skipped"
    if x1 < x0 or y1 < y0:
        return None, f"{_fmt(box)} has x1 < x0 or y1 < y0; box skipped"
    xmax = (width - 1) if width else math.inf
    ymax = (height - 1) if height else math.inf
    if x1 < 0 or y1 < 0 or x0 > xmax or y0 > ymax:
        size = f"{width}x{height} image" if width and height else "image"
        return None, f"{_fmt(box)} lies entirely outside the {size}; box skipped"
    clipped = [max(x0, 0.0), max(y0, 0.0), min(x1, xmax), min(y1, ymax)]
    if clipped != box:
        size = f"{width}x{height} image" if width and height else "image"
        return clipped, f"{_fmt(box)} extends outside the {size}; box clipped to {_fmt(clipped)}"
    return box, None


def _collect_objects(pairs, classes: dict[str, int], width, height, where: str, name: str,
                     problems: list[str]) -> tuple[int | None, list, list]:
    """(label, boxes, box labels) of one image's ``(synset, box)`` pairs, reporting each problem.

    The image's label is its first object's class: an unknown synset there skips the image
    (label ``None``), elsewhere only that box. ``name`` formats the object in messages
    (``"object {k} box"`` for XML, ``"box {k}"`` for the CSV).
    """
    label, boxes, labels = None, [], []
    for k, (synset, box) in enumerate(pairs):
        if synset not in classes:
            what = "image skipped (its label is unknown)" if k == 0 else "box skipped"
            problems.append(f"{where}: {name.format(k=k).removesuffix(' box')} has unknown synset {synset!r}; {what}")
            if k == 0:
                break
            continue
        if k == 0:
            label = classes[synset]
        box, msg = _box_problem(box, width, height)
        if msg:
            problems.append(f"{where}: {name.format(k=k)} {msg}")
        if box is not None:
            boxes.append(box)
            labels.append(classes[synset])
    return label, boxes, labels


def _fmt(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _sample(image_id, path, label, boxes, box_labels, width, height, mask_paths=None, ignore_path=None):
    return WsolSample(image_id, Path(path), int(label), np.asarray(boxes, np.float64).reshape(-1, 4),
                      np.asarray(box_labels, np.int64).reshape(-1), width, height,
                      list(mask_paths or []), ignore_path)


def _image_size(path: Path) -> tuple[int | None, int | None]:
    """(width, height) from the image header (stored size, no decoding), or (None, None)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except Exception:  # noqa: BLE001 - unreadable images are reported where they are loaded
        return None, None


class _ImageIndex:
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
            files, self.walk_problems = walk_files(self.root, _IMAGE_SUFFIXES)
            for path in files:
                self._by_stem.setdefault(os.path.splitext(path.name)[0], []).append(path)
        hits = self._by_stem.get(stem, [])
        if len(hits) > 1:
            return hits[0], (f"image id {stem!r} matches {len(hits)} files under {str(self.root)!r}; "
                             f"using {str(hits[0])!r}")
        return (hits[0] if hits else None), None


def _resolve_image(index: _ImageIndex, image_id: str, require_images: bool, where: str,
                   problems: list[str]) -> Path | None:
    path, note = index.find(image_id)
    if index.walk_problems:
        problems += [f"{p.rstrip('.')}; image search went on" for p in index.walk_problems]
        index.walk_problems = []
    if note:
        problems.append(f"{where}: {note}")
    if path is not None:
        return path
    if index.root is None or not require_images:
        return (index.root / image_id) if index.root is not None else Path(image_id)
    problems.append(f"{where}: no image named {image_id!r} (any image suffix) under {str(index.root)!r}; "
                    "image skipped")
    return None


def _unique_ids(keys: list[str]) -> list[str]:
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


def _is_int(value) -> bool:
    """A JSON integer (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _size(text) -> int | None:
    """An image side from an annotation: a whole number of pixels in 1..10^6, else ``None``."""
    value = _number(text)  # NaN for text that is no number, and for a number beyond float
    if not math.isfinite(value) or value != int(value) or not 0 < value <= 1_000_000:
        return None
    return int(value)


def _is_file(path: Path) -> bool:
    """``path.is_file()`` that is ``False`` (not an exception) for a name no file can have (NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _number(text) -> float:
    """A coordinate from text (or a JSON number); NaN when missing, not a number or beyond float."""
    if isinstance(text, bool):
        return math.nan
    try:
        return float(text.strip() if isinstance(text, str) else text) if text is not None else math.nan
    except (ValueError, TypeError, OverflowError):
        return math.nan


def _finish(where: str, image_id: str, path: Path | None, label: int | None, boxes: list, labels: list,
            width, height, problems: list[str], samples: list[WsolSample], read_sizes: bool) -> None:
    """Append the sample when it has an image, a label and at least one box."""
    if path is None or label is None:  # already reported
        return
    if not boxes:
        problems.append(f"{where}: image {image_id!r} has no usable box; image skipped")
        return
    if read_sizes and (width is None or height is None) and _is_file(path):
        width, height = _image_size(path)
    samples.append(_sample(image_id, path, label, boxes, labels, width, height))


# --------------------------------------------------------------------------- ILSVRC XML


def read_ilsvrc_xml(xml_dir: str | os.PathLike, images_root: str | os.PathLike | None,
                    class_index: dict[str, int] | None = None, *, require_images: bool = True,
                    ) -> tuple[list[WsolSample], list[str]]:
    """Per-image ILSVRC2012 bounding-box XML files (``<annotation>`` with ``<size>`` and one
    ``<object>`` per box: ``<name>`` synset and ``<bndbox>`` xmin/ymin/xmax/ymax, read verbatim).

    Args:
        xml_dir: folder of ``*.xml`` files (not searched recursively); the image id is each file's
            stem (``<filename>`` is not trusted: some ILSVRC files hold ``%s`` there).
        images_root: folder searched recursively for ``<image_id>.<image suffix>`` (flat ``val/`` or
            per-class sub-folders); ``None``: do not look for images (``path`` = the id).
        class_index: synset -> class index; default :func:`imagenet_class_index`.
        require_images: skip (and report) images not found under ``images_root``.
    """
    xml_dir = Path(xml_dir)
    if not xml_dir.is_dir():
        raise TdvizError(f"XML folder {str(xml_dir)!r} does not exist: pass the folder of ILSVRC "
                         "bounding-box .xml files.")
    files = sorted(p for p in xml_dir.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
    if not files:
        raise TdvizError(f"XML folder {str(xml_dir)!r} holds no .xml files: pass the folder of ILSVRC "
                         "bounding-box annotations (e.g. ILSVRC/Annotations/CLS-LOC/val).")
    classes = imagenet_class_index() if class_index is None else class_index
    index = _ImageIndex(Path(images_root) if images_root is not None else None)
    samples: list[WsolSample] = []
    problems: list[str] = []
    for xml_path in files:
        where = str(xml_path)
        image_id = xml_path.stem
        try:
            root = ET.parse(xml_path).getroot()
        except (ET.ParseError, OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            problems.append(f"{where}: malformed XML ({str(exc)[:120]}); image skipped")
            continue
        width, height = (_size(root.findtext(f"size/{t}")) for t in ("width", "height"))
        for tag, value in (("width", width), ("height", height)):
            text = root.findtext(f"size/{tag}")
            if value is None and text is not None and text.strip():
                problems.append(f"{where}: <size><{tag}> {text.strip()[:20]!r} is not a valid image size; "
                                "the image's own size is used")
        objects = root.findall("object")
        pairs = [((obj.findtext("name") or "").strip(),
                  [_number(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")])
                 for obj in objects]
        label, boxes, labels = _collect_objects(pairs, classes, width, height, where, "object {k} box", problems)
        if not objects:
            problems.append(f"{where}: image {image_id!r} has no <object>; image skipped")
            continue
        if label is None:
            continue
        if not boxes:
            problems.append(f"{where}: image {image_id!r} has no usable box; image skipped")
            continue
        path = _resolve_image(index, image_id, require_images, where, problems)
        _finish(where, image_id, path, label, boxes, labels, width, height, problems, samples,
                read_sizes=images_root is not None)
    return samples, problems


# --------------------------------------------------------------------------- Kaggle CSV


def read_loc_csv(csv_path: str | os.PathLike, images_root: str | os.PathLike | None,
                 class_index: dict[str, int] | None = None, *, read_sizes: bool = True,
                 require_images: bool = True) -> tuple[list[WsolSample], list[str]]:
    """Kaggle's ``LOC_val_solution.csv``: header ``ImageId,PredictionString``, then one row per
    image with ``"<wnid> x0 y0 x1 y1 <wnid> x0 y0 x1 y1 ..."`` (inclusive pixels, as the XML).

    The CSV has no image size; with ``read_sizes`` it is read from the image header (so boxes can
    be checked against it). A row whose PredictionString does not split into groups of five, or has
    a non-numeric coordinate, is skipped whole. Other arguments as :func:`read_ilsvrc_xml`.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise TdvizError(f"CSV file {str(csv_path)!r} does not exist: pass Kaggle's LOC_val_solution.csv.")
    lines = csv_path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = next(csv.reader([lines[0]])) if lines else []
    header = [h.strip().lstrip("\ufeff") for h in header]
    if "ImageId" not in header or "PredictionString" not in header:
        raise TdvizError(f"CSV file {str(csv_path)!r} does not start with the header "
                         "'ImageId,PredictionString': pass Kaggle's LOC_val_solution.csv.")
    col_id, col_pred = header.index("ImageId"), header.index("PredictionString")
    classes = imagenet_class_index() if class_index is None else class_index
    index = _ImageIndex(Path(images_root) if images_root is not None else None)
    samples: list[WsolSample] = []
    problems: list[str] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines[1:], start=2):
        where = f"{csv_path}:{lineno}"
        if not line.strip():
            continue
        try:
            row = next(csv.reader([line]))
        except csv.Error as exc:
            problems.append(f"{where}: malformed CSV line ({exc}); line skipped")
            continue
        if len(row) != len(header):
            problems.append(f"{where}: malformed CSV line ({len(row)} fields, expected {len(header)}); line skipped")
            continue
        image_id, tokens = row[col_id].strip(), row[col_pred].split()
        if not image_id:
            problems.append(f"{where}: empty ImageId; line skipped")
            continue
        if image_id in seen:
            problems.append(f"{where}: image {image_id!r} is listed again; line skipped")
            continue
        seen.add(image_id)
        if len(tokens) % 5:
            problems.append(f"{where}: malformed PredictionString ({len(tokens)} tokens, not groups of "
                            "'wnid x0 y0 x1 y1'); line skipped")
            continue
        groups = [(tokens[i], [_number(t) for t in tokens[i + 1:i + 5]]) for i in range(0, len(tokens), 5)]
        if any(not all(math.isfinite(v) for v in box) for _, box in groups):
            problems.append(f"{where}: malformed PredictionString (a non-numeric coordinate); line skipped")
            continue
        if not groups:
            problems.append(f"{where}: image {image_id!r} has no box; image skipped")
            continue
        path = _resolve_image(index, image_id, require_images, where, problems)
        if path is None:
            continue
        width = height = None
        if read_sizes and _is_file(path):
            width, height = _image_size(path)
        label, boxes, labels = _collect_objects(groups, classes, width, height, where, "box {k}", problems)
        _finish(where, image_id, path, label, boxes, labels, width, height, problems, samples, read_sizes=False)
    return samples, problems


# --------------------------------------------------------------------------- wsolevaluation metadata


def _metadata_lines(path: Path) -> list[tuple[int, str]]:
    return [(i, ln.strip()) for i, ln in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                                  .splitlines(), start=1) if ln.strip()]


def read_wsolevaluation(metadata_dir: str | os.PathLike, data_root: str | os.PathLike,
                        mask_root: str | os.PathLike | None = None, *, read_sizes: bool = True,
                        require_images: bool = True) -> tuple[list[WsolSample], list[str]]:
    """A clovaai/wsolevaluation metadata folder (e.g. ``metadata/ILSVRC/val``), as its
    ``data_loaders.py`` reads it:

    * ``image_ids.txt``: ``<path>`` per line (relative to ``data_root``), the image order;
    * ``class_labels.txt``: ``<path>,<label>``;
    * ``image_sizes.txt`` (optional; OpenImages has none): ``<path>,<w>,<h>``;
    * ``localization.txt``: box lines ``<path>,<x0>,<y0>,<x1>,<y1>`` (inclusive pixels, several
      lines per image) and/or mask lines ``<path>,<mask path>,<ignore path>`` (mask paths relative
      to ``mask_root``, default ``data_root``; only an image's first line names its ignore mask).

    Samples of mask lines have ``mask_paths`` and ``ignore_path`` and no boxes. Without
    ``image_sizes.txt`` the size comes from the image header (``read_sizes``).
    """
    meta = Path(metadata_dir)
    if not meta.is_dir():
        raise TdvizError(f"wsolevaluation metadata folder {str(meta)!r} does not exist: pass the folder "
                         "holding image_ids.txt, class_labels.txt and localization.txt.")
    for name in ("image_ids.txt", "class_labels.txt", "localization.txt"):
        if not (meta / name).is_file():
            raise TdvizError(f"wsolevaluation metadata folder {str(meta)!r} has no {name}: pass a folder "
                             "with image_ids.txt, class_labels.txt and localization.txt.")
    data_root = Path(data_root)
    mask_root = Path(mask_root) if mask_root is not None else data_root
    problems: list[str] = []

    keys: list[str] = []
    known: set[str] = set()
    for lineno, key in _metadata_lines(meta / "image_ids.txt"):
        if key in known:
            problems.append(f"{meta / 'image_ids.txt'}:{lineno}: image {key!r} is listed again; line skipped")
            continue
        keys.append(key)
        known.add(key)

    labels: dict[str, int] = {}
    label_lines: dict[str, int] = {}
    for lineno, line in _metadata_lines(meta / "class_labels.txt"):
        key, _, value = line.rpartition(",")
        try:
            label = int(value)
        except ValueError:
            problems.append(f"{meta / 'class_labels.txt'}:{lineno}: malformed line {line[:80]!r} "
                            "(expected '<path>,<label>'); line skipped")
            continue
        if key in labels:
            problems.append(f"{meta / 'class_labels.txt'}:{lineno}: image {key!r} is listed again with label {label} "
                            f"(line {label_lines[key]} gave {labels[key]}); line {lineno} skipped, "
                            f"the label of line {label_lines[key]} kept")
            continue
        labels[key], label_lines[key] = label, lineno

    sizes: dict[str, tuple[int, int]] = {}
    if (meta / "image_sizes.txt").is_file():
        for lineno, line in _metadata_lines(meta / "image_sizes.txt"):
            parts = line.rsplit(",", 2)
            size = (_size(parts[1]), _size(parts[2])) if len(parts) == 3 else (None, None)
            if None in size:
                problems.append(f"{meta / 'image_sizes.txt'}:{lineno}: malformed line {line[:80]!r} "
                                "(expected '<path>,<w>,<h>' with sizes in pixels); line skipped")
            elif parts[0] in sizes:
                problems.append(f"{meta / 'image_sizes.txt'}:{lineno}: image {parts[0]!r} is listed again; "
                                "line skipped")
            else:
                sizes[parts[0]] = size

    boxes: dict[str, list[tuple[int, list[float]]]] = {}
    masks: dict[str, list[Path]] = {}
    ignores: dict[str, Path | None] = {}
    loc = meta / "localization.txt"
    for lineno, line in _metadata_lines(loc):
        parts = line.split(",")
        where = f"{loc}:{lineno}"
        if parts[0] not in known:
            problems.append(f"{where}: image {parts[0]!r} is not in image_ids.txt; line skipped")
            continue
        if len(parts) == 5:
            box = [_number(v) for v in parts[1:]]
            if not all(math.isfinite(v) for v in box):
                problems.append(f"{where}: malformed box line {line!r}; line skipped")
                continue
            boxes.setdefault(parts[0], []).append((lineno, box))
        elif len(parts) == 3 and parts[1].strip():
            key, mask, ignore = parts[0], parts[1].strip(), parts[2].strip()
            if key not in masks:
                masks[key] = []
                ignores[key] = mask_root / ignore if ignore else None
            elif ignore:
                problems.append(f"{where}: only an image's first mask line may name an ignore mask; "
                                f"{ignore!r} ignored")
            masks[key].append(mask_root / mask)
        else:
            problems.append(f"{where}: malformed line {line!r} (expected '<path>,x0,y0,x1,y1' or "
                            "'<path>,<mask>,<ignore>'); line skipped")

    samples: list[WsolSample] = []
    for key, image_id in zip(keys, _unique_ids(keys)):
        where = f"{meta / 'image_ids.txt'} ({key})"
        if key not in labels:
            problems.append(f"{meta / 'class_labels.txt'}: image {key!r} has no class label; image skipped")
            continue
        path = data_root / key
        if require_images and not _is_file(path):
            problems.append(f"{where}: image file {str(path)!r} does not exist; image skipped")
            continue
        width, height = sizes.get(key, (None, None))
        if read_sizes and width is None and _is_file(path):
            width, height = _image_size(path)
        kept = []
        for lineno, box in boxes.get(key, []):
            box, msg = _box_problem(box, width, height)
            if msg:
                problems.append(f"{loc}:{lineno}: box {msg}")
            if box is not None:
                kept.append(box)
        if not kept and key not in masks:
            problems.append(f"{where}: image has no usable box or mask in {loc.name}; image skipped")
            continue
        samples.append(_sample(image_id, path, labels[key], kept, [labels[key]] * len(kept), width, height,
                               masks.get(key), ignores.get(key)))
    return samples, problems


# --------------------------------------------------------------------------- COCO


def read_coco(json_path: str | os.PathLike, images_root: str | os.PathLike | None,
              class_index: dict[str, int] | None = None, *, label_from: str = "first",
              require_images: bool = True) -> tuple[list[WsolSample], list[str]]:
    """COCO instances json, indexed with pycocotools.

    * ``bbox`` ``[x, y, w, h]`` -> inclusive ``[x, y, x + w - 1, y + h - 1]`` (exact for the integer
      boxes tdviz and ILSVRC-derived sets write; COCO's own float boxes keep their fractions);
      crowd annotations are kept as boxes;
    * classes: without ``class_index``, category ids map to 0..C-1 in sorted id order; with it,
      each category is looked up by its ``wnid`` field, then ``name``, then ``str(id)``;
    * the image label is the category of its first annotation in file order
      (``label_from="first"``) or of its largest one by ``area`` (``"largest"``; ``w * h`` when
      ``area`` is absent);
    * ``image_id`` is the ``file_name``'s stem; ``path`` is ``images_root / file_name``.

    A file that is not valid JSON or has no ``images``/``annotations`` lists raises
    :class:`TdvizError` (with the line and column); a malformed entry is reported and skipped.
    """
    if label_from not in ("first", "largest"):
        raise ValueError("label_from must be 'first' or 'largest'")
    json_path = Path(json_path)
    if not json_path.is_file():
        raise TdvizError(f"COCO file {str(json_path)!r} does not exist: pass a COCO instances .json.")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TdvizError(f"COCO file {str(json_path)!r} is not valid JSON (line {exc.lineno}, column "
                         f"{exc.colno}: {exc.msg}); fix or re-export it.") from None
    except RecursionError:
        raise TdvizError(f"COCO file {str(json_path)!r} nests its JSON too deeply to read; re-export it.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: e.g. a number of 5000 digits
        raise TdvizError(f"COCO file {str(json_path)!r} cannot be read ({str(exc)[:120]}); re-export it as "
                         "UTF-8 JSON.") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise TdvizError(f"COCO file {str(json_path)!r} has no 'images' and 'annotations' lists: pass a "
                         "COCO instances file.")
    problems: list[str] = []
    where = str(json_path)

    categories = data.get("categories", [])
    if categories is None:
        categories = []
    if not isinstance(categories, list):
        raise TdvizError(f"COCO file {str(json_path)!r} has 'categories' that is a {type(categories).__name__}, "
                         "not a list: fix or re-export it.")
    cats, cat_ids = [], set()
    for i, cat in enumerate(categories):
        if not (isinstance(cat, dict) and _is_int(cat.get("id"))):
            problems.append(f"{where}: categories[{i}] is malformed (needs an integer 'id'); category skipped")
        elif cat["id"] in cat_ids:
            problems.append(f"{where}: categories[{i}] repeats category id {cat['id']}; category skipped (the "
                            "first one is kept)")
        else:
            cats.append(cat)
            cat_ids.add(cat["id"])
    if class_index is None:
        cat_to_label = {c["id"]: k for k, c in enumerate(sorted(cats, key=lambda c: c["id"]))}
    else:
        cat_to_label = {}
        for c in cats:
            for key in (c.get("wnid"), c.get("name"), str(c["id"])):
                if isinstance(key, str) and key in class_index:
                    cat_to_label[c["id"]] = class_index[key]
                    break

    images, image_ids = [], set()
    for i, img in enumerate(data["images"]):
        ok = isinstance(img, dict) and _is_int(img.get("id")) and isinstance(img.get("file_name"), str) \
            and img["file_name"].strip() and "\x00" not in img["file_name"]
        if not ok:
            problems.append(f"{where}: images[{i}] is malformed (needs integer 'id' and 'file_name'); image skipped")
        elif img["id"] in image_ids:
            problems.append(f"{where}: images[{i}] repeats image id {img['id']}; entry skipped")
        else:
            images.append(img)
            image_ids.add(img["id"])

    anns = []
    for i, ann in enumerate(data["annotations"]):
        bbox = ann.get("bbox") if isinstance(ann, dict) else None
        ok = isinstance(ann, dict) and _is_int(ann.get("image_id")) \
            and _is_int(ann.get("category_id")) and isinstance(bbox, list) and len(bbox) == 4 \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        name = f"annotations[{i}]" + (f" (id {ann.get('id')})" if isinstance(ann, dict) and "id" in ann else "")
        if not ok:
            problems.append(f"{where}: {name} is malformed (needs integer 'image_id', 'category_id' and a "
                            "4-number 'bbox'); annotation skipped")
        elif ann["image_id"] not in image_ids:
            problems.append(f"{where}: {name} refers to unknown image id {ann['image_id']}; annotation skipped")
        elif ann["category_id"] not in cat_to_label:
            problems.append(f"{where}: {name} has unknown category id {ann['category_id']}; annotation skipped")
        else:
            anns.append(dict(ann, id=i + 1, _order=i))

    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()

    index_root = Path(images_root) if images_root is not None else None
    samples: list[WsolSample] = []
    names = [img["file_name"] for img in images]
    for img, image_id in zip(images, _unique_ids(names)):
        entry = f"{where} (image {img['id']}, {img['file_name']!r})"
        width, height = _size(img.get("width")), _size(img.get("height"))
        path = (index_root / img["file_name"]) if index_root is not None else Path(img["file_name"])
        if index_root is not None and require_images and not _is_file(path):
            problems.append(f"{entry}: image file {str(path)!r} does not exist; image skipped")
            continue
        if (width is None or height is None) and _is_file(path):
            width, height = _image_size(path)
        objs = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])), key=lambda a: a["_order"])
        boxes, labels, areas = [], [], []
        for ann in objs:
            x, y, w, h = (_number(v) for v in ann["bbox"])
            box, msg = _box_problem([x, y, x + w - 1, y + h - 1], width, height)
            if msg:
                problems.append(f"{where}: annotations[{ann['_order']}] box {msg}")
            if box is not None:
                boxes.append(box)
                labels.append(cat_to_label[ann["category_id"]])
                area = _number(ann.get("area")) if isinstance(ann.get("area"), (int, float)) else math.nan
                areas.append(area if math.isfinite(area) else w * h)
        if not boxes:
            problems.append(f"{entry}: image has no usable annotation; image skipped")
            continue
        label = labels[0] if label_from == "first" else labels[int(np.argmax(areas))]
        samples.append(_sample(image_id, path, label, boxes, labels, width, height))
    return samples, problems


# --------------------------------------------------------------------------- label-only sources


def read_imagefolder_labels(root: str | os.PathLike) -> tuple[list[WsolSample], list[str]]:
    """An ImageFolder tree ``root/<class>/<image>``: labels as torchvision's ``ImageFolder``
    (sorted class directories, files with its extensions, walked in sorted order); no boxes.

    A class directory without images is reported (torchvision refuses it) but keeps its index.
    """
    classes = imagefolder_class_index(root)
    root = Path(root)
    samples: list[WsolSample] = []
    problems: list[str] = list(class_folders(root)[1])
    files: list[tuple[Path, int]] = []
    seen = {folder_key(root)}
    for name, label in classes.items():
        found, walk_problems = walk_files(root / name, IMAGEFOLDER_EXTENSIONS, seen)
        problems += walk_problems
        if not found:
            problems.append(f"{root / name}: class folder holds no image files; no images for class {label}")
        files += [(p, label) for p in found]
    ids = _unique_ids([p.relative_to(root).as_posix() for p, _ in files])
    for (path, label), image_id in zip(files, ids):
        samples.append(_sample(image_id, path, label, [], [], None, None))
    return samples, problems


def read_flat_labels(images_dir: str | os.PathLike, label_file: str | os.PathLike,
                     class_index: dict[str, int] | None = None, *, require_images: bool = True,
                     ) -> tuple[list[WsolSample], list[str]]:
    """A label list: lines ``<relative/path> <label>`` (whitespace or a comma between them; the
    path may contain spaces) where the label is a class index or a synset (looked up in
    ``class_index``, default :func:`imagenet_class_index`). Blank lines and ``#`` comments are
    skipped; no boxes."""
    images_dir, label_file = Path(images_dir), Path(label_file)
    if not label_file.is_file():
        raise TdvizError(f"Label file {str(label_file)!r} does not exist: pass a file of "
                         "'<relative/path> <label>' lines.")
    problems: list[str] = []
    rows: list[tuple[str, int, str]] = []
    classes = class_index
    for lineno, raw in enumerate(label_file.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = raw.strip()
        where = f"{label_file}:{lineno}"
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1) if any(c.isspace() for c in line) else line.rsplit(",", 1)
        if len(parts) != 2 or not parts[0].strip():
            problems.append(f"{where}: malformed line {line!r} (expected '<path> <label>'); line skipped")
            continue
        rel, token = parts[0].strip().rstrip(","), parts[1].strip()
        if token.lstrip("-").isdigit():
            try:
                label = int(token)
            except ValueError:  # more digits than Python converts
                problems.append(f"{where}: label {token[:20]!r}... is not a usable class index; line skipped")
                continue
        else:
            if classes is None:
                classes = imagenet_class_index()
            if token not in classes:
                problems.append(f"{where}: unknown synset {token!r}; line skipped")
                continue
            label = classes[token]
        rows.append((rel, label, where))
    samples: list[WsolSample] = []
    for (rel, label, where), image_id in zip(rows, _unique_ids([r[0] for r in rows])):
        path = images_dir / rel
        if require_images and not _is_file(path):
            problems.append(f"{where}: image file {str(path)!r} does not exist; line skipped")
            continue
        samples.append(_sample(image_id, path, label, [], [], None, None))
    return samples, problems


# --------------------------------------------------------------------------- dispatcher


def detect_annotation_kind(source: str | os.PathLike) -> str:
    """``"xml"``, ``"csv"``, ``"wsolevaluation"`` or ``"coco"`` from what ``source`` is:
    a folder with ``localization.txt`` -> wsolevaluation, a folder of ``.xml`` files -> xml,
    a ``.csv`` file -> csv, a ``.json`` file -> coco."""
    path = Path(source)
    if not path.exists():
        raise TdvizError(f"Annotation source {str(path)!r} does not exist: check the --boxes path.")
    if path.is_dir():
        if (path / "localization.txt").is_file():
            return "wsolevaluation"
        if any(p.suffix.lower() == ".xml" for p in path.iterdir()):
            return "xml"
    elif path.suffix.lower() == ".csv":
        return "csv"
    elif path.suffix.lower() == ".json":
        return "coco"
    raise TdvizError(f"Annotation source {str(path)!r} is not a recognised format: expected a folder of "
                     "ILSVRC .xml files, a LOC_val_solution.csv, a wsolevaluation metadata folder (with "
                     "localization.txt) or a COCO instances .json.")


def _nearby_synset_mapping(start: Path) -> Path | None:
    for folder in [start, *list(start.parents)[:4]]:  # Kaggle: <root>/ILSVRC/Annotations/CLS-LOC/val
        if (folder / "LOC_synset_mapping.txt").is_file():
            return folder / "LOC_synset_mapping.txt"
    return None


def _default_images_root(kind: str, src: Path) -> Path:
    """The folder holding a source's images when none is given (see :func:`load_wsol_dataset`)."""
    parent = src.parent
    if kind == "xml" and "Annotations" in src.parts:  # ILSVRC/Annotations/CLS-LOC/val -> ILSVRC/Data/...
        i = len(src.parts) - 1 - src.parts[::-1].index("Annotations")
        data = Path(*src.parts[:i], "Data", *src.parts[i + 1:])
        if data.is_dir():
            return data
    if kind == "csv" and (parent / "ILSVRC" / "Data" / "CLS-LOC" / "val").is_dir():  # Kaggle layout
        return parent / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    return parent


def _guess_data_root(meta: Path) -> Path | None:
    """The nearest ancestor of ``meta`` under which the first listed image exists."""
    ids = _metadata_lines(meta / "image_ids.txt")
    if not ids:
        return None
    first = ids[0][1]
    for folder in [meta, *meta.parents]:
        if _is_file(folder / first):
            return folder
    return None


def load_wsol_dataset(source: str | os.PathLike, images_root: str | os.PathLike | None = None,
                      class_index: dict[str, int] | None = None, mask_root: str | os.PathLike | None = None,
                      *, kind: str = "auto", require_images: bool = True) -> WsolDataset:
    """Read any supported annotation source (what ``--boxes`` names) into a :class:`WsolDataset`.

    Args:
        source: ILSVRC XML folder, ``LOC_val_solution.csv``, wsolevaluation metadata folder or COCO
            json (``kind="auto"`` detects which, see :func:`detect_annotation_kind`).
        images_root: where the images are. Default: for XML, ``.../Data/...`` when the XML folder
            is ``.../Annotations/...`` (ILSVRC layout) and exists, else the XML folder's parent;
            for the CSV, ``ILSVRC/Data/CLS-LOC/val`` next to it (Kaggle layout) if present, else
            its folder; for COCO the json's folder; for wsolevaluation the nearest ancestor of the
            metadata folder under which its first image exists. XML and CSV images are searched
            recursively by image id, so pass the image folder itself for a large tree.
        class_index: synset -> index for XML/CSV (default: a ``LOC_synset_mapping.txt`` in the
            source's folder or up to four folders above (Kaggle layout), else
            :func:`imagenet_class_index`), or the COCO category lookup (default: sorted ids).
        mask_root: wsolevaluation mask root (default: the data root).
        require_images: skip records whose image file is missing.

    Raises :class:`TdvizError` when the source is unusable, including when none of its images
    is found under the images root.
    """
    src = Path(source)
    kind = detect_annotation_kind(src) if kind == "auto" else kind
    if kind not in ("xml", "csv", "wsolevaluation", "coco"):
        raise TdvizError(f"Annotation kind {kind!r} is unknown: use auto, xml, csv, wsolevaluation or coco.")
    root = Path(images_root) if images_root is not None else None
    if kind in ("xml", "csv") and class_index is None:
        mapping = _nearby_synset_mapping(src if src.is_dir() else src.parent)
        class_index = read_synset_mapping(mapping) if mapping else imagenet_class_index()
    if kind in ("xml", "csv", "coco"):
        root = root or _default_images_root(kind, src)
        reader = {"xml": read_ilsvrc_xml, "csv": read_loc_csv, "coco": read_coco}[kind]
        samples, problems = reader(src, root, class_index, require_images=require_images)
    else:
        if root is None:
            if not src.is_dir() or not (src / "image_ids.txt").is_file():
                raise TdvizError(f"wsolevaluation metadata folder {str(src)!r} has no image_ids.txt: pass "
                                 "the folder holding image_ids.txt, class_labels.txt and localization.txt.")
            root = _guess_data_root(src)
            if root is None:
                raise TdvizError(f"The images listed in {str(src / 'image_ids.txt')!r} were not found above "
                                 "the metadata folder: pass the dataset root as the images folder.")
        samples, problems = read_wsolevaluation(src, root, mask_root, require_images=require_images)
    missing = sum("no image named" in p or "does not exist; image skipped" in p for p in problems)
    if not samples and missing:
        raise TdvizError(f"None of the {missing} images that {str(src)!r} names were found under "
                         f"{str(root)!r}: pass the folder holding the images.")
    return WsolDataset(kind=kind, source=src, samples=samples, problems=problems, images_root=root)
