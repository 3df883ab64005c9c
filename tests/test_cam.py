"""Per-step CAMs against grad-cam itself, on a trained demo model and real canvases."""

import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import tdviz
from tdviz.cam import normalize_maps, searchlight_maps, select_classes, step_cams
from tdviz.demo.canvas import load_source, render_sample
from tdviz.demo.dataset import to_tensor
from tdviz.models.base import is_stepped_block
from tdviz.models.demo_zoo import load_demo_model

GRADCAM_CLASSES = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM, "scorecam": ScoreCAM}


@pytest.fixture(scope="module")
def model():
    return load_demo_model("demo_resnet_tdjoint")


@pytest.fixture(scope="module")
def images():
    imgs, labels = load_source("val")
    return torch.stack([to_tensor(render_sample("val", i, 0, imgs, labels).image) for i in range(3)])


def model_at_step(model, step):
    """An independent 'model at step t': a copy whose last-stage TD blocks are built to stop at t."""
    ref = copy.deepcopy(model)
    for block in ref.layer4:
        if is_stepped_block(block):
            block.td_steps = step
    return ref.eval()


def gradcam_reference(method, model, layer_name, images, class_ids):
    layer = dict(model.named_modules())[layer_name]
    with GRADCAM_CLASSES[method](model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in class_ids])


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
@pytest.mark.parametrize("layer", ["layer4.1", "layer4.0", "layer3.1"])
def test_fast_maps_equal_gradcam_per_step(model, images, method, layer):
    cams = step_cams(model, images, layer=layer, method=method, classes="topk", k=2)
    assert cams.path == ("closed-form" if layer == "layer4.1" else "one-forward")
    assert cams.maps.shape == (3, 2, 2, 224, 224) and cams.raw.shape[:3] == (3, 2, 2)
    for step in (1, 2):
        ref_model = model_at_step(model, step)
        for slot in range(2):
            ref = gradcam_reference(method, ref_model, layer, images, cams.class_ids[:, step - 1, slot])
            np.testing.assert_allclose(cams.maps[:, step - 1, slot].numpy(), ref, atol=1e-4)


def test_scorecam_per_step(model, images):
    x = images[:1, :, ::2, ::2].contiguous()  # 112 px keeps ScoreCAM's 512 masked forwards quick
    cams = step_cams(model, x, method="scorecam", classes="last", k=1)
    assert cams.path == "grad-cam" and cams.raw is None
    for step in (1, 2):
        ref = gradcam_reference("scorecam", model_at_step(model, step), "layer4.1", x, cams.class_ids[:, step - 1, 0])
        np.testing.assert_allclose(cams.maps[:, step - 1, 0].numpy(), ref, atol=1e-4)


def test_steps_differ_where_gradcam_sees_one_model(model, images):
    """grad-cam on the TD model gives one map (the model's step T); tdviz also gives step 1."""
    cams = step_cams(model, images, classes="last", k=1)
    plain = gradcam_reference("gradcam", model, "layer4.1", images, cams.class_ids[:, -1, 0])
    np.testing.assert_allclose(cams.maps[:, -1, 0].numpy(), plain, atol=1e-4)
    diff = (cams.maps[:, 0, 0] - cams.maps[:, 1, 0]).abs().amax((1, 2))
    assert (diff > 0.1).all(), diff


def test_class_selection(model, images):
    logits = tdviz.run_steps(model, images).logits
    top = select_classes(logits, "topk", 3, None)
    assert torch.equal(top[:, :, 0], logits.argmax(-1))
    last = select_classes(logits, "last", 2, None)
    assert torch.equal(last[:, 0], last[:, 1])
    gt = select_classes(logits, "gt", 1, torch.tensor([4, 5, 6]))
    assert gt[:, :, 0].tolist() == [[4, 4], [5, 5], [6, 6]]
    assert select_classes(logits, [7, 2], 1, None).shape == (3, 2, 2)
    for bad in [{"classes": "topk", "k": 11}, {"classes": "gt", "k": 1}, {"classes": [10], "k": 1}, {"classes": "x", "k": 1}]:
        with pytest.raises(tdviz.TdvizError):
            select_classes(logits, bad["classes"], bad["k"], None)


def test_scores_are_step_probabilities(model, images):
    cams = step_cams(model, images, k=2)
    probs = cams.logits.softmax(-1)
    torch.testing.assert_close(cams.scores, probs.gather(2, cams.class_ids))
    assert (cams.maps.amax((-2, -1)) > 0.99).all() and (cams.maps.amin((-2, -1)) >= 0).all()


def test_searchlight_maps(model, images):
    maps = searchlight_maps(model, images, size=(224, 224))
    assert sorted(maps) == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    assert maps["layer4.1"].shape == (3, 1, 224, 224)
    raw = searchlight_maps(model, images)
    assert raw["layer3.0"].shape == (3, 1, 14, 14)


def test_normalize_matches_gradcam_scaling():
    from pytorch_grad_cam.utils.image import scale_cam_image

    raw = torch.rand(4, 7, 5) - 0.3
    raw = raw.clamp_min(0)
    ref = scale_cam_image(scale_cam_image(raw.numpy(), (64, 48)))
    np.testing.assert_allclose(normalize_maps(raw, (48, 64)).numpy(), ref, atol=1e-6)


def test_unknown_method_and_layer(model, images):
    with pytest.raises(tdviz.TdvizError, match="unknown"):
        step_cams(model, images, method="bestcam")
    with pytest.raises(tdviz.TdvizError, match="Nearest layer"):
        step_cams(model, images, layer="layer9")
