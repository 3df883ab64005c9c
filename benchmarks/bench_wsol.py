"""End-to-end WSOL throughput of `tdviz wsol`, each of its stages alone, and a baseline built as
published code does it, all in one run.

    python benchmarks/bench_wsol.py --device cuda --images 8192 --baseline-images 512 --batch 256 \\
        --box-workers 12 --workers 8 [--kind photo|noise] [--precision bf16] [--decode gpu] [--fifty-k]

Images: 500x375 JPEGs made here (``--kind photo``: 1/f "natural" noise with soft shapes, the
statistics of photographs, about 40 KB at quality 90; ``--kind noise``: uniform noise, about
170 KB, the worst case for a decoder), one box each, as an ILSVRC-style XML folder. Workload:
TD-ResNet50 (T=2, random weights), the top-5 maps and the GT map at every step, both protocols
(Grad-CAM-rule boxes for top-1/top-5/GT-known loc; wsolevaluation's 100 thresholds for
MaxBoxAccV2, MaxBoxAcc).

Reported, measured in the same run: tdviz end to end (wall, steady images/s after the first
quarter of the batches, fixed cost = wall - images / steady, the time for 50 000 images as fixed +
50 000 / steady, or measured with ``--fifty-k``); each stage alone at the run's settings (decoding,
models + maps + the Grad-CAM rule's boxes, the per-image boxes and rows in the pool); and the
baseline (per step and class a ``pytorch_grad_cam.GradCAM`` call, per image and threshold
``cv2.findContours`` as wsolevaluation's loop, one process) on the first ``--baseline-images``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# torch and tdviz's model side are imported inside the functions: tdviz's box workers are spawned
# processes that re-import this main module, and should start as fast as under `tdviz wsol`


def _photo(i: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(i)
    if kind == "noise":
        return (rng.random((375, 500, 3)) * 255).astype(np.uint8)
    fy, fx = np.meshgrid(np.fft.fftfreq(375), np.fft.rfftfreq(500), indexing="ij")
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / 500) ** rng.uniform(1.8, 2.2)  # natural images: 1/f^2 power
    img = np.stack([np.fft.irfft2(amp * np.exp(2j * np.pi * rng.random(amp.shape)), s=(375, 500)) for _ in range(3)], -1)
    img = (img - img.mean()) / (img.std() + 1e-9) * 40 + rng.uniform(80, 170, 3)
    yy, xx = np.mgrid[0:375, 0:500]
    for _ in range(int(rng.integers(2, 6))):  # soft objects
        cy, cx, r = rng.uniform(0, 375), rng.uniform(0, 500), rng.uniform(20, 120)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - blob) + blob * rng.uniform(0, 255, 3)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def _write(args) -> None:
    from PIL import Image

    root, i, kind, num_classes = args
    Image.fromarray(_photo(i, kind)).save(root / "images" / f"img_{i:05d}.JPEG", quality=90)
    rng = np.random.default_rng(10_000 + i)
    x0, y0 = rng.integers(0, 250), rng.integers(0, 180)
    ann = ET.Element("annotation")
    ET.SubElement(ann, "filename").text = f"img_{i:05d}"
    size = ET.SubElement(ann, "size")
    for tag, v in (("width", 500), ("height", 375), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    obj = ET.SubElement(ann, "object")
    ET.SubElement(obj, "name").text = f"n{int(rng.integers(0, num_classes)):08d}"
    box = ET.SubElement(obj, "bndbox")
    for tag, v in (("xmin", x0), ("ymin", y0), ("xmax", x0 + 200), ("ymax", y0 + 150)):
        ET.SubElement(box, tag).text = str(int(v))
    ET.ElementTree(ann).write(root / "xml" / f"img_{i:05d}.xml")


def make_images(root: Path, n: int, kind: str = "photo", num_classes: int = 1000, procs: int = 1) -> dict[str, int]:
    """n JPEGs with one box each, as an ILSVRC-style XML folder; returns the synset index."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "xml").mkdir(exist_ok=True)
    jobs = [(root, i, kind, num_classes) for i in range(n)]
    if procs > 1:
        with ProcessPoolExecutor(procs) as pool:
            list(pool.map(_write, jobs, chunksize=32))
    else:
        for job in jobs:
            _write(job)
    return {f"n{k:08d}": k for k in range(num_classes)}


def replicate(root: Path, n: int, total: int) -> None:
    """Hard links of the first n images (and their XML) up to ``total`` images."""
    for i in range(n, total):
        for sub, suffix in (("images", ".JPEG"), ("xml", ".xml")):
            os.link(root / sub / f"img_{i % n:05d}{suffix}", root / sub / f"img_{i:05d}{suffix}")
        xml = (root / "xml" / f"img_{i:05d}.xml")
        text = xml.read_text().replace(f"img_{i % n:05d}", f"img_{i:05d}")
        xml.unlink()
        xml.write_text(text)


def baseline(model, dataset, device: str, batch: int = 32) -> float:
    """grad-cam maps per step and class, boxes per image and threshold in Python loops."""
    import cv2
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from tdviz.cam import StepView
    from tdviz.images import Preprocess, read_image

    pre_cam, pre_wsol = Preprocess(), Preprocess(mode="resize")
    layer = dict(model.named_modules())[model.feature_layer]
    start = time.perf_counter()
    samples = dataset.samples
    for s0 in range(0, len(samples), batch):
        chunk = samples[s0:s0 + batch]
        images = [read_image(s.path) for s in chunk]
        labels = [s.label for s in chunk]
        for pre in (pre_cam, pre_wsol):
            x = torch.stack([pre(im) for im in images]).to(device)
            for t in range(1, model.num_steps + 1):
                view = StepView(model, t)
                with torch.no_grad():
                    top5 = view(x).topk(5, -1).indices.cpu()
                with GradCAM(model=view, target_layers=[layer]) as cam:
                    if pre is pre_cam:
                        for k in range(5):
                            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in top5[:, k]])
                            for m in maps:  # Grad-CAM rule: threshold at 15% of the max, largest component
                                binary = (m >= 0.15 * m.max()).astype(np.uint8)
                                cv2.connectedComponentsWithStats(binary, connectivity=8)
                    maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in labels])
                    if pre is pre_wsol:
                        for m in maps:  # wsolevaluation: 100 thresholds, findContours each
                            q = np.expand_dims((m * 255).astype(np.uint8), 2)
                            for tau in np.arange(0, 1, 0.01):
                                _, th = cv2.threshold(q, int(tau * np.max(q)), 255, cv2.THRESH_BINARY)
                                contours = cv2.findContours(th, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
                                for c in contours:
                                    cv2.boundingRect(c)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def end_to_end(models, dataset, out: Path, cfg, args) -> dict:
    """One tdviz run: wall, steady rate, fixed cost."""
    from tdviz.wsol.pipeline import WsolRun

    start = time.perf_counter()
    run = WsolRun(models, dataset, out, cfg)
    run.run(args.workers, progress=False, box_workers=args.box_workers)
    _sync(args.device)
    wall = time.perf_counter() - start
    times = np.array([t for t, _ in run.timeline]) - start
    done = np.cumsum([n for _, n in run.timeline])
    q = len(times) // 4
    steady = (done[-1] - done[q]) / (times[-1] - times[q]) if len(times) > 4 else len(dataset.samples) / wall
    n = len(dataset.samples)
    fixed = max(0.0, wall - n / steady)
    return {"images": n, "wall_s": round(wall, 2), "images_per_s": round(n / wall, 1),
            "steady_images_per_s": round(float(steady), 1), "first_batch_s": round(float(times[0]), 2),
            "fixed_s": round(fixed, 2), "estimated_50k_s": round(fixed + 50000 / steady, 1)}


def stages(models, dataset, cfg, args) -> dict:
    """Each stage alone at the run's settings (images/s)."""
    import torch

    from tdviz.wsol import pipeline
    from tdviz.wsol.evidence import ImageEntry
    from tdviz.wsol.extract import Chunk, ChunkConfig, extract_chunk
    from tdviz.wsol.metrics import make_metrics
    from tdviz.wsol.pipeline import WsolRun, box_pool
    from tdviz.wsol.scoremaps import cam_threshold_grid

    run = WsolRun(models, dataset, Path(tempfile.mkdtemp()), cfg)
    preprocs = run._preprocs()
    samples = run.samples
    out = {}
    start = time.perf_counter()
    batches = list(run._batches(samples, run.plan, preprocs, args.workers))
    _sync(args.device)
    out["decode_images_per_s"] = round(len(samples) / (time.perf_counter() - start), 1)
    batch = max(batches, key=lambda b: len(b.good))
    good = [samples[i] for i, _ in batch.good]
    labels = torch.tensor([s.label for s in good])
    name, model = next(iter(models.items()))
    for on_gpu in (True, False):
        pipeline._components_on_device = (lambda d: d.type == "cuda") if on_gpu else (lambda d: False)
        run._model_part(name, model, batch.stacked, labels, preprocs)
        _sync(args.device)
        start = time.perf_counter()
        for _ in range(args.stage_repeats):
            part = run._model_part(name, model, batch.stacked, labels, preprocs)
        _sync(args.device)
        key = "models_maps_gpu_boxes" if on_gpu else "models_maps_cpu_masks"
        out[f"{key}_images_per_s"] = round(args.stage_repeats * len(good) / (time.perf_counter() - start), 1)
        if not on_gpu:
            masks_part = part
    pipeline._components_on_device = lambda d: d.type == "cuda"
    images = [ImageEntry.of(s, w, h) for s, (_, (w, h, _)) in zip(good, batch.good)]
    names = tuple(make_metrics(cfg.protocols, cfg.metric_options(), False))
    ccfg = ChunkConfig(cfg.metric_options(), names, cam_threshold_grid())
    pool = box_pool(args.box_workers) if args.box_workers else None
    for label, part in (("boxes_from_gpu_boxes", run._model_part(name, model, batch.stacked, labels, preprocs)),
                        ("boxes_from_masks", masks_part)):
        per = max(4, -(-len(good) // max(1, 2 * args.box_workers)))
        chunks = [Chunk(ccfg, images[s:s + per], {name: part.rows(slice(s, s + per))}) for s in range(0, len(good), per)]
        work = chunks * args.stage_repeats
        start = time.perf_counter()
        if pool:
            list(pool.map(extract_chunk, work))
        else:
            [extract_chunk(c) for c in work]
        out[f"{label}_images_per_s"] = round(args.stage_repeats * len(good) / (time.perf_counter() - start), 1)
    if pool:
        pool.shutdown()
    return out


def main() -> None:
    import torch

    import tdviz
    from tdviz.datasets import load_dataset
    from tdviz.host_memory import keep_freed_memory
    from tdviz.wsol import native
    from tdviz.wsol.config import WsolConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50_tdjoint")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--kind", choices=["photo", "noise"], default="photo")
    p.add_argument("--baseline-images", type=int, default=None, help="run the baseline on the first N images only")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (CPU) or file-reading threads (GPU)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--box-workers", type=int, default=0, help="tdviz's box-extraction processes")
    p.add_argument("--decode", default="auto")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--stage-repeats", type=int, default=3)
    p.add_argument("--no-stages", action="store_true")
    p.add_argument("--fifty-k", action="store_true", help="also time 50 000 images (hard links of --images)")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc's allocation policy as it is (the `tdviz` command keeps freed memory: "
                        "tdviz.host_memory)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args()
    kept = False if args.system_malloc else keep_freed_memory()
    torch.manual_seed(0)
    model = tdviz.create_model(args.model).to(args.device).eval()
    if args.precision == "bf16":
        model = model.to(memory_format=torch.channels_last)
    cfg = WsolConfig(batch_size=args.batch, decode=args.decode, precision=args.precision)
    result = {"model": args.model, "steps": model.num_steps, "kind": args.kind, "image_size": "500x375 JPEG q90",
              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else
              (platform.processor() or "cpu"), "cores": os.cpu_count(), "decode": cfg.decoder(args.device[:4]),
              "precision": args.precision, "batch": args.batch, "workers": args.workers,
              "box_workers": args.box_workers, "native_trees": native.available()[0],
              "keep_freed_memory": kept}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        index = make_images(root, args.images, args.kind, procs=os.cpu_count() or 1)
        result["mean_jpeg_kb"] = round(np.mean([f.stat().st_size for f in (root / "images").iterdir()]) / 1024, 1)
        result["generate_s"] = round(time.perf_counter() - t0, 1)
        dataset = load_dataset(root / "xml", images_root=root / "images", class_index=index)
        models = {args.model: model}
        warm = load_dataset(root / "xml", images_root=root / "images", class_index=index)
        warm.samples = warm.samples[: args.batch]
        end_to_end(models, warm, root / "warm", cfg, args)  # cuDNN autotuning, compiled trees, worker start
        result["tdviz"] = end_to_end(models, dataset, root / "run", cfg, args)
        if not args.no_stages:
            result["stages"] = stages(models, dataset, cfg, args)
        if args.fifty_k:
            replicate(root, args.images, 50000)
            big = load_dataset(root / "xml", images_root=root / "images", class_index=index)
            result["tdviz_50k"] = end_to_end(models, big, root / "run50k", cfg, args)
        if args.baseline_images != 0:
            base_n = min(args.baseline_images or args.images, args.images)
            base_data = load_dataset(root / "xml", images_root=root / "images", class_index=index)
            base_data.samples = base_data.samples[:base_n]
            base = baseline(model, base_data, args.device, min(args.batch, 64))
            rate = base_n / base
            result["baseline"] = {"images": base_n, "wall_s": round(base, 1), "images_per_s": round(rate, 2),
                                  "estimated_50k_s": round(50000 / rate, 1)}
            result["speedup_steady"] = round(result["tdviz"]["steady_images_per_s"] / rate, 1)
            result["speedup_end_to_end"] = round(result["tdviz"]["images_per_s"] / rate, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
