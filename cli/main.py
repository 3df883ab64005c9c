"""`tdviz` commands. Each command parses its flags, calls the library, and prints the result."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.table import Table

import tdviz
from tdviz.errors import TdvizError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="See and measure top-down attention in CNNs.")
# tables stay readable when the output is piped or logged (rich assumes 80 columns there)
console = Console() if sys.stdout.isatty() else Console(width=160)


@app.callback()
def _root() -> None:
    """See and measure top-down attention in CNNs."""


def _fail(message: str, code: int) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn every error into one line on stderr and a non-zero exit, never a traceback: a user's
    mistake (TdvizError) or a failed file operation (read-only or full disk) exits 1, Ctrl-C 130,
    and anything else, which is a bug in tdviz, exits 2 naming itself as one."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tdviz.errors import os_error_message

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except TdvizError as exc:
            _fail(str(exc), 1)
        except OSError as exc:
            _fail(os_error_message(exc), 1)
        except KeyboardInterrupt:
            _fail("interrupted; what was finished is kept (commands with --resume continue from it).", 130)
        except MemoryError:
            _fail("out of memory: use a smaller --batch-size or fewer --workers.", 1)
        except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
            _fail(f"internal error, a bug in tdviz ({type(exc).__name__}: {str(exc).strip()[:300]}); please report "
                  "it with the command that caused it.", 2)

    return wrapper


@app.command()
@user_errors
def models(
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
    size: int = typer.Option(224, min=32, max=2048, help="Input size for the GMACs column."),
) -> None:
    """List the registered models with parameter count and GMACs."""
    rows = tdviz.describe_models(size=size)
    if as_json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return
    table = Table(title=f"tdviz models (GMACs at {size}x{size}; the paper's 'GFLOPs' count MACs)")
    for col in ("name", "params (M)", "GMACs", "steps", "description"):
        table.add_column(col, justify="right" if col in ("params (M)", "GMACs", "steps") else "left")
    for r in rows:
        table.add_row(r.name, f"{r.params / 1e6:.2f}", f"{r.gmacs:.2f}", str(r.steps), r.description)
    console.print(table)


@app.command()
@user_errors
def demo(
    images: int = typer.Option(2000, help="Validation images to generate and score (cached after the first run)."),
    model: list[str] = typer.Option(None, "--model", help="Demo model(s) to score (default: all seven)."),
    out: str = typer.Option(None, help="Folder for demo_classification.json (default: <split>/results)."),
    workers: int = typer.Option(2, min=0, help="Processes for image generation and decoding."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run the built-in benchmark: cluttered Fashion-MNIST, the shipped demo zoo, accuracy per step."""
    from tdviz.demo.run import run_demo

    report = run_demo(images, model or None, out, workers, progress=not as_json)
    if as_json:
        print(json.dumps({"split": str(report.split), "results": [a.to_dict() for a in report.accuracy]}, indent=2))
        return
    steps = max(len(a.top1) for a in report.accuracy)
    table = Table(title=f"Demo: cluttered Fashion-MNIST validation, {report.accuracy[0].images} images, top-1 %")
    table.add_column("model")
    for t in range(1, steps + 1):
        table.add_column(f"step {t}", justify="right")
    table.add_column("most confident", justify="right")
    for a in report.accuracy:
        cells = [f"{a.top1[t]:.2f}" if t < len(a.top1) else "" for t in range(steps)]
        table.add_row(a.model, *cells, f"{a.top1_most_confident:.2f}")
    console.print(table)
    skipped = sum(len(a.skipped) for a in report.accuracy[:1])
    if skipped:
        console.print(f"[yellow]{skipped} unreadable image(s) skipped[/yellow]")
    console.print(f"split: {report.split}\nresults: {report.results_file}")


@app.command()
@user_errors
def cam(
    images: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    model: str = typer.Option(None, help="Registered model name (default: the shipped demo_resnet_tdjoint)."),
    weights: str = typer.Option(None, help="Checkpoint (.pth/.pth.tar/.safetensors); alone, the model is inferred."),
    ema: bool = typer.Option(False, help="Use the checkpoint's state_dict_ema."),
    steps: bool = typer.Option(False, "--steps", help="One map per computation step (default: the final step only)."),
    method: str = typer.Option("gradcam", help="Any grad-cam method: gradcam, gradcam++, layercam, scorecam, ..."),
    topk: int = typer.Option(1, min=1, help="Maps for the top-k classes of each step (a row per class)."),
    class_: list[str] = typer.Option(None, "--class", help="Map these classes (name or index) instead of the top-k."),
    layer: str = typer.Option(None, help="Target layer (default: the layer feeding the classifier)."),
    size: int = typer.Option(None, min=32, max=4096, help="Input size (default 224; Resize 256 + CenterCrop 224)."),
    out: str = typer.Option("tdviz_cam", help="Output folder, or a .png/.pdf file name for a single image."),
    save_maps: bool = typer.Option(False, "--save-maps", help="Also write each image's maps (npz)."),
    as_json: bool = typer.Option(False, "--json", help="Print classes, scores and written files as JSON."),
) -> None:
    """Grad-CAM (or any grad-cam method) at every computation step: the paper's Fig. 4 for your images."""
    from tdviz.cam_files import cam_files
    from tdviz.classnames import class_names_for, resolve_class
    from tdviz.loading import resolve_model

    net, note = resolve_model(model, weights, ema)
    chosen = None
    if class_:
        names = class_names_for(net, net.fc.out_features if hasattr(net, "fc") else len(getattr(net, "class_names", [])))
        chosen = [resolve_class(c, names) for c in class_]
    run = cam_files(images, net, out, steps=steps, method=method, topk=topk, layer=layer, size=size,
                    save_maps=save_maps, classes=chosen, title=getattr(net, "tdviz_name", ""))
    if as_json:
        print(json.dumps({"model": note, **run.to_dict()}, indent=2))
    else:
        err = Console(stderr=True)
        err.print(f"model: {note}", highlight=False)
        for r in run.records:
            per_step = "; ".join(f"step {t}: {c[0]} {100 * s[0]:.1f}%" for t, c, s in zip(r.steps, r.classes, r.scores))
            console.print(f"{r.image}: {per_step} -> {r.figures[0]}", highlight=False, soft_wrap=True)
    for problem in run.problems:
        Console(stderr=True).print(f"[red]skipped:[/red] {problem}", highlight=False, soft_wrap=True)
    if run.problems:
        raise typer.Exit(1)


@app.command()
@user_errors
def wsol(
    model: list[str] = typer.Option(None, "--model", help="Model(s) to evaluate (default: the whole demo zoo)."),
    weights: list[str] = typer.Option(None, "--weights", help="Checkpoint per --model, in the same order."),
    data: str = typer.Option(None, help="Images root (ImageFolder or flat); default: the demo validation split."),
    boxes: str = typer.Option(None, help="ILSVRC XML folder, LOC_val_solution.csv, wsolevaluation metadata or COCO json."),
    protocol: list[str] = typer.Option(None, "--protocol", help="cam (the paper's Table 3) and/or wsol (MaxBoxAccV2, PxAP)."),
    method: str = typer.Option("gradcam", help="CAM method (a gradient method for the wsol protocol)."),
    topk: int = typer.Option(5, min=1, help="Classes per image for top-k loc."),
    cam_ratio: float = typer.Option(0.15, min=0.0, max=1.0, help="Grad-CAM box threshold as a fraction of the max."),
    limit: int = typer.Option(None, min=1, help="Only the first N images (quick looks)."),
    images: int = typer.Option(1000, min=10, help="Demo split size when --data is not given."),
    batch_size: int = typer.Option(None, min=1, help="Images per batch (default: 128 on a GPU, 16 on a CPU)."),
    workers: int = typer.Option(None, min=0, help="Image-decoding processes (default: half the cores)."),
    box_workers: int = typer.Option(None, min=0, help="Box-extraction processes, 0: in the main process "
                                    "(default: the remaining cores but one)."),
    out: str = typer.Option("tdviz_wsol", help="Output folder (results.json, results.csv, records.jsonl)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (same models, weights, data and "
                                "options; --limit may grow)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run that --out already holds."),
    save_maps: str = typer.Option(None, "--save-maps", help="Folder to keep every image's per-step maps (npz)."),
    device: str = typer.Option(None, help="cuda or cpu (default: cuda when there is a GPU)."),
    decode: str = typer.Option("auto", help="Where JPEGs are decoded: gpu (nvJPEG), cpu, or auto (the GPU when the "
                               "models are on one)."),
    precision: str = typer.Option("fp32", help="fp32, or bf16 (autocast and channels-last; faster on a GPU)."),
    metric: list[str] = typer.Option(None, "--metric", help="A metric beyond the default ones (e.g. gt_known_iou: "
                                     "GT-known loc at IoU 30/50/70)."),
    shard: str = typer.Option(None, help="I/N: evaluate every N-th image from the I-th into OUT/shard-I-of-N; "
                              "the last shard to finish merges (default under torchrun: RANK/WORLD_SIZE)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Weakly-supervised localization per model and per step: the paper's Table 3 and wsolevaluation's metrics."""
    from tdviz.datasets import load_dataset
    from tdviz.loading import resolve_models
    from tdviz.wsol.evaluate import PROTOCOLS, WsolConfig, demo_wsol_dataset, run_wsol

    protocols = tuple(protocol or PROTOCOLS)
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise TdvizError(f"--protocol {bad[0]} is unknown: use cam and/or wsol.")
    from tdviz.wsol.shards import parse_shard

    parts = parse_shard(shard) if shard else None  # None: torchrun's RANK/WORLD_SIZE, if any
    if device is None:  # decided here: importing torch for a flag default would slow every worker's start
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per process
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    # decoding and box extraction share the cores about evenly (measured best on a 16-core H100 host)
    cores = os.cpu_count() or 1
    workers = (cores // 2) if workers is None else workers
    box_workers = max(0, cores - 1 - workers) if box_workers is None else box_workers
    batch_size = batch_size or (128 if device.startswith("cuda") else 16)
    zoo = resolve_models(model, weights, device=device)
    nets = zoo.models
    if data is None and boxes is None:
        dataset = demo_wsol_dataset(images, workers)
    elif boxes is None:
        raise TdvizError("--data needs --boxes (an XML folder, LOC_val_solution.csv, wsolevaluation metadata or COCO json).")
    else:
        dataset = load_dataset(boxes, images_root=data)
    cfg = WsolConfig(protocols=protocols, topk=topk, cam_ratio=cam_ratio, method=method, batch_size=batch_size,
                     limit=limit, metrics=tuple(metric or ()), decode=decode, precision=precision)
    results = run_wsol(nets, dataset, out, cfg, resume=resume, save_maps=save_maps, workers=workers,
                       progress=not as_json, box_workers=box_workers, shard=parts, overwrite=overwrite)
    if results.get("merged") is False:
        index, count = results["shard"]
        Console(stderr=True).print(f"shard {index}/{count} done ({results['images']} images, "
                                   f"{Path(out) / f'shard-{index}-of-{count}'}); {Path(out) / 'results.json'} is "
                                   "written when the last shard finishes.", highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(results, indent=2))
        return
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
    for problem in results["skipped"][:20]:
        Console(stderr=True).print(f"[yellow]skipped:[/yellow] {problem}", highlight=False, soft_wrap=True)
    if len(results["skipped"]) > 20:
        Console(stderr=True).print(f"... and {len(results['skipped']) - 20} more skipped", highlight=False)
    console.print(f"results: {Path(out) / 'results.json'}", highlight=False)


@app.command()
@user_errors
def selectivity(
    model: list[str] = typer.Option(None, "--model", help="Model(s) (default: the whole demo zoo)."),
    weights: list[str] = typer.Option(None, "--weights", help="Checkpoint per --model, in the same order."),
    data: str = typer.Option(None, help="ImageFolder root (default: the demo validation split)."),
    layer: list[str] = typer.Option(None, "--layer", help="Layer(s) to measure (default: the feature layer)."),
    images: int = typer.Option(1000, min=10, help="Demo split size when --data is not given."),
    out: str = typer.Option("tdviz_selectivity", help="Folder for selectivity.json and the plots."),
    workers: int = typer.Option(2, min=0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Channel selectivity per model, layer and computation step (class selectivity index, Gini,
    Hoyer, 90%-mass fraction, CAM focus)."""
    from tdviz.classify import ImageFolderDataset
    from tdviz.images import Preprocess
    from tdviz.loading import resolve_models
    from tdviz.selectivity import TABLE_COLUMNS, plot_distributions, run_selectivity, selectivity_table_rows

    nets = resolve_models(model, weights).models
    if data is None:
        from tdviz.demo import make_demo_split

        root = make_demo_split(n=images, workers=workers) / "images"
    else:
        root = data
    preprocs = {Preprocess.for_model(m) for m in nets.values()}
    if len(preprocs) > 1:
        raise TdvizError("These models were trained with different preprocessing; measure them in separate calls.")
    dataset = ImageFolderDataset(root, preprocs.pop())
    results, skipped = run_selectivity(nets, dataset, layer or None, workers=workers, progress=not as_json)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    unreadable = len(skipped) - len(dataset.problems)  # the rest are notes on the folder (e.g. link loops)
    payload = {"images": len(dataset) - unreadable, "skipped": skipped,
               "results": [{"model": m, "layer": lay, "step": t, **r.to_dict()} for (m, lay, t), r in results.items()]}
    (out_dir / "selectivity.json").write_text(json.dumps(payload, indent=1))
    plots = plot_distributions(results, out_dir / "selectivity")
    if as_json:
        print(json.dumps(payload, indent=2))
    else:
        table = Table(title=f"Channel selectivity, {payload['images']} images (median \\[q1-q3])")
        for col in TABLE_COLUMNS:
            table.add_column(col)
        for row in selectivity_table_rows(results):
            table.add_row(*row)
        console.print(table)
        console.print(f"results: {out_dir / 'selectivity.json'}; plots: {', '.join(str(p) for p in plots)}",
                      highlight=False)
    for problem in skipped:
        Console(stderr=True).print(f"[yellow]skipped:[/yellow] {problem}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def gallery(
    model: list[str] = typer.Option(None, "--model", help="Model(s), a row each (default: the whole demo zoo)."),
    weights: list[str] = typer.Option(None, "--weights", help="Checkpoint per --model, in the same order."),
    images: list[str] = typer.Option(None, "--images", help="Image files, folders or globs."),
    demo: bool = typer.Option(False, "--demo", help="Use the demo validation split (with its boxes)."),
    n: int = typer.Option(12, min=1, help="Images from the demo split with --demo."),
    two_objects: bool = typer.Option(False, "--two-objects", help="With --demo: the two-object split."),
    method: str = typer.Option("gradcam", help="CAM method."),
    out: str = typer.Option("tdviz_gallery", help="Output folder (figures/, contact sheet, index.html)."),
) -> None:
    """Figure galleries: per image a row per model and a column per step, PNG/PDF, and an offline
    index.html with filters (open it in any browser)."""
    from tdviz.gallery import build_gallery, demo_gallery
    from tdviz.images import expand_inputs
    from tdviz.loading import resolve_models

    if demo == bool(images):
        raise TdvizError("Pass either --demo or --images DIR (one of the two).")
    nets = resolve_models(model, weights).models
    if demo:
        report = demo_gallery(out, n=n, models=nets, two_objects=two_objects, method=method)
    else:
        files, problems = expand_inputs(images)
        report = build_gallery(nets, [(f, None, None) for f in files], out, method=method)
        report.problems[:0] = problems
    console.print(f"{len(report.figures)} figures; page: {report.index_html}; contact sheet: {report.contact_sheet}",
                  highlight=False)
    for problem in report.problems:
        Console(stderr=True).print(f"[yellow]skipped:[/yellow] {problem}", highlight=False, soft_wrap=True)
    if report.problems:
        raise typer.Exit(1)


@app.command()
@user_errors
def shift(
    model: list[str] = typer.Option(None, "--model", help="Model(s) (default: the whole demo zoo)."),
    weights: list[str] = typer.Option(None, "--weights", help="Checkpoint per --model, in the same order."),
    data: str = typer.Option(None, help="Images root (with --boxes); default: the two-object demo split."),
    boxes: str = typer.Option(None, help="COCO json or ILSVRC XML folder with several objects per image."),
    images: int = typer.Option(500, min=1, help="Two-object demo images when --boxes is not given."),
    out: str = typer.Option("tdviz_shift", help="Folder for shift.json."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Attention shift: which object each computation step's map localizes, on multi-object images."""
    from tdviz.datasets import demo_class_index, load_dataset
    from tdviz.loading import resolve_models
    from tdviz.shift import run_shift

    nets = resolve_models(model, weights).models
    if boxes is None:
        from tdviz.demo import make_demo_split

        split = make_demo_split(n=images, two_objects=True)
        dataset = load_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())
    else:
        dataset = load_dataset(boxes, images_root=data)
    stats, skipped = run_shift(nets, dataset.samples, progress=not as_json)
    payload = {"models": {n: s.to_dict() for n, s in stats.items()}, "skipped": dataset.problems + skipped}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "shift.json").write_text(json.dumps(payload, indent=1))
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    table = Table(title="Attention shift between computation steps (fractions of images)")
    for col in ("model", "localized per step", "changed (of 2+ localizing)", "cover all", "unique maps"):
        table.add_column(col)
    for n, s in stats.items():
        d = s.to_dict()
        table.add_row(n, ", ".join(f"{v:.3f}" for v in d["localized_per_step"]),
                      f"{d['frac_changed']:.3f} ({d['n_multi_localized']})", f"{d['frac_cover_all']:.3f}",
                      f"{d['frac_unique_maps']:.3f}")
    console.print(table)
    for problem in payload["skipped"][:10]:
        Console(stderr=True).print(f"[yellow]skipped:[/yellow] {problem}", highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
