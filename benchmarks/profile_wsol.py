"""Where `tdviz wsol` spends its time: cProfile of the main process on bench_wsol's images.

    python benchmarks/profile_wsol.py --device cuda --images 1024 --workers 5 --box-workers 10

Time in DataLoader queue waits means decoding is the bottleneck, time waiting on pool results
means box extraction is, anything else is the main process itself.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch

import tdviz
from benchmarks.bench_wsol import make_images
from tdviz.wsol.annotations import load_wsol_dataset
from tdviz.wsol.evaluate import WsolConfig, run_wsol


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50_tdjoint")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--box-workers", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    model = tdviz.create_model(args.model).to(args.device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = make_images(root, args.images)
        data = load_wsol_dataset(root / "xml", images_root=root / "images", class_index=index)
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        run_wsol({args.model: model}, data, root / "out", WsolConfig(batch_size=args.batch), workers=args.workers,
                 progress=False, box_workers=args.box_workers)
        profile.disable()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    print(f"{args.images} images in {wall:.1f} s = {args.images / wall:.1f} img/s")
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(22)


if __name__ == "__main__":
    main()
