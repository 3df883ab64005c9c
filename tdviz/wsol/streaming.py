"""wsolevaluation's metrics inside a training loop, in torchmetrics' shape.

::

    from tdviz.wsol.streaming import WsolMetrics

    metric = WsolMetrics()                       # MaxBoxAccV2, MaxBoxAcc, PxAP (where masks are given)
    for images, targets in val_loader:           # targets: [{"boxes": [K, 4], "mask": [224, 224]}, ...]
        cams = my_cams(model, images)            # raw CAMs of the GT class, [B, h, w], any device
        metric.update(cams, targets)
    metric.all_reduce()                          # under torch.distributed: add every process's counts
    print(metric.compute())                      # {"maxboxacc_v2": 61.2, "maxboxacc": 58.0, ...}
    metric.reset()

The maps are the raw class activation maps of each image's ground-truth class (at the CAM layer's
resolution, or any other), as wsolevaluation's evaluator takes them; boxes are inclusive
``[x0, y0, x1, y1]`` in the 224 x 224 frame of its score maps
(:func:`tdviz.wsol.scoremaps.resize_boxes_wsol` maps original-image boxes there); masks, optional,
are bool [224, 224] (``"ignore"`` an optional ignore region). The numbers are the same meters'
as `tdviz wsol`'s (:mod:`tdviz.wsol.metrics`), computed the same way: every threshold from the
compiled component trees, on as many threads as there are cores.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np

from .metrics import MetricOptions, make_metrics
from .scoremaps import cam_threshold_grid, wsol_best_ious_batch, wsol_scoremap

__all__ = ["WsolMetrics"]


class WsolMetrics:
    """Streaming MaxBoxAccV2, MaxBoxAcc and PxAP (see the module docstring): ``update(maps,
    targets)``, ``compute()``, ``reset()``, ``merge(other)``, ``state()`` / ``load_state()`` and
    ``all_reduce()`` across the processes of a torch.distributed group."""

    def __init__(self, cam_curve_interval: float = 0.01, pxap: bool = True, threads: int | None = None) -> None:
        self.options = MetricOptions(cam_curve_interval=cam_curve_interval)
        self.thresholds = cam_threshold_grid(cam_curve_interval)
        self.threads = threads or min(16, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self.with_pxap = pxap
        self.reset()

    def reset(self) -> None:
        """Forget every counted image."""
        self.meters = make_metrics(("wsol",), self.options, masks=self.with_pxap)

    # ------------------------------------------------------------------ counting
    def update(self, maps, targets) -> None:
        """Count a batch: ``maps`` [B, h, w] raw GT-class CAMs (torch tensor on any device, or
        numpy), ``targets`` one dict per map with ``"boxes"`` [K, 4] (224² frame) and optionally
        ``"mask"`` / ``"ignore"`` bool [224, 224]."""
        raw = maps.detach().float().cpu().numpy() if hasattr(maps, "detach") else np.asarray(maps, np.float32)
        if raw.ndim != 3 or len(raw) != len(targets):
            raise ValueError(f"update needs maps [B, h, w] and B targets; got {raw.shape} and {len(targets)}")
        boxes = [_numpy(t.get("boxes", np.zeros((0, 4)))).reshape(-1, 4).astype(np.float64) for t in targets]
        masks = [None if t.get("mask") is None else
                 (_numpy(t["mask"]).astype(bool), None if t.get("ignore") is None else _numpy(t["ignore"]).astype(bool))
                 for t in targets]
        pool = self._threads()
        scoremaps = np.stack(list(pool.map(wsol_scoremap, raw)))
        step = max(1, -(-len(raw) // self.threads))
        parts = list(pool.map(lambda s: wsol_best_ious_batch(scoremaps[s:s + step], boxes[s:s + step],
                                                             self.thresholds), range(0, len(raw), step)))
        v1 = np.concatenate([p[0] for p in parts])
        v2 = np.concatenate([p[1] for p in parts])
        self.meters["maxboxacc_v2"].add_rows(v2)
        self.meters["maxboxacc"].add_rows(v1)
        if "pxap" in self.meters:
            fg_ignore = [None if m is None else (m[0], np.zeros_like(m[0]) if m[1] is None else m[1]) for m in masks]
            ev = SimpleNamespace(images=fg_ignore, steps=1, masks=fg_ignore, scoremaps=lambda: scoremaps[:, None])
            self.meters["pxap"].add_rows(self.meters["pxap"].rows(ev)[:, 0])

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="tdviz-wsol-metrics")
        return self._pool

    def compute(self) -> dict:
        """Every metric so far, in percent, and the image counts (a metric no image could give is
        absent)."""
        out = {}
        for meter in self.meters.values():
            out.update(meter.report())
        return out

    # ------------------------------------------------------------------ several processes
    def merge(self, other: WsolMetrics) -> None:
        """Add another instance's counts (images counted by one of the two only)."""
        for key, meter in self.meters.items():
            meter.merge(other.meters[key])

    def state(self) -> dict:
        """The counts as plain data (to save, or to send to another process)."""
        return {k: m.to_state() for k, m in self.meters.items()}

    def load_state(self, state: dict) -> None:
        """Counts from :meth:`state`."""
        from .results import meters_from_state

        self.meters = meters_from_state({"m": {"s": state}})["m"]["s"]

    def all_reduce(self, group=None) -> None:
        """Sum the counts of every process of a torch.distributed group (call on all of them)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        backend = dist.get_backend(group)
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        for meter in self.meters.values():
            counts = meter._counts()
            flat = {k: np.asarray(v, np.int64) for k, v in counts.items()}
            packed = torch.tensor(np.concatenate([v.ravel() for v in flat.values()] + [np.array([meter.n])]),
                                  dtype=torch.int64, device=device)
            dist.all_reduce(packed, group=group)
            values, at = packed.cpu().numpy(), 0
            for k, v in flat.items():
                counts[k] = values[at:at + v.size].reshape(v.shape).tolist() if v.ndim else int(values[at])
                at += v.size
            meter._set_counts(counts)
            meter.n = int(values[at])


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

