"""The pixels figures show: the image as a model saw it, and grad-cam's heat-map overlay (no
matplotlib here; the figures themselves are in :mod:`tdviz.figures`)."""

from __future__ import annotations

import cv2
import numpy as np

from .images import Preprocess


def model_view(image: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """The RGB float [0, 1] image the model saw (same resize/crop, no normalization)."""
    t = preprocess(image)
    mean = np.asarray(preprocess.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocess.std, dtype=np.float32)[:, None, None]
    return np.clip(t.numpy() * std + mean, 0, 1).transpose(1, 2, 0)


def overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heat-map overlay of grad-cam's ``show_cam_on_image`` (JET colour map), RGB uint8.

    Written out here because importing grad-cam's package costs about 2 s, more than `tdviz cam`
    spends on everything else for one image; tests compare it with grad-cam's function.
    """
    heat = cv2.applyColorMap(np.uint8(255 * cam), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    mixed = alpha * heat + (1 - alpha) * rgb.astype(np.float32)
    return np.uint8(255 * mixed / np.max(mixed))
