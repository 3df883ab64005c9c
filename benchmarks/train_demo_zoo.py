"""Train the demo zoo on cluttered Fashion-MNIST: one recipe, the same batches, for every model.

    python benchmarks/train_demo_zoo.py --out runs/zoo            # all 7 demo models (one GPU)
    python benchmarks/train_demo_zoo.py --models demo_resnet_tdjoint --out runs/rerun

Recipe (the same for every model, as the paper trains all its models alike): fresh canvases for
every sample (no canvas is seen twice), random horizontal flip, SGD with Nesterov momentum 0.9,
lr 0.2 (batch 256) with linear warm-up and cosine decay, weight decay 5e-5, label smoothing 0.1,
bf16 autocast, channels-last. All models see the same batches in the same order; each model's
initial weights come from ``seed`` and its name, so a single model re-trained alone starts and
sees data exactly as in the full run. Evaluation: top-1 per computation step on the 5 000-image
validation split (the Fashion-MNIST test set; the same pixels ``tdviz demo`` writes).

Writes ``<out>/demo_zoo_fp16.pt`` (fp16 state dicts; ``--export`` turns them into the shipped
safetensors) and ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

import tdviz
from tdviz.demo.canvas import load_source, render_sample
from tdviz.demo.dataset import IMAGENET_MEAN, IMAGENET_STD
from tdviz.models.demo_zoo import DEMO_MODELS, DERIVED_BUFFER


class Canvases(Dataset):
    """uint8 canvases (normalised on the GPU, which keeps worker traffic 4x smaller)."""

    def __init__(self, split: str, n: int, seed: int, fashion_dir=None):
        self.split, self.n, self.seed = split, n, seed
        self.images, self.labels = load_source(split, fashion_dir)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        s = render_sample(self.split, i, self.seed, self.images, self.labels)
        return torch.from_numpy(np.ascontiguousarray(s.image)), s.label


def normalize(batch_uint8: torch.Tensor, device) -> torch.Tensor:
    x = batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def build(name: str, seed: int, device) -> torch.nn.Module:
    torch.manual_seed(seed + zlib.crc32(name.encode()))
    return tdviz.create_model(name).to(device).to(memory_format=torch.channels_last)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


@torch.no_grad()
def evaluate(models: dict, loader, device) -> dict:
    """Top-1 (%) per step and for the most-confident-step rule, on the validation loader."""
    correct = {n: None for n in models}
    correct_mc = {n: 0 for n in models}
    total = 0
    for images, labels in loader:
        x = normalize(images, device)
        y = labels.to(device)
        total += len(y)
        for name, model in models.items():
            out = tdviz.run_steps(model, x)
            logits = out.logits.float()
            hits = (logits.argmax(-1) == y[:, None]).sum(0).cpu()
            correct[name] = hits if correct[name] is None else correct[name] + hits
            correct_mc[name] += int((out.most_confident()[1].argmax(-1) == y).sum())
    return {n: {"top1_per_step": [round(100 * float(c) / total, 2) for c in correct[n]],
                "top1_most_confident": round(100 * correct_mc[n] / total, 2), "val_images": total}
            for n in models}


def main() -> None:
    p = argparse.ArgumentParser(description="Train the tdviz demo zoo.")
    p.add_argument("--models", nargs="*", default=list(DEMO_MODELS))
    p.add_argument("--samples", type=int, default=600_000, help="training canvases (each seen once)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--wd", type=float, default=5e-5)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val", type=int, default=5000)
    p.add_argument("--workers", type=int, default=14)
    p.add_argument("--fashion-dir", default=None)
    p.add_argument("--out", default="runs/zoo")
    p.add_argument("--export", default=None, help="only convert <out>/demo_zoo_fp16.pt into safetensors in this dir")
    args = p.parse_args()
    out = Path(args.out)
    if args.export:
        export(out / "demo_zoo_fp16.pt", Path(args.export))
        return
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    config = {k: v for k, v in vars(args).items() if k != "export"}
    config.update(device=torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
                  torch=torch.__version__)
    print("config:", json.dumps(config), flush=True)

    models = {n: build(n, args.seed, device) for n in args.models}
    opts = {n: torch.optim.SGD(m.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.wd)
            for n, m in models.items()}
    gen = torch.Generator().manual_seed(args.seed)
    train = DataLoader(Canvases("train", args.samples, args.seed, args.fashion_dir), batch_size=args.batch,
                       shuffle=False, num_workers=args.workers, pin_memory=True, drop_last=True,
                       persistent_workers=False, prefetch_factor=6, generator=gen)
    steps = len(train)
    gpu_time = {n: 0.0 for n in models}
    losses = {n: [] for n in models}
    start = time.time()
    flip_gen = torch.Generator(device=device).manual_seed(args.seed)
    for step, (images, labels) in enumerate(train):
        x = normalize(images, device)
        flip = torch.rand(len(x), device=device, generator=flip_gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        y = labels.to(device, non_blocking=True)
        lr = lr_at(step, steps, args.lr, args.warmup)
        for name, model in models.items():
            model.train()
            for group in opts[name].param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            gpu_time[name] += time.perf_counter() - t0
            losses[name].append(loss.item())
        if step % 200 == 0 or step == steps - 1:
            rate = (step + 1) * args.batch / (time.time() - start)
            mean_loss = {n: round(float(np.mean(v[-50:])), 3) for n, v in losses.items()}
            print(f"step {step + 1}/{steps} lr {lr:.4f} {rate:.0f} img/s loss {mean_loss}", flush=True)
    train_wall = time.time() - start

    val = DataLoader(Canvases("val", args.val, 0), batch_size=250, num_workers=args.workers)
    for m in models.values():  # evaluate exactly what ships: weights rounded to fp16
        m.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in m.state_dict().items()})
        m.eval()
    results = evaluate(models, val, device)
    for name, model in models.items():
        results[name].update(train_seconds=round(gpu_time[name], 1), train_wall_seconds_all_models=round(train_wall, 1),
                             params=tdviz.count_parameters(model), final_loss=round(float(np.mean(losses[name][-50:])), 4))
    (out / "results.json").write_text(json.dumps({"config": config, "results": results}, indent=2))
    torch.save({n: {k: v.half() if v.is_floating_point() else v for k, v in m.state_dict().items()}
                for n, m in models.items()}, out / "demo_zoo_fp16.pt")
    print(f"{'model':<22}{'step1':>8}{'stepT':>8}{'mostconf':>10}{'train s':>9}")
    for name, r in results.items():
        s = r["top1_per_step"]
        print(f"{name:<22}{s[0]:>8.2f}{s[-1]:>8.2f}{r['top1_most_confident']:>10.2f}{r['train_seconds']:>9.1f}")


def export(src: Path, dest: Path) -> None:
    """fp16 state dicts from a training run -> one safetensors file per model (the shipped weights)."""
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    for name, state in torch.load(src, map_location="cpu", weights_only=True).items():
        # FCA's DCT filters are fixed buffers that the model rebuilds; shipping them would cost 5 MB
        kept = {k: v.contiguous() for k, v in state.items() if not k.endswith(DERIVED_BUFFER)}
        save_file(kept, str(dest / f"{name}.safetensors"))
        print("wrote", dest / f"{name}.safetensors")


if __name__ == "__main__":
    main()
