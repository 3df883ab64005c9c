"""`tdviz` commands. Each command parses its flags, calls the library, and prints the result."""

from __future__ import annotations

import functools
import json
import sys

import typer
from rich.console import Console
from rich.table import Table

import tdviz
from tdviz.errors import TdvizError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="See and measure top-down attention in CNNs.")
console = Console()


@app.callback()
def _root() -> None:
    """See and measure top-down attention in CNNs."""


def user_errors(fn):
    """Print a TdvizError as one line on stderr and exit 1, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TdvizError as exc:
            Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

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


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
