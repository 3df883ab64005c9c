"""Generator v2 (tdviz.demo.scene): determinism, the label and box rule, annotations that agree
with pixels, split hygiene, wide randomisation, and the split on disk."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from tdviz.demo import CanvasDataset, generate_split, make_demo_split, split_dir_name
from tdviz.demo.generators import DEFAULT_VERSION, check_version, render_sample
from tdviz.demo.scene import MASK_THRESHOLD, render, warp_item

N = 40
SEED = 3


@pytest.fixture(scope="module")
def samples():
    return generate_split("val", N, SEED, version=2)


def test_v2_is_the_default_and_versions_are_checked():
    assert DEFAULT_VERSION == 2 and "fashion-clutter-v2.1-val-n5000-seed0" == split_dir_name(5000, 0)
    with pytest.raises(ValueError, match="use one of"):
        check_version(3)


def test_same_seed_same_bytes_any_order_other_seed_differs(samples, test_set):
    images, labels = test_set
    for s in samples[::7]:
        alone = render_sample("val", s.meta["number"], SEED, images, labels, version=2)
        assert np.array_equal(alone.image, s.image) and alone.meta == s.meta
        again, masks = render(json.loads(json.dumps(s.meta)), images)  # the recipe alone re-creates it
        assert np.array_equal(again, s.image) and np.array_equal(masks, s.masks)
    import tdviz.demo

    v1 = generate_split("val", 1, SEED, version=1)[0]  # tdviz.demo.render follows each recipe's version
    assert np.array_equal(tdviz.demo.render(v1.meta, images)[0], v1.image)
    assert np.array_equal(tdviz.demo.render(samples[0].meta, images)[0], samples[0].image)
    other = generate_split("val", 5, SEED + 1, version=2)
    assert all(not np.array_equal(a.image, b.image) for a, b in zip(other, samples))


def test_label_box_and_distractor_rule(samples, test_set):
    images, labels = test_set
    assert sorted(np.bincount([s.label for s in samples], minlength=10).tolist()) == [4] * 10  # balanced
    n_distractors = 0
    for s in samples:
        (obj,) = s.meta["objects"]
        assert labels[obj["source_index"]] == obj["label"] == s.label
        value = warp_item(images[obj["source_index"]], obj["w"], obj["h"], obj["angle"], obj["cubic"])
        h, w = value.shape
        x, y = obj["xy"]
        assert 0 <= x and x + w <= 224 and 0 <= y and y + h <= 224  # the object lies wholly on the canvas
        mask = np.zeros((224, 224), bool)
        mask[y:y + h, x:x + w] = value >= MASK_THRESHOLD
        assert np.array_equal(mask, s.masks[0]) and mask.sum() > 100
        ys, xs = np.nonzero(mask)
        assert s.boxes[0].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()] == obj["box"]
        side = math.sqrt(obj["w"] * obj["h"])
        for d in s.meta["distractors"]:
            n_distractors += 1
            assert d["label"] != s.label  # other classes only, and at most 0.7x the object's side
            assert math.sqrt(d["w"] * d["h"]) <= 0.7 * side + 1.5
    assert 0.4 * N < n_distractors < 1.6 * N


def test_object_changes_pixels_only_near_its_mask(samples, test_set):
    images, _ = test_set
    for s in samples:
        clutter, _ = render(s.meta, images, objects=False)
        changed = (clutter.astype(int) != s.image).any(-1)
        f = s.meta["finish"]
        reach = math.ceil(4 * f["blur"]) + 1
        near = cv2.dilate(s.masks[0].astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)) > 0
        if f["jpeg"]:  # JPEG spreads a change over its 16 x 16 (chroma-subsampled) blocks, and the
            # decoder's smooth chroma upsampling one pixel further
            blocks = near.reshape(14, 16, 14, 16).any(axis=(1, 3))
            near = cv2.dilate(np.repeat(np.repeat(blocks, 16, 0), 16, 1).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert not changed[~near].any(), s.image_id
        assert changed[s.masks[0]].mean() > 0.5, s.image_id


def test_wide_randomisation(samples):
    objs = [s.meta["objects"][0] for s in samples]
    sides = [math.sqrt(o["w"] * o["h"]) for o in objs]
    assert min(sides) < 70 and max(sides) > 150
    assert len({round(o["angle"]) for o in objs}) > 10 and {o["cubic"] for o in objs} == {True, False}
    inverted = sum(sum(o["ramp"]["low"]) > sum(o["ramp"]["high"]) for o in objs)
    assert 0 < inverted < N
    finishes = [s.meta["finish"] for s in samples]
    assert 0 < sum(f["jpeg"] > 0 for f in finishes) < N and 0 < sum(f["blur"] > 0 for f in finishes) < N
    # no class owns a background: the mean background colour does not predict the label
    means = np.array([s.image[~s.masks[0]].mean(0) for s in samples])
    assert means.std(0).min() > 15


def test_two_objects_and_train_split(test_set):
    images, labels = test_set
    for s in generate_split("val", 6, SEED, two_objects=True, version=2):
        assert len(s.labels) == 2 and s.labels[0] != s.labels[1] and not (s.masks[0] & s.masks[1]).any()
        assert s.meta["distractors"] == []
    train = generate_split("train", 4, SEED, source=(images, labels), version=2)
    assert all(s.meta["source_split"] == "train" and s.meta["version"] == 2 for s in train)


def test_split_on_disk_and_dataset_are_the_same_pixels(tmp_path, samples):
    root = make_demo_split(tmp_path / "s", n=12, seed=SEED, workers=1)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["generator_version"] == 2 and manifest["complete"] is True
    s = samples[5]
    png = cv2.imread(str(root / "images" / f"n{s.label:08d}" / f"{s.image_id}.png"))[..., ::-1]
    assert np.array_equal(png, s.image)
    x, y = CanvasDataset("val", 12, SEED)[5]
    assert y == s.label and x.shape == (3, 224, 224)
