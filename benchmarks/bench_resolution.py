"""What a `tdviz resolution` sweep costs against the models' own time at those sizes.

    python -m benchmarks.bench_resolution --device cuda --images 2048 --batch 128
    python -m benchmarks.bench_resolution --images 24 --batch 8            # the 2-core CPU

On bench_wsol's photo-like 500x375 JPEGs (classification only, as `tdviz resolution --data`
without boxes): the whole sweep (decoding each image once, every size made from it on the device,
the models, counting) against the models alone on the same images already preprocessed to every
size and already on the device (``run_steps``, same batches; median of ``--repeats``): the models'
own time. The target is a ratio <= 1.3. Measured in the same run and reported beside it: decoding
and making every size alone (the sweep's own work), and the models alone with the host-to-device
copy of the preprocessed inputs included (what the sweep saves by decoding on the GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    import tdviz
    from benchmarks.bench_wsol import end_to_end, make_images
    from tdviz.datasets import load_dataset
    from tdviz.images import Preprocess, read_image
    from tdviz.resolution import parse_sizes, run_resolution, size_labels
    from tdviz.wsol.config import WsolConfig
    from tdviz.wsol.loader import ramp_batches

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50_tdjoint")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--sizes", default="168:448:28")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--box-workers", type=int, default=None,
                   help="per-image work processes (default: as tdviz resolution, the cores left after --workers)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    sizes = parse_sizes(args.sizes)
    from tdviz.wsol.config import split_cores

    _, args.box_workers = split_cores(args.workers, args.box_workers)  # what the command does on this host
    torch.manual_seed(0)
    model = tdviz.create_model(args.model).to(args.device).eval()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = make_images(root, args.images, "photo", procs=os.cpu_count() or 1)
        data = load_dataset(root / "xml", images_root=root / "images", class_index=index)
        data = replace(data, samples=[replace(s, boxes=np.zeros((0, 4)), box_labels=np.zeros(0, np.int64))
                                      for s in data.samples])
        decoded = [read_image(s.path, exif=False) for s in data.samples]
        alone, with_copy = {}, {}
        for size in sizes:
            pre = Preprocess.for_model(model, size=size)
            x = torch.stack([pre(img) for img in decoded])
            on_device = x.to(args.device)
            variants = ((on_device, alone), (x, with_copy)) if args.device != "cpu" else ((x, alone),)
            for inputs, into in variants:
                times = []
                for _ in range(args.repeats):
                    sync()
                    start = time.perf_counter()
                    with torch.no_grad():
                        for i in range(0, len(inputs), args.batch):
                            tdviz.run_steps(model, inputs[i:i + args.batch].to(args.device))
                    sync()
                    times.append(time.perf_counter() - start)
                into[size] = statistics.median(times)
            del on_device
        decode_s = _decode_alone(model, data.samples, sizes, args, sync)
        cfg = WsolConfig(batch_size=args.batch, topk=5)
        walls = []
        for rep in range(args.repeats):
            start = time.perf_counter()
            run_resolution({args.model: model}, data, root / f"run{rep}", sizes, cfg, workers=args.workers,
                           box_workers=args.box_workers, progress=False, plot=False)
            sync()
            walls.append(time.perf_counter() - start)
        # the same sweep once more through its WsolRun, whose commit timeline splits the wall into
        # a fixed cost (start-up, the first batches) and a steady per-image rate (with enough
        # batches for a steady part: 8 or more)
        nets, inputs, _ = size_labels({args.model: model}, sizes, None, None)
        batches = len(ramp_batches(args.images, args.batch))
        split = None if batches < 8 else end_to_end(nets, data, root / "timed", WsolConfig(batch_size=args.batch, topk=5, protocols=("cam",),
                                                                  inputs=inputs), args)
    models_s = sum(alone.values())
    sweep = statistics.median(walls)
    result = {"model": args.model, "images": args.images, "sizes": list(sizes), "batch": args.batch,
              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else
              (platform.processor() or "cpu"), "cores": os.cpu_count(), "workers": args.workers,
              "box_workers": args.box_workers,
              "models_alone_s_per_size": {str(k): round(v, 3) for k, v in alone.items()},
              "models_alone_s": round(models_s, 2),
              "models_alone_with_host_copy_s": round(sum(with_copy.values()), 2) if with_copy else None,
              "decode_and_sizes_alone_s": round(decode_s, 2), "sweep_s_median": round(sweep, 2),
              "sweep_s_runs": [round(w, 2) for w in walls], "ratio": round(sweep / models_s, 3), "limit": 1.3,
              "models_alone_images_per_s": round(args.images / models_s, 2)}
    if split is not None:
        result.update(sweep_steady_images_per_s=split["steady_images_per_s"], sweep_fixed_s=split["fixed_s"],
                      ratio_steady=round(args.images / models_s / split["steady_images_per_s"], 3))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def _decode_alone(model, samples, sizes, args, sync) -> float:
    """Median seconds to decode every image once and make every size from it, as the sweep does
    (on the GPU with a CUDA device, else in ``--workers`` loader processes), without the models."""
    import torch

    from tdviz.images import Preprocess
    from tdviz.wsol.decode import gpu_batches
    from tdviz.wsol.loader import cpu_batches

    preprocs = {f"cam:{size}": Preprocess.for_model(model, size=size) for size in sizes}
    times = []
    for _ in range(args.repeats):
        sync()
        start = time.perf_counter()
        if args.device.startswith("cuda"):
            batches = gpu_batches(samples, preprocs, args.batch, torch.device(args.device), threads=max(args.workers, 2))
        else:
            batches = cpu_batches(samples, preprocs, args.batch, args.workers)
        for batch in batches:
            for v in batch.stacked.values():
                v.to(args.device).float().sum()  # touch every size, as the models' input would
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
