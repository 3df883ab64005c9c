"""Run this checkout's (or an older one's) WSOL pipeline on a demo split, to compare two versions.

    git worktree add /tmp/old ab933c2                      # the last commit before the WSOL rework
    mkdir -p /tmp/oldpkg && ln -s /tmp/old/tdviz /tmp/oldpkg/tdviz
    cp tdviz/data/demo_zoo/*.safetensors /tmp/old/tdviz/data/demo_zoo/   # the same weights in both
    S=$(python -c "from tdviz.demo import make_demo_split; print(make_demo_split(n=5000))")
    (cd /tmp && PYTHONPATH=/tmp/oldpkg python $OLDPWD/benchmarks/wsol_same_as_commit.py $S /tmp/ex_old 5000)
    python benchmarks/wsol_same_as_commit.py $S /tmp/ex_new 5000
    python benchmarks/wsol_same_as_commit.py --compare /tmp/ex_old /tmp/ex_new

It uses only names that both the pre-rework package (ab933c2, 7d50e4c) and this one have
(``tdviz.wsol.annotations``, ``run_wsol``, ``WsolConfig``, ``load_demo_model``), so the same file
drives either ``tdviz`` on ``PYTHONPATH``: boxes from the split's ILSVRC XML, masks from its
wsolevaluation metadata (PxAP measured too), the whole demo zoo, both protocols, CPU decoding,
batches of 50. ``--compare A B`` says whether the two runs' ``results.json`` metrics and their
``records.jsonl`` lines are equal, and lists what differs. Arguments after OUT LIMIT: device
(``cpu``), decode workers and box workers (1 and 1).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def run(split: Path, out: str, limit: int, device: str = "cpu", workers: int = 1, box_workers: int = 1) -> dict:
    """The demo zoo's WSOL run on ``split`` with whichever tdviz is importable; its results."""
    from tdviz.models.demo_zoo import DEMO_MODELS, load_demo_model
    from tdviz.wsol.annotations import demo_class_index, load_wsol_dataset, read_wsolevaluation
    from tdviz.wsol.evaluate import WsolConfig, run_wsol

    # demo_wsol_dataset's merge, written out: the pre-rework one cannot take a split folder
    data = load_wsol_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())
    masked, _ = read_wsolevaluation(split / "wsol" / "mask", data_root=split)
    by_id = {s.image_id: s for s in masked}
    for s in data.samples:
        m = by_id.get(s.image_id)
        if m is not None:
            s.mask_paths, s.ignore_path = m.mask_paths, m.ignore_path
    try:
        config = WsolConfig(batch_size=50, protocols=("cam", "wsol"), limit=limit, decode="cpu")
    except TypeError:  # the pre-rework WsolConfig always decodes on the CPU and has no such field
        config = WsolConfig(batch_size=50, protocols=("cam", "wsol"), limit=limit)
    models = {n: load_demo_model(n, device) for n in DEMO_MODELS}
    resume = (Path(out) / "state.json").is_file()  # an interrupted call continues where it stopped
    return run_wsol(models, data, out, config, resume=resume, workers=workers, box_workers=box_workers,
                    progress=False)


def compare(a: Path, b: Path) -> bool:
    """Print whether two runs' metrics and record lines are equal (and what differs); True if both are."""
    try:
        ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
        la, lb = ((d / "records.jsonl").read_text().splitlines() for d in (a, b))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {getattr(exc, 'filename', None) or exc} cannot be read as a finished run "
                         "(results.json, records.jsonl); pass two finished output folders.") from None
    same_lines = sum(x == y for x, y in zip(la, lb))
    print(f"results.json metrics equal: {ra['models'] == rb['models']} ({ra['images']} and {rb['images']} images, "
          f"{len(ra['models'])} models); records.jsonl: {same_lines} of {len(la)} / {len(lb)} lines equal")
    for model, steps in ra["models"].items():
        for step, row in steps.items():
            other = rb["models"].get(model, {}).get(step)
            if row != other:
                print(f"  differs: {model} step {step}: {row} against {other}")
    return ra["models"] == rb["models"] and same_lines == len(la) == len(lb)


def main() -> int:
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "--compare":
        return 0 if compare(Path(args[1]), Path(args[2])) else 1
    usage = "usage: wsol_same_as_commit.py SPLIT OUT LIMIT [DEVICE [WORKERS BOX_WORKERS]] or --compare RUN_A RUN_B"
    if len(args) not in (3, 4, 6):
        raise SystemExit(usage)
    split = Path(args[0])
    if not (split / "boxes_xml").is_dir():
        raise SystemExit(f"error: {split} is not a demo split (no boxes_xml/); pass make_demo_split()'s folder.")
    try:
        limit, *counts = (int(v) for v in [args[2], *args[4:6]])
    except ValueError:
        raise SystemExit(f"error: LIMIT, WORKERS and BOX_WORKERS must be whole numbers; {usage}") from None
    t = time.time()
    try:
        res = run(split, args[1], limit, *(args[3:4] or ["cpu"]), *counts)
    except KeyboardInterrupt:
        raise SystemExit("interrupted: the same command continues the run in OUT.") from None
    except Exception as exc:  # tdviz's one-line errors (old and new packages name the class differently)
        if type(exc).__name__ != "TdvizError":
            raise
        raise SystemExit(f"error: {exc}") from None
    print(f"{res['images']} images, {len(res['models'])} models, {time.time() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
