"""Image files on disk, before any decoding: finding them under a folder, and the pixel budget.

Kept free of torch, so the box workers (which read masks) can use it.

* :func:`walk_files` walks a folder in sorted order and follows symbolic links to folders, but
  never enters the same folder twice, so a link loop (``ln -s . a``) cannot hang a walk.
* :func:`check_pixel_budget` reads only an image's header and refuses one whose decoded pixels
  would not fit the budget (``TDVIZ_MAX_PIXELS``, default 100 megapixels: decoding and resizing
  cost about 25 bytes per pixel), so a 100 KB "decompression bomb" never reaches the decoder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import TdvizError

__all__ = ["IMAGEFOLDER_SUFFIXES", "IMAGE_SUFFIXES", "ImageError", "check_pixel_budget", "class_folders", "folder_key",
           "max_pixels", "walk_files"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
#: torchvision's ImageFolder extensions (``torchvision.datasets.folder.IMG_EXTENSIONS``)
IMAGEFOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 100_000_000


class ImageError(TdvizError):
    """An image that cannot be read."""


def max_pixels() -> int:
    """The pixel budget per image: ``$TDVIZ_MAX_PIXELS`` or 100 megapixels."""
    text = os.environ.get("TDVIZ_MAX_PIXELS", "")
    try:
        value = int(text) if text else DEFAULT_MAX_PIXELS
    except ValueError:
        raise TdvizError(f"TDVIZ_MAX_PIXELS={text!r} is not a whole number of pixels: set it to e.g. 200000000.") \
            from None
    return max(value, 1)


def check_pixel_budget(path: str | os.PathLike, what: str = "Image") -> tuple[int, int]:
    """(width, height) from ``path``'s header; :class:`ImageError` when that is over the budget or
    the file is not an image PIL can parse. Nothing is decoded."""
    from PIL import Image, UnidentifiedImageError

    budget = max_pixels()
    guard = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read here; the budget below is the guard
    try:
        with Image.open(path) as img:
            width, height = img.size
    except UnidentifiedImageError:
        raise ImageError(f"{what} {str(path)!r} is not an image file tdviz can read (JPEG, PNG, BMP, WebP, TIFF, "
                         "GIF).") from None
    except Image.DecompressionBombError:
        width = height = None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{what} {str(path)!r} is damaged or truncated ({exc}); re-export or re-download it.") \
            from None
    finally:
        Image.MAX_IMAGE_PIXELS = guard
    if width is None or width * height > budget:
        size = "its size" if width is None else f"{width}x{height} ({width * height / 1e6:.0f} megapixels)"
        raise ImageError(f"{what} {str(path)!r} is {size}, over tdviz's budget of {budget / 1e6:.0f} megapixels "
                         "per image: downscale it, or raise TDVIZ_MAX_PIXELS if the machine has the memory "
                         "(about 25 bytes per pixel).")
    return int(width), int(height)


def folder_key(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of a folder, the same for every link to it; ``None`` if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def class_folders(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """ImageFolder's class folders of ``root`` (its sub-folders, sorted by name), leaving out a link
    back to ``root`` or to a class folder already listed (a loop is not a class, and would shift
    every later class index), and one problem per folder left out."""
    root = Path(root)
    seen = {folder_key(root)}
    names, problems = [], []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir():
            continue
        key = folder_key(entry.path)
        if key in seen:
            problems.append(f"Folder {entry.path!r} leads back to {str(root)!r} or to another class folder (a "
                            "symbolic link); it is not a class.")
            continue
        seen.add(key)
        names.append(entry.name)
    return names, problems


def walk_files(root: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
               seen: set | None = None) -> tuple[list[Path], list[str]]:
    """Files under ``root`` whose name ends in one of ``suffixes`` (any case), sorted by folder and
    name, and one problem per symbolic-link loop or unreadable folder met (each skipped). Walks
    that share ``seen`` never enter a folder another of them entered."""
    root = Path(root)
    files: list[Path] = []
    problems: list[str] = []
    seen = set() if seen is None else seen

    def onerror(exc: OSError) -> None:
        problems.append(f"Folder {str(exc.filename)!r} cannot be read ({exc.strerror}); skipped.")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            problems.append(f"Folder {dirpath!r} leads back to a folder already walked (a symbolic-link "
                            "loop, or a second link to it); not walked again.")
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        lowered = tuple(s.lower() for s in suffixes)
        for name in sorted(filenames):
            if name.lower().endswith(lowered):
                path = Path(dirpath) / name
                if path.is_file():
                    files.append(path)
    return files, problems
