"""Torch ``Dataset`` that renders cluttered Fashion-MNIST canvases on the fly."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..images import IMAGENET_MEAN, IMAGENET_STD
from .canvas import Sample, load_source
from .generators import DEFAULT_VERSION, render_sample

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CanvasDataset", "to_tensor"]

# per-channel lookup table: uint8 value -> normalised float
_LUT = ((np.arange(256, dtype=np.float32)[None, :] / 255.0 - np.array(IMAGENET_MEAN, np.float32)[:, None])
        / np.array(IMAGENET_STD, np.float32)[:, None]).astype(np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB ``uint8 [H,W,3]`` -> ``float32 [3,H,W]`` normalised with ImageNet mean/std."""
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    out = np.take_along_axis(_LUT, chw.reshape(3, -1).astype(np.intp), axis=1)
    return torch.from_numpy(out.reshape(chw.shape))


class CanvasDataset(Dataset):
    """Canvas ``i`` of a split, rendered deterministically from ``(seed, i)``.

    Identical pixels to :func:`tdviz.demo.generate_split` and to the PNGs
    of :func:`tdviz.demo.make_demo_split` for the same split, seed and variant,
    so it is safe with any number of ``DataLoader`` workers and any order.

    Args:
        split: ``"train"`` (Fashion-MNIST train items; needs the train idx files)
            or ``"val"`` (the packaged test items).
        n: number of canvases (may exceed the source size; items are reused with
            a fresh permutation per pass).
        seed: split seed.
        two_objects: two items of different classes per canvas.
        fashion_dir: directory of the train idx files (default: the Debian package's).
        source: ``(images, labels)`` arrays to draw from instead.
        version: canvas generator version (default: the one the shipped zoo was trained on).
        return_target: also return a dict with ``boxes`` (int64 [K,4], inclusive
            x0,y0,x1,y1), ``labels`` (int64 [K]) and ``masks`` (bool [K,224,224]).

    ``__getitem__`` returns ``(image float32 [3,224,224], label int)`` (label of the
    primary object), or ``(image, label, target)`` with ``return_target``.
    """

    def __init__(self, split: str, n: int, seed: int, two_objects: bool = False, *, fashion_dir=None,
                 source: tuple[np.ndarray, np.ndarray] | None = None, return_target: bool = False,
                 version: int = DEFAULT_VERSION):
        self.split, self.n, self.seed, self.two_objects = split, int(n), int(seed), bool(two_objects)
        self.images, self.labels = source if source is not None else load_source(split, fashion_dir)
        self.return_target = return_target
        self.version = version

    def __len__(self) -> int:
        return self.n

    def sample(self, i: int) -> Sample:
        """The full :class:`~tdviz.demo.canvas.Sample` (pixels, masks, boxes, recipe) of canvas ``i``."""
        if not 0 <= i < self.n:
            raise IndexError(i)
        return render_sample(self.split, i, self.seed, self.images, self.labels, self.two_objects, self.version)

    def __getitem__(self, i: int):
        s = self.sample(int(i))
        image = to_tensor(s.image)
        if not self.return_target:
            return image, s.label
        target = {"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels),
                  "masks": torch.from_numpy(s.masks)}
        return image, s.label, target
