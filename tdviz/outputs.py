"""Names of the files tdviz writes, made from what a user gave (image names, model labels, ids).

An output name never comes from ``Path.with_suffix`` on a user's name (``cat.1.jpg`` would lose
``.1``), and never contains a path separator or starts with a dot (``..jpg`` must not climb out
of the output folder).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["safe_name", "unique_names", "with_ext"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+@=-]+")


def safe_name(text: str, fallback: str = "image") -> str:
    """A file-name part made from ``text``: characters outside ``[A-Za-z0-9._+@=-]`` become ``_``
    and leading dots are dropped, so it can never be ``.``/``..``, hidden, or reach another folder."""
    name = _UNSAFE.sub("_", str(text)).lstrip(".")
    return name[:200] or fallback


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` with later repeats made distinct (``cat``, ``cat-2``, ``cat-3``), order kept;
    case-insensitive, so they stay distinct on case-insensitive file systems too."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, k = name, 1
        while candidate.lower() in seen:
            k += 1
            candidate = f"{name}-{k}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def with_ext(base: str | Path, ext: str) -> Path:
    """``base`` with ``.ext`` appended (``layer3.1`` -> ``layer3.1.png``, not ``layer3.png``)."""
    base = Path(base)
    return base.parent / f"{base.name}.{ext.lstrip('.')}"
