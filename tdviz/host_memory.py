"""Keep freed host memory for reuse, so that a CPU forward pass stops paying for page faults.

glibc serves every allocation above its mmap threshold (128 KiB to 32 MiB) with a fresh ``mmap``
and returns it to the kernel on ``free``. A CNN forward pass on the CPU allocates each layer's
output anew (tens of MB at batch 16 for a ResNet50), so every one of them is faulted in and
zeroed by the kernel page by page before the first value is written: on tdviz's 2-core box that
was more than half of `tdviz wsol`'s wall time on the CPU (system time 23 of 38 s for 160
images). :func:`keep_freed_memory` tells glibc (``mallopt``) to serve large blocks from its heap and
to keep what is freed there, so later layers and batches reuse pages that are already mapped.

Only where memory comes from is changed, never a value: results are bit-identical (measured:
``benchmarks/results/host_memory_cpu_2core.json``). The price is resident memory that stays at
the run's peak (plus fragmentation) instead of shrinking between batches. Every `tdviz` command
calls it; ``TDVIZ_KEEP_FREED_MEMORY=0`` turns it off. Library users call it once themselves.
It does nothing off Linux/glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_TRIM_NEVER = 2**31 - 1  # the largest value mallopt's int takes: return memory only beyond 2 GiB free at the top

_applied: list[bool] = []


def keep_freed_memory() -> bool:
    """Serve large host allocations from glibc's heap and keep freed memory there (see the module
    docstring). Returns whether the policy is in force; idempotent; a no-op (False) off glibc or
    with ``TDVIZ_KEEP_FREED_MEMORY=0``."""
    if _applied:
        return _applied[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("TDVIZ_KEEP_FREED_MEMORY", "1") != "0":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and others have no mallopt: keep their default
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER))
    _applied.append(ok)
    return ok
