"""Cost of the step runner against one plain forward of the same model.

    python benchmarks/bench_steps.py [--model resnet50_tdjoint] [--batch 8] [--reps 7] [--device cpu]

Times ``model(x)`` (the default T-step output) and ``tdviz.run_steps(model, x)`` (every step's
logits) alternately in one process and prints medians and their ratio. Target: ratio <= 1.3.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import tdviz


def _time(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50_tdjoint")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = tdviz.create_model(args.model).to(args.device).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    forward_times, runner_times = [], []
    with torch.no_grad():
        for _ in range(2):  # warm-up
            model(x)
            tdviz.run_steps(model, x)
        for _ in range(args.reps):
            forward_times.append(_time(lambda: model(x), args.device))
            runner_times.append(_time(lambda: tdviz.run_steps(model, x), args.device))
    fwd, run = statistics.median(forward_times), statistics.median(runner_times)
    result = {
        "model": args.model, "steps": model.num_steps, "batch": args.batch, "size": args.size,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "reps": args.reps,
        "forward_median_s": round(fwd, 4), "run_steps_median_s": round(run, 4), "ratio": round(run / fwd, 3),
    }
    print(json.dumps(result, indent=2))
    print(f"run_steps / forward = {run / fwd:.3f} (target <= 1.3)")


if __name__ == "__main__":
    main()
