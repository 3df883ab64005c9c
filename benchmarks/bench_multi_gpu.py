"""Scaling of one sharded `tdviz wsol` run over the GPUs of one host, against one GPU, same images.

    python benchmarks/bench_multi_gpu.py --gpus 1,2,4 --images 8192 --out runs/multi_gpu
    python benchmarks/bench_multi_gpu.py --gpus 1,2 --images 64 --device cpu --out /tmp/mg   # the path, on CPUs

For each N in ``--gpus`` the same photo-like JPEGs (bench_wsol's) go through
``torchrun --standalone --nproc-per-node N`` of this script's worker: each process takes its
LOCAL_RANK's GPU and shard RANK/WORLD_SIZE of the images, with decode and box workers sized to its
share of the host's cores (as `tdviz wsol` under torchrun), TD-ResNet50 T=2, both protocols. The
wall time runs from torchrun's start to the merged ``results.json``. Reported: images/s, images/s
per GPU, scaling efficiency (per-GPU rate against one GPU's; target >= 0.9) and whether the
merged results equal the one-GPU run's. With ``--device cpu`` every process runs on the CPU: a
check that the path works and merges exactly, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """One torchrun process: its shard of the images, on its own device."""
    import torch

    import tdviz
    from tdviz.datasets import load_dataset
    from tdviz.wsol.config import WsolConfig, split_cores
    from tdviz.wsol.evaluate import run_wsol

    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local}" if args.device == "cuda" else "cpu"
    torch.manual_seed(0)  # every process builds the same random weights
    model = tdviz.create_model(args.model).to(device).eval()
    index = json.loads((Path(args.data) / "index.json").read_text())
    data = load_dataset(Path(args.data) / "xml", images_root=Path(args.data) / "images", class_index=index)
    workers, box_workers = split_cores()  # this process's share of the host's cores, as `tdviz wsol`
    run_wsol({args.model: model}, data, args.out, WsolConfig(batch_size=args.batch, topk=5), workers=workers,
             box_workers=box_workers, progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", default="1,2", help="process counts to compare, e.g. 1,2,4 (1 is always run first)")
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--kind", default="photo", choices=("photo", "noise"))
    p.add_argument("--model", default="resnet50_tdjoint")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_wsol import make_images

    data = args.out / "data"
    if not (data / "index.json").is_file():
        index = make_images(data, args.images, args.kind, procs=os.cpu_count() or 1)
        (data / "index.json").write_text(json.dumps(index))
    counts = sorted({1, *(int(n) for n in args.gpus.split(","))})
    runs, first = [], None
    for n in counts:
        out = args.out / f"run_{n}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", __file__,
               "--worker", "--data", str(data), "--out", str(out), "--model", args.model, "--batch", str(args.batch),
               "--device", args.device]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   NCCL_NVLS_ENABLE="0")  # NVLink multicast stays off
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        wall = time.perf_counter() - start
        results = json.loads((out / "results.json").read_text())
        first = first or results
        rate = results["images"] / wall
        runs.append({"processes": n, "images": results["images"], "wall_s": round(wall, 2),
                     "images_per_s": round(rate, 1), "images_per_s_per_gpu": round(rate / n, 1),
                     "equal_to_one_gpu": results["models"] == first["models"]})
    one = runs[0]["images_per_s"]
    for r in runs:
        r["scaling_efficiency"] = round(r["images_per_s_per_gpu"] / one, 3)
    report = {"device": args.device, "model": args.model, "images": args.images, "batch": args.batch,
              "kind": args.kind, "cores": os.cpu_count(), "runs": runs, "target_efficiency": 0.9}
    if args.device == "cuda":
        import torch

        report["gpu"] = torch.cuda.get_device_name(0)
    text = json.dumps(report, indent=2)
    print(text)
    (args.out / "bench_multi_gpu.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
