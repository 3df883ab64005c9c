"""An independent renderer of cluttered Fashion-MNIST, for tests and measurements only.

It exists to measure whether models trained on ``tdviz.demo``'s canvases recognise the objects
once the rendering changes, so it shares nothing with that generator but the Fashion-MNIST test
items: it reads the idx file itself and imports nothing from ``tdviz.demo``. Everything else is
done differently: backgrounds from five families (a bicubic colour field, 1/f noise, stripes and
lines, soft blobs, checkers), mixed two at a time; the item upsampled with Lanczos, its grey
levels mapped onto a random two-colour ramp (the texture kept), an aspect change, a small
rotation and a soft alpha; up to three translucent smaller items of other classes as distractors
(the label is the largest, opaque item: the rule); then blur, noise and a JPEG round trip.
Never train or tune on it.

Writes an ImageFolder (``n0000000k/ir_NNNNNN.png``, k the Fashion-MNIST class) and a COCO
instances json (``instances.json``) beside it, with one box per image: the labelled item's.
"""

from __future__ import annotations

import gzip
import io
import json
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 224
NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def fashion_test_items() -> tuple[np.ndarray, np.ndarray]:
    """The Fashion-MNIST test set as shipped in the package: uint8 [10000, 28, 28], labels [10000]."""
    root = files("tdviz") / "data" / "fashion_mnist"
    with gzip.open(str(root / "t10k-images-idx3-ubyte.gz")) as fh:
        images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(str(root / "t10k-labels-idx1-ubyte.gz")) as fh:
        labels = np.frombuffer(fh.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def _colour(rng) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _field(rng) -> Image.Image:
    cells = int(rng.integers(3, 9))
    grid = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize((SIZE, SIZE), Image.BICUBIC)


def _pink(rng) -> Image.Image:
    fy, fx = np.meshgrid(np.fft.fftfreq(SIZE), np.fft.fftfreq(SIZE), indexing="ij")
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / SIZE) ** rng.uniform(0.8, 1.6)
    out = []
    for _ in range(3):
        phase = np.exp(2j * np.pi * rng.random((SIZE, SIZE)))
        c = np.real(np.fft.ifft2(amp * phase))
        out.append((c - c.min()) / (np.ptp(c) + 1e-9))
    return Image.fromarray((np.stack(out, -1) * 255).astype(np.uint8))


def _stripes(rng) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), _colour(rng))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 16))):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(-40, SIZE + 40, 4))
        draw.line((x0, y0, x1, y1), fill=_colour(rng), width=int(rng.integers(1, 12)))
    return im


def _blobs(rng) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), _colour(rng))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 12))):
        x, y = (int(v) for v in rng.integers(0, SIZE, 2))
        rx, ry = (int(v) for v in rng.integers(8, 70, 2))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=_colour(rng))
    return im.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 8))))


def _checkers(rng) -> Image.Image:
    cell = int(rng.integers(6, 40))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    on = ((yy // cell + xx // cell) % 2).astype(bool)
    out = np.where(on[..., None], np.array(_colour(rng), np.uint8), np.array(_colour(rng), np.uint8))
    return Image.fromarray(out.astype(np.uint8)).rotate(float(rng.uniform(0, 90)), Image.BILINEAR, fillcolor=_colour(rng))


FAMILIES = (_field, _pink, _stripes, _blobs, _checkers)


def background(rng) -> Image.Image:
    """Two families blended: no family belongs to a class."""
    a, b = rng.choice(len(FAMILIES), 2, replace=False)
    return Image.blend(FAMILIES[a](rng), FAMILIES[b](rng), float(rng.uniform(0.2, 0.8)))


def item_layer(rng, item: np.ndarray, longest: int, opacity: float = 1.0) -> tuple[Image.Image, Image.Image]:
    """An item as an RGB layer and its alpha: Lanczos upsampling, aspect change, rotation, its grey
    levels on a random two-colour ramp."""
    aspect = float(np.exp(rng.uniform(-0.3, 0.3)))
    w, h = (longest, max(8, int(longest / aspect))) if aspect >= 1 else (max(8, int(longest * aspect)), longest)
    grey = Image.fromarray(item).resize((w, h), Image.LANCZOS).rotate(float(rng.uniform(-15, 15)), Image.BICUBIC,
                                                                      expand=True)
    g = np.asarray(grey, np.float32) / 255.0
    dark, light = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    gamma = float(rng.uniform(0.6, 1.5))
    rgb = dark + (light - dark) * (g[..., None] ** gamma)
    alpha = np.clip((g - 0.04) * 6.0, 0, 1) * opacity
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8)), Image.fromarray((alpha * 255).astype(np.uint8))


def render(rng, images: np.ndarray, labels: np.ndarray, index: int) -> tuple[Image.Image, list[int], np.ndarray]:
    """One canvas around test item ``index``: the image, its inclusive box [x0, y0, x1, y1] and mask."""
    canvas = background(rng)
    longest = int(rng.integers(60, 181))
    others = np.flatnonzero(labels != labels[index])
    for j in rng.choice(others, int(rng.integers(0, 4)), replace=False):  # distractors: smaller, translucent
        layer, alpha = item_layer(rng, images[j], int(longest * rng.uniform(0.3, 0.6)), float(rng.uniform(0.25, 0.6)))
        x, y = (int(rng.integers(-layer.width // 3, SIZE - layer.width * 2 // 3)),
                int(rng.integers(-layer.height // 3, SIZE - layer.height * 2 // 3)))
        canvas.paste(layer, (x, y), alpha)
    layer, alpha = item_layer(rng, images[index], longest)
    lw, lh = min(layer.width, SIZE), min(layer.height, SIZE)
    layer, alpha = layer.crop((0, 0, lw, lh)), alpha.crop((0, 0, lw, lh))
    x, y = int(rng.integers(0, SIZE - lw + 1)), int(rng.integers(0, SIZE - lh + 1))
    canvas.paste(layer, (x, y), alpha)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[y:y + lh, x:x + lw] = np.asarray(alpha) >= 128
    ys, xs = np.nonzero(mask)
    box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    if rng.random() < 0.5:
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    pixels = np.asarray(canvas, np.float32) + rng.normal(0, rng.uniform(0, 8), (SIZE, SIZE, 3))
    canvas = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    if rng.random() < 0.6:
        buf = io.BytesIO()
        canvas.save(buf, format="JPEG", quality=int(rng.integers(55, 96)))
        canvas = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return canvas, box, mask


def write_split(out: str | Path, n: int, seed: int = 0) -> Path:
    """``n`` canvases (classes balanced, items drawn without repeats) under ``out``; returns the
    COCO json's path. The same ``(n, seed)`` gives the same files."""
    out = Path(out)
    images, labels = fashion_test_items()
    rng = np.random.default_rng([seed, 20261202])
    per_class = [rng.permutation(np.flatnonzero(labels == k)) for k in range(10)]
    coco = {"images": [], "annotations": [],
            "categories": [{"id": k + 1, "name": NAMES[k], "wnid": f"n{k:08d}"} for k in range(10)]}
    for i in range(n):
        k = i % 10
        index = int(per_class[k][i // 10])
        image, (x0, y0, x1, y1), _ = render(np.random.default_rng([seed, i]), images, labels, index)
        name = f"n{k:08d}/ir_{i:06d}.png"
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(out / name)
        coco["images"].append({"id": i + 1, "file_name": name, "width": SIZE, "height": SIZE})
        coco["annotations"].append({"id": i + 1, "image_id": i + 1, "category_id": k + 1, "iscrowd": 0,
                                    "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1], "area": (x1 - x0 + 1) * (y1 - y0 + 1)})
    path = out / "instances.json"
    path.write_text(json.dumps(coco))
    return path
