"""`tdviz cam` as a library call: image files in, per-step CAM figures, maps and records out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cam import searchlight_maps, step_cams
from .classnames import class_names_for
from .errors import TdvizError
from .figures import StepRow, save_figure, searchlight_figure, step_grid_figure
from .images import ImageError, Preprocess, expand_inputs, read_image
from .outputs import safe_name, unique_names, with_ext
from .viz import model_view


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
              batch_size: int = 8, classes: Sequence[int] | None = None, title: str = "", diff: bool = False,
              searchlight: bool = False, blocks: Sequence[str] | None = None, colorbar: bool = True) -> CamRun:
    """Per-step CAM figures (PNG + PDF) for every image in ``inputs`` (files, folders, globs).

    ``out`` is a folder, or, for a single image, a ``.png``/``.pdf`` file name (both files are
    written next to each other). Output names keep the whole input name (``cat.1.jpg`` ->
    ``cat.1_cam.png``); inputs with equal names get ``-2``, ``-3``... Unreadable inputs are
    reported in ``problems`` and the others still come out. ``diff`` adds the change between
    steps beside the maps; ``searchlight`` writes a second figure, ``<name>_searchlight``, with the
    searchlight maps A_t of the TD ``blocks`` (default: every TD block of the last stage).
    """
    files, problems = expand_inputs(inputs)
    if not files and not problems:
        raise TdvizError("No image was given: pass image files, folders or globs.")
    pre = Preprocess.for_model(model, size=size)
    if searchlight and getattr(model, "num_steps", 1) < 2:
        name = getattr(model, "tdviz_name", type(model).__name__)
        raise TdvizError(f"{name} has one computation step, so no searchlight: --searchlight needs a TD model "
                         "(e.g. demo_resnet_tdjoint).")
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
                     device, (diff, searchlight, blocks, colorbar))
            loaded = []
    if loaded:
        _process(loaded, model, pre, out, single_file, steps, method, topk, layer, save_maps, classes, title, run, device,
                 (diff, searchlight, blocks, colorbar))
    return run


def _process(batch, model, pre, out, single_file, steps, method, topk, layer, save_maps, classes, title, run, device,
             looks):
    diff, searchlight, blocks, colorbar = looks
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
        view = model_view(img, pre)
        final = len(shown) == 1 and total > 1
        rows = [StepRow(f"top-{k + 1}" if not classes else labels[0][k], view, maps[:, k],
                        [f"step {s}{' (final)' if final else ''}: {labels[j][k]}\n{100 * float(scores[j, k]):.1f}%"
                         for j, s in enumerate(shown)]) for k in range(maps.shape[1])]
        fig = step_grid_figure(rows, head, step_numbers=shown, diff=diff, colorbar=colorbar)
        figures = save_figure(fig, base)
        if searchlight:
            figures += _searchlight(model, x[i:i + 1], blocks, view, cams.maps[i, :, 0].cpu().numpy(),
                                    [f"CAM step {t + 1}: {names[c]}" for t, c in enumerate(cams.class_ids[i, :, 0].tolist())],
                                    head, Path(f"{base}_searchlight"))
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


def _searchlight(model, x, blocks, view, cams, cam_titles, head, stem) -> list[Path]:
    """The searchlight figure of one image (see :func:`cam_files`)."""
    with torch.no_grad():
        found = searchlight_maps(model, x, size=tuple(x.shape[-2:]))
    if not found:
        name = getattr(model, "tdviz_name", type(model).__name__)
        raise TdvizError(f"{name} has no TD block with a spatial searchlight: --searchlight needs a TD model "
                         "(e.g. demo_resnet_tdjoint).")
    if blocks:
        unknown = [b for b in blocks if b not in found]
        if unknown:
            raise TdvizError(f"--block {unknown[0]!r} is not a TD block of this model; its TD blocks are "
                             f"{', '.join(found)}.")
        chosen = list(blocks)
    else:
        stage = max(found, key=lambda n: n.split(".")[0]).split(".")[0]
        chosen = [n for n in found if n.split(".")[0] == stage]
    maps = {n: found[n][0].cpu().numpy() for n in chosen}
    return save_figure(searchlight_figure(view, maps, cams, cam_titles, head), stem)
