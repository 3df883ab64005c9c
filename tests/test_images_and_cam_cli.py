"""Bad inputs a user can pass to `tdviz cam`: each is processed or reported, the rest still comes out."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from tdviz.cam_files import cam_files
from tdviz.images import Preprocess, read_image
from tdviz.loading import resolve_model


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    photo = (rng.random((180, 240, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(d / "good.jpg", quality=90)
    Image.fromarray(photo).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray((rng.random((50, 70)) * 65535).astype(np.uint16)).save(d / "deep16.png")
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(d / "one_pixel.png")
    Image.fromarray((rng.random((30, 20000, 3)) * 255).astype(np.uint8)).save(d / "wide.png")
    (d / "notes.jpg").write_text("this is not an image")
    good = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    return d


def test_read_image_variants(inputs):
    assert read_image(inputs / "cmyk.jpg").shape == (180, 240, 3)
    deep = read_image(inputs / "deep16.png")
    assert deep.dtype == np.uint8 and deep.shape == (50, 70, 3) and deep.max() > 200
    assert read_image(inputs / "one_pixel.png").shape == (1, 1, 3)
    assert Preprocess()(read_image(inputs / "wide.png")).shape == (3, 224, 224)
    assert Preprocess()(read_image(inputs / "one_pixel.png")).shape == (3, 224, 224)


def _torchvision_eval(img, pre):
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    t = torch.from_numpy(img).permute(2, 0, 1)
    full = TF.center_crop(TF.resize(t, 256, InterpolationMode.BILINEAR, antialias=True), [224, 224]).float() / 255
    return TF.normalize(full, pre.mean, pre.std)


@pytest.mark.parametrize("shape,exact", [((40, 9000), True), ((9000, 40), True), ((33, 20011), False)])
def test_elongated_images_match_torchvision(shape, exact):
    """Only the part of an elongated image that reaches the crop is resized; same output."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([127 + 120 * np.sin(xx / 3.0), 127 + 120 * np.cos(xx / 7.0 + yy), 127 + 120 * np.sin(yy / 2.0)],
                   -1).astype(np.uint8)
    pre = Preprocess()
    diff = (pre(img) - _torchvision_eval(img, pre)).abs().max().item()
    assert diff == 0.0 if exact else diff < 0.1


@pytest.mark.parametrize("pre", [Preprocess(), Preprocess(mode="resize"),
                                 Preprocess(size=448, resize=512, interpolation="bicubic")])
def test_resizing_a_batch_gives_each_image_s_own_pixels(pre):
    """resized_batch (one call per image shape, as GPU decoding uses it) equals resizing the images
    one by one, for mixed shapes, a shape already at the input size and an elongated image."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(375, 500)] * 5 + [(300, 200)] * 3 + [(pre.size, pre.size), (40, 9000)]
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen) for h, w in shapes]
    assert torch.equal(pre.resized_batch(images), torch.stack([pre.resized_tensor(t) for t in images]))


def test_cam_files_reports_bad_inputs_and_keeps_going(inputs, tmp_path):
    model, _ = resolve_model(None, None)
    names = ["good.jpg", "missing.jpg", "notes.jpg", "truncated.jpg", "cmyk.jpg", "deep16.png", "one_pixel.png",
             "wide.png"]
    run = cam_files([str(inputs / n) for n in names], model, tmp_path, steps=True, save_maps=True)
    done = sorted(os.path.basename(r.image) for r in run.records)
    assert done == ["cmyk.jpg", "deep16.png", "good.jpg", "one_pixel.png", "wide.png"]
    assert len(run.problems) == 3
    assert any("missing.jpg" in p and "does not exist" in p for p in run.problems)
    assert any("notes.jpg" in p and "not an image" in p for p in run.problems)
    assert any("truncated.jpg" in p and "truncated" in p for p in run.problems)
    assert all(p.count(".") >= 1 and "\n" not in p for p in run.problems)
    for r in run.records:
        assert all(os.path.getsize(f) > 1000 for f in r.figures)
        saved = np.load(r.maps)
        assert saved["maps"].shape == (2, 1, 224, 224) and "meta" in saved.files
        assert len(r.classes) == 2


def test_cli_cam_json_and_exit_code(inputs, tmp_path):
    res = run_cli("cam", inputs / "good.jpg", inputs / "notes.jpg", "--steps", "--topk", "2", "--json", "--out", tmp_path)
    assert res.returncode == 1  # one input was bad
    report = json.loads(res.stdout)
    assert len(report["records"]) == 1 and len(report["problems"]) == 1
    rec = report["records"][0]
    assert len(rec["classes"]) == 2 and len(rec["classes"][0]) == 2
    assert rec["classes"][0][0] in ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                    "Sneaker", "Bag", "Ankle boot")
    assert "skipped" in res.stderr and "notes.jpg" in res.stderr


def test_cli_cam_bad_flag_values(inputs, tmp_path):
    base = ["cam", inputs / "good.jpg", "--out", tmp_path]
    res = run_cli(*base, "--method", "bestcam")
    assert res.returncode == 1 and "bestcam" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(*base, "--class", "Sneakers")
    assert res.returncode == 1 and "Nearest: Sneaker" in res.stderr
    res = run_cli(*base, "--model", "resnet50_tdjiont")
    assert res.returncode == 1 and "resnet50_tdjoint" in res.stderr


@pytest.mark.parametrize("shape", [(180, 240), (240, 180), (224, 224), (37, 51), (1, 1), (600, 301)])
@pytest.mark.parametrize("mode", ["resize_crop", "resize"])
def test_preprocess_equals_torchvision(shape, mode):
    """tdviz resizes without importing torchvision; the pixels must be torchvision's."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    img = (np.random.default_rng(2).random((*shape, 3)) * 255).astype(np.uint8)
    pre = Preprocess(mode=mode)
    t = torch.from_numpy(img).permute(2, 0, 1)
    if mode == "resize":
        ref = TF.resize(t, [224, 224], InterpolationMode.BILINEAR, antialias=True)
    else:
        ref = TF.center_crop(TF.resize(t, 256, InterpolationMode.BILINEAR, antialias=True), [224, 224])
    ref = TF.normalize(ref.float() / 255, pre.mean, pre.std)
    assert torch.equal(pre(img), ref)


def test_overlay_equals_gradcam():
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from tdviz.viz import overlay

    rng = np.random.default_rng(3)
    rgb, cam = rng.random((20, 30, 3)).astype(np.float32), rng.random((20, 30)).astype(np.float32)
    assert np.array_equal(overlay(rgb, cam), show_cam_on_image(rgb, cam, use_rgb=True, image_weight=0.5))


def test_shipped_imagenet_names_are_torchvisions():
    from torchvision.models import ResNet50_Weights

    from tdviz.classnames import imagenet_class_names

    assert imagenet_class_names() == list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def test_normalize_table_equals_the_cpu_arithmetic():
    """Off the CPU, images are normalized through a table; its 3 x 256 entries must be the CPU's
    float32 results bit for bit, so a GPU run sees the same input values."""
    import torch

    from tdviz.images import _normalize_table

    pre = Preprocess()
    every_value = torch.arange(256, dtype=torch.uint8).view(1, 1, 256).expand(3, 1, 256).contiguous()
    assert torch.equal(pre.normalize(every_value)[:, 0], _normalize_table(pre.mean, pre.std).view(3, 256))
