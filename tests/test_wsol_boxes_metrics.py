"""Map -> box rules (Grad-CAM and wsolevaluation protocols), IoU and the streaming WSOL meters,
on hand-built maps whose answers are computed by hand in the comments."""
from __future__ import annotations

import json
from dataclasses import asdict

import cv2
import numpy as np
import pytest

from tdviz.wsol import (
    CamProtocolMeter,
    MaxBoxAccMeter,
    PxAPMeter,
    box_iou,
    cam_boxes,
    cam_threshold_grid,
    meter_from_state,
    resize_boxes_wsol,
    wsol_best_ious,
    wsol_boxes,
    wsol_quantize,
    wsol_scoremap,
)

S = 224


def rect_map(x0, y0, x1, y1, value=1.0, size=S):
    m = np.zeros((size, size))
    m[y0:y1 + 1, x0:x1 + 1] = value
    return m


# --------------------------------------------------------------------------- IoU


def test_iou_identical_disjoint_and_partial():
    a = np.array([[0, 0, 9, 9]])
    assert box_iou(a, a)[0, 0] == 1.0
    assert box_iou(a, [[20, 20, 29, 29]])[0, 0] == 0.0
    # 10x10 boxes overlapping in 5x5 pixels: 25 / (100 + 100 - 25) = 1/7
    assert box_iou(a, [[5, 5, 14, 14]])[0, 0] == pytest.approx(1 / 7)
    # boxes sharing one pixel column: inclusive "+1" gives 5 / (25 + 25 - 5) = 1/9 (not 0)
    assert box_iou([[0, 0, 4, 4]], [[4, 0, 8, 4]])[0, 0] == pytest.approx(1 / 9)
    # a single pixel box has area 1
    assert box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 1.0


def test_iou_shapes_degenerate_and_missing():
    ious = box_iou(np.zeros((3, 4)), np.zeros((5, 4)))
    assert ious.shape == (3, 5)
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    # x1 < x0 by two: area <= 0 -> union <= 0 -> IoU 0 (wsolevaluation's degenerate rule)
    assert box_iou([[5, 5, 3, 3]], [[5, 5, 3, 3]])[0, 0] == 0.0
    assert box_iou([[np.nan] * 4], [[0, 0, 9, 9]])[0, 0] == 0.0


# --------------------------------------------------------------------------- filled rectangle


def test_filled_rectangle_gradcam_protocol_is_exact():
    m = rect_map(30, 40, 99, 149)
    assert cam_boxes(m).tolist() == [[30, 40, 99, 149]]
    assert cam_boxes(m, select="contour").tolist() == [[30, 40, 99, 149]]
    assert cam_boxes(m, strict=True).tolist() == [[30, 40, 99, 149]]


def test_filled_rectangle_wsolevaluation_protocol():
    m = rect_map(30, 40, 99, 149)
    s = wsol_scoremap(m)
    assert np.array_equal(s, m)
    # wsolevaluation's boundingRect box is (x, y, x + w, y + h): one pixel past the rectangle ...
    for boxes in wsol_boxes(s) + wsol_boxes(s, multi_contour=True):
        assert boxes.tolist() == [[30, 40, 100, 150]]
    # ... the "inclusive" convention gives the rectangle itself
    assert all(b.tolist() == [[30, 40, 99, 149]] for b in wsol_boxes(s, box_convention="inclusive"))
    # at the border min(x + w, W - 1) clips, so a rectangle touching it comes back exactly
    edge = rect_map(100, 120, S - 1, S - 1)
    assert all(b.tolist() == [[100, 120, S - 1, S - 1]] for b in wsol_boxes(wsol_scoremap(edge)))


def test_quantization_truncates_and_threshold_is_strict():
    assert wsol_quantize(np.array([[0.999, 0.5, 1.0]])).tolist() == [[254, 127, 255]]
    # q = 127 (value 0.5) is kept while int(tau * 255) < 127, i.e. tau <= 0.49 (0.49 * 255 = 124.95)
    m = rect_map(0, 0, 99, 99, 0.5)
    m[40:60, 40:60] = 1.0
    boxes = wsol_boxes(m)
    taus = cam_threshold_grid()
    assert len(taus) == 100 and taus[0] == 0.0
    assert all(b.tolist() == [[0, 0, 100, 100]] for b in boxes[:50])
    assert all(b.tolist() == [[40, 40, 60, 60]] for b in boxes[50:])


# --------------------------------------------------------------------------- two segments


def two_segments():
    m = rect_map(10, 10, 109, 59)  # A: 100 x 50 pixels
    m[150:170, 150:170] = 1.0  # B: 20 x 20 pixels
    return m


def test_two_segments_largest_is_chosen_and_all_are_listed():
    m = two_segments()
    assert cam_boxes(m).tolist() == [[10, 10, 109, 59]]
    assert cam_boxes(m, all_components=True).tolist() == [[10, 10, 109, 59], [150, 150, 169, 169]]
    v1 = wsol_boxes(m)
    v2 = wsol_boxes(m, multi_contour=True)
    assert all(b.tolist() == [[10, 10, 110, 60]] for b in v1)
    assert all(sorted(b.tolist()) == [[10, 10, 110, 60], [150, 150, 170, 170]] for b in v2)


def test_two_segments_v2_evaluates_the_small_one():
    gt = [[150, 150, 169, 169]]  # the small segment
    v1, v2 = wsol_best_ious(two_segments(), gt)
    assert np.all(v1 == 0.0)
    assert np.allclose(v2, 400 / 441)  # [150,150,170,170] is 21x21 = 441 px, GT 400 px inside it
    m1, m2 = MaxBoxAccMeter.v1(), MaxBoxAccMeter.v2()
    m1.update(two_segments(), gt, preprocessed=True)
    m2.update(two_segments(), gt, preprocessed=True)
    assert m1.result().value == 0.0
    assert m2.result().per_delta == {30: 100.0, 50: 100.0, 70: 100.0}


def test_pixels_vs_contour_area_selection():
    m = np.zeros((20, 20))
    m[2, 0:15] = 1.0  # a 15-pixel line: most pixels, contour area 0
    m[10:12, 10:12] = 1.0  # a 2x2 block: 4 pixels, contour area 1
    assert cam_boxes(m).tolist() == [[0, 2, 14, 2]]
    assert cam_boxes(m, select="contour").tolist() == [[10, 10, 11, 11]]


def _largest_component_box(binary):
    """The reference: connectedComponentsWithStats, largest by pixels, first label on ties."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    if n <= 1:
        return []
    x, y, w, h, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    return [[x, y, x + w - 1, y + h - 1]]


def test_single_component_shortcut_gives_the_components_box():
    # smooth upsampled maps (mostly one blob), sparse noise (many components), a ring with an
    # island in its hole (one outer border at the top level would be wrong: two components), and
    # blobs touching the border
    rng = np.random.default_rng(3)
    maps = [cv2.resize(rng.random((k, k)), (S, S)) for k in (2, 3, 5, 7, 7, 7, 14) for _ in range(20)]
    maps += [(rng.random((40, 40)) > p).astype(float) for p in (0.5, 0.8, 0.95, 0.99)]
    ring = np.zeros((30, 30))
    ring[2:28, 2:28] = 1  # a thin ring (100 pixels) around a bigger island (324 pixels)
    ring[3:27, 3:27] = 0
    ring[6:24, 6:24] = 1
    corner = np.zeros((30, 30))
    corner[0:10, 0:10] = 1
    corner[20:, 25:] = 1
    maps += [ring, corner, np.ones((9, 9))]
    singles = 0
    for m in maps:
        expect = _largest_component_box(m >= 0.15 * m.max())
        assert cam_boxes(m).tolist() == expect
        singles += cv2.connectedComponents((m >= 0.15 * m.max()).astype(np.uint8))[0] == 2
    assert cam_boxes(ring).tolist() == [[6, 6, 23, 23]]
    assert 0 < singles < len(maps)  # both paths were taken


def _wsolevaluation_boxes(scoremap, multi_contour):
    """wsolevaluation's compute_bboxes_from_scoremaps, written out as their loop over thresholds."""
    q = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    height, width = scoremap.shape
    out = []
    for tau in np.arange(0, 1, 0.01):
        _, th = cv2.threshold(q, int(tau * np.max(q)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(th, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            out.append([[0, 0, 0, 0]])
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        out.append(boxes)
    return out


def test_wsol_boxes_equal_their_threshold_loop():
    # shared masks between thresholds and per-mask cropping must not change a single box
    rng = np.random.default_rng(5)
    maps = [wsol_scoremap(rng.random((k, k)) ** p) for k in (2, 4, 7, 7, 14) for p in (1, 3)]
    edge = np.zeros((S, S))
    edge[0:40, 0:60] = 1.0
    edge[200:, 100:] = 0.5
    edge[100:120, 100:110] = 0.7
    maps += [edge, np.zeros((S, S))]
    for m in maps:
        for multi in (False, True):
            got = [b.tolist() for b in wsol_boxes(m, multi_contour=multi)]
            assert got == _wsolevaluation_boxes(m, multi)


def test_gradcam_ratio_ge_vs_strict():
    m = rect_map(0, 0, 9, 9, 1.0, size=40)
    m[20:30, 20:30] = 0.15  # exactly 0.15 * max
    assert len(cam_boxes(m, all_components=True)) == 2
    assert len(cam_boxes(m, all_components=True, strict=True)) == 1
    assert cam_boxes(m, ratio=0.5).tolist() == [[0, 0, 9, 9]]


# --------------------------------------------------------------------------- degenerate maps


def test_zero_constant_and_nan_maps():
    zero, const, nan = np.zeros((7, 7)), np.full((7, 7), 0.5), np.full((7, 7), np.nan)
    # wsolevaluation: all three become an all-zero score map; nothing is kept at any tau and the
    # box is their placeholder [0, 0, 0, 0] (a 1-pixel box at the corner, scored like any other).
    # (0.5 upsamples to an exactly constant map; see wsol_scoremap for values that do not)
    for m in (zero, const, nan, np.full((S, S), 0.4)):
        s = wsol_scoremap(m)
        assert s.shape == (S, S) and not s.any()
        assert all(b.tolist() == [[0, 0, 0, 0]] for b in wsol_boxes(s, multi_contour=True))
    v1, v2 = wsol_best_ious(wsol_scoremap(zero), [[0, 0, 9, 9]])
    assert np.allclose(v1, 0.01) and np.allclose(v2, 0.01)  # 1 / 100
    # Grad-CAM rule: max <= 0 -> no box; a constant positive map keeps everything -> whole map
    assert cam_boxes(zero).shape == (0, 4)
    assert cam_boxes(nan).shape == (0, 4)
    assert cam_boxes(const).tolist() == [[0, 0, 6, 6]]
    assert cam_boxes(const, normalize="minmax").shape == (0, 4)


def test_resize_boxes_like_wsolevaluation():
    # int(v * 224 / W): 499 * 224 / 500 = 223.55 -> 223; 111 * 224 / 500 = 49.728 -> 49
    assert resize_boxes_wsol([[111, 108, 441, 193]], 500, 375).tolist() == [[49, 64, 197, 115]]
    assert resize_boxes_wsol([[0, 0, 499, 374]], 500, 375).tolist() == [[0, 0, 223, 223]]


def test_bicubic_resize_is_float64():
    import cv2

    raw = np.random.default_rng(0).normal(size=(7, 7)).astype(np.float32)
    up = cv2.resize(raw.astype(np.float64), (S, S), interpolation=cv2.INTER_CUBIC)
    expected = (up - up.min()) / (up - up.min()).max()
    assert np.allclose(wsol_scoremap(raw), expected, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- several GT boxes


def test_best_of_several_gt_boxes():
    m = rect_map(30, 40, 99, 149)
    far, exact = [180, 180, 200, 200], [30, 40, 100, 150]
    v1, v2 = wsol_best_ious(m, [far, exact])
    assert np.all(v1 == 1.0) and np.all(v2 == 1.0)
    meter = CamProtocolMeter()
    meter.update([3], [[30, 40, 100, 150]], 3, [far, exact])
    assert meter.result().top1_loc == 100.0


# --------------------------------------------------------------------------- CAM protocol meter


def test_cam_protocol_top1_top5_gt_known():
    good, bad, gt = [10, 10, 49, 49], [60, 60, 99, 99], [[10, 10, 49, 49]]
    meter = CamProtocolMeter()
    # 1: top-1 right, good box -> everything counts
    meter.update([1, 2, 3, 4, 5], [good, bad, bad, bad, bad], 1, gt)
    # 2: top-1 right, bad box -> only the classifications count
    meter.update([1, 2, 3, 4, 5], [bad, good, good, good, good], 1, gt)
    # 3: GT at rank 3 with a good box -> top-5 cls, top-5 loc, GT-known
    meter.update([7, 8, 1, 4, 5], [good, good, good, bad, bad], 1, gt)
    # 4: GT not in the top 5; its own map's box is good -> GT-known only
    meter.update([7, 8, 9, 4, 5], [good] * 5, 1, gt, gt_known_box=good)
    r = meter.result()
    assert r.n == 4
    assert (r.top1_cls, r.top5_cls) == (50.0, 75.0)
    assert (r.top1_loc, r.top5_loc, r.gt_known_loc) == (25.0, 50.0, 75.0)
    with pytest.raises(ValueError):
        meter.update([7, 8, 9, 4, 5], [good] * 5, 1, gt)  # GT-known box needed


def test_cam_protocol_iou_exactly_half_and_box_labels():
    box, gt = [0, 0, 9, 9], [[0, 0, 9, 4]]  # IoU = 50 / 100 = 0.5 exactly
    ge, gt_strict = CamProtocolMeter(), CamProtocolMeter(strict=True)
    ge.update([0], [box], 0, gt)
    gt_strict.update([0], [box], 0, gt)
    assert ge.result().top1_loc == 100.0 and gt_strict.result().top1_loc == 0.0
    # only GT boxes of the GT class count when their labels are given; a missing box never counts
    m = CamProtocolMeter()
    m.update([0, 1], [[0, 0, 9, 9], None], 0, [[0, 0, 9, 9], [50, 50, 59, 59]], gt_box_labels=[2, 0])
    assert m.result().top1_loc == 0.0 and m.result().top1_cls == 100.0


# --------------------------------------------------------------------------- MaxBoxAcc


def nested_map():
    m = rect_map(0, 0, 99, 99, 0.5)
    m[40:60, 40:60] = 1.0
    return m  # tau <= 0.49: box [0, 0, 100, 100]; tau >= 0.5: [40, 40, 60, 60] (see above)


MAXBOX_SET = [
    # image, GT boxes, per-delta correctness for tau<=0.49 / tau>=0.5 (IoU in the comment)
    (nested_map(), [[0, 0, 99, 99]]),  # outer: 10000/10201 = .980; inner: 441/10000 = .044
    (nested_map(), [[40, 40, 59, 59]]),  # outer: 400/10201 = .039; inner: 400/441 = .907
    (np.zeros((S, S)), [[0, 0, 0, 0]]),  # placeholder box [0,0,0,0] == GT: IoU 1 at every tau
    (nested_map(), [[0, 0, 99, 59]]),  # outer: 6000/10201 = .588; inner: 420/6021 = .070
]


def test_maxboxacc_v2_by_hand():
    meter = MaxBoxAccMeter.v2()
    for m, gt in MAXBOX_SET:
        meter.update(m, gt, preprocessed=True)
    r = meter.result()
    # correct counts: tau<=0.49 -> d30: {1,3,4}, d50: {1,3,4}, d70: {1,3}; tau>=0.5 -> {2,3} for all
    assert r.per_delta == {30: 75.0, 50: 75.0, 70: 50.0}
    assert r.value == pytest.approx((75 + 75 + 50) / 3)
    assert r.best_threshold[30] == 0.0
    assert r.curves[70][0] == 50.0 and r.curves[70][-1] == 50.0 and r.curves[30][-1] == 50.0
    v1 = MaxBoxAccMeter.v1()
    for m, gt in MAXBOX_SET:
        v1.update(m, gt, preprocessed=True)
    assert v1.result().value == 75.0


def test_maxboxacc_maps_original_boxes_and_raw_maps():
    # a 448x448 image: GT in original pixels is halved by resize_bbox; a raw 7x7 map is upsampled
    raw = np.zeros((7, 7))
    raw[3, 3] = 1.0
    meter = MaxBoxAccMeter(deltas=(50,), multi_contour=False)
    meter.update(raw, [[0, 0, 447, 447]], image_size=(448, 448))
    assert meter.n == 1 and 0 <= meter.result().value <= 100


# --------------------------------------------------------------------------- PxAP


def test_pxap_by_hand():
    meter = PxAPMeter(cam_curve_interval=0.25)
    # ranking 0.9 (fg), 0.6 (bg), 0.3 (fg), 0.1 (bg): AP = (1/1 + 2/3) / 2
    scores = np.array([[0.9, 0.6], [0.3, 0.1]])
    fg = np.array([[True, False], [True, False]])
    meter.update(scores, fg, preprocessed=True)
    r = meter.result()
    assert r.pxap == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert r.recall[-1] == 1.0 and r.thresholds[0] == 2.0 and r.thresholds[-1] == 0.0
    worker = PxAPMeter(cam_curve_interval=0.25)  # histograms made elsewhere, counted here
    worker.update_histograms(*worker.histograms(scores, fg))
    assert worker.result().pxap == r.pxap and worker.n == 1


def test_pxap_ignore_region():
    scores = np.array([[0.9, 0.6, 0.95], [0.3, 0.1, 0.2]])
    fg = np.array([[True, False, False], [True, False, False]])
    ignore = np.array([[False, False, True], [True, False, False]])  # (1,0) is fg: stays counted
    meter = PxAPMeter(cam_curve_interval=0.25)
    meter.update(scores, fg, ignore, preprocessed=True)
    # the ignored 0.95 background pixel is left out: fg 0.9, 0.3; bg 0.6, 0.2, 0.1 -> the 0.2
    # lands in the lowest bin, where recall is already 1, so PxAP is still (1 + 2/3) / 2
    assert meter.result().pxap == pytest.approx(100 * (1 + 2 / 3) / 2)
    ref = PxAPMeter(cam_curve_interval=0.25)
    ref.update(scores[:, :2], fg[:, :2], preprocessed=True)
    assert meter.result().pxap == pytest.approx(ref.result().pxap)
    noignore = PxAPMeter(cam_curve_interval=0.25)
    noignore.update(scores, fg, preprocessed=True)
    assert noignore.result().pxap < meter.result().pxap


def test_pxap_without_foreground_is_nan():
    meter = PxAPMeter()
    meter.update(np.random.default_rng(0).random((4, 4)), np.zeros((4, 4), bool), preprocessed=True)
    assert np.isnan(meter.result().pxap)


# --------------------------------------------------------------------------- resume


def _random_images(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        raw = rng.normal(size=(7, 7))
        x0, y0 = rng.integers(0, 150, 2)
        gt = [[int(x0), int(y0), int(x0) + int(rng.integers(20, 70)), int(y0) + int(rng.integers(20, 70))]]
        top5 = rng.permutation(10)[:5].tolist()
        boxes = [cam_boxes(cv_up(raw + k)) for k in range(5)]
        boxes = [b[0].tolist() if len(b) else None for b in boxes]
        out.append((f"img{i}", raw, gt, int(rng.integers(0, 10)), top5, boxes))
    return out


def cv_up(raw):
    import cv2

    up = cv2.resize(raw, (S, S), interpolation=cv2.INTER_LINEAR)
    up = np.maximum(up, 0)
    return up / up.max() if up.max() > 0 else up


def _feed(meters, items):
    for image_id, raw, gt, label, top5, boxes in items:
        fg = np.zeros((S, S), bool)
        fg[gt[0][1]:gt[0][3] + 1, gt[0][0]:gt[0][2] + 1] = True
        meters[0].update(raw, gt, image_id=image_id)
        meters[1].update(raw, gt, image_id=image_id)
        meters[2].update(raw, fg, image_id=image_id)
        meters[3].update(top5, boxes, label, gt, gt_known_box=[0, 0, 10, 10], image_id=image_id)


def _same(a, b) -> bool:
    """Results equal field by field (NaN == NaN, as in the PR curve's first point)."""
    return json.dumps(asdict(a), sort_keys=True) == json.dumps(asdict(b), sort_keys=True)


def _new_meters():
    return [MaxBoxAccMeter.v2(), MaxBoxAccMeter.v1(), PxAPMeter(), CamProtocolMeter()]


def test_state_round_trip_equals_one_pass():
    items = _random_images(10)
    whole = _new_meters()
    _feed(whole, items)
    first = _new_meters()
    _feed(first, items[:5])
    states = json.loads(json.dumps([m.to_state() for m in first]))
    resumed = [meter_from_state(s) for s in states]
    _feed(resumed, items[3:])  # replays 3 and 4: their ids were seen, so they are not counted twice
    for a, b in zip(whole, resumed):
        assert a.n == b.n == 10
        assert _same(a.result(), b.result())


def test_merge_adds_counts_of_disjoint_meters():
    items = _random_images(6, seed=1)
    whole, left, right = _new_meters(), _new_meters(), _new_meters()
    _feed(whole, items)
    _feed(left, items[:2])
    _feed(right, items[2:])
    for w, a, b in zip(whole, left, right):
        a.merge(b)
        assert _same(a.result(), w.result())
    with pytest.raises(ValueError):
        left[0].merge(right[0])  # overlapping ids
