"""Datasets with ground truth for localization: every annotation format users have, into one
record type (:class:`Sample`), with what was wrong as typed data (:class:`Problem`).

Every reader returns ``(samples, problems)``: :class:`Sample` records in the source's order and
one :class:`Problem` per record that was skipped or changed, naming the file (and line or JSON
entry). A single bad record never raises; :class:`~tdviz.errors.TdvizError` is raised only when
the whole source is unusable. Formats are registered in :mod:`tdviz.datasets.formats` (one file
each); :func:`load_dataset` detects which one a path is. Conventions: :mod:`tdviz.datasets.common`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TdvizError
from .classes import demo_class_index, imagefolder_class_index, imagenet_class_index, read_synset_mapping
from .formats import FORMATS, Format, register
from .formats.coco import read_coco
from .formats.ilsvrc_xml import read_ilsvrc_xml
from .formats.loc_csv import read_loc_csv
from .formats.wsolevaluation import read_wsolevaluation
from .labels import read_flat_labels, read_imagefolder_labels
from .records import MISSING_IMAGE, Dataset, Problem, Sample, count_problems

__all__ = [
    "FORMATS",
    "Dataset",
    "Format",
    "Problem",
    "Sample",
    "count_problems",
    "demo_class_index",
    "detect_format",
    "imagefolder_class_index",
    "imagenet_class_index",
    "load_dataset",
    "read_coco",
    "read_flat_labels",
    "read_ilsvrc_xml",
    "read_imagefolder_labels",
    "read_loc_csv",
    "read_synset_mapping",
    "read_wsolevaluation",
    "register",
]


def detect_format(source: str | os.PathLike) -> str:
    """The registered format whose ``detect`` accepts ``source`` (tried in registration order)."""
    path = Path(source)
    if not path.exists():
        raise TdvizError(f"Annotation source {str(path)!r} does not exist: check the --boxes path.")
    for fmt in FORMATS.values():
        if fmt.detect(path):
            return fmt.name
    known = "; ".join(f.description for f in FORMATS.values())
    raise TdvizError(f"Annotation source {str(path)!r} is not a recognised format: expected {known}.")


def _nearby_synset_mapping(start: Path) -> Path | None:
    for folder in [start, *list(start.parents)[:4]]:  # Kaggle: <root>/ILSVRC/Annotations/CLS-LOC/val
        if (folder / "LOC_synset_mapping.txt").is_file():
            return folder / "LOC_synset_mapping.txt"
    return None


def load_dataset(source: str | os.PathLike, images_root: str | os.PathLike | None = None,
                 class_index: dict[str, int] | None = None, mask_root: str | os.PathLike | None = None,
                 *, kind: str = "auto", require_images: bool = True) -> Dataset:
    """Read any registered annotation source (what ``--boxes`` names) into a :class:`Dataset`.

    Args:
        source: ILSVRC XML folder, ``LOC_val_solution.csv``, wsolevaluation metadata folder or COCO
            json (``kind="auto"`` detects which, see :func:`detect_format`).
        images_root: where the images are. Default: the format's guess: for XML, ``.../Data/...``
            when the XML folder is ``.../Annotations/...`` (ILSVRC layout), else the XML folder's
            parent; for the CSV, ``ILSVRC/Data/CLS-LOC/val`` next to it (Kaggle layout), else its
            folder; for COCO the json's folder; for wsolevaluation the nearest ancestor of the
            metadata folder under which its first image exists. XML and CSV images are searched
            recursively by image id, so pass the image folder itself for a large tree.
        class_index: synset -> index for the synset formats (default: a ``LOC_synset_mapping.txt``
            in the source's folder or up to four folders above (Kaggle layout), else
            :func:`imagenet_class_index`), or the COCO category lookup (default: sorted ids).
        mask_root: wsolevaluation mask root (default: the data root).
        require_images: skip records whose image file is missing.

    Raises :class:`TdvizError` when the source is unusable, including when none of its images
    is found under the images root.
    """
    src = Path(source)
    name = detect_format(src) if kind == "auto" else kind
    if name not in FORMATS:
        raise TdvizError(f"Annotation kind {name!r} is unknown: use auto or one of {', '.join(FORMATS)}.")
    fmt = FORMATS[name]
    if fmt.synsets and class_index is None:
        mapping = _nearby_synset_mapping(src if src.is_dir() else src.parent)
        class_index = read_synset_mapping(mapping) if mapping else imagenet_class_index()
    root = Path(images_root) if images_root is not None else fmt.images_root(src)
    options = {k: v for k, v in {"mask_root": mask_root}.items() if k in fmt.options and v is not None}
    samples, problems = fmt.read(src, root, class_index, require_images=require_images, **options)
    missing = sum(getattr(p, "code", "") == MISSING_IMAGE for p in problems)
    if not samples and missing:
        raise TdvizError(f"None of the {missing} images that {str(src)!r} names were found under "
                         f"{str(root)!r}: pass the folder holding the images.")
    return Dataset(kind=name, source=src, samples=samples, problems=problems, images_root=root)
