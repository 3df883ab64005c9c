"""`tdviz demo`: the built-in benchmark, end to end, with no download and no GPU."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..classify import ImageFolderDataset, StepAccuracy, evaluate_classification
from ..errors import TdvizError
from ..images import Preprocess
from ..models.demo_zoo import DEMO_MODELS, load_demo_model
from .build import make_demo_split


@dataclass
class DemoReport:
    """What `tdviz demo` measured and where it wrote it."""

    split: Path
    results_file: Path
    accuracy: list[StepAccuracy]


def run_demo(images: int = 2000, models: list[str] | None = None, out: str | Path | None = None,
             workers: int = 2, progress: bool = True) -> DemoReport:
    """Make (or reuse) the demo validation split and score every shipped demo model per step."""
    names = list(models or DEMO_MODELS)
    unknown = [n for n in names if n not in DEMO_MODELS]
    if unknown:
        raise TdvizError(f"{', '.join(unknown)} is not a demo model; choose from {', '.join(DEMO_MODELS)}.")
    if images < 10:
        raise TdvizError(f"--images {images} is too small: use at least 10 (one image per class).")
    split = make_demo_split(n=images, workers=workers)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    zoo = {n: load_demo_model(n) for n in names}
    dataset = ImageFolderDataset(split / "images", Preprocess.for_model(next(iter(zoo.values()))))
    accuracy = evaluate_classification(zoo, dataset, workers=workers, progress=progress)
    out_dir = Path(out) if out else split / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    results_file = out_dir / "demo_classification.json"
    results_file.write_text(json.dumps({"split": str(split), "images": images,
                                        "results": [a.to_dict() for a in accuracy]}, indent=1))
    return DemoReport(split, results_file, accuracy)
