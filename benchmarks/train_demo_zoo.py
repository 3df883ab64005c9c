"""Train the demo zoo (generator v2): every paper configuration, several seeds, one recipe, one GPU.

    python benchmarks/train_demo_zoo.py --out runs/zoo4 --fashion-dir /usr/share/datasets/fashion-mnist

Recipe (the same for every model and seed):
* data: fresh v2 training canvases (:mod:`tdviz.demo.scene`, Fashion-MNIST *train* items), rendered
  once in CPU workers into a pool on the GPU that holds the last ``--pool`` batches; at every step
  each seed draws its own batch from the pool (uniformly, with replacement), so seeds differ in the
  canvases they see and their order (each canvas is drawn about once per seed on average), while
  the seven configurations of one seed see exactly the same batches; ``--reuse R`` renders one
  batch per R steps (about R draws per canvas), for runs so few that the CPU workers cannot render
  a batch per step;
* random horizontal flips (per seed); the first ``--low-res-fraction`` of the steps at
  ``--low-res`` px (the 224 px canvas resized with antialiasing on the GPU), the rest at 224;
* AdamW, lr 2e-3 at batch 256 with linear warm-up (200 steps) and cosine decay, weight decay 0.05 on
  weights (none on biases and norms), label smoothing 0.1, bf16 autocast, channels-last;
* initial weights from ``seed + crc32(name)``;
* on a GPU each run's step is a CUDA graph, replayed on its own stream, so the 21 small runs share
  the GPU instead of waiting for Python to launch their kernels (:mod:`zoo_steps`; ``--eager``
  launches them from Python, as on a CPU);
* ``--ema D``: an exponential moving average of the weights and buffers (decay D per step,
  :class:`torch.optim.swa_utils.AveragedModel`) is kept, evaluated and shipped; ``--eval-every N``
  logs top-1 of the raw weights (and the average) on the first ``--val-during`` validation canvases
  every N draws, so a run's learning curve is in its log.

``--deadline S`` stops a call after S seconds and keeps the whole state in ``<out>/train_state.pt``;
the same command with ``--resume`` continues it exactly (the pool is re-rendered from the same
canvases), so a schedule longer than one call of a lent machine still is one run.

Evaluation: top-1 per computation step and for the most-confident step on the first ``--val``
images of the v2 validation split (Fashion-MNIST *test* items; the pixels ``tdviz demo`` writes),
with weights rounded to fp16 as shipped. Writes ``<out>/weights/<name>_seed<k>.safetensors``,
``<out>/logs/<name>_seed<k>.log`` (loss every 25 steps, then the evaluation) and
``<out>/results.json``.

The defaults are the shipped zoo's recipe (zoo v4: 742 400 draws per run; the 21 runs took 16.3
minutes of one NVIDIA H200 in two calls, ``benchmarks/results/train_demo_zoo_v4/``). Recipe pilots
since (:mod:`train_recipe_pilot`, ``benchmarks/results/recipe_pilot_h200/``) found ``--lr 4e-3``
1.6-5.3 points better at the same draws; a next zoo would use it with ``--samples 1113600`` (the
rest of the 25-minute budget).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import signal
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset

import tdviz
from tdviz.demo.canvas import load_source
from tdviz.demo.dataset import IMAGENET_MEAN, IMAGENET_STD
from tdviz.demo.scene import render_sample
from tdviz.models.demo_zoo import DEMO_MODELS, DERIVED_BUFFER

try:
    from zoo_steps import EagerSteps, GraphSteps
except ImportError:  # imported as benchmarks.train_demo_zoo (the tests)
    from benchmarks.zoo_steps import EagerSteps, GraphSteps


class Canvases(Dataset):
    """uint8 v2 canvases and labels (normalised on the GPU, which keeps worker traffic 4x smaller)."""

    def __init__(self, split: str, n: int, seed: int, fashion_dir=None, start: int = 0):
        self.split, self.n, self.seed, self.start = split, n, seed, start
        self.images, self.labels = load_source(split, fashion_dir)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        s = render_sample(self.split, self.start + i, self.seed, self.images, self.labels)
        return torch.from_numpy(np.ascontiguousarray(s.image)), s.label


def _worker_init(_):
    import cv2

    cv2.setNumThreads(1)  # one render per core; OpenCV's own threads would oversubscribe
    torch.set_num_threads(1)


def normalize(batch_uint8: torch.Tensor, size: int) -> torch.Tensor:
    x = batch_uint8.permute(0, 3, 1, 2).float().div_(255)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def build(name: str, seed: int, device) -> torch.nn.Module:
    torch.manual_seed(seed + zlib.crc32(name.encode()))
    return tdviz.create_model(name).to(device).to(memory_format=torch.channels_last)


def param_groups(model: torch.nn.Module, wd: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only, not on biases and norm parameters."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def render_val(n: int, workers: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` validation canvases and labels, rendered once, kept on ``device`` as uint8."""
    loader = DataLoader(Canvases("val", n, 0), batch_size=250, num_workers=workers, worker_init_fn=_worker_init)
    images, labels = zip(*loader)
    return torch.cat(images).to(device), torch.cat(labels).to(device)


@torch.no_grad()
def evaluate(models: dict, val: tuple[torch.Tensor, torch.Tensor], n: int | None = None) -> dict:
    """Top-1 (%) per step and for the most-confident-step rule on the first ``n`` validation canvases
    (all by default); the models are left in eval mode."""
    correct = {k: None for k in models}
    correct_mc = {k: 0 for k in models}
    total = 0
    for m in models.values():
        m.eval()
    images_all, labels_all = val[0][:n], val[1][:n]
    for i in range(0, len(labels_all), 250):
        x = normalize(images_all[i:i + 250], 224)
        y = labels_all[i:i + 250]
        total += len(y)
        for key, model in models.items():
            out = tdviz.run_steps(model, x)
            hits = (out.logits.float().argmax(-1) == y[:, None]).sum(0).cpu()
            correct[key] = hits if correct[key] is None else correct[key] + hits
            correct_mc[key] += int((out.most_confident()[1].argmax(-1) == y).sum())
    return {k: {"top1_per_step": [round(100 * float(c) / total, 2) for c in correct[k]],
                "top1_most_confident": round(100 * correct_mc[k] / total, 2), "val_images": total}
            for k in models}


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """fp16 safetensors as shipped (FCA's DCT filters are rebuilt by the model, not stored)."""
    from safetensors.torch import save_file

    state = {k: v.detach().half().contiguous().cpu() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items() if not k.endswith(DERIVED_BUFFER)}
    save_file(state, str(path))


#: what may differ between the calls of one training run
_PER_CALL = ("deadline", "resume", "export", "workers", "out", "fashion_dir")


def save_state(path: Path, config: dict, step: int, wall: float, runs, opts, gens, losses, emas) -> None:
    """Everything a later ``--resume`` needs (tensors and plain values only: loadable with weights_only)."""
    state = {"config": json.dumps({k: v for k, v in config.items() if k not in _PER_CALL}), "step": step,
             "wall": wall, "runs": {}}
    for (name, seed), model in runs.items():
        state["runs"][f"{name}|{seed}"] = {"model": model.state_dict(), "opt": opts[(name, seed)].state_dict(),
                                           "losses": [float(x) for x in losses[(name, seed)]]}
        if emas:
            state["runs"][f"{name}|{seed}"]["ema"] = emas[(name, seed)].state_dict()
    state["gens"] = {str(s): g.get_state() for s, g in gens.items()}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a run killed while saving keeps its previous state


def restore(path: Path, config: dict, runs, opts, gens, losses, device, emas) -> tuple[int, float]:
    """Load a stopped run's state into the freshly built runs; the step to continue from and the wall time so far."""
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist: there is no stopped run to resume in this --out.")
    state = torch.load(path, map_location=device, weights_only=True)
    mine = json.dumps({k: v for k, v in config.items() if k not in _PER_CALL})
    if state["config"] != mine:
        raise SystemExit(f"error: {path} was trained with other settings ({state['config']}); "
                         "resume with the same options, or start a new --out.")
    for (name, seed), model in runs.items():
        saved = state["runs"][f"{name}|{seed}"]
        model.load_state_dict(saved["model"])
        opts[(name, seed)].load_state_dict(saved["opt"])
        losses[(name, seed)].extend(torch.tensor(x, device=device) for x in saved["losses"])
        if emas:
            emas[(name, seed)].load_state_dict(saved["ema"])
    for s, g in gens.items():
        g.set_state(state["gens"][str(s)].cpu())
    return int(state["step"]), float(state["wall"])


def check_args(args, parser: argparse.ArgumentParser) -> None:
    """One clear line for what cannot train: an unknown or repeated model or seed, too few draws."""
    unknown = [m for m in args.models if m not in DEMO_MODELS]
    if unknown:
        parser.error(f"--models: not a demo model: {', '.join(unknown)}; choose from {', '.join(DEMO_MODELS)}")
    for flag, values in (("--models", args.models), ("--seeds", args.seeds)):
        if len(set(values)) != len(values) or not values:
            parser.error(f"{flag} must name each entry once (got {' '.join(map(str, values)) or 'none'})")
    for flag in ("batch", "pool", "reuse", "val", "val_during", "workers"):
        if getattr(args, flag) < (0 if flag == "workers" else 1):
            parser.error(f"--{flag.replace('_', '-')} must be {'>= 0' if flag == 'workers' else 'positive'}")
    if args.samples < args.batch:
        parser.error(f"--samples {args.samples} is less than one --batch ({args.batch}): nothing would train")


def main() -> None:
    p = argparse.ArgumentParser(description="Train the tdviz demo zoo (generator v2, several seeds).")
    p.add_argument("--models", nargs="*", default=list(DEMO_MODELS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=742_400, help="training draws per run")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=200, help="steps of linear warm-up")
    p.add_argument("--low-res", type=int, default=160)
    p.add_argument("--low-res-fraction", type=float, default=0.6)
    p.add_argument("--pool", type=int, default=16, help="batches kept on the GPU to draw from")
    p.add_argument("--reuse", type=int, default=1,
                   help="training steps per rendered batch (each step still draws its batch from the pool)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--val", type=int, default=5000)
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this decay and ship it (0: off)")
    p.add_argument("--eval-every", type=int, default=200_000,
                   help="log top-1 on the first --val-during validation canvases every this many draws (0: never)")
    p.add_argument("--val-during", type=int, default=2000)
    p.add_argument("--eager", action="store_true",
                   help="launch every kernel from Python instead of replaying each run's step as a CUDA graph")
    p.add_argument("--workers", type=int, default=15)
    p.add_argument("--fashion-dir", default=None)
    p.add_argument("--deadline", type=float, default=None,
                   help="stop after this many seconds of this call, keeping the state in <out>/train_state.pt")
    p.add_argument("--resume", action="store_true", help="continue the training stopped in --out")
    p.add_argument("--export", default=None, help="also write the first seed's weights here under the model names")
    p.add_argument("--out", default="runs/zoo4")
    args = p.parse_args()
    check_args(args, p)
    out = Path(args.out)
    (out / "weights").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    config = dict(vars(args), generator="v2",
                  device=torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
                  torch=torch.__version__)
    print("config:", json.dumps(config), flush=True)

    try:
        load_source("train", args.fashion_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    runs = {(n, s): build(n, s, device) for s in args.seeds for n in args.models}
    graphs = device.type == "cuda" and not args.eager
    opts = {k: torch.optim.AdamW(param_groups(m, args.wd), lr=args.lr, capturable=graphs) for k, m in runs.items()}
    emas = {k: AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True)
            for k, m in runs.items()} if args.ema else {}
    gens = {s: torch.Generator(device=device).manual_seed(1000 + s) for s in args.seeds}
    losses: dict = {k: [] for k in runs}
    first, wall_before = 0, 0.0
    state_path = out / "train_state.pt"
    if args.resume:
        first, wall_before = restore(state_path, config, runs, opts, gens, losses, device, emas)
    # one log per run, open for the whole training loop and closed after the evaluation
    logs = {k: open(out / "logs" / f"{k[0]}_seed{k[1]}.log", "a" if args.resume else "w",  # noqa: SIM115
                    encoding="utf-8") for k in runs}
    for k, fh in logs.items():
        fh.write(f"resumed at step {first}\n" if args.resume else
                 f"run {k[0]} seed {k[1]}\nconfig {json.dumps(config)}\n")
    steps = args.samples // args.batch
    train_step = GraphSteps(runs, opts, emas, device) if graphs else EagerSteps(runs, opts, emas)
    val = render_val(args.val, args.workers, device)
    pool_x = torch.empty((args.pool * args.batch, 224, 224, 3), dtype=torch.uint8, device=device)
    pool_y = torch.empty((args.pool * args.batch,), dtype=torch.long, device=device)

    def loader(begin: int, end: int) -> DataLoader:
        """Batches ``begin .. end-1`` of the training stream (the same canvases in any call)."""
        data = Canvases("train", (end - begin) * args.batch, args.data_seed, args.fashion_dir, start=begin * args.batch)
        return DataLoader(data, batch_size=args.batch, shuffle=False, num_workers=args.workers, pin_memory=device.type == "cuda",
                          drop_last=True, prefetch_factor=4 if args.workers else None, worker_init_fn=_worker_init)

    def into_pool(step: int, images, labels) -> None:
        slot = step % args.pool
        pool_x[slot * args.batch:(slot + 1) * args.batch].copy_(images, non_blocking=True)
        pool_y[slot * args.batch:(slot + 1) * args.batch].copy_(labels, non_blocking=True)

    interrupted: list[bool] = []

    def on_interrupt(signum, frame):  # Ctrl-C: finish the step under way, then keep the state
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        print("interrupted: finishing this step and keeping the state (Ctrl-C again quits at once)", flush=True)

    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    # rendered batch b feeds steps b * reuse .. b * reuse + reuse - 1; a call stops between batches
    reuse = args.reuse
    first_batch, n_batches = first // reuse, -(-steps // reuse)
    refill = max(0, first_batch - args.pool)  # a resumed run re-renders the pool it had: the same pixels
    for j, (images, labels) in enumerate(loader(refill, first_batch) if first_batch else []):
        into_pool(refill + j, images, labels)
    low_steps = round(args.low_res_fraction * steps)
    start = time.time()
    wait = 0.0
    t_wait = time.time()
    stopped = steps
    for b, (images, labels) in enumerate(loader(first_batch, n_batches), start=first_batch):
        wait += time.time() - t_wait
        into_pool(b, images, labels)
        filled = min(b + 1, args.pool) * args.batch
        last = min((b + 1) * reuse, steps)
        for step in range(b * reuse, last):
            size = args.low_res if step < low_steps else 224
            lr = lr_at(step, steps, args.lr, args.warmup)
            batches = {}
            for seed in args.seeds:
                idx = torch.randint(0, filled, (args.batch,), device=device, generator=gens[seed])
                x = normalize(pool_x[idx], size)
                flip = torch.rand(len(x), device=device, generator=gens[seed]) < 0.5
                batches[seed] = (torch.where(flip[:, None, None, None], x.flip(3), x), pool_y[idx])
            for key, loss in train_step(batches, lr).items():
                losses[key].append(loss)
            if args.eval_every and ((step + 1) * args.batch) // args.eval_every > (step * args.batch) // args.eval_every:
                during = evaluate(runs, val, args.val_during)
                during_ema = evaluate({k: e.module for k, e in emas.items()}, val, args.val_during) if emas else {}
                for key in runs:
                    line = f"eval_at draws {(step + 1) * args.batch} top1 {during[key]['top1_per_step']}"
                    logs[key].write(line + (f" ema {during_ema[key]['top1_per_step']}\n" if emas else "\n"))
            if step % 25 == 24 or step == steps - 1:
                for key in runs:
                    recent = torch.stack(losses[key][-25:]).float().mean().item()
                    logs[key].write(f"step {step + 1}/{steps} samples {(step + 1) * args.batch} size {size} "
                                    f"lr {lr:.4f} loss {recent:.4f}\n")
                    logs[key].flush()
                rate = (step + 1 - first) * args.batch / (time.time() - start)
                print(f"step {step + 1}/{steps} size {size} {rate:.0f} draws/s per run, waited for data "
                      f"{wait:.0f} s, capturing graphs {train_step.capture_seconds:.0f} s, wall {time.time() - start:.0f} s",
                      flush=True)
        t_wait = time.time()
        late = args.deadline is not None and time.time() - start > args.deadline
        if (late or interrupted) and last < steps:
            stopped = last
            break
    train_wall = wall_before + time.time() - start
    signal.signal(signal.SIGINT, previous_handler)
    if stopped < steps:
        save_state(state_path, config, stopped, train_wall, runs, opts, gens, losses, emas)
        why = "interrupted" if interrupted else "deadline"
        for fh in logs.values():
            fh.write(f"stopped at step {stopped} ({why})\n")
            fh.close()
        print(f"{why}: stopped after step {stopped} of {steps}; continue with the same command and --resume",
              flush=True)
        if interrupted:
            raise SystemExit(130)
        return

    raw = evaluate(runs, val) if emas else {}
    for key, m in runs.items():
        if emas:  # what ships is the average
            m.load_state_dict(emas[key].module.state_dict())
        save_weights(m, out / "weights" / f"{key[0]}_seed{key[1]}.safetensors")
        # evaluate exactly what ships: weights rounded to fp16
        m.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in m.state_dict().items()})
        m.eval()
    results = evaluate(runs, val)
    table = {}
    for key, r in results.items():
        r.update(train_wall_seconds_all_runs=round(train_wall, 1),
                 waited_for_data_seconds=round(wait, 1), params=tdviz.count_parameters(runs[key]),
                 cuda_graphs=graphs, graph_capture_seconds_this_call=round(train_step.capture_seconds, 1),
                 peak_gpu_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if graphs else None,
                 final_loss=round(torch.stack(losses[key][-25:]).float().mean().item(), 4))
        if emas:
            r.update(ema=args.ema, top1_per_step_without_ema=raw[key]["top1_per_step"])
        logs[key].write("eval " + json.dumps(r) + "\n")
        logs[key].close()
        table[f"{key[0]}_seed{key[1]}"] = r
    (out / "results.json").write_text(json.dumps({"config": config, "results": table}, indent=1))
    if args.export:
        dest = Path(args.export)
        dest.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            save_weights(runs[(name, args.seeds[0])], dest / f"{name}.safetensors")
    state_path.unlink(missing_ok=True)
    print(f"{'run':<30}{'step1':>8}{'stepT':>8}{'mostconf':>10}")
    for key, r in table.items():
        s = r["top1_per_step"]
        print(f"{key:<30}{s[0]:>8.2f}{s[-1]:>8.2f}{r['top1_most_confident']:>10.2f}")


if __name__ == "__main__":
    main()
