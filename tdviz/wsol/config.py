"""The settings of a `tdviz wsol` run."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from .metrics import MetricOptions

__all__ = ["DECODERS", "PRECISIONS", "PROTOCOLS", "WsolConfig", "split_cores"]

PROTOCOLS = ("cam", "wsol")
DECODERS = ("auto", "cpu", "gpu")
PRECISIONS = ("fp32", "bf16")


def split_cores(workers: int | None = None, box_workers: int | None = None) -> tuple[int, int]:
    """Decode and box-worker processes for a run: the cores shared about evenly (measured best on
    16-core GPU hosts); under torchrun each of the host's LOCAL_WORLD_SIZE processes splits only
    its share. A number given is kept."""
    cores = max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    workers = (cores // 2) if workers is None else workers
    box_workers = max(0, cores - 1 - workers) if box_workers is None else box_workers
    return workers, box_workers


@dataclass
class WsolConfig:
    """Settings of a run. All but ``batch_size`` and ``limit`` are part of its identity: a resumed
    run must use the same (``limit`` may grow).

    ``metrics``: metrics to measure beyond the default ones (names of
    :data:`tdviz.wsol.metrics.METRICS`); ``decode``: where JPEGs are decoded (``auto``: on the GPU
    when the models are on one); ``precision``: ``fp32``, or ``bf16`` (autocast, channels-last);
    ``inputs``: per model label, the cam protocol's input frame ``(mode, size, resize)`` when it is
    not the model record's (``tdviz resolution``'s test sizes).
    """

    protocols: tuple[str, ...] = PROTOCOLS
    topk: int = 5
    cam_ratio: float = 0.15
    iou_threshold: float = 0.5
    method: str = "gradcam"
    layer: str | None = None
    batch_size: int = 16
    limit: int | None = None
    metrics: tuple[str, ...] = ()
    decode: str = "auto"
    precision: str = "fp32"
    inputs: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    def identity_options(self, device_type: str = "cpu") -> dict:
        """The options that change a number: :meth:`to_dict` without batch size and limit."""
        d = self.to_dict(device_type)
        d.pop("batch_size")
        d.pop("limit")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_dict(self, device_type: str = "cpu") -> dict:
        """The settings as saved in results.json and state.json: the options of tdviz 0.1 always,
        the later ones (metrics, GPU decoding, bf16) only where they are in use, so a run that
        uses none of them writes the results.json it always wrote."""
        d = asdict(self)
        d["decode"] = self.decoder(device_type)
        for key, default in (("metrics", ()), ("decode", "cpu"), ("precision", "fp32"), ("inputs", {})):
            if d[key] in (default, list(default) if isinstance(default, tuple) else default):
                d.pop(key)
        if "inputs" in d:
            d["inputs"] = {k: list(v) for k, v in sorted(d["inputs"].items())}
        return d

    def decoder(self, device_type: str) -> str:
        """Where JPEGs are decoded for models on ``device_type``: ``cpu`` or ``gpu``."""
        if self.decode == "auto":
            return "gpu" if device_type == "cuda" else "cpu"
        return self.decode

    def metric_options(self) -> MetricOptions:
        return MetricOptions(topk=self.topk, iou_threshold=self.iou_threshold)
