"""Decoding for `tdviz wsol` on the GPU: file bytes read by threads, JPEGs decoded in batches by
nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``) and resized and cropped there, so the host's
cores are free for the boxes.

Whatever nvJPEG does not take goes through the CPU path (:func:`tdviz.images.read_image`, in the
threads): other formats (PNG, ...), JPEGs that are not 8-bit gray or YCbCr (CMYK, 12-bit), and
any file nvJPEG refuses (retried alone first). A JPEG's size is read from its header before it is
decoded, against the pixel budget. Images are decoded as stored (no EXIF rotation), as on the CPU.

GPU and CPU pixels differ slightly: nvJPEG's inverse DCT and chroma upsampling are not libjpeg's,
so decoded values differ by a few grey levels on some pixels; the resize that follows is the same
operation (bilinear, antialiased, rounded to uint8) on either device. The demo's numbers with each
decoder are in the README.
"""

from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..datasets import Sample
from ..imagefiles import max_pixels
from ..images import ImageError, Preprocess, read_image
from .loader import Batch, ramp_batches, size_note

__all__ = ["gpu_batches", "jpeg_header"]

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, components, bits) from a JPEG's frame header, or ``None`` when ``data`` is
    not a JPEG whose header can be read."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _SOF:
            if i + 10 > len(data):
                return None
            bits, height, width, comps = struct.unpack(">BHHB", data[i + 4:i + 10])
            return width, height, comps, bits
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        i += 2 + length
    return None


def _read(path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _gpu_ok(data: bytes | None) -> bool:
    """An 8-bit gray or YCbCr JPEG within the pixel budget that ends as a JPEG ends (a truncated
    file goes to the CPU, which reports it, rather than to a decoder that might fill it in)."""
    head = jpeg_header(data) if data else None
    return head is not None and head[2] in (1, 3) and head[3] == 8 and 0 < head[0] * head[1] <= max_pixels() \
        and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"


def gpu_batches(samples: list[Sample], preprocs: dict[str, Preprocess], batch_size: int, device: torch.device,
                threads: int = 8, plan: list[list[int]] | None = None):
    """:class:`~tdviz.wsol.loader.Batch` es of ``samples``, decoded on ``device`` (a CUDA GPU), with
    ``stacked`` already there, in the batches of ``plan`` (default:
    :func:`~tdviz.wsol.loader.ramp_batches`). ``threads`` read files (and decode what nvJPEG does
    not take)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    order = ramp_batches(len(samples), batch_size) if plan is None else plan
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="tdviz-read") as pool:
        reads = [pool.map(lambda i: _read(samples[i].path), idx) for idx in order[:2]]
        for b, idx in enumerate(order):
            if b + 2 < len(order):
                reads.append(pool.map(lambda i: _read(samples[i].path), order[b + 2]))
            data = list(reads[b])
            reads[b] = None
            on_gpu = [k for k, d in enumerate(data) if _gpu_ok(d)]
            decoded: dict[int, torch.Tensor] = {}
            if on_gpu:
                inputs = [torch.frombuffer(bytearray(data[k]), dtype=torch.uint8) for k in on_gpu]
                try:
                    out = decode_jpeg(inputs, mode=ImageReadMode.RGB, device=device)
                    decoded.update(zip(on_gpu, out))
                except RuntimeError:  # one file spoiled the batch: each alone
                    for k, t in zip(on_gpu, inputs):
                        try:
                            decoded[k] = decode_jpeg(t, mode=ImageReadMode.RGB, device=device)
                        except RuntimeError:
                            pass
            rest = [k for k in range(len(idx)) if k not in decoded]

            def on_cpu(k, idx=idx):
                try:
                    pixels = np.require(read_image(samples[idx[k]].path, exif=False), requirements="W")  # PIL's may be read-only
                    return torch.from_numpy(pixels).permute(2, 0, 1)
                except ImageError as exc:
                    return str(exc)

            good, bad, images = [], [], []
            fallback = dict(zip(rest, pool.map(on_cpu, rest)))
            for k, i in enumerate(idx):
                img = decoded.get(k, fallback.get(k))
                if isinstance(img, str):
                    bad.append((i, img))
                    continue
                img = img.to(device, non_blocking=True)
                h, w = img.shape[1:]
                good.append((i, (int(w), int(h), size_note(samples[i], int(w), int(h)))))
                images.append(img)
            stacked = {key: p.resized_batch(images) if images else
                       torch.zeros((0, 3, p.size, p.size), dtype=torch.uint8, device=device)
                       for key, p in preprocs.items()}
            yield Batch(good, bad, stacked)


