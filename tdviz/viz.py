"""Figures: the paper's Fig. 4 layout (image, then one CAM overlay per computation step)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import cv2
import matplotlib.pyplot as plt
import numpy as np

from .images import Preprocess
from .outputs import with_ext


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


def step_figure(rgb: np.ndarray, maps: np.ndarray, class_names: Sequence[Sequence[str]], scores: np.ndarray,
                title: str, out: Path, boxes: Sequence[Sequence[Sequence[float] | None]] | None = None,
                formats: Sequence[str] = ("png", "pdf"), step_numbers: Sequence[int] | None = None) -> list[Path]:
    """One image's maps as a grid: rows = classes (top-k), columns = the image then each step.

    ``maps`` [T, K, H, W], ``class_names`` [T][K], ``scores`` [T, K]; optional ``boxes`` [T][K]
    (x0, y0, x1, y1 in the shown frame); ``step_numbers`` the computation step of each column
    (default 1..T). Writes ``out`` + ``.<suffix>`` for each suffix in ``formats``.
    """
    steps, k = maps.shape[:2]
    numbers = list(step_numbers) if step_numbers is not None else list(range(1, steps + 1))
    fig, axes = plt.subplots(k, steps + 1, figsize=(2.3 * (steps + 1), 2.5 * k + 0.3), squeeze=False)
    for row in range(k):
        axes[row, 0].imshow(rgb)
        axes[row, 0].set_title("input" if row == 0 else "", fontsize=9)
        for t in range(steps):
            ax = axes[row, t + 1]
            ax.imshow(overlay(rgb, maps[t, row]))
            label = f"step {numbers[t]}" if steps > 1 else f"step {numbers[t]} (final)"
            ax.set_title(f"{label}: {class_names[t][row]}\n{100 * float(scores[t, row]):.1f}%", fontsize=8)
            if boxes is not None and boxes[t][row] is not None:
                x0, y0, x1, y1 = boxes[t][row]
                ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=1.5))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    written = []
    for fmt in formats:
        path = with_ext(out, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        written.append(path)
    plt.close(fig)
    return written
