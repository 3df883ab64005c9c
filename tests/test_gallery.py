"""build_gallery: 2 demo models, 3 demo images + 1 corrupt file."""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_cli
from PIL import Image

from tdviz.demo import make_demo_split
from tdviz.gallery import build_gallery
from tdviz.models.demo_zoo import load_demo_model
from tdviz.wsol.annotations import demo_class_index, load_wsol_dataset

MODELS = ("demo_resnet", "demo_resnet_tdtop")  # 1 step and 2 steps


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    split = make_demo_split(root / "split", n=3, seed=0, workers=1)
    data = load_wsol_dataset(
        split / "boxes_xml",
        images_root=split / "images",
        class_index=demo_class_index(),
    )
    bad = root / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    images = [(s.path, s.label, s.boxes) for s in data.samples]
    images.insert(1, (bad, None, None))
    models = {name: load_demo_model(name) for name in MODELS}
    return build_gallery(
        models, images, root / "out", title="test", progress=False
    ), images


def test_figures_and_problems(gallery):
    report, _ = gallery
    assert len(report.figures) == 3
    for fig in report.figures:
        assert fig.png.stat().st_size > 10_000 and fig.pdf.stat().st_size > 10_000
        assert fig.png.parent == report.out_dir / "figures"
        with Image.open(fig.png) as im:  # print quality, no palette
            assert im.mode == "RGB" and round(im.info["dpi"][0]) >= 150 and im.width >= 3 * 224
        assert b"/FontFile2" in fig.pdf.read_bytes()  # TrueType: the PDF's text is text
    assert len(report.problems) == 1
    assert "broken.png" in report.problems[0]
    assert report.problems[0].count(". ") <= 2 and report.problems[0].endswith(".")


def test_grid_predictions_and_ious(gallery):
    report, _ = gallery
    for fig in report.figures:
        assert fig.grid == (2, 3)  # a row per model; the input column + 2 steps (TD-top)
        assert [len(p) for p in fig.predictions.values()] == [1, 2]
        for ious in fig.ious.values():
            assert all(iou is not None and 0.0 <= iou <= 1.0 for iou in ious)
        assert fig.change is not None and fig.change >= 0
        for name, conf in (p for preds in fig.predictions.values() for p in preds):
            assert isinstance(name, str) and 0.0 <= conf <= 1.0


def test_one_card_per_image_with_native_cells(gallery):
    report, _ = gallery
    page = report.index_html.read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', page,
                                re.DOTALL).group(1))
    assert data["models"] == list(MODELS) and len(data["cards"]) == 3  # one card per image, not per model
    for card, fig in zip(data["cards"], report.figures):
        assert [r["model"] for r in card["rows"]] == list(MODELS)
        assert [len(r["steps"]) for r in card["rows"]] == [1, 2]
        assert card["rows"][0]["group"] == card["rows"][1]["group"] == 0  # same input: shown once
        for row in card["rows"]:
            for name in [row["input"]] + [s[k] for s in row["steps"] for k in ("overlay", "map")]:
                with Image.open(report.out_dir / card["cells"] / name) as im:
                    assert im.size == (224, 224) and im.mode == "RGB"  # the input's native resolution
            ious = [s["iou"] for s in row["steps"]]
            assert ious == fig.ious[row["model"]]
    assert report.contact_sheet.is_file() and report.contact_sheet.stat().st_size > 10_000


def test_no_gt_boxes_gives_no_iou(tmp_path, gallery):
    _, images = gallery
    path = images[0][0]
    report = build_gallery({"m": load_demo_model("demo_resnet")}, [(path, None, None)], tmp_path, progress=False)
    (fig,) = report.figures
    assert fig.grid == (1, 2) and fig.ious["m"] == [None] and fig.correct is False and fig.change is None


def test_gallery_cli_reports_bad_images(tmp_path):

    import numpy as np
    from PIL import Image

    src = tmp_path / "imgs"
    src.mkdir()
    Image.fromarray((np.random.default_rng(0).random((224, 224, 3)) * 255).astype(np.uint8)).save(src / "a.png")
    (src / "b.png").write_bytes(b"not an image")
    cmd = ["gallery", "--images", src, "--model", "demo_resnet_tdtop", "--out", tmp_path / "out"]
    res = run_cli(*cmd)
    assert res.returncode == 1 and "b.png" in res.stderr and "1 figure" in res.stdout
    assert (tmp_path / "out" / "index.html").is_file()
    res = run_cli("gallery", "--out", tmp_path / "x")
    assert res.returncode == 1 and "either --demo or image files" in res.stderr


def test_real_gallery_page_in_chromium(tmp_path):
    """The page tdviz builds: loads with no console line, every cell loads, and the model filter
    hides that model's rows in every card."""
    from test_gallery_html import Dom, chromium

    from tdviz.gallery import demo_gallery

    models = {"demo_resnet": load_demo_model("demo_resnet"), "demo_resnet_tdtop": load_demo_model("demo_resnet_tdtop")}
    report = demo_gallery(tmp_path / "g", n=3, models=models, progress=False)
    dumped, console = chromium(report.index_html.as_uri(), tmp_path / "profile")
    assert console == []
    dom = Dom(dumped)
    assert len(dom.cards) == 3 and dom.body_attrs.get("data-loaded") == "15" and dom.body_attrs.get("data-failed") == "0"
    dumped, console = chromium(f"{report.index_html.as_uri()}?model=demo_resnet_tdtop", tmp_path / "profile2")
    dom = Dom(dumped)
    assert console == [] and len(dom.shown()) == 3
    assert all(("hidden" in r) == (r["data-model"] == "demo_resnet") for c in dom.cards for r in c["rows"])
