"""wsolevaluation's boxes at all 100 thresholds from component trees (compiled) against
wsolevaluation's own threshold loop, written out, on hand-made, random and real CAM maps."""

import cv2
import numpy as np
import pytest
import torch

from tdviz.wsol import boxes, native, scoremaps
from tdviz.wsol.boxes import box_iou
from tdviz.wsol.scoremaps import wsol_best_ious_batch, wsol_best_ious_opencv, wsol_scoremap

S = 224


def _loop_ious(scoremap, gt):
    """(v1, v2) per threshold from wsolevaluation's loop written out (compute_bboxes_from_scoremaps,
    one findContours per threshold): IoU of the largest contour's box, best IoU over all boxes."""
    q = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    height, width = scoremap.shape
    v1, v2 = [], []
    for tau in np.arange(0, 1, 0.01):
        _, th = cv2.threshold(q, int(tau * np.max(q)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(th, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            boxes, largest = [[0, 0, 0, 0]], 0
        else:
            boxes = []
            for c in contours:
                x, y, w, h = cv2.boundingRect(c)
                boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
            areas = [cv2.contourArea(c) for c in contours]
            largest = areas.index(max(areas))  # the contour max(contours, key=cv2.contourArea) returns
        ious = box_iou(np.asarray(boxes, float), gt).max(axis=1)
        v1.append(ious[largest])
        v2.append(ious.max())
    return np.asarray(v1), np.asarray(v2)


def _hand_made():
    out = []
    ring = np.zeros((S, S))
    ring[40:180, 40:180] = 1.0
    ring[60:160, 60:160] = 0.2  # a hole at most thresholds
    ring[90:130, 90:130] = 0.8  # an island inside it
    ring[105:115, 105:115] = 0.1  # a hole inside the island
    out.append(ring)
    ties = np.zeros((S, S))
    ties[20:30, 20:30] = ties[150:160, 100:110] = ties[60:70, 200:210] = 1.0  # three equal areas
    out.append(ties)
    dots = np.zeros((S, S))
    dots[10, 10] = dots[100, 50] = dots[5, 200] = 1.0  # area-0 contours tie
    dots[120:122, 120] = 1.0  # a 2-pixel line: area 0 too
    out.append(dots)
    border = np.zeros((S, S))
    border[0:30, :] = 0.9
    border[:, -20:] = 0.6
    border[100:S, 0:5] = 0.7
    border[-1, :] = 0.3
    out.append(border)
    full = np.ones((S, S))
    full[0, 0] = 0.0
    out.append(full)
    spiral = np.zeros((S, S))
    for i in range(10, 110, 8):
        spiral[i, i:S - i] = spiral[i:S - i, S - 1 - i] = spiral[S - 1 - i, i + 8:S - i] = 1.0
        spiral[i + 8:S - i, i] = 1.0
    out.append(spiral)
    checker = ((np.indices((S, S)).sum(0) // 7) % 2).astype(float)  # many touching squares
    out.append(checker * np.linspace(0.2, 1, S)[None, :])
    diag = np.zeros((S, S))
    for k in range(0, S, 9):
        diag += np.eye(S, k=k - S // 2)  # 8-connected diagonals, holes between
    out.append(diag)
    nested = np.zeros((S, S))
    for r, v in zip(range(100, 0, -12), np.linspace(0.1, 1.0, 9)):  # alternating rings in rings
        nested[S // 2 - r:S // 2 + r, S // 2 - r:S // 2 + r] = v if (r // 12) % 2 else 1.0 - v
    out.append(nested)
    out += [np.zeros((S, S)), np.full((S, S), 0.4), np.full((7, 7), 0.4), np.full((7, 7), np.nan)]
    nan = np.random.default_rng(0).random((7, 7))
    nan[3, 3] = np.nan
    out.append(nan)
    return out


def _random(rng, n):
    out = []
    for i in range(n):
        kind = 0 if i % 8 < 4 else (2 if i % 8 < 6 else i % 8 - 5)  # half CAM-like, a quarter low-res noise
        if kind == 0:  # CAM-like: ReLU'd 7x7, through their bicubic resize
            out.append(np.maximum(rng.normal(size=(7, 7)), 0) ** rng.uniform(0.5, 3))
        elif kind == 1:  # blocky noise at 224 (many components and holes at every threshold)
            k = int(rng.integers(4, 60))
            out.append(cv2.resize(rng.random((k, k)), (S, S), interpolation=cv2.INTER_NEAREST))
        elif kind == 2:  # bicubic noise of any low resolution
            out.append(rng.random((int(rng.integers(2, 30)), int(rng.integers(2, 30)))))
        else:  # pixel noise with few levels
            out.append(np.floor(rng.random((S, S)) * rng.integers(2, 6)))
    return out


def _real_cams():
    """GT-class raw maps of two demo models on demo images (what tdviz wsol feeds the boxes)."""
    from tdviz.cam import step_cams
    from tdviz.demo import generate_split
    from tdviz.demo.dataset import to_tensor
    from tdviz.models.demo_zoo import load_demo_model

    samples = generate_split("val", 12, seed=9)
    x = torch.stack([to_tensor(s.image) for s in samples])
    labels = torch.tensor([s.label for s in samples])
    out = []
    for name in ("demo_resnet", "demo_resnet_tdjoint"):
        cams = step_cams(load_demo_model(name), x, classes=labels.tolist()[:1], k=1, append_labels=labels,
                         normalize=False)
        out += [r for r in cams.raw[:, :, -1].flatten(0, 1).numpy()]
    return out


def _gts(rng, n):
    gts = []
    for _ in range(n):
        b = np.sort(rng.integers(0, S, (int(rng.integers(1, 4)), 2, 2)), axis=1)
        gts.append(np.stack([b[:, 0, 0], b[:, 0, 1], b[:, 1, 0], b[:, 1, 1]], 1).astype(float))
    return gts


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(3)
    raw = _hand_made() + _random(rng, 112) + _real_cams()
    return [wsol_scoremap(m) for m in raw], _gts(rng, len(raw))


def test_the_compiled_trees_are_built_here():
    ok, why = native.available()
    assert ok, why  # CI and every developer machine has a C compiler; without one tdviz falls back


def test_trees_equal_wsolevaluations_loop(maps):
    scoremaps, gts = maps
    assert len(scoremaps) >= 150
    v1, v2 = wsol_best_ious_batch(np.stack(scoremaps), gts)
    for i, (m, gt) in enumerate(zip(scoremaps, gts)):
        r1, r2 = _loop_ious(m, gt)
        assert np.array_equal(v1[i], r1), f"map {i}: MaxBoxAcc's largest contour"
        assert np.array_equal(v2[i], r2), f"map {i}: MaxBoxAccV2's contours"


@pytest.mark.parametrize("convention", ["wsolevaluation", "inclusive"])
def test_trees_equal_the_opencv_path(maps, convention):
    scoremaps, gts = maps
    thresholds = np.arange(0, 1, 0.001)  # their config.py grid: 1000 thresholds
    v1, v2 = wsol_best_ious_batch(np.stack(scoremaps[::4]), gts[::4], thresholds, convention)
    for i, (m, gt) in enumerate(zip(scoremaps[::4], gts[::4])):
        r1, r2 = wsol_best_ious_opencv(m, gt, thresholds, convention)
        assert np.array_equal(v1[i], r1) and np.array_equal(v2[i], r2), i


def test_maps_without_gt_boxes_are_not_measured(maps):
    scoremaps, gts = maps
    v1, v2 = wsol_best_ious_batch(np.stack(scoremaps[:3]), [gts[0], np.zeros((0, 4)), gts[2]])
    assert np.isnan(v1[1]).all() and np.isnan(v2[1]).all() and not np.isnan(v2[[0, 2]]).any()


def test_moved_names_still_import_from_boxes():
    """0.2 moved the wsolevaluation protocol to tdviz.wsol.scoremaps; the old spelling still works."""
    assert boxes.wsol_scoremap is scoremaps.wsol_scoremap
    assert boxes.WSOL_SIZE == 224
    with pytest.raises(AttributeError):
        boxes.no_such_name  # noqa: B018
