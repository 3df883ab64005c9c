"""Cluttered Fashion-MNIST: 224x224 WSOL canvases built from real Fashion-MNIST items.

Each canvas holds one Fashion-MNIST item (two in the two-object variant),
upscaled, colour-tinted and alpha-composited onto textured clutter: a random
low-frequency coloured field with grain, lines and blobs, plus several
*fragments* (small partial crops) of other Fashion-MNIST items of the same
source split, so neither the background nor the presence of clothing-like
texture reveals the class or the location.

Conventions
-----------
* Images are RGB ``uint8 [224, 224, 3]``.
* Boxes are ``[x0, y0, x1, y1]`` integer pixel indices, 0-based and **inclusive**
  (``x1`` is the last object column), i.e. the tight bounding box of the mask:
  width = ``x1 - x0 + 1``. This is the convention of wsolevaluation
  (``calculate_multiple_iou`` adds 1) and of the ILSVRC XML files.
* The mask of an object is where it shows: the upscaled item's intensity
  ``v >= MASK_THRESHOLD`` (26, i.e. ``v > 0.1*255``) at its placed location.
  Its alpha is ``min(255, ALPHA_GAIN*v)`` inside the mask and exactly 0 outside,
  so the object changes no pixel outside its mask. In the two-object variant the
  masks are pixel-disjoint (and box IoU < 0.3), so each mask is exactly where
  its object shows.
* Fragments: crops of at most 16x16 of the 28x28 grid (<= 33% of an item),
  with 30-85% of their pixels on the item (so they include item edges), scaled by 0.5-1.0 times the
  main object's scale and capped at ``FRAGMENT_MAX_PX`` (45) px on the long side,
  drawn *behind* the objects, and placed so that at most
  ``FRAGMENT_MAX_OVERLAP`` (15%) of a fragment's rectangle falls inside any
  object's box (a fragment that cannot be placed after 25 tries is dropped).
* Split rule: ``"train"`` canvases draw objects and fragments only from the
  Fashion-MNIST train set, ``"val"`` canvases only from the test set; every
  sample's ``meta`` records ``source_split`` and the source index of each
  object and fragment.

Determinism
-----------
Image ``i`` of a split is drawn from
``numpy.random.default_rng(SeedSequence([seed, SPLIT_CODE[split], 0, i]))``;
its main item is chosen class-balanced by :func:`source_index` (each block of 10
images holds one item of every class, in a seeded order; each class's items are
visited in a seeded permutation). So any image can be rendered alone, in any
order or process, and every split with n >= 10 contains all classes.
Rendering uses only integer arithmetic and OpenCV's bit-exact
``INTER_LINEAR_EXACT`` resize, so the same seed gives byte-identical pixels.

The whole recipe of a canvas (``Sample.meta``) is JSON-serialisable and
:func:`render` re-creates the canvas from it and the source array alone.
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from .fashion import CLASS_NAMES
from .sample import (
    SOURCE_SPLIT,
    SPLIT_CODE,
    Sample,
    box_iou,
    load_source,
    mask_to_box,
    numbered_sample,
    rect_inside_fraction,
    source_index,
)

__all__ = [
    "CANVAS_SIZE",
    "GENERATOR_VERSION",
    "MASK_THRESHOLD",
    "SOURCE_SPLIT",
    "SPLIT_CODE",
    "Sample",
    "box_iou",
    "generate_split",
    "item_layer",
    "load_source",
    "make_sample",
    "mask_to_box",
    "render",
    "render_background",
    "render_sample",
    "source_index",
]

#: Bump whenever a change alters generated pixels or annotations (cache key).
GENERATOR_VERSION = 1
CANVAS_SIZE = 224
#: Object pixels are those with upscaled intensity >= 26 (> 0.1 * 255).
MASK_THRESHOLD = 26
ALPHA_GAIN = 2
OBJECT_SIZE = (50, 180)  # side of the upscaled 28x28 item, one-object variant
TWO_OBJECT_SIZE = (50, 130)
FRAGMENT_COUNT = (3, 7)  # inclusive range
FRAGMENT_CROP = (6, 16)  # crop side on the 28x28 grid
FRAGMENT_MAX_PX = 45
FRAGMENT_MAX_OVERLAP = 0.15
TWO_OBJECT_MAX_IOU = 0.3



def _random_tint(rng: np.random.Generator) -> list[int]:
    """A saturated, fairly bright random colour (uniform hue) as RGB ints."""
    h, s, v = rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.7, 1.0)
    return [round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v)]


def item_layer(item: np.ndarray, width: int, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Upscale a uint8 item (or crop) and derive its alpha.

    Returns ``(value, alpha)``, both ``uint8 [height, width]``: ``value`` is the
    bit-exact bilinear resize, ``alpha = min(255, ALPHA_GAIN * value)`` where
    ``value >= MASK_THRESHOLD`` and 0 elsewhere.
    """
    height = width if height is None else height
    value = cv2.resize(np.ascontiguousarray(item), (width, height), interpolation=cv2.INTER_LINEAR_EXACT)
    alpha = np.where(value >= MASK_THRESHOLD, np.minimum(255, value.astype(np.uint16) * ALPHA_GAIN), 0)
    return value, alpha.astype(np.uint8)


def _composite(canvas: np.ndarray, value: np.ndarray, alpha: np.ndarray, tint: Sequence[int],
               x: int, y: int, opacity: int = 255) -> None:
    """Alpha-blend a tinted layer into ``canvas`` in place (integer arithmetic).

    Colour = tint shaded by the item's intensity (``tint * (64 + 191 v/255) / 255``);
    effective alpha = ``alpha * opacity / 255``. The layer may stick out of the canvas.
    """
    h, w = value.shape
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    v = value[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.int32)
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.int32)
    if opacity != 255:
        a = (a * opacity + 127) // 255
    shade = 64 * 255 + 191 * v  # in [0, 255*255]
    fg = (np.asarray(tint, np.int32)[None, None, :] * shade[..., None] + 32512) // 65025
    roi = canvas[y0:y1, x0:x1].astype(np.int32)
    a3 = a[..., None]
    canvas[y0:y1, x0:x1] = ((roi * (255 - a3) + fg * a3 + 127) // 255).astype(np.uint8)


def render_background(bg_seed: int, size: int = CANVAS_SIZE) -> np.ndarray:
    """Textured clutter without fragments: coloured low-frequency field, grain, lines, blobs."""
    rng = np.random.default_rng(bg_seed)
    grid = int(rng.integers(2, 6))
    low = cv2.resize(rng.integers(0, 256, (grid, grid, 3), dtype=np.uint8), (size, size),
                     interpolation=cv2.INTER_LINEAR_EXACT).astype(np.int16)
    mid = cv2.resize(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8), (size, size),
                     interpolation=cv2.INTER_LINEAR_EXACT).astype(np.int16)
    grain = cv2.resize(_triangular_noise(rng, (size // 2, size // 2, 3)), (size, size),
                       interpolation=cv2.INTER_NEAREST)
    mid_weight = int(rng.integers(1, 3))  # 1/4 or 2/4 of the field
    bg = (low * (4 - mid_weight) + mid * mid_weight) // 4 + grain
    canvas = np.ascontiguousarray(np.clip(bg, 0, 255).astype(np.uint8))
    for _ in range(int(rng.integers(2, 7))):
        p0 = tuple(int(c) for c in rng.integers(-20, size + 20, 2))
        p1 = tuple(int(c) for c in rng.integers(-20, size + 20, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(canvas, p0, p1, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 5))):
        centre = tuple(int(c) for c in rng.integers(0, size, 2))
        axes = tuple(int(c) for c in rng.integers(4, 28, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.ellipse(canvas, centre, axes, float(rng.integers(0, 180)), 0.0, 360.0, colour, -1, cv2.LINE_AA)
    return canvas


# --------------------------------------------------------------------------- recipe


def _object_mask(item: np.ndarray, size: int, x: int, y: int, canvas: int = CANVAS_SIZE) -> np.ndarray:
    _, alpha = item_layer(item, size)
    mask = np.zeros((canvas, canvas), bool)
    mask[y:y + size, x:x + size] = alpha > 0
    return mask


def _place_objects(rng, images, labels, index, two_objects):
    """Draw object items, sizes and positions; return object dicts and their masks."""
    S = CANVAS_SIZE
    if not two_objects:
        size = int(rng.integers(OBJECT_SIZE[0], OBJECT_SIZE[1] + 1))
        x, y = (int(c) for c in rng.integers(0, S - size + 1, 2))
        objs = [{"source_index": int(index), "label": int(labels[index]), "size": size, "xy": [x, y]}]
        return objs, [_object_mask(images[index], size, x, y)]
    # second item: a different class, drawn uniformly among the rest
    if (labels == labels[index]).all():
        raise ValueError("two_objects needs source items of at least two classes")
    while True:
        second = int(rng.integers(0, len(labels)))
        if labels[second] != labels[index]:
            break
    for attempt in range(200):
        lo, hi = TWO_OBJECT_SIZE
        if attempt >= 100:  # shrink if the sizes drawn first do not fit
            hi = lo + (hi - lo) // 2
        objs, masks = [], []
        for idx in (index, second):
            size = int(rng.integers(lo, hi + 1))
            x, y = (int(c) for c in rng.integers(0, S - size + 1, 2))
            objs.append({"source_index": int(idx), "label": int(labels[idx]), "size": size, "xy": [x, y]})
            masks.append(_object_mask(images[idx], size, x, y))
        if masks[0].any() and masks[1].any() and not (masks[0] & masks[1]).any() \
                and box_iou(mask_to_box(masks[0]), mask_to_box(masks[1])) < TWO_OBJECT_MAX_IOU:
            return objs, masks
    # deterministic fallback: smallest size in opposite corners (boxes cannot touch)
    lo = TWO_OBJECT_SIZE[0]
    objs = [{"source_index": int(i), "label": int(labels[i]), "size": lo, "xy": list(xy)}
            for i, xy in ((index, (0, 0)), (second, (S - lo, S - lo)))]
    return objs, [_object_mask(images[o["source_index"]], lo, *o["xy"]) for o in objs]


def _place_fragments(rng, images, exclude, obj_boxes, obj_scale):
    """Draw fragment crops of other items and place them mostly off the object boxes."""
    S = CANVAS_SIZE
    if len(images) <= len(exclude):
        raise ValueError("fragments need source items other than the objects")
    frags = []
    for _ in range(int(rng.integers(FRAGMENT_COUNT[0], FRAGMENT_COUNT[1] + 1))):
        while True:
            src = int(rng.integers(0, len(images)))
            if src not in exclude:
                break
        # a crop with enough item pixels in it
        for _ in range(10):
            cw, ch = (int(c) for c in rng.integers(FRAGMENT_CROP[0], FRAGMENT_CROP[1] + 1, 2))
            cx, cy = int(rng.integers(0, 28 - cw + 1)), int(rng.integers(0, 28 - ch + 1))
            crop = images[src, cy:cy + ch, cx:cx + cw]
            if 0.3 <= (crop >= MASK_THRESHOLD).mean() <= 0.85:  # partial: contains item edges
                break
        scale = obj_scale * rng.uniform(0.5, 1.0)
        w, h = max(3, round(cw * scale)), max(3, round(ch * scale))
        if max(w, h) > FRAGMENT_MAX_PX:
            shrink = FRAGMENT_MAX_PX / max(w, h)
            w, h = max(3, int(w * shrink)), max(3, int(h * shrink))
        tint = _random_tint(rng)
        opacity = int(rng.integers(140, 256))
        for _ in range(25):
            x, y = int(rng.integers(-w // 3, S - w + w // 3 + 1)), int(rng.integers(-h // 3, S - h + h // 3 + 1))
            rect = [x, y, x + w - 1, y + h - 1]
            if all(rect_inside_fraction(rect, b) <= FRAGMENT_MAX_OVERLAP for b in obj_boxes):
                frags.append({"source_index": src, "crop": [cx, cy, cx + cw, cy + ch], "size": [w, h],
                              "xy": [x, y], "tint": tint, "opacity": opacity})
                break
    return frags


def make_sample(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, index: int, *,
                two_objects: bool = False, split: str = "val", image_id: str | None = None,
                extra_meta: dict | None = None) -> Sample:
    """Draw a canvas recipe from ``rng`` around source item ``index`` and render it.

    Args:
        rng: the generator all randomness comes from.
        images, labels: source arrays (``uint8 [N,28,28]``, ``int64 [N]``); the
            object and every fragment are items of these arrays.
        index: source index of the (primary) object.
        two_objects: add a second item of a different class (masks disjoint,
            box IoU < 0.3).
        split: ``"train"`` or ``"val"``; only tags ``meta`` (``source_split`` is
            ``"train"`` resp. ``"test"``), the caller supplies matching arrays.
        image_id: stored in ``meta["image_id"]``.
        extra_meta: merged into ``meta`` (e.g. seed and image number).
    """
    if split not in SPLIT_CODE:
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    objs, masks = _place_objects(rng, images, labels, int(index), two_objects)
    boxes = [mask_to_box(m) for m in masks]
    for obj in objs:
        obj["tint"] = _random_tint(rng)
    obj_scale = min(o["size"] for o in objs) / 28.0
    frags = _place_fragments(rng, images, {o["source_index"] for o in objs}, boxes, obj_scale)
    meta = {"version": GENERATOR_VERSION, "image_id": image_id, "split": split,
            "source_split": SOURCE_SPLIT[split], "size": [CANVAS_SIZE, CANVAS_SIZE],
            "background_seed": int(rng.integers(0, 2**63)), "objects": objs, "fragments": frags}
    if extra_meta:
        meta.update(extra_meta)
    image, masks2 = render(meta, images)
    for obj, box in zip(objs, boxes):
        obj["box"] = box
        obj["class_name"] = CLASS_NAMES[obj["label"]]
    return Sample(image=image, masks=masks2, boxes=np.array(boxes, np.int64),
                  labels=np.array([o["label"] for o in objs], np.int64), meta=meta)


def render(meta: dict, images: np.ndarray, *, objects: bool = True,
           fragments: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Re-create a canvas from its recipe ``meta`` and the source array ``images``.

    Layers are drawn back to front: background, fragments, objects. Turning
    ``objects``/``fragments`` off gives the clutter-only canvases used to check
    that annotations agree with pixels. Returns ``(image, masks)``; masks are
    computed from the objects' own pixels whether or not they are drawn.
    """
    size = meta["size"][0]
    canvas = render_background(meta["background_seed"], size)
    if fragments:
        for f in meta["fragments"]:
            cx0, cy0, cx1, cy1 = f["crop"]
            value, alpha = item_layer(images[f["source_index"], cy0:cy1, cx0:cx1], *f["size"])
            _composite(canvas, value, alpha, f["tint"], *f["xy"], opacity=f["opacity"])
    masks = np.zeros((len(meta["objects"]), size, size), bool)
    for k, o in enumerate(meta["objects"]):
        value, alpha = item_layer(images[o["source_index"]], o["size"])
        x, y = o["xy"]
        masks[k, y:y + o["size"], x:x + o["size"]] = alpha > 0
        if objects:
            _composite(canvas, value, alpha, o["tint"], x, y)
    return _add_sensor_noise(canvas, meta["background_seed"]), masks


def _add_sensor_noise(canvas: np.ndarray, bg_seed: int) -> np.ndarray:
    """Per-pixel noise in [-15, 15] over the finished canvas, so
    objects are not flat colour regions; identical with and without objects."""
    rng = np.random.default_rng(np.random.SeedSequence([int(bg_seed), 1]))
    out = canvas.astype(np.int16) + _triangular_noise(rng, canvas.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def _triangular_noise(rng: np.random.Generator, shape) -> np.ndarray:
    """Integer noise in [-15, 15], triangular (sum of two 4-bit uniforms), from raw bytes (fast)."""
    b = np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape)
    return (b >> 4).astype(np.int16) + (b & 15) - 15


# --------------------------------------------------------------------------- splits




def render_sample(split: str, i: int, seed: int, images: np.ndarray, labels: np.ndarray,
                  two_objects: bool = False) -> Sample:
    """Render image ``i`` of a split alone, exactly as :func:`generate_split` does."""
    return numbered_sample(make_sample, split, i, seed, images, labels, two_objects)


def generate_split(split: str, n: int, seed: int, two_objects: bool = False, *,
                   source: tuple[np.ndarray, np.ndarray] | None = None, fashion_dir=None,
                   start: int = 0) -> list[Sample]:
    """Render images ``start .. start+n-1`` of a canvas split in memory.

    Args:
        split: ``"train"`` (Fashion-MNIST train items only) or ``"val"`` (test items only).
        n: number of canvases.
        seed: split seed; same seed gives byte-identical samples.
        two_objects: two items of different classes per canvas.
        source: ``(images, labels)`` to draw from instead of :func:`load_source`
            (the ``source_split`` tag still follows ``split``).
        fashion_dir: directory of the train idx files (``"train"`` only).
        start: number of the first image.
    """
    images, labels = source if source is not None else load_source(split, fashion_dir)
    return [render_sample(split, i, seed, images, labels, two_objects) for i in range(start, start + n)]
