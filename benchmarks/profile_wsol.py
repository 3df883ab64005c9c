"""Where `tdviz wsol` spends its time: the ceiling of each stage alone, then a profiled full run.

    python -m benchmarks.profile_wsol --device cuda --images 2048 --workers 6 --box-workers 8

Stages, each measured alone on bench_wsol's images: decoding + preprocessing in ``--workers``
loader processes; the models on the device with the Grad-CAM rule's boxes found there on a GPU
(``WsolRun._model_part`` on a decoded batch); the per-image rest (``extract_chunk``: wsolevaluation
boxes, IoUs, records) in one process, one thread. The full run is then
profiled (cProfile of the main process): time in queue waits means decoding is the bottleneck,
time waiting on pool results means box extraction is, anything else is the main process itself.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

import tdviz
from benchmarks.bench_wsol import make_images
from tdviz.images import Preprocess
from tdviz.wsol.annotations import load_wsol_dataset
from tdviz.wsol.evaluate import WsolConfig, WsolRun, _collate, _Images, run_wsol


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def decode_rate(samples, workers: int, batch: int) -> float:
    preprocs = {"cam": Preprocess(), "wsol": Preprocess(mode="resize")}
    loader = DataLoader(_Images(samples, preprocs), batch_size=batch, num_workers=workers, collate_fn=_collate)
    start = time.perf_counter()
    n = sum(len(good) for good, _, _ in loader)
    return n / (time.perf_counter() - start)


def model_and_box_stages(model, dataset, out: Path, device: str, batch: int, reps: int = 5) -> tuple[float, float]:
    """(models + device-side boxes, img/s) and (per-image work in one process, ms/img) on one batch."""
    cv2.setNumThreads(1)
    run = WsolRun({"m": model}, dataset, out, WsolConfig(batch_size=batch, limit=batch))
    run.box_workers = 0
    preprocs = {"cam:m": Preprocess(), "wsol:m": Preprocess(mode="resize")}
    loader = DataLoader(_Images(run.samples, preprocs), batch_size=batch, collate_fn=_collate)
    good, _, stacked = next(iter(loader))
    labels = torch.tensor([run.samples[i].label for i, _ in good])
    run._model_part("m", model, stacked, labels, preprocs)
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        run._model_part("m", model, stacked, labels, preprocs)
    _sync(device)
    model_rate = reps * len(good) / (time.perf_counter() - start)
    start = time.perf_counter()
    run._launch(run.samples, (good, [], stacked), preprocs)  # models + every image's work, inline
    whole = time.perf_counter() - start
    return model_rate, (whole - len(good) / model_rate) / len(good) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50_tdjoint")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--box-workers", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--configs", default="", help="e.g. 6:8,5:10: only full runs, one per workers:box-workers")
    args = p.parse_args()
    model = tdviz.create_model(args.model).to(args.device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = make_images(root, args.images)
        data = load_wsol_dataset(root / "xml", images_root=root / "images", class_index=index)
        if args.configs:  # full runs only, one per decode:box worker split
            for cfg in args.configs.split(","):
                w, bw = (int(v) for v in cfg.split(":"))
                start = time.perf_counter()
                run = WsolRun({args.model: model}, data, root / f"out_{w}_{bw}", WsolConfig(batch_size=args.batch))
                run.run(w, progress=False, box_workers=bw)
                wall = time.perf_counter() - start
                times = [t for t, _ in run.timeline]
                counts = np.cumsum([n for _, n in run.timeline])
                q = len(times) // 4  # steady state: from the first quarter's last batch to the end
                steady = (counts[-1] - counts[q]) / (times[-1] - times[q])
                print(f"workers {w}, box workers {bw}: {args.images / wall:.0f} img/s ({wall:.1f} s); first batch "
                      f"after {times[0] - start:.1f} s; steady {steady:.0f} img/s")
            return
        print(f"decode + preprocess, {args.workers} workers: {decode_rate(data.samples, args.workers, args.batch):.0f} img/s")
        rate, per_image = model_and_box_stages(model, data, root / "stage", args.device, args.batch)
        print(f"models and device-side boxes on {args.device}, batch {args.batch}: {rate:.0f} img/s")
        print(f"per-image work (extract_chunk), one process: {per_image:.2f} ms/img")
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        run_wsol({args.model: model}, data, root / "out", WsolConfig(batch_size=args.batch), workers=args.workers,
                 progress=False, box_workers=args.box_workers)
        profile.disable()
        _sync(args.device)
        wall = time.perf_counter() - start
    print(f"full run: {args.images} images in {wall:.1f} s = {args.images / wall:.1f} img/s")
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(22)


if __name__ == "__main__":
    main()
