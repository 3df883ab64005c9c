"""wsolevaluation's boxes at every threshold from component trees, in C (``thresholds.c``, with
the trees in ``component_trees.h``).

The C file is compiled on first use with the system's C compiler (``$CC``, else ``cc``) into
tdviz's cache (``$TDVIZ_CACHE/native`` or ``~/.cache/tdviz/native``; a library already there is
used without a compiler, so one built elsewhere for the machine can be copied in) and loaded with
ctypes; the
calls release the GIL, so threads run them in parallel. Where no compiler is found the callers
fall back to the OpenCV loop in :mod:`tdviz.wsol.scoremaps` (same numbers, slower), and
:func:`available` says why. ``TDVIZ_NATIVE=0`` forces that fallback.

Exactness: the boxes are those of ``cv2.findContours(RETR_TREE)`` at every threshold (outer
contours and holes) and the largest-contour choice that of ``max(contours, key=cv2.contourArea)``;
tests compare every IoU with wsolevaluation's threshold loop written out.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

__all__ = ["available", "best_ious"]

SOURCE = Path(__file__).with_name("thresholds.c")
HEADER = SOURCE.with_name("component_trees.h")  # included by SOURCE
#: no floating-point contraction: the IoUs must round exactly as numpy's do
FLAGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC"]

_lock = threading.Lock()
_state: dict = {}
_local = threading.local()


def _cache_dir() -> Path:
    root = os.environ.get("TDVIZ_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "tdviz") / "native"


def _compile() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get("TDVIZ_NATIVE", "1") == "0":
        return None, "turned off by TDVIZ_NATIVE=0"
    # plain C called through ctypes: the library depends on the source and flags, not on Python
    tag = hashlib.sha256(SOURCE.read_bytes() + HEADER.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = _cache_dir() / f"thresholds-{tag}-{platform.machine()}.so"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not target.is_file() and not compiler:
        return None, "no C compiler (cc, gcc or clang) was found"
    if not target.is_file():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                out = Path(tmp) / target.name
                res = subprocess.run([compiler, *FLAGS, "-I", str(SOURCE.parent), "-o", str(out), str(SOURCE)],
                                     capture_output=True, text=True,
                                     timeout=120, check=False)
                if res.returncode != 0:
                    return None, f"{compiler} could not build {SOURCE.name}: {res.stderr.strip()[:200]}"
                os.replace(out, target)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"building {SOURCE.name} failed ({exc})"
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        return None, f"loading {target} failed ({exc})"
    p, i = ctypes.c_void_p, ctypes.c_int
    lib.tdviz_wsol_workspace.restype = p
    lib.tdviz_wsol_workspace.argtypes = [i, i, i]
    lib.tdviz_wsol_workspace_free.argtypes = [p]
    lib.tdviz_wsol_best_ious.restype = i
    lib.tdviz_wsol_best_ious.argtypes = [p, p, i, i, i, p, i, p, p, i, p, p]
    return lib, ""


def _lib() -> ctypes.CDLL | None:
    with _lock:
        if "lib" not in _state:
            _state["lib"], _state["why"] = _compile()
    return _state["lib"]


def available() -> tuple[bool, str]:
    """(whether the compiled trees are in use, why not when they are not)."""
    return _lib() is not None, _state.get("why", "")


class _Workspace:
    """A C workspace for one map size, freed with this object (one per thread)."""

    def __init__(self, lib, height: int, width: int, n_cuts: int) -> None:
        self.lib, self.key = lib, (height, width, n_cuts)
        self.ptr = lib.tdviz_wsol_workspace(height, width, n_cuts)
        if not self.ptr:
            raise MemoryError("tdviz's threshold trees could not allocate their workspace")

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self.lib.tdviz_wsol_workspace_free(self.ptr)
            self.ptr = None


def best_ious(quantized: np.ndarray, cuts: np.ndarray, gt_boxes: list[np.ndarray], inclusive: bool = False
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """(v1, v2) [N, T] for uint8 maps ``quantized`` [N, H, W], ascending ``cuts`` [N, T] (mask
    ``q > cut``) and each map's GT boxes (float [K, 4], K >= 1, in the map's frame); ``None`` when
    the compiled code is not available."""
    lib = _lib()
    if lib is None:
        return None
    q = np.ascontiguousarray(quantized, dtype=np.uint8)
    n, height, width = q.shape
    c = np.ascontiguousarray(cuts, dtype=np.int32).reshape(n, -1)
    t = c.shape[1]
    gts = [np.asarray(g, np.float64).reshape(-1, 4) for g in gt_boxes]
    if len(gts) != n or any(len(g) == 0 for g in gts):
        raise ValueError("every map needs at least one GT box")
    gt = np.ascontiguousarray(np.concatenate(gts) if gts else np.zeros((0, 4)))
    starts = np.ascontiguousarray(np.cumsum([0] + [len(g) for g in gts]), dtype=np.int64)
    v1 = np.empty((n, t), np.float64)
    v2 = np.empty((n, t), np.float64)
    ws = getattr(_local, "ws", None)
    if ws is None or ws.key != (height, width, t) or ws.lib is not lib:
        ws = _local.ws = _Workspace(lib, height, width, t)
    rc = lib.tdviz_wsol_best_ious(ws.ptr, q.ctypes.data, n, height, width, c.ctypes.data, t, gt.ctypes.data,
                                  starts.ctypes.data, int(bool(inclusive)), v1.ctypes.data, v2.ctypes.data)
    if rc != 0:
        raise RuntimeError(f"tdviz's threshold trees refused the call (code {rc})")
    return v1, v2
