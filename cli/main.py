"""`tdviz` commands. Each command parses its flags, calls the library, and prints the result;
the commands live in ``cmd_*.py``, what they share in ``common.py``."""

from __future__ import annotations

import json
import sys

import typer
from rich.table import Table

import tdviz

from .common import (
    app,
    command,
    console,
    device_option,
    json_option,
    legacy_images_option,
    limit_option,
    pick_device,
    pick_limit,
    print_skipped,
    seed_everything,
    seed_option,
    user_errors,
)


@command()
@user_errors
def models(
    as_json: bool = json_option(),
    size: int = typer.Option(224, min=32, max=2048, metavar="PX", help="Input size for the GMACs column."),
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


@command()
@user_errors
def demo(
    limit: int = limit_option(None, "validation images of the demo split (default 500; generated once, then cached)"),
    images: int = legacy_images_option(),
    model: list[str] = typer.Option(None, "--model", metavar="NAME", help="Demo model(s) (default: all seven)."),
    out: str = typer.Option(None, "--out", metavar="DIR", help="Output folder (default: <split>/results)."),
    workers: int = typer.Option(2, min=0, metavar="N", help="Processes for image generation and decoding."),
    device: str = device_option(),
    seed: int = seed_option(),
    as_json: bool = json_option(),
) -> None:
    """The main job on the built-in demo: per-step classification, the WSOL table (both protocols),
    a Fig. 4-style figure and a gallery page, from the shipped demo zoo; no download, no GPU."""
    from tdviz.demo.run import run_demo

    from .cmd_wsol import print_wsol_table

    seed_everything(seed)
    report = run_demo(pick_limit(limit, images, 500), model or None, out, workers, progress=not as_json,
                      device=pick_device(device), seed=seed)
    outputs = {"split": str(report.split), "classification": str(report.results_file),
               "wsol": str(report.wsol_dir / "results.json"), "figures": [str(f) for f in report.figures],
               "gallery": str(report.gallery)}
    if as_json:
        print(json.dumps({**outputs, "results": [a.to_dict() for a in report.accuracy],
                          "wsol_results": report.wsol}, indent=2))
        return
    steps = max(len(a.top1) for a in report.accuracy)
    table = Table(title=f"Demo: cluttered Fashion-MNIST validation, {report.accuracy[0].images} images, top-1 %")
    table.add_column("model")
    for t in range(1, steps + 1):
        table.add_column(f"step {t}", justify="right")
    table.add_column("most confident", justify="right")
    table.add_column("top-5 (last step)", justify="right")
    for a in report.accuracy:
        cells = [f"{a.top1[t]:.2f}" if t < len(a.top1) else "" for t in range(steps)]
        table.add_row(a.model, *cells, f"{a.top1_most_confident:.2f}", f"{a.top5[-1]:.2f}")
    console.print(table)
    print_wsol_table(report.wsol)
    print_skipped(report.wsol.get("skipped", []))
    for key, label in (("split", "demo split"), ("classification", "classification"), ("wsol", "WSOL results"),
                       ("gallery", "gallery page (open in a browser)")):
        console.print(f"{label}: {outputs[key]}", highlight=False)
    console.print(f"Fig. 4-style figures: {', '.join(outputs['figures'])}", highlight=False, soft_wrap=True)


from . import cmd_analysis, cmd_explain, cmd_wsol  # noqa: F401  (register their commands)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
