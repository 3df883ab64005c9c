"""`tdviz demo`: the main job end to end on the built-in data, with no download and no GPU.

On the demo validation split (generated once, then cached) and the shipped demo zoo: one
`tdviz wsol` run with both protocols gives the per-step classification and the Table-3 analogue
(the cam protocol's top-1/top-5 cls are the classification table), then one Fig. 4-style figure
(per-step CAMs of ``demo_resnet_tdjoint`` on the first image, with the change between steps and
its searchlight maps) and a small gallery page of the zoo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..classify import StepAccuracy
from ..errors import TdvizError
from ..models.demo_zoo import DEMO_MODELS, load_demo_model
from .build import make_demo_split

FIGURE_MODEL = "demo_resnet_tdjoint"


@dataclass
class DemoReport:
    """What `tdviz demo` measured and where it wrote it."""

    split: Path
    results_file: Path
    accuracy: list[StepAccuracy]
    wsol: dict = field(default_factory=dict)
    wsol_dir: Path | None = None
    figures: list[Path] = field(default_factory=list)
    gallery: Path | None = None


def _accuracy(results: dict) -> list[StepAccuracy]:
    out = []
    for model, steps in results["models"].items():
        numbered = sorted((k for k in steps if k != "mc"), key=int)
        out.append(StepAccuracy(model, [steps[k]["top1_cls"] for k in numbered], [steps[k]["top5_cls"] for k in numbered],
                                steps["mc"]["top1_cls"], int(steps["mc"]["n"])))
    return out


def run_demo(images: int = 500, models: list[str] | None = None, out: str | Path | None = None,
             workers: int = 2, progress: bool = True, device: str = "cpu", seed: int = 0,
             gallery_images: int = 4) -> DemoReport:
    """Make (or reuse) the demo validation split of ``images`` images and run the main job on it
    (see the module docstring); outputs go to ``out`` (default ``<split>/results``)."""
    from ..cam_files import cam_files
    from ..datasets import demo_class_index, load_dataset
    from ..gallery import build_gallery
    from ..wsol.config import WsolConfig
    from ..wsol.evaluate import demo_wsol_dataset, run_wsol

    names = list(models or DEMO_MODELS)
    unknown = [n for n in names if n not in DEMO_MODELS]
    if unknown:
        raise TdvizError(f"{', '.join(unknown)} is not a demo model; choose from {', '.join(DEMO_MODELS)}.")
    if images < 10:
        raise TdvizError(f"--limit {images} is too small: use at least 10 (one image per class).")
    split = make_demo_split(n=images, seed=seed, workers=workers)
    zoo = {n: load_demo_model(n, device) for n in names}
    out_dir = Path(out) if out else split / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    cores = max(1, torch.get_num_threads())
    results = run_wsol(zoo, demo_wsol_dataset(images, workers, seed=seed), out_dir / "wsol",
                       WsolConfig(batch_size=32 if device == "cpu" else 128), workers=workers, progress=progress,
                       box_workers=1 if cores > 1 else 0, overwrite=True)
    accuracy = _accuracy(results)
    results_file = out_dir / "demo_classification.json"
    results_file.write_text(json.dumps({"split": str(split), "images": images,
                                        "results": [a.to_dict() for a in accuracy]}, indent=1))
    data = load_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())
    first = sorted(data.samples, key=lambda s: s.image_id)
    fig_model = zoo.get(FIGURE_MODEL) or load_demo_model(FIGURE_MODEL, device)
    cam = cam_files([str(first[0].path)], fig_model, out_dir / "fig4" / "fig4.png", steps=True, diff=True,
                    searchlight=True, title=FIGURE_MODEL)
    with torch.enable_grad():
        page = build_gallery(zoo, [(s.path, s.label, s.boxes) for s in first[:gallery_images]], out_dir / "gallery",
                             title=f"demo split (seed {seed})", progress=progress)
    figures = [Path(f) for r in cam.records for f in r.figures]
    return DemoReport(split, results_file, accuracy, results, out_dir / "wsol", figures, page.index_html)
