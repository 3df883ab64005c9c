"""The maps ``tdviz wsol --save-maps DIR`` keeps, and recomputing every metric from them.

Layout: one ``.npz`` per model and image, ``DIR/<model label>/<image id>.npz`` (both made safe
for file names by :func:`tdviz.outputs.safe_name`; an id that had to change gets ``-<8 hex digits
of its SHA-1>`` so that two ids never share a file). ``T`` = steps, ``K`` = ``--topk``, ``h x w``
= the CAM layer's resolution (7x7 for a ResNet at 224²), ``C`` = classes. Everything is kept at
full precision, so the files reproduce ``results.json`` exactly (:func:`recompute_results`):

=====================  ======================  ================================================
key                    dtype, shape            what
=====================  ======================  ================================================
``meta``               JSON text               image id, model label and name, method, layer, the
                                               image's width and height as decoded, its label,
                                               the cam protocol's preprocessing and ratio
``logits``             float32 [T, C]          the model's logits at every step
``most_confident``     int64 []                the paper's most confident step (from 1)
``class_ids``          int64 [T, K+1]          cam protocol: the top-k classes of each step, then
                                               the GT label
``scores``             float32 [T, K+1]        their softmax probabilities
``cam_raw``            float32 [T, K+1, h, w]  their raw maps (ReLU'd, before normalization);
                                               methods without raw maps store ``cam_maps``
                                               [T, K+1, H, W] (normalized, input size) instead
``cam_boxes``          int64 [T, K+1, 4]       each map's Grad-CAM-rule box, inclusive pixels of
                                               the model input (-1: no box); stored because a
                                               GPU may round the normalization differently
``wsol_raw``           float32 [T, h, w]       wsol protocol: the GT class's raw map, from the
                                               image resized to 224²
=====================  ======================  ================================================

Recomputing by hand: the cam protocol maps ``cam_boxes`` to original pixels through the
preprocessing in ``meta`` (:meth:`tdviz.geometry.InputFrame.box_to_original`) and scores them
against the GT boxes (IoU >= 0.5, inclusive ``+1`` formula); the wsol protocol runs wsolevaluation's
rules on ``wsol_raw`` (:func:`tdviz.wsol.scoremaps.wsol_scoremap`, :func:`~tdviz.wsol.scoremaps.wsol_best_ious`).
This module's import needs no torch (the box workers write these files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..outputs import safe_name

__all__ = ["map_file", "recompute_results", "save_image_maps"]

FORMAT_VERSION = 1


def map_file(folder: str | Path, model_label: str, image_id: str) -> Path:
    """Where the maps of ``model_label`` on ``image_id`` are saved under ``folder``."""
    name = safe_name(image_id, "image")
    if name != image_id:
        name = f"{name}-{hashlib.sha1(image_id.encode()).hexdigest()[:8]}"
    return Path(folder) / safe_name(model_label, "model") / f"{name}.npz"


def save_image_maps(folder: str | Path, image, part, b: int, cam_boxes: np.ndarray | None) -> Path:
    """Write image ``b`` of a chunk's :class:`~tdviz.wsol.evidence.ModelPart` (``image`` its
    :class:`~tdviz.wsol.evidence.ImageEntry`, ``cam_boxes`` its input-frame boxes [T, K+1, 4])."""
    meta = dict(part.meta, image_id=image.image_id, width=image.width, height=image.height, label=image.label,
                steps=int(part.steps), version=FORMAT_VERSION)
    arrays = {key: np.asarray(value[b], np.float32) for key, value in (part.save or {}).items()}
    arrays["most_confident"] = np.int64(part.mc[b] + 1)
    if part.class_ids is not None:
        arrays["class_ids"] = np.asarray(part.class_ids[b], np.int64)
        arrays["scores"] = np.asarray(part.scores[b], np.float32)
        arrays["cam_boxes"] = np.asarray(cam_boxes, np.int64)
    if part.wsol_raw is not None:
        arrays["wsol_raw"] = np.asarray(part.wsol_raw[b], np.float32)
    path = map_file(folder, meta["model"], image.image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez_compressed(tmp, meta=json.dumps(meta), **arrays)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise exc if exc.filename else OSError(exc.errno, exc.strerror, str(path)) from None
    return path


def _part(files: list[dict]):
    """A chunk's :class:`~tdviz.wsol.evidence.ModelPart` rebuilt from saved files (one dict of
    arrays per image)."""
    from ..geometry import InputFrame
    from .evidence import ModelPart

    first = files[0]
    meta = json.loads(str(first["meta"]))
    frame = InputFrame(**meta["cam_preprocess"])
    stack = lambda key: np.stack([f[key] for f in files]) if key in first else None
    return ModelPart(int(meta["steps"]), frame, (frame.size, frame.size),
                     np.array([int(f["most_confident"]) - 1 for f in files]), stack("class_ids"), stack("scores"),
                     stack("cam_boxes"), None, stack("wsol_raw"))


def recompute_results(folder: str | Path, dataset, models: list[str], protocols=("cam", "wsol"), topk: int = 5,
                      iou_threshold: float = 0.5, limit: int | None = None, chunk: int = 64, extra=()) -> dict:
    """Every metric of a run from the maps it saved in ``folder`` and the ``dataset`` it ran on
    (``results.json``'s layout; images without a file are listed in ``skipped``)."""
    from .evidence import ImageEntry
    from .extract import Chunk, ChunkConfig, extract_chunk
    from .metrics import MetricOptions, make_metrics
    from .results import add_rows, results_of
    from .scoremaps import cam_threshold_grid

    samples = dataset.samples[:limit] if limit else dataset.samples
    masks = any(s.mask_paths for s in samples)
    options = MetricOptions(topk=topk, iou_threshold=iou_threshold)
    names = tuple(make_metrics(protocols, options, masks, extra))
    cfg = ChunkConfig(options, names, cam_threshold_grid(options.cam_curve_interval) if "wsol" in protocols else None)
    meters, skipped, counted = {}, [], set()
    for label in models:
        have = []
        for s in samples:
            path = map_file(folder, label, s.image_id)
            if path.is_file():
                with np.load(path) as data:
                    have.append((s, {k: data[k] for k in data.files}))
            else:
                skipped.append(f"{s.image_id}: no saved maps of {label!r} ({path})")
        if not have:
            continue
        steps = int(json.loads(str(have[0][1]["meta"]))["steps"])
        meters[label] = {key: make_metrics(protocols, options, masks, extra)
                         for key in [str(t) for t in range(1, steps + 1)] + ["mc"]}
        for start in range(0, len(have), chunk):
            group = have[start:start + chunk]
            images = []
            for s, f in group:
                meta = json.loads(str(f["meta"]))
                images.append(ImageEntry.of(s, meta["width"], meta["height"]))
            part = _part([f for _, f in group])
            res = extract_chunk(Chunk(cfg, images, {label: part}))
            ok = np.asarray(res.ok, np.int64)
            counted.update(images[i].image_id for i in ok)
            if len(ok):
                add_rows(meters[label], res.rows[label], part.mc[ok])
    config = {"protocols": list(protocols), "topk": topk, "iou_threshold": iou_threshold, "limit": limit}
    return results_of(meters, len(counted), skipped, config)
