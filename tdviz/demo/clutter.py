"""Backgrounds of the v2 demo canvases: several clutter families, none tied to a class.

Every function draws from the ``numpy.random.Generator`` it is given and returns an RGB
``float32 [size, size, 3]`` image in ``[0, 255]``; :func:`clutter` picks and mixes the
families for one canvas. Fragments of other items are drawn by :mod:`tdviz.demo.scene`,
which knows the items.
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

__all__ = ["FAMILIES", "clutter", "colour_ramp", "random_colour"]


def random_colour(rng: np.random.Generator, value: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """An RGB colour (float32, 0..255) with uniform hue and saturation, value drawn in ``value``."""
    h, s, v = rng.random(), rng.random(), rng.uniform(*value)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255


def colour_ramp(rng: np.random.Generator, min_contrast: float = 0.3) -> dict:
    """A random monotone map from an item's grey level to a colour (JSON-serialisable).

    ``colour(v) = low + (high - low) * (v / 255) ** gamma``; the two ends differ in HSV value by at
    least ``min_contrast``; about a third of the ramps run from light to dark (inverted texture).
    """
    lo_v = rng.uniform(0.0, 1.0 - min_contrast)
    hi_v = rng.uniform(lo_v + min_contrast, 1.0)
    hue = rng.random()
    hue2 = rng.random() if rng.random() < 0.3 else (hue + rng.normal(0, 0.08)) % 1.0
    low = np.array(colorsys.hsv_to_rgb(hue, rng.random(), lo_v)) * 255
    high = np.array(colorsys.hsv_to_rgb(hue2, rng.random(), hi_v)) * 255
    if rng.random() < 0.33:
        low, high = high, low
    return {"low": [round(float(c), 2) for c in low], "high": [round(float(c), 2) for c in high],
            "gamma": round(float(np.exp(rng.uniform(np.log(0.6), np.log(1.7)))), 3)}


def smooth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """A few random colours on a coarse grid, interpolated smoothly over the canvas."""
    grid = int(rng.integers(2, 9))
    cells = (rng.random((grid, grid, 3)) * 255).astype(np.float32)
    return cv2.resize(cells, (size, size), interpolation=cv2.INTER_CUBIC)


def pink_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """1/f^a "natural" noise (amplitude exponent a in 0.8..1.6, photographs have about 1) through a
    random colour mixing."""
    n = size // 2
    exponent = rng.uniform(0.8, 1.6)
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / n) ** exponent
    spec = amp[None] * (rng.normal(size=(3, n, n // 2 + 1)) + 1j * rng.normal(size=(3, n, n // 2 + 1)))
    field = np.fft.irfft2(spec, s=(n, n), axes=(1, 2)).astype(np.float32)
    field = (field - field.mean(axis=(1, 2), keepdims=True)) / (field.std(axis=(1, 2), keepdims=True) + 1e-6)
    mix = rng.normal(size=(3, 3)).astype(np.float32) * rng.uniform(20, 60)
    img = np.einsum("chw,cd->hwd", field, mix) + random_colour(rng, (0.2, 0.8))
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Periodic texture: gratings, checks or dots at a random scale and orientation, two colours."""
    xx = np.arange(size, dtype=np.float32)[None, :]
    yy = np.arange(size, dtype=np.float32)[:, None]
    kind = int(rng.integers(0, 3))
    freq = np.float32(rng.uniform(3, 28) * 2 * np.pi / size)
    th = rng.uniform(0, np.pi)
    c, s = np.float32(np.cos(th)), np.float32(np.sin(th))
    u = c * xx + s * yy
    v = c * yy - s * xx
    phase = rng.uniform(0, 2 * np.pi, 2).astype(np.float32)
    if kind == 0:
        t = 0.5 + 0.5 * np.sin(freq * u + phase[0])
    elif kind == 1:
        t = (np.sin(freq * u + phase[0]) * np.sin(freq * v + phase[1]) > 0).astype(np.float32)
        t = cv2.GaussianBlur(t, (0, 0), 0.7)
    else:
        t = (0.5 + 0.5 * np.sin(freq * u + phase[0])) * (0.5 + 0.5 * np.sin(freq * v + phase[1]))
    a, b = random_colour(rng), random_colour(rng)
    return (a + (b - a) * t[..., None]).astype(np.float32)


def flat(rng: np.random.Generator, size: int) -> np.ndarray:
    """One colour with a gentle linear gradient."""
    a, b = random_colour(rng), random_colour(rng)
    xx = np.arange(size, dtype=np.float32)[None, :] / size
    yy = np.arange(size, dtype=np.float32)[:, None] / size
    th = rng.uniform(0, 2 * np.pi)
    t = (np.float32(np.cos(th)) * xx + np.float32(np.sin(th)) * yy) * np.float32(rng.uniform(0, 0.6))
    return (a + (b - a) * t[..., None]).astype(np.float32)


FAMILIES = {"smooth": smooth_field, "pink_noise": pink_noise, "texture": texture, "flat": flat}


def _shapes(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Lines, strokes, filled blobs and polygons of random colours, drawn in place."""
    size = canvas.shape[0]
    for _ in range(int(rng.integers(0, 8))):
        p0 = tuple(int(c) for c in rng.integers(-20, size + 20, 2))
        p1 = tuple(int(c) for c in rng.integers(-20, size + 20, 2))
        cv2.line(canvas, p0, p1, random_colour(rng).tolist(), int(rng.integers(1, 5)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 5))):
        centre = tuple(int(c) for c in rng.integers(0, size, 2))
        axes = tuple(int(c) for c in rng.integers(3, 30, 2))
        cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0.0, 360.0, random_colour(rng).tolist(),
                    -1 if rng.random() < 0.7 else int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):
        c = rng.integers(0, size, 2)
        pts = (c + rng.integers(-30, 31, (int(rng.integers(3, 7)), 2))).astype(np.int32)
        cv2.fillPoly(canvas, [pts], random_colour(rng).tolist(), cv2.LINE_AA)


def clutter(seed: int, size: int) -> np.ndarray:
    """The background of one canvas: one or two families blended, then shapes on top."""
    rng = np.random.default_rng(seed)
    names = list(FAMILIES)
    first = names[int(rng.integers(0, len(names)))]
    canvas = FAMILIES[first](rng, size)
    if rng.random() < 0.5:
        second = FAMILIES[names[int(rng.integers(0, len(names)))]](rng, size)
        w = rng.uniform(0.2, 0.8)
        canvas = canvas * (1 - w) + second * w
    canvas = np.ascontiguousarray(np.clip(canvas, 0, 255), np.float32)
    _shapes(rng, canvas)
    return canvas
