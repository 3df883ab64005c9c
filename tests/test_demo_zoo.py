"""The shipped demo zoo and `tdviz demo`: real weights, real canvases, the real command."""

import json

from conftest import run_cli

from tdviz.demo import CLASS_NAMES
from tdviz.models.demo_zoo import (
    DEMO_CLASSES,
    DEMO_MODELS,
    WEIGHTS_DIR,
)


def test_shipped_zoo_is_complete_and_small():
    files = sorted(WEIGHTS_DIR.glob("*.safetensors"))
    assert [f.stem for f in files] == sorted(DEMO_MODELS)
    assert sum(f.stat().st_size for f in files) <= 15 * 2**20
    assert DEMO_CLASSES == CLASS_NAMES


def _tdviz(*args, env=None):
    return run_cli(*args, env=env)


def test_demo_command_end_to_end(tmp_path, monkeypatch):

    env = {"TDVIZ_CACHE": str(tmp_path / "cache")}
    res = _tdviz("demo", "--images", "20", "--model", "demo_resnet_tdjoint", "--model", "demo_resnet",
                 "--out", str(tmp_path / "out"), "--json", env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    rows = {r["model"]: r for r in report["results"]}
    assert len(rows["demo_resnet_tdjoint"]["top1"]) == 2 and len(rows["demo_resnet"]["top1"]) == 1
    assert rows["demo_resnet_tdjoint"]["images"] == 20
    saved = json.loads((tmp_path / "out" / "demo_classification.json").read_text())
    assert saved["results"] == report["results"]
    assert (tmp_path / "cache" / "demo").is_dir()


def test_demo_command_bad_model_is_one_clear_line(tmp_path):
    res = _tdviz("demo", "--images", "20", "--model", "demo_resnet_xx")
    assert res.returncode == 1
    assert "demo_resnet_xx is not a demo model" in res.stderr and "Traceback" not in res.stderr


def test_load_demo_model_from_a_trained_runs_file(tmp_path):
    import shutil

    import pytest
    import torch

    from tdviz.errors import TdvizError
    from tdviz.models.demo_zoo import demo_weights_path, load_demo_model

    seed_file = tmp_path / "demo_resnet_tdtop_seed0.safetensors"  # what train_demo_zoo.py writes per run
    shutil.copy(demo_weights_path("demo_resnet_tdtop"), seed_file)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_demo_model("demo_resnet_tdtop", path=seed_file)(x), load_demo_model("demo_resnet_tdtop")(x))
    with pytest.raises(TdvizError, match="does not exist"):
        load_demo_model("demo_resnet_tdtop", path=tmp_path / "missing.safetensors")
