"""What GPU decoding and bf16 do to the demo's numbers, measured: pixels and metrics.

    python benchmarks/wsol_decode_effect.py --images 5000 --device cuda --out runs/effect

1. The demo validation split is written again as JPEGs (quality 90; the split itself is PNG, which
   the GPU decoder leaves to the CPU). For the first ``--pixel-images`` of them: how nvJPEG's
   pixels differ from PIL's (libjpeg-turbo), decoded and after each protocol's resize.
2. The whole demo zoo on those JPEGs, both protocols, with ``--decode cpu`` and ``--decode gpu``.
3. The whole zoo on the PNG split in fp32 and in bf16 (CPU decoding).
Each comparison lists, per metric, the largest difference over every model and step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image


def jpeg_copy(split: Path, out: Path, quality: int = 90) -> Path:
    for png in (split / "images").rglob("*.png"):
        target = out / png.relative_to(split / "images").with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(png).convert("RGB").save(target, quality=quality)
    return out


def pixel_stats(files, device) -> dict:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    from tdviz.images import Preprocess, read_image

    diffs, resized = [], {"cam": [], "wsol": []}
    pres = {"cam": Preprocess(), "wsol": Preprocess(mode="resize")}
    for f in files:
        cpu = torch.from_numpy(read_image(f, exif=False)).permute(2, 0, 1)
        gpu = decode_jpeg(torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8), mode=ImageReadMode.RGB,
                          device=device).cpu()
        diffs.append((cpu.int() - gpu.int()).abs().flatten())
        for key, pre in pres.items():
            a, b = pre.resized_tensor(cpu), pre.resized_tensor(gpu.to(device)).cpu()
            resized[key].append((a.int() - b.int()).abs().flatten())

    def describe(chunks):
        d = torch.cat(chunks).float()
        return {"max": int(d.max()), "mean": round(float(d.mean()), 4),
                "pixels_differing": round(float((d > 0).float().mean()), 4),
                "over_2_levels": round(float((d > 2).float().mean()), 5)}

    return {"images": len(files), "decoded": describe(diffs), **{f"resized_{k}": describe(v) for k, v in resized.items()}}


def per_model_top1(a: dict, b: dict) -> dict:
    """model -> step -> [top-1 in a, top-1 in b]: where a decoder change moves classification."""
    return {model: {step: [row.get("top1_cls"), b["models"][model][step].get("top1_cls")] for step, row in steps.items()}
            for model, steps in a["models"].items()}


def largest_differences(a: dict, b: dict) -> dict:
    worst: dict[str, float] = {}
    for model, steps in a["models"].items():
        for step, row in steps.items():
            for key, value in row.items():
                other = b["models"][model][step].get(key)
                if isinstance(value, (int, float)) and isinstance(other, (int, float)):
                    worst[key] = max(worst.get(key, 0.0), abs(value - other))
    return {k: round(v, 3) for k, v in worst.items()}


def main() -> None:
    import torch

    from tdviz.datasets import demo_class_index, load_dataset
    from tdviz.models.demo_zoo import DEMO_MODELS, load_demo_model
    from tdviz.wsol.config import WsolConfig
    from tdviz.wsol.evaluate import demo_wsol_dataset, run_wsol

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--pixel-images", type=int, default=500)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--box-workers", type=int, default=7)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--decode-only", action="store_true", help="skip the fp32 / bf16 comparison")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    models = {n: load_demo_model(n, device) for n in DEMO_MODELS}
    png = demo_wsol_dataset(args.images, workers=args.workers)
    split = Path(png.samples[0].path).parents[2]
    report: dict = {"images": len(png.samples)}

    def run(data, name, **cfg):
        res = run_wsol(models, data, args.out / name, WsolConfig(batch_size=args.batch, **cfg), workers=args.workers,
                       progress=False, box_workers=args.box_workers, overwrite=True)
        return res

    with tempfile.TemporaryDirectory() as tmp:
        jpegs = jpeg_copy(split, Path(tmp) / "jpeg")
        files = sorted(jpegs.rglob("*.jpg"))[: args.pixel_images]
        report["pixels"] = pixel_stats(files, device)
        jpg = load_dataset(split / "boxes_xml", images_root=jpegs, class_index=demo_class_index())
        by_id = {s.image_id: s for s in png.samples}
        for s in jpg.samples:  # the same masks, so PxAP is measured too
            s.mask_paths, s.ignore_path = by_id[s.image_id].mask_paths, by_id[s.image_id].ignore_path
        cpu, gpu = run(jpg, "jpeg_cpu", decode="cpu"), run(jpg, "jpeg_gpu", decode="gpu")
        report["gpu_vs_cpu_decoding"] = largest_differences(cpu, gpu)
        report["top1_cpu_vs_gpu_decoding"] = per_model_top1(cpu, gpu)
    if args.decode_only:
        print(json.dumps(report, indent=1))
        (args.out / "effect.json").write_text(json.dumps(report, indent=1) + "\n")
        return
    fp32, bf16 = run(png, "png_fp32", decode="cpu"), run(png, "png_bf16", decode="cpu", precision="bf16")
    report["bf16_vs_fp32"] = largest_differences(fp32, bf16)
    row = lambda r: r["models"]["demo_resnet_tdtop"]["2"]
    report["example_rows"] = {"fp32": row(fp32), "bf16": row(bf16), "jpeg_cpu": row(cpu), "jpeg_gpu": row(gpu)}
    text = json.dumps(report, indent=1)
    print(text)
    (args.out / "effect.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
