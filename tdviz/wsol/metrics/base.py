"""The one shape of a localization metric, and the registry of metrics.

A metric is a *meter*: it turns what a worker knows about a chunk of images (an
:class:`~tdviz.wsol.evidence.Evidence`) into one row of integers or floats per image and step
(:meth:`Meter.rows`, in the worker), adds such rows (:meth:`Meter.add_rows`, in the main process),
reports its numbers (:meth:`Meter.report`; nothing while no image could be counted), and saves
and merges its counts (:meth:`Meter.to_state`, :meth:`Meter.from_state`, :meth:`Meter.merge`) for
resuming and for shards. Meters keep only counts, so 50 000 images cost a few kilobytes.

A metric is registered with a :class:`MetricSpec` (its name in results, the protocol whose maps
it reads, how to make it, its columns); adding one is one file in this package and one line in
``__init__``'s import list. ``update(..., image_id=...)`` of the meters ignores an id seen before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...errors import TdvizError

__all__ = ["METRICS", "Meter", "MetricOptions", "MetricSpec", "make_metrics", "meter_from_state", "register"]

STATE_VERSION = 2


@dataclass(frozen=True)
class MetricOptions:
    """Settings the metrics share: classes per image for top-k, the IoU threshold of the cam
    protocol, the step of wsolevaluation's threshold grid."""

    topk: int = 5
    iou_threshold: float = 0.5
    cam_curve_interval: float = 0.01


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: its ``name`` (key in results rows and state), the ``protocol`` whose
    maps it reads (``"cam"`` or ``"wsol"``), ``make(options)`` building its meter, its scalar
    ``columns`` ((results key, table label) pairs, in table order), whether it needs masks, and
    whether runs measure it unless told otherwise (``default``; others are asked for by name)."""

    name: str
    protocol: str
    make: Callable[[MetricOptions], Meter]
    columns: tuple[tuple[str, str], ...]
    needs_masks: bool = False
    default: bool = True


METRICS: dict[str, MetricSpec] = {}


def register(spec: MetricSpec) -> MetricSpec:
    """Add a metric (results, CSV and table columns follow registration order)."""
    METRICS[spec.name] = spec
    return spec


def make_metrics(protocols, options: MetricOptions, masks: bool, extra=()) -> dict[str, Meter]:
    """One fresh meter per default metric of ``protocols`` and per name in ``extra`` (those
    needing masks only when some image has them), each knowing its registry ``name``."""
    unknown = [m for m in extra if m not in METRICS]
    if unknown:
        raise TdvizError(f"Metric {unknown[0]!r} is unknown: choose from {', '.join(METRICS)}.")
    out = {}
    for spec in METRICS.values():
        wanted = spec.default or spec.name in extra
        if wanted and spec.protocol in protocols and (masks or not spec.needs_masks):
            meter = spec.make(options)
            meter.name = spec.name
            out[spec.name] = meter
    return out


class Meter:
    """Shared bookkeeping of every meter: image count, optional seen ids, state and merging."""

    name: str = ""

    def __init__(self) -> None:
        self.n = 0
        self._seen: set[str] = set()

    # --- the metric protocol (see the module docstring)
    def rows(self, ev) -> np.ndarray:
        """Per-image numbers of a chunk, [N, T, ...] (computed in the worker)."""
        raise NotImplementedError

    def add_rows(self, rows: np.ndarray) -> None:
        """Count images from their rows [N, ...] at one step."""
        raise NotImplementedError

    def report(self) -> dict:
        """This metric's entries of a results row ({} while no image could be counted)."""
        raise NotImplementedError

    # --- bookkeeping
    def _admit(self, image_id: str | None) -> bool:
        if image_id is None:
            return True
        if image_id in self._seen:
            return False
        self._seen.add(str(image_id))
        return True

    def _config(self) -> dict:
        raise NotImplementedError

    def _counts(self) -> dict:
        raise NotImplementedError

    def _set_counts(self, counts: dict) -> None:
        raise NotImplementedError

    def to_state(self) -> dict:
        """A JSON-serialisable snapshot (config, counts, seen image ids)."""
        return {"kind": type(self).__name__, "version": STATE_VERSION, "config": self._config(),
                "n": self.n, "counts": self._counts(), "seen": sorted(self._seen)}

    @classmethod
    def from_state(cls, state: dict):
        """Rebuild a meter from :meth:`to_state`'s dict."""
        if state.get("kind") != cls.__name__ or state.get("version") != STATE_VERSION:
            raise TdvizError(f"Saved meter state is a {state.get('kind')!r} v{state.get('version')}, "
                             f"not a {cls.__name__} v{STATE_VERSION}: resume with the same tdviz version "
                             "and metric, or start the run again.")
        meter = cls(**state["config"])
        meter.n = int(state["n"])
        meter._seen = set(state.get("seen", []))
        meter._set_counts(state["counts"])
        return meter

    def merge(self, other: Meter) -> None:
        """Add another meter's counts (same class and config; disjoint image ids)."""
        if type(other) is not type(self) or other._config() != self._config():
            raise ValueError("can only merge meters of the same kind and configuration")
        if self._seen & other._seen:
            raise ValueError(f"{len(self._seen & other._seen)} image ids were counted by both meters")
        mine, theirs = self._counts(), other._counts()
        self._set_counts({k: (np.asarray(mine[k]) + np.asarray(theirs[k])).tolist() for k in mine})
        self.n += other.n
        self._seen |= other._seen


_KINDS: dict[str, type] = {}


def meter_kind(cls: type) -> type:
    """Class decorator: make a meter class known to :func:`meter_from_state`."""
    _KINDS[cls.__name__] = cls
    return cls


def meter_from_state(state: dict):
    """Any meter from its :meth:`Meter.to_state` dict (dispatch on ``state["kind"]``)."""
    if state.get("kind") not in _KINDS:
        raise TdvizError(f"Saved meter state of kind {state.get('kind')!r} is unknown: expected one of "
                         f"{', '.join(_KINDS)}.")
    return _KINDS[state["kind"]].from_state(state)
