"""`tdviz cam` as a library call: image files in, per-step CAM figures, maps and records out."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cam import step_cams
from .classnames import class_names_for
from .errors import TdvizError
from .images import ImageError, Preprocess, expand_inputs, read_image
from .viz import model_view, step_figure


@dataclass
class CamRecord:
    """One image's result: predicted classes and scores per step, and the files written."""

    image: str
    classes: list[list[str]]
    class_ids: list[list[int]]
    scores: list[list[float]]
    figures: list[str]
    maps: str | None = None


@dataclass
class CamRun:
    """All records of a call, and one sentence per input that could not be processed."""

    records: list[CamRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"records": [asdict(r) for r in self.records], "problems": self.problems}


def _safe_stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "image"


def cam_files(inputs: Sequence[str], model: nn.Module, out: str | Path, steps: bool = True, method: str = "gradcam",
              topk: int = 1, layer: str | None = None, size: int | None = None, save_maps: bool = False,
              batch_size: int = 8, classes: Sequence[int] | None = None, title: str = "") -> CamRun:
    """Per-step CAM figures (PNG + PDF) for every image in ``inputs`` (files, folders, globs).

    ``out`` is a folder, or, for a single image, a file name whose suffix is replaced by .png and
    .pdf. Unreadable inputs are reported in ``problems`` and the others still come out.
    """
    files, problems = expand_inputs(inputs)
    mode = getattr(model, "tdviz_preprocess", "resize_crop")
    pre = Preprocess(mode=mode, size=size or 224, resize=max(256, round((size or 224) * 256 / 224)))
    out = Path(out)
    single_file = len(files) == 1 and out.suffix.lower() in (".png", ".pdf")
    device = next(model.parameters()).device
    run = CamRun(problems=problems)
    loaded: list[tuple[Path, np.ndarray]] = []
    for path in files:
        try:
            loaded.append((path, read_image(path)))
        except ImageError as exc:
            run.problems.append(str(exc))
        if len(loaded) == batch_size:
            _process(loaded, model, pre, out, single_file, steps, method, topk, layer, save_maps, classes, title, run,
                     device)
            loaded = []
    if loaded:
        _process(loaded, model, pre, out, single_file, steps, method, topk, layer, save_maps, classes, title, run, device)
    if not files and not run.problems:
        raise TdvizError("No image was given: pass image files, folders or globs.")
    return run


def _process(batch, model, pre, out, single_file, steps, method, topk, layer, save_maps, classes, title, run, device):
    x = torch.stack([pre(img) for _, img in batch]).to(device)
    which = list(classes) if classes else "topk"
    cams = step_cams(model, x, layer=layer, method=method, classes=which, k=topk)
    names = class_names_for(model, cams.logits.shape[-1])
    t_sel = slice(None) if steps else slice(-1, None)
    used = {Path(r.figures[0]).stem.removesuffix("_cam") for r in run.records if r.figures}
    for i, (path, img) in enumerate(batch):
        stem = _safe_stem(path)
        while stem in used:
            stem += "_"
        used.add(stem)
        base = out.with_suffix("") if single_file else out / f"{stem}_cam"
        maps = cams.maps[i, t_sel].cpu().numpy()
        ids = cams.class_ids[i, t_sel].cpu().numpy()
        scores = cams.scores[i, t_sel].cpu().numpy()
        labels = [[names[c] for c in row] for row in ids]
        head = f"{path.name} | {title} | {cams.method} @ {cams.layer}" if title else f"{path.name} | {cams.method} @ {cams.layer}"
        figures = step_figure(model_view(img, pre), maps, labels, scores, head, base)
        maps_file = None
        if save_maps:
            maps_file = str(base.with_suffix(".npz"))
            extra = {} if cams.raw is None else {"raw": cams.raw[i].cpu().numpy()}
            np.savez_compressed(maps_file, maps=cams.maps[i].cpu().numpy().astype(np.float16), **extra,
                                class_ids=cams.class_ids[i].cpu().numpy(), scores=cams.scores[i].cpu().numpy(),
                                logits=cams.logits[i].cpu().numpy(), meta=json.dumps({
                                    "image": str(path), "method": cams.method, "layer": cams.layer, "path": cams.path,
                                    "preprocess": asdict(pre), "class_names": names}))
        run.records.append(CamRecord(str(path), labels, ids.tolist(), np.round(scores, 4).tolist(),
                                     [str(f) for f in figures], maps_file))
