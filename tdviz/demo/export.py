"""Write a canvas split in the formats WSOL users already have loaders for.

Layout of a split directory (all files describe the same images and boxes)::

    classes.json                  wnids / names / index (dir -> name -> index)
    classes.txt                   "<index> <wnid> <name>" per line
    LOC_synset_mapping.txt        Kaggle: "<wnid> <name>", line i = class i
    images/<wnid>/<image_id>.png  ImageFolder (torchvision class_to_idx == label; all
                                  10 class dirs exist, splits with n >= 10 fill all)
    boxes_xml/<image_id>.xml      ILSVRC2012 bbox XML
    LOC_val_solution.csv          Kaggle ImageNet localization solution
    wsol/box/                     wsolevaluation box metadata (CUB/ILSVRC style)
    wsol/mask/                    wsolevaluation mask metadata (OpenImages style)
    masks/<image_id>_<k>.png      binary 0/255 mask of object k; masks/ignore_none.png
    instances_val.json            COCO instances (RLE segmentation)
    samples.jsonl                 full recipe per image (source split and indices)

Conventions:

* Class ``k`` has the pseudo-wnid ``n%08d % k`` (``n00000000`` .. ``n00000009``);
  they sort in label order so ``ImageFolder`` indices equal the labels.
* In-memory boxes are 0-based inclusive ``[x0, y0, x1, y1]``. The ILSVRC XML,
  the Kaggle CSV and wsolevaluation's ``localization.txt`` all carry those same
  four integers unchanged: ILSVRC XML coordinates are integer pixel indices in
  ``[0, W-1]`` (``<xmin>0`` and ``<xmax>499`` on 500-px-wide images occur, and
  wsolevaluation copies them verbatim, e.g. ILSVRC2012_val_00000001 ->
  ``111,108,441,193``, and scores IoU with ``+1`` areas, i.e. inclusively). The
  conversion is the identity, hence lossless.
* COCO: ``bbox = [x0, y0, x1 - x0 + 1, y1 - y0 + 1]`` (floats, pixel-edge
  coordinates, equal to ``pycocotools.mask.toBbox`` of the mask), ``area`` = mask
  pixel count, ``category_id = label + 1`` (1..10; 0 is left for background),
  image ``id = number + 1``.
* Two-object images live in the ImageFolder directory and ``class_labels.txt``
  of their first (primary) object; every box/mask format lists both objects.
* wsolevaluation masks: ``wsol/mask/localization.txt`` has
  ``<image path>,<mask path>,<ignore path>`` lines (paths relative to the split
  directory, which is both ``data_root`` and ``mask_root``); the first line of an
  image names ``masks/ignore_none.png`` (all zero: nothing is ignored), further
  lines of the same image leave the ignore field empty, as their loader asserts.
"""
from __future__ import annotations

import csv
import io
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .canvas import CANVAS_SIZE, Sample
from .fashion import CLASS_NAMES

__all__ = [
    "EXPORT_VERSION",
    "IGNORE_MASK",
    "SampleRecord",
    "wnid",
    "write_index_files",
    "write_sample_files",
    "write_split",
]

#: Bump whenever the on-disk layout or a file format changes (cache key).
EXPORT_VERSION = 1
IGNORE_MASK = "masks/ignore_none.png"
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def wnid(label: int) -> str:
    """Pseudo-WordNet id of a class: ``n00000003`` for label 3."""
    return f"n{int(label):08d}"


@dataclass
class SampleRecord:
    """What the index files need to know about one written image (no pixels)."""

    image_id: str
    number: int
    image_path: str
    width: int
    height: int
    labels: list[int]
    boxes: list[list[int]]
    mask_paths: list[str]
    rles: list[dict]
    areas: list[int]
    meta: dict


def _png_bytes(array: np.ndarray) -> bytes:
    image = array[..., ::-1] if array.ndim == 3 else array  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), _PNG_PARAMS)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _ilsvrc_xml(image_id: str, width: int, height: int, labels: Sequence[int],
                boxes: Sequence[Sequence[int]], folder: str) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = image_id
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "tdviz cluttered Fashion-MNIST"
    size = ET.SubElement(root, "size")
    for tag, val in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(val)
    ET.SubElement(root, "segmented").text = "0"
    for label, box in zip(labels, boxes):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = wnid(label)
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bnd = ET.SubElement(obj, "bndbox")
        for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bnd, tag).text = str(int(val))
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_sample_files(out_dir: str | os.PathLike, sample: Sample, folder: str = "val") -> SampleRecord:
    """Write one sample's per-image files (PNG image, masks, ILSVRC XML); return its record.

    Args:
        out_dir: split directory.
        sample: the rendered sample.
        folder: value of the XML ``<folder>`` tag.
    """
    out = Path(out_dir)
    image_id = sample.image_id
    labels = [int(v) for v in sample.labels]
    boxes = [[int(v) for v in b] for b in sample.boxes]
    h, w = sample.image.shape[:2]
    image_path = f"images/{wnid(labels[0])}/{image_id}.png"
    (out / image_path).parent.mkdir(parents=True, exist_ok=True)
    (out / image_path).write_bytes(_png_bytes(sample.image))
    mask_paths = []
    (out / "masks").mkdir(exist_ok=True)
    for k, mask in enumerate(sample.masks):
        mask_path = f"masks/{image_id}_{k}.png"
        (out / mask_path).write_bytes(_png_bytes(mask.astype(np.uint8) * 255))
        mask_paths.append(mask_path)
    (out / "boxes_xml").mkdir(exist_ok=True)
    (out / "boxes_xml" / f"{image_id}.xml").write_bytes(_ilsvrc_xml(image_id, w, h, labels, boxes, folder))
    return SampleRecord(image_id=image_id, number=int(sample.meta.get("number", 0)), image_path=image_path,
                        width=w, height=h, labels=labels, boxes=boxes, mask_paths=mask_paths,
                        rles=[_rle(m) for m in sample.masks], areas=[int(m.sum()) for m in sample.masks],
                        meta=sample.meta)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def _lines(rows: Iterable[str]) -> str:
    return "".join(r + "\n" for r in rows)


def write_index_files(out_dir: str | os.PathLike, records: Sequence[SampleRecord],
                      class_names: Sequence[str] = CLASS_NAMES, split_name: str = "val") -> None:
    """Write the files that list all images: class maps, Kaggle CSV, wsolevaluation
    metadata, COCO json and ``samples.jsonl``. ``records`` are written in the given order."""
    out = Path(out_dir)
    wnids = [wnid(k) for k in range(len(class_names))]
    for w in wnids:  # every class directory exists, so ImageFolder indices are the labels
        (out / "images" / w).mkdir(parents=True, exist_ok=True)
    classes = {"wnids": wnids, "names": list(class_names),
               "classes": [{"index": k, "wnid": wnids[k], "dir": f"images/{wnids[k]}", "name": name}
                           for k, name in enumerate(class_names)]}
    _write_text(out / "classes.json", json.dumps(classes, indent=1) + "\n")
    _write_text(out / "classes.txt", _lines(f"{k} {wnids[k]} {n}" for k, n in enumerate(class_names)))
    _write_text(out / "LOC_synset_mapping.txt", _lines(f"{wnids[k]} {n}" for k, n in enumerate(class_names)))

    # Kaggle imagenet-object-localization-challenge solution file
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["ImageId", "PredictionString"])
    for r in records:
        writer.writerow([r.image_id, " ".join(f"{wnids[l]} {b[0]} {b[1]} {b[2]} {b[3]}"
                                              for l, b in zip(r.labels, r.boxes))])
    _write_text(out / "LOC_val_solution.csv", buf.getvalue())

    # clovaai/wsolevaluation metadata: box (CUB/ILSVRC) and mask (OpenImages) variants
    for variant in ("box", "mask"):
        meta_dir = out / "wsol" / variant
        _write_text(meta_dir / "image_ids.txt", _lines(r.image_path for r in records))
        _write_text(meta_dir / "class_labels.txt", _lines(f"{r.image_path},{r.labels[0]}" for r in records))
        _write_text(meta_dir / "image_sizes.txt", _lines(f"{r.image_path},{r.width},{r.height}" for r in records))
    _write_text(out / "wsol" / "box" / "localization.txt",
                _lines(f"{r.image_path},{b[0]},{b[1]},{b[2]},{b[3]}" for r in records for b in r.boxes))
    _write_text(out / "wsol" / "mask" / "localization.txt",
                _lines(f"{r.image_path},{m},{IGNORE_MASK if k == 0 else ''}"
                       for r in records for k, m in enumerate(r.mask_paths)))
    sizes = sorted({(r.height, r.width) for r in records}) or [(CANVAS_SIZE, CANVAS_SIZE)]
    if len(sizes) != 1:
        raise ValueError("all images of a split must share one size (one ignore mask)")
    (out / "masks").mkdir(exist_ok=True)
    (out / IGNORE_MASK).write_bytes(_png_bytes(np.zeros(sizes[0], np.uint8)))

    # COCO instances
    images, annotations = [], []
    for r in records:
        images.append({"id": r.number + 1, "file_name": r.image_path, "width": r.width, "height": r.height,
                       "tdviz_image_id": r.image_id})
        for label, box, rle, area in zip(r.labels, r.boxes, r.rles, r.areas):
            annotations.append({"id": len(annotations) + 1, "image_id": r.number + 1,
                                "category_id": label + 1, "iscrowd": 0, "area": float(area),
                                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0] + 1),
                                         float(box[3] - box[1] + 1)],
                                "segmentation": rle})
    coco = {"info": {"description": f"tdviz cluttered Fashion-MNIST ({split_name})",
                     "version": str(EXPORT_VERSION)},
            "licenses": [{"id": 1, "name": "MIT (Fashion-MNIST, Zalando SE)",
                          "url": "https://github.com/zalandoresearch/fashion-mnist"}],
            "categories": [{"id": k + 1, "name": n, "supercategory": "fashion", "wnid": wnids[k]}
                           for k, n in enumerate(class_names)],
            "images": images, "annotations": annotations}
    _write_text(out / f"instances_{split_name}.json", json.dumps(coco, separators=(",", ":")) + "\n")

    _write_text(out / "samples.jsonl", _lines(json.dumps(r.meta, sort_keys=True) for r in records))


def write_split(out_dir: str | os.PathLike, samples: Sequence[Sample],
                class_names: Sequence[str] = CLASS_NAMES, split_name: str = "val") -> list[SampleRecord]:
    """Write in-memory samples in every supported format (see the module docstring).

    Args:
        out_dir: split directory (created).
        samples: rendered samples, e.g. from :func:`tdviz.demo.generate_split`.
        class_names: names of the label indices.
        split_name: used in the COCO file name (``instances_<split_name>.json``)
            and the XML ``<folder>`` tag.
    Returns:
        the per-image records, in order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = [write_sample_files(out, s, folder=split_name) for s in samples]
    write_index_files(out, records, class_names, split_name)
    return records

