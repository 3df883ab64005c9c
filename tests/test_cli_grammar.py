"""One grammar across commands: the same option means the same thing everywhere, every command
has --json (and prints only JSON with it), --version and completion exist, help shows no
``<bool>``-style types, and importing the figure modules never chooses a matplotlib backend."""

import json
import subprocess
import sys

import click
import pytest
import typer
from conftest import run_cli
from tdviz_cli.main import app

COMMANDS = ("models", "demo", "cam", "wsol", "resolution", "selectivity", "gallery", "shift")
#: option -> (metavar, takes a value); each must mean the same in every command that has it
SHARED = {"--model": "NAME", "--weights": "FILE", "--num-classes": "N", "--ema": "", "--device": "DEVICE",
          "--seed": "N", "--limit": "N", "--json": "", "--out": None, "--layer": "LAYER", "--method": "NAME"}


def _commands() -> dict[str, click.Command]:
    group = typer.main.get_command(app)
    return {name: group.commands[name] for name in COMMANDS}


def test_every_command_has_json_and_the_shared_options_agree():
    cmds = _commands()
    assert set(cmds) == set(COMMANDS)
    seen: dict[str, set] = {}
    for name, cmd in cmds.items():
        opts = {o: p for p in cmd.params for o in p.opts}
        assert "--json" in opts and opts["--json"].is_flag, name
        if name not in ("models",):
            for o in ("--device", "--seed"):
                assert o in opts, f"{name} lacks {o}"
        if "--weights" in opts:
            assert {"--num-classes", "--ema", "--model"} <= set(opts), name
        for o, metavar in SHARED.items():
            if o in opts:
                p = opts[o]
                if metavar is not None:
                    assert p.metavar == metavar, (name, o, p.metavar)
                # the element type (cam takes one --model, the others several: same meaning)
                kind = p.type_descriptor.annotation
                kind = getattr(kind, "__args__", (kind,))[0]
                seen.setdefault(o, set()).add((p.is_flag, getattr(kind, "__name__", str(kind))))
    for o, kinds in seen.items():
        assert len(kinds) == 1, f"{o} differs between commands: {kinds}"
    # counts are --limit everywhere; files are arguments (cam, gallery) or --images (gallery only)
    for name in ("demo", "wsol", "resolution", "selectivity", "shift", "gallery"):
        assert "--limit" in {o for p in cmds[name].params for o in p.opts}, name
    images = {n: next(p for p in c.params if "--images" in p.opts) for n, c in cmds.items()
              if any("--images" in p.opts for p in c.params)}
    assert [n for n, p in images.items() if not p.hidden] == ["gallery"]  # elsewhere: 0.1's count, hidden


def test_help_is_readable():
    for name in COMMANDS:
        res = run_cli(name, "--help")
        assert res.returncode == 0
        assert "<bool>" not in res.stdout and "<list[" not in res.stdout and "<str>" not in res.stdout, name


def test_version_and_completion():
    import tdviz

    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"tdviz {tdviz.__version__}"
    assert "--install-completion" in run_cli("--help").stdout


@pytest.mark.parametrize("args", [
    ("models",),
    ("cam", "{img}", "--model", "demo_resnet"),
    ("gallery", "{img}", "--model", "demo_resnet"),
    ("wsol", "--model", "demo_resnet", "--limit", "12", "--protocol", "cam"),
    ("resolution", "--model", "demo_resnet", "--limit", "12", "--sizes", "224"),
    ("selectivity", "--model", "demo_resnet", "--limit", "20"),
    ("shift", "--model", "demo_resnet_tdtop", "--limit", "6"),
])
def test_json_prints_only_json(args, tmp_path):
    from tdviz.demo import make_demo_split

    img = next((make_demo_split(n=200, workers=1) / "images").rglob("*.png"))
    argv = [a.replace("{img}", str(img)) for a in args] + ["--json"]
    if args[0] != "models":
        argv += ["--out", str(tmp_path / "out")]
    res = run_cli(*argv)
    assert res.returncode == 0, res.stderr
    json.loads(res.stdout)


def test_legacy_count_spelling_still_works(tmp_path):
    res = run_cli("resolution", "--model", "demo_resnet", "--images", "12", "--limit", "12", "--sizes", "224",
                  "--json", "--out", tmp_path / "r")
    assert res.returncode == 0 and "--images N is now --limit N" in res.stderr


def test_random_weights_and_class_mismatch_are_announced(tmp_path):
    res = run_cli("wsol", "--model", "resnet18", "--limit", "10", "--protocol", "cam", "--out", tmp_path / "w",
                  "--json")
    assert res.returncode == 0
    assert "RANDOM weights" in res.stderr and "scores 1000 classes but the data's labels go up to 9" in res.stderr


def test_figure_modules_choose_no_backend():
    code = ("import matplotlib; before = matplotlib.get_backend.__module__; "
            "import matplotlib as m; m.rcParams['backend'] = 'module://no_such_backend'; "
            "import tdviz.figures, tdviz.gallery, tdviz.viz, tdviz.selectivity_plot, tdviz.resolution_plot, "
            "tdviz.shift_plot, tdviz.cam_files; "
            "assert m.rcParams._get_backend_or_none() == 'module://no_such_backend', 'a backend was set'; "
            "from matplotlib.figure import Figure; import numpy as np; "
            "from tdviz.figures import StepRow, step_grid_figure; "
            "fig = step_grid_figure([StepRow('r', np.zeros((32, 32, 3)), np.zeros((2, 32, 32)), ['a', 'b'])]); "
            "assert isinstance(fig, Figure); print('ok')")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_layer_and_method_mean_the_same_in_gallery_and_shift(tmp_path):
    """--layer moves the maps of gallery and shift as it does for cam; a wrong name is one sentence."""
    import numpy as np
    from PIL import Image

    cells = {}
    for name, extra in (("default", []), ("layer3", ["--layer", "layer3"])):
        res = run_cli("gallery", "--demo", "--limit", "1", "--model", "demo_resnet", "--out", tmp_path / name, *extra)
        assert res.returncode == 0, res.stderr
        (cell,) = (tmp_path / name / "cells").rglob("*_s1_map.jpg")
        cells[name] = np.asarray(Image.open(cell), dtype=float)
    assert np.abs(cells["default"] - cells["layer3"]).mean() > 1
    shifts = {}
    for name, extra in (("layer4", ["--layer", "layer4"]), ("layer3", ["--layer", "layer3", "--method", "layercam"])):
        res = run_cli("shift", "--model", "demo_resnet_tdtop", "--limit", "6", "--out", tmp_path / f"s{name}", "--json",
                      *extra)
        assert res.returncode == 0, res.stderr
        shifts[name] = json.loads(res.stdout)["models"]["demo_resnet_tdtop"]["mean_iou_per_step"]
    assert shifts["layer4"] != shifts["layer3"]
    for cmd in (("gallery", "--demo", "--limit", "1"), ("shift", "--limit", "6")):
        res = run_cli(*cmd, "--model", "demo_resnet", "--layer", "layer9", "--out", tmp_path / "bad")
        assert res.returncode == 1 and "Layer 'layer9' is not in demo_resnet" in res.stderr
        assert "Traceback" not in res.stderr and res.stderr.strip().count("\n") <= 1


def test_each_torchrun_process_takes_its_share_of_the_cores(monkeypatch):
    import os

    from tdviz.wsol.config import split_cores

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert split_cores(None, None) == (8, 7)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes on this host: 4 cores each
    assert split_cores(None, None) == (2, 1) and split_cores(3, None) == (3, 0) and split_cores(None, 5) == (2, 5)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert split_cores(None, None) == (0, 0)
