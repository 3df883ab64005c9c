"""`tdviz cam` and `tdviz gallery`: maps and figures for images."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from tdviz.errors import TdvizError

from .common import app, console, user_errors


@app.command()
@user_errors
def cam(
    images: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    model: str = typer.Option(None, help="Registered model name (default: the shipped demo_resnet_tdjoint)."),
    weights: str = typer.Option(None, help="Checkpoint (.pth/.pth.tar/.safetensors); alone, the model is inferred."),
    ema: bool = typer.Option(False, help="Use the checkpoint's state_dict_ema."),
    num_classes: int = typer.Option(None, "--num-classes", min=1, help="Classes of the checkpoint(s) (a fine-tuned "
                                    "model; default: the model's own)."),
    steps: bool = typer.Option(False, "--steps", help="One map per computation step (default: the final step only)."),
    method: str = typer.Option("gradcam", help="Any grad-cam method: gradcam, gradcam++, layercam, scorecam, ..."),
    topk: int = typer.Option(1, min=1, help="Maps for the top-k classes of each step (a row per class)."),
    class_: list[str] = typer.Option(None, "--class", help="Map these classes (name or index) instead of the top-k."),
    layer: str = typer.Option(None, help="Target layer (default: the layer feeding the classifier)."),
    size: int = typer.Option(None, min=32, max=4096, help="Input size (default 224; Resize 256 + CenterCrop 224)."),
    out: str = typer.Option("tdviz_cam", help="Output folder, or a .png/.pdf file name for a single image."),
    save_maps: bool = typer.Option(False, "--save-maps", help="Also write each image's maps (npz)."),
    diff: bool = typer.Option(False, "--diff", help="Add the change between steps (step t+1 - step t) beside the maps."),
    searchlight: bool = typer.Option(False, "--searchlight", help="Also draw the searchlight maps A_t of TD blocks "
                                     "(a second figure, NAME_searchlight)."),
    block: list[str] = typer.Option(None, "--block", help="TD block(s) for --searchlight (default: those of the "
                                    "last stage), e.g. layer4.1."),
    colorbar: bool = typer.Option(True, "--colorbar/--no-colorbar", help="Draw the colour bar of the maps."),
    as_json: bool = typer.Option(False, "--json", help="Print classes, scores and written files as JSON."),
) -> None:
    """Grad-CAM (or any grad-cam method) at every computation step: the paper's Fig. 4 for your images."""
    from tdviz.cam_files import cam_files
    from tdviz.classnames import class_names_for, resolve_class
    from tdviz.loading import resolve_model

    net, note = resolve_model(model, weights, ema, num_classes)
    chosen = None
    if class_:
        names = class_names_for(net, net.fc.out_features if hasattr(net, "fc") else len(getattr(net, "class_names", [])))
        chosen = [resolve_class(c, names) for c in class_]
    run = cam_files(images, net, out, steps=steps, method=method, topk=topk, layer=layer, size=size,
                    save_maps=save_maps, classes=chosen, title=getattr(net, "tdviz_name", ""), diff=diff,
                    searchlight=searchlight, blocks=block, colorbar=colorbar)
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
def gallery(
    model: list[str] = typer.Option(None, "--model", help="Model(s), a row each (default: the whole demo zoo)."),
    weights: list[str] = typer.Option(None, "--weights", help="Checkpoint per --model, in the same order."),
    num_classes: int = typer.Option(None, "--num-classes", min=1, help="Classes of the checkpoint(s) (a fine-tuned "
                                    "model; default: the model's own)."),
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
    nets = resolve_models(model, weights, num_classes=num_classes).models
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
