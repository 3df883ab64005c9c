"""`tdviz wsol` and `tdviz resolution`: localization and accuracy tables."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from tdviz.errors import TdvizError

from .common import (
    command,
    console,
    device_option,
    ema_option,
    err,
    flag,
    json_option,
    layer_option,
    legacy_images_option,
    limit_option,
    models_option,
    num_classes_option,
    pick_device,
    pick_limit,
    print_skipped,
    seed_everything,
    seed_option,
    user_errors,
    warn_models,
    weights_option,
)


def print_wsol_table(results: dict, metric=None) -> None:
    """The WSOL table: per model and step the main columns of every metric measured."""
    from tdviz.wsol.metrics import METRICS

    shown = {"top1_loc", "top5_loc", "gt_known_loc", "maxboxacc_v2", "pxap", "top1_cls"}
    cols = [c for spec in METRICS.values() if spec.default or spec.name in (metric or ())
            for c in spec.columns if c[0] in shown or not spec.default]
    table = Table(title=f"WSOL, {results['images']} images (%; step 'mc' = most confident step)")
    table.add_column("model")
    table.add_column("step")
    for _, label in cols:
        table.add_column(label, justify="right")
    for name, steps in results["models"].items():
        for step, row in steps.items():
            table.add_row(name, step, *[f"{row[c]:.2f}" if row.get(c) is not None else "-" for c, _ in cols])
    console.print(table)


@command()
@user_errors
def wsol(
    model: list[str] = models_option(),
    weights: list[str] = weights_option(),
    num_classes: int = num_classes_option(),
    ema: bool = ema_option(),
    data: str = typer.Option(None, metavar="DIR", help="Images root (ImageFolder or flat); default: the demo "
                             "validation split."),
    boxes: str = typer.Option(None, metavar="PATH", help="ILSVRC XML folder, LOC_val_solution.csv, wsolevaluation metadata or COCO json."),
    protocol: list[str] = typer.Option(None, "--protocol", metavar="NAME", help="cam (the paper's Table 3) and/or wsol (MaxBoxAccV2, PxAP)."),
    method: str = typer.Option("gradcam", metavar="NAME", help="CAM method (a gradient method for the wsol protocol)."),
    topk: int = typer.Option(5, min=1, metavar="K", help="Classes per image for top-k loc."),
    cam_ratio: float = typer.Option(0.15, min=0.0, max=1.0, metavar="F", help="Grad-CAM box threshold as a fraction of the max."),
    limit: int = limit_option(None, "images (default: all; without --data, a demo split of 1000)"),
    images: int = legacy_images_option(),
    layer: str = layer_option(),
    batch_size: int = typer.Option(None, min=1, metavar="N", help="Images per batch (default: 128 on a GPU, 16 on a CPU)."),
    workers: int = typer.Option(None, min=0, metavar="N", help="Image-decoding processes (default: half the cores)."),
    box_workers: int = typer.Option(None, min=0, metavar="N", help="Box-extraction processes, 0: in the main process "
                                    "(default: the remaining cores but one)."),
    out: str = typer.Option("tdviz_wsol", metavar="DIR", help="Output folder (results.json, results.csv, records.jsonl)."),
    resume: bool = flag("--resume", help="Continue the run in --out (same models, weights, data and options; --limit "
                        "may grow)."),
    overwrite: bool = flag("--overwrite", help="Replace a run that --out already holds."),
    save_maps: str = typer.Option(None, "--save-maps", metavar="DIR", help="Folder to keep every image's per-step maps (npz)."),
    device: str = device_option(),
    decode: str = typer.Option("auto", metavar="WHERE", help="Where JPEGs are decoded: gpu (nvJPEG), cpu, or auto (the GPU when the "
                               "models are on one)."),
    precision: str = typer.Option("fp32", metavar="fp32|bf16", help="fp32, or bf16 (autocast and channels-last; faster on a GPU)."),
    metric: list[str] = typer.Option(None, "--metric", metavar="NAME", help="A metric beyond the default ones (e.g. gt_known_iou: "
                                     "GT-known loc at IoU 30/50/70)."),
    shard: str = typer.Option(None, metavar="I/N", help="I/N: evaluate every N-th batch from the I-th into OUT/shard-I-of-N; "
                              "the last shard to finish merges (default under torchrun: RANK/WORLD_SIZE)."),
    seed: int = seed_option(),
    as_json: bool = json_option(),
) -> None:
    """Weakly-supervised localization per model and per step: the paper's Table 3 and wsolevaluation's metrics."""
    from tdviz.datasets import load_dataset
    from tdviz.loading import resolve_models
    from tdviz.wsol.config import split_cores
    from tdviz.wsol.evaluate import PROTOCOLS, WsolConfig, demo_wsol_dataset, run_wsol

    protocols = tuple(protocol or PROTOCOLS)
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise TdvizError(f"--protocol {bad[0]} is unknown: use cam and/or wsol.")
    from tdviz.wsol.shards import parse_shard

    parts = parse_shard(shard) if shard else None  # None: torchrun's RANK/WORLD_SIZE, if any
    device = pick_device(device)
    workers, box_workers = split_cores(workers, box_workers)
    batch_size = batch_size or (128 if device.startswith("cuda") else 16)
    seed_everything(seed)
    zoo = resolve_models(model, weights, device=device, num_classes=num_classes, ema=ema)
    nets = zoo.models
    limit = pick_limit(limit, images, None)
    if data is None and boxes is None:
        dataset = demo_wsol_dataset(max(10, limit or 1000), workers, seed=seed)
    elif boxes is None:
        raise TdvizError("--data needs --boxes (an XML folder, LOC_val_solution.csv, wsolevaluation metadata or COCO json).")
    else:
        dataset = load_dataset(boxes, images_root=data)
    warn_models(zoo, [s.label for s in dataset.samples[:limit]])
    cfg = WsolConfig(protocols=protocols, topk=topk, cam_ratio=cam_ratio, method=method, batch_size=batch_size,
                     limit=limit, metrics=tuple(metric or ()), decode=decode, precision=precision, layer=layer)
    results = run_wsol(nets, dataset, out, cfg, resume=resume, save_maps=save_maps, workers=workers,
                       progress=not as_json, box_workers=box_workers, shard=parts, overwrite=overwrite)
    if results.get("merged") is False:
        index, count = results["shard"]
        err.print(f"shard {index}/{count} done ({results['images']} images, "
                                   f"{Path(out) / f'shard-{index}-of-{count}'}); {Path(out) / 'results.json'} is "
                                   "written when the last shard finishes.", highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    print_wsol_table(results, metric)
    print_skipped(results["skipped"])
    console.print(f"results: {Path(out) / 'results.json'}", highlight=False)


@command()
@user_errors
def resolution(
    model: list[str] = models_option(),
    weights: list[str] = weights_option(),
    num_classes: int = num_classes_option(),
    ema: bool = ema_option(),
    data: str = typer.Option(None, metavar="DIR", help="Images: an ImageFolder root (labels from its folders), or the images root "
                             "of --boxes; default: the demo validation split."),
    boxes: str = typer.Option(None, metavar="PATH", help="Annotations (as for tdviz wsol) to measure the Table-3 metrics too."),
    sizes: str = typer.Option("168:448:28", metavar="SIZES", help="Test sizes: START:STOP:STEP (STOP included) or a comma list."),
    crop: str = typer.Option(None, metavar="MODE", help="resize_crop (shorter side to size/crop-fraction, centre crop) or resize "
                             "(whole image to size x size); default: the model record's."),
    crop_fraction: float = typer.Option(None, min=0.01, max=1.0, metavar="F", help="Crop fraction (default: the model "
                                        "record's, 0.875 = 224 of 256)."),
    topk: int = typer.Option(5, min=1, metavar="K", help="Classes per image for top-k accuracy."),
    limit: int = limit_option(None, "images (default: all; without --data, a demo split of 1000)"),
    images: int = legacy_images_option(),
    batch_size: int = typer.Option(None, min=1, metavar="N", help="Images per batch (default: 64 on a GPU, 16 on a CPU)."),
    workers: int = typer.Option(None, min=0, metavar="N", help="Image-decoding processes (default: half the cores)."),
    box_workers: int = typer.Option(None, min=0, metavar="N", help="Box-extraction processes with --boxes."),
    out: str = typer.Option("tdviz_resolution", metavar="DIR", help="Output folder (results.json, resolution.png/.pdf, ...)."),
    resume: bool = flag("--resume", help="Continue the run in --out (same models, weights, data and options)."),
    overwrite: bool = flag("--overwrite", help="Replace a run that --out already holds."),
    device: str = device_option(),
    precision: str = typer.Option("fp32", metavar="fp32|bf16", help="fp32, or bf16 (autocast and channels-last)."),
    shard: str = typer.Option(None, metavar="I/N", help="I/N, as for tdviz wsol (default under torchrun: RANK/WORLD_SIZE)."),
    seed: int = seed_option(),
    as_json: bool = json_option(),
) -> None:
    """Accuracy at every test resolution per model and step: the paper's Table 2 and Fig. 3."""
    from tdviz.datasets import Dataset, load_dataset, read_imagefolder_labels
    from tdviz.loading import resolve_models
    from tdviz.resolution import parse_sizes, run_resolution
    from tdviz.wsol.config import WsolConfig, split_cores
    from tdviz.wsol.evaluate import demo_wsol_dataset
    from tdviz.wsol.shards import parse_shard

    size_list = parse_sizes(sizes)
    parts = parse_shard(shard) if shard else None
    device = pick_device(device)
    workers, box_workers = split_cores(workers, box_workers)
    seed_everything(seed)
    zoo = resolve_models(model, weights, device=device, num_classes=num_classes, ema=ema)
    limit = pick_limit(limit, images, None)
    if boxes is not None:
        dataset = load_dataset(boxes, images_root=data)
    elif data is not None:
        samples, problems = read_imagefolder_labels(data)
        dataset = Dataset("imagefolder", Path(data), samples, problems, Path(data))
    else:
        dataset = demo_wsol_dataset(max(10, limit or 1000), workers, seed=seed)
    warn_models(zoo, [s.label for s in dataset.samples[:limit]])
    cfg = WsolConfig(topk=topk, limit=limit, precision=precision,
                     batch_size=batch_size or (64 if device.startswith("cuda") else 16))
    run = run_resolution(zoo.models, dataset, out, size_list, cfg, crop, crop_fraction, resume=resume,
                         overwrite=overwrite, shard=parts, workers=workers, box_workers=box_workers,
                         progress=not as_json)
    if not run.merged:
        index, count = run.results["shard"]
        err.print(f"shard {index}/{count} done; {Path(out) / 'results.json'} is written when the "
                                   "last shard finishes.", highlight=False, soft_wrap=True)
        return
    if as_json:
        print(json.dumps(run.to_dict(), indent=2))
        return
    pct = lambda v: "-" if v is None else f"{v:.2f}"
    table = Table(title=f"Top-1 (%) across test sizes, {run.results['images']} images (Table 2; crop: {run.crop})")
    for col in ("model", "step", "best (size)", "train size", "lowest", "highest"):
        table.add_column(col, justify="left" if col in ("model", "step") else "right")
    for s in run.summary:
        table.add_row(s.model, s.step, f"{pct(s.best[1])} ({s.best[0]})", f"{pct(s.at_train)} ({s.train_size})",
                      f"{pct(s.lowest[1])} ({s.lowest[0]})", f"{pct(s.highest[1])} ({s.highest[0]})")
    console.print(table)
    print_skipped(run.results["skipped"])
    console.print(f"results: {Path(out) / 'results.json'}; figure: {Path(out) / 'resolution.png'} (.pdf)",
                  highlight=False)
