"""Cluttered Fashion-MNIST, generator v2: canvases on which only the object predicts its label.

Each 224 x 224 canvas holds one Fashion-MNIST item (the *object*, two in the two-object variant)
over clutter that carries no class information, so a model has to recognise the item itself:

* **Object**: the item's own grey levels through a random colour ramp (:func:`colour_ramp`: two
  colours, a gamma, a third of them inverted), so its texture survives in any colour and contrast;
  side 40-200 px (uniform), aspect 0.75-1.33, rotation within +-15 degrees, bilinear or bicubic
  resampling, drawn opaque where the resampled item is bright; its ramp is redrawn (up to 8 times)
  until its mean colour differs from the clutter under it by >= 40 RGB levels.
* **Clutter** (:mod:`tdviz.demo.clutter`): smooth colour fields, 1/f noise, periodic textures or
  flat gradients, one or two blended, with lines, blobs and polygons on top; up to 6 *fragments*
  (partial crops, at most 16 x 16 of the 28 x 28 grid) of other items.
* **Distractors**: with probability 0.6, one or two whole items of *other* classes, each with a side
  0.35-0.7 times the object's (so at most half its area), drawn behind the object and placed so
  that at most 30% of a distractor's rectangle falls in the object's box. **Label and box rule:**
  the label is the class of the largest item, the object; the box is the tight box of the object's
  mask alone. Distractors are listed in ``meta["distractors"]`` for reference, never as objects.
* **Finish** over the whole canvas: global contrast and brightness, Gaussian blur (40% of canvases,
  sigma 0.4-1.6), near-Gaussian noise (sd 0-10 levels) and JPEG compression (half of the canvases,
  quality 30-95).

Conventions shared with v1 (:mod:`tdviz.demo.canvas`): RGB ``uint8`` images, boxes 0-based and
inclusive, the object's mask is where its resampled intensity is >= ``MASK_THRESHOLD`` (26), and its
alpha is 0 outside the mask, so before the finish the object changes no pixel outside its mask
(blur and JPEG then spread changes by a few pixels and within 16 x 16 JPEG blocks). Splits,
class balance (:func:`~tdviz.demo.sample.source_index`) and determinism follow v1: image ``i`` is
drawn from ``SeedSequence([seed, split code, 0, i])`` and the same seed gives the same bytes with
the same numpy and OpenCV. ``Sample.meta`` is the whole recipe: :func:`render` re-creates the
canvas from it and the source array alone.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .clutter import clutter, colour_ramp
from .fashion import CLASS_NAMES
from .sample import SOURCE_SPLIT, SPLIT_CODE, Sample, box_iou, mask_to_box, numbered_sample, rect_inside_fraction

__all__ = ["GENERATOR_VERSION", "make_sample", "render", "render_sample", "warp_item"]

GENERATOR_VERSION = 2
CANVAS_SIZE = 224
MASK_THRESHOLD = 26
OBJECT_SIDE = (40, 200)
TWO_OBJECT_SIDE = (40, 130)
ASPECT = (0.75, 4 / 3)
MAX_ROTATION = 15.0
DISTRACTOR_COUNT_P = (0.4, 0.35, 0.25)  # probability of 0, 1, 2 distractors
DISTRACTOR_SCALE = (0.35, 0.7)
DISTRACTOR_MAX_OVERLAP = 0.3
FRAGMENT_COUNT = (0, 6)
FRAGMENT_MAX_OVERLAP = 0.15
TWO_OBJECT_MAX_IOU = 0.3
MIN_VISIBILITY = 40.0


# --------------------------------------------------------------------------- one item


def warp_item(item: np.ndarray, w: int, h: int, angle: float, cubic: bool) -> np.ndarray:
    """The item (uint8 [n, m]) scaled to ``w x h`` and rotated by ``angle`` degrees about its centre,
    on the smallest canvas that holds it: float32 grey levels in [0, 255], 0 outside the item."""
    rows, cols = item.shape
    rad = math.radians(angle)
    c, s = math.cos(rad), math.sin(rad)
    out_w = max(1, math.ceil(abs(w * c) + abs(h * s)))
    out_h = max(1, math.ceil(abs(w * s) + abs(h * c)))
    sx, sy = w / cols, h / rows
    m = np.array([[c * sx, -s * sy], [s * sx, c * sy]])
    src_c = np.array([(cols - 1) / 2, (rows - 1) / 2])
    dst_c = np.array([(out_w - 1) / 2, (out_h - 1) / 2])
    affine = np.hstack([m, (dst_c - m @ src_c)[:, None]])
    flags = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
    value = cv2.warpAffine(item.astype(np.float32), affine, (out_w, out_h), flags=flags,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.clip(value, 0, 255)


def _alpha(value: np.ndarray) -> np.ndarray:
    """Opaque on the item, a soft rim at its dim edge, exactly 0 off its mask."""
    return np.where(value >= MASK_THRESHOLD, np.clip((value - 10) / 48, 0, 1), 0).astype(np.float32)


def _composite(canvas: np.ndarray, value: np.ndarray, ramp: dict, x: int, y: int, opacity: float = 1.0) -> None:
    """Blend an item layer, coloured by ``ramp``, into the float canvas in place (may stick out)."""
    h, w = value.shape
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    v = value[y0 - y:y1 - y, x0 - x:x1 - x]
    a = (_alpha(v) * opacity)[..., None]
    low, high = np.float32(ramp["low"]), np.float32(ramp["high"])
    fg = low + (high - low) * np.power(v / 255.0, ramp["gamma"], dtype=np.float32)[..., None]
    roi = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = roi + (fg - roi) * a


def _layer_box(layer: dict, value: np.ndarray) -> list[int]:
    x0, y0, x1, y1 = mask_to_box(value >= MASK_THRESHOLD)
    x, y = layer["xy"]
    return [x0 + x, y0 + y, x1 + x, y1 + y]



# --------------------------------------------------------------------------- recipe


def _item_geometry(rng, side: float) -> dict:
    aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
    return {"w": max(3, round(side * math.sqrt(aspect))), "h": max(3, round(side / math.sqrt(aspect))),
            "angle": round(float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)), 2), "cubic": bool(rng.random() < 0.5)}


def _fit(geom: dict, limit: int) -> dict:
    """Shrink an item so that its rotated canvas fits ``limit`` pixels."""
    rad = math.radians(geom["angle"])
    c, s = abs(math.cos(rad)), abs(math.sin(rad))
    extent = max(geom["w"] * c + geom["h"] * s, geom["w"] * s + geom["h"] * c)
    if extent > limit:
        k = (limit - 1) / extent
        geom = dict(geom, w=max(3, int(geom["w"] * k)), h=max(3, int(geom["h"] * k)))
    return geom


def _object(rng, images, labels, idx: int, side_range) -> tuple[dict, np.ndarray]:
    geom = _fit(_item_geometry(rng, rng.uniform(*side_range)), CANVAS_SIZE)
    value = warp_item(images[idx], geom["w"], geom["h"], geom["angle"], geom["cubic"])
    h, w = value.shape
    x, y = int(rng.integers(0, CANVAS_SIZE - w + 1)), int(rng.integers(0, CANVAS_SIZE - h + 1))
    return {"source_index": int(idx), "label": int(labels[idx]), **geom, "xy": [x, y],
            "ramp": colour_ramp(rng)}, value


def _visible_ramp(rng, obj: dict, value: np.ndarray, base: np.ndarray) -> dict:
    """The object's colour ramp, redrawn (up to 8 times) until the object's mean colour differs from
    the clutter under it by at least ``MIN_VISIBILITY`` (RGB distance); else the most visible one."""
    x, y = obj["xy"]
    h, w = value.shape
    on = value >= MASK_THRESHOLD
    under = base[y:y + h, x:x + w][on].mean(axis=0)
    t = value[on] / 255.0
    best, best_d = obj["ramp"], -1.0
    for attempt in range(8):
        ramp = obj["ramp"] if attempt == 0 else colour_ramp(rng)
        low, high = np.array(ramp["low"]), np.array(ramp["high"])
        mean = low + (high - low) * np.mean(t ** ramp["gamma"])
        d = float(np.linalg.norm(mean - under))
        if d >= MIN_VISIBILITY:
            return ramp
        if d > best_d:
            best, best_d = ramp, d
    return best


def _other_class(rng, labels, classes_taken) -> int:
    while True:
        j = int(rng.integers(0, len(labels)))
        if int(labels[j]) not in classes_taken:
            return j


def _place_objects(rng, images, labels, index: int, two_objects: bool):
    if not two_objects:
        obj, value = _object(rng, images, labels, index, OBJECT_SIDE)
        return [obj], [value]
    if (labels == labels[index]).all():
        raise ValueError("two_objects needs source items of at least two classes")
    second = _other_class(rng, labels, {int(labels[index])})
    for _ in range(200):
        placed = [_object(rng, images, labels, i, TWO_OBJECT_SIDE) for i in (index, second)]
        masks = [_mask(o, v) for o, v in placed]
        if not (masks[0] & masks[1]).any() and \
                box_iou(mask_to_box(masks[0]), mask_to_box(masks[1])) < TWO_OBJECT_MAX_IOU:
            return [o for o, _ in placed], [v for _, v in placed]
    raise RuntimeError("could not place two disjoint objects in 200 tries")  # never seen in 10^5 canvases


def _mask(layer: dict, value: np.ndarray) -> np.ndarray:
    mask = np.zeros((CANVAS_SIZE, CANVAS_SIZE), bool)
    h, w = value.shape
    x, y = layer["xy"]
    mask[y:y + h, x:x + w] = value >= MASK_THRESHOLD
    return mask


def _place_distractors(rng, images, labels, objs, boxes) -> list[dict]:
    count = int(rng.choice(len(DISTRACTOR_COUNT_P), p=DISTRACTOR_COUNT_P))
    side = math.sqrt(objs[0]["w"] * objs[0]["h"])
    taken = {o["label"] for o in objs}
    out = []
    for _ in range(count):
        idx = _other_class(rng, labels, taken)
        geom = _fit(_item_geometry(rng, side * rng.uniform(*DISTRACTOR_SCALE)), CANVAS_SIZE)
        value = warp_item(images[idx], geom["w"], geom["h"], geom["angle"], geom["cubic"])
        h, w = value.shape
        ramp = colour_ramp(rng)
        for _ in range(30):
            x, y = int(rng.integers(-w // 4, CANVAS_SIZE - w + w // 4 + 1)), \
                int(rng.integers(-h // 4, CANVAS_SIZE - h + h // 4 + 1))
            rect = [x, y, x + w - 1, y + h - 1]
            if all(rect_inside_fraction(rect, b) <= DISTRACTOR_MAX_OVERLAP for b in boxes):
                out.append({"source_index": idx, "label": int(labels[idx]), **geom, "xy": [x, y], "ramp": ramp})
                break
    return out


def _place_fragments(rng, images, exclude, boxes, scale) -> list[dict]:
    out = []
    for _ in range(int(rng.integers(FRAGMENT_COUNT[0], FRAGMENT_COUNT[1] + 1))):
        src = int(rng.integers(0, len(images)))
        while src in exclude:
            src = int(rng.integers(0, len(images)))
        for _ in range(10):
            cw, ch = (int(c) for c in rng.integers(6, 17, 2))
            cx, cy = int(rng.integers(0, 28 - cw + 1)), int(rng.integers(0, 28 - ch + 1))
            if 0.3 <= (images[src, cy:cy + ch, cx:cx + cw] >= MASK_THRESHOLD).mean() <= 0.85:
                break
        k = scale * rng.uniform(0.5, 1.0)
        w, h = max(3, round(cw * k)), max(3, round(ch * k))
        if max(w, h) > 45:
            w, h = max(3, w * 45 // max(w, h)), max(3, h * 45 // max(w, h))
        angle = round(float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)), 2)
        frag = {"source_index": src, "crop": [cx, cy, cx + cw, cy + ch], "w": w, "h": h, "angle": angle,
                "cubic": False, "ramp": colour_ramp(rng), "opacity": round(float(rng.uniform(0.5, 1.0)), 3)}
        for _ in range(25):
            x, y = int(rng.integers(-w // 3, CANVAS_SIZE - w + w // 3 + 1)), \
                int(rng.integers(-h // 3, CANVAS_SIZE - h + h // 3 + 1))
            if all(rect_inside_fraction([x, y, x + w + 4, y + h + 4], b) <= FRAGMENT_MAX_OVERLAP for b in boxes):
                out.append(dict(frag, xy=[x, y]))
                break
    return out


def _finish_recipe(rng) -> dict:
    return {"contrast": round(float(rng.uniform(0.7, 1.2)), 3), "brightness": round(float(rng.uniform(-25, 25)), 2),
            "blur": round(float(rng.uniform(0.4, 1.6)), 3) if rng.random() < 0.4 else 0.0,
            "noise": round(float(rng.uniform(0, 10)), 2), "noise_seed": int(rng.integers(0, 2**63)),
            "jpeg": int(rng.integers(30, 96)) if rng.random() < 0.5 else 0}


def _finish(canvas: np.ndarray, f: dict) -> np.ndarray:
    img = canvas * np.float32(f["contrast"]) + np.float32(128 * (1 - f["contrast"]) + f["brightness"])
    if f["blur"] > 0:
        img = cv2.GaussianBlur(img, (0, 0), f["blur"])
    if f["noise"] > 0:
        # triangular (sum of two uniform bytes, sd 104.5 levels) scaled to sd ``noise``: near-Gaussian, 5x cheaper
        b = np.frombuffer(np.random.default_rng(f["noise_seed"]).bytes(2 * img.size), np.uint8)
        tri = (b[0::2].astype(np.float32) + b[1::2] - 255).reshape(img.shape)
        img = img + tri * np.float32(f["noise"] / 104.5)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if f["jpeg"]:
        _, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, f["jpeg"]])
        out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out


def make_sample(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, index: int, *,
                two_objects: bool = False, split: str = "val", image_id: str | None = None,
                extra_meta: dict | None = None) -> Sample:
    """Draw a v2 canvas recipe from ``rng`` around source item ``index`` and render it.

    Arguments as :func:`tdviz.demo.canvas.make_sample`. The two-object variant has two objects of
    different classes (disjoint masks, box IoU < 0.3) and no distractors.
    """
    if split not in SPLIT_CODE:
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    objs, values = _place_objects(rng, images, labels, int(index), two_objects)
    boxes = [_layer_box(o, v) for o, v in zip(objs, values)]
    distractors = [] if two_objects else _place_distractors(rng, images, labels, objs, boxes)
    scale = min(math.sqrt(o["w"] * o["h"]) for o in objs) / 28.0
    exclude = {o["source_index"] for o in objs} | {d["source_index"] for d in distractors}
    clutter_seed = int(rng.integers(0, 2**63))
    base = clutter(clutter_seed, CANVAS_SIZE)
    for obj, value in zip(objs, values):
        obj["ramp"] = _visible_ramp(rng, obj, value, base)
    meta = {"version": GENERATOR_VERSION, "image_id": image_id, "split": split,
            "source_split": SOURCE_SPLIT[split], "size": [CANVAS_SIZE, CANVAS_SIZE],
            "clutter_seed": clutter_seed,
            "fragments": _place_fragments(rng, images, exclude, boxes, scale),
            "distractors": distractors, "objects": objs, "finish": _finish_recipe(rng)}
    if extra_meta:
        meta.update(extra_meta)
    image, masks = _render(meta, images, True, True, base)
    for obj, box in zip(objs, boxes):
        obj["box"] = box
        obj["class_name"] = CLASS_NAMES[obj["label"]]
    for d in distractors:
        d["class_name"] = CLASS_NAMES[d["label"]]
    return Sample(image=image, masks=masks, boxes=np.array(boxes, np.int64),
                  labels=np.array([o["label"] for o in objs], np.int64), meta=meta)


def render(meta: dict, images: np.ndarray, *, objects: bool = True,
           fragments: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Re-create a v2 canvas from its recipe and the source array.

    Back to front: clutter, fragments, distractors, objects, then the finish. ``objects=False``
    leaves the labelled objects out (distractors are clutter), ``fragments=False`` the fragments.
    Returns ``(image uint8 [224,224,3], masks bool [K,224,224])``, masks from the objects' own pixels.
    """
    return _render(meta, images, objects, fragments, None)


def _render(meta, images, objects, fragments, base):
    size = meta["size"][0]
    canvas = clutter(meta["clutter_seed"], size) if base is None else base.copy()
    if fragments:
        for f in meta["fragments"]:
            cx0, cy0, cx1, cy1 = f["crop"]
            value = warp_item(images[f["source_index"], cy0:cy1, cx0:cx1], f["w"], f["h"], f["angle"], f["cubic"])
            _composite(canvas, value, f["ramp"], *f["xy"], opacity=f["opacity"])
    for d in meta["distractors"]:
        _composite(canvas, warp_item(images[d["source_index"]], d["w"], d["h"], d["angle"], d["cubic"]),
                   d["ramp"], *d["xy"])
    masks = np.zeros((len(meta["objects"]), size, size), bool)
    for k, o in enumerate(meta["objects"]):
        value = warp_item(images[o["source_index"]], o["w"], o["h"], o["angle"], o["cubic"])
        masks[k] = _mask(o, value)
        if objects:
            _composite(canvas, value, o["ramp"], *o["xy"])
    return _finish(canvas, meta["finish"]), masks


def render_sample(split: str, i: int, seed: int, images: np.ndarray, labels: np.ndarray,
                  two_objects: bool = False) -> Sample:
    """Render image ``i`` of a v2 split alone (any order, any process: the same bytes)."""
    return numbered_sample(make_sample, split, i, seed, images, labels, two_objects)
