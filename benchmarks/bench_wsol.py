"""End-to-end WSOL throughput: `tdviz wsol` vs a baseline pipeline built as published code does it.

    python benchmarks/bench_wsol.py [--images 64] [--device cpu] [--model resnet50_tdjoint]

Both sides read the same ImageNet-sized JPEGs (500x375, decoded inside the timing), run TD-ResNet50
(T=2) and produce, for every step, the top-5 class maps and the GT-class map, then score both
protocols (Grad-CAM boxes at 15% for top-1/top-5/GT-known loc; wsolevaluation's MaxBoxAccV2 over
100 thresholds). tdviz: ``tdviz.wsol.evaluate.run_wsol``. Baseline: per step and per class a
``pytorch_grad_cam.GradCAM`` call on the model at that step, then per image and per threshold
``cv2.threshold`` + ``cv2.findContours`` in a Python loop (wsolevaluation's
``compute_bboxes_from_scoremaps``), single process. Prints images/s of each and their ratio, and
the time for 50 000 images: the baseline's at its measured rate, tdviz's as its fixed cost (the
run's time beyond images / steady rate) plus 50 000 images at its steady rate (batches after the
first quarter). ``--repeats`` runs tdviz several times and reports the median run;
``--baseline-images`` runs the baseline on the first N images only (it has no fixed cost, so its
rate does not depend on N).

    python benchmarks/bench_wsol.py --device cuda --images 8192 --baseline-images 2048 \
        --workers 8 --box-workers 7 --batch 128 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

# torch, OpenCV and tdviz's model side are imported inside the functions: tdviz's box workers are
# spawned processes that re-import this main module, and should start as fast as under `tdviz wsol`


def make_images(root: Path, n: int, num_classes: int = 1000) -> dict[str, int]:
    """n random JPEGs with one box each, as an ILSVRC-style XML folder; returns the synset index."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "xml").mkdir()
    index = {f"n{k:08d}": k for k in range(num_classes)}
    for i in range(n):
        img = (rng.random((375, 500, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"img_{i:05d}.JPEG", quality=90)
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
    return index


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


def main() -> None:
    import numpy as np
    import torch

    import tdviz
    from tdviz.wsol.annotations import load_wsol_dataset
    from tdviz.wsol.evaluate import WsolConfig, WsolRun, run_wsol

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50_tdjoint")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--baseline-images", type=int, default=None,
                   help="run the baseline on the first N of the images only (default: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--box-workers", type=int, default=0, help="tdviz's box-extraction processes")
    p.add_argument("--repeats", type=int, default=1, help="tdviz runs; the median one is reported")
    args = p.parse_args()
    torch.manual_seed(0)
    model = tdviz.create_model(args.model).to(args.device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = make_images(root, args.images)
        dataset = load_wsol_dataset(root / "xml", images_root=root / "images", class_index=index)
        warm = load_wsol_dataset(root / "xml", images_root=root / "images", class_index=index)
        warm.samples = warm.samples[: args.batch]
        run_wsol({args.model: model}, warm, root / "warm", WsolConfig(batch_size=args.batch), workers=0,
                 progress=False)
        runs = []
        for rep in range(args.repeats):
            start = time.perf_counter()
            run = WsolRun({args.model: model}, dataset, root / f"out{rep}", WsolConfig(batch_size=args.batch))
            run.run(args.workers, progress=False, box_workers=args.box_workers)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
            times = np.array([t for t, _ in run.timeline]) - start
            done = np.cumsum([n for _, n in run.timeline])
            q = len(times) // 4  # steady state: after the first quarter of the batches
            rate = (done[-1] - done[q]) / (times[-1] - times[q]) if len(times) > 4 else args.images / wall
            runs.append((wall, float(times[0]), rate))
        ours, first, steady = sorted(runs)[len(runs) // 2]  # the median run
        startup = max(0.0, ours - args.images / steady)  # what the run took beyond images / steady rate
        base_n = min(args.baseline_images or args.images, args.images)
        base_data = load_wsol_dataset(root / "xml", images_root=root / "images", class_index=index)
        base_data.samples = base_data.samples[:base_n]
        base = baseline(model, base_data, args.device, args.batch)
    n = args.images
    ours_50k = startup + 50000 / steady
    base_50k = 50000 / (base_n / base)
    result = {
        "model": args.model, "steps": model.num_steps, "images": n, "baseline_images": base_n,
        "image_size": "500x375 JPEG",
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else (platform.processor() or "cpu"),
        "cpu_threads": torch.get_num_threads(), "decode_workers": args.workers, "box_workers": args.box_workers,
        "batch": args.batch, "tdviz_s": round(ours, 2), "baseline_s": round(base, 2),
        "tdviz_images_per_s": round(n / ours, 1), "baseline_images_per_s": round(base_n / base, 2),
        "speedup_measured": round((n / ours) / (base_n / base), 1),
        "tdviz_runs_images_per_s": [round(n / w, 1) for w, _, _ in runs],
        "tdviz_first_batch_s": round(first, 2), "tdviz_steady_images_per_s": round(float(steady), 1),
        "tdviz_fixed_s": round(startup, 2),
        "tdviz_50k_minutes": round(ours_50k / 60, 2), "baseline_50k_minutes": round(base_50k / 60, 1),
        "speedup_50k": round(base_50k / ours_50k, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
