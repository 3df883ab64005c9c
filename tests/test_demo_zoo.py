"""The shipped demo zoo and `tdviz demo`: real weights, real canvases, the real command."""

import json

import pytest
import torch
from conftest import run_cli

import tdviz
from tdviz.demo import CLASS_NAMES
from tdviz.demo.canvas import load_source, render_sample
from tdviz.demo.dataset import to_tensor
from tdviz.models.demo_zoo import (
    DEMO_CLASSES,
    DEMO_MODELS,
    WEIGHTS_DIR,
    load_demo_model,
)


def test_shipped_zoo_is_complete_and_small():
    files = sorted(WEIGHTS_DIR.glob("*.safetensors"))
    assert [f.stem for f in files] == sorted(DEMO_MODELS)
    assert sum(f.stat().st_size for f in files) <= 15 * 2**20
    assert DEMO_CLASSES == CLASS_NAMES


@pytest.fixture(scope="module")
def val_batch():
    images, labels = load_source("val")
    samples = [render_sample("val", i, 0, images, labels) for i in range(60)]
    return torch.stack([to_tensor(s.image) for s in samples]), torch.tensor([s.label for s in samples])


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_shipped_model_beats_chance(name, val_batch):
    x, y = val_batch
    model = load_demo_model(name)
    assert model.class_names == list(CLASS_NAMES)
    out = tdviz.run_steps(model, x)
    assert out.num_steps == (2 if "_td" in name else 1)
    accuracy = (out.logits[:, -1].argmax(-1) == y).float().mean().item()
    assert accuracy > 0.6, f"{name}: {accuracy:.2f} on 60 validation canvases (chance 0.10)"


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
