"""Reading images safely and preprocessing them as the models were trained.

``read_image`` turns any file a user may point at into an RGB uint8 array or one clear error:
missing files, non-images, truncated files, CMYK JPEGs, 16-bit PNGs, palette/alpha images,
EXIF-rotated photos, 1-pixel and very wide images. ``Preprocess`` maps images (and boxes) into
the model's input frame: Resize(256) + CenterCrop(224) as torchvision's ImageNet evaluation, or
a plain resize to 224².
"""

from __future__ import annotations

import functools
import glob
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .geometry import InputFrame
from .imagefiles import IMAGE_SUFFIXES, ImageError, check_pixel_budget, max_pixels, walk_files
from .models.record import IMAGENET_MEAN, IMAGENET_STD, model_record

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "ImageError",
    "Preprocess",
    "expand_inputs",
    "read_image",
]



def _resize(t: torch.Tensor, size: Sequence[int], interpolation: str = "bilinear") -> torch.Tensor:
    """torchvision's tensor ``resize`` (antialiased bilinear or bicubic) of a uint8 image [3, H, W]
    or batch [N, 3, H, W], without importing torchvision (~1 s): float32 interpolation, then
    rounding back to uint8, as it does (bicubic overshoots, so it is clamped to 0..255 first, as
    torchvision does)."""
    batched = t.dim() == 4
    out = F.interpolate((t if batched else t[None]).float(), size=list(size), mode=interpolation,
                        align_corners=False, antialias=True)
    if interpolation == "bicubic":
        out = out.clamp_(0, 255)
    out = out.round_().to(torch.uint8)
    return out if batched else out[0]


@functools.lru_cache(maxsize=8)
def _normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(v / 255 - mean[c]) / std[c]`` for every uint8 v and channel c, flattened [3 * 256]."""
    v = torch.arange(256, dtype=torch.uint8).float().div_(255).expand(3, 256)
    return ((v - torch.tensor(mean).view(3, 1)) / torch.tensor(std).view(3, 1)).reshape(-1)


@functools.lru_cache(maxsize=16)
def _normalize_table_on(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """:func:`_normalize_table` on ``device``, copied there once: a copy from pageable memory per
    call would wait for all the work queued on the device before it."""
    return _normalize_table(mean, std).to(device)


def _center_crop(t: torch.Tensor, size: int) -> torch.Tensor:
    h, w = t.shape[-2:]
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return t[..., top:top + size, left:left + size]


def read_image(path: str | os.PathLike, exif: bool = True) -> np.ndarray:
    """The image at ``path`` as RGB uint8 [H, W, 3], EXIF orientation applied (``exif=False``: as
    stored, the frame annotations such as ILSVRC's boxes refer to).

    16-bit images are scaled to 8 bits by their full range (65535), alpha is dropped (composited
    on black would invent colours; the RGB planes are kept as stored), CMYK is converted by PIL.
    An image over the pixel budget (:func:`tdviz.imagefiles.check_pixel_budget`) is refused
    before it is decoded.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"Image {str(path)!r} does not exist: check the path.")
    if path.is_dir():
        raise ImageError(f"{str(path)!r} is a folder, not an image: pass the files in it or a glob.")
    budget = max_pixels()
    check_pixel_budget(path)
    Image.MAX_IMAGE_PIXELS = budget  # PIL's own guard, for what the header check cannot see
    try:
        with Image.open(path) as img:
            img.load()
            if exif:
                img = ImageOps.exif_transpose(img)
            array = _to_rgb8(img)
    except UnidentifiedImageError:
        raise ImageError(f"{str(path)!r} is not an image file tdviz can read (JPEG, PNG, BMP, WebP, TIFF, GIF).") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"Image {str(path)!r} is too large to load safely ({exc}); downscale it first.") from None
    except MemoryError:
        raise ImageError(f"Image {str(path)!r} does not fit in memory; downscale it or lower TDVIZ_MAX_PIXELS.") \
            from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"Image {str(path)!r} is damaged or truncated ({exc}); re-export or re-download it.") from None
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"Image {str(path)!r} has no pixels.")
    return array


def _to_rgb8(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        data = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or data.max() > 255 else 255.0
        gray = np.clip(np.round(data / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":
        data = np.asarray(img, dtype=np.float64)
        lo, hi = float(data.min()), float(data.max())
        gray = ((data - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(data)).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Files named by ``inputs`` (files, folders searched recursively for images, or globs).

    Returns (files in a stable order, problems): an input that names nothing is a problem, not an
    exception, so the other inputs still run.
    """
    files: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found, walk_problems = walk_files(path)
            problems += walk_problems
            if not found:
                problems.append(f"Folder {text!r} holds no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...).")
            files += found
        elif any(ch in text for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                problems.append(f"Pattern {text!r} matches no file.")
            files += found
        else:
            files.append(path)  # read_image reports a missing file with the others
    return files, problems


@dataclass(frozen=True)
class Preprocess(InputFrame):
    """Image -> normalized tensor, as a model was trained.

    ``mode="resize_crop"``: resize the shorter side to ``resize`` then center-crop ``size``
    (torchvision's ImageNet evaluation); ``mode="resize"``: resize to ``size`` x ``size``.
    Antialiased ``interpolation`` (bilinear or bicubic). The box mapping between the two frames is
    :class:`InputFrame`'s. Commands build it from the model's record with :meth:`for_model`.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    @classmethod
    def for_model(cls, model, size: int | None = None, crop: str | None = None,
                  crop_fraction: float | None = None) -> Preprocess:
        """The preprocessing of ``model``'s record (:class:`tdviz.models.ModelRecord`), optionally
        at another input ``size`` (the shorter side then becomes ``round(size / crop_fraction)``,
        timm's test-size rule), another ``crop`` ("resize_crop"/"resize") or ``crop_fraction``."""
        rec = model_record(model)
        size = int(size or rec.input_size)
        fraction = crop_fraction or rec.crop_fraction
        if not 0 < fraction <= 1:
            from .errors import TdvizError

            raise TdvizError(f"--crop-fraction {fraction} is outside (0, 1]: 0.875 (224 of 256) is the usual one.")
        return cls(mode=crop or rec.crop, size=size, resize=max(size, rec.resize_for(size, fraction)),
                   mean=tuple(rec.mean), std=tuple(rec.std), interpolation=rec.interpolation)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 [H, W, 3] -> float32 [3, size, size], normalized."""
        return self.normalize(self.resized(image))

    def resized(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 [H, W, 3] -> the resized (and cropped) uint8 [3, size, size], not normalized:
        a quarter of the float image's bytes to move between processes and to the GPU."""
        return self.resized_tensor(torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1))

    def resized_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """:meth:`resized` of an RGB uint8 tensor [3, H, W] on any device (e.g. decoded on the GPU),
        or of a batch [N, 3, H, W] of images of one size."""
        if self.mode == "resize" and tuple(t.shape[-2:]) == (self.size, self.size):
            return t.contiguous()  # already the input size: resizing would only cost time
        if self.mode == "resize":
            return _resize(t, [self.size, self.size], self.interpolation)
        return self._resize_and_crop(t).contiguous()

    def resized_batch(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """:meth:`resized_tensor` of each of ``images`` ([3, H, W] uint8, one device), stacked
        [N, 3, size, size]. Images of one shape are resized together, a few at a time (at most
        2**26 values each call): the same pixels as one by one, with far fewer kernel launches,
        which on a GPU cost more than the resizing itself."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(images):
            groups.setdefault(tuple(t.shape), []).append(i)
        out = torch.empty((len(images), 3, self.size, self.size), dtype=torch.uint8,
                          device=images[0].device if images else None)
        for shape, idx in groups.items():
            per = max(1, 2**26 // math.prod(shape))
            for j in range(0, len(idx), per):
                part = idx[j:j + per]
                out[part] = self.resized_tensor(torch.stack([images[i] for i in part]))
        return out

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [..., 3, H, W] (on any device) -> float32 ``(v / 255 - mean) / std``.

        On the CPU by these float32 operations; elsewhere through a 3 x 256 table computed once
        with them on the CPU, so the result is bit-identical on every device (a GPU may otherwise
        divide by 255 as a multiplication by its reciprocal). The table lookup is 30x slower than
        the arithmetic on a CPU, hence the two ways.
        """
        if pixels.device.type == "cpu":
            mean = torch.tensor(self.mean).view(3, 1, 1)
            std = torch.tensor(self.std).view(3, 1, 1)
            return (pixels.float().div_(255) - mean) / std
        table = _normalize_table_on(self.mean, self.std, pixels.device)
        channel = torch.arange(3, device=pixels.device).view(3, 1, 1) * 256
        return table[pixels.long() + channel]

    def _resize_and_crop(self, t: torch.Tensor) -> torch.Tensor:
        """Resize(resize) + CenterCrop(size), as torchvision; for a very elongated image only the
        part of it that reaches the crop is resized, so a 20000x20 image never becomes a 256000x256
        intermediate. The output is torchvision's exactly when resize/short-side cut points fall
        on whole pixels (e.g. 40 px high), otherwise within sub-pixel interpolation rounding."""
        h, w = t.shape[-2:]
        sx, sy, ox, oy = self.geometry(w, h)
        new_w, new_h = round(w * sx), round(h * sy)
        if new_w * new_h <= 16_000_000:
            return _center_crop(_resize(t, [new_h, new_w], self.interpolation), self.size)
        short, wide = min(h, w), w > h
        long, offset = (w, ox) if wide else (h, oy)
        step = short // math.gcd(short, self.resize)  # cut points where the resized edge is a whole pixel
        margin = 4 + 2 * math.ceil(short / self.resize)
        lo = max(0, int((offset * short / self.resize - margin) // step) * step)
        hi = min(long, math.ceil(((offset + self.size) * short / self.resize + margin) / step) * step)
        kept = (hi - lo) * self.resize // short if hi < long else (new_w if wide else new_h) - lo * self.resize // short
        skip = int(offset) - lo * self.resize // short
        if wide:
            t = _resize(t[..., lo:hi], [new_h, kept], self.interpolation)
            return t[..., int(oy):int(oy) + self.size, skip:skip + self.size]
        t = _resize(t[..., lo:hi, :], [kept, new_w], self.interpolation)
        return t[..., skip:skip + self.size, int(ox):int(ox) + self.size]
