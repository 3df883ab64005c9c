"""Decoding for `tdviz wsol`: images read as stored, resized per preprocessing, batched in loader workers."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..images import ImageError, Preprocess, read_image
from .annotations import WsolSample

__all__ = ["_Images", "_collate", "_ramp_batches"]


class _Images(Dataset):
    """Decoded, resized uint8 images (normalized later, on the model's device), read as stored
    (no EXIF rotation), with a note when the annotation's image size is not the file's."""

    def __init__(self, samples: list[WsolSample], preprocs: dict[str, Preprocess]):
        self.samples, self.preprocs = samples, preprocs

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        try:
            img = read_image(s.path, exif=False)
        except ImageError as exc:
            return i, None, str(exc)
        h, w = img.shape[:2]
        note = None
        if s.width is not None and s.height is not None and (s.width, s.height) != (w, h):
            note = (f"{s.image_id}: the annotations give the image size {s.width}x{s.height} but {s.path} is "
                    f"{w}x{h}; the file's own size is used")
        return i, {k: p.resized(img) for k, p in self.preprocs.items()}, (w, h, note)


def _collate(batch):
    """Stack the readable images per preprocessing in the loader worker (shared memory), so the
    main process gets one tensor per protocol instead of copying 100+ images itself."""
    good = [(i, info) for i, tensors, info in batch if tensors is not None]
    bad = [(i, info) for i, tensors, info in batch if tensors is None]
    keys = next((t for _, t, _ in batch if t is not None), {})
    stacked = {k: torch.stack([t[k] for _, t, _ in batch if t is not None]) for k in keys}
    return good, bad, stacked


def _ramp_batches(n: int, batch_size: int) -> list[list[int]]:
    """Indices 0..n-1 in batches of ``batch_size``, the first ones smaller (1/8, 1/4, 1/2): each
    loader worker decodes a whole batch, so small first batches start the models and the box
    workers in a fraction of the time one full batch takes to decode."""
    sizes = [max(1, batch_size // d) for d in (8, 4, 2)]
    batches, start = [], 0
    while start < n:
        size = sizes[len(batches)] if len(batches) < len(sizes) else batch_size
        batches.append(list(range(start, min(start + size, n))))
        start += size
    return batches
