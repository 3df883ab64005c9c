"""The annotation formats tdviz reads, as a registry: a format is one module that calls
:func:`register` with a :class:`Format` (how to recognise its source, where its images are by
default, how to read it). Adding a format is one new file here and one line in the import below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FORMATS", "Format", "register"]


@dataclass(frozen=True)
class Format:
    """An annotation format.

    * ``detect(path)``: whether ``path`` (what ``--boxes`` names) is a source of this format;
    * ``read(source, images_root, class_index, require_images=...)``: ``(samples, problems)``;
    * ``images_root(source)``: where its images are when the user names none (``None``: cannot tell);
    * ``synsets``: its labels are synsets, looked up in a class index (ImageNet's by default);
    * ``options``: further keyword arguments its ``read`` takes (e.g. ``mask_root``).
    """

    name: str
    description: str
    detect: Callable[[Path], bool]
    read: Callable
    images_root: Callable[[Path], Path | None]
    synsets: bool = False
    options: tuple[str, ...] = ()


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format to the registry (detection tries them in registration order)."""
    FORMATS[fmt.name] = fmt
    return fmt


from . import ilsvrc_xml, loc_csv, wsolevaluation, coco  # noqa: F401, I001  (each registers itself)
