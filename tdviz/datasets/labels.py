"""Sources with labels and no boxes: an ImageFolder tree, and a list of ``<path> <label>`` lines."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TdvizError
from ..imagefiles import IMAGEFOLDER_SUFFIXES, class_folders, folder_key, walk_files
from .classes import imagefolder_class_index, imagenet_class_index
from .common import is_file, unique_ids
from .records import MISSING_IMAGE, Problem, Sample, make_sample

__all__ = ["read_flat_labels", "read_imagefolder_labels"]


def read_imagefolder_labels(root: str | os.PathLike) -> tuple[list[Sample], list[Problem]]:
    """An ImageFolder tree ``root/<class>/<image>``: labels as torchvision's ``ImageFolder``
    (sorted class directories, files with its extensions, walked in sorted order); no boxes.

    A class directory without images is reported (torchvision refuses it) but keeps its index.
    """
    classes = imagefolder_class_index(root)
    root = Path(root)
    samples: list[Sample] = []
    problems: list[Problem] = [Problem(str(root), p, "") for p in class_folders(root)[1]]
    files: list[tuple[Path, int]] = []
    seen = {folder_key(root)}
    for name, label in classes.items():
        found, walk_problems = walk_files(root / name, IMAGEFOLDER_SUFFIXES, seen)
        problems += [Problem(str(root / name), p, "") for p in walk_problems]
        if not found:
            problems.append(Problem(str(root / name), "class folder holds no image files",
                                    f"no images for class {label}"))
        files += [(p, label) for p in found]
    ids = unique_ids([p.relative_to(root).as_posix() for p, _ in files])
    for (path, label), image_id in zip(files, ids):
        samples.append(make_sample(image_id, path, label, [], [], None, None))
    return samples, problems


def read_flat_labels(images_dir: str | os.PathLike, label_file: str | os.PathLike,
                     class_index: dict[str, int] | None = None, *, require_images: bool = True,
                     ) -> tuple[list[Sample], list[Problem]]:
    """A label list: lines ``<relative/path> <label>`` (whitespace or a comma between them; the
    path may contain spaces) where the label is a class index or a synset (looked up in
    ``class_index``, default :func:`imagenet_class_index`). Blank lines and ``#`` comments are
    skipped; no boxes."""
    images_dir, label_file = Path(images_dir), Path(label_file)
    if not label_file.is_file():
        raise TdvizError(f"Label file {str(label_file)!r} does not exist: pass a file of "
                         "'<relative/path> <label>' lines.")
    problems: list[Problem] = []
    rows: list[tuple[str, int, str]] = []
    classes = class_index
    for lineno, raw in enumerate(label_file.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = raw.strip()
        where = f"{label_file}:{lineno}"
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1) if any(c.isspace() for c in line) else line.rsplit(",", 1)
        if len(parts) != 2 or not parts[0].strip():
            problems.append(Problem(where, f"malformed line {line!r} (expected '<path> <label>')", "line skipped"))
            continue
        rel, token = parts[0].strip().rstrip(","), parts[1].strip()
        if token.lstrip("-").isdigit():
            try:
                label = int(token)
            except ValueError:  # more digits than Python converts
                problems.append(Problem(where, f"label {token[:20]!r}... is not a usable class index",
                                        "line skipped"))
                continue
        else:
            if classes is None:
                classes = imagenet_class_index()
            if token not in classes:
                problems.append(Problem(where, f"unknown synset {token!r}", "line skipped"))
                continue
            label = classes[token]
        rows.append((rel, label, where))
    samples: list[Sample] = []
    for (rel, label, where), image_id in zip(rows, unique_ids([r[0] for r in rows])):
        path = images_dir / rel
        if require_images and not is_file(path):
            problems.append(Problem(where, f"image file {str(path)!r} does not exist", "line skipped",
                                    code=MISSING_IMAGE))
            continue
        samples.append(make_sample(image_id, path, label, [], [], None, None))
    return samples, problems
