"""Per-step top-5 Grad-CAM maps: tdviz's step_cams vs a grad-cam loop that yields the same maps.

    python benchmarks/bench_cam.py [--model resnet50_tdjoint] [--batch 32] [--reps 5] [--loop-reps 1] [--device cpu]

Three timings in one process, alternating: (1) the per-step forward (``run_steps``: every step's
logits, no maps), (2) ``tdviz.step_cams(..., classes="topk", k=5)`` (maps for the top-5 classes of
every step; closed form at the feature layer), (3) the grad-cam loop a user would write: for each
step t and each of the 5 class slots, ``GradCAM(model at step t)(images, targets)``. The script
checks that (2) and (3) give the same maps (max abs difference) before timing. Targets:
tdviz <= 1.5x the per-step forward and >= 10x faster than the loop.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import tdviz
from tdviz.cam import StepView


def _timed(fn, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def gradcam_loop(model, x, class_ids, layer):
    """The per-step, per-class grad-cam loop: T x K full forward + backward passes."""
    steps, k = class_ids.shape[1:]
    maps = torch.empty(x.shape[0], steps, k, *x.shape[-2:])
    for t in range(steps):
        with GradCAM(model=StepView(model, t + 1), target_layers=[layer]) as cam:
            for slot in range(k):
                targets = [ClassifierOutputTarget(int(c)) for c in class_ids[:, t, slot]]
                maps[:, t, slot] = torch.from_numpy(cam(input_tensor=x, targets=targets))
    return maps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50_tdjoint")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--reps", type=int, default=5, help="repetitions of the forward and of tdviz")
    p.add_argument("--loop-reps", type=int, default=1, help="repetitions of the (slow) grad-cam loop")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    torch.manual_seed(0)
    model = tdviz.create_model(args.model).to(args.device).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    layer = dict(model.named_modules())[model.feature_layer]

    # warm-up, and the equality check the timing relies on
    cams = tdviz.step_cams(model, x, classes="topk", k=args.topk)
    tdviz.run_steps(model, x)
    loop_maps = gradcam_loop(model, x, cams.class_ids.cpu(), layer)
    max_diff = (cams.maps.cpu() - loop_maps).abs().max().item()

    fwd, ours, loop = [], [], []
    for rep in range(max(args.reps, args.loop_reps)):
        if rep < args.reps:
            fwd.append(_timed(lambda: tdviz.run_steps(model, x), args.device)[0])
            ours.append(_timed(lambda: tdviz.step_cams(model, x, classes="topk", k=args.topk), args.device)[0])
        if rep < args.loop_reps:
            loop.append(_timed(lambda: gradcam_loop(model, x, cams.class_ids.cpu(), layer), args.device)[0])
    f, o, lp = statistics.median(fwd), statistics.median(ours), statistics.median(loop)
    result = {
        "model": args.model, "steps": model.num_steps, "batch": args.batch, "topk": args.topk, "size": args.size,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else (platform.processor() or "cpu"),
        "cpu_threads": torch.get_num_threads(), "path": cams.path, "max_abs_diff_vs_gradcam": max_diff,
        "reps": args.reps, "loop_reps": args.loop_reps,
        "per_step_forward_median_s": round(f, 4), "tdviz_step_cams_median_s": round(o, 4),
        "gradcam_loop_median_s": round(lp, 4),
        "tdviz_over_forward": round(o / f, 3), "loop_over_tdviz": round(lp / o, 2),
    }
    print(json.dumps(result, indent=2))
    print(f"tdviz / per-step forward = {o / f:.2f} (target <= 1.5); grad-cam loop / tdviz = {lp / o:.1f} (target >= 10)")


if __name__ == "__main__":
    main()
