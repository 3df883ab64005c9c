"""The first commands a new user types, and the names of what they write: no traceback, no
silently overwritten or misplaced file."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

import tdviz
from tdviz.cam import METHODS, UNSUPPORTED_METHODS
from tdviz.models.demo_zoo import WEIGHTS_DIR, load_demo_model


def tdviz_cli(*args):
    return run_cli(*args)


def no_traceback(res):
    return "Traceback" not in res.stderr + res.stdout


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    img = Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8))
    img.save(d / "cat.1.jpg")
    img.save(d / "cat.2.png")
    img.save(d / "..jpg", format="JPEG")
    return d


def test_python_m_tdviz_is_the_command():
    res = subprocess.run([sys.executable, "-m", "tdviz", "--help"], check=False, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "wsol" in res.stdout and "cam" in res.stdout


def test_fullgrad_is_refused_in_one_sentence(photo, tmp_path):
    res = tdviz_cli("cam", photo / "cat.1.jpg", "--method", "fullgrad", "--out", tmp_path)
    assert res.returncode == 1 and no_traceback(res)
    assert "fullgrad" in res.stderr and "gradcam" in res.stderr and len(res.stderr.strip().splitlines()) <= 3


def test_every_method_runs_per_step_or_is_refused():
    model = load_demo_model("demo_resnet_tdjoint")
    x = torch.randn(1, 3, 64, 64)
    for method in METHODS:
        cams = tdviz.step_cams(model, x, method=method)
        assert cams.maps.shape == (1, 2, 1, 64, 64) and torch.isfinite(cams.maps).all(), method
    for method in UNSUPPORTED_METHODS:
        with pytest.raises(tdviz.TdvizError, match=method):
            tdviz.step_cams(model, x, method=method)


def test_weights_alone_find_the_demo_model_and_its_class_names(photo, tmp_path):
    weights = WEIGHTS_DIR / "demo_resnet_tdjoint.safetensors"
    res = tdviz_cli("cam", photo / "cat.1.jpg", "--weights", weights, "--out", tmp_path, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["model"].startswith("demo_resnet_tdjoint from")
    names = set(load_demo_model("demo_resnet_tdjoint").class_names)
    assert out["records"][0]["classes"][0][0] in names


def test_final_step_is_called_by_its_number(photo, tmp_path):
    res = tdviz_cli("cam", photo / "cat.1.jpg", "--out", tmp_path)
    assert res.returncode == 0 and "step 2:" in res.stdout and "step 1:" not in res.stdout
    res = tdviz_cli("cam", photo / "cat.1.jpg", "--out", tmp_path, "--steps", "--json")
    assert json.loads(res.stdout)["records"][0]["steps"] == [1, 2]
    res = tdviz_cli("cam", photo / "cat.1.jpg", "--out", tmp_path / "d", "--diff", "--json")  # --diff needs the steps
    assert json.loads(res.stdout)["records"][0]["steps"] == [1, 2] and "--diff compares computation steps" in res.stderr


def test_dotted_names_keep_every_output_apart(photo, tmp_path):
    out = tmp_path / "cams"
    res = tdviz_cli("cam", photo / "cat.1.jpg", photo / "cat.2.png", "--out", out, "--save-maps")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cat.1_cam.npz", "cat.1_cam.pdf", "cat.1_cam.png", "cat.2_cam.npz", "cat.2_cam.pdf",
                     "cat.2_cam.png"]
    res = tdviz_cli("cam", photo / "cat.1.jpg", "--out", tmp_path / "layers" / "layer3.1.png")
    assert res.returncode == 0 and sorted(p.name for p in (tmp_path / "layers").iterdir()) == \
        ["layer3.1.pdf", "layer3.1.png"]


def test_cam_out_that_is_a_file_is_one_sentence(photo, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    res = tdviz_cli("cam", photo / "cat.1.jpg", "--out", tmp_path / "notes.txt")
    assert res.returncode == 1 and no_traceback(res) and "notes.txt" in res.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_gallery_with_dotted_and_dot_names_stays_in_its_folder(photo, tmp_path):
    out = tmp_path / "g"
    res = tdviz_cli("gallery", "--images", photo, "--model", "demo_resnet", "--out", out)
    assert res.returncode == 0 and no_traceback(res), res.stderr
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["cat.1.pdf", "cat.1.png", "cat.2.pdf", "cat.2.png", "image.pdf", "image.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # nothing written beside the gallery
    assert sorted(p.name for p in out.iterdir()) == ["cells", "contact_sheet.png", "figures", "index.html"]
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["cat.1", "cat.2", "image"]


def test_gallery_demo_uses_the_method(tmp_path):
    from tdviz.gallery import demo_gallery

    models = {"demo_resnet_tdtop": load_demo_model("demo_resnet_tdtop")}
    grad = demo_gallery(tmp_path / "a", n=1, models=models, progress=False)
    layer = demo_gallery(tmp_path / "b", n=1, models=models, progress=False, method="layercam")
    assert grad.method == "gradcam" and layer.method == "layercam"
    a = np.asarray(Image.open(grad.figures[0].png).convert("RGB"))
    b = np.asarray(Image.open(layer.figures[0].png).convert("RGB"))
    assert a.shape == b.shape and (a != b).any()


def test_flags_a_model_cannot_take_are_one_sentence(photo, tmp_path):
    res = tdviz_cli("cam", photo / "cat.1.jpg", "--layer", "fc", "--out", tmp_path)
    assert res.returncode == 1 and "not a feature map" in res.stderr and "layer4.1" in res.stderr
    res = tdviz_cli("cam", photo / "cat.1.jpg", "--model", "convnext_tiny", "--size", "16", "--out", tmp_path)
    assert res.returncode == 2 and "32" in res.stderr  # typer's usage error: at least 32
    res = tdviz_cli("wsol", "--model", "demo_resnet", "--images", "10", "--topk", "20", "--out", tmp_path / "w")
    assert res.returncode == 1 and "--topk 20 is more than the 10 classes" in res.stderr
