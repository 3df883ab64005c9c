import math

import numpy as np
import pytest

from tdviz.shift import ShiftMeter, ShiftStats, localized_objects, run_shift_demo

NAN = [np.nan] * 4
GT = np.array([[0, 0, 49, 49], [100, 100, 149, 149]])
A = [0, 0, 49, 49]  # exactly object 0
B = [100, 100, 149, 149]  # exactly object 1
A_SHIFTED = [10, 0, 59, 49]  # IoU with A = 40*50 / (60*50) = 0.667: still object 0
FAR = [200, 200, 210, 210]  # no object


def test_localized_objects_basic():
    assert localized_objects(np.array([A, B]), GT) == [0, 1]
    assert localized_objects(np.array([B, A_SHIFTED]), GT) == [1, 0]
    assert localized_objects(np.array([NAN, FAR]), GT) == [None, None]
    assert localized_objects(np.array([A]), np.zeros((0, 4))) == [None]


def test_localized_objects_threshold():
    half = [25, 0, 74, 49]  # IoU with A = 25*50 / (75*50) = 1/3
    assert localized_objects(np.array([half]), GT) == [None]
    assert localized_objects(np.array([half]), GT, iou_threshold=0.3) == [0]


def test_meter_shift_changes_and_covers():
    m = ShiftMeter()
    assert m.update(np.array([A, B]), GT) == [0, 1]
    s = m.result()
    assert s.n_images == 1 and s.n_multi_localized == 1
    assert s.frac_changed == 1.0 and s.frac_changed_all == 1.0
    assert s.frac_cover_all == 1.0 and s.frac_unique_maps == 1.0
    assert s.mean_iou_per_step == [1.0, 1.0] and s.localized_per_step == [1.0, 1.0]


def test_meter_same_object_not_changed():
    m = ShiftMeter()
    m.update(np.array([A, A_SHIFTED]), GT)
    s = m.result()
    assert s.frac_changed == 0.0 and s.frac_cover_all == 0.0
    assert s.frac_unique_maps == 0.0  # the two boxes overlap with IoU 0.667 >= 0.5


def test_meter_unique_maps_without_localization():
    m = ShiftMeter()
    m.update(np.array([A, FAR]), GT)  # IoU(A, FAR) = 0 < 0.5
    s = m.result()
    assert s.frac_unique_maps == 1.0
    assert s.n_multi_localized == 0 and s.frac_changed == 0.0
    assert s.localized_per_step == [1.0, 0.0]


def test_meter_no_box_and_denominators():
    m = ShiftMeter()
    assert m.update(np.array([A, B]), GT) == [0, 1]  # changed
    assert m.update(np.array([A, A]), GT) == [0, 0]  # not changed
    assert m.update(np.array([NAN, B]), GT) == [
        None,
        1,
    ]  # only one localized: not in denominator
    assert m.update(np.array([NAN, NAN]), GT) == [None, None]
    s = m.result()
    assert isinstance(s, ShiftStats)
    assert s.n_images == 4 and s.n_multi_localized == 2
    assert s.frac_changed == 0.5  # 1 / 2 images with >= 2 localized steps
    assert s.frac_changed_all == 0.25  # 1 / 4 images
    assert s.frac_cover_all == 0.25
    assert s.frac_unique_maps == 0.25  # only [A, B]; a missing box is never paired
    assert s.localized_per_step == [0.5, 0.75]
    assert s.mean_iou_per_step == [0.5, 0.75]
    assert set(s.to_dict()) >= {
        "n_images",
        "frac_changed",
        "frac_changed_all",
        "frac_cover_all",
        "frac_unique_maps",
        "mean_iou_per_step",
        "localized_per_step",
    }


def test_meter_one_step_and_empty():
    assert ShiftMeter().result().n_images == 0
    m = ShiftMeter()
    m.update(np.array([A]), GT)
    s = m.result()
    assert (
        s.frac_changed == 0.0 and s.frac_unique_maps == 0.0 and s.frac_cover_all == 0.0
    )
    with pytest.raises(ValueError):
        m.update(np.array([A, B]), GT)


def test_run_shift_demo_real():
    res = run_shift_demo(["demo_resnet_tdjoint", "demo_resnet"], n=16)
    assert set(res) == {"demo_resnet_tdjoint", "demo_resnet"}
    assert len(res["demo_resnet_tdjoint"].localized_per_step) == 2
    assert len(res["demo_resnet"].localized_per_step) == 1
    assert res["demo_resnet"].frac_changed == 0.0
    assert res["demo_resnet"].frac_unique_maps == 0.0
    for s in res.values():
        assert s.n_images == 16
        for v in [
            s.frac_changed,
            s.frac_changed_all,
            s.frac_cover_all,
            s.frac_unique_maps,
            *s.mean_iou_per_step,
            *s.localized_per_step,
        ]:
            assert 0.0 <= v <= 1.0 and not math.isnan(v)
