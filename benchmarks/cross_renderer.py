"""How the demo zoo holds up outside its own generator: tdviz's validation split against the
independent test-only renderer (``tests/independent_renderer.py``), same number of images.

    python benchmarks/cross_renderer.py --images 300 --out runs/cross

Per model, at its last step and the most confident step, with the cam protocol (the paper's
Table 3 rule): top-1 and GT-known loc on each, the gap, and whether top-1 is within 10 points
(the demo issue's bound).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from independent_renderer import write_split

    from tdviz.datasets import load_dataset
    from tdviz.models.demo_zoo import DEMO_MODELS, load_demo_model
    from tdviz.wsol.config import WsolConfig
    from tdviz.wsol.evaluate import demo_wsol_dataset, run_wsol

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    models = {n: load_demo_model(n, args.device) for n in DEMO_MODELS}
    cfg = WsolConfig(batch_size=50, protocols=("cam",), limit=args.images)
    own = run_wsol(models, demo_wsol_dataset(max(args.images, 1000), args.workers), args.out / "own", cfg,
                   workers=args.workers, progress=False, overwrite=True)
    coco = write_split(args.out / "independent", args.images, seed=args.seed)
    other = run_wsol(models, load_dataset(coco), args.out / "other", cfg, workers=args.workers, progress=False,
                     overwrite=True)
    rows = []
    for name, steps in own["models"].items():
        last = max((k for k in steps if k != "mc"), key=int)
        for step in (last, "mc"):
            a, b = steps[step], other["models"][name][step]
            rows.append({"model": name, "step": step, "own_top1": a["top1_cls"], "other_top1": b["top1_cls"],
                         "gap_top1": round(a["top1_cls"] - b["top1_cls"], 2), "own_gt_known_loc": a["gt_known_loc"],
                         "other_gt_known_loc": b["gt_known_loc"], "within_10": a["top1_cls"] - b["top1_cls"] <= 10})
    report = {"images": [own["images"], other["images"]], "renderer": "tests/independent_renderer.py",
              "seed": args.seed, "rows": rows}
    text = json.dumps(report, indent=1)
    print(text)
    (args.out / "cross_renderer.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
