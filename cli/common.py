"""What every `tdviz` command shares: the typer app, the consoles, the error net."""

from __future__ import annotations

import functools
import sys

import click
import typer
from rich.console import Console

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


def pick_device(device: str | None) -> str:
    """``--device`` or cuda when there is a GPU; under torchrun each process takes its LOCAL_RANK's GPU.
    Decided here, not as a flag default: importing torch for it would slow every worker's start."""
    import os

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def split_cores(workers: int | None, box_workers: int | None) -> tuple[int, int]:
    """Decoding and box extraction share the cores about evenly (measured best on 16-core GPU hosts)."""
    import os

    cores = os.cpu_count() or 1
    workers = (cores // 2) if workers is None else workers
    box_workers = max(0, cores - 1 - workers) if box_workers is None else box_workers
    return workers, box_workers


def print_skipped(problems, limit: int = 20) -> None:
    """The first ``limit`` skipped items on stderr, and how many more there were."""
    err = Console(stderr=True)
    for problem in problems[:limit]:
        err.print(f"[yellow]skipped:[/yellow] {problem}", highlight=False, soft_wrap=True)
    if len(problems) > limit:
        err.print(f"... and {len(problems) - limit} more skipped", highlight=False)
