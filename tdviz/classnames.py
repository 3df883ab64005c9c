"""Human-readable class names for a model's outputs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from torch import nn

IMAGENET_CLASSES_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.txt"


@lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """ImageNet-1k class names in torchvision's index order (a copy of torchvision's list kept
    in the package: importing torchvision only for it costs over a second)."""
    return IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines()


def class_names_for(model: nn.Module, num_classes: int) -> list[str]:
    """The model's own names (demo zoo), ImageNet-1k's for 1000 classes (shipped by torchvision,
    offline), else ``class <i>``."""
    names = getattr(model, "class_names", None)
    if names is not None and len(names) == num_classes:
        return list(names)
    if num_classes == 1000:
        return imagenet_class_names()
    return [f"class {i}" for i in range(num_classes)]


def resolve_class(name_or_id: str, names: list[str]) -> int:
    """A class given as an index or a (case-insensitive) name -> its index; unknown -> one clear error."""
    from .errors import TdvizError

    if name_or_id.isdigit() and int(name_or_id) < len(names):
        return int(name_or_id)
    lowered = [n.lower() for n in names]
    if name_or_id.lower() in lowered:
        return lowered.index(name_or_id.lower())
    import difflib

    near = difflib.get_close_matches(name_or_id.lower(), lowered, n=3, cutoff=0.5)
    hint = f" Nearest: {', '.join(names[lowered.index(n)] for n in near)}." if near else ""
    raise TdvizError(f"Class {name_or_id!r} is not one of this model's {len(names)} classes.{hint}")
