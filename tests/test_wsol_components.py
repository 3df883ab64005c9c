"""The Grad-CAM rule's connected components in torch (used on the GPU) against OpenCV."""

import cv2
import numpy as np
import pytest
import torch

from tdviz.cam import normalize_maps
from tdviz.wsol.boxes import cam_boxes, largest_component_box
from tdviz.wsol.components import gradcam_rule_boxes, largest_component_boxes


def _opencv(mask: np.ndarray) -> list[int]:
    found = largest_component_box(mask.astype(np.uint8))
    return found[0].tolist() if len(found) else [-1, -1, -1, -1]


def _shapes() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    masks = [rng.random((48, 40)) > p for p in (0.3, 0.55, 0.7, 0.9, 0.99)]  # many small components
    spiral = np.zeros((41, 41), bool)  # one long winding component: many propagation rounds
    for i in range(0, 20, 2):
        spiral[i, i:41 - i] = spiral[i:41 - i, 40 - i] = spiral[40 - i, i + 2:41 - i] = True
        spiral[i + 2:41 - i, i] = True
    ring = np.zeros((30, 30), bool)  # a thin ring (100 px) around a bigger island (324 px)
    ring[2:28, 2:28] = True
    ring[3:27, 3:27] = False
    ring[6:24, 6:24] = True
    ties = np.zeros((20, 20), bool)  # two 3x3 squares: the first in raster order wins
    ties[10:13, 2:5] = ties[2:5, 12:15] = True
    diagonal = np.eye(25, dtype=bool) | np.eye(25, dtype=bool)[::-1]  # 8-connected only
    edges = np.zeros((30, 30), bool)
    edges[0, :] = edges[:, -1] = True
    return masks + [spiral, ring, ties, diagonal, edges, np.zeros((9, 9), bool), np.ones((9, 9), bool)]


@pytest.mark.parametrize("index", range(12))
def test_largest_component_equals_opencv(index):
    mask = _shapes()[index]
    got = largest_component_boxes(torch.from_numpy(mask)[None])[0].tolist()
    assert got == _opencv(mask)


def test_known_answers():
    shapes = _shapes()
    boxes = [largest_component_boxes(torch.from_numpy(m)[None])[0].tolist() for m in shapes[5:]]
    assert boxes[1] == [6, 6, 23, 23]  # the island, not the ring around it
    assert boxes[2] == [12, 2, 14, 4]  # the tie goes to the square whose first pixel comes first
    assert boxes[3] == [0, 0, 24, 24]  # the two diagonals touch diagonally: one component
    assert boxes[5] == [-1, -1, -1, -1] and boxes[6] == [0, 0, 8, 8]


def test_gradcam_rule_boxes_equal_cam_boxes_on_a_batch():
    torch.manual_seed(0)
    raw = torch.relu(torch.randn(3, 2, 6, 7, 7))  # [B, T, K, h, w] as step_cams' raw maps
    raw[0, 0, 0] = 0  # an all-zero map: no box
    boxes = gradcam_rule_boxes(raw, (224, 224), 0.15, chunk=7)
    assert boxes.shape == (3, 2, 6, 4)
    norm = normalize_maps(raw.flatten(0, 2), (224, 224)).numpy()
    expect = []
    for m in norm:
        found = cam_boxes(m, 0.15)
        expect.append(found[0].tolist() if len(found) else [-1] * 4)
    assert boxes.flatten(0, 2).tolist() == expect
    assert boxes[0, 0, 0].tolist() == [-1, -1, -1, -1]
    assert cv2.connectedComponents((norm[1] >= 0.15 * norm[1].max()).astype(np.uint8))[0] >= 2
