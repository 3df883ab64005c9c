"""GT-known localization by object size, from a finished ``tdviz wsol`` run: where the box rule fails.

    python benchmarks/loc_by_object_size.py --run runs/zoo4/eval/wsol_run \\
        --boxes ~/.cache/tdviz/demo/fashion-clutter-v2.1-val-n1000-seed0/LOC_val_solution.csv \\
        --out benchmarks/results/loc_by_object_size_zoo_v4_1000_cpu.json

For every run in the records (``<out>/records.jsonl``) and every image, the last step's GT-class
box by the Grad-CAM rule (the one GT-known loc scores) is compared with the image's GT boxes of its
label (inclusive IoU, :func:`tdviz.wsol.boxes.box_iou`, hit at ``>= --iou``), and so is the
per-image best IoU over wsolevaluation's thresholds and contours (``best_iou_v2``): the bound a
per-image oracle threshold would reach with the same map. Images are grouped by the side of their
largest GT box (square root of its area, in the image's pixels); the table gives, per model (runs
of one model pooled over seeds) and group, both rates in percent; the bound is absent (``null``)
where the run had no wsol protocol. Images with no GT box of their label, or that a run did not
score, are counted and left out; a run none of whose images has a GT box in ``--boxes`` is an
error (the wrong annotations).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

SEED = re.compile(r"_seed\d+$")


def read_records(path: Path) -> list[dict]:
    """The JSON lines of a run's ``records.jsonl``. A line that does not parse (the cut-off last line
    of a killed run, say) is reported and skipped; a file with no line that parses is an error."""
    records, bad = [], []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                bad.append(n)
    if bad and not records:
        raise SystemExit(f"error: line {bad[0]} of {path} is not JSON, nor is any other; point --run at a "
                         "tdviz wsol output folder whose records.jsonl is intact.")
    if bad:
        print(f"skipped: {len(bad)} line(s) of {path} that are not JSON (first: line {bad[0]})", file=sys.stderr)
    return records


def _percent(flags: list) -> float | None:
    """The share of true flags in percent (one decimal); ``None`` (not measured) for no flags."""
    return round(100 * float(np.mean(flags)), 1) if flags else None


def by_size(records: list[dict], gt: dict, edges: list[float], iou_threshold: float) -> dict:
    """``{model: {"groups": [...], "all": {...}, "left_out": n}}`` (see the module docstring)."""
    from tdviz.wsol.boxes import box_iou

    hits: dict = defaultdict(lambda: defaultdict(list))
    bound: dict = defaultdict(lambda: defaultdict(list))
    left_out: dict = defaultdict(int)
    for rec in records:
        boxes = gt.get(rec.get("image_id"))
        for run, entry in (rec.get("models") or {}).items():
            model = SEED.sub("", run)
            steps = (entry or {}).get("steps") or []
            if boxes is None or len(boxes) == 0 or not steps:
                left_out[model] += 1
                continue
            side = float(np.sqrt(((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)).max()))
            group = int(np.searchsorted(edges, side, side="right")) - 1
            last = steps[-1]
            box = last.get("gt_known_box")
            hit = box is not None and float(box_iou([box], boxes).max()) >= iou_threshold
            hits[model][group].append(hit)
            best = last.get("best_iou_v2")  # absent where the run had no wsol protocol: not measured
            if best is not None:
                bound[model][group].append(best >= iou_threshold)
    out = {}
    for model in sorted(set(hits) | set(left_out)):
        groups = []
        for g in sorted(hits[model]):
            lo = edges[g] if g >= 0 else 0.0
            hi = edges[g + 1] if g + 1 < len(edges) else None
            groups.append({"side_from": lo, "side_to": hi, "scores": len(hits[model][g]),
                           "gt_known_loc": _percent(hits[model][g]),
                           "best_threshold_bound": _percent(bound[model][g])})
        every_hit = [h for g in hits[model].values() for h in g]
        every_bound = [b for g in bound[model].values() for b in g]
        out[model] = {"groups": groups, "left_out": left_out[model],
                      "all": {"scores": len(every_hit), "gt_known_loc": _percent(every_hit),
                              "best_threshold_bound": _percent(every_bound)}}
    return out


def main() -> None:
    try:
        _main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted: nothing was written; run the same command again.") from None


def _main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a finished tdviz wsol --out folder")
    p.add_argument("--boxes", required=True, help="the annotation source the run was scored on")
    p.add_argument("--edges", default="0,60,90,120,150", help="lower edges of the size groups, px")
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = p.parse_args()
    try:
        edges = sorted(float(x) for x in args.edges.split(","))
    except ValueError:
        p.error(f"--edges must be comma-separated numbers (got {args.edges!r})")
    records_path = args.run / "records.jsonl"
    if not records_path.is_file():
        raise SystemExit(f"error: {records_path} does not exist; point --run at a tdviz wsol output folder.")
    from tdviz.datasets import load_dataset
    from tdviz.errors import TdvizError

    try:
        data = load_dataset(args.boxes, require_images=False)
    except TdvizError as exc:
        raise SystemExit(f"error: {exc}") from None
    gt = {s.image_id: s.boxes[s.box_labels == s.label] for s in data.samples}
    table = by_size(read_records(records_path), gt, edges, args.iou)
    if not table:
        raise SystemExit(f"error: {records_path} holds no scored runs; finish the wsol run first.")
    if not any(row["all"]["scores"] for row in table.values()):
        raise SystemExit(f"error: no image of {records_path} has a GT box of its label in {args.boxes}; "
                         "pass the annotations the run was scored on.")

    if args.out:
        try:
            args.out.write_text(json.dumps({"run": str(args.run), "boxes": str(args.boxes), "iou": args.iou,
                                            "edges": edges, "models": table}, indent=1) + "\n")
        except OSError as exc:
            raise SystemExit(f"error: cannot write {args.out} ({exc.strerror}); pick a writable --out.") from None

    def pct(v):
        return "  n/a" if v is None else f"{v:5.1f}%"

    for model, row in table.items():
        print(f"{model}: GT-known loc {pct(row['all']['gt_known_loc'])}, per-image best threshold "
              f"{pct(row['all']['best_threshold_bound'])} ({row['all']['scores']} scores, {row['left_out']} left out)")
        for g in row["groups"]:
            to = f"{g['side_to']:.0f}" if g["side_to"] is not None else "+"
            print(f"  side {g['side_from']:>4.0f}-{to:<4} px  n={g['scores']:5d}  GT-known loc "
                  f"{pct(g['gt_known_loc'])}  best-threshold bound {pct(g['best_threshold_bound'])}")
    if any(row["all"]["best_threshold_bound"] is None for row in table.values()):
        print("n/a: not measured (a run without the wsol protocol has no best-threshold bound)")


if __name__ == "__main__":
    sys.exit(main())
