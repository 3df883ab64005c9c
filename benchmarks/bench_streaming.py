"""A validation pass of the wsolevaluation metrics from a training loop: tdviz's streaming
``WsolMetrics`` against wsolevaluation's own ``BoxEvaluator`` (MaxBoxAccV2, multi-contour) on the
same maps, in one run.

    python benchmarks/bench_streaming.py --wsolevaluation path/to/wsolevaluation --maps 1000 [--device cuda]

``--wsolevaluation`` is a checkout of clovaai/wsolevaluation (not part of tdviz). Two kinds of
raw CAMs: ``cam``, 7x7 as a ResNet50's layer4 gives them, smooth, one or two blobs (a trained
model); ``early``, 28x28 noise (an InceptionV3-style CAM early in training, whose thresholds give
hundreds of contours: the case of their issue 52). Both sides start from the raw maps: theirs resize (bicubic),
normalize and accumulate per map as their ``inference.py`` does; ours take the batch as one tensor
on ``--device``. Prints seconds per pass, the ratio, and whether the MaxBoxAccV2 values agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def make_maps(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "early":  # 28x28 noise (an Inception-style CAM early in training): many contours per threshold
        return rng.random((n, 28, 28)).astype(np.float32)
    yy, xx = np.mgrid[0:7, 0:7]
    maps = np.zeros((n, 7, 7), np.float32)
    for i in range(n):
        for _ in range(int(rng.integers(1, 3))):
            cy, cx, s = rng.uniform(0, 6), rng.uniform(0, 6), rng.uniform(0.8, 2.5)
            maps[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)) * rng.uniform(0.5, 2)
        maps[i] += rng.normal(0, 0.05, (7, 7))
    return np.maximum(maps, 0)


def make_boxes(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0, y0 = rng.integers(0, 150, n), rng.integers(0, 150, n)
    return np.stack([x0, y0, x0 + rng.integers(20, 74, n), y0 + rng.integers(20, 74, n)], 1)


def theirs(repo: Path, maps: np.ndarray, boxes: np.ndarray, interval: float) -> tuple[float, float]:
    """(seconds, MaxBoxAccV2) with wsolevaluation's BoxEvaluator, their inference loop's steps."""
    np.float = float  # their code still says np.float, removed from numpy 1.24
    sys.path.insert(0, str(repo))
    from evaluation import BoxEvaluator, configure_metadata
    from inference import normalize_scoremap

    with tempfile.TemporaryDirectory() as tmp:
        meta = Path(tmp)
        ids = [f"val/img_{i:05d}.jpg" for i in range(len(maps))]
        (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
        (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
        (meta / "image_sizes.txt").write_text("".join(f"{i},224,224\n" for i in ids))
        (meta / "localization.txt").write_text("".join(f"{i},{b[0]},{b[1]},{b[2]},{b[3]}\n" for i, b in zip(ids, boxes)))
        evaluator = BoxEvaluator(metadata=configure_metadata(str(meta)), dataset_name="ILSVRC", split="val",
                                 cam_threshold_list=list(np.arange(0, 1, interval)), iou_threshold_list=[30, 50, 70],
                                 mask_root=None, multi_contour_eval=True)
        start = time.perf_counter()
        for cam, image_id in zip(maps, ids):
            resized = cv2.resize(cam.astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
            evaluator.accumulate(normalize_scoremap(resized), image_id)
        value = float(np.average(evaluator.compute()))
        return time.perf_counter() - start, value


def ours(maps: np.ndarray, boxes: np.ndarray, interval: float, device: str, batch: int) -> tuple[float, float]:
    import torch

    from tdviz.wsol.streaming import WsolMetrics

    metric = WsolMetrics(cam_curve_interval=interval, pxap=False)
    tensor = torch.from_numpy(maps).to(device)
    targets = [{"boxes": torch.from_numpy(b[None])} for b in boxes]
    metric.update(tensor[:8], targets[:8])  # threads started, trees compiled
    metric.reset()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for s in range(0, len(maps), batch):
        metric.update(tensor[s:s + batch], targets[s:s + batch])
    return time.perf_counter() - start, metric.compute()["maxboxacc_v2"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wsolevaluation", required=True, type=Path)
    p.add_argument("--maps", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--interval", type=float, default=0.01)
    args = p.parse_args()
    out = {"maps": args.maps, "interval": args.interval, "device": args.device}
    boxes = make_boxes(args.maps)
    for kind in ("cam", "early"):
        maps = make_maps(kind, args.maps)
        t_ours, v_ours = ours(maps, boxes, args.interval, args.device, args.batch)
        t_theirs, v_theirs = theirs(args.wsolevaluation, maps, boxes, args.interval)
        out[kind] = {"tdviz_s": round(t_ours, 3), "wsolevaluation_s": round(t_theirs, 2),
                     "speedup": round(t_theirs / t_ours, 1), "maxboxacc_v2": v_ours, "equal": v_ours == v_theirs}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
