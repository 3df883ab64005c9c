"""Kaggle's ImageNet localization solution file, ``LOC_val_solution.csv``."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from ...errors import TdvizError
from ..classes import imagenet_class_index
from ..common import ImageIndex, collect_objects, finish, image_size, is_file, number, resolve_image
from ..records import Problem, Sample
from . import Format, register


def read_loc_csv(csv_path: str | os.PathLike, images_root: str | os.PathLike | None,
                 class_index: dict[str, int] | None = None, *, read_sizes: bool = True,
                 require_images: bool = True) -> tuple[list[Sample], list[Problem]]:
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
    index = ImageIndex(Path(images_root) if images_root is not None else None)
    samples: list[Sample] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines[1:], start=2):
        where = f"{csv_path}:{lineno}"
        if not line.strip():
            continue
        try:
            row = next(csv.reader([line]))
        except csv.Error as exc:
            problems.append(Problem(where, f"malformed CSV line ({exc})", "line skipped"))
            continue
        if len(row) != len(header):
            problems.append(Problem(where, f"malformed CSV line ({len(row)} fields, expected {len(header)})",
                                    "line skipped"))
            continue
        image_id, tokens = row[col_id].strip(), row[col_pred].split()
        if not image_id:
            problems.append(Problem(where, "empty ImageId", "line skipped"))
            continue
        if image_id in seen:
            problems.append(Problem(where, f"image {image_id!r} is listed again", "line skipped"))
            continue
        seen.add(image_id)
        if len(tokens) % 5:
            problems.append(Problem(where, f"malformed PredictionString ({len(tokens)} tokens, not groups of "
                                    "'wnid x0 y0 x1 y1')", "line skipped"))
            continue
        groups = [(tokens[i], [number(t) for t in tokens[i + 1:i + 5]]) for i in range(0, len(tokens), 5)]
        if any(not all(math.isfinite(v) for v in box) for _, box in groups):
            problems.append(Problem(where, "malformed PredictionString (a non-numeric coordinate)", "line skipped"))
            continue
        if not groups:
            problems.append(Problem(where, f"image {image_id!r} has no box", "image skipped"))
            continue
        path = resolve_image(index, image_id, require_images, where, problems)
        if path is None:
            continue
        width = height = None
        if read_sizes and is_file(path):
            width, height = image_size(path)
        label, boxes, labels = collect_objects(groups, classes, width, height, where, "box {k}", "box {k}", problems)
        finish(where, image_id, path, label, boxes, labels, width, height, problems, samples, read_sizes=False)
    return samples, problems


def _images_root(src: Path) -> Path:
    """``ILSVRC/Data/CLS-LOC/val`` beside the CSV (Kaggle's layout), else the CSV's folder."""
    kaggle = src.parent / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    return kaggle if kaggle.is_dir() else src.parent


register(Format("csv", "Kaggle's LOC_val_solution.csv", lambda p: p.is_file() and p.suffix.lower() == ".csv",
                read_loc_csv, _images_root, synsets=True))
