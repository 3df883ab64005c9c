"""Read the real Fashion-MNIST idx files with numpy (no download code).

The Fashion-MNIST *test* set (10 000 items) ships inside the package at
``tdviz/data/fashion_mnist/`` so the demo validation split can be rebuilt
offline anywhere. The *train* set (60 000 items) is only needed for training;
it is read from a caller-given directory, by default the location of the
Debian/Ubuntu package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``),
or ``$TDVIZ_FASHION_DIR`` when that is set.
"""
from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "PACKAGED_DIR",
    "SYSTEM_DIR",
    "default_fashion_dir",
    "load_fashion",
    "read_idx",
]

#: The 10 Fashion-MNIST classes, index = label.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Where the test set ships inside the package.
PACKAGED_DIR = Path(__file__).resolve().parent.parent / "data" / "fashion_mnist"
#: Where ``apt-get install dataset-fashion-mnist`` puts all four files.
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_PREFIX = {"train": "train", "test": "t10k"}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one idx file (gzipped when the name ends in ``.gz``) into a numpy array.

    The idx format is a 4-byte magic (two zero bytes, a type code, the number of
    dimensions), one big-endian uint32 per dimension, then the raw values.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(shape)) if shape else 1
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {shape} but the payload size disagrees")
    arr = np.frombuffer(data, dtype, count=count, offset=offset).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def default_fashion_dir() -> Path:
    """Directory searched for the *train* files: ``$TDVIZ_FASHION_DIR`` or the Debian location."""
    env = os.environ.get("TDVIZ_FASHION_DIR")
    return Path(env) if env else SYSTEM_DIR


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=4)
def _load_cached(split: str, root: str) -> tuple[np.ndarray, np.ndarray]:
    root_path = Path(root)
    prefix = _PREFIX[split]
    img_path = _find(root_path, f"{prefix}-images-idx3-ubyte")
    lab_path = _find(root_path, f"{prefix}-labels-idx1-ubyte")
    if img_path is None or lab_path is None:
        raise FileNotFoundError(
            f"Fashion-MNIST {split} files ({prefix}-images-idx3-ubyte.gz, "
            f"{prefix}-labels-idx1-ubyte.gz) were not found in {root_path}: run "
            f"`apt-get install dataset-fashion-mnist` or pass --fashion-dir "
            f"(fashion_dir=...) pointing to a directory that holds them."
        )
    images = read_idx(img_path)
    labels = read_idx(lab_path).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{img_path}: expected uint8 [N,28,28], got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{lab_path}: {labels.shape[0]} labels for {images.shape[0]} images")
    if labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{lab_path}: labels outside 0..9")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_fashion(split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split as ``(images uint8 [N,28,28], labels int64 [N])``.

    Args:
        split: ``"train"`` (60 000 items) or ``"test"`` (10 000 items).
        root: directory holding the idx files (``.gz`` or uncompressed). ``None``
            means the copy shipped in the package for ``"test"`` and
            :func:`default_fashion_dir` for ``"train"``.

    The returned arrays are read-only and cached per ``(split, root)``.

    Raises:
        FileNotFoundError: the files are absent (the message names the path and the fix).
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if root is None:
        root = PACKAGED_DIR if split == "test" else default_fashion_dir()
    return _load_cached(split, str(Path(root).resolve()))
