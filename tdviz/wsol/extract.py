"""The per-image half of `tdviz wsol`: everything after the models, run in the box-extraction pool.

The main process runs the models on a batch and sends chunks of images to :func:`extract_chunk`
(numpy and OpenCV only; runs in a worker process, or inline with ``--box-workers 0``). A chunk
holds, per model, the classes and scores of every step, the Grad-CAM-rule boxes in input pixels
when the GPU found them (or the thresholded masks, packed into bits, when the models ran on the
CPU), and the GT class's raw map for the wsolevaluation protocol. The worker returns what the
meters count (hits, best IoU per threshold, PxAP histograms) and each image's finished
``records.jsonl`` line, so the main process only adds arrays and writes lines.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np

from ..errors import TdvizError
from ..processes import watch_parent
from .boxes import largest_component_box, resize_boxes_wsol, wsol_best_ious, wsol_scoremap
from .metrics import CamProtocolMeter, PxAPMeter, load_gt_mask
from .saved_maps import save_image_maps

__all__ = ["extract_chunk", "image_entry", "init_worker"]


def init_worker(parent_pid: int | None = None) -> None:
    """A box worker runs OpenCV on one thread (N workers x OpenCV's default of one thread per core
    would oversubscribe the machine) and exits when ``parent_pid`` dies."""
    cv2.setNumThreads(1)
    if parent_pid is not None:
        watch_parent(parent_pid)


def image_entry(sample, width: int, height: int) -> dict:
    """What the workers need of one image: id, label, its size as decoded, GT boxes (original
    pixels) with their classes, and its masks (``None`` when it has none)."""
    return {"image_id": sample.image_id, "label": int(sample.label), "width": int(width), "height": int(height),
            "boxes": np.asarray(sample.boxes, np.float64).reshape(-1, 4), "box_labels": sample.box_labels,
            "mask_paths": [str(p) for p in sample.mask_paths] or None,
            "ignore_path": None if sample.ignore_path is None else str(sample.ignore_path)}


def _box_to_original(box, pre, width: int, height: int) -> list[int] | None:
    """An inclusive pixel box in the model input -> inclusive pixels of the original image.

    The box covers the continuous span [x0, x1 + 1); it is mapped through the preprocessing and
    turned back into inclusive pixels by rounding the span's ends. ``None`` for no box (-1).
    """
    if box[0] < 0:
        return None
    x0, y0, x1, y1 = pre.box_to_original([box[0], box[1], box[2] + 1, box[3] + 1], width, height)
    return [round(x0), round(y0), max(round(x1) - 1, round(x0)), max(round(y1) - 1, round(y0))]


def _cam_input_boxes(part: dict, b: int) -> np.ndarray:
    """[T, K+1, 4] input-frame boxes of image b: from the GPU, or from its packed masks here."""
    if part["cam_boxes"] is not None:
        return part["cam_boxes"][b]
    h, w = part["size"]
    packed = part["cam_masks"][b]  # [T, K+1, bytes]
    out = np.full((*packed.shape[:2], 4), -1, np.int64)
    for t in range(packed.shape[0]):
        for k in range(packed.shape[1]):
            mask = np.unpackbits(packed[t, k], count=h * w).reshape(h, w)
            found = largest_component_box(mask)
            if len(found):
                out[t, k] = found[0]
    return out


def _image_masks(image: dict):
    if not image.get("mask_paths"):
        return None
    fg, ignore = load_gt_mask(image["mask_paths"], image.get("ignore_path"))
    return fg, ignore & ~fg




def extract_chunk(chunk: dict) -> dict:
    """Boxes, IoUs, meter rows and record lines for a chunk of images (see the module docstring).

    An image whose masks cannot be read is left out of every meter and returned as a problem; an
    image without masks gives PxAP rows of -1, one without GT boxes NaN IoUs and -1 localization
    hits, which the meters do not count.
    """
    cfg = chunk["cfg"]
    images = chunk["images"]
    cam_meter = CamProtocolMeter(iou_threshold=cfg["iou_threshold"], topk=cfg["topk"])
    pxap = PxAPMeter() if cfg["pxap"] else None
    k = cfg["topk"]
    ok, problems, lines = [], [], []
    rows = {name: {"hits": [], "v1": [], "v2": [], "ht": [], "hf": []} for name in chunk["models"]}
    for b, image in enumerate(images):
        try:
            masks = _image_masks(image) if pxap is not None else None
        except TdvizError as exc:
            problems.append((b, f"{image['image_id']}: {exc}"))
            continue
        record = {"image_id": image["image_id"], "label": image["label"], "models": {}}
        width, height = image["width"], image["height"]
        gt = np.asarray(image["boxes"], np.float64).reshape(-1, 4)
        for name, part in chunk["models"].items():
            out = rows[name]
            rec = {"steps": [], "most_confident_step": int(part["mc"][b]) + 1}
            steps = part["steps"]
            cam_boxes = _cam_input_boxes(part, b) if part["has_cam"] else None
            hits, v1s, v2s, hts, hfs = [], [], [], [], []
            for t in range(steps):
                step_rec = {}
                if cam_boxes is not None:
                    boxes = [_box_to_original(bx, part["pre"], width, height) for bx in cam_boxes[t].tolist()]
                    classes = part["class_ids"][b, t, :k].tolist()
                    known = boxes[-1] if boxes[-1] is not None else [math.nan] * 4
                    hits.append(cam_meter.hits_of(classes, boxes[:k], image["label"], gt, gt_known_box=known,
                                                  gt_box_labels=image["box_labels"]))
                    step_rec.update(top5=classes, scores=[round(float(v), 4) for v in part["scores"][b, t, :k]],
                                    top1_box=boxes[0], gt_known_box=boxes[-1])
                if part["wsol_raw"] is not None:
                    scoremap = wsol_scoremap(part["wsol_raw"][b, t])
                    v1, v2 = wsol_best_ious(scoremap, resize_boxes_wsol(gt, width, height), cfg["thresholds"])
                    v1s.append(v1)
                    v2s.append(v2)
                    step_rec.update(best_iou_v2=None if np.isnan(v2).any() else round(float(np.max(v2)), 4))
                    if pxap is not None:
                        ht, hf = pxap.histograms(scoremap, *masks) if masks is not None else \
                            (np.full(len(pxap.edges) - 1, -1), np.full(len(pxap.edges) - 1, -1))
                        hts.append(ht)
                        hfs.append(hf)
                rec["steps"].append(step_rec)
            for key, vals in (("hits", hits), ("v1", v1s), ("v2", v2s), ("ht", hts), ("hf", hfs)):
                if vals:
                    out[key].append(np.stack(vals))
            record["models"][name] = rec
            if cfg["save_maps"]:
                save_image_maps(cfg["save_maps"], image, part, b, cam_boxes)
        ok.append(b)
        lines.append(json.dumps(record) + "\n")
    arrays = {name: {key: (np.stack(vals) if vals else None) for key, vals in r.items()} for name, r in rows.items()}
    return {"ok": ok, "problems": problems, "lines": lines, "models": arrays}
