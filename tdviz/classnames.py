"""Human-readable class names for a model's outputs."""

from __future__ import annotations

from torch import nn


def class_names_for(model: nn.Module, num_classes: int) -> list[str]:
    """The model's own names (demo zoo), ImageNet-1k's for 1000 classes (shipped by torchvision,
    offline), else ``class <i>``."""
    names = getattr(model, "class_names", None)
    if names is not None and len(names) == num_classes:
        return list(names)
    if num_classes == 1000:
        from torchvision.models import ResNet50_Weights

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
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
