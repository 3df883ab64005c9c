"""COCO instances json (boxes; crowd annotations kept), indexed with pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from ...errors import TdvizError
from ..common import check_box, image_size, is_file, is_int, make_sample, number, size, unique_ids
from ..records import MISSING_IMAGE, Problem, Sample
from . import Format, register


def _load(json_path: Path) -> dict:
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
    categories = data.get("categories", [])
    if categories is not None and not isinstance(categories, list):
        raise TdvizError(f"COCO file {str(json_path)!r} has 'categories' that is a {type(categories).__name__}, "
                         "not a list: fix or re-export it.")
    return data


def _categories(data: dict, class_index, where: str, problems: list) -> tuple[list, dict]:
    cats, cat_ids = [], set()
    for i, cat in enumerate(data.get("categories") or []):
        if not (isinstance(cat, dict) and is_int(cat.get("id"))):
            problems.append(Problem(where, "is malformed (needs an integer 'id')", "category skipped",
                                    f"categories[{i}]"))
        elif cat["id"] in cat_ids:
            problems.append(Problem(where, f"repeats category id {cat['id']}",
                                    "category skipped (the first one is kept)", f"categories[{i}]"))
        else:
            cats.append(cat)
            cat_ids.add(cat["id"])
    if class_index is None:
        return cats, {c["id"]: k for k, c in enumerate(sorted(cats, key=lambda c: c["id"]))}
    cat_to_label = {}
    for c in cats:
        for key in (c.get("wnid"), c.get("name"), str(c["id"])):
            if isinstance(key, str) and key in class_index:
                cat_to_label[c["id"]] = class_index[key]
                break
    return cats, cat_to_label


def read_coco(json_path: str | os.PathLike, images_root: str | os.PathLike | None,
              class_index: dict[str, int] | None = None, *, label_from: str = "first",
              require_images: bool = True) -> tuple[list[Sample], list[Problem]]:
    """COCO instances json, indexed with pycocotools.

    * ``bbox`` ``[x, y, w, h]`` -> inclusive ``[x, y, x + w - 1, y + h - 1]`` (exact for the integer
      boxes tdviz and ILSVRC-derived sets write; COCO's own float boxes keep their fractions);
      crowd annotations are kept as boxes;
    * classes: without ``class_index``, category ids map to 0..C-1 in sorted id order; with it,
      each category is looked up by its ``wnid`` field, then ``name``, then ``str(id)``; a
      repeated category id is reported and the first one kept;
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
    data = _load(json_path)
    problems: list[Problem] = []
    where = str(json_path)
    cats, cat_to_label = _categories(data, class_index, where, problems)

    images, image_ids = [], set()
    for i, img in enumerate(data["images"]):
        ok = isinstance(img, dict) and is_int(img.get("id")) and isinstance(img.get("file_name"), str) \
            and img["file_name"].strip() and "\x00" not in img["file_name"]
        if not ok:
            problems.append(Problem(where, "is malformed (needs integer 'id' and 'file_name')", "image skipped",
                                    f"images[{i}]"))
        elif img["id"] in image_ids:
            problems.append(Problem(where, f"repeats image id {img['id']}", "entry skipped", f"images[{i}]"))
        else:
            images.append(img)
            image_ids.add(img["id"])

    anns = []
    for i, ann in enumerate(data["annotations"]):
        bbox = ann.get("bbox") if isinstance(ann, dict) else None
        ok = isinstance(ann, dict) and is_int(ann.get("image_id")) \
            and is_int(ann.get("category_id")) and isinstance(bbox, list) and len(bbox) == 4 \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        name = f"annotations[{i}]" + (f" (id {ann.get('id')})" if isinstance(ann, dict) and "id" in ann else "")
        if not ok:
            problems.append(Problem(where, "is malformed (needs integer 'image_id', 'category_id' and a 4-number "
                                    "'bbox')", "annotation skipped", name))
        elif ann["image_id"] not in image_ids:
            problems.append(Problem(where, f"refers to unknown image id {ann['image_id']}", "annotation skipped",
                                    name))
        elif ann["category_id"] not in cat_to_label:
            problems.append(Problem(where, f"has unknown category id {ann['category_id']}", "annotation skipped",
                                    name))
        else:
            anns.append(dict(ann, id=i + 1, _order=i))

    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()

    index_root = Path(images_root) if images_root is not None else None
    samples: list[Sample] = []
    for img, image_id in zip(images, unique_ids([img["file_name"] for img in images])):
        entry = f"{where} (image {img['id']}, {img['file_name']!r})"
        width, height = size(img.get("width")), size(img.get("height"))
        path = (index_root / img["file_name"]) if index_root is not None else Path(img["file_name"])
        if index_root is not None and require_images and not is_file(path):
            problems.append(Problem(entry, f"image file {str(path)!r} does not exist", "image skipped",
                                    code=MISSING_IMAGE))
            continue
        if (width is None or height is None) and is_file(path):
            width, height = image_size(path)
        objs = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])), key=lambda a: a["_order"])
        boxes, labels, areas = [], [], []
        for ann in objs:
            x, y, w, h = (number(v) for v in ann["bbox"])
            box, problem = check_box([x, y, x + w - 1, y + h - 1], width, height, where,
                                     f"annotations[{ann['_order']}] box")
            if problem:
                problems.append(problem)
            if box is not None:
                boxes.append(box)
                labels.append(cat_to_label[ann["category_id"]])
                area = number(ann.get("area")) if isinstance(ann.get("area"), (int, float)) else math.nan
                areas.append(area if math.isfinite(area) else w * h)
        if not boxes:
            problems.append(Problem(entry, "image has no usable annotation", "image skipped"))
            continue
        label = labels[0] if label_from == "first" else labels[int(np.argmax(areas))]
        samples.append(make_sample(image_id, path, label, boxes, labels, width, height))
    return samples, problems


register(Format("coco", "a COCO instances .json", lambda p: p.is_file() and p.suffix.lower() == ".json", read_coco,
                lambda src: src.parent))
