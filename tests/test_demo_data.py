"""Cluttered Fashion-MNIST demo data, generator v1 (kept to reproduce earlier results): determinism,
pixel-true annotations, split hygiene and lossless round trips through every export format.
Generator v2 has its own tests (test_demo_scene.py); the export formats are the same for both."""
from __future__ import annotations

import csv
import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from tdviz.demo import (
    CanvasDataset,
    build,
    fashion,
    generate_split,
    make_demo_split,
    render,
    write_split,
)
from tdviz.demo.canvas import (
    FRAGMENT_MAX_OVERLAP,
    MASK_THRESHOLD,
    box_iou,
    render_sample,
)
from tdviz.demo.fashion import CLASS_NAMES, load_fashion

N = 24
SEED = 7
# pycocotools' own numpy-2 deprecation noise, not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def one_obj():
    return generate_split("val", N, SEED, version=1)


@pytest.fixture(scope="module")
def two_obj():
    return generate_split("val", N, SEED, two_objects=True, version=1)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The same split written twice (2 workers vs in-process) and once with another seed."""
    root = tmp_path_factory.mktemp("demo")
    a = make_demo_split(root / "a", n=N, seed=SEED, workers=2, version=1)
    b = make_demo_split(root / "b", n=N, seed=SEED, workers=1, version=1)
    c = make_demo_split(root / "c", n=N, seed=SEED + 1, workers=1, version=1)
    return a, b, c


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img[..., ::-1] if img.ndim == 3 else img


def _independent_mask(item28: np.ndarray, size: int, x: int, y: int) -> np.ndarray:
    up = cv2.resize(item28, (size, size), interpolation=cv2.INTER_LINEAR_EXACT)
    mask = np.zeros((224, 224), bool)
    mask[y:y + size, x:x + size] = up >= MASK_THRESHOLD
    return mask


# ---------------------------------------------------------------- source data


def test_packaged_test_set_and_missing_train_message(tmp_path, test_set):
    images, labels = test_set
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [1000] * 10
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[9] == "Ankle boot"
    with pytest.raises(FileNotFoundError) as err:
        load_fashion("train", tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "--fashion-dir" in msg


# ---------------------------------------------------------------- determinism


def test_same_seed_byte_identical_and_other_seed_differs(written, one_obj):
    a, b, c = written
    da, db, dc = _digests(a), _digests(b), _digests(c)
    assert len(da) > 3 * N and da == db  # every file, images and annotations alike
    images = [k for k in da if k.startswith("images/")]
    assert len(images) == N
    assert not set(images) & {k for k in dc if da.get(k) == dc[k]}  # no image survives a new seed
    for name in ("LOC_val_solution.csv", "instances_val.json", "wsol/box/localization.txt"):
        assert da[name] != dc[name]
    # the files hold exactly the in-memory pixels, and any image renders alone
    test_images, test_labels = load_fashion("test")
    for s in one_obj[::5]:
        path = a / "images" / f"n{s.label:08d}" / f"{s.image_id}.png"
        assert np.array_equal(_read_png(path), s.image)
        alone = render_sample("val", s.meta["number"], SEED, test_images, test_labels)
        assert np.array_equal(alone.image, s.image) and alone.meta == s.meta


# ---------------------------------------------------------------- annotations vs pixels


@pytest.mark.parametrize("variant", ["one_obj", "two_obj"])
def test_boxes_and_masks_agree_with_pixels(variant, request, test_set):
    images, _ = test_set
    for s in request.getfixturevalue(variant):
        meta = s.meta
        union = np.zeros((224, 224), bool)
        for k, obj in enumerate(meta["objects"]):
            mask = _independent_mask(images[obj["source_index"]], obj["size"], *obj["xy"])
            assert mask.sum() > 100 and np.array_equal(mask, s.masks[k])
            ys, xs = np.nonzero(mask)
            assert s.boxes[k].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()] == obj["box"]
            union |= mask
        clutter, _ = render(meta, images, objects=False)
        changed = (clutter != s.image).any(-1)
        assert not changed[~union].any(), "object pixels leak outside its mask"
        assert changed[union].mean() >= 0.9, "object invisible on its mask"
        # fragments only touch their rectangles, mostly outside the object boxes
        bare, _ = render(meta, images, objects=False, fragments=False)
        inside = np.zeros((224, 224), bool)
        for f in meta["fragments"]:
            (x, y), (w, h) = f["xy"], f["size"]
            inside[max(y, 0):y + h, max(x, 0):x + w] = True
            rect = [x, y, x + w - 1, y + h - 1]
            for box in s.boxes:
                iw = min(rect[2], box[2]) - max(rect[0], box[0]) + 1
                ih = min(rect[3], box[3]) - max(rect[1], box[1]) + 1
                assert max(iw, 0) * max(ih, 0) <= FRAGMENT_MAX_OVERLAP * w * h + 1e-9
        frag_changed = (bare != clutter).any(-1)
        assert frag_changed.any() and not frag_changed[~inside].any()
        assert 3 <= len(meta["fragments"]) <= 7


# ---------------------------------------------------------------- split hygiene


def test_validation_uses_only_test_items(one_obj, two_obj, test_set, monkeypatch, tmp_path):
    images, labels = test_set
    for s in one_obj + two_obj:
        meta = s.meta
        assert meta["split"] == "val" and meta["source_split"] == "test"
        for obj in meta["objects"]:
            assert 0 <= obj["source_index"] < len(images) and labels[obj["source_index"]] == obj["label"]
        assert all(0 <= f["source_index"] < len(images) for f in meta["fragments"])
        assert np.array_equal(render(meta, images)[0], s.image)
    # pixel-level: swapping the recorded object item, or one fragment item, changes the canvas
    s = one_obj[0]
    idx = s.meta["objects"][0]["source_index"]
    other = images.copy()
    other[idx] = images[(idx + 1) % len(images)]
    assert not np.array_equal(render(s.meta, other)[0][s.masks[0]], s.image[s.masks[0]])
    f_idx = s.meta["fragments"][0]["source_index"]
    other = images.copy()
    other[f_idx] = 255 - images[f_idx]
    assert not np.array_equal(render(s.meta, other)[0], s.image)
    # validation never touches train files: point train at nothing, still works
    monkeypatch.setenv("TDVIZ_FASHION_DIR", str(tmp_path / "no-train-here"))
    with pytest.raises(FileNotFoundError):
        load_fashion("train")
    assert np.array_equal(generate_split("val", 2, SEED, version=1)[1].image, one_obj[1].image)
    make_demo_split(tmp_path / "v", n=3, seed=SEED, workers=1, version=1)


def test_train_split_tags_and_pixels(test_set):
    # the shipped test arrays stand in as the "train" source to check the train path offline
    images, labels = test_set
    train = generate_split("train", 6, SEED, source=(images, labels), version=1)
    val = generate_split("val", 6, SEED, version=1)
    for s, v in zip(train, val):
        assert s.meta["split"] == "train" and s.meta["source_split"] == "train"
        assert s.image_id.startswith("train_")
        assert np.array_equal(render(s.meta, images)[0], s.image)
        assert not np.array_equal(s.image, v.image)  # split is part of the seed


@pytest.mark.skipif(not (fashion.SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian dataset-fashion-mnist (train files) not installed")
def test_train_split_real_train_items():
    images, _labels = load_fashion("train", fashion.SYSTEM_DIR)
    assert images.shape == (60000, 28, 28)
    for s in generate_split("train", 3, SEED, fashion_dir=fashion.SYSTEM_DIR, version=1):
        assert s.meta["source_split"] == "train"
        assert np.array_equal(render(s.meta, images)[0], s.image)


# ---------------------------------------------------------------- export round trips


def test_every_format_round_trips(tmp_path, two_obj):
    import torchvision
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    out = tmp_path / "split"
    write_split(out, two_obj)
    expected = {s.image_id: s for s in two_obj}
    wnids = [f"n{k:08d}" for k in range(10)]

    classes = json.loads((out / "classes.json").read_text())
    assert classes["wnids"] == wnids and classes["names"] == list(CLASS_NAMES)
    lines = (out / "LOC_synset_mapping.txt").read_text().splitlines()
    assert [ln.split(" ", 1) for ln in lines] == [[w, n] for w, n in zip(wnids, CLASS_NAMES)]

    # a. ImageFolder
    folder = torchvision.datasets.ImageFolder(str(out / "images"))
    assert folder.class_to_idx == {w: k for k, w in enumerate(wnids)}
    assert len(folder.samples) == len(two_obj)
    for path, label in folder.samples:
        s = expected[Path(path).stem]
        assert label == s.label and np.array_equal(np.asarray(folder.loader(path)), s.image)

    # b. ILSVRC XML
    for image_id, s in expected.items():
        root = ET.parse(out / "boxes_xml" / f"{image_id}.xml").getroot()
        assert root.findtext("filename") == image_id
        assert [int(root.findtext(f"size/{t}")) for t in ("width", "height", "depth")] == [224, 224, 3]
        objs = [(o.findtext("name"), [int(o.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")])
                for o in root.findall("object")]
        assert objs == [(wnids[l], b.tolist()) for l, b in zip(s.labels, s.boxes)]

    # c. Kaggle CSV
    with open(out / "LOC_val_solution.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["ImageId"] for r in rows] == list(expected)
    for r in rows:
        tok = r["PredictionString"].split()
        s = expected[r["ImageId"]]
        assert [tok[i] for i in range(0, len(tok), 5)] == [wnids[l] for l in s.labels]
        assert [[int(v) for v in tok[i + 1:i + 5]] for i in range(0, len(tok), 5)] == s.boxes.tolist()

    # d. wsolevaluation metadata, parsed the way its data_loaders.py does
    def read(name, variant):
        return [ln.split(",") for ln in (out / "wsol" / variant / name).read_text().splitlines()]

    by_path = {f"images/n{s.label:08d}/{s.image_id}.png": s for s in two_obj}
    for variant in ("box", "mask"):
        assert [r[0] for r in read("image_ids.txt", variant)] == list(by_path)
        assert {p: int(l) for p, l in read("class_labels.txt", variant)} == {p: s.label for p, s in by_path.items()}
        assert all((int(w), int(h)) == (224, 224) for _, w, h in read("image_sizes.txt", variant))
    boxes: dict[str, list] = {}
    for path, *vals in read("localization.txt", "box"):
        boxes.setdefault(path, []).append([int(v) for v in vals])
    assert boxes == {p: s.boxes.tolist() for p, s in by_path.items()}
    masks: dict[str, list] = {}
    for path, mask_path, ignore in read("localization.txt", "mask"):
        assert (ignore != "") == (path not in masks)
        if ignore:
            assert not _read_png(out / ignore).any()
        masks.setdefault(path, []).append(_read_png(out / mask_path))
    for path, s in by_path.items():
        assert all(set(np.unique(m)) <= {0, 255} for m in masks[path])
        assert np.array_equal(np.stack(masks[path]) > 127, s.masks)

    # e. COCO
    coco = COCO(str(out / "instances_val.json"))
    assert sorted(coco.getCatIds()) == list(range(1, 11))
    assert [coco.cats[k + 1]["name"] for k in range(10)] == list(CLASS_NAMES)
    for img in coco.loadImgs(coco.getImgIds()):
        s = expected[Path(img["file_name"]).stem]
        assert img["file_name"] == f"images/n{s.label:08d}/{s.image_id}.png"
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert [a["category_id"] - 1 for a in anns] == s.labels.tolist()
        for a, box, mask in zip(anns, s.boxes, s.masks):
            x0, y0, x1, y1 = box.tolist()
            assert a["bbox"] == [x0, y0, x1 - x0 + 1, y1 - y0 + 1] and a["iscrowd"] == 0
            assert np.array_equal(coco.annToMask(a).astype(bool), mask) and a["area"] == mask.sum()
            assert mask_utils.toBbox(a["segmentation"]).tolist() == a["bbox"]


# ---------------------------------------------------------------- two objects


def test_two_object_variant(two_obj):
    for s in two_obj:
        assert len(s.labels) == 2 and s.labels[0] != s.labels[1]
        for box in s.boxes:
            assert 0 <= box[0] <= box[2] < 224 and 0 <= box[1] <= box[3] < 224
        assert box_iou(*s.boxes.tolist()) < 0.3
        assert not (s.masks[0] & s.masks[1]).any()


# ---------------------------------------------------------------- cache, atomicity, dataset


def test_cache_and_atomic_write(tmp_path, monkeypatch):
    target = tmp_path / "split"
    make_demo_split(target, n=4, seed=1, workers=1)
    stamp = (target / "manifest.json").stat().st_mtime_ns
    assert make_demo_split(target, n=4, seed=1, workers=1) == target.resolve()
    assert (target / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rewritten

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "_generate", boom)
    with pytest.raises(KeyboardInterrupt):
        make_demo_split(tmp_path / "broken", n=4, seed=1, workers=1)
    with pytest.raises(KeyboardInterrupt):  # a different n must regenerate; old split survives
        make_demo_split(target, n=5, seed=1, workers=1)
    monkeypatch.undo()
    assert not (tmp_path / "broken").exists()
    assert json.loads((target / "manifest.json").read_text())["n"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split"]  # no temp dirs left
    make_demo_split(target, n=5, seed=1, workers=1)
    assert len(list((target / "images").rglob("*.png"))) == 5
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError):
        make_demo_split(tmp_path / "other", n=2, seed=1, workers=1)


def test_canvas_dataset_matches_generator(one_obj):
    import torch

    ds = CanvasDataset("val", N, SEED, version=1)
    assert len(ds) == N
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    for i in (0, 5, N - 1):
        x, y = ds[i]
        ref = (torch.from_numpy(one_obj[i].image).permute(2, 0, 1).float() / 255 - mean) / std
        assert x.dtype == torch.float32 and x.shape == (3, 224, 224)
        assert torch.allclose(x, ref, atol=1e-5) and y == one_obj[i].label
    x, y, target = CanvasDataset("val", N, SEED, two_objects=True, return_target=True, version=1)[3]
    assert target["boxes"].shape == (2, 4) and target["masks"].shape == (2, 224, 224)
    assert y == int(target["labels"][0])


def test_split_builds_in_a_process_that_used_opencv_threads(tmp_path):
    """The build's worker processes are spawned: forked ones inherited OpenCV's busy thread pool
    and hung in it (seen after a gallery or CAM figure had been drawn in the same process)."""
    import subprocess
    import sys

    code = ("import cv2, numpy as np\n"
            "cv2.setNumThreads(4)\n"
            "for _ in range(20): cv2.GaussianBlur(np.zeros((2000, 2000), np.float32), (31, 31), 5)\n"
            "from tdviz.demo import make_demo_split\n"
            f"print(make_demo_split({str(tmp_path / 's')!r}, n=12, seed=0, workers=2))\n")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "s" / "manifest.json").is_file()
