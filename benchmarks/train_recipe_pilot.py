"""Which training recipe learns the demo task fastest: variants of one model, side by side, same data.

    python benchmarks/train_recipe_pilot.py --fashion-dir /usr/share/datasets/fashion-mnist \\
        --variant control:batch=256,lr=2e-3 --variant b128:batch=128,lr=2e-3 --out runs/pilot

Every variant trains the same model (``--model``, the same initial weights) for the same number of
draws (``--samples``) from the same stream of v2 training canvases (rendered once in CPU workers
into a pool on the GPU, as :mod:`train_demo_zoo` does; ``--reuse R`` gives every rendered canvas
about R draws per variant), with the zoo's recipe (AdamW, warm-up then cosine, label smoothing,
flips, bf16, a low-resolution phase) except for what its ``key=value`` list changes:

* ``model`` (``--model``), ``draws`` (``--samples``), ``batch`` (256), ``lr`` (2e-3), ``wd`` (0.05),
  ``warmup`` (51 200 draws of linear warm-up), ``low`` (160: the low-resolution side) and ``frac``
  (0.6: the share of steps at ``low``).

A variant with a smaller batch takes more steps per rendered batch (``--render-batch`` / batch), so all
variants see the same canvases in their own order. At the end each variant's top-1 on the first
``--val`` validation canvases (fp32 weights) and, timed alone on the GPU, the cost of one of its
steps at 224 px are written to ``<out>/pilot.json`` (one log per variant next to it).

``--deadline S`` or Ctrl-C stops the training after the rendered batch under way and evaluates
what was reached (``steps_done`` < ``steps``; there is no resume: a pilot is started again).

Three such pilots on one H200 (``benchmarks/results/recipe_pilot_h200/``) chose the zoo's next
learning rate; the README's demo section gives their figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

try:
    from train_demo_zoo import Canvases, _worker_init, build, evaluate, lr_at, normalize, param_groups, render_val
    from zoo_steps import EagerSteps, GraphSteps
except ImportError:  # imported as benchmarks.train_recipe_pilot (the tests)
    from benchmarks.train_demo_zoo import (
        Canvases,
        _worker_init,
        build,
        evaluate,
        lr_at,
        normalize,
        param_groups,
        render_val,
    )
    from benchmarks.zoo_steps import EagerSteps, GraphSteps

from tdviz.demo.canvas import load_source
from tdviz.models.demo_zoo import DEMO_MODELS

RENDER_BATCH = 256


@dataclass(frozen=True)
class Variant:
    """One recipe: what differs from the zoo's."""

    name: str
    model: str = ""  # "" = --model
    draws: int = 0  # 0 = --samples
    batch: int = 256
    lr: float = 2e-3
    wd: float = 0.05
    warmup: int = 51_200
    low: int = 160
    frac: float = 0.6


def parse_variant(text: str) -> Variant:
    """``name:key=value,...`` -> :class:`Variant`; a ValueError names what is wrong."""
    name, _, rest = text.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", name):
        raise ValueError(f"--variant {text!r}: give a name first (letters, digits, '.', '_', '-'; it names the "
                         "log file), as in b128:batch=128")
    fields = {f: type(v) for f, v in asdict(Variant("x")).items() if f != "name"}
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if key not in fields or not eq:
            raise ValueError(f"--variant {text!r}: {item!r} is not key=value with a key of {', '.join(fields)}")
        try:
            kwargs[key] = int(float(value)) if fields[key] is int else fields[key](value)
        except ValueError:
            raise ValueError(f"--variant {text!r}: {key} must be a number, not {value!r}") from None
    v = Variant(name, **kwargs)
    if v.model and v.model not in DEMO_MODELS:
        raise ValueError(f"--variant {text!r}: {v.model!r} is not a demo model ({', '.join(DEMO_MODELS)})")
    if v.batch < 1 or (v.draws and v.draws < v.batch) or not 0 < v.lr < math.inf or not math.isfinite(v.wd) or not 0 <= v.frac <= 1 or v.low < 16:
        raise ValueError(f"--variant {text!r}: batch must be positive, lr positive and finite, frac in [0, 1], low >= 16 "
                         "and draws at least one batch")
    return v


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", action="append", required=True, help="name:key=value,... (repeat)")
    p.add_argument("--model", default="demo_resnet", choices=list(DEMO_MODELS))
    p.add_argument("--samples", type=int, default=742_400, help="training draws per variant")
    p.add_argument("--reuse", type=int, default=2)
    p.add_argument("--render-batch", type=int, default=RENDER_BATCH,
                   help="canvases rendered per pool slot; every variant's batch must divide it")
    p.add_argument("--pool", type=int, default=16)
    p.add_argument("--val", type=int, default=5000)
    p.add_argument("--workers", type=int, default=15)
    p.add_argument("--fashion-dir", default=None)
    p.add_argument("--deadline", type=float, default=None,
                   help="stop training after this many seconds and evaluate what was reached (logged as such)")
    p.add_argument("--out", default="runs/pilot")
    args = p.parse_args()
    try:
        variants = [parse_variant(t) for t in args.variant]
        load_source("train", args.fashion_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if len({v.name for v in variants}) != len(variants):
        raise SystemExit("error: every --variant needs its own name")
    rb = args.render_batch
    odd = [v.name for v in variants if rb % v.batch]
    if odd or min(args.reuse, args.pool, args.val, rb) < 1:
        raise SystemExit(f"error: the batch of {', '.join(odd)} does not divide --render-batch {rb}" if odd else
                         "error: --reuse, --pool, --val and --render-batch must be positive")
    short = [v.name for v in variants if not v.draws and args.samples < v.batch]
    if short:
        raise SystemExit(f"error: --samples {args.samples} is less than one batch of {', '.join(short)}: "
                         "nothing would train")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        logs = {v.name: open(out / f"{v.name}.log", "w", encoding="utf-8") for v in variants}  # noqa: SIM115
    except OSError as exc:
        raise SystemExit(f"error: cannot write to --out {out} ({exc.strerror}): give a writable folder") from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    graphs = device.type == "cuda"
    runs, steppers, gens = {}, {}, {}
    # each variant's steps (input preparation included) on its own stream, so that they overlap
    streams = {v.name: torch.cuda.Stream(device) if graphs else None for v in variants}
    for i, v in enumerate(variants):
        key = (v.name, 0)
        model = build(v.model or args.model, 0, device)  # the same initial weights for every variant of a model
        opt = torch.optim.AdamW(param_groups(model, v.wd), lr=v.lr, capturable=graphs)
        runs[v.name] = model
        steppers[v.name] = (GraphSteps if graphs else EagerSteps)({key: model}, {key: opt}, {},
                                                                  *([device] if graphs else []))
        gens[v.name] = torch.Generator(device=device).manual_seed(2000 + i)
        logs[v.name].write(f"variant {json.dumps(asdict(v))} model {v.model or args.model} draws {v.draws or args.samples}\n")
    val = render_val(args.val, args.workers, device)
    steps = {v.name: (v.draws or args.samples) // v.batch for v in variants}
    n_render = -(-max(steps[v.name] * v.batch for v in variants) // (rb * args.reuse))
    data = Canvases("train", n_render * rb, 0, args.fashion_dir)
    loader = DataLoader(data, batch_size=rb, num_workers=args.workers, pin_memory=graphs, drop_last=True,
                        prefetch_factor=4 if args.workers else None, worker_init_fn=_worker_init)
    pool_x = torch.empty((args.pool * rb, 224, 224, 3), dtype=torch.uint8, device=device)
    pool_y = torch.empty((args.pool * rb,), dtype=torch.long, device=device)
    done = dict.fromkeys(steps, 0)
    losses: dict = {v.name: [] for v in variants}
    pending: list = []  # (variant, step, size, lr, loss) to log once the GPU is past them

    def train_variant(v: Variant, filled: int) -> None:
        """The steps of variant ``v`` on one rendered batch (256 * reuse draws)."""
        for _ in range(rb * args.reuse // v.batch):
            step = done[v.name]
            if step >= steps[v.name]:
                return
            size = v.low if step < round(v.frac * steps[v.name]) else 224
            idx = torch.randint(0, filled, (v.batch,), device=device, generator=gens[v.name])
            x = normalize(pool_x[idx], size)
            flip = torch.rand(len(x), device=device, generator=gens[v.name]) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            lr = lr_at(step, steps[v.name], v.lr, max(1, v.warmup // v.batch))
            losses[v.name].append(steppers[v.name]({0: (x, pool_y[idx])}, lr)[(v.name, 0)])
            done[v.name] = step + 1
            if done[v.name] % 50 == 0:
                pending.append((v, step + 1, size, lr))

    interrupted: list[bool] = []

    def on_interrupt(signum, frame):  # Ctrl-C: stop after this rendered batch and evaluate what was reached
        if interrupted:
            raise SystemExit("interrupted again: stopped at once; the logs so far are kept")
        interrupted.append(True)
        print("interrupted: stopping after this batch and evaluating what was reached (Ctrl-C again quits)",
              flush=True)

    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    start, wait, t_wait = time.time(), 0.0, time.time()
    for b, (images, labels) in enumerate(loader):
        wait += time.time() - t_wait
        for stream in filter(None, streams.values()):  # what the variants queued is done before the pool changes
            torch.cuda.current_stream().wait_stream(stream)
        for v, step, size, lr in pending:
            recent = torch.stack(losses[v.name][step - 50:step]).float().mean().item()
            logs[v.name].write(f"step {step}/{steps[v.name]} draws {step * v.batch} size {size} lr {lr:.5f} "
                               f"loss {recent:.4f}\n")
        pending.clear()
        slot = b % args.pool
        pool_x[slot * rb:(slot + 1) * rb].copy_(images, non_blocking=True)
        pool_y[slot * rb:(slot + 1) * rb].copy_(labels, non_blocking=True)
        filled = min(b + 1, args.pool) * rb
        for v in variants:
            stream = streams[v.name]
            if stream is not None:
                stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                train_variant(v, filled)
        if b % 50 == 0:
            print(f"rendered batch {b + 1}/{n_render} wall {time.time() - start:.0f} s waited {wait:.0f} s", flush=True)
        t_wait = time.time()
        if interrupted or (args.deadline is not None and time.time() - start > args.deadline):
            why = "interrupted" if interrupted else "deadline"
            print(f"{why}: stopped after rendered batch {b + 1} of {n_render}", flush=True)
            break
    signal.signal(signal.SIGINT, previous_handler)
    for stream in filter(None, streams.values()):
        torch.cuda.current_stream().wait_stream(stream)
    wall = time.time() - start
    top1 = evaluate(runs, val)
    timing = {}
    if graphs:  # one step of each variant alone at 224 px (its graph is captured for 224 by now)
        for v in variants:
            g = steppers[v.name]
            x = normalize(pool_x[:v.batch], 224)
            y = pool_y[:v.batch]
            g({0: (x, y)}, 1e-9)
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(20):
                g({0: (x, y)}, 1e-9)
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t) / 20 * 1000
            timing[v.name] = {"ms_per_step_224_alone": round(ms, 2), "draws_per_s_224_alone": round(v.batch / ms * 1000)}
    result = {"default_model": args.model, "samples": args.samples, "reuse": args.reuse, "val_images": len(val[1]),
              "train_wall_s_all_variants": round(wall, 1), "waited_for_data_s": round(wait, 1),
              "device": torch.cuda.get_device_name() if graphs else "cpu", "variants": {}}
    for v in variants:
        final = torch.stack(losses[v.name][-50:]).float().mean().item() if losses[v.name] else None
        entry = {**asdict(v), "steps": steps[v.name], "steps_done": done[v.name], "top1": top1[v.name]["top1_per_step"][-1],
                 "final_loss": None if final is None else round(final, 4), **timing.get(v.name, {})}
        result["variants"][v.name] = entry
        logs[v.name].write("eval " + json.dumps(entry) + "\n")
        logs[v.name].close()
        print(f"{v.name:<14} batch {v.batch:>4} lr {v.lr:<8g} low {v.low}x{v.frac:<4g} top1 {entry['top1']:>6.2f} "
              f"loss {entry['final_loss'] if final is None else round(final, 3)} {timing.get(v.name, {}).get('draws_per_s_224_alone', '')}", flush=True)
    (out / "pilot.json").write_text(json.dumps(result, indent=1))
    if interrupted:  # what was reached is written; the exit says it is not the whole schedule
        raise SystemExit(130)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # before or after the training loop (which stops cleanly on Ctrl-C)
        raise SystemExit("interrupted: nothing evaluated; the logs so far are kept") from None
