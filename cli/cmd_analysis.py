"""`tdviz selectivity` and `tdviz shift`: what the steps change."""

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
    json_option,
    layer_option,
    legacy_images_option,
    limit_option,
    method_option,
    models_option,
    num_classes_option,
    out_option,
    pick_device,
    pick_limit,
    print_skipped,
    seed_everything,
    seed_option,
    user_errors,
    warn_models,
    weights_option,
)


@command()
@user_errors
def selectivity(
    model: list[str] = models_option(),
    weights: list[str] = weights_option(),
    num_classes: int = num_classes_option(),
    ema: bool = ema_option(),
    data: str = typer.Option(None, metavar="DIR", help="ImageFolder root (default: the demo validation split)."),
    layer: list[str] = typer.Option(None, "--layer", metavar="LAYER", help="Layer(s) to measure (default: the "
                                    "model record's feature layer)."),
    limit: int = limit_option(None, "images (default: all; without --data, a demo split of 1000)"),
    images: int = legacy_images_option(),
    out: str = out_option("tdviz_selectivity", "selectivity.json and the plots"),
    workers: int = typer.Option(2, min=0, metavar="N", help="Image-decoding processes."),
    device: str = device_option(),
    seed: int = seed_option(),
    as_json: bool = json_option(),
) -> None:
    """Channel selectivity per model, layer and computation step (class selectivity index, Gini,
    Hoyer, 90%-mass fraction, CAM focus)."""
    from tdviz.classify import ImageFolderDataset
    from tdviz.images import Preprocess
    from tdviz.loading import resolve_models
    from tdviz.selectivity import TABLE_COLUMNS, plot_distributions, run_selectivity, selectivity_table_rows

    limit = pick_limit(limit, images, None)
    seed_everything(seed)
    zoo = resolve_models(model, weights, device=pick_device(device), num_classes=num_classes, ema=ema)
    if data is None:
        from tdviz.demo import make_demo_split

        root = make_demo_split(n=max(10, limit or 1000), seed=seed, workers=workers) / "images"
    else:
        root = data
    preprocs = {Preprocess.for_model(m) for m in zoo.models.values()}
    if len(preprocs) > 1:
        raise TdvizError("These models were trained with different preprocessing; measure them in separate calls.")
    dataset = ImageFolderDataset(root, preprocs.pop(), limit=limit)
    warn_models(zoo, [label for _, label in dataset.samples])
    results, skipped = run_selectivity(zoo.models, dataset, layer or None, workers=workers, progress=not as_json)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    unreadable = len(skipped) - len(dataset.problems)  # the rest are notes on the folder (e.g. link loops)
    payload = {"images": len(dataset) - unreadable, "skipped": skipped,
               "results": [{"model": m, "layer": lay, "step": t, **r.to_dict()} for (m, lay, t), r in results.items()]}
    (out_dir / "selectivity.json").write_text(json.dumps(payload, indent=1))
    plots = plot_distributions(results, out_dir / "selectivity")
    if as_json:
        print(json.dumps({**payload, "plots": [str(p) for p in plots]}, indent=2))
    else:
        table = Table(title=f"Channel selectivity, {payload['images']} images (median \\[q1-q3])")
        for col in TABLE_COLUMNS:
            table.add_column(col)
        for row in selectivity_table_rows(results):
            table.add_row(*row)
        console.print(table)
        console.print(f"results: {out_dir / 'selectivity.json'}; plots: {out_dir / 'selectivity'}.png/.pdf and one "
                      f"per metric ({len(plots)} files)", highlight=False)
    print_skipped(skipped)


@command()
@user_errors
def shift(
    model: list[str] = models_option(),
    weights: list[str] = weights_option(),
    num_classes: int = num_classes_option(),
    ema: bool = ema_option(),
    data: str = typer.Option(None, metavar="DIR", help="Images root (with --boxes); default: the two-object demo split."),
    boxes: str = typer.Option(None, metavar="PATH", help="COCO json or ILSVRC XML folder with several objects per image."),
    limit: int = limit_option(None, "images (default: all; without --boxes, a two-object demo split of 500)"),
    images: int = legacy_images_option(),
    method: str = method_option(),
    layer: str = layer_option(),
    out: str = out_option("tdviz_shift", "shift.json, shift_images.csv, shift.png/.pdf"),
    device: str = device_option(),
    seed: int = seed_option(),
    as_json: bool = json_option(),
) -> None:
    """Attention shift: which object each computation step's map localizes, on multi-object images."""
    from tdviz.datasets import demo_class_index, load_dataset
    from tdviz.figures import save_figure
    from tdviz.loading import resolve_models
    from tdviz.shift import run_shift
    from tdviz.shift_plot import shift_figure, write_shift_csv

    limit = pick_limit(limit, images, None)
    seed_everything(seed)
    zoo = resolve_models(model, weights, device=pick_device(device), num_classes=num_classes, ema=ema)
    if boxes is None:
        from tdviz.demo import make_demo_split

        split = make_demo_split(n=limit or 500, seed=seed, two_objects=True)
        dataset = load_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())
    else:
        dataset = load_dataset(boxes, images_root=data)
    samples = dataset.samples[:limit] if limit else dataset.samples
    warn_models(zoo, [s.label for s in samples])
    records: list = []
    stats, skipped = run_shift(zoo.models, samples, method=method, progress=not as_json, records=records,
                              layer=layer)
    payload = {"models": {n: s.to_dict() for n, s in stats.items()}, "skipped": dataset.problems + skipped}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "shift.json").write_text(json.dumps(payload, indent=1))
    files = [write_shift_csv(records, out_dir / "shift_images.csv")]
    if records:
        files += save_figure(shift_figure(records, list(zoo.models)), out_dir / "shift")
    if as_json:
        print(json.dumps({**payload, "files": [str(f) for f in files]}, indent=2))
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
    console.print(f"results: {out_dir / 'shift.json'}; per image: {files[0]}; plot: {out_dir / 'shift'}.png/.pdf",
                  highlight=False)
    print_skipped(payload["skipped"], 10)
