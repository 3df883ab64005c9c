"""Channel selectivity and sparsity metrics, per layer and per computation step.

The caller feeds the activations of one layer at one computation step, ``[B, C, H, W]`` (torch or
numpy, any device), with the labels ``[B]``; everything here reduces them at once to per-image
channel vectors, so a whole validation set never sits in memory.

Conventions (shared by every function):

* **Non-negative activations.** Morcos et al. (2018) measure selectivity on ReLU outputs. Negative
  values (e.g. taps taken before a ReLU, or after a BatchNorm) are clamped at 0 *element-wise,
  before spatial averaging*, i.e. the metrics describe ``relu(acts)``.
* **Channel vector** ``v`` of an image: the spatial mean of each (clamped) channel, length ``C``.
* **Class selectivity index** (Morcos et al. 2018): per channel, the class-conditional means
  ``mu_k`` of ``v`` over the dataset; ``SI = (mu_max - mu_-max) / (mu_max + mu_-max)`` with
  ``mu_-max`` the mean of the *other* classes' means. 0 = equally active for every class, 1 = active
  for one class only. A dead channel (``0/0``) gets SI = 0. Classes with no image are left out.
* **Sparsity of ``v``**: Gini coefficient (Hurley & Rickard 2009; 0 = uniform, ``1 - 1/C`` = one-hot),
  Hoyer sparsity (0 = uniform, 1 = one-hot) and ``frac90``, the smallest fraction ``k/C`` of
  channels whose top-``k`` sum holds 90% of the mass (``1/C`` = one-hot, ``ceil(0.9 C)/C`` =
  uniform). For an all-zero ``v`` they are undefined: NaN, left out of the summaries and counted as
  ``n_dead_images``.
* **CAM focus**: the fraction of a map's pixels strictly above half of that map's maximum (maps
  ``[B, H, W]`` in [0, 1]); an all-zero map has focus 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

METRICS = ("si", "gini", "hoyer", "frac90", "focus")
METRIC_LABELS = {
    "si": "class selectivity index\n(per channel)",
    "gini": "Gini of channel means\n(per image)",
    "hoyer": "Hoyer sparsity\n(per image)",
    "frac90": "fraction of channels\nholding 90% of mass (per image)",
    "focus": "CAM focus: area above\nhalf max (per image)",
}
TABLE_COLUMNS = ("model", "layer", "step", "SI median [q1–q3]", "Gini", "Hoyer", "frac90", "CAM focus")

_MASS_RTOL = 1e-9  # float slack so that e.g. 9 of 10 equal channels count as exactly 90%


def _np(x) -> np.ndarray:
    """Any torch tensor / array-like as a float64 numpy array (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def channel_means(acts) -> np.ndarray:
    """Per-image channel vectors ``[B, C]``: ``relu(acts)`` averaged over space.

    ``acts`` is ``[B, C, H, W]`` (torch or numpy) or an already pooled ``[B, C]`` (clamped only).
    The clamp and the spatial mean run where ``acts`` lives (e.g. on the GPU); only ``[B, C]``
    comes back, as float64.
    """
    if hasattr(acts, "detach"):
        acts = acts.detach().float().clamp_min(0)
        acts = acts.mean(dim=(2, 3)) if acts.dim() == 4 else acts
    a = np.maximum(_np(acts), 0.0)
    if a.ndim == 4:
        return a.mean(axis=(2, 3))
    if a.ndim != 2:
        raise ValueError(f"expected activations [B, C, H, W] or [B, C], got shape {a.shape}")
    return a


def selectivity_from_sums(class_sums, class_counts) -> np.ndarray:
    """Class selectivity index per channel from per-class sums ``[K, C]`` and image counts ``[K]``.

    Classes with a zero count are left out; at least two classes must have images.
    """
    sums, counts = _np(class_sums), _np(class_counts)
    seen = counts > 0
    if seen.sum() < 2:
        raise ValueError(f"class selectivity needs images of at least 2 classes, got {int(seen.sum())}")
    means = sums[seen] / counts[seen, None]  # [K', C]
    k = means.shape[0]
    mu_max = means.max(axis=0)
    mu_rest = (means.sum(axis=0) - mu_max) / (k - 1)
    denom = mu_max + mu_rest
    with np.errstate(invalid="ignore", divide="ignore"):
        si = np.where(denom > 0, (mu_max - mu_rest) / np.where(denom > 0, denom, 1.0), 0.0)
    return si


def class_selectivity_index(acts, labels, num_classes: int) -> np.ndarray:
    """Class selectivity index per channel of a whole set at once (see the module doc)."""
    v = channel_means(acts)
    lab = _np(labels).astype(np.int64)
    sums = np.zeros((num_classes, v.shape[1]))
    np.add.at(sums, lab, v)
    return selectivity_from_sums(sums, np.bincount(lab, minlength=num_classes))


def _vectors(v) -> tuple[np.ndarray, bool]:
    a = _np(v)
    single = a.ndim == 1
    a = np.atleast_2d(a)
    if a.ndim != 2:
        raise ValueError(f"expected a channel vector [C] or a batch [B, C], got shape {a.shape}")
    if (a < 0).any():
        raise ValueError("channel vectors must be non-negative (use channel_means to clamp)")
    return a, single


def _out(x: np.ndarray, single: bool):
    return float(x[0]) if single else x


def gini(v):
    """Gini coefficient (Hurley & Rickard 2009) of non-negative vectors ``[C]`` or ``[B, C]``.

    With ``c_(1) <= ... <= c_(C)`` sorted ascending:
    ``G = 1 - 2 * sum_k (c_(k) / ||c||_1) * (C - k + 1/2) / C``. Uniform -> 0, one-hot -> 1 - 1/C,
    all-zero -> NaN. Returns a float for ``[C]``, an array ``[B]`` for ``[B, C]``.
    """
    a, single = _vectors(v)
    c = np.sort(a, axis=1)
    n = c.shape[1]
    total = c.sum(axis=1)
    w = (n - np.arange(1, n + 1) + 0.5) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        g = 1.0 - 2.0 * (c @ w) / total
    return _out(np.where(total > 0, g, np.nan), single)


def hoyer(v):
    """Hoyer sparsity ``(sqrt(C) - ||v||_1 / ||v||_2) / (sqrt(C) - 1)``: uniform 0, one-hot 1.

    Needs ``C >= 2``; all-zero -> NaN. Returns a float for ``[C]``, an array ``[B]`` for ``[B, C]``.
    """
    a, single = _vectors(v)
    n = a.shape[1]
    if n < 2:
        raise ValueError("Hoyer sparsity needs at least 2 channels")
    l1, l2 = a.sum(axis=1), np.sqrt((a * a).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        h = (math.sqrt(n) - l1 / l2) / (math.sqrt(n) - 1)
    return _out(np.where(l2 > 0, h, np.nan), single)


def frac_mass(v, mass: float = 0.9):
    """Smallest ``k/C`` such that the ``k`` largest channels hold ``mass`` of the total.

    One-hot -> ``1/C``; uniform -> ``ceil(mass * C)/C``; all-zero -> NaN. A relative slack of 1e-9
    absorbs float round-off (nine of ten equal channels count as exactly 90%).
    """
    a, single = _vectors(v)
    n = a.shape[1]
    total = a.sum(axis=1)
    csum = np.cumsum(-np.sort(-a, axis=1), axis=1)
    k = (csum < (mass * total * (1 - _MASS_RTOL))[:, None]).sum(axis=1) + 1
    return _out(np.where(total > 0, np.minimum(k, n) / n, np.nan), single)


def cam_focus(maps, rel: float = 0.5):
    """Fraction of each map's pixels strictly above ``rel`` times that map's maximum.

    ``maps`` is ``[H, W]`` (-> float) or ``[B, H, W]`` (-> array ``[B]``), values in [0, 1].
    An all-zero map has focus 0.
    """
    m = _np(maps)
    single = m.ndim == 2
    m = m[None] if single else m
    if m.ndim != 3:
        raise ValueError(f"expected maps [H, W] or [B, H, W], got shape {m.shape}")
    flat = m.reshape(m.shape[0], -1)
    thr = rel * flat.max(axis=1, keepdims=True)
    return _out((flat > thr).mean(axis=1), single)


def summarize(values) -> tuple[float, float, float]:
    """``(median, q25, q75)`` of ``values``, ignoring NaN; all NaN when there is nothing left."""
    a = _np(values).ravel()
    a = a[~np.isnan(a)]
    if a.size == 0:
        return (math.nan, math.nan, math.nan)
    q25, med, q75 = np.percentile(a, [25, 50, 75])
    return (float(med), float(q25), float(q75))


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@dataclass
class SelectivityResult:
    """What a :class:`SelectivityMeter` measured for one (model, layer, step).

    ``si`` is per channel; ``gini``, ``hoyer``, ``frac90`` per image (NaN for all-zero images);
    ``focus`` per CAM fed (empty when none). ``summaries[metric]`` = ``(median, q25, q75)``.
    """

    si: np.ndarray
    gini: np.ndarray
    hoyer: np.ndarray
    frac90: np.ndarray
    focus: np.ndarray
    class_counts: np.ndarray
    n_images: int
    n_dead_images: int
    n_dead_channels: int
    summaries: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def values(self, metric: str) -> np.ndarray:
        """The raw values of ``metric`` (one of :data:`METRICS`), NaN removed."""
        a = np.asarray(getattr(self, metric), dtype=np.float64)
        return a[~np.isnan(a)]

    def to_dict(self, per_image: bool = False) -> dict:
        """JSON-ready dict: summaries, per-channel SI, counts; per-image values if ``per_image``."""
        d = {
            "n_images": self.n_images,
            "n_dead_images": self.n_dead_images,
            "n_dead_channels": self.n_dead_channels,
            "n_cams": int(self.focus.size),
            "class_counts": [int(c) for c in self.class_counts],
            "summary": {m: dict(zip(("median", "q25", "q75"), map(_json_float, s)))
                        for m, s in self.summaries.items()},
            "si": [float(x) for x in self.si],
        }
        if per_image:
            for m in ("gini", "hoyer", "frac90", "focus"):
                d[m] = [_json_float(float(x)) for x in getattr(self, m)]
        return d


class SelectivityMeter:
    """Streaming selectivity/sparsity statistics of one layer at one computation step.

    Keeps per-class channel sums ``[K, C]`` and counts ``[K]`` (float64) plus three scalars per
    image, so any number of images can be fed in batches::

        meter = SelectivityMeter(num_classes=1000, channels=2048)
        for acts, labels, cams in batches:      # acts [B, C, H, W], labels [B], cams [B, H, W]
            meter.update(acts, labels, cams)
        res = meter.result()
    """

    def __init__(self, num_classes: int, channels: int):
        if channels < 2:
            raise ValueError("need at least 2 channels")
        self.num_classes, self.channels = num_classes, channels
        self.class_sums = np.zeros((num_classes, channels))
        self.class_counts = np.zeros(num_classes, dtype=np.int64)
        self._gini: list[np.ndarray] = []
        self._hoyer: list[np.ndarray] = []
        self._frac90: list[np.ndarray] = []
        self._focus: list[np.ndarray] = []

    def update(self, acts, labels, cams=None) -> None:
        """Add a batch: ``acts`` ``[B, C, H, W]`` (or pooled ``[B, C]``), ``labels`` ``[B]``,
        optional ``cams`` ``[B, H, W]`` (see :meth:`update_cams`)."""
        v = channel_means(acts)
        lab = _np(labels).astype(np.int64).ravel()
        if v.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {v.shape[1]}")
        if lab.shape[0] != v.shape[0]:
            raise ValueError(f"{v.shape[0]} activations but {lab.shape[0]} labels")
        if lab.size and (lab.min() < 0 or lab.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        np.add.at(self.class_sums, lab, v)
        self.class_counts += np.bincount(lab, minlength=self.num_classes)
        self._gini.append(gini(v))
        self._hoyer.append(hoyer(v))
        self._frac90.append(frac_mass(v, 0.9))
        if cams is not None:
            self.update_cams(cams)

    def update_cams(self, maps) -> None:
        """Add the CAMs ``[B, H, W]`` (values in [0, 1]) of a batch for the focus metric."""
        self._focus.append(np.atleast_1d(cam_focus(maps)))

    def result(self) -> SelectivityResult:
        """Per-channel SI and per-image sparsity values so far, with their summaries."""
        g, h, f, foc = (np.concatenate(xs) if xs else np.zeros(0)
                        for xs in (self._gini, self._hoyer, self._frac90, self._focus))
        si = selectivity_from_sums(self.class_sums, self.class_counts)
        res = SelectivityResult(
            si=si, gini=g, hoyer=h, frac90=f, focus=foc, class_counts=self.class_counts.copy(),
            n_images=int(self.class_counts.sum()), n_dead_images=int(np.isnan(g).sum()),
            n_dead_channels=int((self.class_sums.sum(axis=0) == 0).sum()),
        )
        res.summaries = {m: summarize(getattr(res, m)) for m in METRICS}
        return res


def _fmt(s: tuple[float, float, float]) -> str:
    med, q1, q3 = s
    return "–" if math.isnan(med) else f"{med:.3f} [{q1:.3f}–{q3:.3f}]"


def selectivity_table_rows(results: Mapping[tuple[str, str, int], SelectivityResult]) -> list[tuple[str, ...]]:
    """Rows (strings, in :data:`TABLE_COLUMNS` order) for a printed table, in ``results`` order.

    Every metric cell is ``median [q1–q3]``; "–" where there is no value (e.g. no CAMs fed).
    """
    return [(str(model), str(layer), str(step), *(_fmt(r.summaries[m]) for m in METRICS))
            for (model, layer, step), r in results.items()]


def run_selectivity(models: Mapping, dataset, layers: Sequence[str] | None = None, batch_size: int = 50,
                    workers: int = 2, progress: bool = True) -> tuple[dict[tuple[str, str, int], SelectivityResult],
                                                                        list[str]]:
    """Stream ``dataset`` (a :class:`tdviz.classify.ImageFolderDataset`) through every model and
    measure each of ``layers`` (default: the model's feature layer) at each computation step, with
    the focus of each step's top-1 Grad-CAM. Returns ``{(model, layer, step): result}`` and one
    message per unreadable image (skipped)."""
    from torch.utils.data import DataLoader

    from .cam import default_layer, step_cams
    from .classify import _collate
    from .processes import follow_parent
    from .progress import image_progress
    from .steps import run_steps

    chosen = {n: list(layers) if layers else [default_layer(m)] for n, m in models.items()}
    meters: dict[tuple[str, str, int], SelectivityMeter] = {}
    skipped: list[str] = list(getattr(dataset, "problems", []))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                        worker_init_fn=follow_parent if workers else None)
    with image_progress("selectivity", len(dataset), progress) as advance:
        for images, labels, _, bad in loader:
            skipped += [msg for _, msg in bad]
            if images is not None:
                for name, model in models.items():
                    x = images.to(next(model.parameters()).device)
                    acts_by_layer = run_steps(model, x, layers=chosen[name]).activations
                    maps = step_cams(model, x, classes="topk", k=1).maps[:, :, 0].cpu()
                    for layer, acts in acts_by_layer.items():
                        for t in range(acts.shape[1]):
                            key = (name, layer, t + 1)
                            if key not in meters:
                                meters[key] = SelectivityMeter(len(dataset.classes), acts.shape[2])
                            meters[key].update(acts[:, t].float().cpu(), labels, maps[:, min(t, maps.shape[1] - 1)])
            advance(len(bad) + (0 if images is None else len(images)))
    return {k: m.result() for k, m in meters.items()}, skipped




from .selectivity_plot import plot_distributions, selectivity_figure  # noqa: F401  (their old home)
