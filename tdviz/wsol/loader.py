"""Decoding for `tdviz wsol` on the CPU: images read as stored, resized per preprocessing and
stacked in DataLoader workers. (:mod:`tdviz.wsol.decode` does the same on the GPU.)"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from ..datasets import Sample
from ..images import ImageError, Preprocess, read_image
from ..processes import follow_parent

__all__ = ["Batch", "cpu_batches", "ramp_batches", "resume_plan", "shard_plan", "size_note"]


@dataclass
class Batch:
    """A decoded batch: ``good`` (position in the run's list, (width, height) as decoded, a note on
    the annotation's size or ``None``), ``bad`` (position, why the image could not be read) and
    ``stacked``: preprocessing key -> the good images resized, uint8 [B, 3, S, S]."""

    good: list[tuple[int, tuple[int, int, str | None]]]
    bad: list[tuple[int, str]]
    stacked: dict[str, torch.Tensor]


def size_note(sample: Sample, width: int, height: int) -> str | None:
    """A note when the annotations give another size than the decoded image's."""
    if sample.width is not None and sample.height is not None and (sample.width, sample.height) != (width, height):
        return (f"{sample.image_id}: the annotations give the image size {sample.width}x{sample.height} but "
                f"{sample.path} is {width}x{height}; the file's own size is used")
    return None


class _Images(Dataset):
    """Decoded, resized uint8 images (normalized later, on the model's device), read as stored
    (no EXIF rotation), with a note when the annotation's image size is not the file's."""

    def __init__(self, samples: list[Sample], preprocs: dict[str, Preprocess]):
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
        return i, {k: p.resized(img) for k, p in self.preprocs.items()}, (w, h, size_note(s, w, h))


def _collate(batch) -> Batch:
    """Stack the readable images per preprocessing in the loader worker (shared memory), so the
    main process gets one tensor per protocol instead of copying 100+ images itself."""
    good = [(i, info) for i, tensors, info in batch if tensors is not None]
    bad = [(i, info) for i, tensors, info in batch if tensors is None]
    keys = next((t for _, t, _ in batch if t is not None), {})
    stacked = {k: torch.stack([t[k] for _, t, _ in batch if t is not None]) for k in keys}
    return Batch(good, bad, stacked)


def ramp_batches(n: int, batch_size: int) -> list[list[int]]:
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


def shard_plan(samples: list[Sample], plan: list[list[int]], index: int, count: int
               ) -> tuple[list[Sample], list[list[int]]]:
    """Shard ``index`` of ``count`` of a run over ``samples`` in the batches of ``plan``: every
    ``count``-th batch from the ``index``-th, as (its samples, its batches as indices into them).
    Whole batches, so every image runs in the batch it runs in without shards, and a merge of the
    shards equals one run to the last bit."""
    mine = plan[index::count]
    own = [samples[i] for batch in mine for i in batch]
    starts = [0]
    for batch in mine:
        starts.append(starts[-1] + len(batch))
    return own, [list(range(a, b)) for a, b in itertools.pairwise(starts)]


def resume_plan(samples: list[Sample], plan: list[list[int]], done: set[str]
                ) -> tuple[list[Sample], list[list[int]]]:
    """The samples not done yet and their batches (indices into that list): ``plan`` (batches of
    indices into ``samples``) less the done images. A run commits whole batches, so a resumed run
    puts every remaining image in the batch an uninterrupted run puts it in; restarting the ramp
    would regroup them, and a model's floats can move in the last bits with the batch it runs in."""
    todo: list[Sample] = []
    out: list[list[int]] = []
    for batch in plan:
        rest = [samples[i] for i in batch if samples[i].image_id not in done]
        if rest:
            out.append(list(range(len(todo), len(todo) + len(rest))))
            todo += rest
    return todo, out


def cpu_batches(samples: list[Sample], preprocs: dict[str, Preprocess], batch_size: int, workers: int,
                plan: list[list[int]] | None = None):
    """:class:`Batch` es of ``samples`` decoded by ``workers`` DataLoader processes (0: here), in
    the batches of ``plan`` (default: :func:`ramp_batches`)."""
    plan = ramp_batches(len(samples), batch_size) if plan is None else plan
    return DataLoader(_Images(samples, preprocs), batch_sampler=plan,
                      num_workers=workers, collate_fn=_collate, pin_memory=torch.cuda.is_available(),
                      prefetch_factor=4 if workers else None, worker_init_fn=follow_parent if workers else None)
