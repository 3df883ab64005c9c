"""`tdviz cam` as a library call: image files in, per-step CAM figures, maps and records out."""

from __future__ import annotations

import json
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
from .outputs import safe_name, unique_names, with_ext
from .viz import model_view, step_figure


@dataclass
class CamRecord:
    """One image's result: the computation steps shown (from 1), predicted classes and scores per
    shown step, and the files written."""

    image: str
    steps: list[int]
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


def cam_files(inputs: Sequence[str], model: nn.Module, out: str | Path, steps: bool = True, method: str = "gradcam",
              topk: int = 1, layer: str | None = None, size: int | None = None, save_maps: bool = False,
              batch_size: int = 8, classes: Sequence[int] | None = None, title: str = "") -> CamRun:
    """Per-step CAM figures (PNG + PDF) for every image in ``inputs`` (files, folders, globs).

    ``out`` is a folder, or, for a single image, a ``.png``/``.pdf`` file name (both files are
    written next to each other). Output names keep the whole input name (``cat.1.jpg`` ->
    ``cat.1_cam.png``); inputs with equal names get ``-2``, ``-3``... Unreadable inputs are
    reported in ``problems`` and the others still come out.
    """
    files, problems = expand_inputs(inputs)
    if not files and not problems:
        raise TdvizError("No image was given: pass image files, folders or globs.")
    pre = Preprocess.for_model(model, size=size)
    out = Path(out)
    single_file = out.suffix.lower() in (".png", ".pdf") and not out.is_dir()
    if single_file and len(files) > 1:
        raise TdvizError(f"--out {str(out)!r} names one file but {len(files)} images were given: pass a folder.")
    if not single_file and out.exists() and not out.is_dir():
        raise TdvizError(f"--out {str(out)!r} is an existing file: pass a folder, or a .png/.pdf name for one image.")
    stems = unique_names(safe_name(p.stem) for p in files)
    device = next(model.parameters()).device
    run = CamRun(problems=problems)
    loaded: list[tuple[Path, str, np.ndarray]] = []
    for path, stem in zip(files, stems):
        try:
            loaded.append((path, stem, read_image(path)))
        except ImageError as exc:
            run.problems.append(str(exc))
        if len(loaded) == batch_size:
            _process(loaded, model, pre, out, single_file, steps, method, topk, layer, save_maps, classes, title, run,
                     device)
            loaded = []
    if loaded:
        _process(loaded, model, pre, out, single_file, steps, method, topk, layer, save_maps, classes, title, run, device)
    return run


def _process(batch, model, pre, out, single_file, steps, method, topk, layer, save_maps, classes, title, run, device):
    x = torch.stack([pre(img) for _, _, img in batch]).to(device)
    which = list(classes) if classes else "topk"
    cams = step_cams(model, x, layer=layer, method=method, classes=which, k=topk)
    names = class_names_for(model, cams.logits.shape[-1])
    total = cams.num_steps
    shown = list(range(1, total + 1)) if steps else [total]
    t_sel = slice(None) if steps else slice(-1, None)
    for i, (path, stem, img) in enumerate(batch):
        base = out.parent / out.stem if single_file else out / f"{stem}_cam"
        maps = cams.maps[i, t_sel].cpu().numpy()
        ids = cams.class_ids[i, t_sel].cpu().numpy()
        scores = cams.scores[i, t_sel].cpu().numpy()
        labels = [[names[c] for c in row] for row in ids]
        head = f"{path.name} | {title} | {cams.method} @ {cams.layer}" if title else f"{path.name} | {cams.method} @ {cams.layer}"
        figures = step_figure(model_view(img, pre), maps, labels, scores, head, base, step_numbers=shown)
        maps_file = None
        if save_maps:
            maps_file = str(with_ext(base, "npz"))
            extra = {} if cams.raw is None else {"raw": cams.raw[i].cpu().numpy()}
            np.savez_compressed(maps_file, maps=cams.maps[i].cpu().numpy().astype(np.float32), **extra,
                                class_ids=cams.class_ids[i].cpu().numpy(), scores=cams.scores[i].cpu().numpy(),
                                logits=cams.logits[i].cpu().numpy(), meta=json.dumps({
                                    "image": str(path), "method": cams.method, "layer": cams.layer, "path": cams.path,
                                    "preprocess": asdict(pre), "class_names": names}))
        run.records.append(CamRecord(str(path), shown, labels, ids.tolist(), np.round(scores, 4).tolist(),
                                     [str(f) for f in figures], maps_file))
