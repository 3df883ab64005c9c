"""Accuracy across test resolutions: the paper's Table 2 and Fig. 3 (`tdviz resolution`).

Each model is evaluated at every test size as a separate model label (``<label>@<size>px``) of one
`tdviz wsol` run with the cam protocol only (:mod:`tdviz.wsol`): each image is read and decoded
once and every size is made from the decoded image (on the GPU when the models are on one), and
resume, the run identity and shards are `tdviz wsol`'s own. Without GT boxes only classification
is measured (one forward per size, no maps); with boxes the Table-3 metrics too.

A test size follows the paper's (timm's) convention: the shorter side is resized to
``round(size / crop_fraction)`` and the centre ``size`` x ``size`` crop is kept, with the model
record's crop fraction (0.875 for tdviz's ImageNet models, as 224 of 256); ``crop="resize"``
resizes the whole image to ``size`` x ``size`` instead. Models whose record says "resize" (the
demo zoo) keep it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from .datasets import Dataset
from .errors import TdvizError
from .images import Preprocess
from .models.record import CROPS, model_record
from .wsol.config import WsolConfig
from .wsol.runstate import write_text_atomic

__all__ = ["ResolutionRow", "ResolutionRun", "ResolutionSummary", "parse_sizes", "run_resolution"]



def parse_sizes(text: str) -> tuple[int, ...]:
    """``"168:448:28"`` (start:stop:step, stop included) or ``"168,224,448"`` -> sorted sizes."""
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [int(v) for v in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            sizes = list(range(parts[0], parts[1] + 1, parts[2]))
        else:
            sizes = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise TdvizError(f"--sizes {text!r} is not a size list: use START:STOP:STEP (e.g. 168:448:28) or "
                         "a comma list (e.g. 168,224,448).") from None
    bad = [s for s in sizes if not 32 <= s <= 2048]
    if not sizes or bad:
        raise TdvizError(f"--sizes {text!r}: every size must lie in 32..2048 (tdviz's models downsample by 32).")
    return tuple(sorted(set(sizes)))


@dataclass
class ResolutionRow:
    """One model at one step (or ``"mc"``) and test size: accuracies in percent; localization
    only where GT boxes were measured (``None`` otherwise, never 0)."""

    model: str
    step: str
    size: int
    top1: float | None
    top5: float | None
    n: int
    top1_loc: float | None = None
    top5_loc: float | None = None
    gt_known_loc: float | None = None


@dataclass
class ResolutionSummary:
    """Table 2 for one model and step: top-1 at the train size, the lowest and highest test
    size, and the best test size with its top-1."""

    model: str
    step: str
    train_size: int
    at_train: float | None
    lowest: tuple[int, float | None]
    highest: tuple[int, float | None]
    best: tuple[int, float | None]


@dataclass
class ResolutionRun:
    """What `tdviz resolution` measured: rows, the summary, the run's raw results and files."""

    sizes: tuple[int, ...]
    crop: str
    crop_fraction: float | None
    rows: list[ResolutionRow] = field(default_factory=list)
    summary: list[ResolutionSummary] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    merged: bool = True

    def to_dict(self) -> dict:
        return {"sizes": list(self.sizes), "crop": self.crop, "crop_fraction": self.crop_fraction,
                "rows": [asdict(r) for r in self.rows], "summary": [asdict(s) for s in self.summary]}


def size_labels(models: dict[str, nn.Module], sizes, crop: str | None, crop_fraction: float | None
                ) -> tuple[dict[str, nn.Module], dict[str, tuple[str, int, int]], dict[str, tuple[str, int]]]:
    """(label@size -> model, label@size -> the cam input (mode, size, resize), label@size ->
    (label, size))."""
    if crop is not None and crop not in CROPS:
        raise TdvizError(f"--crop {crop!r} is unknown: use {' or '.join(CROPS)}.")
    nets, inputs, origin = {}, {}, {}
    for label, model in models.items():
        for size in sizes:
            key = f"{label}@{size}px"
            pre = Preprocess.for_model(model, size=size, crop=crop, crop_fraction=crop_fraction)
            nets[key], inputs[key], origin[key] = model, (pre.mode, pre.size, pre.resize), (label, size)
    return nets, inputs, origin


def _rows(results: dict, origin: dict[str, tuple[str, int]]) -> list[ResolutionRow]:
    rows = []
    for key, steps in results["models"].items():
        label, size = origin[key]
        for step, m in steps.items():
            rows.append(ResolutionRow(label, step, size, m.get("top1_cls"), m.get("top5_cls"), int(m.get("n", 0)),
                                      m.get("top1_loc"), m.get("top5_loc"), m.get("gt_known_loc")))
    order = {label: i for i, (label, _) in enumerate(dict.fromkeys(origin.values()))}
    return sorted(rows, key=lambda r: (order.get(r.model, 0), r.step != "mc", r.step, r.size))


def summarize(rows: list[ResolutionRow], train_sizes: dict[str, int]) -> list[ResolutionSummary]:
    """Table 2 per model and step from the rows (best: the highest top-1, the smaller size on ties)."""
    out = []
    groups: dict[tuple[str, str], list[ResolutionRow]] = {}
    for r in rows:
        groups.setdefault((r.model, r.step), []).append(r)
    for (model, step), group in groups.items():
        group = sorted(group, key=lambda r: r.size)
        at = {r.size: r.top1 for r in group}
        measured = [r for r in group if r.top1 is not None]
        best = max(measured, key=lambda r: (r.top1, -r.size)) if measured else None
        train = train_sizes[model]
        out.append(ResolutionSummary(model, step, train, at.get(train), (group[0].size, group[0].top1),
                                     (group[-1].size, group[-1].top1),
                                     (best.size, best.top1) if best else (train, None)))
    return out


def run_resolution(models: dict[str, nn.Module], dataset: Dataset, out: str | Path, sizes, config: WsolConfig,
                   crop: str | None = None, crop_fraction: float | None = None, *, resume: bool = False,
                   overwrite: bool = False, shard: tuple[int, int] | None = None, workers: int = 2,
                   box_workers: int = 0, progress: bool = True, plot: bool = True) -> ResolutionRun:
    """Evaluate ``models`` at every test size in ``sizes`` (see the module docstring) into ``out``:
    `tdviz wsol`'s files plus ``results.json`` with ``rows`` and ``summary`` added, and
    ``resolution.png`` / ``.pdf`` (Fig. 3). A shard that is not the last to finish returns
    ``merged=False`` and writes nothing of its own beyond its shard folder."""
    from .wsol.evaluate import run_wsol

    nets, inputs, origin = size_labels(models, tuple(sizes), crop, crop_fraction)
    cfg = WsolConfig(**{**asdict(config), "protocols": ("cam",), "inputs": inputs})
    results = run_wsol(nets, dataset, out, cfg, resume=resume, overwrite=overwrite, shard=shard, workers=workers,
                       progress=progress, box_workers=box_workers)
    run = ResolutionRun(tuple(sizes), crop or "model record", crop_fraction, results=results)
    if results.get("merged") is False:
        run.merged = False
        return run
    run.rows = _rows(results, origin)
    run.summary = summarize(run.rows, {label: model_record(m).input_size for label, m in models.items()})
    write_text_atomic(Path(out) / "results.json", json.dumps({**results, **run.to_dict()}, indent=1) + "\n")
    if plot:
        from .resolution_plot import plot_resolution

        plot_resolution(run, Path(out) / "resolution")
    return run
