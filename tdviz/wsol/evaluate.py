"""`tdviz wsol`: localization metrics for several models at every computation step, resumable.

Per image and model: one ``step_cams`` call gives the maps of the top-k classes of every step plus
the ground-truth class's map. Two protocols:

* ``cam`` (the paper's Table 3, Grad-CAM's rule): boxes from each top-k class's map at
  ``ratio``·max (largest component), mapped from the model input (the model's own preprocessing,
  e.g. Resize 256 + CenterCrop 224) back to original pixels; top-1 / top-5 / GT-known loc at
  IoU >= 0.5 against any GT box, in original pixels.
* ``wsol`` (clovaai/wsolevaluation): the image is resized to 224² (their preprocessing), the GT
  class's raw map goes through their score-map rules; MaxBoxAccV2 (δ 30/50/70, all contours),
  MaxBoxAcc (δ 50, largest contour) and, where masks exist, PxAP.

Every metric is reported per step and for the paper's most-confident-step rule ("mc"). Images are
read as stored (no EXIF rotation: annotations are in the stored frame, as wsolevaluation reads
them). Records are appended per batch to ``records.jsonl`` and the meters, with the byte length
of the records they count, saved atomically to ``state.json`` together with the run's identity
(:mod:`tdviz.wsol.runstate`), so ``resume=True`` continues an interrupted run of the same models,
data and options and ends with the same ``results.json``. The stages: :mod:`tdviz.wsol.pipeline`;
several GPUs or machines: :mod:`tdviz.wsol.shards`; the files ``save_maps`` writes:
:mod:`tdviz.wsol.saved_maps`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..datasets import Dataset
from ..errors import TdvizError
from .config import PROTOCOLS, WsolConfig
from .pipeline import WsolRun, box_pool
from .runstate import run_identity

__all__ = ["PROTOCOLS", "WsolConfig", "WsolRun", "box_pool", "demo_wsol_dataset", "run_wsol"]


def demo_wsol_dataset(images: int = 1000, workers: int = 2, seed: int = 0, version: int | None = None) -> Dataset:
    """The demo validation split (generator ``version``, default the shipped zoo's) as a WSOL dataset:
    boxes from its ILSVRC XML, masks from its wsolevaluation mask metadata (so PxAP is measured too)."""
    from ..datasets import demo_class_index, load_dataset, read_wsolevaluation
    from ..demo import make_demo_split
    from ..demo.generators import DEFAULT_VERSION

    split = make_demo_split(n=images, seed=seed, workers=workers, version=version or DEFAULT_VERSION)
    data = load_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())
    masked, problems = read_wsolevaluation(split / "wsol" / "mask", data_root=split)
    by_id = {s.image_id: s for s in masked}
    for s in data.samples:
        m = by_id.get(s.image_id)
        if m is not None:
            s.mask_paths, s.ignore_path = m.mask_paths, m.ignore_path
    data.problems += problems
    return data


def run_wsol(models: dict[str, torch.nn.Module], dataset: Dataset, out_dir: str | Path,
             config: WsolConfig | None = None, resume: bool = False, save_maps: str | Path | None = None,
             workers: int = 2, progress: bool = True, box_workers: int = 0,
             shard: tuple[int, int] | None = None, overwrite: bool = False) -> dict:
    """Evaluate ``models`` on ``dataset`` and write results.json, results.csv and records.jsonl.

    ``resume=True`` continues the run in ``out_dir`` (refused when its models, weights, data or
    options differ; ``config.limit`` may grow); ``overwrite=True`` replaces a run there; neither:
    a folder holding a run is refused. ``shard=(i, n)`` (or torchrun's RANK / WORLD_SIZE when not
    given) evaluates every n-th batch from the i-th into ``out_dir/shard-i-of-n`` (each shard
    resumable on its own); the shard that finishes last merges all of them into ``out_dir`` (see
    :mod:`tdviz.wsol.shards`).
    """
    from .shards import merge_shards, shard_dir, shard_from_env

    if not dataset.samples:
        first = dataset.problems[0] if dataset.problems else "no record"
        raise TdvizError(f"No usable image in {dataset.source} ({first}).")
    config = config or WsolConfig()
    identity = run_identity(models, dataset, config)
    shard = shard or shard_from_env()
    if shard is None or shard[1] == 1:
        run = WsolRun(models, dataset, out_dir, config, resume, save_maps, overwrite, identity)
        return run.run(workers, progress, box_workers=box_workers)
    index, count = shard
    run = WsolRun(models, dataset, shard_dir(out_dir, index, count), config, resume, save_maps, overwrite, identity,
                  shard=(index, count))
    own = run.run(workers, progress, box_workers=box_workers)
    merged = merge_shards(out_dir, count)
    return merged if merged is not None else dict(own, shard=[index, count], merged=False)
