"""clovaai/wsolevaluation metadata folders (``metadata/<dataset>/<split>``): boxes (CUB, ILSVRC)
or masks (OpenImages)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ...errors import TdvizError
from ..common import check_box, image_size, is_file, make_sample, metadata_lines, number, size, unique_ids
from ..records import MISSING_IMAGE, Problem, Sample
from . import Format, register


def read_wsolevaluation(metadata_dir: str | os.PathLike, data_root: str | os.PathLike,
                        mask_root: str | os.PathLike | None = None, *, read_sizes: bool = True,
                        require_images: bool = True) -> tuple[list[Sample], list[Problem]]:
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
    problems: list[Problem] = []

    keys: list[str] = []
    known: set[str] = set()
    for lineno, key in metadata_lines(meta / "image_ids.txt"):
        if key in known:
            problems.append(Problem(f"{meta / 'image_ids.txt'}:{lineno}", f"image {key!r} is listed again",
                                    "line skipped"))
            continue
        keys.append(key)
        known.add(key)

    labels: dict[str, int] = {}
    label_lines: dict[str, int] = {}
    for lineno, line in metadata_lines(meta / "class_labels.txt"):
        where = f"{meta / 'class_labels.txt'}:{lineno}"
        key, _, value = line.rpartition(",")
        try:
            label = int(value)
        except ValueError:
            problems.append(Problem(where, f"malformed line {line[:80]!r} (expected '<path>,<label>')",
                                    "line skipped"))
            continue
        if key in labels:
            first = label_lines[key]
            problems.append(Problem(where, f"image {key!r} is listed again with label {label} (line {first} gave "
                                    f"{labels[key]})", f"line {lineno} skipped, the label of line {first} kept"))
            continue
        labels[key], label_lines[key] = label, lineno

    sizes: dict[str, tuple[int, int]] = {}
    if (meta / "image_sizes.txt").is_file():
        for lineno, line in metadata_lines(meta / "image_sizes.txt"):
            where = f"{meta / 'image_sizes.txt'}:{lineno}"
            parts = line.rsplit(",", 2)
            wh = (size(parts[1]), size(parts[2])) if len(parts) == 3 else (None, None)
            if None in wh:
                problems.append(Problem(where, f"malformed line {line[:80]!r} (expected '<path>,<w>,<h>' with "
                                        "sizes in pixels)", "line skipped"))
            elif parts[0] in sizes:
                problems.append(Problem(where, f"image {parts[0]!r} is listed again", "line skipped"))
            else:
                sizes[parts[0]] = wh

    boxes: dict[str, list[tuple[int, list[float]]]] = {}
    masks: dict[str, list[Path]] = {}
    ignores: dict[str, Path | None] = {}
    loc = meta / "localization.txt"
    for lineno, line in metadata_lines(loc):
        parts = line.split(",")
        where = f"{loc}:{lineno}"
        if parts[0] not in known:
            problems.append(Problem(where, f"image {parts[0]!r} is not in image_ids.txt", "line skipped"))
            continue
        if len(parts) == 5:
            box = [number(v) for v in parts[1:]]
            if not all(math.isfinite(v) for v in box):
                problems.append(Problem(where, f"malformed box line {line!r}", "line skipped"))
                continue
            boxes.setdefault(parts[0], []).append((lineno, box))
        elif len(parts) == 3 and parts[1].strip():
            key, mask, ignore = parts[0], parts[1].strip(), parts[2].strip()
            if key not in masks:
                masks[key] = []
                ignores[key] = mask_root / ignore if ignore else None
            elif ignore:
                problems.append(Problem(where, "only an image's first mask line may name an ignore mask",
                                        f"{ignore!r} ignored"))
            masks[key].append(mask_root / mask)
        else:
            problems.append(Problem(where, f"malformed line {line!r} (expected '<path>,x0,y0,x1,y1' or "
                                    "'<path>,<mask>,<ignore>')", "line skipped"))

    samples: list[Sample] = []
    for key, image_id in zip(keys, unique_ids(keys)):
        where = f"{meta / 'image_ids.txt'} ({key})"
        if key not in labels:
            problems.append(Problem(str(meta / "class_labels.txt"), f"image {key!r} has no class label",
                                    "image skipped"))
            continue
        path = data_root / key
        if require_images and not is_file(path):
            problems.append(Problem(where, f"image file {str(path)!r} does not exist", "image skipped",
                                    code=MISSING_IMAGE))
            continue
        width, height = sizes.get(key, (None, None))
        if read_sizes and width is None and is_file(path):
            width, height = image_size(path)
        kept = []
        for lineno, box in boxes.get(key, []):
            box, problem = check_box(box, width, height, f"{loc}:{lineno}", "box")
            if problem:
                problems.append(problem)
            if box is not None:
                kept.append(box)
        if not kept and key not in masks:
            problems.append(Problem(where, f"image has no usable box or mask in {loc.name}", "image skipped"))
            continue
        samples.append(make_sample(image_id, path, labels[key], kept, [labels[key]] * len(kept), width, height,
                                   masks.get(key), ignores.get(key)))
    return samples, problems


def guess_data_root(meta: Path) -> Path | None:
    """The nearest ancestor of ``meta`` under which the first listed image exists."""
    ids = metadata_lines(meta / "image_ids.txt") if (meta / "image_ids.txt").is_file() else []
    if not ids:
        return None
    first = ids[0][1]
    for folder in [meta, *meta.parents]:
        if is_file(folder / first):
            return folder
    return None


def _read(source, images_root, class_index=None, *, require_images: bool = True, mask_root=None):
    if images_root is None:
        if not (Path(source) / "image_ids.txt").is_file():
            raise TdvizError(f"wsolevaluation metadata folder {str(source)!r} has no image_ids.txt: pass the "
                             "folder holding image_ids.txt, class_labels.txt and localization.txt.")
        raise TdvizError(f"The images listed in {str(Path(source) / 'image_ids.txt')!r} were not found above "
                         "the metadata folder: pass the dataset root as the images folder.")
    return read_wsolevaluation(source, images_root, mask_root, require_images=require_images)


register(Format("wsolevaluation", "a wsolevaluation metadata folder (with localization.txt)",
                lambda p: p.is_dir() and (p / "localization.txt").is_file(), _read, guess_data_root,
                options=("mask_root",)))
