"""ILSVRC2012 per-image bounding-box XML files (``ILSVRC/Annotations/CLS-LOC/val``)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from ...errors import TdvizError
from ..classes import imagenet_class_index
from ..common import ImageIndex, collect_objects, finish, number, resolve_image, size
from ..records import Problem, Sample
from . import Format, register


def read_ilsvrc_xml(xml_dir: str | os.PathLike, images_root: str | os.PathLike | None,
                    class_index: dict[str, int] | None = None, *, require_images: bool = True,
                    ) -> tuple[list[Sample], list[Problem]]:
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
    index = ImageIndex(Path(images_root) if images_root is not None else None)
    samples: list[Sample] = []
    problems: list[Problem] = []
    for xml_path in files:
        where = str(xml_path)
        image_id = xml_path.stem
        try:
            root = ET.parse(xml_path).getroot()
        except (ET.ParseError, OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            problems.append(Problem(where, f"malformed XML ({str(exc)[:120]})", "image skipped"))
            continue
        width, height = (size(root.findtext(f"size/{t}")) for t in ("width", "height"))
        for tag, value in (("width", width), ("height", height)):
            text = root.findtext(f"size/{tag}")
            if value is None and text is not None and text.strip():
                problems.append(Problem(where, f"<size><{tag}> {text.strip()[:20]!r} is not a valid image size",
                                        "the image's own size is used"))
        objects = root.findall("object")
        pairs = [((obj.findtext("name") or "").strip(),
                  [number(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")])
                 for obj in objects]
        label, boxes, labels = collect_objects(pairs, classes, width, height, where, "object {k}", "object {k} box",
                                               problems)
        if not objects:
            problems.append(Problem(where, f"image {image_id!r} has no <object>", "image skipped"))
            continue
        if label is None:
            continue
        if not boxes:
            problems.append(Problem(where, f"image {image_id!r} has no usable box", "image skipped"))
            continue
        path = resolve_image(index, image_id, require_images, where, problems)
        finish(where, image_id, path, label, boxes, labels, width, height, problems, samples,
               read_sizes=images_root is not None)
    return samples, problems


def _detect(path: Path) -> bool:
    return path.is_dir() and not (path / "localization.txt").is_file() and \
        any(p.suffix.lower() == ".xml" for p in path.iterdir())


def _images_root(src: Path) -> Path:
    """``.../Data/...`` when the folder is ``.../Annotations/...`` (ILSVRC layout), else its parent."""
    if "Annotations" in src.parts:
        i = len(src.parts) - 1 - src.parts[::-1].index("Annotations")
        data = Path(*src.parts[:i], "Data", *src.parts[i + 1:])
        if data.is_dir():
            return data
    return src.parent


register(Format("xml", "a folder of ILSVRC .xml files", _detect, read_ilsvrc_xml, _images_root, synsets=True))
