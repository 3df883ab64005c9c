"""`tdviz cam` and `tdviz gallery`: maps and figures for images."""

from __future__ import annotations

import json

import typer

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
    limit_option,
    method_option,
    model_option,
    models_option,
    num_classes_option,
    pick_device,
    print_skipped,
    seed_everything,
    seed_option,
    user_errors,
    warn_models,
    weights_option,
)


@command()
@user_errors
def cam(
    images: list[str] = typer.Argument(..., metavar="IMAGES...", help="Image files, folders (searched recursively) "
                                       "or globs."),
    model: str = model_option(),
    weights: str = weights_option(several=False),
    num_classes: int = num_classes_option(),
    ema: bool = ema_option(),
    steps: bool = flag("--steps", help="One map per computation step (default: the final step only)."),
    method: str = typer.Option("gradcam", metavar="NAME", help="Any grad-cam method: gradcam, gradcam++, layercam, "
                               "scorecam, ..."),
    topk: int = typer.Option(1, min=1, metavar="K", help="Maps for the top-k classes of each step (a row per class)."),
    class_: list[str] = typer.Option(None, "--class", metavar="CLASS", help="Map these classes (name or index) "
                                     "instead of the top-k."),
    layer: str = layer_option(),
    size: int = typer.Option(None, min=32, max=4096, metavar="PX", help="Input size (default: the model record's, "
                             "224; the shorter side goes to size / crop fraction)."),
    diff: bool = flag("--diff", help="Add the change between steps (step t+1 - step t) beside the maps."),
    searchlight: bool = flag("--searchlight", help="Also draw the searchlight maps A_t of TD blocks (a second "
                             "figure, NAME_searchlight)."),
    block: list[str] = typer.Option(None, "--block", metavar="BLOCK", help="TD block(s) for --searchlight (default: "
                                    "those of the last stage), e.g. layer4.1."),
    colorbar: bool = typer.Option(True, "--colorbar/--no-colorbar", metavar="", help="Draw the maps' colour bar."),
    out: str = typer.Option("tdviz_cam", metavar="DIR|FILE", help="Output folder, or a .png/.pdf file name for one "
                            "image."),
    save_maps: bool = flag("--save-maps", help="Also write each image's maps (npz)."),
    device: str = device_option(),
    seed: int = seed_option(),
    as_json: bool = json_option(),
) -> None:
    """Grad-CAM (or any grad-cam method) at every computation step: the paper's Fig. 4 for your images."""
    from tdviz.cam_files import cam_files
    from tdviz.classnames import class_names_for, resolve_class
    from tdviz.loading import ModelSet, ModelSource, resolve_model
    from tdviz.models.base import model_num_classes

    seed_everything(seed)
    if diff and not steps:  # the change between steps needs the steps; nothing asked for is dropped
        err.print("[yellow]note:[/yellow] --diff compares computation steps, so every step is drawn (--steps).",
                  highlight=False)
        steps = True
    net, note = resolve_model(model, weights, ema, num_classes)
    net = net.to(pick_device(device))
    warn_models(ModelSet({"the model": net}, {"the model": ModelSource(model or "", weights, note, "")}))
    chosen = None
    if class_:
        names = class_names_for(net, model_num_classes(net) or len(getattr(net, "class_names", [])))
        chosen = [resolve_class(c, names) for c in class_]
    run = cam_files(images, net, out, steps=steps, method=method, topk=topk, layer=layer, size=size,
                    save_maps=save_maps, classes=chosen, title=getattr(net, "tdviz_name", ""), diff=diff,
                    searchlight=searchlight, blocks=block, colorbar=colorbar)
    if as_json:
        print(json.dumps({"model": note, **run.to_dict()}, indent=2))
    else:
        err.print(f"model: {note}", highlight=False)
        for r in run.records:
            per_step = "; ".join(f"step {t}: {c[0]} {100 * s[0]:.1f}%" for t, c, s in zip(r.steps, r.classes, r.scores))
            console.print(f"{r.image}: {per_step} -> {r.figures[0]}", highlight=False, soft_wrap=True)
    for problem in run.problems:
        err.print(f"[red]skipped:[/red] {problem}", highlight=False, soft_wrap=True)
    if run.problems:
        raise typer.Exit(1)


@command()
@user_errors
def gallery(
    paths: list[str] = typer.Argument(None, metavar="[IMAGES]...", help="Image files, folders or globs (or --images)."),
    images: list[str] = typer.Option(None, "--images", metavar="PATH", help="Image files, folders or globs."),
    demo: bool = flag("--demo", help="Use the demo validation split (with its boxes)."),
    two_objects: bool = flag("--two-objects", help="With --demo: the two-object split."),
    model: list[str] = models_option(),
    weights: list[str] = weights_option(),
    num_classes: int = num_classes_option(),
    ema: bool = ema_option(),
    method: str = method_option(),
    layer: str = layer_option(),
    limit: int = limit_option(None, "images (default: all; with --demo, 12)"),
    n: int = typer.Option(None, "--n", min=1, hidden=True),
    out: str = typer.Option("tdviz_gallery", metavar="DIR", help="Output folder (figures/, cells/, contact sheet, "
                            "index.html)."),
    device: str = device_option(),
    seed: int = seed_option(),
    as_json: bool = json_option(),
) -> None:
    """Figure galleries: per image a card with a row per model and a column per step, paper figures
    (PNG/PDF), and an offline index.html to filter, compare and enlarge (open it in any browser)."""
    from tdviz.gallery import build_gallery, demo_gallery
    from tdviz.images import expand_inputs
    from tdviz.loading import resolve_models

    files_given = list(paths or []) + list(images or [])
    if demo == bool(files_given):
        raise TdvizError("Pass either --demo or image files (as arguments or --images PATH), one of the two.")
    if n is not None:
        err.print("[yellow]note:[/yellow] --n is now --limit (the old spelling still works).", highlight=False)
        limit = limit or n
    seed_everything(seed)
    zoo = resolve_models(model, weights, device=pick_device(device), num_classes=num_classes, ema=ema)
    warn_models(zoo)
    if demo:
        report = demo_gallery(out, n=limit or 12, seed=seed, models=zoo.models, two_objects=two_objects,
                              method=method, layer=layer, progress=not as_json)
    else:
        files, problems = expand_inputs(files_given)
        report = build_gallery(zoo.models, [(f, None, None) for f in files[:limit]], out, method=method,
                               layer=layer, progress=not as_json)
        report.problems[:0] = problems
    if as_json:
        print(json.dumps({"figures": [{"name": f.name, "png": str(f.png), "pdf": str(f.pdf), "correct": f.correct,
                                       "change": f.change, "predictions": f.predictions, "ious": f.ious}
                                      for f in report.figures],
                          "index_html": str(report.index_html), "contact_sheet": str(report.contact_sheet),
                          "problems": report.problems}, indent=2))
    else:
        console.print(f"{len(report.figures)} figure(s); page: {report.index_html}; contact sheet: "
                      f"{report.contact_sheet}", highlight=False)
    print_skipped(report.problems)
    if report.problems:
        raise typer.Exit(1)
