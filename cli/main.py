"""`tdviz` commands. Each command parses its flags, calls the library, and prints the result;
the commands live in ``cmd_*.py``, what they share in ``common.py``."""

from __future__ import annotations

import json
import sys

import typer
from rich.table import Table

import tdviz

from .common import app, console, user_errors


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


from . import cmd_analysis, cmd_explain, cmd_wsol  # noqa: F401  (register their commands)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
