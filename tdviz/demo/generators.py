"""Which canvas generator renders the demo data: v1 (:mod:`.canvas`) or v2 (:mod:`.scene`).

Every split on disk and every on-the-fly canvas names its generator version (``manifest.json``,
``Sample.meta["version"]``, the split directory name), so results stay tied to the pixels they
were measured on. ``DEFAULT_VERSION`` is the one the shipped demo zoo was trained on.
"""
from __future__ import annotations

import numpy as np

from . import canvas, scene
from .sample import Sample, load_source

__all__ = ["DEFAULT_VERSION", "VERSIONS", "check_version", "generate_split", "make_sample", "render", "render_sample"]

#: generator version -> its module (each has make_sample, render and render_sample)
VERSIONS = {1: canvas, 2: scene}
DEFAULT_VERSION = 2


def check_version(version: int) -> int:
    """``version`` as an int, or a ValueError naming the versions there are."""
    if version not in VERSIONS:
        raise ValueError(f"demo generator version {version!r} does not exist; use one of {sorted(VERSIONS)}")
    return int(version)


def render_sample(split: str, i: int, seed: int, images: np.ndarray, labels: np.ndarray,
                  two_objects: bool = False, version: int = DEFAULT_VERSION) -> Sample:
    """Canvas ``i`` of a split as generator ``version`` draws it (the same bytes in any process)."""
    return VERSIONS[check_version(version)].render_sample(split, i, seed, images, labels, two_objects)


def generate_split(split: str, n: int, seed: int, two_objects: bool = False, *,
                   source: tuple[np.ndarray, np.ndarray] | None = None, fashion_dir=None,
                   start: int = 0, version: int = DEFAULT_VERSION) -> list[Sample]:
    """Render images ``start .. start+n-1`` of a canvas split in memory (see :func:`render_sample`).

    ``split`` ``"train"`` draws Fashion-MNIST train items only, ``"val"`` test items only;
    ``source`` gives other ``(images, labels)`` arrays instead (the ``source_split`` tag still
    follows ``split``); ``fashion_dir`` is where the train idx files are (``"train"`` only).
    """
    images, labels = source if source is not None else load_source(split, fashion_dir)
    return [render_sample(split, i, seed, images, labels, two_objects, version) for i in range(start, start + n)]


def make_sample(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, index: int, *,
                version: int = DEFAULT_VERSION, **kwargs) -> Sample:
    """Draw a canvas around source item ``index`` from ``rng`` with generator ``version``
    (keyword arguments as :func:`tdviz.demo.canvas.make_sample`)."""
    return VERSIONS[check_version(version)].make_sample(rng, images, labels, index, **kwargs)


def render(meta: dict, images: np.ndarray, *, objects: bool = True, fragments: bool = True):
    """Re-create a canvas from its recipe with the generator that drew it (``meta["version"]``)."""
    version = meta.get("version", 1)
    return VERSIONS[check_version(version)].render(meta, images, objects=objects, fragments=fragments)
