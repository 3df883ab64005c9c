"""The test-only renderer that measures cross-renderer generalisation (benchmarks/cross_renderer.py)."""

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
from conftest import run_cli
from independent_renderer import fashion_test_items, render, write_split

from tdviz.datasets import load_dataset


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def test_it_shares_no_code_with_the_generator():
    tree = ast.parse((Path(__file__).parent / "independent_renderer.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("tdviz") for m in imported), imported


def test_deterministic_balanced_and_read_by_tdviz(tmp_path):
    coco = write_split(tmp_path / "a", 20, seed=3)
    write_split(tmp_path / "b", 20, seed=3)
    write_split(tmp_path / "c", 20, seed=4)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b") != _digests(tmp_path / "c")
    data = load_dataset(coco)
    assert len(data.samples) == 20 and not data.problems
    assert sorted(s.label for s in data.samples) == sorted(list(range(10)) * 2)
    for s in data.samples:
        assert Path(s.path).parent.name == f"n{s.label:08d}" and s.boxes.shape == (1, 4)
    first = json.loads(coco.read_text())["annotations"][0]
    assert first["bbox"][2] > 0 and first["bbox"][3] > 0


def test_the_box_is_the_labelled_items_mask():
    images, labels = fashion_test_items()
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
    for i in range(12):
        canvas, (x0, y0, x1, y1), mask = render(np.random.default_rng([9, i]), images, labels, i * 7)
        ys, xs = np.nonzero(mask)
        assert canvas.size == (224, 224) and mask.sum() > 200
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max(), ys.max())


def test_tdviz_wsol_runs_on_it(tmp_path):
    coco = write_split(tmp_path / "ir", 20)
    res = run_cli("wsol", "--model", "demo_resnet", "--boxes", coco, "--protocol", "cam", "--workers", "0",
                  "--box-workers", "0", "--out", tmp_path / "w", "--json")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)["models"]["demo_resnet"]["1"]
    assert row["n"] == 20 and 0 <= row["top1_cls"] <= 100


def test_shipped_zoo_holds_up_on_the_independent_renderer(tmp_path):
    """The demo issue's bound: on the test-only renderer every shipped model's top-1 (last step) is
    within 10 points of its top-1 on tdviz's own validation canvases (300 images each here: on 100
    the sampling noise of a gap is ~6 points, so one model sat at exactly 10 while its 1 000-image
    gap is 1; on 1 000 images the gaps of zoo v4 are 0.7 to 3.8 points over the seeds, README)."""
    import torch
    from PIL import Image

    from tdviz.demo import generate_split
    from tdviz.demo.dataset import to_tensor
    from tdviz.models.demo_zoo import DEMO_CLASSES, DEMO_MODELS, load_demo_model
    from tdviz.steps import run_steps

    n = 300
    own = generate_split("val", n, 0)
    coco = write_split(tmp_path / "ir", n)
    other = load_dataset(coco).samples
    # channels-last: the same logits to 1e-6 on CPU, 40% faster
    x_own = torch.stack([to_tensor(s.image) for s in own]).contiguous(memory_format=torch.channels_last)
    x_other = torch.stack([to_tensor(np.asarray(Image.open(s.path).convert("RGB"))) for s in other]) \
        .contiguous(memory_format=torch.channels_last)
    y_own = torch.tensor([s.label for s in own])
    y_other = torch.tensor([s.label for s in other])
    gaps = {}
    with torch.inference_mode():
        for name in DEMO_MODELS:
            model = load_demo_model(name).to(memory_format=torch.channels_last)
            assert model.class_names == list(DEMO_CLASSES) and model.num_steps == (2 if "_td" in name else 1)
            top1 = [100 * float(torch.cat([run_steps(model, x[i:i + 50]).logits[:, -1].argmax(-1)
                                           for i in range(0, n, 50)]).eq(y).float().mean())
                    for x, y in ((x_own, y_own), (x_other, y_other))]
            gaps[name] = (round(top1[0], 1), round(top1[1], 1))
    print(gaps)
    assert all(abs(a - b) <= 10 for a, b in gaps.values()), gaps
    assert all(a > 50 and b > 50 for a, b in gaps.values()), gaps  # chance is 10%; zoo v4 is at 72-83
