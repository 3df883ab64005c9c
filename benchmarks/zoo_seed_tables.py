"""Mean +- sd over seeds of the demo zoo's measurements, as Markdown tables for the README.

    python benchmarks/zoo_seed_tables.py --train benchmarks/results/train_demo_zoo_v4/results.json \
        --wsol W.json --cross C.json --shift S.json --selectivity L.json > tables.md

Every input holds one entry per run named ``<model>_seed<k>`` (what ``train_demo_zoo.py`` and
``tdviz wsol/shift/selectivity`` with those names write). A difference between two models is called
larger than the seed spread when their means differ by more than the sum of their sds.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

RUN = re.compile(r"^(?P<model>.+)_seed(?P<seed>\d+)$")


def by_model(entries: dict) -> dict[str, list]:
    """``{model: [entry of seed 0, seed 1, ...]}`` from ``{"<model>_seed<k>": entry}``."""
    out = defaultdict(list)
    for key in sorted(entries, key=lambda k: (RUN.match(k)["model"], int(RUN.match(k)["seed"]))):
        out[RUN.match(key)["model"]].append(entries[key])
    return dict(out)


def ms(values, digits: int = 1) -> str:
    """``mean ± sd`` (sample sd) of the values that are not ``None``, with ``digits`` decimals
    (1 for percentages, 3 for the selectivity fractions); one value alone; ``–`` for none."""
    v = np.array([x for x in values if x is not None], float)
    if v.size == 0:
        return "–"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if v.size > 1 else f"{v[0]:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def classification(train: dict) -> str:
    rows = []
    for model, runs in by_model(train["results"]).items():
        steps = len(runs[0]["top1_per_step"])
        per_step = [ms([r["top1_per_step"][s] for r in runs]) for s in range(steps)]
        rows.append([model, per_step[0], per_step[-1] if steps > 1 else "", ms([r["top1_most_confident"] for r in runs]),
                     str(len(runs))])
    n = next(iter(train["results"].values()))["val_images"]
    return f"Top-1 (%) on {n} validation canvases\n\n" + table(
        ["model", "step 1", "step 2", "most confident", "seeds"], rows)


def wsol(res: dict, title: str) -> str:
    rows = []
    for model, runs in by_model(res["models"]).items():
        last = str(max(int(k) for k in runs[0] if k != "mc"))
        for step in dict.fromkeys([last, "mc"] if last != "1" else ["1"]):
            cells = [[r[step].get(k) for r in runs] for k in
                     ("top1_cls", "top1_loc", "gt_known_loc", "maxboxacc_v2", "pxap")]
            rows.append([model, "most confident" if step == "mc" else step] + [ms(c) for c in cells])
    return f"{title} ({res['images']} images)\n\n" + table(
        ["model", "step", "top-1 cls", "top-1 loc", "GT-known loc", "MaxBoxAccV2", "PxAP"], rows)


def cross(res: dict, train: dict) -> str:
    """Own-split top-1 against the renderer's, the gap taken run by run (the same ``<model>_seed<k>``)."""
    own = train["results"]
    missing = sorted(set(res["models"]) - set(own))
    if missing:
        raise SystemExit(f"error: --cross has runs that --train lacks ({', '.join(missing)}); give the same runs' files.")
    n_own = next(iter(own.values()))["val_images"]
    rows = []
    for model, keys in by_model({k: k for k in res["models"]}).items():
        runs = [res["models"][k] for k in keys]
        last = str(max(int(k) for k in runs[0] if k != "mc"))
        other = [r[last]["top1_cls"] for r in runs]
        mine = [own[k]["top1_per_step"][-1] for k in keys]
        rows.append([model, ms(mine), ms(other), ms([a - b for a, b in zip(mine, other)]),
                     ms([r[last]["gt_known_loc"] for r in runs])])
    return f"Own split ({n_own}) against the test-only renderer ({res['images']} images), last step\n\n" + table(
        ["model", "own top-1", "renderer top-1", "gap", "renderer GT-known loc"], rows)


def shift(res: dict) -> str:
    rows = []
    for model, runs in by_model(res["models"]).items():
        steps = len(runs[0]["localized_per_step"])
        loc = " / ".join(ms([100 * r["localized_per_step"][s] for r in runs]) for s in range(steps))
        rows.append([model, loc, ms([None if r["frac_changed"] is None else 100 * r["frac_changed"] for r in runs]),
                     ms([100 * r["frac_unique_maps"] for r in runs])])
    n = next(iter(res["models"].values()))["n_images"]
    return f"Attention shift on {n} two-object canvases (% of images)\n\n" + table(
        ["model", "localized per step", "changed", "unique maps"], rows)


def selectivity(res: dict) -> str:
    grouped = defaultdict(lambda: defaultdict(list))
    for key, r in res.items():
        run, layer, step = key.split("|")
        m = RUN.match(run)
        grouped[(m["model"], layer, step)][int(m["seed"])] = r
    rows = []
    for (model, layer, step), seeds in sorted(grouped.items()):
        runs = [seeds[s] for s in sorted(seeds)]
        names = list(runs[0]["summary"])
        rows.append([model, layer, step] + [ms([r["summary"][k]["median"] for r in runs], 3) for k in names])
    return "Channel selectivity (median per run, then mean ± sd over seeds)\n\n" + table(
        ["model", "layer", "step"] + names, rows)


def _read(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SystemExit(f"error: {path} cannot be read ({exc.strerror}); give the file that script wrote.") from None
    except ValueError as exc:
        raise SystemExit(f"error: {path} is not JSON ({exc}); give the file that script wrote.") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True)
    p.add_argument("--wsol")
    p.add_argument("--cross")
    p.add_argument("--shift")
    p.add_argument("--selectivity")
    args = p.parse_args()
    steps = [("--train", args.train, classification), ("--wsol", args.wsol,
             lambda r: wsol(r, "WSOL on the own validation split, both protocols")),
             ("--cross", args.cross, None), ("--shift", args.shift, shift), ("--selectivity", args.selectivity, selectivity)]
    train = _read(args.train)
    parts = []
    for flag, path, make in steps:
        if path is None:
            continue
        try:
            parts.append(make(_read(path)) if make else cross(_read(path), train))
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            raise SystemExit(f"error: {path} is not what {flag} takes ({type(exc).__name__}: {exc}); --train takes "
                             "train_demo_zoo.py's results.json, the others eval_demo_zoo_seeds.py's outputs.") from None
    print("\n\n".join(parts))


if __name__ == "__main__":
    main()
