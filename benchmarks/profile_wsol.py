"""Where `tdviz wsol`'s time goes, below bench_wsol's stage split.

    python -m benchmarks.profile_wsol --device cuda --images 512 --batch 256

* the machine: CPUs the process may use (affinity and the cgroup quota, which ``os.cpu_count()``
  does not show);
* models and maps (``WsolRun._model_part`` on one decoded batch) under ``torch.profiler``: the
  operators that take the most device (or CPU) time;
* the per-image work (``extract_chunk``) in one process: ms per image and the compiled trees'
  share of it, then the box pool's rate at several worker counts (how far it scales here).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_quota() -> dict:
    """CPUs this process may run on: affinity, and the cgroup v2/v1 quota when there is one."""
    out = {"cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))}
    for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        try:
            out[path] = Path(path).read_text().strip()
        except OSError:
            pass
    return out


def main() -> None:
    import torch

    import tdviz
    from benchmarks.bench_wsol import make_images
    from tdviz.datasets import load_dataset
    from tdviz.host_memory import keep_freed_memory
    from tdviz.wsol import native
    from tdviz.wsol.config import WsolConfig
    from tdviz.wsol.evidence import ImageEntry
    from tdviz.wsol.extract import Chunk, ChunkConfig, extract_chunk
    from tdviz.wsol.metrics import make_metrics
    from tdviz.wsol.pipeline import WsolRun, box_pool
    from tdviz.wsol.scoremaps import cam_threshold_grid

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50_tdjoint")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--kind", choices=["photo", "noise"], default="photo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--pool-sizes", default="1,4,8,12,16")
    args = p.parse_args()
    print("keep_freed_memory:", keep_freed_memory(), "(as every tdviz command; TDVIZ_KEEP_FREED_MEMORY=0: off)")
    print("machine:", cpu_quota())
    torch.manual_seed(0)
    model = tdviz.create_model(args.model).to(args.device).eval()
    cfg = WsolConfig(batch_size=args.batch, decode="auto", precision=args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = make_images(root, args.images, args.kind, procs=os.cpu_count() or 1)
        data = load_dataset(root / "xml", images_root=root / "images", class_index=index)
        run = WsolRun({"m": model}, data, root / "out", cfg)
        preprocs = run._preprocs()
        batch = max(run._batches(run.samples, run.plan, preprocs, 4), key=lambda b: len(b.good))  # past the ramp
        good = [data.samples[i] for i, _ in batch.good]
        labels = torch.tensor([s.label for s in good])
        for _ in range(2):
            part = run._model_part("m", model, batch.stacked, labels, preprocs)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if args.device.startswith("cuda"):
            activities.append(torch.profiler.ProfilerActivity.CUDA)
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.profiler.profile(activities=activities) as prof:
            part = run._model_part("m", model, batch.stacked, labels, preprocs)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
        print(f"models and maps, one batch of {len(good)} (profiled): {time.perf_counter() - start:.3f} s")
        key = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=48))

        images = [ImageEntry.of(s, w, h) for s, (_, (w, h, _)) in zip(good, batch.good)]
        names = tuple(make_metrics(cfg.protocols, cfg.metric_options(), False))
        ccfg = ChunkConfig(cfg.metric_options(), names, cam_threshold_grid())
        one = Chunk(ccfg, images, {"m": part})
        extract_chunk(one)
        start = time.perf_counter()
        extract_chunk(one)
        per_image = (time.perf_counter() - start) / len(images) * 1e3
        maps = part.wsol_raw.shape[1]
        from tdviz.wsol import scoremaps as wboxes

        sm = np.stack([wboxes.wsol_scoremap(m) for m in part.wsol_raw.reshape(-1, *part.wsol_raw.shape[2:])])
        q = np.stack([wboxes.wsol_quantize(m) for m in sm])
        cuts = (cam_threshold_grid()[None] * q.reshape(len(q), -1).max(1)[:, None].astype(float)).astype(np.int64)
        gts = [np.array([[10.0, 10.0, 150.0, 150.0]])] * len(q)
        native.best_ious(q, cuts, gts)
        start = time.perf_counter()
        native.best_ious(q, cuts, gts)
        tree_ms = (time.perf_counter() - start) / len(q) * 1e3
        print(f"extract_chunk, one process: {per_image:.2f} ms/image; compiled trees {tree_ms:.2f} ms/map x {maps} "
              f"maps/image = {tree_ms * maps:.2f} ms ({native.available()})")
        per = 8
        chunks = [Chunk(ccfg, images[s:s + per], {"m": part.rows(slice(s, s + per))}) for s in range(0, len(images), per)]
        for workers in (int(v) for v in args.pool_sizes.split(",")):
            pool = box_pool(workers)
            list(pool.map(extract_chunk, chunks[:workers]))
            work = chunks * max(1, (4 * workers * per) // len(images))
            start = time.perf_counter()
            list(pool.map(extract_chunk, work))
            rate = sum(len(c.images) for c in work) / (time.perf_counter() - start)
            pool.shutdown()
            print(f"box pool, {workers:2d} workers: {rate:7.0f} images/s = {workers / rate * 1e3:.1f} ms/image/worker")


if __name__ == "__main__":
    main()
