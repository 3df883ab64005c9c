"""The per-image half of `tdviz wsol`: everything after the models, run in the box-extraction pool.

The main process runs the models on a batch and sends :class:`Chunk` s of images to
:func:`extract_chunk` (numpy, OpenCV and tdviz's compiled trees only; a worker process, or inline
with ``--box-workers 0``). For every model it builds the chunk's :class:`~tdviz.wsol.evidence.Evidence`
and asks each metric for its rows (:meth:`tdviz.wsol.metrics.Meter.rows`); it returns those rows
and each image's finished ``records.jsonl`` line, so the main process only adds arrays and writes
lines.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..datasets.records import Problem
from ..errors import TdvizError
from ..processes import watch_parent
from .evidence import Evidence, ImageEntry, ModelPart
from .metrics import METRICS, MetricOptions, make_metrics
from .metrics.pxap import load_gt_mask
from .saved_maps import save_image_maps

__all__ = ["Chunk", "ChunkConfig", "ChunkResult", "extract_chunk", "init_worker"]


def init_worker(parent_pid: int | None = None) -> None:
    """A box worker runs OpenCV on one thread (N workers x OpenCV's default of one thread per core
    would oversubscribe the machine) and exits when ``parent_pid`` dies."""
    cv2.setNumThreads(1)
    if parent_pid is not None:
        watch_parent(parent_pid)


@dataclass(frozen=True)
class ChunkConfig:
    """What every chunk of a run shares: the metric options, the metrics to compute, the
    threshold grid of the wsol protocol and where to save maps (or ``None``)."""

    options: MetricOptions
    metrics: tuple[str, ...]
    thresholds: np.ndarray | None = field(default=None, compare=False)
    save_maps: str | None = None


@dataclass
class Chunk:
    """Images of a batch and every model's part on them."""

    config: ChunkConfig
    images: list[ImageEntry]
    models: dict[str, ModelPart]


@dataclass
class ChunkResult:
    """The chunk's images that were counted (``ok``, indices), the others' problems, one record
    line per counted image and, per model and metric, its rows [len(ok), T, ...]."""

    ok: list[int]
    problems: list[Problem]
    lines: list[str]
    rows: dict[str, dict[str, np.ndarray]]


@functools.lru_cache(maxsize=8)
def _meters(names: tuple[str, ...], options: MetricOptions) -> dict:
    """Meters used only for their rows (stateless use), one set per worker and run."""
    protocols = {METRICS[n].protocol for n in names}
    meters = make_metrics(protocols, options, masks=True, extra=names)
    return {n: meters[n] for n in names}


def _box(row) -> list[int] | None:
    return None if math.isnan(row[0]) else [int(v) for v in row]


def extract_chunk(chunk: Chunk) -> ChunkResult:
    """Rows and record lines of a chunk (see the module docstring). An image whose masks cannot
    be read is left out of every meter and returned as a problem."""
    cfg = chunk.config
    meters = _meters(cfg.metrics, cfg.options)
    need_masks = any(METRICS[n].needs_masks for n in cfg.metrics)
    ok, problems, masks = [], [], []
    for b, image in enumerate(chunk.images):
        try:
            if need_masks and image.mask_paths:
                fg, ignore = load_gt_mask(image.mask_paths, image.ignore_path)
                masks.append((fg, ignore & ~fg))
            else:
                masks.append(None)
            ok.append(b)
        except TdvizError as exc:
            problems.append(Problem(image.image_id, str(exc), "image skipped"))
    images = [chunk.images[b] for b in ok]
    keep = np.asarray(ok, np.int64)
    rows, records = {}, [{"image_id": im.image_id, "label": im.label, "models": {}} for im in images]
    k = cfg.options.topk
    for name, full in chunk.models.items():
        part = full.rows(keep)
        ev = Evidence(images, part, cfg.thresholds, masks)
        rows[name] = {m: meters[m].rows(ev) for m in cfg.metrics}
        v2 = ev.best_ious()[1] if part.wsol_raw is not None else None
        for b, image in enumerate(images):
            rec = {"steps": [], "most_confident_step": int(part.mc[b]) + 1}
            for t in range(part.steps):
                step = {}
                if part.has_cam:
                    step.update(top5=part.class_ids[b, t, :k].tolist(),
                                scores=[round(float(v), 4) for v in part.scores[b, t, :k]],
                                top1_box=_box(ev.cam_boxes[b, t, 0]), gt_known_box=_box(ev.cam_boxes[b, t, -1]))
                if v2 is not None:
                    step.update(best_iou_v2=None if np.isnan(v2[b, t]).any() else round(float(np.max(v2[b, t])), 4))
                rec["steps"].append(step)
            records[b]["models"][name] = rec
            if cfg.save_maps:
                save_image_maps(cfg.save_maps, image, part, b, ev.input_boxes[b] if part.has_cam else None)
    lines = [json.dumps(r) + "\n" for r in records]
    return ChunkResult(ok, problems, lines, rows)
