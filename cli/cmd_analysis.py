"""`tdviz selectivity` and `tdviz shift`: what the steps change."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tdviz.errors import TdvizError

from .common import app, console, user_errors


@app.command()
@user_errors
def selectivity(
    model: list[str] = typer.Option(None, "--model", help="Model(s) (default: the whole demo zoo)."),
    weights: list[str] = typer.Option(None, "--weights", help="Checkpoint per --model, in the same order."),
    num_classes: int = typer.Option(None, "--num-classes", min=1, help="Classes of the checkpoint(s) (a fine-tuned "
                                    "model; default: the model's own)."),
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

    nets = resolve_models(model, weights, num_classes=num_classes).models
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
def shift(
    model: list[str] = typer.Option(None, "--model", help="Model(s) (default: the whole demo zoo)."),
    weights: list[str] = typer.Option(None, "--weights", help="Checkpoint per --model, in the same order."),
    num_classes: int = typer.Option(None, "--num-classes", min=1, help="Classes of the checkpoint(s) (a fine-tuned "
                                    "model; default: the model's own)."),
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

    nets = resolve_models(model, weights, num_classes=num_classes).models
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
