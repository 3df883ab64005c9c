"""Where a model's input pixels come from in the original image (no torch: box workers use it).

:class:`InputFrame` is the geometry half of :class:`tdviz.images.Preprocess`: Resize(``resize``) +
CenterCrop(``size``) as torchvision's ImageNet evaluation, or a plain resize to ``size`` x ``size``;
boxes map both ways between the frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import TdvizError


@dataclass(frozen=True)
class InputFrame:
    """The input frame of a preprocessing: ``mode`` "resize_crop" or "resize", ``size``, ``resize``."""

    mode: str = "resize_crop"
    size: int = 224
    resize: int = 256

    def __post_init__(self) -> None:
        if self.mode not in ("resize_crop", "resize"):
            raise TdvizError(f"Preprocessing mode {self.mode!r} is unknown: use 'resize_crop' or 'resize'.")
        if self.size < 32 or (self.mode == "resize_crop" and self.resize < self.size):
            raise TdvizError(f"Input size {self.size} (resize {self.resize}) is invalid: tdviz's models downsample by "
                             "32, so use size >= 32 (and resize >= size).")

    def geometry(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(scale_x, scale_y, offset_x, offset_y): input pixel = original pixel * scale - offset."""
        if self.mode == "resize":
            return self.size / width, self.size / height, 0.0, 0.0
        short = min(width, height)
        new_w = self.resize if width == short else int(self.resize * width / height)
        new_h = self.resize if height == short else int(self.resize * height / width)
        off_x = round((new_w - self.size) / 2.0)
        off_y = round((new_h - self.size) / 2.0)
        return new_w / width, new_h / height, float(off_x), float(off_y)

    def box_to_input(self, box: Sequence[float], width: int, height: int) -> list[float]:
        """A box [x0, y0, x1, y1] in original pixels -> the model input frame (clipped)."""
        sx, sy, ox, oy = self.geometry(width, height)
        x0, y0, x1, y1 = box
        clip = lambda v: float(min(max(v, 0.0), self.size))
        return [clip(x0 * sx - ox), clip(y0 * sy - oy), clip(x1 * sx - ox), clip(y1 * sy - oy)]

    def box_to_original(self, box: Sequence[float], width: int, height: int) -> list[float]:
        """A box in the model input frame -> original pixels (clipped to the image)."""
        sx, sy, ox, oy = self.geometry(width, height)
        x0, y0, x1, y1 = box
        return [min(max((x0 + ox) / sx, 0.0), width), min(max((y0 + oy) / sy, 0.0), height),
                min(max((x1 + ox) / sx, 0.0), width), min(max((y1 + oy) / sy, 0.0), height)]
