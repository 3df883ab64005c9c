"""`tdviz resolution` (the paper's Table 2 / Fig. 3) and the model record every command reads."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from torchvision.transforms.v2 import functional as TF

import tdviz
from tdviz.datasets import demo_class_index, load_dataset
from tdviz.demo import make_demo_split
from tdviz.images import Preprocess, read_image
from tdviz.models.demo_zoo import load_demo_model
from tdviz.resolution import parse_sizes

ROOT = Path(__file__).resolve().parents[1]
N = 48


@pytest.fixture(scope="module")
def split():
    return make_demo_split(n=200, workers=1)


def _json(res):
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _top1(payload, model, step, size):
    (row,) = [r for r in payload["rows"] if r["model"] == model and r["step"] == step and r["size"] == size]
    return row["top1"]


def test_train_size_equals_wsol_and_demo(split, tmp_path):
    models = ["--model", "demo_resnet", "--model", "demo_resnet_tdjoint"]
    res = _json(run_cli("resolution", *models, "--sizes", "168,224", "--limit", N, "--images", 200,
                        "--out", tmp_path / "res", "--json", "--workers", 0))
    wsol = _json(run_cli("wsol", *models, "--protocol", "cam", "--limit", N, "--images", 200, "--out",
                         tmp_path / "wsol", "--json", "--workers", 0, "--box-workers", 0))
    for model in ("demo_resnet", "demo_resnet_tdjoint"):
        for step, row in wsol["models"][model].items():
            assert _top1(res, model, step, 224) == pytest.approx(row["top1_cls"], abs=1e-9)
    # tdviz demo's classifier on the same images (its ImageFolder order is the split's sorted order)
    net = load_demo_model("demo_resnet_tdjoint")
    data = load_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())
    pre = Preprocess.for_model(net)
    x = torch.stack([pre(read_image(s.path, exif=False)) for s in data.samples[:N]])
    with torch.no_grad():
        logits = tdviz.run_steps(net, x).logits
    labels = torch.tensor([s.label for s in data.samples[:N]])
    for t in range(logits.shape[1]):
        by_hand = float((logits[:, t].argmax(-1) == labels).float().mean() * 100)
        assert _top1(res, "demo_resnet_tdjoint", str(t + 1), 224) == pytest.approx(by_hand)
    saved = json.loads((tmp_path / "res" / "results.json").read_text())
    assert saved["rows"] == res["rows"] and saved["summary"] == res["summary"]
    assert (tmp_path / "res" / "resolution.png").stat().st_size > 10_000
    assert (tmp_path / "res" / "resolution.pdf").read_bytes()[:4] == b"%PDF"


def test_other_size_equals_hand_preprocessing_of_a_10_class_checkpoint(split, tmp_path):
    """A fine-tuned 10-class ResNet18 checkpoint loads from the CLI with --num-classes, and its
    top-1 at 168 px equals classifying the images resized (192) and centre-cropped (168) by hand
    with torchvision."""
    torch.manual_seed(3)
    net = tdviz.create_model("resnet18", num_classes=10).eval()
    ckpt = tmp_path / "r18_10.pth"
    torch.save({"state_dict": net.state_dict()}, ckpt)
    refused = run_cli("resolution", "--model", "resnet18", "--weights", ckpt, "--data", split / "images",
                      "--out", tmp_path / "no")
    assert refused.returncode == 1 and "num_classes=10" in refused.stderr.replace(" ", "")
    res = _json(run_cli("resolution", "--model", "resnet18", "--weights", ckpt, "--num-classes", 10,
                        "--data", split / "images", "--sizes", "168", "--limit", N, "--out", tmp_path / "r",
                        "--json", "--workers", 0))
    files = sorted(p for p in (split / "images").rglob("*.png"))
    classes = sorted(p.name for p in (split / "images").iterdir() if p.is_dir())
    files = sorted(files, key=lambda p: (classes.index(p.parent.name), p.relative_to(split / "images").as_posix()))[:N]
    labels = torch.tensor([classes.index(p.parent.name) for p in files])
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    xs = []
    for f in files:
        img = torch.from_numpy(read_image(f).copy()).permute(2, 0, 1)
        img = TF.center_crop(TF.resize(img, 192, antialias=True), 168)
        xs.append(TF.normalize(img.float() / 255, mean, std))
    with torch.no_grad():
        top1 = float((net(torch.stack(xs)).argmax(-1) == labels).float().mean() * 100)
    assert _top1(res, "resnet18", "1", 168) == pytest.approx(top1)
    wrong = run_cli("resolution", "--weights", ckpt, "--num-classes", 5, "--data", split / "images", "--out", tmp_path / "w")
    assert wrong.returncode == 1 and "--num-classes 10" in wrong.stderr


def test_shards_merge_to_one_run(tmp_path):
    args = ["resolution", "--model", "demo_resnet_tdtop", "--sizes", "196:252:28", "--limit", 30, "--images", 200,
            "--json", "--workers", 0]
    one = _json(run_cli(*args, "--out", tmp_path / "one"))
    assert run_cli(*args, "--out", tmp_path / "sh", "--shard", "0/2").returncode == 0
    merged = _json(run_cli(*args, "--out", tmp_path / "sh", "--shard", "1/2"))
    assert merged["rows"] == one["rows"]
    again = _json(run_cli(*args, "--out", tmp_path / "one", "--resume"))
    assert again["rows"] == one["rows"]


def test_sizes_and_crop_errors_are_one_sentence(tmp_path):
    assert parse_sizes("168:448:28") == tuple(range(168, 449, 28)) and len(parse_sizes("168:448:28")) == 11
    assert parse_sizes("448,168,224") == (168, 224, 448)
    for bad in ("168:448", "a,b", "16", "448:168:28", "168:448:0"):
        res = run_cli("resolution", "--sizes", bad, "--out", tmp_path / "x")
        assert res.returncode == 1 and "--sizes" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("resolution", "--crop", "squash", "--limit", 10, "--images", 200, "--out", tmp_path / "y")
    assert res.returncode == 1 and "--crop 'squash'" in res.stderr


def test_every_command_reads_preprocessing_from_the_record():
    """No command builds its preprocessing but through Preprocess.for_model, and the registry
    imports no model family (each family registers its own names)."""
    offenders = []
    for path in [*(ROOT / "tdviz").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]:
        text = path.read_text()
        if "tdviz_preprocess" in text or re.search(r"Preprocess\((mode|size)=", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    registry = (ROOT / "tdviz" / "models" / "registry.py").read_text()
    assert not re.search(r"from \.(resnet|convnext|mobilenetv3|demo_zoo) import|import (resnet|convnext)", registry)
    for name in tdviz.list_models():
        rec = tdviz.get_spec(name).record
        assert rec.input_size == 224 and 0 < rec.crop_fraction <= 1 and rec.num_classes in (10, 1000)
    with torch.device("meta"):
        model = tdviz.create_model("resnet50_tdtop", num_classes=200)
    assert model.tdviz_record.num_classes == 200 and model.num_classes == 200
    assert model.get_classifier().out_features == 200 and model.tdviz_record.feature_layer == "layer4.2"
    pre = Preprocess.for_model(model, size=448)
    assert (pre.size, pre.resize, pre.mode) == (448, 512, "resize_crop")
    assert np.allclose(pre.mean, (0.485, 0.456, 0.406))
