"""Wall time of `tdviz cam` on one image, end to end (process start to exit), CPU.

    python benchmarks/bench_cli_cam.py [--model resnet50_tdjoint] [--runs 7]

Makes a 500x375 JPEG, runs `tdviz cam IMAGE --model MODEL --steps` (random weights for a
non-demo model) `--runs` times and prints the median. Target: <= 3 s for TD-ResNet50.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50_tdjoint")
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "photo.jpg"
        Image.fromarray((np.random.default_rng(0).random((375, 500, 3)) * 255).astype(np.uint8)).save(image)
        cmd = [sys.executable, "-m", "tdviz_cli.main", "cam", str(image), "--model", args.model, "--steps",
               "--out", str(Path(tmp) / "out")]
        times = []
        for _ in range(args.runs + 1):  # the first run warms the file cache and is not counted
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        times = times[1:]
    print(json.dumps({"model": args.model, "runs": args.runs, "median_s": round(statistics.median(times), 3),
                      "min_s": round(min(times), 3), "max_s": round(max(times), 3)}, indent=2))


if __name__ == "__main__":
    main()
