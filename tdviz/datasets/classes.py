"""Class indices of the datasets tdviz reads: synsets (ImageNet, Kaggle's mapping), the demo's
pseudo-synsets, and ImageFolder's sorted class folders."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import TdvizError
from ..imagefiles import class_folders

__all__ = ["demo_class_index", "imagefolder_class_index", "imagenet_class_index", "read_synset_mapping"]


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
