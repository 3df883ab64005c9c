"""What every `tdviz` command shares: the typer app, the error net, and one grammar of options.

The same word means the same thing in every command (``tests/test_cli_grammar.py`` checks it):
``--limit N`` is how many images to use; files are positional paths (``cam``) or ``--images``
(``gallery``); ``--model`` / ``--weights`` / ``--num-classes`` / ``--ema`` choose models,
``--device`` where they run, ``--seed`` the demo split's images and any random weights,
``--json`` prints the command's result as JSON on stdout (and nothing else there).
"""

from __future__ import annotations

import functools
import sys

import click
import typer
from rich.console import Console

from tdviz.errors import TdvizError


def _no_type_for_flags(params) -> None:
    for p in params:
        if getattr(p, "is_flag", False) and getattr(p, "metavar", None) is None:
            p.metavar = ""  # typer would show "<bool>" for a flag that takes no value
        elif getattr(p, "param_type_name", "") == "argument":
            p.display_type_rich = lambda ctx: None  # its name (IMAGES...) says it; not "<list[str]>"


class _Command(typer.core.TyperCommand):
    """A command whose help shows no type for flags (typer's own --help included)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _no_type_for_flags(params)
        return params


class _Group(typer.core.TyperGroup):
    def get_params(self, ctx):
        params = super().get_params(ctx)
        _no_type_for_flags(params)
        return params


app = typer.Typer(cls=_Group, add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="See and measure top-down attention in CNNs.")
command = functools.partial(app.command, cls=_Command)
# tables stay readable when the output is piped or logged (rich assumes 80 columns there)
console = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        import tdviz

        print(f"tdviz {tdviz.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                       help="Print tdviz's version and exit.")) -> None:
    """See and measure top-down attention in CNNs."""
    from tdviz.host_memory import keep_freed_memory

    keep_freed_memory()  # CPU forward passes stop paying page faults for every layer's output


def _fail(message: str, code: int) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn every error into one line on stderr and a non-zero exit, never a traceback: a user's
    mistake (TdvizError) or a failed file operation (read-only or full disk) exits 1, Ctrl-C 130,
    a missing dependency 1 (naming it), and anything else, which is a bug in tdviz, exits 2
    naming itself as one."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tdviz.errors import os_error_message

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except TdvizError as exc:
            _fail(str(exc), 1)
        except ModuleNotFoundError as exc:
            _fail(f"the Python package {exc.name!r} is missing: reinstall tdviz with `pip install -e .` "
                  f"(or `pip install {exc.name}`).", 1)
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


# ---------------------------------------------------------------- the shared options
def flag(*names: str, help: str, default: bool = False):
    """A flag (no value); help shows no type for it."""
    return typer.Option(default, *names, help=help, metavar="")


def models_option(default: str = "the whole demo zoo"):
    return typer.Option(None, "--model", metavar="NAME", help=f"Model(s), repeat for several (default: {default}).")


def model_option():
    return typer.Option(None, "--model", metavar="NAME",
                        help="Registered model name (default: the shipped demo_resnet_tdjoint).")


def weights_option(several: bool = True):
    text = ("Checkpoint per --model, in the same order; alone, each one's model is inferred." if several else
            "Checkpoint (.pth/.pth.tar/.safetensors); alone, the model is inferred.")
    return typer.Option(None, "--weights", metavar="FILE", help=text)


def num_classes_option():
    return typer.Option(None, "--num-classes", min=1, metavar="N",
                        help="Classes of the checkpoint(s), for a fine-tuned model (default: the model's own).")


def ema_option():
    return flag("--ema", help="Use the checkpoints' state_dict_ema.")


def device_option():
    return typer.Option(None, "--device", metavar="DEVICE", help="cuda, cuda:N or cpu (default: cuda when there is a GPU).")


def seed_option():
    return typer.Option(0, "--seed", metavar="N", help="Seed of the demo split's images and of random weights.")


def limit_option(default: int | None, what: str = "images"):
    text = f"Use the first N {what}" + (f" (default {default})." if default else ".")
    return typer.Option(default, "--limit", min=1, metavar="N", help=text)


def layer_option():
    return typer.Option(None, "--layer", metavar="LAYER", help="CAM layer, e.g. layer4 or layer3.1 (default: the model "
                        "record's feature layer).")


def method_option(default: str = "gradcam", what: str = "CAM method"):
    return typer.Option(default, "--method", metavar="NAME", help=f"{what} (any grad-cam method: gradcam, gradcam++, "
                        "layercam, scorecam, ...).")


def json_option():
    return flag("--json", help="Print the result as JSON on stdout.")


def out_option(default: str, what: str):
    return typer.Option(default, "--out", metavar="DIR", help=f"Output folder ({what}).")


def legacy_images_option():
    """0.1's ``--images N`` (a count), kept working in the commands that now say ``--limit N``."""
    return typer.Option(None, "--images", min=1, hidden=True, metavar="N")


def pick_limit(limit: int | None, legacy: int | None, default: int | None) -> int | None:
    """``--limit``, else 0.1's ``--images N`` (with a note), else ``default``."""
    if legacy is not None:
        err.print("[yellow]note:[/yellow] --images N is now --limit N (the old spelling still works).", highlight=False)
        if limit is None:
            return legacy
    return default if limit is None else limit


def pick_device(device: str | None) -> str:
    """``--device`` or cuda when there is a GPU; under torchrun each process takes its LOCAL_RANK's GPU.
    Decided here, not as a flag default: importing torch for it would slow every worker's start."""
    import os

    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise TdvizError(f"--device {device!r} cannot be used here ({str(exc).splitlines()[0][:120]}): pass cpu, or "
                         "cuda on a machine with a GPU.") from None
    return device


def seed_everything(seed: int) -> None:
    """One seed for what is random in a command: random weights (and torch's generators)."""
    import torch

    torch.manual_seed(int(seed))


def print_skipped(problems, limit: int = 20) -> None:
    """The first ``limit`` skipped items on stderr, and how many more there were."""
    for problem in problems[:limit]:
        err.print(f"[yellow]skipped:[/yellow] {problem}", highlight=False, soft_wrap=True)
    if len(problems) > limit:
        err.print(f"... and {len(problems) - limit} more skipped", highlight=False)


def warn_models(zoo, labels=None) -> None:
    """On stderr: each model that has random weights, and each whose class count cannot fit the
    data's ``labels`` (class indices) (a 1000-class model on 10-class data scores near 0: say so, do not let it pass)."""
    from tdviz.models.base import model_num_classes

    for label, src in zoo.sources.items():
        if "RANDOM" in src.note:
            err.print(f"[yellow]warning:[/yellow] {label} has RANDOM weights (no --weights): its maps and numbers "
                      "mean nothing about a trained model.", highlight=False, soft_wrap=True)
    labels = [int(v) for v in labels or [] if v is not None and int(v) >= 0]
    if not labels:
        return
    top = max(labels) + 1
    for label, model in zoo.models.items():
        classes = model_num_classes(model)
        if classes is not None and (classes < top or classes >= 4 * top):
            err.print(f"[yellow]warning:[/yellow] {label} scores {classes} classes but the data's labels go up to "
                      f"{top - 1}: unless its classes are the data's, its accuracy is near 0; load a checkpoint "
                      "trained on these classes (with --num-classes).", highlight=False, soft_wrap=True)
