"""Every run of a trained demo zoo measured for the README's seed tables, in one command.

    python benchmarks/eval_demo_zoo_seeds.py --weights runs/zoo4/weights --device cuda --out runs/zoo4/eval
    python benchmarks/zoo_seed_tables.py --train runs/zoo4/results.json --wsol runs/zoo4/eval/wsol.json \\
        --cross runs/zoo4/eval/cross.json --shift runs/zoo4/eval/shift.json --selectivity runs/zoo4/eval/selectivity.json

``--weights`` holds ``<model>_seed<k>.safetensors`` (what ``train_demo_zoo.py`` writes); every file is
one run, named ``<model>_seed<k>`` in the outputs:

* ``wsol.json``: ``tdviz wsol``'s results (both protocols) on the first ``--wsol-images`` canvases
  of the demo validation split;
* ``cross.json``: the same, cam protocol, on as many canvases of the test-only renderer
  (``tests/independent_renderer.py``);
* ``shift.json``: ``tdviz shift`` on ``--shift-images`` two-object canvases;
* ``selectivity.json``: ``tdviz selectivity`` on ``--selectivity-images`` canvases, keyed
  ``<run>|<layer>|<step>``.

A weights file that does not load (damaged, another architecture) is reported and left out; the
other runs are measured. Interrupted (Ctrl-C), the same command continues: a finished output for
the same runs and image count is kept, and the WSOL runs resume from their last committed batch
(a WSOL run in --out of other runs or settings is refused: delete its folder or pick another --out).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = re.compile(r"^(?P<model>.+)_seed(?P<seed>\d+)$")


def load_runs(folder: Path, device: str) -> dict:
    """``{"<model>_seed<k>": model}`` for every weights file of ``folder`` that loads, in eval mode on
    ``device``; a file that does not load is reported and left out."""
    from tdviz.errors import TdvizError
    from tdviz.models.demo_zoo import DEMO_MODELS, load_demo_model

    runs = {}
    for path in sorted(folder.glob("*_seed*.safetensors")):
        m = RUN.match(path.stem)
        if m is None or m["model"] not in DEMO_MODELS:
            raise SystemExit(f"error: {path} is not named <demo model>_seed<k>.safetensors; rename it or move it out.")
        try:
            runs[path.stem] = load_demo_model(m["model"], device, path)
        except TdvizError as exc:
            print(f"skipped {path.name}: {exc}", file=sys.stderr, flush=True)
    if not runs:
        raise SystemExit(f"error: {folder} holds no loadable <model>_seed<k>.safetensors; give train_demo_zoo.py's "
                         "weights folder.")
    return runs


def _kept(path: Path, runs: dict, images: int) -> bool:
    """Whether ``path`` is a finished output of an earlier call for exactly these runs and images."""
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
        if "models" not in res:  # selectivity.json: "<run>|<layer>|<step>" -> result
            return {k.split("|")[0] for k in res} == set(runs) and \
                all(r["n_images"] == images for r in res.values())
        entries = res["models"].values()
        counts = {r["n_images"] for r in entries} if "n_images" in next(iter(entries)) else {res["config"]["limit"]}
        return set(res["models"]) == set(runs) and counts == {images}
    except (OSError, ValueError, KeyError, AttributeError, StopIteration, TypeError):
        return False


def _wsol(runs, dataset, out: Path, config) -> dict:
    """``run_wsol``, continuing an interrupted run in ``out``."""
    from tdviz.wsol.evaluate import run_wsol

    return run_wsol(runs, dataset, out, config, resume=True, progress=False)


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from independent_renderer import write_split

    from tdviz.classify import ImageFolderDataset
    from tdviz.datasets import demo_class_index, load_dataset
    from tdviz.demo import make_demo_split
    from tdviz.images import Preprocess
    from tdviz.selectivity import run_selectivity
    from tdviz.shift import run_shift
    from tdviz.wsol.config import WsolConfig
    from tdviz.wsol.evaluate import demo_wsol_dataset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--wsol-images", type=int, default=1000)
    p.add_argument("--cross-images", type=int, default=1000)
    p.add_argument("--shift-images", type=int, default=100)
    p.add_argument("--selectivity-images", type=int, default=200)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(args.weights, args.device)
    batch = 250 if args.device.startswith("cuda") else 50
    t0 = time.time()

    n = args.wsol_images
    if not _kept(args.out / "wsol.json", runs, n):
        res = _wsol(runs, demo_wsol_dataset(max(n, 1000), args.workers), args.out / "wsol_run",
                    WsolConfig(batch_size=batch, protocols=("cam", "wsol"), limit=n))
        (args.out / "wsol.json").write_text(json.dumps(res, indent=1))
    print(f"wsol: {len(runs)} runs x {n} images, {time.time() - t0:.0f} s", flush=True)

    if not _kept(args.out / "cross.json", runs, args.cross_images):
        coco = write_split(args.out / "independent", args.cross_images, seed=0)
        res = _wsol(runs, load_dataset(coco), args.out / "cross_run",
                    WsolConfig(batch_size=batch, protocols=("cam",), limit=args.cross_images))
        (args.out / "cross.json").write_text(json.dumps(res, indent=1))
    print(f"cross: {args.cross_images} images, {time.time() - t0:.0f} s", flush=True)

    if not _kept(args.out / "shift.json", runs, args.shift_images):
        split = make_demo_split(n=args.shift_images, seed=0, two_objects=True)
        dataset = load_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())
        stats, skipped = run_shift(runs, dataset.samples[:args.shift_images], progress=False, records=[])
        (args.out / "shift.json").write_text(json.dumps(
            {"models": {k: s.to_dict() for k, s in stats.items()}, "skipped": dataset.problems + skipped}, indent=1))
    print(f"shift: {args.shift_images} images, {time.time() - t0:.0f} s", flush=True)

    if not _kept(args.out / "selectivity.json", runs, args.selectivity_images):
        root = make_demo_split(n=max(10, args.selectivity_images), seed=0, workers=args.workers) / "images"
        preprocess = Preprocess.for_model(next(iter(runs.values())))
        dataset = ImageFolderDataset(root, preprocess, limit=args.selectivity_images)
        results, _ = run_selectivity(runs, dataset, None, workers=args.workers, progress=False)
        (args.out / "selectivity.json").write_text(json.dumps(
            {f"{m}|{layer}|{t}": r.to_dict() for (m, layer, t), r in results.items()}, indent=1))
    print(f"selectivity: {args.selectivity_images} images, {time.time() - t0:.0f} s", flush=True)


def run() -> None:
    """:func:`main`, with Ctrl-C and tdviz's own errors (a run in --out made with other settings, a
    second call on the same --out) ending in one line; what is finished stays in --out."""
    from tdviz.errors import TdvizError

    try:
        main()
    except TdvizError as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit("interrupted: the finished outputs and committed WSOL batches are kept in --out; "
                         "run the same command again to continue.") from None

if __name__ == "__main__":
    run()
